"""Copy-and-forward for an MN with two interfaces (RFC 6252 §7.6.2), and
bicasting's second leg (§7.6.1, Appendix C.1).

The MN prepares its second interface in a candidate target network (an SA
and an nCoA there, the interface attached) and tells the controller, with a
*standby* binding update, where its home address should go if the link of
its active interface is lost suddenly.  Until then the PoA switch of the
active care-of copies every packet it delivers to the MN to the controller
(the delivering flow gets an ``output:CONTROLLER`` after its output to the
MN's port, so the copy is the very frame the MN receives), and the
controller keeps the newest copies in a :class:`CopyRing`.

When the link is lost (the PoA's port-status, or the MN's ``link-lost``
signal through its other interface), the binding moves to the standby
care-of and the copies the MN may not have received are forwarded to it.
Which ones: the MN says which frames its lost interface received last
(``delivered``, digests of the IPv4 packets, see
:func:`mpa_protocol.messages.frame_digest`), and every copy after the last of
them is forwarded; nothing it received is sent twice.  Without that word
(within ``mpa.copy_wait_s``) the controller forwards every copy made from
``mpa.copy_guard_s`` before it saw the loss: a duplicate is better than a
loss, and the counters say how it was decided.

Copies cost a packet-in each for as long as the standby lasts; the ring is
bounded in packets (``mpa.copy_packets``) and age (``mpa.copy_time_s``),
dropping the oldest, which the MN is the likeliest to have received.

Bicasting: a handover pre-switched in the ``bicast`` mode gives the MN's
binding a second leg (:class:`Bicast`), its address at the PoA it is
leaving, so that the correspondents' edges send each packet both ways
(:class:`~mpa_sdn.mobility.bindings.Leg`) while the MN is still seen there,
until ``mpa.bicast_period_s`` after its arrival (``bicast_ended``).
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass

from mpa_protocol.messages import frame_digest
from mpa_sdn import openflow as of
from mpa_sdn.indexing import hosts_of_mac
from mpa_sdn.mobility.bindings import Binding, Leg, Reach, Standby
from mpa_sdn.mobility.records import COPY, FLUSHING, SWITCHING, Handover, Refused
from mpa_sdn.topology import PoA

LOG = logging.getLogger("mpa_sdn.mobility")


@dataclass(frozen=True)
class Bicast:
    """A bicast handover's second leg: ``home``'s traffic also goes to
    ``address``, the MN's care-of at ``poa`` before it moved, while it is
    seen there, until ``until`` (monotonic; RFC 6252 §7.6.1, C.1)."""

    home: str
    address: str
    mac: str
    poa: PoA | None              # None: an address in another domain (steered from home)
    until: float | None = None   # None: the MN has not arrived yet
    # Steered by the home domain for a move to another domain, whose
    # arrival it never sees (wall clock): see CopyAndForward._steer_bicast.
    expires: float | None = None


@dataclass
class Copy:
    at: float                # when the controller got it (monotonic)
    data: bytes
    digest: str | None = None

    def digested(self) -> str | None:
        if self.digest is None:
            self.digest = frame_digest(self.data) or ""
        return self.digest or None


class CopyRing:
    """The newest copies of what an MN's active interface was sent, oldest first."""

    def __init__(self, max_packets: int, max_age_s: float, counters: collections.Counter):
        self.max_packets, self.max_age_s, self.counters = max_packets, max_age_s, counters
        self.copies: collections.deque[Copy] = collections.deque()
        self.made = 0
        self.owner = None   # the handover that forwards them, once the link is lost

    def __len__(self) -> int:
        return len(self.copies)

    def add(self, data: bytes, now: float) -> None:
        self.copies.append(Copy(now, bytes(data)))
        self.made += 1
        self.counters["copy_made"] += 1
        dropped = 0
        while len(self.copies) > self.max_packets or (
                self.copies and now - self.copies[0].at > self.max_age_s):
            self.copies.popleft()
            dropped += 1
        if dropped:
            self.counters["copy_aged"] += dropped

    def undelivered(self, delivered: list[str] | None, since: float) -> tuple[list[Copy], str]:
        """The copies the MN may not have received, and how that was decided:

        ``marker``: after the newest copy that ends the longest run of the
        MN's ``delivered`` digests; ``nothing-delivered``: the MN received
        none of them (all); ``unmatched``: none of its digests is here (the
        ring lost them, or the MN is confused: all, as duplicates beat
        losses); ``guard``: no word from the MN, every copy made at or after
        ``since``."""
        copies = list(self.copies)
        if delivered is None:
            return [c for c in copies if c.at >= since], "guard"
        if not delivered:
            return copies, "nothing-delivered"
        best, best_run = None, 0
        for i in range(len(copies) - 1, -1, -1):
            run = 0
            while (run < len(delivered) and i - run >= 0
                   and copies[i - run].digested() == delivered[-1 - run]):
                run += 1
            if run > best_run:
                best, best_run = i, run
                if run == len(delivered):
                    break
        if best is None:
            return copies, "unmatched"
        return copies[best + 1:], "marker"


def with_copy(mod, port: int):
    """``mod`` with a copy to the controller after each output to ``port``
    (None if it outputs nothing there)."""
    copied = False
    instructions = []
    for instruction in mod.instructions:
        actions = getattr(instruction, "actions", None)
        if instruction.type != of.ofp.OFPIT_APPLY_ACTIONS or actions is None:
            instructions.append(instruction)
            continue
        out = []
        for action in actions:
            out.append(action)
            if action.type == of.ofp.OFPAT_OUTPUT and action.port == port:
                out.append(of.to_controller())
                copied = True
        instructions += of.apply(*out)
    if not copied:
        return None
    return of.flow_add(mod.table_id, mod.priority, mod.match, instructions, mod.cookie,
                       mod.idle_timeout, mod.hard_timeout)


class CopyAndForward:
    """Copy points, copies, the sudden loss, and bicasting's second leg (a
    part of :class:`~mpa_sdn.mobility.Mobility`, on its state)."""

    def _copy_points(self) -> None:
        """A copy ring for each standby home at its active care-of's PoA
        switch (a new one if that moved), kept through its copy-and-forward
        handover, and none for anyone else."""
        for home, (_, ring) in list(self._rings.items()):
            owner = ring.owner   # kept while its handover is (late copies still come)
            if home not in self.standbys and (
                    owner is None or self.handovers.get(owner.identity) is not owner):
                del self._rings[home]
        for home, standby in self.standbys.items():
            binding = self.bindings.get(home)
            reach = self.reach(binding) if binding else None
            if reach is None or reach.tunnel is not None:
                self._rings.pop(home, None)
            elif self._rings.get(home, (None,))[0] != reach.poa.switch:
                s = self.settings
                self._rings[home] = (reach.poa.switch,
                                     CopyRing(s.copy_packets, s.copy_time_s, self.counters))

    def _copying(self, home: str, reach: Reach | None, by_switch: dict[str, list]) -> dict:
        """A binding's flows, copying too while ``home`` has a standby."""
        if home in self.standbys and reach is not None and reach.tunnel is None:
            # Copy-and-forward: what the active care-of's PoA delivers
            # to the MN, it copies to the controller too.
            by_switch[reach.poa.switch] = [with_copy(mod, reach.poa.port) or mod
                                           for mod in by_switch.get(reach.poa.switch, [])]
        return by_switch

    def copied(self, dpid: int, frame, data: bytes, now: float) -> bool:
        """A copy of what a standby MN's active interface was sent (or, after
        its loss, of what went there before the switch applied): kept, or
        forwarded at once once the copies are sorted.  False: not a copy."""
        ring = self._rings.get(frame.ip_dst)
        if ring is None or self.graph.dpid(ring[0]) != dpid:
            return False
        ring[1].add(data, now)
        handover = ring[1].owner
        if handover is not None and handover.copies_placed:
            # Sorted already: it missed the MN, and anything newer went to
            # the new care-of; it goes now.
            self.counters["copy_late_delivered"] += 1
            self._deliver(handover, frame.ip_src, frame.ip_dst, data, now)
        return True

    def _link_lost_signal(self, sa, current: Handover | None, delivered: list | None,
                          now: float) -> dict:
        """The MN says, through its standby interface, that its active one
        is gone, and which frames that one received last."""
        self.counters["handover_link_lost_said"] += 1
        # Under any of the MN's SAs here: the one with the standby's network,
        # or the one it bound the standby under at its home domain (another
        # domain's network has no SA here).
        if current is None or current.mode != COPY:
            standby = self._first(self.standbys, self._standbys_of.get(sa.identity),
                                  lambda s: s.home in self.bindings)
            if standby is None:
                raise Refused("wrong-state", f"no standby interface in {sa.network}")
            current = self._link_lost(standby, "signal", now)
        if current.delivered is None and not current.copies_placed:
            current.delivered = list(delivered or [])
            if current.phase == FLUSHING:
                current.next_flush = now
        return self._state(current)

    def _link_lost(self, standby: Standby, how: str, now: float,
                   old_poa: PoA | None = None) -> Handover:
        """The active interface's link is gone: the binding moves to the
        standby care-of now, and the target's AR buffers for it until the
        copies the MN may have missed have gone there first."""
        home = standby.home
        old = self.bindings[home]
        reach = self.reach(old)
        old_poa = old_poa or (reach.poa if reach else None)
        self._drop_standby(home, "used")
        binding = Binding(home, standby.care_of, standby.network, standby.identity,
                          standby.mac, standby.expires)
        self.bindings[home] = binding
        self._save_binding(binding)
        self.counters[f"handover_link_lost_{how}"] += 1
        s = self.settings
        host = self.hosts.get(standby.care_of)
        poa = host.poa if host is not None and host.mac == standby.mac else None
        ring = self._rings.get(home)
        handover = Handover(
            next(self._ids), standby.identity, standby.mac, standby.network, standby.care_of,
            home, old_poa, old.care_of, False,
            self._new_buffer(standby.network),
            now, now + s.switch_deadline_s, phase=SWITCHING, arrival=f"link-lost-{how}",
            arrived_at=now, flush_to=poa, mode=COPY,
            copies=ring[1] if ring else CopyRing(1, 1.0, self.counters),
            watcher=self._handover_changed)
        handover.copies.owner = handover
        self.handovers[standby.identity] = handover
        self._buffering[standby.care_of] = handover
        LOG.warning("identity=%s mac=%s handover=%d to network=%s the link of %s is lost (%s); "
                    "%s now -> %s at poa=%s with %d copies to sort", standby.identity,
                    standby.mac, handover.id, standby.network, old.care_of, how, home,
                    standby.care_of, poa.id if poa else None, len(handover.copies))
        self._switch_flows(handover, poa, now)
        return handover

    def _place_copies(self, handover: Handover, now: float) -> bool:
        """Copy-and-forward: put the copies the MN may have missed in front
        of the buffer (they are older), once the MN has said what it got, or
        ``copy_wait_s`` after the loss without its word.  False: not yet."""
        s = self.settings
        if handover.delivered is None and now < handover.arrived_at + s.copy_wait_s:
            handover.next_flush = handover.arrived_at + s.copy_wait_s
            return False
        copies, how = handover.copies.undelivered(handover.delivered,
                                                  handover.arrived_at - s.copy_guard_s)
        handover.copies_placed, handover.copies_how = True, how
        handover.buffer.prepend([(None, handover.home, c.data, c.at) for c in copies])
        self.counters[f"copy_sorted_by_{how.replace('-', '_')}"] += 1
        self.counters["copy_forwarded"] += len(copies)
        self.counters["copy_skipped"] += len(handover.copies) - len(copies)
        LOG.info("identity=%s mac=%s handover=%d forwards %d of %d copies (%s)",
                 handover.identity, handover.mac, handover.id, len(copies),
                 len(handover.copies), how)
        return True

    def _leg(self, home: str) -> Leg | None:
        """A bicast's second leg, while the MN is still seen at its old PoA;
        or, one the home domain steers to the MN in another domain, until it
        ends (no switch of ours sees the MN there)."""
        bicast = self.bicasts.get(home)
        if bicast is not None and bicast.poa is None:
            return Leg(bicast.address, None)
        host = self.hosts.get(bicast.address) if bicast else None
        if host is None or host.mac != bicast.mac or host.poa != bicast.poa:
            return None
        return Leg(bicast.address, bicast.poa)

    def _steer_bicast(self, sa, home: str, care_of: str, at_mn: bool, life: int, wall: float,
                      abroad: dict, leg_to: str | None) -> dict:
        """Bicasting (§7.6.1) for a move between domains, steered by the
        home domain, which keeps the binding: the binding stays on
        ``care_of`` (an nCoA reached through an MN-terminated tunnel, or in
        another domain), and the correspondents' edges also send each packet
        to where the MN is now: its address at a PoA of ours (seen there),
        or ``leg_to``, its address in another domain's network (trusted, as
        a care-of abroad is, to an MN authenticated here).  The MN asks this
        before its pre-switch with mode ``bicast`` at the nAR, which then
        drops the target leg until the MN arrives: a packet is sent both
        ways meanwhile (a duplicate rather than a loss).  The leg ends when
        the MN leaves it (host_gone; abroad, its arrival here if this is the
        nAR), when the MN binds again without ``bicast``, or
        ``switch_deadline_s`` + ``bicast_period_s`` after this update."""
        current = self.bindings.get(home)
        if current is None or current.care_of != care_of or current.identity != sa.identity:
            self.counters["bicast_refused"] += 1
            raise Refused("wrong-state", f"bicasting keeps the binding where it is: bind "
                                         f"{home} to {care_of} first")
        if not at_mn:
            self.counters["bicast_refused"] += 1
            raise Refused("wrong-state", f"{care_of} is reached in this domain: the nAR "
                                         "bicasts with the pre-switch (mode bicast)")
        here = self.where.get(sa.mn_mac)
        mine = next((h for h in hosts_of_mac(self.hosts, sa.mn_mac)
                     if h.poa == here and h.address != care_of
                     and leg_to in (None, h.address)), None)
        leg_abroad = leg_to is not None and self._foreign_network(leg_to) is not None
        if life == 0 or leg_to == care_of or (mine is None and not leg_abroad):
            self.counters["bicast_refused"] += 1
            raise Refused("wrong-state", "bicasting needs the MN's address where it is now: "
                                         "one it is seen at in this domain, or one in another "
                                         "domain's network (bicast_to)")
        s = self.settings
        expires = min(wall + s.switch_deadline_s + s.bicast_period_s, current.expires)
        if mine is not None:
            bicast = Bicast(home, mine.address, sa.mn_mac, here, expires=expires)
        else:
            bicast = Bicast(home, leg_to, sa.mn_mac, None, expires=expires)
        self.bicasts[home] = bicast
        self.counters["bicast_steered"] += 1
        LOG.info("identity=%s mac=%s binding %s -> %s bicast to %s%s as well", sa.identity,
                 sa.mn_mac, home, care_of, bicast.address,
                 f" at poa={here.id}" if mine is not None else " abroad")
        self._sync()
        return {"home_address": home, "care_of": care_of,
                "lifetime": max(0, int(current.expires - wall)), **abroad,
                "bicast_to": bicast.address}

    def _end_steered_bicast(self, home: str) -> None:
        """A binding update without ``bicast`` ends the one the home domain
        steered (the MN switched back, or moved it elsewhere)."""
        if self._end_steered_bicasts(lambda b: b.home == home):
            self._sync()

    def _end_steered_bicasts(self, ending) -> bool:
        """The home domain's bicasts that ``ending(bicast)`` says are over (the
        MN left the leg's address, or their time is up).  Whether any ended."""
        ended = [b for b in self.bicasts.values() if b.expires is not None and ending(b)]
        for bicast in ended:
            self._end_bicast(bicast.home)
        return bool(ended)

    def _end_bicast(self, home: str) -> None:
        del self.bicasts[home]
        self.counters["bicast_ended"] += 1

    def _end_bicasts(self, now: float) -> None:
        """The bicasts whose period is over end: one leg again."""
        ended = [b for b in self.bicasts.values() if b.until is not None and now >= b.until]
        for bicast in ended:   # here, where next_due says it is due, not at the next tick
            self._end_bicast(bicast.home)
        if ended:
            self._sync()

"""A handover's phases: pre-switching (RFC 6252 §6.3 step 4), switching
(step 5) and post-switching (step 6), and switching back (§7.4-§7.6,
Appendix C.1 and C.4).

A handover (one per MN at a time) goes through these phases:

``pre-switching`` (step 4)
    The MN said it is about to switch.  The nCoA's access router (nAR) sends
    packets for the nCoA to the controller (a punt above the tunnel, which
    stays underneath), and the controller buffers them
    (:mod:`mpa_sdn.mobility.buffer`).  With ``buffer_old`` the old care-of
    address's AR buffers too (§7.6.1).
``switching`` (step 5)
    The MN showed up in the target network: its gratuitous ARP or any packet
    at a PoA there, its ``arrived`` signal, or (one MN expected) the PoA's
    port coming up.  The direct flows (the host's routes, its binding at the
    new PoA) go in, and every switch on the way confirms with a barrier.
    The buffer already goes to the MN meanwhile, paced as below: a
    packet-out at the new PoA needs none of those flows.
``flushing`` (step 6)
    What is left of the buffer goes to the MN in order from its new PoA, paced
    (``mpa.flush_rate_pps``), old AR's packets first (they are older).
    Packets still punted meanwhile join the queue's tail.  Once it is
    empty, each punted packet is relayed as it comes, and the punts go the
    moment the controller has handled every packet-in it was given after
    relaying one (:meth:`Buffering.caught_up`), or after ``QUIET_S`` without
    any.  That is when the fewest punted packets can still be on their way
    to the controller: each of those would reach the MN after the first
    packet that takes the direct path (OVS cannot hold packets, so no
    OpenFlow change can make this window empty; it is as short as the
    controller's round trip, and counted as ``buffer_late_delivered``).
``draining``
    The punts go, with a barrier.  Packets punted before the switch applied
    that are delivered at once.
``completed``
    The barrier came back.  The tunnel is gone (the MN is in its network);
    the old network's SA is held by the AA, its lease kept for its time.

``switched-back`` replaces ``switching`` when the MN does not arrive within
``mpa.switch_deadline_s``, shows up in another network (its old one), or
cancels: the buffer goes to wherever the MN is, the punts go, and the tunnel
and the target's SA and lease are kept (until their own lifetimes), so the
MN can try again.  A binding through the tunnel stays on it: the tunnel
still takes the home address's traffic to the MN where it is.
"""

from __future__ import annotations

import logging
from dataclasses import replace

from mpa_sdn import openflow as of
from mpa_sdn.domain_view import home_domain
from mpa_sdn.forwarding import Host, host_path
from mpa_sdn.indexing import hosts_of_mac
from mpa_sdn.mobility import tunnels as tn
from mpa_sdn.mobility.buffer import buffer_points
from mpa_sdn.mobility.copy_forward import Bicast
from mpa_sdn.mobility.records import (
    ACTIVE, BICAST, BUFFER, COMPLETED, COPY, DRAINING, FLUSHING, PRE_SWITCHING,
    SETTLE_S, SWITCHED_BACK, SWITCHING, Handover, Refused)
from mpa_sdn.openflow import Send
from mpa_sdn.topology import PoA

LOG = logging.getLogger("mpa_sdn.mobility")
QUIET_S = 0.05          # an emptied buffer's punts go after this long without a packet


class Phases:
    """The phase machine (a part of :class:`~mpa_sdn.mobility.Mobility`, on its state)."""

    # -- the MN's word ----------------------------------------------------------------

    def handover(self, sa, lease, phase: str, buffer_old: bool, now: float,
                 mode: str = BUFFER, delivered: list | None = None) -> dict:
        current = self.handovers.get(sa.identity)
        if phase == "link-lost":
            return self._link_lost_signal(sa, current, delivered, now)
        if phase == "pre-switch":
            if current is not None and current.phase in ACTIVE:
                if current.network != sa.network:
                    raise Refused("wrong-state", f"a handover to {current.network} is in progress")
                return self._state(current)   # said again: nothing changes
            tunnel = self.tunnels.get(lease.address) if lease else None
            if tunnel is None or tunnel.identity != sa.identity:
                raise Refused("wrong-state", f"no tunnel to {sa.network}: request one first")
            if self._standbys_of.count(sa.identity):
                raise Refused("wrong-state", "a standby interface is armed: bind to it, or "
                                             "release the standby first")
            self._check_dwell(sa.identity, now)
            return self._state(self._pre_switch(sa, tunnel, buffer_old, mode, now))
        if current is None or current.network != sa.network:
            if phase == "cancel":
                return {"phase": "none"}
            raise Refused("wrong-state", f"no handover to {sa.network}")
        if phase == "cancel":
            if current.phase == PRE_SWITCHING:
                self._switch_back(current, "cancelled", now)
            return self._state(current)
        # arrived: the MN says it is there; the data plane decides where.
        self.counters["handover_arrived_signal"] += 1
        host = self.hosts.get(current.address)
        if (current.phase == PRE_SWITCHING and host is not None and host.mac == sa.mn_mac
                and host.poa.network == sa.network):
            self._arrive(current, host.poa, "signal", now)
        return self._state(current)

    def _check_dwell(self, identity: str, now: float) -> None:
        """Against ping-pong: out of a network only after its ``dwell_s`` there."""
        settled = self.settled.get(identity)
        if settled is None:
            return
        network, since = settled
        dwell = self.policy_of(network).dwell_s
        if dwell and now - since < dwell:
            self.counters["handover_refused_too_soon"] += 1
            raise Refused("too-soon", f"the MN arrived in {network} {now - since:.1f} s ago; "
                          f"its dwell time is {dwell:g} s")

    def _state(self, handover: Handover) -> dict:
        return {"phase": SWITCHED_BACK if handover.back else handover.phase,
                "buffered": handover.buffer.buffered}

    # -- pre-switching (step 4) ---------------------------------------------------------

    def _pre_switch(self, sa, tunnel: tn.Tunnel, buffer_old: bool, mode: str,
                    now: float) -> Handover:
        binding = self._first(self.bindings, self._bindings_of.get(sa.identity))
        old_address = None
        if binding is not None and binding.care_of != tunnel.address:
            old_address = binding.care_of
        here = self.where.get(sa.mn_mac)
        if mode == BICAST and self._bicast_steered_from_home(sa, binding):
            # The MN's home domain sends the other leg, to where the MN is
            # (it asked there first, CopyAndForward._steer_bicast): this nAR
            # only drops the target leg until the MN arrives, instead of
            # sending it into the tunnel as well.
            buffer_old = False
        elif mode == BICAST:
            # The second leg: the address the MN has at its PoA now.
            mine = next((h for h in hosts_of_mac(self.hosts, sa.mn_mac) if h.poa == here), None)
            if binding is None or mine is None:
                raise Refused("wrong-state", "bicasting needs a binding and an address where "
                                             "the MN is attached")
            self.bicasts[binding.home] = Bicast(binding.home, mine.address, sa.mn_mac, here)
            buffer_old = False
        s = self.settings
        handover = Handover(
            next(self._ids), sa.identity, sa.mn_mac, sa.network, tunnel.address,
            binding.home if binding else None, here, old_address,
            buffer_old and old_address is not None,
            self._new_buffer(sa.network),
            now, now + s.switch_deadline_s, mode=mode, watcher=self._handover_changed)
        self.handovers[sa.identity] = handover
        for address in handover.buffered_addresses():
            self._buffering[address] = handover
        self.counters["handover_pre_switch"] += 1
        LOG.info("identity=%s mac=%s handover=%d to network=%s pre-switching, %s %s",
                 sa.identity, sa.mn_mac, handover.id, sa.network,
                 "bicasting; the nAR drops" if mode == BICAST else "buffering",
                 ", ".join(handover.buffered_addresses()))
        # The answer waits for the punts' barriers: the MN leaves when it
        # hears it, and every packet the AR sent into the tunnel before its
        # punt went in is then already at the MN.
        tag = f"pre-switch:{handover.id}"
        self._sync(confirm=tag)
        if not self._flowsync.awaiting(tag):
            # No switch to wait for (the nAR is not connected): nothing goes
            # through it, so nothing can still enter the tunnel.
            handover.answer_ready = True
        return handover

    def _bicast_steered_from_home(self, sa, binding) -> bool:
        """Whether the home domain steers this MN's bicast: it asked this
        controller, its home, to (a binding here with such a bicast), or its
        home is another domain's controller (no binding here, and the
        identity's realm is not a domain this controller serves)."""
        if binding is not None:
            bicast = self.bicasts.get(binding.home)
            return bicast is not None and bicast.expires is not None
        realm = home_domain(sa.identity)
        return realm is not None and self.graph.topology.domain not in (None, realm)

    def answer_gate(self, identity: str) -> str | None:
        """The tag an answer about ``identity``'s handover waits for, if any.

        OVS answers a barrier once its flow table changed, but its datapath
        cache follows a moment later (the revalidators), so a packet or two
        may still enter the tunnel.  The answer waits for proof that the
        punt works (a punted packet), or SETTLE_S when there is no traffic
        to prove it with."""
        handover = self.handovers.get(identity)
        if handover is None or handover.phase != PRE_SWITCHING or handover.answer_ready:
            return None
        return f"pre-switch:{handover.id}"

    def behind_tunnel(self, tag: str, mac: str, poa: PoA, frame: bytes) -> Send | None:
        """The answer ``frame`` gated on ``tag`` (a pre-switch's), sent into
        its tunnel at the nAR when the tunnel ends where the answer is going.

        The punt's proof says nothing more enters the tunnel; what entered it
        before may still be on its way down the label-switched path, one
        switch hop at a time (tens of ms with ten MNs switching at once).  The
        answer tells the MN to leave: sent down the same path, it reaches the
        MN behind every one of those packets, never ahead of them."""
        kind, handover = self._tagged(tag)
        tunnel = self.tunnels.get(handover.address) if handover and kind == "pre-switch" \
            else None
        if tunnel is None or tunnel.poa != poa or tunnel.mac != mac:
            return None
        nar = self.graph.dpid(self.graph.network(tunnel.network).access_router)
        if not self.connected(nar):
            return None
        return Send(nar, [of.packet_out(frame, tn.into(self.graph, tunnel))])

    def _tagged(self, tag: str) -> tuple[str, Handover | None]:
        """A handover's change tag (``pre-switch:ID``, ``handover:ID``,
        ``drain:ID``): its kind and its handover."""
        kind, _, ident = tag.partition(":")
        return kind, self._by_id(ident)

    def awaiting(self, tag: str) -> bool:
        if self._flowsync.awaiting(tag):
            return True
        kind, handover = self._tagged(tag)
        return kind == "pre-switch" and handover is not None and handover.phase == PRE_SWITCHING and not handover.answer_ready

    def _answer_check(self, handover: Handover, now: float) -> None:
        confirmed = handover.punt_confirmed_at
        if confirmed is not None and not handover.answer_ready and (
                handover.last_punt is not None or now >= confirmed + SETTLE_S):
            handover.answer_ready = True
            LOG.debug("identity=%s mac=%s handover=%d the punt %s", handover.identity,
                      handover.mac, handover.id,
                      "took a packet" if handover.last_punt is not None else "settled")

    # -- the arrival and switching (step 5) ---------------------------------------------

    def expecting(self, poa: PoA) -> Handover | None:
        """The one MN pre-switching to ``poa``'s network, if exactly one is."""
        waiting = self._current.pre_switching("network", poa.network)
        return waiting[0] if len(waiting) == 1 else None

    def arriving(self, mac: str, network: str) -> str | None:
        """The nCoA of the MN's handover pre-switching to ``network``, if any."""
        return next((h.address for h in self._current.pre_switching("mac", mac)
                     if h.network == network), None)

    def host_seen(self, mac: str, address: str, poa: PoA, how: str,
                  now: float) -> tuple[bool, PoA | None]:
        """The controller learned (or relearned) a host: where its MN is.
        Whether it was last seen at another PoA, and, if this is its arrival
        where it pre-switched to, the PoA it pre-switched from (the router
        looks at what it left behind: mpa_sdn/departures.py)."""
        was = self.where.get(mac)
        moved, back = was != poa, was not in (None, poa)
        self.where[mac] = poa
        self._care_of_changed(address)   # the host table changed there
        handover = self._first(self.handovers, [
            h.identity for h in self._current.pre_switching("mac", mac)])
        if handover is not None:
            if poa.network == handover.network and address == handover.address:
                self._arrive(handover, poa, how, now)
                return back, handover.old_poa
            if poa.network != handover.network and moved:
                # Back at its old PoA, or somewhere else: not where it said.
                self._switch_back(handover, "returned" if poa == handover.old_poa
                                  else "elsewhere", now, poa)
                return back, None
        if moved:
            self._follow(mac, poa)
        return back, None

    def host_gone(self, mac: str, address: str, poa: PoA, now: float) -> None:
        self._care_of_changed(address)   # the host table changed there
        if self.where.get(mac) == poa and not any(
                h.poa == poa for h in hosts_of_mac(self.hosts, mac)):
            del self.where[mac]
        def bound() -> list[str]:
            return [h for h in self._bound_at.get(address) if self.bindings[h].mac == mac]
        lost = bound()
        for standby in [self.standbys[h] for h in sorted(lost) if h in self.standbys]:
            self._link_lost(standby, "port", now, poa)   # §7.6.2: a sudden loss
        # A bicast the home domain steers for a move abroad ends when the MN
        # leaves the leg: its arrival is another domain's to see.
        ended = self._end_steered_bicasts(lambda b: (b.mac, b.address) == (mac, address))
        if ended or bound() or any(self.bicasts[h].mac == mac for h in self._legs_at.get(address)):
            self._sync()

    def _arrive(self, handover: Handover, poa: PoA, how: str, now: float) -> None:
        handover.phase, handover.arrival, handover.arrived_at = SWITCHING, how, now
        handover.flush_to = poa
        bicast = self.bicasts.get(handover.home) if handover.mode == BICAST else None
        if bicast is not None and bicast.poa is None:
            # A leg to the MN in another domain, here where it has arrived:
            # nothing can reach it there any more, and the other domain would
            # only try to resolve an address that has left.
            self._end_bicast(handover.home)
        elif bicast is not None:
            self.bicasts[handover.home] = replace(
                bicast, until=now + self.settings.bicast_period_s)
        self.counters[f"handover_arrival_{how}"] += 1
        LOG.info("identity=%s mac=%s handover=%d to network=%s arrived at poa=%s (%s)",
                 handover.identity, handover.mac, handover.id, handover.network, poa.id, how)
        tunnel = self.tunnels.get(handover.address)
        if tunnel is not None:
            self._drop_tunnel(tunnel, "arrived")
        self._switch_flows(handover, poa, now)
        if handover.phase == SWITCHING:
            # The buffer starts going now, paced, while the switches take the
            # new flows: a packet-out at the new PoA needs none of them, and
            # the MN takes it at its home address before its nCoA is even on
            # its interface.  Nothing newer can overtake it: the punts stay
            # until the flows are confirmed and the buffer is empty.
            self._flush_early(handover, now)

    def _switch_flows(self, handover: Handover, poa: PoA | None, now: float) -> None:
        """The host's routes (just sent by the controller) and this module's
        flows for the MN at ``poa``: every switch on the new way, and the
        nAR, confirms before the flush."""
        path = host_path(self.graph, Host(handover.address, handover.mac, poa)) if poa else []
        points = buffer_points(self.graph, handover.network)
        tag = f"handover:{handover.id}"
        self._sync(confirm=tag, also=tuple(sorted(set(path) | set(points))))
        if not self._flowsync.awaiting(tag):  # no switch to wait for
            self._confirmed(handover, now)

    def _switch_back(self, handover: Handover, why: str, now: float,
                     poa: PoA | None = None) -> None:
        # The binding stays where the MN bound it, on the tunnel (RFC 6252
        # §6.3 step 3 binds through it before the move): the MN did not
        # move, the tunnel still carries the home address's traffic to it
        # (and follows it, _follow), and a pre-switch again (the MN's, or a
        # policy engine's) needs the binding there to buffer for it.  It
        # falls back when the tunnel ends (_fall_back).
        handover.back, handover.reason = True, why
        handover.flush_to = poa or self.where.get(handover.mac) or handover.old_poa
        self.counters[f"handover_switch_back_{why}"] += 1
        LOG.warning("identity=%s mac=%s handover=%d to network=%s switching back (%s), "
                    "delivering %d buffered packets at poa=%s", handover.identity, handover.mac,
                    handover.id, handover.network, why, len(handover.buffer),
                    handover.flush_to.id if handover.flush_to else None)
        if handover.mode == BICAST and self.bicasts.pop(handover.home, None) is not None:
            self._sync()   # the MN stays where it was: one leg is enough
        if poa is not None:
            self._follow(handover.mac, poa)
        handover.phase, handover.arrived_at = SWITCHING, now
        self._confirmed(handover, now)

    def _handover_confirmed(self, tag: str, now: float) -> None:
        """The last stage of a change tagged for a handover is confirmed:
        the phase that waited for it goes on."""
        kind, handover = self._tagged(tag)
        if handover is None:
            return
        if kind == "pre-switch":
            handover.punt_confirmed_at = now
            self._answer_check(handover, now)
        elif kind == "handover" and handover.phase == SWITCHING:
            self._confirmed(handover, now)
        elif kind == "drain" and handover.phase == DRAINING:
            self._complete(handover, now)

    def switch_gone(self, dpid: int, now: float) -> None:
        """A switch disconnected: its barriers will never be answered."""
        for tag in self._flowsync.tags_awaited():
            self.flows_confirmed(dpid, tag, now)
        for handover in [h for h in self._current.live() if h.phase == PRE_SWITCHING]:
            # Nothing goes through a gone AR: nothing to wait for.
            if dpid in {self.graph.dpid(p) for p in buffer_points(self.graph, handover.network)}:
                handover.answer_ready = True

    # -- post-switching (step 6) ----------------------------------------------------------

    def _confirmed(self, handover: Handover, now: float) -> None:
        handover.confirmed_at = now
        handover.phase = FLUSHING
        # The pace holds across an early batch (see _arrive); an empty
        # buffer has nothing to pace.
        handover.next_flush = max(now, handover.next_flush)
        self.counters["handover_flows_confirmed"] += 1
        if now >= handover.next_flush or not handover.buffer:
            self._flush(handover, now)

    def _flush(self, handover: Handover, now: float) -> None:
        s = self.settings
        if handover.mode == COPY and not handover.copies_placed and not self._place_copies(
                handover, now):
            return
        self._deliver_batch(handover, now)
        if not handover.buffer:
            if handover.emptied_at is None:
                handover.emptied_at = now
            # Empty: with traffic still coming, relay it until the controller
            # has caught up right behind a relayed packet (caught_up), or
            # nothing came for QUIET_S.
            if handover.last_punt is None or now - handover.last_punt >= QUIET_S:
                self._drain(handover, now)
            else:
                handover.relaying = True
                handover.quiet_until = handover.last_punt + QUIET_S

    def _flush_early(self, handover: Handover, now: float) -> None:
        """The next batch while the new flows are still being confirmed
        (Handover.flushes_early); the punts stay, so the order holds."""
        if handover.flushes_early():
            self._deliver_batch(handover, now)

    def _drain(self, handover: Handover, now: float) -> None:
        """Stop punting.  What was punted before the switch applied that is
        delivered as it comes (see packet_in)."""
        handover.phase, handover.cut_at = DRAINING, now
        # The arrival's deletes over the drained address at the nAR (the
        # tunnel's, which outrank the new route there) go now if still
        # settling: once the punt is gone, the route must take the packets.
        # The rest settle their full time (after a sudden loss, the old
        # care-of's copying flow catches what an edge's cache still sends
        # the old way).
        for point in buffer_points(self.graph, handover.network):
            self._flowsync.release_early(f"handover:{handover.id}", self.graph.dpid(point),
                                         set(handover.buffered_addresses()))
        tag = f"drain:{handover.id}"
        self._sync(confirm=tag)
        if not self._flowsync.awaiting(tag):
            self._complete(handover, now)

    def _complete(self, handover: Handover, now: float) -> None:
        handover.phase = COMPLETED
        handover.ended_at = now
        self.counters["handover_switched_back" if handover.back else "handover_completed"] += 1
        LOG.info("identity=%s mac=%s handover=%d to network=%s %s: %s", handover.identity,
                 handover.mac, handover.id, handover.network,
                 "switched back" if handover.back else "completed", handover.view())
        view = handover.record = handover.view()
        self.history.append(view)
        if not handover.back:
            self.settled[handover.identity] = (handover.network, now)
        self._told("handover", view)   # its end: the metrics and actions follow it

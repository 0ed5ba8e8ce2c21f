"""Make-before-break: every feature's desired flows, and their differences
sent in stages (RFC 6252 §6.3 steps 3-6 all change flows this way).

Each feature of mobility (tunnels, bindings, buffers, and whatever comes
next: a second tunnel kind, QoS meters) is a :class:`FlowProvider`: it names
its subjects (one per flow cookie, :mod:`mpa_sdn.tables`), builds one
subject's flows, and says in which stage a flow of its goes.  The engine,
:class:`FlowSync`, knows no feature: a change marks the subjects it touches
(:meth:`FlowSync.mark`), and :meth:`FlowSync.sync` builds only their flows
again and sends the difference:

1. the flows that receive traffic (``RECEIVE``),
2. the flows that steer traffic to them (``STEER``: an edge's rewrite to a
   new care-of would otherwise send packets where nothing takes them yet),
3. the flows that drop what used to go on (``WITHDRAW``),

each stage once every switch of the one before has answered its barrier,
the withdrawing stage and the deletes ``SETTLE_S`` after that (the
datapath's cache follows a confirmed flow table a moment later: until then
packets may still go the old way, which a drop would end as a delete would).  Deletes are strict, by table,
priority, match and the subject's cookie, never by a broad match.  A
reconnecting switch is reconciled against the same desired flows
(:attr:`FlowSync.installed`), so a flow never leaks and never goes missing.

:class:`DesiredFlows` keeps the flows by subject.  When a subject changes,
only its flows are built again, and :meth:`DesiredFlows.update` says which
flows of the whole desired state that changed, so a change costs the same
with one MN or ten thousand.  Where two subjects want a flow with the same
key (table, priority, match), the one that comes later in the order of
features, then subjects (each by address, as text) holds it, as when the
whole state is built in that order; the others' wishes are kept and come
back if it lets go.
"""

from __future__ import annotations

import collections
import itertools
import logging
from typing import Callable, Iterable, Protocol

from mpa_sdn import openflow as of
from mpa_sdn.mobility.records import SETTLE_S
from mpa_sdn.openflow import Send
from mpa_sdn.tables import Feature, address_cookie, address_of, feature_of

LOG = logging.getLogger("mpa_sdn.mobility")
RECEIVE, STEER, WITHDRAW = "receive", "steer", "withdraw"
_SETTLING = -1   # awaited in a tag's place of a dpid while its withdrawals settle


class _Withdrawing(list):
    """A change's withdrawing stage: it goes SETTLE_S after the stage before."""

    settled = False
STAGES = (RECEIVE, STEER, WITHDRAW)   # the order the stages go in


class FlowProvider(Protocol):
    """A feature's flows, as the engine asks for them."""

    feature: Feature

    def subjects(self) -> Iterable[str]:
        """The addresses that name this feature's subjects now."""

    def flows(self, address: str) -> dict[str, list]:
        """The flows of the subject ``address`` names, by switch ({}: none)."""

    def stage(self, mod) -> str:
        """The stage a new or changed flow of this feature goes in (STAGES)."""


def order_of(cookie: int) -> tuple:
    """Where a subject comes in the whole state's build order."""
    return feature_of(cookie), address_of(cookie)


def delete_of(mod):
    """The strict delete of exactly this flow, scoped by its cookie."""
    return of.delete_strict_of(mod, mod.cookie, (1 << 64) - 1)


class DesiredFlows:
    """The desired flows in wire form: a flow is its flow-mod's bytes
    (:class:`mpa_sdn.flow_templates.FlowMod`), keyed by the bytes of its
    table, priority and match (``of.flow_key``); two flows are the same flow
    when their bytes are.  Some 0.3 KiB a flow, against 1.3 KiB as Ryu's
    objects."""

    def __init__(self):
        # switch -> {key: flow-mod}: what reconnecting switches are
        # reconciled against.
        self.installed: dict[str, dict] = {}
        self._parts: dict[int, tuple] = {}     # cookie -> its (switch, key)s
        self._shadowed: dict[tuple, dict] = {}  # (switch, key) -> {order: flow-mod}

    def update(self, cookie: int, by_switch: dict[str, list]) -> list[tuple]:
        """The subject's flows are now ``by_switch``.  Returns what changed
        in the whole state: (switch, key, before, after), each of before
        and after a flow-mod or None."""
        new: dict[tuple, object] = {}
        for switch, mods in by_switch.items():
            for mod in mods:
                new[(switch, of.flow_key(mod))] = mod
        touched = dict.fromkeys(self._parts.pop(cookie, ()))
        touched.update(dict.fromkeys(new))
        if new:
            self._parts[cookie] = tuple(new)
        changes = []
        for place in touched:
            switch, key = place
            table = self.installed.setdefault(switch, {})
            before = table.get(key)
            after = new.get(place)
            others = self._shadowed.pop(place, None)
            if others is not None or (before is not None and before.cookie != cookie):
                after = self._contend(place, cookie, before, after, others or {})
            if after is None:
                table.pop(key, None)
                if not table:
                    del self.installed[switch]
            else:
                table[key] = after
            if before is not after and before != after:
                changes.append((switch, key, before, after))
        return changes

    def _contend(self, place, cookie, before, mine, others: dict):
        """Several subjects want the flow at ``place``: the last in order
        holds it; the rest wait in the shadow."""
        others.pop(order_of(cookie), None)
        if before is not None and before.cookie != cookie:
            others[order_of(before.cookie)] = before
        if mine is not None:
            others[order_of(cookie)] = mine
        if not others:
            return None
        winner = others.pop(max(others))
        if others:
            self._shadowed[place] = others
        return winner


class FlowSync:
    """The engine: the desired flows of every provider's subjects, and the
    stages that take the switches there (see the module's docstring).

    ``graph`` names switches and their dpids, ``connected`` says whether a
    dpid is connected now; what to send collects in :attr:`out` (with
    anything else the caller emits between, in order) until :meth:`drain`."""

    def __init__(self, graph, connected: Callable[[int], bool],
                 counters: collections.Counter, providers: Iterable[FlowProvider]):
        self.graph, self.connected, self.counters = graph, connected, counters
        self.providers = {p.feature: p for p in providers}
        self._flows = DesiredFlows()
        self.installed = self._flows.installed    # switch -> {key: flow-mod}
        self._dirty: set[int] = set()              # cookies whose flows may have changed
        # tag -> (dpids awaited, later stages of adds, deletes)
        self._deferred: dict[str, tuple[set, list, list]] = {}
        # [when, tag, deletes]: the deletes of a confirmed change, settling
        self.breaks: collections.deque = collections.deque()
        # [when, tag, batch]: a change's withdrawing stage, settling likewise
        self._withdrawals: collections.deque = collections.deque()
        self._breaks_of: dict[str, list] = {}      # tag -> its entries in breaks
        self._tags = itertools.count(1)
        self.out: list = []
        self.deliveries: list = []   # packet-outs to MNs: ahead of ``out``

    def mark(self, feature: Feature, address: str) -> None:
        """The subject ``address`` of ``feature`` may want other flows now."""
        self._dirty.add(address_cookie(feature, address))

    def deliver(self, send: Send) -> None:
        """A packet-out to an MN (from a handover's buffer, or relayed):
        it goes ahead of the flow changes of the same batch, which it needs
        none of, so that a switch busy installing them does not hold it."""
        self.deliveries.append(send)

    def take_deliveries(self) -> list:
        out, self.deliveries = self.deliveries, []
        return out

    def drain(self) -> list:
        out, self.out = self.take_deliveries() + self.out, []
        return out

    def flows_for(self, switch: str) -> list:
        return list(self.installed.get(switch, {}).values())

    def flow_count(self, switch: str) -> int:
        return len(self.installed.get(switch, {}))

    def awaiting(self, tag: str) -> bool:
        """Barriers tagged ``tag`` are still to come back."""
        return tag in self._deferred

    # -- desired flows ------------------------------------------------------------------

    def desired(self) -> dict[str, dict]:
        """Every flow the providers want, built from the whole state: what
        ``installed`` holds after a ``sync``, built again from scratch."""
        flows: dict[str, list] = collections.defaultdict(list)
        for feature, provider in sorted(self.providers.items()):
            for address in sorted(provider.subjects()):
                for switch, mods in provider.flows(address).items():
                    flows[switch] += mods
        out = {}
        for switch, mods in flows.items():
            table = {of.flow_key(mod): mod for mod in mods}
            if table:
                out[switch] = table
        return out

    def refresh(self) -> list[tuple]:
        """Build the marked subjects' flows again, in the whole state's
        order; returns the changes (DesiredFlows.update)."""
        dirty, self._dirty = self._dirty, set()
        changes = []
        for cookie in sorted(dirty, key=order_of):
            flows = self.providers[feature_of(cookie)].flows(address_of(cookie))
            changes += self._flows.update(cookie, flows)
        return changes

    # -- the stages ---------------------------------------------------------------------

    def sync(self, confirm: str | None = None, also: tuple = ()) -> None:
        """Send what changed, in STAGES, then the deletes.  ``confirm``: tag
        the barriers of every switch that gets adds, and of ``also``
        (switches whose flows others changed), so the caller hears when all
        of them hold their new flows (:meth:`confirmed` says True)."""
        staged: dict[str, dict[str, list]] = {stage: {} for stage in STAGES}
        deletes_by: dict[str, list] = {}
        for switch, _, before, after in self.refresh():
            if after is None:
                deletes_by.setdefault(switch, []).append(delete_of(before))
            else:
                stage = self.providers[feature_of(after.cookie)].stage(after)
                staged[stage].setdefault(switch, []).append(after)
        live, dpid = self.connected, self.graph.dpid
        for switch in also:  # a barrier only, with the first stage
            staged[STAGES[0]].setdefault(switch, [])
        sends = []
        for stage in STAGES:
            batch = [Send(dpid(s), mods, barrier=True)
                     for s, mods in sorted(staged[stage].items()) if live(dpid(s))]
            if batch:
                sends.append(_Withdrawing(batch) if stage == WITHDRAW else batch)
        deletes = [Send(dpid(s), msgs, barrier=True)
                   for s, msgs in sorted(deletes_by.items()) if live(dpid(s))]
        self._hold(sends, deletes, confirm)

    def _hold(self, sends: list[list[Send]], deletes: list[Send], confirm: str | None) -> None:
        """The first stage goes now; the later ones and the deletes wait
        for its barriers (under ``confirm``, or a tag of their own when
        there is anything to wait for)."""
        tag = confirm or (f"mobility:{next(self._tags)}"
                          if sends and (deletes or len(sends) > 1) else None)
        if not sends:
            if confirm is not None and deletes:
                for send in deletes:
                    send.confirm = confirm
                self._deferred.setdefault(confirm, (set(), [], []))[0].update(
                    s.dpid for s in deletes)
            self.out += deletes
            return
        if tag is None:
            self.out += sends[0]
            return
        for batch in sends:
            for send in batch:
                send.confirm = tag
        held = self._deferred.get(tag)
        if held is None:
            self._deferred[tag] = ({s.dpid for s in sends[0]}, sends[1:], deletes)
            self.out += sends[0]
        else:
            # More for a tag still awaited: its first stage joins now.
            held[0].update(s.dpid for s in sends[0])
            self.out += sends[0]
            held[1].extend(sends[1:])
            held[2].extend(deletes)

    def confirmed(self, dpid: int, tag: str, now: float) -> bool:
        """``dpid`` answered a barrier tagged ``tag``: the next stage goes
        once every switch of this one has.  True: the last stage is
        confirmed (its deletes settle from ``now``)."""
        held = self._deferred.get(tag)
        LOG.debug("dpid=%016x switch=%s confirmed %s; awaiting %s", dpid,
                  self.graph.switch_of_dpid(dpid), tag,
                  held and (",".join(f"{d:016x}" for d in sorted(held[0])) or "no switch"))
        if held is None:
            return False
        held[0].discard(dpid)
        if held[0]:
            return False
        awaited, later, deletes = held
        while later:
            if isinstance(later[0], _Withdrawing) and not later[0].settled:
                # What it drops may still come the old way for SETTLE_S.
                later[0].settled = True
                self._withdrawals.append([now + SETTLE_S, tag])
                awaited.add(_SETTLING)
                return False
            batch = [s for s in map(self._still_wanted, later.pop(0))
                     if s is not None and self.connected(s.dpid)]
            if batch:
                awaited.update(s.dpid for s in batch)
                self.out += batch
                return False
        del self._deferred[tag]
        if deletes:
            # A barrier's answer means the flow table changed; the datapath's
            # cache follows within SETTLE_S, and until then packets may still
            # go the old way, needing the old flows at the far end.
            entry = [now + SETTLE_S, tag, deletes]
            self.breaks.append(entry)
            self._breaks_of.setdefault(tag, []).append(entry)
        return True

    def tags_awaited(self) -> list[str]:
        """The tags whose barriers are still to come back."""
        return list(self._deferred)

    def next_due(self) -> float | None:
        """When the oldest settling deletes (or withdrawing stage) may go."""
        due = [q[0][0] for q in (self.breaks, self._withdrawals) if q]
        return min(due) if due else None

    def release_breaks(self, now: float) -> None:
        """Send the settled deletes.  A delete of a flow wanted again
        meanwhile (a flip back within SETTLE_S) is dropped: it would
        remove the new one."""
        while self._withdrawals and self._withdrawals[0][0] <= now:
            _, tag = self._withdrawals.popleft()
            if tag in self._deferred:
                self.confirmed(_SETTLING, tag, now)
        breaks = self.breaks   # oldest first: the settled ones lead
        while breaks and breaks[0][0] <= now:
            entry = breaks.popleft()
            self._forget_break(entry)
            for send in entry[2]:
                self._send_deletes(send.dpid, send.messages)

    def release_early(self, tag: str, dpid: int, destinations: set[str]) -> None:
        """Send now, settled or not, the deletes of ``tag``'s change at
        ``dpid`` over ``destinations`` (IPv4 destinations matched)."""
        for entry in list(self._breaks_of.get(tag, ())):
            kept = []
            for send in entry[2]:
                go = [m for m in send.messages
                      if send.dpid == dpid and of.matches_any(m, "ipv4_dst", destinations)]
                stay = [m for m in send.messages if m not in go]
                self._send_deletes(send.dpid, go)
                if stay:
                    kept.append(Send(send.dpid, stay, barrier=True))
            entry[2] = kept
            if not kept:
                self.breaks.remove(entry)
                self._forget_break(entry)

    def _forget_break(self, entry: list) -> None:
        entries = self._breaks_of[entry[1]]
        entries.remove(entry)
        if not entries:
            del self._breaks_of[entry[1]]

    def _still_wanted(self, send: Send) -> Send | None:
        """A held stage's flows less those changed or unwanted since it was
        held (a cancel, a second binding update): the change that did that
        sent what is wanted now, and the old flow must not land after it.
        A stage kept only for its barriers stays as it is."""
        if not send.messages:
            return send
        wanted = self.installed.get(self.graph.switch_of_dpid(send.dpid), {})
        keep = [m for m in send.messages if wanted.get(of.flow_key(m)) == m]
        if len(keep) == len(send.messages):
            return send
        self.counters["mobility_stage_superseded"] += len(send.messages) - len(keep)
        return Send(send.dpid, keep, barrier=True, confirm=send.confirm) if keep else None

    def _send_deletes(self, dpid: int, deletes: list) -> None:
        """Strict deletes, less those of flows wanted again meanwhile."""
        wanted = self.installed.get(self.graph.switch_of_dpid(dpid), {})
        go = [m for m in deletes if of.flow_key(m) not in wanted]
        if go and self.connected(dpid):
            self.out.append(Send(dpid, go, barrier=True))

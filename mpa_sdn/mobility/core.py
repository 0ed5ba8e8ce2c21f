"""Proactive handover, composed: :class:`Mobility` (RFC 6252 §6.3 steps 2-6,
§7.4-§7.6, Appendix C.1 and C.4).

The state is declarative: tunnels, bindings and the buffering punts of
handovers in progress (:mod:`~mpa_sdn.mobility.state`).  Each of them (a
subject, named by its flows' cookie) has its flows, built by its feature's
provider, and together they are every flow mobility wants on every switch
(:meth:`Mobility.desired`).  A change marks the subjects it touches; the
make-before-break engine (:mod:`~mpa_sdn.mobility.flowsync`) builds only
their flows again and sends the difference in stages, so a tunnel or a
binding never leaks and never goes missing.

The steps each have their module, and :class:`Mobility` is their parts put
together: the tunnel (:mod:`~mpa_sdn.mobility.tunnels`), the binding update
(:mod:`~mpa_sdn.mobility.bindings`), pre-switching's buffer
(:mod:`~mpa_sdn.mobility.buffer`), the phases from pre-switching to
post-switching (:mod:`~mpa_sdn.mobility.phases`), copy-and-forward and
bicasting (:mod:`~mpa_sdn.mobility.copy_forward`) and the views
(:mod:`~mpa_sdn.mobility.views`).  The parts are one object's because one
event runs through several steps on one state, in one order: an arrival
(phases) ends the tunnel (tunnels), whose end moves the bindings through it
(bindings), and only then are the flows of all three synced, once.  Each
part reaches the others' state only through the tables and indexes of
:class:`~mpa_sdn.mobility.state.MobilityState`.  The engine is a component
of its own and knows no feature: a new feature is a provider (with a
``Feature`` for its cookies) added to the list in :meth:`Mobility.__init__`.

A binding never points at a care-of address with no way to the MN.  When a
tunnel ends (its lifetime, a release, its lease's or SA's end, the MN's
arrival in its network), each binding through it that reaches the MN no
other way falls back to the MN's address where it is attached now, or ends
when the MN is nowhere the controller knows
(:meth:`~mpa_sdn.mobility.bindings.BindingUpdates._fall_back`):
``binding_fell_back``, ``binding_ended_no_route`` and a ``binding`` event
with the reason.
"""

from __future__ import annotations

import collections
import itertools
from typing import Callable

from mpa_sdn.forwarding import Host
from mpa_sdn.mobility.bindings import BindingFlows, BindingProtocol, BindingUpdates, EdgeRewrite
from mpa_sdn.mobility.buffer import BufferFlows, Buffering
from mpa_sdn.mobility.copy_forward import CopyAndForward
from mpa_sdn.mobility.flowsync import FlowSync
from mpa_sdn.mobility.phases import Phases
from mpa_sdn.mobility.records import (BUFFERING, COMPLETED, FLUSHING, PRE_SWITCHING,
                                      SWITCHING)
from mpa_sdn.mobility.state import MobilityState
from mpa_sdn.mobility.tunnels import TunnelFlows, Tunnelling
from mpa_sdn.mobility.views import Views

LINGER_S = 1.0          # a completed handover still delivers late punts this long


class Mobility(MobilityState, Tunnelling, BindingUpdates, Buffering, Phases, CopyAndForward,
               Views):
    """Mobility's state, its steps' parts and the make-before-break engine."""

    def __init__(self, graph, settings, counters: collections.Counter, correspondents: list[Host],
                 hosts: dict, connected: Callable[[int], bool], store,
                 protocol: BindingProtocol | None = None, policy_of=None, events=None):
        super().__init__(graph, settings, counters, hosts, store, policy_of)
        self.connected = connected
        self.correspondents = correspondents
        self.protocol = protocol or EdgeRewrite(graph, correspondents)
        # Every feature with flows, in the order their flows are built (a
        # later one holds a flow two want: the buffer's punt over the tunnel's).
        self._flowsync = FlowSync(graph, connected, counters, [
            TunnelFlows(graph, self.tunnels),
            BindingFlows(self.protocol, self.bindings, self.reach, self._leg, self._copying,
                         self.pending),
            BufferFlows(graph, self._buffering)])
        # The engine's desired flows and settling deletes, as the property
        # test (tests/unit/core/test_mobility_incremental.py) checks them.
        self._installed = self._flowsync.installed    # switch -> {FlowKey: (record, mod)}
        self._breaks = self._flowsync.breaks          # [when, tag, deletes], settling
        self._ids = itertools.count(1)
        self._load()
        self.events = events   # changes from now on are news (MobilityState._told)

    # -- flows ------------------------------------------------------------------------

    def desired(self) -> dict[str, dict]:
        """Every flow mobility wants, built from the whole state: what
        ``_installed`` holds after a ``_sync``, built again from scratch."""
        return self._flowsync.desired()

    def _sync(self, confirm: str | None = None, also: tuple = ()) -> None:
        """Send what changed (FlowSync.sync: ``confirm`` tags the barriers,
        ``also`` adds switches to wait for)."""
        if self.standbys or self._rings:   # copy-and-forward's rings follow their PoAs
            self._copy_points()
        self._flowsync.sync(confirm, also)

    def flows_for(self, switch: str) -> list:
        return self._flowsync.flows_for(switch)

    def flow_count(self, switch: str) -> int:
        return self._flowsync.flow_count(switch)

    def drain(self) -> list:
        return self._flowsync.drain()

    def flows_confirmed(self, dpid: int, tag: str, now: float) -> None:
        """A switch answered a tagged barrier: the change's next stage goes,
        and once its last is confirmed, the handover waiting for it goes on."""
        if self._flowsync.confirmed(dpid, tag, now):
            self._handover_confirmed(tag, now)

    # -- time -------------------------------------------------------------------------

    def step(self, now: float) -> None:
        """Flush what is due, switch back what missed its deadline, forget
        handovers that lingered, send the deletes whose new flows settled."""
        self._end_bicasts(now)
        self._flowsync.release_breaks(now)
        for handover in self._current.live():
            if handover.phase in BUFFERING:
                handover.buffer.expire(now)   # pre-switching may outlast buffer_time_s
            if handover.phase == FLUSHING and handover.relaying:
                if now >= handover.quiet_until:
                    self._drain(handover, now)
            elif handover.phase == FLUSHING and now >= handover.next_flush:
                self._flush(handover, now)
            elif handover.phase == SWITCHING and now >= handover.next_flush:
                self._flush_early(handover, now)
            elif handover.phase == PRE_SWITCHING and now >= handover.deadline:
                self._switch_back(handover, "deadline", now)
            elif handover.phase == PRE_SWITCHING:
                self._answer_check(handover, now)
        lingering = self._current.lingering
        while lingering and (lingering[0].ended_at is None
                             or now - lingering[0].ended_at > LINGER_S):
            handover = lingering.popleft()
            if handover.phase != COMPLETED:
                continue
            # Its addresses go back to the data plane's ordinary handling,
            # also when a newer handover of the MN has replaced it meanwhile.
            for address in handover.buffered_addresses():
                if self._buffering.get(address) is handover:
                    del self._buffering[address]
            if self.handovers.get(handover.identity) is not handover:
                continue   # no longer the identity's current handover
            del self.handovers[handover.identity]
            if handover.copies is not None:
                self._copy_points()   # its ring goes: its copying flow is long gone

    def tick(self, now: float, wall: float) -> None:
        changed = False
        for tunnel in self.ended("tunnels", wall):
            if self._busy(tunnel.address):
                self._ends_at("tunnels", tunnel.address, wall)   # the next tick looks again
            else:
                self._drop_tunnel(tunnel, "expired")
                changed = True
        for binding in self.ended("bindings", wall):
            self._delete_binding(binding.home, "binding_expired")
            changed = True
        for coming in self.ended("pending", wall):
            # The MN never said it rewrites (it went, or its rewriting failed).
            del self.pending[coming.home]
            self.counters["binding_pending_expired"] += 1
            changed = True
        for standby in self.ended("standbys", wall):
            self._drop_standby(standby.home, "expired")
            changed = True
        changed |= self._end_steered_bicasts(lambda b: b.expires <= wall)
        if changed:
            self._sync()

    def next_due(self) -> float | None:
        """When step next has work: a flushing handover's next batch or
        quiet end, a pre-switching one's deadline or settled punt, a
        settled delete, a bicast's end."""
        due = [self._current.next_due(), self._flowsync.next_due()]
        due += [b.until for b in self.bicasts.values()]
        due = [when for when in due if when is not None]
        return min(due) if due else None

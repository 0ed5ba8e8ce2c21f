"""The words every step of mobility shares: a handover's record and its
phases (:mod:`mpa_sdn.mobility.phases` says what they mean), the index of
each identity's current handover (by id, by phase, and by when it next has
work, so that an event costs the same with ten thousand MNs as with one),
the kinds of mobility's records in the state file, and :class:`Refused`.
"""

from __future__ import annotations

import collections
import heapq
from dataclasses import dataclass, field
from typing import Callable

from mpa_protocol.messages import (  # noqa: F401  (the phases and modes are mobility's words)
    BICAST, BUFFER, COMPLETED, DRAINING, FLUSHING, PRE_SWITCHING, SWITCHED_BACK, SWITCHING)
from mpa_sdn.indexing import Index

BUFFERING = (PRE_SWITCHING, SWITCHING, FLUSHING)
ACTIVE = (PRE_SWITCHING, SWITCHING, FLUSHING, DRAINING)
COPY = "copy-and-forward"       # a mode no MN asks for: the controller's, on a sudden loss
TUNNEL_KIND, BINDING_KIND, STANDBY_KIND = "tunnel", "binding", "standby"   # in the store
SETTLE_S = 0.02         # the datapath follows a confirmed flow change within this
# What decides when a handover next has work (CurrentHandovers.next_due).
TIMING = frozenset({"phase", "relaying", "quiet_until", "next_flush", "deadline",
                    "punt_confirmed_at", "answer_ready"})


class Refused(Exception):
    """A mobility message refused: ``code`` is a signalling error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


@dataclass(slots=True)
class Handover:
    # Slots: ten thousand of them, one an MN, with some thirty fields each;
    # an instance dictionary was about 1 KiB of each.
    id: int
    identity: str
    mac: str
    network: str                 # the target
    address: str                 # the nCoA
    home: str | None
    old_poa: PoA | None
    old_address: str | None      # the care-of before (buffered at its AR with buffer_old)
    buffer_old: bool
    buffer: PacketBuffer
    started: float
    deadline: float
    phase: str = PRE_SWITCHING
    back: bool = False           # it is switching back
    arrival: str | None = None   # how the MN's arrival was seen
    arrived_at: float | None = None
    confirmed_at: float | None = None
    flush_to: PoA | None = None
    next_flush: float = 0.0
    last_punt: float | None = None
    punt_confirmed_at: float | None = None  # the pre-switch punts' barriers came back
    answer_ready: bool = False   # the answer to pre-switch may go
    relaying: bool = False       # flushed: punted packets are relayed as they come
    quiet_until: float = 0.0     # relaying: the punts go now if nothing came
    ended_at: float | None = None
    # Where the time after the arrival goes (the view's ``steps_ms``), and
    # what the cut to the direct path left behind it.
    first_delivered_at: float | None = None   # the first packet out of the buffer
    emptied_at: float | None = None  # the buffer empty: punts relayed as they come
    cut_at: float | None = None      # the punts' delete sent (draining)
    relayed: int = 0                 # punted while relaying, delivered at once
    late: int = 0                    # punted after the cut (buffer_late_delivered)
    last_late_at: float | None = None
    record: dict | None = field(default=None, repr=False, compare=False)  # its history entry
    reason: str | None = None    # why it switched back
    mode: str = BUFFER           # buffer, bicast, or copy-and-forward (a sudden loss)
    copies: CopyRing | None = None       # copy-and-forward: what the lost link was sent
    delivered: list | None = None        # ... the MN's word on what reached it
    copies_placed: bool = False          # ... the undelivered ones are in the buffer
    copies_how: str | None = None        # ... and how they were told apart
    # Told (handover, field) when a TIMING field changes, so that the
    # indexes by phase and the schedule need no scan of every handover.
    watcher: Callable | None = field(default=None, repr=False, compare=False)

    def __setattr__(self, name, value):
        if name in TIMING:
            # No watcher yet while __init__ sets the fields (its slot is the
            # last set): only a watched record reads the old value.
            watcher = getattr(self, "watcher", None)
            if watcher is not None:
                old = getattr(self, name)
                object.__setattr__(self, name, value)
                watcher(self, name, old)
                return
        object.__setattr__(self, name, value)

    def flushes_early(self) -> bool:
        """Whether the buffer goes to the MN while its new flows go in: a
        packet-out at the new PoA needs none of them, and the punts stay
        until they are confirmed, so nothing overtakes what is delivered.  A
        copy-and-forward first sorts out what the MN already got."""
        return self.mode != COPY and bool(self.buffer)

    def buffered_addresses(self) -> tuple[str, ...]:
        if self.buffer_old and self.old_address and self.old_address != self.address:
            return (self.old_address, self.address)
        return (self.address,)

    def view(self) -> dict:
        def ms(a, b):
            return None if a is None or b is None else round((b - a) * 1000, 3)
        return {"id": self.id, "identity": self.identity, "network": self.network,
                "address": self.address, "phase": self.phase, "switched_back": self.back,
                "reason": self.reason, "arrival": self.arrival,
                "from_network": self.old_poa.network if self.old_poa else None,
                "from_poa": self.old_poa.id if self.old_poa else None,
                "to_poa": self.flush_to.id if self.flush_to else None,
                "pre_switch_to_arrival_ms": ms(self.started, self.arrived_at),
                "signal_to_flows_ms": ms(self.arrived_at, self.confirmed_at),
                "total_ms": ms(self.started, self.ended_at), "mode": self.mode,
                "steps_ms": self.steps_ms(), "relayed": self.relayed,
                "late_delivered": self.late,
                **({"copies": {"made": self.copies.made, "decided_by": self.copies_how}}
                   if self.copies is not None else {}),
                "buffer": self.buffer.view()}

    def steps_ms(self) -> dict | None:
        """After the arrival (ms): the first packet delivered from the
        buffer, the new flows confirmed, the buffer empty, the punts' delete
        sent and confirmed, and the last packet punted after it."""
        if self.arrived_at is None:
            return None
        def since(t):
            return None if t is None else round((t - self.arrived_at) * 1000, 3)
        return {"first_delivery": since(self.first_delivered_at),
                "flows_confirmed": since(self.confirmed_at),
                "buffer_empty": since(self.emptied_at), "cut": since(self.cut_at),
                "cut_confirmed": since(self.ended_at), "last_late": since(self.last_late_at)}

    def late_delivered(self, now: float) -> None:
        """A packet punted after the cut was delivered: counted here, and in
        the history entry if the handover has ended."""
        self.late += 1
        self.last_late_at = now
        if self.record is not None:
            self.record["late_delivered"] = self.late
            self.record["steps_ms"] = self.steps_ms()


class CurrentHandovers:
    """Each identity's current handover (Mobility.handovers reports each
    change), by id, by phase and by when it next has work."""

    def __init__(self):
        self._by_id: dict[int, Handover] = {}
        self._live: dict[int, Handover] = {}          # in an ACTIVE phase
        self._pre_switching = Index()                 # ("mac"|"network", value) -> ids
        self.lingering: collections.deque = collections.deque()  # completed, oldest first
        self._relay_due: dict[int, Handover] = {}
        self._due_at: dict[int, float] = {}
        self._due: list[tuple[float, int]] = []       # a heap of (when, id), stale ones too

    def replaced(self, old: Handover | None, new: Handover | None) -> None:
        """``new`` became an identity's current handover in place of ``old``."""
        if old is not None:
            self._by_id.pop(old.id, None)
            self._unindex(old)
        if new is not None:
            self._by_id[new.id] = new
            self._index(new)

    def changed(self, handover: Handover, name: str) -> None:
        """One of its TIMING fields changed."""
        if self._by_id.get(handover.id) is handover:
            (self._index if name == "phase" else self._schedule)(handover)

    def by_id(self, ident: int) -> Handover | None:
        return self._by_id.get(ident)

    def is_current(self, handover: Handover) -> bool:
        return self._by_id.get(handover.id) is handover

    def live(self) -> list[Handover]:
        """In an ACTIVE phase, in the order they entered it."""
        return list(self._live.values())

    def pre_switching(self, kind: str, value: str) -> list[Handover]:
        """Those pre-switching with that ``mac`` or to that ``network``."""
        return [self._by_id[i] for i in self._pre_switching.get((kind, value))]

    def relay_due(self, handover: Handover) -> None:
        if self.is_current(handover):
            self._relay_due[handover.id] = handover

    def take_relay_due(self) -> list[Handover]:
        due, self._relay_due = self._relay_due, {}
        return list(due.values())

    def next_due(self) -> float | None:
        heap, due_at = self._due, self._due_at
        while heap and due_at.get(heap[0][1]) != heap[0][0]:
            heapq.heappop(heap)   # stale: rescheduled, or no longer due
        return heap[0][0] if heap else None

    def _index(self, handover: Handover) -> None:
        self._unindex(handover)
        if handover.phase in ACTIVE:
            self._live[handover.id] = handover
        if handover.phase == PRE_SWITCHING:
            self._pre_switching.add(("mac", handover.mac), handover.id)
            self._pre_switching.add(("network", handover.network), handover.id)
        elif handover.phase == COMPLETED:
            self.lingering.append(handover)
        self._schedule(handover)

    def _unindex(self, handover: Handover) -> None:
        self._live.pop(handover.id, None)
        self._relay_due.pop(handover.id, None)
        self._pre_switching.discard(("mac", handover.mac), handover.id)
        self._pre_switching.discard(("network", handover.network), handover.id)
        self._due_at.pop(handover.id, None)

    def _schedule(self, handover: Handover) -> None:
        """When the handover next has work (Mobility.next_due), on the heap."""
        due = None
        if handover.phase == FLUSHING:
            due = handover.quiet_until if handover.relaying else handover.next_flush
        elif handover.phase == SWITCHING and handover.flushes_early():
            due = handover.next_flush
        elif handover.phase == PRE_SWITCHING:
            due = handover.deadline
            if handover.punt_confirmed_at is not None and not handover.answer_ready:
                due = min(due, handover.punt_confirmed_at + SETTLE_S)
        if due is None:
            self._due_at.pop(handover.id, None)
            return
        if self._due_at.get(handover.id) != due:
            self._due_at[handover.id] = due
            heapq.heappush(self._due, (due, handover.id))
            if len(self._due) > 64 + 4 * len(self._due_at):
                self._due = [(when, i) for i, when in self._due_at.items()]
                heapq.heapify(self._due)

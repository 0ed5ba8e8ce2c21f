"""What happened, in order, for whoever follows (``GET /mpa/v1/events``).

The core emits an event for each change a policy engine or an operator
cares about: a PANA pre-authentication that ended (how, and how long it
took), an MPA-SA established or gone, a lease, a tunnel, a binding,
each phase of a handover, each change of an action, a policy, a switch.
Events are numbered; the last ``size`` are kept so that a client that
reconnects with the last id it saw misses nothing, or learns that it did
(``reset``).

The log is also how one part of the core tells the others of a change: a
part emits, and the parts that react to that kind of event *follow* it
(:meth:`EventLog.follow`, set up once, by :mod:`mpa_sdn.assembly`).
Followers run at once, in the core, in the order they followed, after the
event is logged: an event they emit in turn comes after it.

Listeners (the shell's waiting streams) are called after each event; they
only wake their reader, they never call back into the core.
"""

from __future__ import annotations

import collections
import datetime
import itertools
from typing import Callable

SIZE = 4096
TYPES = ("reset", "preauthentication", "sa", "lease", "tunnel", "binding", "handover", "action",
         "instruction", "policy", "switch")


def rfc3339(wall: float) -> str:
    return (datetime.datetime.fromtimestamp(wall, datetime.timezone.utc)
            .isoformat(timespec="milliseconds").replace("+00:00", "Z"))


class EventLog:
    def __init__(self, wall_offset: float = 0.0, size: int = SIZE, first_id: int = 1):
        self.wall_offset = wall_offset
        self.ring: collections.deque = collections.deque(maxlen=size)
        # The shell starts each process's ids above the last one's (from the
        # clock), so a client resuming after a restart gets ``reset``, not
        # another process's events under ids it has seen.
        self.last_id = first_id - 1
        self.now = 0.0          # the core's time of the event being handled (at())
        self.listeners: list[Callable[[], None]] = []
        # kind -> the core's reactions to it: (event, now) -> None
        self._followers: dict[str, list[Callable[[dict, float], None]]] = {}

    def follow(self, kind: str, reaction: Callable[[dict, float], None]) -> None:
        """Call ``reaction(event, now)`` in the core after each event of ``kind``."""
        assert kind in TYPES, kind
        self._followers.setdefault(kind, []).append(reaction)

    def at(self, now: float) -> None:
        """The core is handling something that happened at ``now`` (monotonic)."""
        self.now = now

    def emit(self, kind: str, *, identity: str | None = None, network: str | None = None,
             dpid: int | None = None, data: dict | None = None,
             wall: float | None = None) -> dict:
        """``wall``: when it happened, if not at the time given to :meth:`at`."""
        assert kind in TYPES, kind
        self.last_id += 1
        event = {"id": self.last_id, "type": kind,
                 "time": rfc3339(self.now + self.wall_offset if wall is None else wall)}
        if identity is not None:
            event["identity"] = identity
        if network is not None:
            event["network"] = network
        if dpid is not None:
            event["dpid"] = dpid
        event["data"] = data if data is not None else {}
        self.ring.append(event)
        for reaction in self._followers.get(kind, ()):
            reaction(event, self.now)
        for listener in list(self.listeners):
            listener()
        return event

    def after(self, cursor: int) -> tuple[list[dict], bool]:
        """The events after id ``cursor``, and whether some of them are gone."""
        if cursor >= self.last_id:
            return [], False
        first = self.ring[0]["id"] if self.ring else self.last_id + 1
        lost = cursor + 1 < first
        start = max(0, cursor + 1 - first)
        return list(itertools.islice(self.ring, start, None)), lost

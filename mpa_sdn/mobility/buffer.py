"""A handover's packet buffer, kept in the controller (RFC 6252 §6.3 step 4, §7.6.1).

OVS never buffers packets in the switch (LAB.md), so a buffering flow punts
whole frames and the controller keeps them until the MN can take them.  One
buffer per handover, bounded three ways (``mpa.buffer_packets``,
``buffer_bytes``, ``buffer_time_s``).

Overflow rule: the newest packet is dropped (tail drop).  The MN then loses
a packet at the end of its outage, never one in the middle of what it gets,
so nothing it receives is out of order, and TCP sees one loss it recovers
from as usual.  Packets older than ``buffer_time_s`` are dropped when the
buffer is flushed or ticked: a packet that waited that long is of no use to
real-time traffic, and a bounded age bounds the delay the buffer adds.

Counters (the controller's, ``buffer_*``): buffered, flushed, and dropped by
reason (full_packets, full_bytes, expired, no_destination).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field


@dataclass
class Buffered:
    src: str | None       # its IPv4 source
    address: str          # the destination it was punted for
    data: bytes
    at: float             # when the controller got it (monotonic)


@dataclass
class PacketBuffer:
    max_packets: int
    max_bytes: int
    max_age_s: float
    counters: collections.Counter
    queue: collections.deque = field(default_factory=collections.deque)
    bytes: int = 0
    buffered: int = 0     # in this buffer's life
    flushed: int = 0
    dropped: int = 0
    max_delay_s: float = 0.0
    total_delay_s: float = 0.0

    def __len__(self) -> int:
        return len(self.queue)

    def add(self, src: str | None, address: str, data: bytes, now: float) -> bool:
        if len(self.queue) >= self.max_packets:
            return self._drop("full_packets")
        if self.bytes + len(data) > self.max_bytes:
            return self._drop("full_bytes")
        self.queue.append(Buffered(src, address, bytes(data), now))
        self.bytes += len(data)
        self.buffered += 1
        self.counters["buffer_buffered"] += 1
        return True

    def prepend(self, items: list[tuple]) -> None:
        """Older packets (src, address, data, at) in front of the queue, in
        their order; outside the bounds, which their source kept."""
        for src, address, data, at in reversed(items):
            self.queue.appendleft(Buffered(src, address, bytes(data), at))
            self.bytes += len(data)
        self.buffered += len(items)
        self.counters["buffer_buffered"] += len(items)

    def _drop(self, reason: str, n: int = 1) -> bool:
        self.dropped += n
        self.counters[f"buffer_dropped_{reason}"] += n
        return False

    def expire(self, now: float) -> None:
        while self.queue and now - self.queue[0].at > self.max_age_s:
            self.bytes -= len(self.queue.popleft().data)
            self._drop("expired")

    def take(self, n: int, now: float) -> list[Buffered]:
        """The oldest ``n`` packets, in the order they came."""
        self.expire(now)
        out = []
        while self.queue and len(out) < n:
            item = self.queue.popleft()
            self.bytes -= len(item.data)
            delay = now - item.at
            self.max_delay_s = max(self.max_delay_s, delay)
            self.total_delay_s += delay
            self.flushed += 1
            out.append(item)
        self.counters["buffer_flushed"] += len(out)
        return out

    def view(self) -> dict:
        return {"packets": len(self.queue), "bytes": self.bytes, "buffered": self.buffered,
                "flushed": self.flushed, "dropped": self.dropped,
                "max_delay_ms": round(self.max_delay_s * 1000, 3),
                "mean_delay_ms": round(self.total_delay_s / self.flushed * 1000, 3)
                if self.flushed else None}

"""Failed attempts counted per key in a sliding window, with a lockout.

The Authentication Agent keeps one per identity and one per source address,
so that guessing a password (the domain's RADIUS server rejects each wrong
one), or flooding pre-authentications from one address, is slowed to
``failures_per_*`` rejections a ``failure_window_s`` and then refused for
``lockout_s``.  The keys it remembers are bounded (``max_keys``;
the oldest goes first, counted in ``evicted``).
"""

from __future__ import annotations

import collections


class FailureLimiter:
    """Failed attempts per key (identity or source) in a sliding window."""

    def __init__(self, limit: int, window_s: float, lockout_s: float, max_keys: int = 100_000):
        self.limit, self.window_s, self.lockout_s = limit, window_s, lockout_s
        self.max_keys = max_keys
        self._failures: dict[str, collections.deque] = {}
        self._locked: dict[str, float] = {}
        self.evicted = 0  # keys dropped to keep within max_keys

    def retry_after(self, key: str, now: float) -> float:
        until = self._locked.get(key)
        if until is None:
            return 0.0
        if until <= now:
            del self._locked[key]
            return 0.0
        return until - now

    def failed(self, key: str, now: float) -> None:
        times = self._failures.get(key)
        if times is None:
            if len(self._failures) >= self.max_keys:
                self._expire(now)
            while len(self._failures) >= self.max_keys:
                # Still full of live keys: the oldest goes, so memory stays bounded.
                del self._failures[next(iter(self._failures))]
                self.evicted += 1
            times = self._failures[key] = collections.deque()
        times.append(now)
        while times and times[0] <= now - self.window_s:
            times.popleft()
        if len(times) >= self.limit:
            self._locked[key] = now + self.lockout_s
            times.clear()

    def _expire(self, now: float) -> None:
        for key in [k for k, t in self._failures.items() if not t or t[-1] <= now - self.window_s]:
            del self._failures[key]
        for key in [k for k, until in self._locked.items() if until <= now]:
            del self._locked[key]

    tick = _expire

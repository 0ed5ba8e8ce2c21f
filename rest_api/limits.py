"""Bounds on what REST clients hold at once: in all, and per key (a source
address, a token's name).

A bound is checked when something is taken, never by queueing: a client
past it is refused at once and the refusal is counted, so one client's
waits can never make another's requests wait behind them.
"""

from __future__ import annotations

import collections
from typing import MutableMapping


class Slots:
    """``total`` slots in all, at most ``per_key`` of them for one key.

    ``take`` answers None when it took one, else the name of the bound that
    refused it (``"full"`` or ``"key"``); each refusal adds one to the
    counter ``<counter>_full`` or ``<counter>_<key_name>_full``.  With
    ``gauge``, the counter ``<counter>_open`` is the number held, after
    each take and give.
    """

    def __init__(self, total: int, per_key: int | None, counters: MutableMapping,
                 counter: str, key_name: str = "source", gauge: bool = False):
        self.total, self.per_key = total, per_key
        self.counters, self.counter, self.key_name = counters, counter, key_name
        self.gauge = f"{counter}_open" if gauge else None
        self.held = 0
        self._by_key: collections.Counter = collections.Counter()

    def take(self, key: str) -> str | None:
        if self.held >= self.total:
            return self._refused("full", f"{self.counter}_full")
        if self.per_key is not None and self._by_key[key] >= self.per_key:
            return self._refused("key", f"{self.counter}_{self.key_name}_full")
        self.held += 1
        self._by_key[key] += 1
        self._show()
        return None

    def give(self, key: str) -> None:
        self.held -= 1
        self._by_key[key] -= 1
        if self._by_key[key] <= 0:
            del self._by_key[key]
        self._show()

    def _refused(self, bound: str, name: str) -> str:
        self.counters[name] = self.counters.get(name, 0) + 1
        return bound

    def _show(self) -> None:
        if self.gauge is not None:
            self.counters[self.gauge] = self.held

    def of(self, key: str) -> int:
        return self._by_key.get(key, 0)

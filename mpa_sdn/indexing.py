"""Secondary indexes kept beside the core's tables, so that what an event
asks about one MN (its MAC, its identity, its care-of address) costs the
same with ten thousand MNs as with one.

:class:`Watched` is a dict that reports every change of a key to its owner,
which keeps its indexes (and its record of what changed since it last
looked) from there; :class:`Index` maps a value to the keys that have it, in
the order they got it.
"""

from __future__ import annotations

from typing import Callable, Hashable, Iterator


class Index:
    """value -> the keys with that value (an ordered set each)."""

    __slots__ = ("_keys",)

    def __init__(self):
        self._keys: dict[Hashable, dict] = {}

    def add(self, value, key) -> None:
        self._keys.setdefault(value, {})[key] = None

    def discard(self, value, key) -> None:
        keys = self._keys.get(value)
        if keys is not None:
            keys.pop(key, None)
            if not keys:
                del self._keys[value]

    def get(self, value) -> tuple:
        keys = self._keys.get(value)
        return tuple(keys) if keys else ()

    def count(self, value) -> int:
        return len(self._keys.get(value, ()))


_GONE = object()


class Watched(dict):
    """A dict that calls ``changed(key, old, new)`` after every change of a
    key (``old`` or ``new`` None where the key was or is absent)."""

    def __init__(self, changed: Callable[[Hashable, object, object], None]):
        super().__init__()
        self._changed = changed

    def __setitem__(self, key, value) -> None:
        old = super().get(key)
        super().__setitem__(key, value)
        self._changed(key, old, value)

    def __delitem__(self, key) -> None:
        old = super().pop(key)
        self._changed(key, old, None)

    def pop(self, key, default=_GONE):
        if key not in self:
            if default is _GONE:
                raise KeyError(key)
            return default
        old = super().pop(key)
        self._changed(key, old, None)
        return old

    def setdefault(self, key, default=None):
        if key not in self:
            self[key] = default
        return self[key]

    def update(self, *args, **kwargs) -> None:
        for key, value in dict(*args, **kwargs).items():
            self[key] = value

    def popitem(self):
        key = next(reversed(self))
        return key, self.pop(key)

    def clear(self) -> None:
        for key in list(self):
            del self[key]


class HostTable(dict):
    """The controller's learned hosts (address -> Host), indexed by MAC and
    by PoA; written only by item assignment and deletion."""

    def __init__(self):
        super().__init__()
        self._by_mac = Index()
        self._by_poa = Index()

    def __setitem__(self, address, host) -> None:
        old = super().get(address)
        super().__setitem__(address, host)
        # An address keeps its place among its MAC's and its PoA's, as in the table.
        if old is None or old.mac != host.mac:
            if old is not None:
                self._by_mac.discard(old.mac, address)
            self._by_mac.add(host.mac, address)
        if old is None or old.poa != host.poa:
            if old is not None:
                self._by_poa.discard(old.poa, address)
            self._by_poa.add(host.poa, address)

    def __delitem__(self, address) -> None:
        old = super().pop(address)
        self._by_mac.discard(old.mac, address)
        self._by_poa.discard(old.poa, address)

    def of_mac(self, mac: str) -> Iterator:
        return (self[a] for a in self._by_mac.get(mac))

    def at_poa(self, poa) -> Iterator:
        return (self[a] for a in self._by_poa.get(poa))


def hosts_of_mac(hosts: dict, mac: str) -> Iterator:
    """The hosts with ``mac``, through the table's index where it has one."""
    if isinstance(hosts, HostTable):
        return hosts.of_mac(mac)
    return (h for h in hosts.values() if h.mac == mac)

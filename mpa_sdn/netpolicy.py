"""Each network's handover policy: the bounds the AA, CA and AR apply to an
MN's handover into (or out of) that network.

The topology file's ``mpa:`` section (and a network's own
``lease_time_s``) gives the defaults; an admin may change any field of one
network through the API (``PATCH /mpa/v1/networks/{id}/policy``).  Changes
are kept in the state store and apply to what starts after them: a tunnel,
lease or buffer already made keeps its bounds.

Which network's policy applies:

- ``tunnel_lifetime_s``, ``buffer_*``: the handover's target (its AR
  holds the tunnel's end and the buffer);
- ``lease_time_s``, ``sa_hold_s``: the network of the lease or SA;
- ``dwell_s``: the network the MN is in: a handover out of it is refused
  until the MN has been there that long (against ping-pong);
- ``max_candidates``: the MN's network, for a policy engine's ``prepare``.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

KIND = "policy"
FIELDS = ("max_candidates", "tunnel_lifetime_s", "lease_time_s", "buffer_packets",
          "buffer_bytes", "buffer_time_s", "sa_hold_s", "dwell_s")
DEFAULT_MAX_CANDIDATES = 4


@dataclass(frozen=True)
class NetworkPolicy:
    network: str
    max_candidates: int
    tunnel_lifetime_s: int
    lease_time_s: int
    buffer_packets: int
    buffer_bytes: int
    buffer_time_s: float
    sa_hold_s: int
    dwell_s: float = 0.0
    changed: tuple[str, ...] = ()   # the fields set through the API

    def view(self) -> dict:
        return {**dataclasses.asdict(self), "changed": list(self.changed)}


def default_for(network, settings) -> NetworkPolicy:
    """What the topology says for ``network`` (its ``lease_time_s`` over the mpa section's)."""
    return NetworkPolicy(
        network=network.id, max_candidates=DEFAULT_MAX_CANDIDATES,
        tunnel_lifetime_s=settings.tunnel_lifetime_s,
        lease_time_s=network.lease_time_s or settings.lease_time_s,
        buffer_packets=settings.buffer_packets, buffer_bytes=settings.buffer_bytes,
        buffer_time_s=settings.buffer_time_s, sa_hold_s=settings.sa_hold_s)


class Policies:
    """Every network's policy, with the API's changes kept in ``store``."""

    def __init__(self, networks: dict, settings, store=None, events=None):
        self.store, self.events = store, events
        self._defaults = {n: default_for(net, settings) for n, net in networks.items()}
        self._changes: dict[str, dict] = {}
        if store is not None:
            for network, changes in store.load(KIND).items():
                if network in self._defaults:   # a network gone from the topology: ignored
                    self._changes[network] = {k: v for k, v in changes.items() if k in FIELDS}
        self._cache = {n: self._build(n) for n in self._defaults}

    def __contains__(self, network: str) -> bool:
        return network in self._defaults

    def of(self, network: str) -> NetworkPolicy:
        return self._cache[network]

    def _build(self, network: str) -> NetworkPolicy:
        changes = self._changes.get(network, {})
        return dataclasses.replace(self._defaults[network], **changes,
                                   changed=tuple(sorted(changes)))

    def update(self, network: str, changes: dict) -> NetworkPolicy:
        """``changes``: field -> value, or None for the default (checked by the caller)."""
        current = dict(self._changes.get(network, {}))
        for name, value in changes.items():
            if name not in FIELDS:
                raise ValueError(f"no policy field {name!r}")
            if value is None:
                current.pop(name, None)
            else:
                current[name] = value
        self._changes[network] = current
        if self.store is not None:
            if current:
                self.store.put(KIND, network, current)
            else:
                self.store.delete(KIND, network)
        self._cache[network] = policy = self._build(network)
        if self.events is not None:
            self.events.emit("policy", network=network, data=policy.view())
        return policy

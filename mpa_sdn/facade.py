"""The typed facade the REST layer calls: plain data in, plain data out.

Errors are exceptions with a meaning (``NotFound``), never HTTP codes; the
REST layer maps them.
"""

from __future__ import annotations

from mpa_sdn.controller import Controller
from mpa_sdn.topology import Network


class NotFound(Exception):
    def __init__(self, kind: str, ident: str):
        super().__init__(f"unknown {kind} {ident!r}")
        self.kind = kind
        self.ident = ident


class Facade:
    def __init__(self, controller: Controller, clock):
        self._core = controller
        self._graph = controller.graph
        self._clock = clock  # monotonic seconds, the core's time

    def _network(self, network_id: str) -> Network:
        try:
            return self._graph.network(network_id)
        except KeyError:
            raise NotFound("network", network_id) from None

    def _network_view(self, network: Network) -> dict:
        return {
            "id": network.id,
            "role": network.role,
            "domain": network.domain,
            "served_by": network.served_by,
            "prefix": str(network.prefix),
            "gateway": {"address": str(network.gateway), "mac": network.gateway_mac},
            "access_router": {"switch": network.access_router,
                              "dpid": self._graph.dpid(network.access_router)},
            "poas": [{"id": p.id, "switch": p.switch, "port": p.port} for p in network.poas],
            "pool": ({"first": str(network.pool.first), "last": str(network.pool.last),
                      "size": len(network.pool)} if network.pool else None),
            "neighbours": self._graph.neighbours(network.id),
        }

    def networks(self) -> list[dict]:
        return [self._network_view(n) for n in self._graph.networks()]

    def network(self, network_id: str) -> dict:
        return self._network_view(self._network(network_id))

    def neighbours(self, network_id: str) -> list[dict]:
        self._network(network_id)
        return [c.as_dict() for c in self._graph.candidates(network_id)]

    def switches(self) -> list[dict]:
        return self._core.switch_summary(self._clock())

    def counters(self) -> dict:
        return dict(sorted(self._core.counters.items()))

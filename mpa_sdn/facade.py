"""The typed facade the REST layer calls: plain data in, plain data out.

Errors are exceptions with a meaning (``NotFound``), never HTTP codes; the
REST layer maps them.
"""

from __future__ import annotations

from mpa_sdn.controller import Controller
from mpa_sdn.service import REST, Answer, Origin
from mpa_sdn.topology import Network


class NotFound(Exception):
    def __init__(self, kind: str, ident: str):
        super().__init__(f"unknown {kind} {ident!r}")
        self.kind = kind
        self.ident = ident


def run_here(clock):
    """Run a core call at once, in this thread (tests, tools): the default."""
    def exchange(make_origin, call):
        box: list[Answer] = []
        for item in call(make_origin(box.append), clock()):
            if isinstance(item, Answer):
                item.origin.reply_to(item)
        return box[0] if box else None
    return exchange


class Facade:
    """``exchange(make_origin, call)`` runs ``call(origin, now)`` where the core
    runs (the shell: its worker) and returns the first answer given to the
    origin's ``reply_to``, or None if none came in time."""

    def __init__(self, controller: Controller, clock, exchange=None):
        self._core = controller
        self._graph = controller.graph
        self._clock = clock  # monotonic seconds, the core's time
        self._exchange = exchange or run_here(clock)

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

    def metrics(self) -> bytes:
        """Prometheus's text format (mpa_sdn/metrics.py)."""
        return self._core.metrics.render()

    # -- the MN's messages (REST channel) and the AA's and CA's state ----------

    @property
    def max_message_bytes(self) -> int:
        return self._core.topology.mpa.max_message_bytes

    def signal(self, body: bytes, network: str | None, source: str,
               expect: tuple[str, ...]) -> Answer | None:
        if network is not None:
            self._network(network)
        return self._exchange(
            lambda reply: Origin(REST, source, network, reply_to=reply),
            lambda origin, now: self._core.signal(body, origin, expect, now))

    def sas(self) -> list[dict]:
        return self._core.mpa.sa_views(self._clock())

    def mobile_nodes(self) -> list[dict]:
        """Each MN's binding, tunnels and handover in progress (RFC 6252 §6.3)."""
        core = self._core
        return core.mobility.views(core.mpa.wall(self._clock()), core.mpa.homes)

    def handovers(self) -> list[dict]:
        """The last finished handovers, oldest first, then those in progress."""
        mobility = self._core.mobility
        return list(mobility.history) + [h.view() for h in mobility.handovers.values()
                                         if h.ended_at is None]

    def leases(self, network_id: str) -> list[dict]:
        self._network(network_id)
        return self._core.mpa.lease_views(self._clock(), network_id)

    def pool(self, network_id: str) -> dict:
        network = self._network(network_id)
        if network.id not in self._core.mpa.ca.pools:
            raise NotFound("address pool of network", network_id)
        return self._core.mpa.ca.pool_view(network.id, self._core.mpa.wall(self._clock()))

"""The read model: what the REST API shows, computed from the core's state.

Nothing here changes any state: every write goes through the worker
(``Facade``'s ``exchange``), while reads are answered from here, in the
REST green thread, from the state as the worker last left it.  A view of
something that does not exist is None; the facade says what is unknown.
"""

from __future__ import annotations

from mpa_sdn.topology import Network


class ReadModel:
    """Views of the controller ``core``'s parts (its topology, switches,
    AA and CA, mobility, actions, policies, events, counters)."""

    def __init__(self, core):
        self._core = core

    # -- the topology ---------------------------------------------------------------

    def network_of(self, network_id: str) -> Network | None:
        try:
            return self._core.graph.network(network_id)
        except KeyError:
            return None

    def network(self, network: Network) -> dict:
        graph = self._core.graph
        return {
            "id": network.id,
            "role": network.role,
            "domain": network.domain,
            "served_by": network.served_by,
            "prefix": str(network.prefix),
            "gateway": {"address": str(network.gateway), "mac": network.gateway_mac},
            "access_router": graph.public_switch(network.access_router),
            "poas": [{"id": p.id, "switch": p.switch, "port": p.port} for p in network.poas],
            "pool": ({"first": str(network.pool.first), "last": str(network.pool.last),
                      "size": len(network.pool)} if network.pool else None),
            "neighbours": graph.neighbours(network.id),
        }

    def networks(self) -> list[dict]:
        return [self.network(n) for n in self._core.graph.networks()]

    def neighbours(self, network: Network) -> list[dict]:
        return [c.as_dict() for c in self._core.graph.candidates(network.id)]

    def switches(self, now: float) -> list[dict]:
        return self._core.switch_summary(now)

    def counters(self) -> dict:
        return dict(sorted(self._core.counters.items()))

    def metrics(self) -> bytes:
        """Prometheus's text format (mpa_sdn/metrics.py)."""
        return self._core.metrics.render()

    # -- the AA's and CA's state, the MNs ---------------------------------------------

    @property
    def store(self):
        return self._core.mpa.store

    @property
    def max_message_bytes(self) -> int:
        return self._core.topology.mpa.max_message_bytes

    def wall(self, now: float) -> float:
        return self._core.mpa.wall(now)

    def sas(self, now: float) -> list[dict]:
        return self._core.mpa.sa_views(now)

    def leases(self, now: float, network: Network) -> list[dict]:
        return self._core.mpa.lease_views(now, network.id)

    def pool(self, now: float, network: Network) -> dict | None:
        mpa = self._core.mpa
        if network.id not in mpa.ca.pools:
            return None
        return mpa.ca.pool_view(network.id, mpa.wall(now))

    def mobile_nodes(self, now: float) -> list[dict]:
        """Each MN's binding, tunnels and handover in progress (RFC 6252 §6.3)."""
        core = self._core
        return core.mobility.views(core.mpa.wall(now), core.mpa.homes)

    def handovers(self) -> list[dict]:
        """The last finished handovers, oldest first, then those in progress."""
        mobility = self._core.mobility
        return list(mobility.history) + [h.view() for h in mobility.handovers.values()
                                         if h.ended_at is None]

    def mobile_node(self, now: float, identity: str) -> dict | None:
        """One MN's whole MPA state."""
        core = self._core
        if not core.actions.known(identity):
            return None
        wall = core.mpa.wall(now)
        sas = core.mpa.aa.sas_of(identity)
        return {**core.mobility.view_of(identity, wall, core.mpa.homes.get(identity)),
                "sas": [sa.view(wall) for sa in sas],
                "leases": [lease.view(wall) for lease in core.mpa.ca.leases_of(identity)],
                "attached": sorted(({"mac": h.mac, "address": h.address,
                                     "network": h.poa.network, "poa": h.poa.id}
                                    for mac in {sa.mn_mac for sa in sas}
                                    for h in core.hosts.of_mac(mac) if h.poa),
                                   key=lambda a: a["address"]),
                "instructions": core.actions.instructions_of(identity),
                "actions": core.actions.views(identity)[-20:]}

    # -- a policy engine's: actions, policies, events ------------------------------------

    def actions(self, identity: str | None = None, state: str | None = None) -> list[dict]:
        return self._core.actions.views(identity, state)

    def action(self, action_id: int) -> dict | None:
        action = self._core.actions.get(action_id)
        return None if action is None else action.view()

    def policy(self, network: Network) -> dict:
        return self._core.policies.of(network.id).view()

    @property
    def events(self):
        """The event log (its listeners are the shell's streams, not the core's state)."""
        return self._core.events

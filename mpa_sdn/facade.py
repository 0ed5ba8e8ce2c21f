"""The typed facade the REST layer calls: plain data in, plain data out.

Errors are exceptions with a meaning (``NotFound``), never HTTP codes; the
REST layer maps them.
"""

from __future__ import annotations

import logging

from mpa_protocol.messages import MAX_WAIT_S
from mpa_sdn.controller import Controller
from mpa_sdn.service import REST, Answer, Origin
from mpa_sdn.topology import Network

LOG = logging.getLogger("mpa_sdn.facade")


class NotFound(Exception):
    def __init__(self, kind: str, ident, detail: str | None = None):
        super().__init__(detail or f"unknown {kind} {ident!r}")
        self.kind = kind
        self.ident = ident


class Conflict(Exception):
    """The MN's state does not allow it now; ``code``: wrong-state or too-soon."""

    def __init__(self, code: str, detail: str):
        super().__init__(detail)
        self.code = code


class Unprocessable(Exception):
    """Well-formed, but not possible here (a network that is no candidate, ...)."""


class Unavailable(Exception):
    """The core did not get to it in time: it may still be carried out."""


class Busy(Unavailable):
    """Refused before it was queued (a bound was full, or the controller is
    stopping): nothing was done, so sending it again is safe."""


WAIT_S = 3.0           # the longest a caller waits for the core (REST answers 503 after)
POLL_WAIT_S = MAX_WAIT_S + 1.0   # an instructions question is held up to MAX_WAIT_S


def run_here(clock):
    """Run a core call at once, in this thread (tests, tools): the default."""
    def exchange(make_origin, call, timeout=WAIT_S, held_from=None):
        box: list[Answer] = []
        for item in call(make_origin(box.append), clock()):
            if isinstance(item, Answer):
                item.origin.reply_to(item)
        return box[0] if box else None
    return exchange


class Facade:
    """``exchange(make_origin, call, timeout, held_from)`` runs ``call(origin, now)``
    where the core runs (the shell: its worker) and returns the first answer given
    to the origin's ``reply_to``, or None if none came within ``timeout`` s; it
    raises :class:`Busy` if it refused to queue the call.  ``held_from``: the
    source address of a question the core may hold (``instructions``), which
    the shell bounds apart from the other calls.
    ``wait_events(after, timeout)`` blocks until an event after id ``after``
    exists or ``timeout`` passes (the shell's; by default it does not block)."""

    def __init__(self, controller: Controller, clock, exchange=None, wait_events=None):
        self._core = controller
        self._graph = controller.graph
        self._clock = clock  # monotonic seconds, the core's time
        self._exchange = exchange or run_here(clock)
        self.wait_events = wait_events or (lambda after, timeout: False)
        self.closed = False   # the shell is stopping: streams end

    @property
    def store(self):
        return self._core.mpa.store

    def wall(self) -> float:
        return self._core.mpa.wall(self._clock())

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
            lambda origin, now: self._core.signal(body, origin, expect, now),
            *((POLL_WAIT_S, source) if "instructions" in expect else (WAIT_S, None)))

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

    # -- a policy engine: MNs, actions, policies, events ----------------------------

    def mobile_node(self, identity: str) -> dict:
        """One MN's whole MPA state."""
        core = self._core
        if not core.actions.known(identity):
            raise NotFound("mobile node", identity)
        wall = core.mpa.wall(self._clock())
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

    def act(self, kind: str, identity: str, params: dict, by: str) -> dict:
        """A policy engine's request, carried out where the core runs."""
        answer = self._exchange(
            lambda reply: Origin(REST, by, None, reply_to=reply),
            lambda origin, now: self._core.act(kind, identity, params, by, origin, now))
        if answer is None:
            raise Unavailable("the controller did not get to it in time; the request may "
                              "still be carried out: read the MN's actions before retrying")
        if answer.status < 300:
            return answer.fields
        problem, detail = answer.fields["problem"], answer.fields["detail"]
        if problem == "not-found":
            raise NotFound("mobile node", identity, detail)
        if problem == "unprocessable":
            raise Unprocessable(detail)
        raise Conflict(problem, detail)

    def actions(self, identity: str | None = None, state: str | None = None) -> list[dict]:
        return self._core.actions.views(identity, state)

    def action(self, action_id: int) -> dict:
        action = self._core.actions.get(action_id)
        if action is None:
            raise NotFound("action", action_id)
        return action.view()

    def policy(self, network_id: str) -> dict:
        return self._core.policies.of(self._network(network_id).id).view()

    def update_policy(self, network_id: str, changes: dict, by: str) -> dict:
        network = self._network(network_id)
        if network.role != "access":
            raise Unprocessable(f"{network_id} is a correspondent network: it has no policy "
                                "to change")
        policy = self._core.policies.update(network.id, changes)
        self._core.counters["policy_updated"] += 1
        LOG.info("network=%s policy changed by %s: %s", network.id, by, changes)
        return policy.view()

    def events_after(self, cursor: int) -> tuple[list[dict], bool]:
        return self._core.events.after(cursor)

    @property
    def last_event_id(self) -> int:
        return self._core.events.last_id

    def on_event(self, listener) -> None:
        self._core.events.listeners.append(listener)

    def off_event(self, listener) -> None:
        if listener in self._core.events.listeners:
            self._core.events.listeners.remove(listener)

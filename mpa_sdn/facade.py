"""The typed facade the REST layer calls: plain data in, plain data out.

Two ways in, one for each direction: reads are answered from the read model
(:mod:`mpa_sdn.read_model`), which changes nothing; every write (an MN's message,
a policy engine's action, a policy's change) is one call of the
controller's, run where the core runs, through ``exchange`` (the shell's
worker), so the core sees one event at a time whichever channel it came by.

Errors are exceptions with a meaning (``NotFound``), never HTTP codes; the
REST layer maps them.
"""

from __future__ import annotations

from mpa_protocol.messages import MAX_WAIT_S
from mpa_sdn.controller import Controller
from mpa_sdn.read_model import ReadModel
from mpa_sdn.service import REST, Answer, Origin
from mpa_sdn.topology import Network

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
        self._core = controller     # its entry points, called only through exchange
        self._read = ReadModel(controller)
        self._clock = clock  # monotonic seconds, the core's time
        self._exchange = exchange or run_here(clock)
        self.wait_events = wait_events or (lambda after, timeout: False)
        self.closed = False   # the shell is stopping: streams end

    @property
    def store(self):
        return self._read.store

    def wall(self) -> float:
        return self._read.wall(self._clock())

    def _network(self, network_id: str) -> Network:
        network = self._read.network_of(network_id)
        if network is None:
            raise NotFound("network", network_id)
        return network

    def networks(self) -> list[dict]:
        return self._read.networks()

    def network(self, network_id: str) -> dict:
        return self._read.network(self._network(network_id))

    def neighbours(self, network_id: str) -> list[dict]:
        return self._read.neighbours(self._network(network_id))

    def switches(self) -> list[dict]:
        return self._read.switches(self._clock())

    def counters(self) -> dict:
        return self._read.counters()

    def metrics(self) -> bytes:
        """Prometheus's text format (mpa_sdn/metrics.py)."""
        return self._read.metrics()

    # -- the MN's messages (REST channel) and the AA's and CA's state ----------

    @property
    def max_message_bytes(self) -> int:
        return self._read.max_message_bytes

    def signal(self, body: bytes, network: str | None, source: str,
               expect: tuple[str, ...]) -> Answer | None:
        if network is not None:
            self._network(network)
        return self._exchange(
            lambda reply: Origin(REST, source, network, reply_to=reply),
            lambda origin, now: self._core.signal(body, origin, expect, now),
            *((POLL_WAIT_S, source) if "instructions" in expect else (WAIT_S, None)))

    def sas(self) -> list[dict]:
        return self._read.sas(self._clock())

    def mobile_nodes(self) -> list[dict]:
        """Each MN's binding, tunnels and handover in progress (RFC 6252 §6.3)."""
        return self._read.mobile_nodes(self._clock())

    def handovers(self) -> list[dict]:
        """The last finished handovers, oldest first, then those in progress."""
        return self._read.handovers()

    def leases(self, network_id: str) -> list[dict]:
        return self._read.leases(self._clock(), self._network(network_id))

    def pool(self, network_id: str) -> dict:
        view = self._read.pool(self._clock(), self._network(network_id))
        if view is None:
            raise NotFound("address pool of network", network_id)
        return view

    # -- a policy engine: MNs, actions, policies, events ----------------------------

    def mobile_node(self, identity: str) -> dict:
        """One MN's whole MPA state."""
        view = self._read.mobile_node(self._clock(), identity)
        if view is None:
            raise NotFound("mobile node", identity)
        return view

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
        return self._read.actions(identity, state)

    def action(self, action_id: int) -> dict:
        view = self._read.action(action_id)
        if view is None:
            raise NotFound("action", action_id)
        return view

    def policy(self, network_id: str) -> dict:
        return self._read.policy(self._network(network_id))

    def update_policy(self, network_id: str, changes: dict, by: str) -> dict:
        """An admin's change of a network's policy, made where the core runs."""
        network = self._network(network_id)
        if network.role != "access":
            raise Unprocessable(f"{network_id} is a correspondent network: it has no policy "
                                "to change")
        answer = self._exchange(
            lambda reply: Origin(REST, by, None, reply_to=reply),
            lambda origin, now: self._core.update_policy(network.id, changes, by, origin, now))
        if answer is None:
            raise Unavailable("the controller did not get to it in time; the change may "
                              "still be made: read the policy before retrying")
        if answer.status >= 300:
            raise ValueError(answer.fields["detail"])   # a field the caller did not check
        return answer.fields

    def events_after(self, cursor: int) -> tuple[list[dict], bool]:
        return self._read.events.after(cursor)

    @property
    def last_event_id(self) -> int:
        return self._read.events.last_id

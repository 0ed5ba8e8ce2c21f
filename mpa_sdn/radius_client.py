"""The Authentication Agent's RADIUS requests to one domain's servers:
Identifiers, retransmission and failover as RFC 5080 §2.2 advises.

Pure: it is told the time (``now``) and given its randomness (``entropy``
for Request Authenticators, ``random`` for the jitter); it returns the
datagrams to send and never sends them.

- Each server has its own 256 Identifiers; a new request takes the next
  free one after the last taken, so an Identifier is reused as late as it
  can be (RFC 5080 §2.2.2).
- At most ``max_outstanding`` requests are outstanding per domain; one more
  is refused (``RadiusError("overflow")``, counted in
  ``radius_outstanding_overflow``).
- A retransmission is the same datagram: same Identifier, same Request
  Authenticator (RFC 5080 §2.2.1), so the server's duplicate cache answers
  it.  Timeouts follow RFC 5080 §2.2.1: RT = IRT + RAND*IRT, then
  2*RTprev + RAND*RTprev, at most MRT + RAND*MRT, with RAND uniform in
  [-jitter, +jitter]; at most ``max_count`` retransmissions and
  ``max_duration_s`` on one server.
- A server that let a request's retransmissions run out is marked dead for
  ``dead_time_s`` and skipped meanwhile (``radius_server_marked_dead``); the
  request fails over to the next configured server not yet tried, with a new
  Identifier and Request Authenticator (``radius_failovers``).  When every
  server has been tried the request fails (``radius_requests_failed``).  When
  every server is dead, the one whose dead time ends first is tried anyway
  (``radius_all_servers_dead``): giving up on all would be a total outage.
- An answer whose server and Identifier match no outstanding request (late,
  or a duplicate of one already taken) is refused as "late" and counted;
  any refused answer leaves the request outstanding.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field

from mpa_sdn import radius
from mpa_sdn.radius import RadiusError

IDENTIFIERS = 256


@dataclass(frozen=True)
class RadiusServer:
    address: str
    port: int
    secret: bytes


@dataclass(frozen=True)
class RetransmitSettings:
    """RFC 5080 §2.2.1's parameters, its recommended values as defaults."""
    initial_rt_s: float = 2.0      # IRT
    max_rt_s: float = 16.0         # MRT
    max_count: int = 5             # MRC: retransmissions on one server
    max_duration_s: float = 30.0   # MRD: on one server
    jitter: float = 0.1            # RAND's bound
    max_outstanding: int = 256     # per domain
    dead_time_s: float = 60.0      # a server that did not answer is skipped this long

    def __post_init__(self):
        problems = [name for name, ok in (
            ("initial_rt_s", 0 < self.initial_rt_s),
            ("max_rt_s", self.initial_rt_s <= self.max_rt_s),
            ("max_count", self.max_count >= 0), ("max_duration_s", self.max_duration_s > 0),
            ("jitter", 0 <= self.jitter < 1), ("max_outstanding", self.max_outstanding >= 1),
            ("dead_time_s", self.dead_time_s >= 0)) if not ok]
        if problems:
            raise ValueError(f"RADIUS retransmission settings out of range: {', '.join(problems)}"
                             f" (max_rt_s at least initial_rt_s > 0, jitter in [0, 1))")


@dataclass(frozen=True)
class Datagram:
    address: str
    port: int
    data: bytes


@dataclass(frozen=True)
class Failed:
    key: Hashable
    reason: str          # "no-answer": every server tried, none answered


@dataclass(frozen=True)
class Completed:
    key: Hashable
    answer: radius.Answer
    server: RadiusServer


@dataclass
class Tick:
    send: list[Datagram] = field(default_factory=list)
    failed: list[Failed] = field(default_factory=list)


@dataclass
class _Pending:
    key: Hashable
    fields: dict          # radius.access_request's arguments beyond the per-server ones
    tried: list[int]      # server indexes, the current one last
    identifier: int = 0
    authenticator: bytes = b""
    datagram: Datagram | None = None
    first_sent: float = 0.0
    retransmissions: int = 0
    rt: float = 0.0
    deadline: float = 0.0

    @property
    def server(self) -> int:
        return self.tried[-1]


class RadiusClient:
    """One domain's outstanding Access-Requests, over its ordered servers."""

    def __init__(self, servers: list[RadiusServer], settings: RetransmitSettings, counters,
                 entropy: Callable[[int], bytes], random: Callable[[], float],
                 nas_identifier: str):
        if not servers:
            raise ValueError("a domain needs at least one RADIUS server")
        self.servers = list(servers)
        self.settings = settings
        self.counters = counters
        self.entropy = entropy
        self.random = random
        self.nas_identifier = nas_identifier
        self._pending: dict[Hashable, _Pending] = {}
        self._by_identifier: list[dict[int, Hashable]] = [{} for _ in self.servers]
        self._next_identifier = [0] * len(self.servers)
        self._dead_until = [float("-inf")] * len(self.servers)

    # -- requests -------------------------------------------------------
    def send(self, key: Hashable, now: float, *, eap: bytes, user_name: str,
             calling_station_id: str, state: bytes | None = None, **more) -> Datagram:
        """An Access-Request for ``key`` (a PANA session, say) carrying ``eap``.

        A request still outstanding for ``key`` is superseded: its answer
        would be for an EAP round the peer has left.
        """
        fields = dict(eap=eap, user_name=user_name, calling_station_id=calling_station_id,
                      state=state, nas_identifier=self.nas_identifier, **more)
        if key in self._pending:
            self.cancel(key)
            self.counters["radius_requests_superseded"] += 1
        elif len(self._pending) >= self.settings.max_outstanding:
            self.counters["radius_outstanding_overflow"] += 1
            raise RadiusError("overflow", f"{len(self._pending)} requests outstanding")
        server = self._pick_server(now, exclude=())
        pending = _Pending(key, fields, [server])
        try:
            self._transmit_first(pending, now)
        except RadiusError as e:
            # Nothing is kept; an Identifier shortage is counted where found.
            if e.reason != "overflow":
                self.counters[f"radius_request_{e.reason.replace('-', '_')}"] += 1
            raise
        self._pending[key] = pending
        self.counters["radius_requests_sent"] += 1
        return pending.datagram

    def cancel(self, key: Hashable) -> None:
        pending = self._pending.pop(key, None)
        if pending is not None:
            del self._by_identifier[pending.server][pending.identifier]

    @property
    def outstanding(self) -> int:
        return len(self._pending)

    # -- time -----------------------------------------------------------
    def next_deadline(self) -> float | None:
        """When ``tick`` next has something to do, None: nothing outstanding."""
        return min((p.deadline for p in self._pending.values()), default=None)

    def due(self, now: float) -> float | None:
        """Seconds until ``tick`` has something to do (0: now), None: nothing outstanding."""
        deadline = self.next_deadline()
        return None if deadline is None else max(0.0, deadline - now)

    def tick(self, now: float) -> Tick:
        """Retransmissions, failovers and failures due at ``now``."""
        tick = Tick()
        due = sorted((p for p in self._pending.values() if p.deadline <= now),
                     key=lambda p: (p.deadline, p.first_sent, p.identifier))
        for pending in due:
            if self._exhausted(pending, now):
                self._fail_over(pending, now, tick)
            else:
                pending.retransmissions += 1
                pending.rt = self._next_rt(pending.rt)
                pending.deadline = min(now + pending.rt,
                                       pending.first_sent + self.settings.max_duration_s)
                self.counters["radius_retransmissions"] += 1
                tick.send.append(pending.datagram)
        return tick

    # -- answers --------------------------------------------------------
    def answer(self, data: bytes, source: tuple[str, int]) -> Completed:
        """Match an answer from ``source`` (address, port) to its request.

        Raises ``RadiusError`` (counted in ``radius_refused_<reason>``) when
        it is refused; the request it claims to answer stays outstanding.
        """
        try:
            return self._answer(data, source)
        except RadiusError as e:
            self.counters[f"radius_refused_{e.reason.replace('-', '_')}"] += 1
            raise

    def _answer(self, data: bytes, source: tuple[str, int]) -> Completed:
        index = next((i for i, s in enumerate(self.servers)
                      if (s.address, s.port) == tuple(source)), None)
        if index is None:
            raise RadiusError("unknown-server", f"{source}")
        if len(data) < 2:
            raise RadiusError("malformed", f"{len(data)} octets")
        key = self._by_identifier[index].get(data[1])
        if key is None:
            raise RadiusError("late", f"identifier {data[1]} of {source}")
        pending = self._pending[key]
        answer = radius.parse_answer(data, identifier=pending.identifier,
                                     request_authenticator=pending.authenticator,
                                     secret=self.servers[index].secret)
        self.cancel(key)
        self._dead_until[index] = float("-inf")   # it answers: alive
        self.counters[f"radius_answers_{answer.kind}"] += 1
        return Completed(key, answer, self.servers[index])

    # -- inside ---------------------------------------------------------
    def _pick_server(self, now: float, exclude) -> int | None:
        candidates = [i for i in range(len(self.servers)) if i not in exclude]
        alive = [i for i in candidates if self._dead_until[i] <= now]
        if alive:
            return alive[0]
        if not candidates:
            return None
        self.counters["radius_all_servers_dead"] += 1
        return sorted(candidates, key=lambda i: (self._dead_until[i], i))[0]

    def _free_identifier(self, server: int) -> int:
        in_use = self._by_identifier[server]
        start = self._next_identifier[server]
        for step in range(IDENTIFIERS):
            identifier = (start + step) % IDENTIFIERS
            if identifier not in in_use:
                self._next_identifier[server] = (identifier + 1) % IDENTIFIERS
                return identifier
        self.counters["radius_outstanding_overflow"] += 1
        raise RadiusError("overflow", f"no Identifier free for {self.servers[server]}")

    def _transmit_first(self, pending: _Pending, now: float) -> None:
        """Encode for the current server with a fresh Identifier and
        Request Authenticator, and start its timers."""
        server = self.servers[pending.server]
        identifier = self._free_identifier(pending.server)
        authenticator = self.entropy(radius.AUTHENTICATOR_BYTES)
        data = radius.access_request(identifier=identifier, authenticator=authenticator,
                                     secret=server.secret, **pending.fields)
        pending.identifier, pending.authenticator = identifier, authenticator
        pending.datagram = Datagram(server.address, server.port, data)
        pending.first_sent, pending.retransmissions = now, 0
        pending.rt = self._jittered(self.settings.initial_rt_s)
        pending.deadline = min(now + pending.rt, now + self.settings.max_duration_s)
        self._by_identifier[pending.server][identifier] = pending.key

    def _exhausted(self, pending: _Pending, now: float) -> bool:
        return (pending.retransmissions >= self.settings.max_count
                or now - pending.first_sent >= self.settings.max_duration_s)

    def _fail_over(self, pending: _Pending, now: float, tick: Tick) -> None:
        del self._by_identifier[pending.server][pending.identifier]
        if self._dead_until[pending.server] <= now:
            self.counters["radius_server_marked_dead"] += 1
        self._dead_until[pending.server] = now + self.settings.dead_time_s
        following = self._pick_server(now, exclude=pending.tried)
        if following is None:
            del self._pending[pending.key]
            self.counters["radius_requests_failed"] += 1
            tick.failed.append(Failed(pending.key, "no-answer"))
            return
        pending.tried.append(following)
        try:
            self._transmit_first(pending, now)
        except RadiusError as e:
            del self._pending[pending.key]
            self.counters["radius_requests_failed"] += 1
            tick.failed.append(Failed(pending.key, e.reason))
            return
        self.counters["radius_failovers"] += 1
        tick.send.append(pending.datagram)

    def _jittered(self, seconds: float) -> float:
        return seconds + (2 * self.random() - 1) * self.settings.jitter * seconds

    def _next_rt(self, rt: float) -> float:
        return min(2 * rt + (2 * self.random() - 1) * self.settings.jitter * rt,
                   self._jittered(self.settings.max_rt_s))

"""The AA and CA behind both signalling channels: one handler for every message.

A message arrives as bytes with its :class:`Origin` (the channel, the
sender's address, the network it reached) and leaves as :class:`Answer`
objects for the caller to deliver: REST writes them as the response,
in-band sends them back as a UDP datagram by packet-out.  Nothing here knows
which channel it serves beyond two rules:

* in-band, junk nobody could have authenticated (malformed, oversized,
  unknown types, bad MACs, unknown SAs or sessions) gets silence, so the
  gateway is no reflector; REST always answers, with the error's status;
* a refused message changes no state: decoding, authentication and the
  sequence check come before anything is written.

Times given to the agents are wall-clock seconds (``now + wall_offset``):
SAs and leases outlive the process, and the monotonic clock does not.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass
from typing import Any, Callable

from mpa_protocol import messages
from mpa_protocol.messages import Message, SignallingError
from mpa_sdn.aa import AuthenticationAgent
from mpa_sdn.ca import ConfigurationAgent, Lease, mpa_client
from mpa_sdn.dhcp_server import DhcpDecision, DhcpServer
from mpa_sdn.mobility import Refused
from mpa_sdn.mpa_sa import AUTHORIZED, PRE_AUTHENTICATED
from mpa_sdn.preauthentication import Preauthentication
from mpa_sdn.topology import ROLE_ACCESS

LOG = logging.getLogger("mpa_sdn.service")
REST = "rest"
INBAND = "inband"
# Refusals an attacker could provoke without any key: silence in-band.
MAX_WAITING_ORIGINS = 4  # places one request held back by DAD is answered at
MOBILITY = ("tunnel-request", "tunnel-release", "binding-update", "handover")
SILENT_IN_BAND = {"malformed", "oversized", "unsupported-version", "unknown-type",
                  "bad-mac", "unknown-sa"}


@dataclass(frozen=True)
class Origin:
    channel: str                 # REST or INBAND
    source: str                  # the sender's IPv4 address
    network: str | None          # the network the message reached (in-band: whose gateway)
    mac: str | None = None       # in-band: the frame's source MAC
    reply_to: Any = None         # the caller's, handed back with the answer


@dataclass
class Answer:
    origin: Origin
    fields: dict                 # the message to send back
    status: int = 200            # REST status
    after: str | None = None     # a flow confirmation it must wait for

    @property
    def body(self) -> bytes:
        return messages.encode(self.fields)


@dataclass(eq=False)
class Held:
    """A request answered later (a configuration while DAD runs, an MN's
    ``instructions`` question that waits): its retransmissions meanwhile add
    places to answer it at."""

    sa_id: str
    msg: Message
    origins: list


class MpaService:
    """``mobility`` (tunnels, bindings, handovers), ``policy_of`` (network ->
    its policy), ``events`` (the log SA and lease changes are told to) and
    ``make_actions`` (service -> the policy engine's actions, which answer the
    MN's ``instructions``) are the controller's (mpa_sdn/assembly.py); without
    them, the service alone answers neither handovers nor instructions."""

    def __init__(self, topology, graph, aaa, store, counters,
                 entropy: Callable[[int], bytes], wall_offset: float,
                 used_by: Callable[[str], str | None],
                 attached: Callable[[str, str], bool] = lambda mac, network: False, *,
                 mobility=None, policy_of=None, events=None, make_actions=None):
        self.topology = topology
        self.graph = graph
        self.settings = topology.mpa
        self.counters = counters
        self.wall_offset = wall_offset
        self.attached = attached  # (MAC, network) -> a host with it is learned there now
        self.events = events
        self.aa = AuthenticationAgent(topology, store, self.settings, counters, entropy,
                                      attached, self._sa_dropped, policy_of=policy_of,
                                      on_change=self._sa_changed)
        self.preauth = Preauthentication(topology, self.settings, counters, entropy, self.aa,
                                         aaa, self.release_lease, events)
        self.paa = self.preauth.paa
        self.ca = ConfigurationAgent(topology, store, self.settings, counters, used_by,
                                     graph.network_of_address, policy_of=policy_of,
                                     on_change=self._lease_changed)
        self.dhcp_server = DhcpServer(topology, self.aa, self.ca, counters)
        self.store = store
        self.mobility = mobility
        self.homes = {mn.identity: str(mn.home_address)
                      for mn in topology.mobile_nodes.values()
                      if mn.identity and mn.home_address is not None}
        # Configuration requests waiting for DAD: (network, address) -> held requests
        self._waiting: dict[tuple[str, str], list[Held]] = {}
        self._in_progress: dict[tuple[str, int], Held] = {}  # (sa id, seq) -> the request
        # Last: the actions answer through this service, so they are made with it whole.
        self.actions = make_actions(self) if make_actions is not None else None

    def wall(self, now: float) -> float:
        return now + self.wall_offset

    # -- messages ---------------------------------------------------------------

    def handle(self, data: bytes, origin: Origin, now: float,
               expect: tuple[str, ...] = messages.REQUESTS) -> list[Answer]:
        """One message; ``expect`` narrows the types (a REST endpoint takes some)."""
        self.counters[f"signal_{origin.channel}"] += 1
        wall = self.wall(now)
        msg = None
        try:
            msg = messages.decode(data, self.settings.max_message_bytes, expect=expect)
            self.counters[f"signal_{msg.type.replace('-', '_')}"] += 1
            return self._dispatch(msg, origin, wall)
        except SignallingError as exc:
            self.counters[f"signal_refused_{exc.code.replace('-', '_')}"] += 1
            LOG.info("%s message from %s mac=%s identity=%s sa=%s network=%s refused: %s (%s)",
                     origin.channel, origin.source, origin.mac,
                     (msg and msg.get("identity")) or self.aa.identity_of(
                         origin.mac, msg and msg.get("sa")),
                     str(msg.get("sa"))[:8] if msg and msg.get("sa") else None,
                     (msg and msg.get("network")) or origin.network, exc.code, exc.message)
            if origin.channel == INBAND and exc.code in SILENT_IN_BAND:
                return []
            extra = dict(exc.extra)
            if msg is not None:
                extra["in_reply_to"] = msg.type
                if msg.get("network"):
                    extra.setdefault("network", msg["network"])
                if msg.get("seq"):
                    extra["seq"] = msg["seq"]
            return [Answer(origin, messages.error(exc.code, exc.message, **extra),
                           exc.http_status)]
        except Exception:
            # A bug, never the sender's business: logged and counted; the
            # message changed nothing it could not, and REST gets a 500.
            self.counters["signal_internal_error"] += 1
            LOG.exception("%s message from %s mac=%s identity=%s sa=%s network=%s failed",
                          origin.channel, origin.source, origin.mac,
                          (msg and msg.get("identity")) or self.aa.identity_of(
                              origin.mac, msg and msg.get("sa")),
                          str(msg.get("sa"))[:8] if msg and msg.get("sa") else None,
                          (msg and msg.get("network")) or origin.network)
            if origin.channel == INBAND:
                return []
            return [Answer(origin, messages.error("internal-error",
                                                  "internal error; see the controller log"),
                           500)]

    def _network(self, msg: Message, origin: Origin):
        name = msg.get("network") or origin.network
        if name is None and msg.get("address"):
            network = self.graph.network_of_address(msg["address"])
            name = network.id if network else None
            if name is None:
                raise SignallingError("unknown-network", f"no network holds {msg['address']}")
        if name is None:
            raise SignallingError("malformed", "which network? name it in the message")
        network = self.topology.networks.get(name)
        if network is None:
            raise SignallingError("unknown-network", f"no network {name!r} here")
        if origin.network is not None and origin.network != name:
            raise SignallingError("wrong-network", f"meant for {name}, but it reached "
                                  f"{origin.network}")
        return network

    def _dispatch(self, msg: Message, origin: Origin, wall: float) -> list[Answer]:
        network = self._network(msg, origin)
        if msg.type == "discover":
            return [Answer(origin, self._neighbours(network, origin))]
        if network.role != ROLE_ACCESS or network.id not in self.ca.pools:
            raise SignallingError("not-served", f"{network.id} has no AA or CA")
        purpose = messages.PURPOSE[msg.type]
        sa, cached = self.aa.check(msg, purpose, wall)
        if cached is not None:
            return [Answer(origin, cached, _status_of(cached))]
        # Authenticated: the MAC it names is the SA's (bound by the first).
        self.aa.bind_mac(sa, msg["mn_mac"], origin.mac, wall)
        held = self._in_progress.get((sa.id, msg["seq"]))
        if held is not None:
            # The same request again while it is held: one more place to answer,
            # within reason (a captured copy must not multiply the answers).
            self.counters["signal_retransmission_waiting"] += 1
            if origin in held.origins:
                return []
            if len(held.origins) < MAX_WAITING_ORIGINS:
                held.origins.append(origin)
                return []
            self.counters["signal_retransmission_refused"] += 1
            if origin.channel == INBAND:
                return []
            # Over REST a caller left unanswered would hold its connection, and
            # a slot of the shell's, until its wait ran out: tell it now.
            raise SignallingError("busy", "this message is already held for "
                                  f"{MAX_WAITING_ORIGINS} callers; send it again later",
                                  retry_after=1)
        if msg.type in MOBILITY:
            return self._mobility(sa, msg, origin, wall)
        if msg.type == "instructions":
            if self.actions is None:
                return self.refuse(sa, msg, "wrong-state", "no instructions here",
                                   [origin], wall)
            return self.actions.poll(sa, msg, origin, wall)
        if msg.type == "config-request":
            return self._configure(sa, msg, [origin], wall)
        if msg.type == "release":
            return self._release(sa, msg, origin, wall)
        return self._resume(sa, msg, origin, wall)

    def _neighbours(self, network, origin: Origin) -> dict:
        """The candidates (RFC 6252 §7.1); in-band, as many as fit one datagram,
        in the order of the full list, with ``truncated`` when some were left
        out (REST has them all)."""
        candidates = [c.as_dict() for c in self.graph.candidates(network.id)]
        answer = messages.build("neighbours", network=network.id, candidates=candidates)
        if origin.channel == INBAND:
            limit = self.settings.max_message_bytes
            while candidates and len(messages.encode(answer)) > limit:
                candidates.pop()
                answer = messages.build("neighbours", network=network.id,
                                        candidates=candidates, truncated=True)
            if answer.get("truncated"):
                self.counters["signal_neighbours_truncated"] += 1
        return answer

    def hold(self, sa, msg: Message, origins: list) -> Held:
        """``msg`` is answered later, after :meth:`unhold`, at ``origins`` and
        wherever its retransmissions meanwhile come from."""
        held = Held(sa.id, msg, list(origins))
        self._in_progress[(sa.id, msg["seq"])] = held
        return held

    def unhold(self, held: Held):
        """``held`` is answered now: its MPA-SA, or None if that is gone (no answer)."""
        self._in_progress.pop((held.sa_id, held.msg["seq"]), None)
        return self.aa.sas.get(held.sa_id)

    def answer(self, sa, msg: Message, kind: str, origins: list, wall: float,
               **fields) -> list[Answer]:
        """``msg``'s answer of type ``kind``, signed with the key of its purpose
        (messages.PURPOSE), to each of ``origins``; its number is used up."""
        answer = self.signed(sa, msg, kind, **fields)
        self.aa.commit(sa, msg, answer, wall)
        return [Answer(o, answer) for o in origins]

    def signed(self, sa, msg: Message, kind: str, **fields) -> dict:
        """``msg``'s answer as :meth:`answer` would send it, nothing committed."""
        return messages.sign(messages.build(kind, network=sa.network, sa=sa.id,
                                            seq=msg["seq"], **fields),
                             sa.keys.for_purpose(messages.PURPOSE[msg.type]))

    def refuse(self, sa, msg: Message, code: str, text: str, origins: list,
               wall: float, **extra) -> list[Answer]:
        """``msg`` refused with the error ``code``, to each of ``origins``; its
        number is used up, so a retransmission gets the same refusal."""
        answer = messages.error(code, text, network=sa.network, seq=msg["seq"],
                                in_reply_to=msg.type, **extra)
        self.aa.commit(sa, msg, answer, wall)
        self.counters[f"signal_refused_{code.replace('-', '_')}"] += 1
        return [Answer(o, answer, messages.ERRORS[code]) for o in origins]

    def _configure(self, sa, msg: Message, origins: list, wall: float) -> list[Answer]:
        if sa.state not in (PRE_AUTHENTICATED, AUTHORIZED):
            return self.refuse(sa, msg, "wrong-state",
                               f"the SA is {sa.state}; resume it first", origins, wall)
        result = self.ca.allocate(sa.network, mpa_client(sa.identity, sa.mn_mac), sa.mn_mac,
                                  wall, identity=sa.identity)
        if result is None:
            return self.refuse(sa, msg, "pool-exhausted",
                               f"no free address in {sa.network}", origins, wall)
        if isinstance(result, str):
            # The address is being probed (DAD): answer when it is done.
            self.counters["config_waiting_for_dad"] += 1
            self._waiting.setdefault((sa.network, result), []).append(
                self.hold(sa, msg, origins))
            return []
        network = self.topology.networks[sa.network]
        self.counters["config_given"] += 1
        return self.answer(sa, msg, "config", origins, wall,
                           **self.configuration(network, result, wall))

    def configuration(self, network, lease: Lease, wall: float) -> dict:
        """The pre-configuration (RFC 6252 §7.3 and Appendix B): the nCoA, its
        prefix, router and DNS, and the router's MAC so the MN needs no ARP
        after it moves."""
        return {"address": lease.address, "prefix_len": network.prefix.prefixlen,
                "router": str(network.gateway), "gateway_mac": network.gateway_mac,
                "dns": [str(a) for a in network.dns],
                "lease_time": max(0, round(lease.expires - wall))}

    def _release(self, sa, msg: Message, origin: Origin, wall: float) -> list[Answer]:
        scope = msg.get("scope", "lease")
        try:
            self.release_lease(sa, wall)
        except Refused as exc:
            return self.refuse(sa, msg, exc.code, exc.message, [origin], wall)
        answers = self.answer(sa, msg, "released", [origin], wall, scope=scope)
        if scope == "all":
            self.aa.end(sa)
        return answers

    def release_lease(self, sa, wall: float) -> tuple[bool, Lease | None]:
        """The SA's lease back to the pool, its nCoA's tunnel first: an address
        back in the pool must not lead its next holder's traffic to this MN.
        Whether a tunnel went, and the lease released; Refused (and nothing
        changed) while a handover goes through the tunnel."""
        client = mpa_client(sa.identity, sa.mn_mac)
        lease = self.ca.lease_for(sa.network, client)
        tunnelled = (lease is not None and self.mobility is not None
                     and self.mobility.tunnels.get(lease.address) is not None)
        if tunnelled:
            self.mobility.tunnel_release(sa, lease)
        released = self.ca.release(sa.network, client, wall)
        self.counters["config_released" if released else "config_release_nothing"] += 1
        return tunnelled, released

    def _mobility(self, sa, msg: Message, origin: Origin, wall: float) -> list[Answer]:
        """Steps 2-5 (RFC 6252 §6.3): the tunnel, the binding update, the
        handover's phases; the mobility core decides and changes the flows."""
        if sa.state not in (PRE_AUTHENTICATED, AUTHORIZED):
            return self.refuse(sa, msg, "wrong-state",
                               f"the SA is {sa.state}; pre-authenticate again", [origin], wall)
        if self.mobility is None:
            return self.refuse(sa, msg, "wrong-state", "no handover support here",
                               [origin], wall)
        lease = self.ca.lease_for(sa.network, mpa_client(sa.identity, sa.mn_mac))
        now = wall - self.wall_offset
        in_band = origin.channel == INBAND
        try:
            if msg.type == "tunnel-request":
                fields = self.mobility.tunnel_request(
                    sa, lease, origin.mac if in_band else None, msg.get("lifetime"), wall,
                    msg.get("outer"), origin.source if in_band else None)
                return self.answer(sa, msg, "tunnel", [origin], wall, **fields)
            if msg.type == "tunnel-release":
                self.mobility.tunnel_release(sa, lease)
                return self.answer(sa, msg, "tunnel-released", [origin], wall)
            if msg.type == "binding-update":
                # A standby care-of may be held by the MN's other interface,
                # under its SA with the care-of's network.
                held = self.ca.lease_at(msg["care_of"]) if msg.get("standby") else None
                if held is not None and held.identity != sa.identity:
                    held = None
                fields = self.mobility.binding_update(
                    sa, self.homes.get(sa.identity), msg, origin.source if in_band else None,
                    lease, wall, held)
                return self.answer(sa, msg, "binding-ack", [origin], wall, **fields)
            fields = self.mobility.handover(sa, lease, msg["phase"], bool(msg.get("buffer_old")),
                                            now, msg.get("mode", "buffer"), msg.get("delivered"))
            if fields.get("phase") == "none":
                return self.refuse(sa, msg, "wrong-state",
                                   f"no handover to {sa.network} to cancel", [origin], wall)
            answers = self.answer(sa, msg, "handover-state", [origin], wall, **fields)
            gate = self.mobility.answer_gate(sa.identity)
            return [dataclasses.replace(a, after=gate) for a in answers] if gate else answers
        except Refused as exc:
            return self.refuse(sa, msg, exc.code, exc.message, [origin], wall)

    def _resume(self, sa, msg: Message, origin: Origin, wall: float) -> list[Answer]:
        if sa.state == PRE_AUTHENTICATED:
            return self.refuse(sa, msg, "wrong-state",
                               "nothing to resume: the SA was never authorized", [origin], wall)
        if not self.attached(sa.mn_mac, sa.network):
            # Proof of possession counts where the MN is: back in the network.
            return self.refuse(sa, msg, "wrong-state",
                               f"the MN is not attached to {sa.network}", [origin], wall)
        self.aa.resume(sa, wall)
        return self.answer(sa, msg, "resumed", [origin], wall, state=sa.state)

    # -- pre-authentication: PANA and the domains' RADIUS servers ---------------

    def pana(self, data: bytes, origin: Origin, port: int, now: float) -> list:
        """PANA to ``origin.network``'s AA: PanaReplies to the MN, datagrams to RADIUS."""
        network = self.topology.networks.get(origin.network)
        if network is None or network.role != ROLE_ACCESS or network.id not in self.ca.pools:
            self.counters["pana_dropped_not_served"] += 1
            return []
        return self.preauth.pana(data, origin, network.id, port, self.wall(now))

    def radius(self, data: bytes, source: tuple, now: float) -> list:
        """A datagram from a RADIUS server: the answer to a session's request."""
        return self.preauth.radius(data, source, self.wall(now))

    # -- events from the data plane ---------------------------------------------

    def host_seen(self, mac: str, network: str, now: float) -> None:
        """The core learned (or relearned) a host there: the MN is attached."""
        self.aa.attached(mac, network, self.wall(now))

    def _sa_changed(self, sa, state: str) -> None:
        if self.events is not None:
            self.events.emit("sa", identity=sa.identity, network=sa.network, data={
                "sa": sa.id, "state": state, "mn_mac": sa.mn_mac})

    def _lease_changed(self, lease, what: str) -> None:
        if self.events is not None:
            self.events.emit("lease", identity=lease.identity, network=lease.network, data={
                "address": lease.address, "mac": lease.mac, "state": what})

    def _sa_dropped(self, sa, why: str, wall: float) -> None:
        """An SA the AA dropped on its own (a false MAC claim): its lease goes too."""
        self.ca.release(sa.network, mpa_client(sa.identity, sa.mn_mac), wall)

    def host_left(self, mac: str, network: str, now: float) -> None:
        """The core forgot a host (its link went down, or it stopped answering)."""
        self.aa.left(mac, network, self.wall(now))

    def address_used(self, address: str, now: float) -> None:
        """A packet (IPv4 or ARP) from ``address`` at a PoA: for DAD, it is in use."""
        self.ca.seen_in_use(address, self.wall(now))

    def tick(self, now: float, ready=lambda network: True
             ) -> tuple[list[tuple[str, str]], list[Answer]]:
        """Expire SAs and leases, advance DAD in the networks ``ready`` for it;
        returns (probes to send, answers ready)."""
        wall = self.wall(now)
        self.aa.tick(wall)
        probes = self.ca.tick(wall, ready)
        answers = self.preauth.tick(wall)
        # A request waits for its address's probes; once those ended (free or
        # taken) or stopped (a switch went), it is served anew.
        done = [(n, a) for n, a in self._waiting if a not in self.ca.pools[n].probing and ready(n)]
        for key in sorted(done):
            for held in self._waiting.pop(key, []):
                sa = self.unhold(held)
                if sa is not None:
                    answers += self._configure(sa, held.msg, held.origins, wall)
        return probes, answers

    def next_deadline(self) -> float | None:
        due = [d for d in (self.ca.next_deadline(), self.preauth.next_due()) if d is not None]
        return min(due) - self.wall_offset if due else None

    # -- DHCP ---------------------------------------------------------------------

    def dhcp(self, request, network_id: str, proactive: bool, now: float,
             learned: bool = False) -> DhcpDecision | None:
        """Serve one DHCP request for ``network_id`` (DhcpServer.serve); None: no answer."""
        return self.dhcp_server.serve(request, network_id, proactive, self.wall(now), learned)

    # -- views ------------------------------------------------------------------------

    def sa_views(self, now: float, network: str | None = None) -> list[dict]:
        return self.aa.views(self.wall(now), network)

    def lease_views(self, now: float, network: str | None = None) -> list[dict]:
        return self.ca.views(self.wall(now), network)


def _status_of(answer: dict) -> int:
    if answer.get("type") == "error":
        return messages.ERRORS.get(answer.get("code"), 400)
    return 200

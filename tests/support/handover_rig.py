"""mn1 on the fake network with the real core: its addresses, its in-band
exchanges of RFC 6252 §6.3 (pre-authentication, configuration, the tunnel,
the binding update, the handover's phases) and what to look at afterwards.

mn1 starts at ap-a1-1 in net-a1 and prepares a move to net-b1, every message
through the real codec.
"""

from __future__ import annotations

import pytest

from mpa_mn import protocol
from mpa_protocol.pana import PANA_PORT
from mpa_sdn.pana_agent import PanaReply
from mpa_protocol.schema import load_yaml
from mpa_sdn.config import parse_topology
from mpa_sdn.mobility import QUIET_S, SETTLE_S
from mpa_sdn.store import MemoryStore
from mpa_sdn.tables import feature_of
from support.aaa import preauthenticate
from support.network_rig import Outcome, Rig
from support.paths import DEFAULT_TOPOLOGY
from support.service_rig import IDENTITY, MN_MAC, counter_entropy

MN_IP = "10.1.1.50"          # mn1's address in net-a1 (outside the pool)
CN_IP = "10.0.0.10"
B1_GATEWAY = "10.2.1.1"
PORT = 7664                  # mpa.signalling_port, the default
MN_PORT = 40001              # the MN's source port
PANA_MN_PORT = 40716         # the PaC's source port
WALL_OFFSET = 1_700_000_000.0
HOME = "10.255.0.1"          # mn1's home address (two_domains.yaml)
NCOA = "10.2.1.100"          # the first address of net-b1's pool: mn1's nCoA


# -- in-band signalling ---------------------------------------------------------------

def datagrams(outcome: Outcome, host: str) -> list[dict]:
    return [p for p in outcome.to(host) if p.get("ip_proto") == 17]


def exchange(rig, payload: bytes, gateway=B1_GATEWAY) -> bytes:
    """One in-band request from mn1 and the one answer it gets back at its PoA."""
    outcome = rig.udp("mn1", gateway, PORT, payload, src_port=MN_PORT)
    [answer] = datagrams(outcome, "mn1")
    return answer["payload"]


def pana_exchange(rig, data: bytes, gateway=B1_GATEWAY, host="mn1") -> list[PanaReply]:
    """One PANA message from the MN to a gateway's AA (UDP 716); the PANA
    messages that reach the MN (RADIUS is answered inside the rig's run)."""
    outcome = rig.udp(host, gateway, PANA_PORT, data, src_port=PANA_MN_PORT)
    return [PanaReply(None, p["payload"]) for p in datagrams(outcome, host)
            if p.get("udp_src") == PANA_PORT]


def preauth(rig, network="net-b1", domain="domain-b", gateway=B1_GATEWAY, pre=True):
    """mn1 pre-authenticates with ``network``'s AA by PANA, in-band."""
    return preauthenticate(lambda data: pana_exchange(rig, data, gateway), None, rig.radius,
                           network, domain, IDENTITY, MN_MAC, pre,
                           entropy=counter_entropy(b"mn"))


def settle_dad(rig, rounds=10, step=0.1) -> Outcome:
    """Tick the AA and CA until the probes have run out unanswered."""
    outcome = Outcome()
    for _ in range(rounds):
        rig.run(rig.core.mpa_tick(rig.now), outcome)
        rig.now += step
    return outcome


# -- the core, the switches and mn1 ----------------------------------------------------

def variant(**mpa):
    """The default topology with other ``mpa:`` settings, validated as a file is."""
    with open(DEFAULT_TOPOLOGY, encoding="utf-8") as handle:
        raw = load_yaml(handle.read())
    raw["mpa"] = {**(raw.get("mpa") or {}), **mpa}
    return parse_topology(raw)


def make_rig(topology, **options) -> Rig:
    """The core with its AA and CA on fake switches; mn1 learned at ap-a1-1."""
    rig = Rig(topology, **{"store": MemoryStore(),
                           "entropy": counter_entropy(b"core"), "wall_offset": WALL_OFFSET,
                           **options})
    rig.connect_all()
    rig.add_host("mn1", MN_MAC, MN_IP, "ap-a1-1")
    assert len(rig.ping("mn1", CN_IP).to("cn1")) == 1
    return rig


class Mn:
    """mn1's side: its SA with a network, and what it asks that network's
    gateway in-band, from whichever address it sends from."""

    def __init__(self, rig: Rig, state, ncoa: str | None = None):
        self.rig, self.state, self.ncoa = rig, state, ncoa

    def exchange(self, kind, expected, source=None, **fields) -> tuple[Outcome, dict]:
        data, seq = protocol.request(self.state, kind, **fields)
        outcome = self.send(data, source)
        [answer] = datagrams(outcome, "mn1")
        return outcome, protocol.check_answer(self.state, answer["payload"], seq, expected)

    def send(self, data: bytes, source=None) -> Outcome:
        return self.rig.udp("mn1", gateway_of(self.rig, self.state.network), PORT, data,
                            src_port=MN_PORT, src_ip=source)

    def ask(self, kind, expected, source=None, **fields) -> dict:
        return self.exchange(kind, expected, source, **fields)[1]

    def refusal(self, kind, source=None, **fields) -> str:
        """The code of the error the request is answered with."""
        with pytest.raises(protocol.ProtocolError) as err:
            self.ask(kind, "an error", source, **fields)
        return err.value.code

    def bind_mac(self) -> None:
        """A first signed message (asking for instructions), which binds the
        SA to mn1's MAC (PANA names none)."""
        self.ask("instructions", "instruction-list")

    def configure(self) -> str:
        self.ncoa = self.ask("config-request", "config")["address"]
        return self.ncoa

    def bind(self, **fields) -> dict:
        """A binding update for the home address, sent from the nCoA."""
        return self.ask("binding-update", "binding-ack", source=self.ncoa, home_address=HOME,
                        care_of=self.ncoa, **fields)

    def handover(self, phase: str) -> dict:
        data, seq = protocol.request(self.state, "handover", phase=phase)
        outcome = self.send(data)
        if phase == "pre-switch" and not datagrams(outcome, "mn1"):
            # No traffic to prove the punt works: the answer waits SETTLE_S.
            outcome = later(self.rig, SETTLE_S)
        [answer] = datagrams(outcome, "mn1")
        return protocol.check_answer(self.state, answer["payload"], seq, "handover-state")


def gateway_of(rig, network: str) -> str:
    return str(rig.graph.network(network).gateway)


def authenticated(rig, network="net-b1", domain="domain-b") -> Mn:
    """mn1 pre-authenticated with ``network`` (with the E flag unless it is
    attached there)."""
    pre = rig.gateway(rig.hosts["mn1"]).id != network
    return Mn(rig, preauth(rig, network, domain, gateway_of(rig, network), pre))


def prepared(rig, network="net-b1", domain="domain-b") -> Mn:
    """Pre-authenticated with ``network`` and configured there."""
    settle_dad(rig)
    mn = authenticated(rig, network, domain)
    mn.configure()
    return mn


def tunnelled(rig) -> Mn:
    mn = prepared(rig)
    assert mn.ncoa == NCOA
    mn.ask("tunnel-request", "tunnel")
    return mn


def bound(rig) -> Mn:
    mn = tunnelled(rig)
    mn.bind()
    return mn


def pre_switched(rig) -> Mn:
    mn = bound(rig)
    assert mn.handover("pre-switch")["phase"] == "pre-switching"
    return mn


def arrive(rig) -> Outcome:
    """mn1 moves to ap-b1-1 and says so with a gratuitous ARP from its nCoA."""
    rig.move("mn1", "ap-b1-1", ip=NCOA)
    return rig.arp_request("mn1", NCOA)


def later(rig, seconds: float) -> Outcome:
    rig.now += seconds
    return rig.run(rig.core.tick(rig.now))


# -- what happened -------------------------------------------------------------------------

def pings(rig, src, dst, seqs, quiet=True) -> Outcome:
    """Echo requests numbered ``seqs``, one after the other; then (``quiet``)
    nothing for QUIET_S, so that an emptied buffer's punts go at once."""
    total = Outcome()
    for seq in seqs:
        total += rig.ping(src, dst, seq=seq)
    if quiet:
        rig.now += 1.5 * QUIET_S
    return total


def echoes(outcome: Outcome, host="mn1") -> list[int]:
    """The sequence numbers of the echo requests the host got, in order."""
    return [p["icmp_seq"] for p in outcome.to(host) if p.get("icmp_type") == 8]


def flows_of(rig, *features) -> dict[str, set]:
    """The switches holding flows of ``features``, and those flows' records."""
    out = {}
    for name, switch in rig.net.switches.items():
        records = {r for r in switch.records() if feature_of(r.cookie) in features}
        if records:
            out[name] = records
    return out


def holders(rig, feature) -> set[str]:
    return set(flows_of(rig, feature))


def sa_state(rig, network) -> str:
    [sa] = [sa for sa in rig.core.mpa.aa.sas.values() if sa.network == network]
    return sa.state

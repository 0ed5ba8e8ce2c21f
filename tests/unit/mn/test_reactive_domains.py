"""A handover without MPA (mpa_mn.reactive) with one controller per domain
(support.mn_domains: topologies/inter_domain.yaml's two controllers, each on
its own fake switches): into a network of another domain, the binding is
kept by the MN's home domain (mpa_mn.home_binding, as for an MPA handover),
the only controller that knows its home address; within the home domain it
is kept by the target's AR, as before.

The MN's packet sockets are on the target PoA's port: what it sends enters
that switch of the target's domain, and what leaves that port comes back to
the sockets of its ethertype.  A socket that finds nothing within its timeout
moves every clock on by that much.  The MN authenticates over REST (its
management link) or in-band from its new address at that port; its binding
update goes in-band from its new address, to a home network's gateway across
the border.
"""

import socket

import pytest

from mpa_mn.dad import DadSettings
from mpa_mn.reactive import Reactive, ReactiveSettings
from support.fakeoftable import from_bytes, to_bytes, udp_packet
from support.mn_domains import CN, HOME, OCOA, SOURCE_PORT, Domains
from support.mn_fakes import Clock
from support.service_rig import MN_MAC, counter_entropy

FAST = DadSettings(probe_wait_s=0.5, probe_num=2, probe_min_s=0.2, probe_max_s=0.4,
                   announce_wait_s=0.5, announce_num=1)
B1_FIRST = "10.2.1.100"       # the first address net-b1's CA gives
A2_FIRST = "10.1.2.100"       # net-a2's
TABLE = ("ip", "mpa_binding")


class PortWire:
    """Packet sockets on ``switch``:``port`` of ``domain``'s fake network."""

    def __init__(self, domains: Domains, domain: str, switch: str, port: int, clock: Clock):
        self.domains, self.rig = domains, domains.rigs[domain]
        self.at, self.clock, self.sockets = (switch, port), clock, []

    def __call__(self, interface, ethertype):
        assert interface == "eth0"
        self.sockets.append(PortSocket(self, ethertype))
        return self.sockets[-1]

    def send(self, frame: bytes) -> None:
        self.queue(self.rig.inject(*self.at, from_bytes(frame)))

    def advance(self, seconds: float) -> None:
        self.clock.now += seconds
        for rig in self.domains.rigs.values():
            rig.now += seconds
            outcome = rig.run(rig.core.tick(rig.now))
            if rig is self.rig:
                self.queue(outcome)

    def queue(self, outcome) -> None:
        for switch, port, pkt in outcome.frames:
            if (switch, port) == self.at:
                frame = to_bytes(pkt)
                ethertype = int.from_bytes(frame[12:14], "big")
                for sock in self.sockets:
                    if sock.ethertype == ethertype and not sock.closed:
                        sock.frames.append(frame)


class PortSocket:
    def __init__(self, wire: PortWire, ethertype: int):
        self.wire, self.ethertype = wire, ethertype
        self.frames, self.timeout, self.closed = [], None, False

    def send(self, frame):
        self.wire.send(frame)
        return len(frame)

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        if self.frames:
            return self.frames.pop(0), ("eth0", self.ethertype, 0, 1, b"")
        if self.timeout:
            self.wire.advance(self.timeout)
        raise socket.timeout()

    def close(self):
        self.closed = True


class MovedDomains(Domains):
    """mn1's world once its link is at ``here`` (domain, switch, port): a
    datagram from a new address of that domain to a gateway of that domain
    enters at that port; the rest as support.mn_domains routes it."""

    here = None

    def datagram(self, source, gateway, port, data):
        if self.here is None or source == OCOA or not (
                self.domain_of_address(source) == self.domain_of_address(gateway)
                == self.here[0]):
            return super().datagram(source, gateway, port, data)
        domain, switch, at = self.here
        rig = self.rigs[domain]
        network = rig.graph.network_of_address(gateway)
        outcome = rig.inject(switch, at, udp_packet(MN_MAC, network.gateway_mac, source,
                                                    gateway, SOURCE_PORT, port, data))
        return [(p["payload"], (p["ipv4_src"], p["udp_src"])) for sw, out, p in outcome.frames
                if (sw, out) == (switch, at) and p.get("ipv4_dst") == source
                and p.get("udp_dst") == SOURCE_PORT]


@pytest.fixture
def domains():
    return MovedDomains()


def moved(domains, domain, switch, port, channel="rest"):
    """mn1, holding its MPA-SA with net-a1 and its home address bound to its
    oCoA there, its link now at ``switch``:``port`` of ``domain``; a
    reactive run for it."""
    mn = domains.node(channel)
    mn.discover()                       # before the move, as reactive's candidate needs
    mn.bind_care_of("net-a1", HOME, OCOA)
    mn.counters.clear()
    domains.here = (domain, switch, port)
    clock = Clock()
    wire = PortWire(domains, domain, switch, port, clock)
    run = Reactive(mn, mn.vifs.ip, packet_socket=wire, clock=clock, sleep=wire.advance,
                   wall_ns=lambda: int(clock.now * 1e9), perf_ns=lambda: int(clock.now * 1e9),
                   entropy=counter_entropy(b"reactive"))
    return mn, run


def bindings(domains):
    """Each domain's binding of mn1's home address: (care-of, the network it names)."""
    return {domain: (lambda b: b and (b.care_of, b.network))(
        rig.core.mobility.bindings.get(HOME)) for domain, rig in domains.rigs.items()}


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_into_another_domain_it_binds_at_its_home_domain_and_rewrites(domains, channel):
    mn, run = moved(domains, "domain-b", "ap-b1", 2, channel)   # ap-b1-1, in net-b1
    before = mn.channel
    result = run.run("net-b1", HOME, [].append, "eth0", settings=ReactiveSettings(dad=FAST))
    assert result["address"] == B1_FIRST and result["router"] == "10.2.1.1"
    # The MPA-SA of the move is domain-b's; the binding is domain-a's, under
    # the MPA-SA with net-a1 (the home network it holds one with).
    assert domains.rigs["domain-b"].core.mpa.aa.sas[result["sa"]].network == "net-b1"
    assert {k: v for k, v in result["binding"].items() if k != "lifetime"} == {
        "care_of": B1_FIRST, "bound_at": "net-a1", "rewrite_at_mn": True,
        "correspondents": [CN], "rewrite_installed": True}
    assert bindings(domains) == {"domain-a": (B1_FIRST, "net-b1"), "domain-b": None}
    assert domains.a.core.counters["binding_updated_abroad"] == 1
    # The MN restores its home address for cn1 itself: no switch of domain-a
    # sees the packets between the care-of and the MN.
    assert TABLE in mn.rewrites.nft._run.tables
    assert mn.state.rewrite["care_of"] == B1_FIRST
    assert mn.counters["binding_at_home"] == 1
    assert "binding_home_refused" not in mn.counters
    # Its address is the new one; its channel is the one it came with.
    assert mn.address == B1_FIRST and mn.channel is before


def test_within_its_home_domain_it_binds_at_the_target_as_before(domains):
    mn, run = moved(domains, "domain-a", "ar-a2", 3)          # ap-a2-1, in net-a2
    result = run.run("net-a2", HOME, [].append, "eth0", settings=ReactiveSettings(dad=FAST))
    assert result["address"] == A2_FIRST
    assert {k: v for k, v in result["binding"].items() if k != "lifetime"} == {
        "care_of": A2_FIRST, "bound_at": "net-a2"}
    assert bindings(domains) == {"domain-a": (A2_FIRST, "net-a2"), "domain-b": None}
    assert mn.counters["binding_at_home"] == 0
    assert mn.rewrites.nft._run.tables == {} and mn.state.rewrite is None

"""One controller per administrative domain (``--domain``): what each knows of
the topology, how it routes to the other domain, and the MN-terminated
proactive handover tunnel (RFC 6252 §7.4) its nAR builds for an MN attached
in the other domain, on fake switches of that domain alone."""

from __future__ import annotations

import pytest

from mpa_mn import protocol
from mpa_protocol import messages
from mpa_protocol.messages import REQUESTS, VXLAN_PORT
from mpa_protocol.pana import PANA_PORT
from mpa_sdn.mobility import SETTLE_S
from mpa_sdn.pana_agent import PanaReply
from mpa_protocol.schema import ConfigError
from mpa_sdn.config import load_topology
from mpa_sdn.domain_view import foreign_switch, home_domain, serve_domain
from mpa_sdn.service import REST, Origin
from mpa_sdn.store import MemoryStore
from mpa_sdn.tables import (PRIO_CLASSIFY, PRIO_TUNNEL, PRIO_TUNNEL_END, Feature, Table,
                            feature_of)
from support.apitest import request, rig_api
from support.fakeoftable import ipv4_packet, to_bytes, udp_packet
from support.handover_rig import (PORT, WALL_OFFSET, Mn, echoes, later, pings, preauth,
                                  settle_dad)
from support.network_rig import Rig
from support.paths import DEFAULT_TOPOLOGY, ROOT
from support.aaa import preauthenticate
from support.service_rig import IDENTITY, MN_MAC, counter_entropy

INTER_DOMAIN = ROOT / "topologies" / "inter_domain.yaml"
OFPP_LOCAL = 0xfffffffe
OCOA = "10.1.1.50"          # mn1's address in net-a1, domain-a
B1_GATEWAY = "10.2.1.1"
BORDER = ("core-b", 9)      # where domain-a's traffic enters domain-b
ROUTER_MAC = "02:00:00:00:aa:01"   # the last router of domain-a, as frames arrive


@pytest.fixture(scope="module")
def whole():
    return load_topology(str(INTER_DOMAIN))


def test_each_domain_knows_its_own_switches_and_only_the_public_part_of_the_other(whole):
    a, b = serve_domain(whole, "domain-a"), serve_domain(whole, "domain-b")
    assert set(a.switches) == {"core-a", "cn-ar", "ar-a1", "ar-a2", foreign_switch("domain-b")}
    assert set(b.switches) == {"core-b", "ar-b1", "ap-b1", foreign_switch("domain-a")}
    assert list(a.domains) == ["domain-a"] and list(b.domains) == ["domain-b"]
    seen_from_a = a.networks["net-b1"]
    assert (str(seen_from_a.prefix), str(seen_from_a.gateway)) == ("10.2.1.0/24", B1_GATEWAY)
    assert seen_from_a.poas == () and seen_from_a.pool is None
    assert seen_from_a.access_router == foreign_switch("domain-b")
    assert not a.serves(seen_from_a) and a.serves(a.networks["net-a1"])
    assert set(a.poas) == {"cn-port", "ap-a1-1", "ap-a1-2", "ap-a2-1"}
    assert set(b.poas) == {"ap-b1-1", "ap-b1-2"}
    # mn1@domain-a's home address is anchored at home; domain-b knows no MN.
    assert set(a.mobile_nodes) == {"mn1"} and not b.mobile_nodes
    assert set(a.correspondents) == {"cn1"} and not b.correspondents
    # Each controller's own ports, from domains.ID.controller.
    assert (a.controller.openflow_port, a.controller.rest_port) == (6653, 8080)
    assert (b.controller.openflow_port, b.controller.rest_port) == (6654, 8081)
    [border] = [link for link in b.links if foreign_switch("domain-a") in
                (link.a.switch, link.b.switch)]
    assert {(border.a.switch, border.a.port), (border.b.switch, border.b.port)} == {
        ("core-b", 9), (foreign_switch("domain-a"), 9)}


def test_a_domain_that_cannot_be_served_alone_is_refused_with_its_reasons(whole):
    with pytest.raises(ConfigError) as unknown:
        serve_domain(whole, "domain-c")
    assert "not a domain of the topology" in unknown.value.lines()[0]
    # two_domains.yaml's core switch belongs to no network: whose is it?
    with pytest.raises(ConfigError) as undecided:
        serve_domain(load_topology(str(DEFAULT_TOPOLOGY)), "domain-b")
    assert undecided.value.lines() == [
        "switches.core.domain: is needed to serve one domain: the switch is no network's AR "
        "and holds no PoA, or holds those of several domains"]


def test_the_home_domain_is_the_identity_realm():
    assert home_domain("mn1@domain-a") == "domain-a"
    assert home_domain("a@b@domain-b") == "domain-b"
    assert home_domain("anonymous") is None and home_domain(None) is None


# -- domain-b's controller on domain-b's fake switches ------------------------------------

def rig_of(whole, domain: str) -> Rig:
    rig = Rig(serve_domain(whole, domain), store=MemoryStore(),
              entropy=counter_entropy(b"core"), wall_offset=WALL_OFFSET)
    rig.connect_all()
    return rig


def held(rig: Rig, switch: str, feature: Feature) -> list:
    """The flows of ``feature`` the fake switch holds."""
    return [e for e in rig.net.switches[switch].entries if feature_of(e.cookie) == feature]


def from_domain_a(rig: Rig, payload: bytes, source: str = OCOA, port: int = PORT):
    """An in-band datagram of mn1 routed across the border to net-b1's gateway;
    the answer, as it leaves domain-b by the same border."""
    pkt = udp_packet(ROUTER_MAC, rig.graph.network("net-b1").gateway_mac, source, B1_GATEWAY,
                     40001, port, payload)
    outcome = rig.inject(*BORDER, pkt)
    answers = [p for sw, peer, p in outcome.hops
               if (sw, peer) == ("core-b", foreign_switch("domain-a"))]
    return outcome, answers


def across_the_border(rig: Rig, send, network: str, domain: str):
    """mn1's PANA pre-authentication with ``network``'s AA from the other
    domain (``send``: a PANA message -> the packets that leave by the border)."""
    return preauthenticate(lambda data: [PanaReply(None, p["payload"]) for p in send(data)],
                           None, rig.radius, network, domain, IDENTITY, MN_MAC,
                           entropy=counter_entropy(b"mn"))


class ForeignMn:
    """mn1 in domain-a, talking to domain-b's AA, CA and AR across the border."""

    def __init__(self, rig: Rig):
        self.rig = rig
        self.state = across_the_border(
            rig, lambda data: from_domain_a(rig, data, port=PANA_PORT)[1], "net-b1", "domain-b")

    def exchange(self, payload: bytes, source: str = OCOA) -> bytes:
        _, answers = from_domain_a(self.rig, payload, source)
        [answer] = answers
        assert answer["ipv4_dst"] == source
        return answer["payload"]

    def ask(self, kind, expected, source: str = OCOA, **fields) -> dict:
        data, seq = protocol.request(self.state, kind, **fields)
        return protocol.check_answer(self.state, self.exchange(data, source), seq, expected)


@pytest.fixture
def rig_b(whole):
    rig = rig_of(whole, "domain-b")
    settle_dad(rig)
    return rig


def test_domain_b_answers_for_its_gateway_and_routes_answers_back_over_the_border(rig_b):
    outcome = rig_b.inject(*BORDER, udp_packet(ROUTER_MAC, "02:00:00:00:00:99", OCOA,
                                               B1_GATEWAY, 40001, PORT, b"not a message"))
    # A malformed datagram is the AA's to refuse; it is punted at the first
    # switch of domain-b that sees it, not forwarded into the network.
    assert outcome.punted_at == [("core-b", 9, Table.ROUTE)]


def test_an_mn_in_the_other_domain_gets_an_mn_terminated_vxlan_tunnel(rig_b):
    mn = ForeignMn(rig_b)
    ncoa = mn.ask("config-request", "config")["address"]
    tunnel = mn.ask("tunnel-request", "tunnel", outer=OCOA)
    network = rig_b.graph.network("net-b1")
    assert {k: tunnel[k] for k in ("address", "encapsulation", "key", "endpoint", "outer",
                                   "udp_port", "router_mac")} == {
        "address": ncoa, "encapsulation": "vxlan", "key": 16, "endpoint": B1_GATEWAY,
        "outer": OCOA, "udp_port": VXLAN_PORT, "router_mac": network.gateway_mac}
    assert "poa" not in tunnel
    flows = held(rig_b, "ar-b1", Feature.TUNNEL)
    into = [f for f in flows if f.table_id == Table.ROUTE]
    out_of = [f for f in flows if f.table_id == Table.INGRESS]
    assert [f.priority for f in into + out_of] == [PRIO_TUNNEL, PRIO_TUNNEL]
    assert out_of[0].match == {
        "in_port": 100, "tunnel_id": 16, "tun_ipv4_src": OCOA, "eth_type": 0x0800,
        "ipv4_src": ncoa}
    sets = {a.key: a.value for i in into[0].instructions for a in i.actions
            if hasattr(a, "key")}
    assert sets == {"eth_src": network.gateway_mac, "eth_dst": MN_MAC, "tunnel_id": 16,
                    "tun_ipv4_dst": OCOA}
    # Only ar-b1 holds the tunnel: no switch of domain-a is domain-b's to program.
    assert {s for s in rig_b.net.switches if held(rig_b, s, Feature.TUNNEL)} == {"ar-b1"}
    assert rig_b.core.counters["tunnel_created_vxlan"] == 1


def test_an_mn_asking_from_the_other_domain_has_left_where_domain_b_last_saw_it(rig_b):
    """An access point's port stays up as mn1 leaves for domain-a: domain-b
    still has it at ap-b1-1, but its request from domain-a says where it is."""
    rig_b.add_host("mn1", MN_MAC, "10.2.1.160", "ap-b1-1")
    rig_b.ping("mn1", B1_GATEWAY)           # learned there by its first packet
    assert rig_b.core.mobility.where[MN_MAC].id == "ap-b1-1"
    del rig_b.hosts["mn1"]                  # gone to domain-a, ap-b1-1's port still up
    mn = ForeignMn(rig_b)
    mn.ask("config-request", "config")
    # Over REST its word alone (an outer address abroad) changes nothing.
    data, seq = protocol.request(mn.state, "tunnel-request", outer=OCOA)
    [answer] = rig_b.core.signal(data, Origin(REST, "192.0.2.9", None), REQUESTS, rig_b.now)
    with pytest.raises(protocol.ProtocolError) as attached:
        protocol.check_answer(mn.state, answer.body, seq, "tunnel")
    assert attached.value.code == "wrong-state"
    assert rig_b.core.mobility.where[MN_MAC].id == "ap-b1-1"
    tunnel = mn.ask("tunnel-request", "tunnel", outer=OCOA)
    assert (tunnel["encapsulation"], tunnel["outer"]) == ("vxlan", OCOA)
    assert rig_b.core.counters["tunnel_mn_seen_abroad"] == 1
    # Where it was is forgotten, and its host there is polled.
    assert MN_MAC not in rig_b.core.mobility.where
    assert "10.2.1.160" in rig_b.core.router.probing


def test_a_tunnel_is_refused_to_an_outer_address_that_is_not_the_sender_or_not_foreign(rig_b):
    mn = ForeignMn(rig_b)
    mn.ask("config-request", "config")
    with pytest.raises(protocol.ProtocolError) as elsewhere:
        mn.ask("tunnel-request", "tunnel", outer="10.1.1.51")
    assert elsewhere.value.code == "binding-refused"
    # Over REST (source: a management address) the MN names its outer
    # address; one in domain-b's own network is not where an MN it does not
    # see could be.
    data, seq = protocol.request(mn.state, "tunnel-request", outer="10.2.1.150")
    [answer] = rig_b.core.signal(data, Origin(REST, "192.0.2.9", None), REQUESTS, rig_b.now)
    with pytest.raises(protocol.ProtocolError) as inside:
        protocol.check_answer(mn.state, answer.body, seq, "tunnel")
    assert inside.value.code == "wrong-state"
    assert rig_b.core.counters["tunnel_refused_outer"] == 2
    assert not held(rig_b, "ar-b1", Feature.TUNNEL)


def test_open_vswitch_ends_and_starts_the_tunnels_at_the_nar_and_the_border(rig_b):
    [end] = [f for f in held(rig_b, "ar-b1", Feature.PIPELINE) if f.priority == PRIO_TUNNEL_END]
    assert end.match == {"eth_type": 0x0800, "ip_proto": 17,
                                       "udp_dst": VXLAN_PORT, "ipv4_dst": B1_GATEWAY}
    from_local = [f.match for f in held(rig_b, "core-b", Feature.PIPELINE)
                  if f.priority == PRIO_CLASSIFY and f.match.get("in_port") == OFPP_LOCAL]
    assert from_local == [{"in_port": OFPP_LOCAL, "eth_type": 0x0800, "ip_proto": 17,
                           "udp_dst": VXLAN_PORT, "ipv4_src": B1_GATEWAY}]


def test_domain_a_routes_the_other_domains_prefix_out_of_its_border(whole):
    rig = rig_of(whole, "domain-a")
    rig.add_host("mn1", MN_MAC, OCOA, "ap-a1-1")
    outcome = rig.ping("mn1", B1_GATEWAY)
    # mn1's first packet teaches domain-a its host; then it leaves by core-a:9.
    assert ("core-a", foreign_switch("domain-b")) in [(s, p) for s, p, _ in outcome.hops]
    assert not any(t == Table.ROUTE for _, _, t in outcome.punted_at)


# -- the binding, kept by the home domain (RFC 6252 §6.3 step 3) ----------------------------

HOME = "10.255.0.1"
NCOA = "10.2.1.100"         # net-b1's first pool address: mn1's nCoA from domain-b's CA
CN_IP = "10.0.0.10"
A1_GATEWAY = "10.1.1.1"


@pytest.fixture
def rig_a(whole):
    rig = rig_of(whole, "domain-a")
    rig.add_host("mn1", MN_MAC, OCOA, "ap-a1-1")
    assert len(rig.ping("mn1", CN_IP).to("cn1")) == 1
    return rig


def through_the_border(rig: Rig, src: str, dst: str, payload: bytes, port: int = PORT):
    """A datagram from domain-b entering domain-a at its border; what leaves
    domain-a by the border again."""
    pkt = udp_packet(ROUTER_MAC, "02:00:00:00:00:99", src, dst, 40001, port, payload)
    outcome = rig.inject("core-a", 9, pkt)
    return outcome, [p for sw, peer, p in outcome.hops
                     if (sw, peer) == ("core-a", foreign_switch("domain-b"))]


def test_the_home_domain_binds_the_home_address_to_a_care_of_in_the_other_domain(rig_a):
    state = preauth(rig_a, "net-a1", "domain-a", A1_GATEWAY)

    def update(**fields) -> dict:
        data, seq = protocol.request(state, "binding-update", home_address=HOME,
                                     care_of=NCOA, **fields)
        # In-band from the nCoA: through domain-b's tunnel and across the border.
        _, out = through_the_border(rig_a, NCOA, A1_GATEWAY, data)
        [answer] = out
        assert answer["ipv4_dst"] == NCOA            # the ack goes back down the tunnel
        return protocol.check_answer(state, answer["payload"], seq, "binding-ack")

    ack = update()
    assert (ack["care_of"], ack["rewrite_at_mn"], ack["correspondents"], ack["pending"]) == (
        NCOA, True, [CN_IP], True)
    # Not yet: the MN does not rewrite for the nCoA until it has this answer.
    assert not [h for h in rig_a.ping("cn1", HOME).hops if h[1] == foreign_switch("domain-b")]
    # ... but what it sends from the nCoA once it does reaches cn1 as from home.
    back, _ = through_the_border(rig_a, NCOA, CN_IP, b"early", port=5000)
    assert [p["ipv4_src"] for _, p in back.delivered] == [HOME]
    ack = update(rewriting=True)
    assert "pending" not in ack and ack["rewrite_at_mn"]
    # The correspondent's traffic to the home address now leaves for the nCoA...
    outcome = rig_a.ping("cn1", HOME)
    [(sw, peer, pkt)] = [h for h in outcome.hops if h[1] == foreign_switch("domain-b")]
    assert (sw, pkt["ipv4_src"], pkt["ipv4_dst"]) == ("core-a", CN_IP, NCOA)
    # ... and what comes back from it reaches the correspondent from the home address.
    back, _ = through_the_border(rig_a, NCOA, CN_IP, b"reply", port=5000)
    [(name, pkt)] = back.delivered
    assert (name, pkt["ipv4_src"], pkt["ipv4_dst"]) == ("cn1", HOME, CN_IP)
    # Only the correspondent's edge rewrites: mn1's own PoA switch holds nothing of it.
    assert {s for s in rig_a.net.switches if held(rig_a, s, Feature.BINDING)} == {"cn-ar"}
    assert rig_a.core.counters["binding_updated_abroad"] == 1


def test_a_foreign_binding_update_not_from_its_care_of_changes_nothing(rig_a):
    state = preauth(rig_a, "net-a1", "domain-a", A1_GATEWAY)
    data, seq = protocol.request(state, "binding-update", home_address=HOME, care_of=NCOA)
    _, out = through_the_border(rig_a, "10.2.1.101", A1_GATEWAY, data)
    [answer] = out
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.check_answer(state, answer["payload"], seq, "binding-ack")
    assert refused.value.code == "binding-refused"
    assert not any(held(rig_a, s, Feature.BINDING) for s in rig_a.net.switches)


def test_another_domain_never_binds_an_mn_it_is_not_the_home_of(rig_b):
    mn = ForeignMn(rig_b)
    mn.ask("config-request", "config")
    mn.ask("tunnel-request", "tunnel", outer=OCOA)
    data, seq = protocol.request(mn.state, "binding-update", home_address=HOME, care_of=NCOA)
    [answer] = rig_b.core.signal(data, Origin(REST, "192.0.2.9", None), REQUESTS, rig_b.now)
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.check_answer(mn.state, answer.body, seq, "binding-ack")
    assert refused.value.code == "binding-refused"
    assert not any(held(rig_b, s, Feature.BINDING) for s in rig_b.net.switches)


# -- the handover into domain-b (steps 4 to 6) ---------------------------------------------

def correspondent_datagram(rig: Rig, seq: int):
    """What domain-a sends on for the home address: to the nCoA, across the border."""
    return rig.inject(*BORDER, udp_packet(ROUTER_MAC, "02:00:00:00:00:99", CN_IP, NCOA, 5000,
                                          5001, seq.to_bytes(4, "big")))


def answered_pre_switch(rig: Rig, state, seq: int, answers: list, other: str) -> dict:
    """The pre-switch's answer, leaving by the border towards ``other``: at
    once, or (nothing punted yet to prove the punt works) SETTLE_S later."""
    if not answers:
        rig.now += 0.05
        answers = [p for sw, peer, p in rig.run(rig.core.tick(rig.now)).hops
                   if peer == foreign_switch(other)]
    [answer] = answers
    return protocol.check_answer(state, answer["payload"], seq, "handover-state")


def pre_switched_abroad(rig: Rig) -> ForeignMn:
    mn = ForeignMn(rig)
    assert mn.ask("config-request", "config")["address"] == NCOA
    mn.ask("tunnel-request", "tunnel", outer=OCOA)
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch")
    _, answers = from_domain_a(rig, data)
    state = answered_pre_switch(rig, mn.state, seq, answers, "domain-a")
    assert state["phase"] == "pre-switching"
    return mn


def test_the_nar_buffers_what_the_home_domain_sends_and_delivers_it_after_the_move(rig_b):
    pre_switched_abroad(rig_b)
    for seq in range(3):
        outcome = correspondent_datagram(rig_b, seq)
        assert not outcome.delivered and not [h for h in outcome.hops
                                              if h[1] == foreign_switch("domain-a")]
    # The link-layer switch: mn1 comes up at ap-b1-1 with its nCoA (step 6).
    rig_b.add_host("mn1", MN_MAC, NCOA, "ap-b1-1")
    delivered = rig_b.arp_request("mn1", NCOA).delivered
    delivered += rig_b.run(rig_b.core.mpa_tick(rig_b.now)).delivered
    got = [int.from_bytes(p["payload"], "big") for name, p in delivered
           if name == "mn1" and p.get("ip_proto") == 17]
    assert got == [0, 1, 2]
    assert all(p["ipv4_dst"] == NCOA for name, p in delivered if p.get("ip_proto") == 17)


def test_a_switch_back_returns_the_buffer_into_the_tunnel_to_where_the_mn_stayed(rig_b):
    mn = pre_switched_abroad(rig_b)
    correspondent_datagram(rig_b, 7)
    data, seq = protocol.request(mn.state, "handover", phase="cancel")
    _, answers = from_domain_a(rig_b, data)
    outs = [m for dpid, m in rig_b.sent if getattr(m, "data", None) is not None
            and dpid == rig_b.graph.dpid("ar-b1")]
    tunnelled = [m for m in outs if any(getattr(a, "key", None) == "tunnel_id"
                                        for a in m.actions)]
    assert len(tunnelled) == 1 and rig_b.core.counters["buffer_returned_to_tunnel"] == 1
    assert rig_b.core.counters["buffer_dropped_no_destination"] == 0


def test_the_api_shows_another_domains_network_by_its_public_part_only(rig_a):
    api = rig_api(rig_a)
    _, networks = request(api, "/mpa/v1/networks")
    [b1] = [n for n in networks if n["id"] == "net-b1"]
    assert b1["access_router"] == {"switch": None, "dpid": None}
    assert (b1["poas"], b1["pool"], b1["domain"]) == ([], None, "domain-b")
    _, candidates = request(api, "/mpa/v1/networks/net-a1/neighbours")
    [b1] = [c for c in candidates if c["network"] == "net-b1"]
    assert (b1["ar"]["switch"], b1["ar"]["dpid"], b1["ar"]["address"]) == (None, None,
                                                                           B1_GATEWAY)
    assert b1["poas"] == []


def test_vxlan_for_an_nar_crosses_its_domain_to_the_nar_and_its_local_port(rig_b):
    outcome = rig_b.inject(*BORDER, udp_packet(ROUTER_MAC, "02:00:00:00:00:99", OCOA,
                                               B1_GATEWAY, 51000, VXLAN_PORT, b"vxlan"))
    assert not outcome.punts      # not taken for a packet to the gateway itself
    [(switch, port, pkt)] = outcome.frames
    assert (switch, port) == ("ar-b1", OFPP_LOCAL)
    assert pkt["eth_dst"] == rig_b.graph.network("net-b1").gateway_mac


def test_a_gateway_answers_a_ping_from_another_domain_by_routing_it_back(rig_b):
    outcome = rig_b.inject(*BORDER, ipv4_packet(ROUTER_MAC, "02:00:00:00:00:99", OCOA,
                                                B1_GATEWAY))
    [reply] = [p for sw, peer, p in outcome.hops if peer == foreign_switch("domain-a")]
    assert (reply["ipv4_src"], reply["ipv4_dst"], reply["icmp_type"]) == (B1_GATEWAY, OCOA, 0)
    assert rig_b.core.counters["gateway_echo_reply"] == 1


def test_the_switch_list_holds_the_domains_switches_not_the_other_domains_stand_in(rig_b):
    assert [s["id"] for s in rig_b.core.switch_summary(rig_b.now)] == ["ap-b1", "ar-b1",
                                                                       "core-b"]
    assert all(s["connected"] for s in rig_b.core.switch_summary(rig_b.now))


# -- back home: mn1 in domain-b prepares its move to net-a1 ---------------------------------

A1_POOL_FIRST = "10.1.1.100"


def from_domain_b(rig: Rig, payload: bytes, source: str = NCOA, port: int = PORT):
    """mn1's in-band datagram from net-b1 entering domain-a at its border to
    net-a1's gateway; the answer, as it leaves domain-a by the same border."""
    _, out = through_the_border(rig, source, A1_GATEWAY, payload, port)
    return out


class ReturningMn:
    """mn1 in domain-b preparing its move home to net-a1: its SA with net-a1
    made across the border, the nCoA, and domain-a's VXLAN tunnel to it."""

    def __init__(self, rig: Rig):
        self.rig = rig
        settle_dad(rig)
        # mn1 left for domain-b: its port at ap-a1-1 went down.
        rig.run(rig.core.port_status(rig.graph.dpid("ar-a1"), 3, True, rig.now))
        self.state = across_the_border(
            rig, lambda data: from_domain_b(rig, data, port=PANA_PORT), "net-a1", "domain-a")
        self.ncoa = self.ask("config-request", "config")["address"]
        assert self.ask("tunnel-request", "tunnel", outer=NCOA)["encapsulation"] == "vxlan"

    def ask(self, kind, expected, source=NCOA, **fields):
        data, seq = protocol.request(self.state, kind, **fields)
        [answer] = from_domain_b(self.rig, data, source)
        return protocol.check_answer(self.state, answer["payload"], seq, expected)

    def through_the_tunnel(self, kind, expected, **fields) -> dict:
        """In-band from the nCoA, up domain-a's own VXLAN tunnel (key 16)."""
        data, seq = protocol.request(self.state, kind, **fields)
        pkt = udp_packet(MN_MAC, self.rig.graph.network("net-a1").gateway_mac, self.ncoa,
                         A1_GATEWAY, 40001, PORT, data)
        pkt.update(tunnel_id=16, tun_ipv4_src=NCOA)
        outcome = self.rig.inject("ar-a1", 100, pkt)
        assert outcome.punted_at == [("ar-a1", 100, Table.ROUTE)]
        [answer] = [p for sw, port, p in outcome.frames if port == 100]
        return protocol.check_answer(self.state, answer["payload"], seq, expected)


def test_a_binding_home_through_a_tunnel_to_the_mn_abroad_has_the_mn_rewrite(rig_a):
    mn = ReturningMn(rig_a)
    # The binding update from the new nCoA goes up domain-a's own VXLAN tunnel.
    ack = mn.through_the_tunnel("binding-update", "binding-ack", home_address=HOME,
                                care_of=mn.ncoa)
    assert (ack["care_of"], ack["rewrite_at_mn"], ack["correspondents"]) == (mn.ncoa, True,
                                                                            [CN_IP])
    assert mn.ncoa == A1_POOL_FIRST


def test_home_as_the_nar_bicasts_abroad_until_the_mn_arrives_and_not_after(rig_a):
    mn = ReturningMn(rig_a)
    for rewriting in (None, True):
        mn.through_the_tunnel("binding-update", "binding-ack", home_address=HOME,
                              care_of=mn.ncoa, **({"rewriting": True} if rewriting else {}))
    ack = mn.through_the_tunnel("binding-update", "binding-ack", home_address=HOME,
                                care_of=mn.ncoa, bicast=True, bicast_to=NCOA)
    assert ack["bicast_to"] == NCOA
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch", mode="bicast")
    state = answered_pre_switch(rig_a, mn.state, seq, from_domain_b(rig_a, data), "domain-b")
    assert state["phase"] == "pre-switching"
    # The leg abroad leaves by the border; ar-a1 drops the target leg.
    outcome = rig_a.ping("cn1", HOME)
    assert legs(outcome) == [("border", NCOA)]
    # mn1 arrives at ap-a1-1 with its nCoA: the leg abroad ends at once.
    rig_a.move("mn1", "ap-a1-1", ip=mn.ncoa)
    rig_a.arp_request("mn1", mn.ncoa)
    assert rig_a.core.mobility.bicasts == {}
    rig_a.now += 1
    rig_a.run(rig_a.core.tick(rig_a.now))
    outcome = rig_a.ping("cn1", HOME)
    assert legs(outcome) == [("mn1", HOME)]


def test_a_pending_binding_the_mn_never_confirms_goes_with_its_way_back(rig_a):
    state = preauth(rig_a, "net-a1", "domain-a", A1_GATEWAY)
    data, seq = protocol.request(state, "binding-update", home_address=HOME, care_of=NCOA)
    through_the_border(rig_a, NCOA, A1_GATEWAY, data)
    assert held(rig_a, "cn-ar", Feature.BINDING)          # the way back from the nCoA
    rig_a.now += rig_a.core.mobility.settings.retransmit_s + 1
    rig_a.run(rig_a.core.tick(rig_a.now))
    assert not held(rig_a, "cn-ar", Feature.BINDING)
    assert rig_a.core.counters["binding_pending_expired"] == 1
    assert rig_a.core.mobility.pending == {} and rig_a.core.mobility.bindings == {}


def test_an_mn_terminated_tunnel_comes_back_whole_after_a_restart(rig_b):
    mn = ForeignMn(rig_b)
    mn.ask("config-request", "config")
    mn.ask("tunnel-request", "tunnel", outer=OCOA)
    before = [(e.table_id, e.priority, e.match) for e in held(rig_b, "ar-b1", Feature.TUNNEL)]
    rig_b.restart()
    [tunnel] = rig_b.core.mobility.tunnels.values()
    assert (tunnel.encapsulation, tunnel.outer, tunnel.poa) == ("vxlan", OCOA, None)
    assert [(e.table_id, e.priority, e.match)
            for e in held(rig_b, "ar-b1", Feature.TUNNEL)] == before
    assert not [k for k in rig_b.core.counters if k.endswith("_record_invalid")]


# -- copy-and-forward with the second interface in the other domain (§7.6.2) ----------------

def standing_by_abroad(rig: Rig):
    """mn1 bound at home where it is (ap-a1-1), its second interface in net-b1
    with domain-b's nCoA, bound as a standby at home under its home SA, from
    that interface (so across the border)."""
    state = preauth(rig, "net-a1", "domain-a", A1_GATEWAY)
    Mn(rig, state, OCOA).bind()
    data, seq = protocol.request(state, "binding-update", home_address=HOME, care_of=NCOA,
                                 standby=True)
    [answer] = from_domain_b(rig, data)
    ack = protocol.check_answer(state, answer["payload"], seq, "binding-ack")
    return state, ack


def icmp_out_of_the_border(outcome) -> list[tuple[int, str]]:
    return [(p["icmp_seq"], p["ipv4_dst"]) for sw, peer, p in outcome.hops
            if (sw, peer) == ("core-a", foreign_switch("domain-b")) and p.get("icmp_type") == 8]


def test_a_standby_abroad_has_the_mn_rewrite_and_copies_at_home(rig_a):
    _, ack = standing_by_abroad(rig_a)
    assert (ack["standby"], ack["care_of"], ack["rewrite_at_mn"], ack["correspondents"]) == (
        True, NCOA, True, [CN_IP])
    outcome = pings(rig_a, "cn1", HOME, [1, 2], quiet=False)
    assert echoes(outcome) == [1, 2] and not icmp_out_of_the_border(outcome)
    assert rig_a.core.counters["copy_made"] == 2
    assert rig_a.core.counters["standby_armed_abroad"] == 1
    # Nothing moved: the binding stays where mn1 is.
    assert rig_a.core.mobility.bindings[HOME].care_of == OCOA


def test_a_lost_link_sends_the_copies_the_mn_missed_then_the_rest_to_the_care_of_abroad(rig_a):
    """1-2 reached mn1; 3 went out of a port whose link was gone; the
    port-status; 4-5 to the nCoA wait at the border; the MN's word, through
    its second interface across the border, names 1-2: 3, 4, 5 leave for
    domain-b in that order, addressed to the nCoA, and then the direct way."""
    state, _ = standing_by_abroad(rig_a)
    got = pings(rig_a, "cn1", HOME, [1, 2], quiet=False).to("mn1")
    rig_a.hosts["mn1"].switch, rig_a.hosts["mn1"].port = "nowhere", 0
    pings(rig_a, "cn1", HOME, [3], quiet=False)
    poa = rig_a.topology.poas["ap-a1-1"]
    rig_a.run(rig_a.core.port_status(rig_a.graph.dpid(poa.switch), poa.port, True, rig_a.now))
    assert rig_a.core.mobility.bindings[HOME].care_of == NCOA
    waiting = pings(rig_a, "cn1", HOME, [4, 5], quiet=False)
    assert icmp_out_of_the_border(waiting) == []
    assert [(sw, t) for sw, _, t in waiting.punted_at] == [("core-a", Table.ROUTE)] * 2
    data, seq = protocol.request(state, "handover", phase="link-lost",
                                 delivered=[messages.frame_digest(to_bytes(p)) for p in got])
    outcome, [answer] = through_the_border(rig_a, NCOA, A1_GATEWAY, data)
    assert protocol.check_answer(state, answer["payload"], seq,
                                 "handover-state")["phase"] == "flushing"
    outcome += later(rig_a, SETTLE_S)
    outcome += later(rig_a, 1.0)
    assert icmp_out_of_the_border(outcome) == [(3, NCOA), (4, NCOA), (5, NCOA)]
    c = rig_a.core.counters
    assert (c["copy_sorted_by_marker"], c["copy_forwarded"], c["copy_skipped"]) == (1, 1, 2)
    # The three, and the answer to link-lost, which no buffer holds.
    assert (c["buffer_delivered_abroad"], c["buffer_passed_answer"]) == (4, 1)
    assert c["buffer_dropped_no_destination"] == 0
    [handover] = rig_a.core.mobility.history
    assert handover["phase"] == "completed" and handover["network"] == "net-b1"
    # Then straight out of the border, and no buffering flow is left behind.
    assert icmp_out_of_the_border(pings(rig_a, "cn1", HOME, [6])) == [(6, NCOA)]
    assert not any(held(rig_a, s, Feature.BUFFER) for s in rig_a.net.switches)


def test_a_link_lost_abroad_without_a_standby_there_is_refused(rig_a):
    state = preauth(rig_a, "net-a1", "domain-a", A1_GATEWAY)
    Mn(rig_a, state, OCOA).bind()
    data, seq = protocol.request(state, "handover", phase="link-lost")
    [answer] = from_domain_b(rig_a, data)
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.check_answer(state, answer["payload"], seq, "handover-state")
    assert refused.value.code == "wrong-state"
    assert rig_a.core.mobility.bindings[HOME].care_of == OCOA


# -- bicasting steered by the home domain (§7.6.1) --------------------------------------------

def bound_abroad_from_home(rig: Rig):
    """mn1 still at ap-a1-1, its home address bound to domain-b's nCoA (the
    tunnel's end), both steps done."""
    state = preauth(rig, "net-a1", "domain-a", A1_GATEWAY)

    def update(**fields) -> dict:
        data, seq = protocol.request(state, "binding-update", home_address=HOME,
                                     care_of=NCOA, **fields)
        [answer] = from_domain_b(rig, data)
        return protocol.check_answer(state, answer["payload"], seq, "binding-ack")
    update()
    update(rewriting=True)
    return state, update


def legs(outcome) -> list[tuple[str, str]]:
    """Where cn1's echo request went: to mn1 at home, or out of the border."""
    return sorted([("mn1", p["ipv4_dst"]) for p in outcome.to("mn1")
                   if p.get("icmp_type") == 8]
                  + [("border", dst) for _, dst in icmp_out_of_the_border(outcome)])


def test_the_home_domain_bicasts_to_where_the_mn_is_and_to_its_care_of_abroad(rig_a):
    _, update = bound_abroad_from_home(rig_a)
    assert legs(rig_a.ping("cn1", HOME)) == [("border", NCOA)]
    ack = update(bicast=True)
    assert (ack["care_of"], ack["bicast_to"], ack["rewrite_at_mn"]) == (NCOA, OCOA, True)
    # Both ways: to mn1 where it is (its home address restored by its PoA)
    # and to the nCoA abroad, which domain-b's nAR drops until mn1 arrives.
    assert legs(rig_a.ping("cn1", HOME)) == [("border", NCOA), ("mn1", HOME)]
    assert rig_a.core.counters["bicast_steered"] == 1
    # mn1 leaves ap-a1-1: the leg there ends with it.
    poa = rig_a.topology.poas["ap-a1-1"]
    rig_a.hosts["mn1"].switch, rig_a.hosts["mn1"].port = "nowhere", 0
    rig_a.run(rig_a.core.port_status(rig_a.graph.dpid(poa.switch), poa.port, True, rig_a.now))
    assert rig_a.core.mobility.bicasts == {} and rig_a.core.counters["bicast_ended"] == 1
    assert legs(rig_a.ping("cn1", HOME)) == [("border", NCOA)]


def test_a_binding_update_without_bicast_ends_it_and_so_does_its_time(rig_a):
    _, update = bound_abroad_from_home(rig_a)
    update(bicast=True)
    update()                                     # a switch-back: the MN stayed
    assert legs(rig_a.ping("cn1", HOME)) == [("border", NCOA)]
    update(bicast=True)
    s = rig_a.core.mobility.settings
    rig_a.now += s.switch_deadline_s + s.bicast_period_s + 1
    rig_a.run(rig_a.core.tick(rig_a.now))
    assert legs(rig_a.ping("cn1", HOME)) == [("border", NCOA)]
    assert rig_a.core.counters["bicast_ended"] == 2


def test_bicasting_from_home_needs_the_binding_abroad_and_the_mn_here(rig_a):
    state = preauth(rig_a, "net-a1", "domain-a", A1_GATEWAY)
    mn = Mn(rig_a, state, OCOA)
    mn.bind()
    # Bound where it is: the home domain has nothing to add.
    assert mn.refusal("binding-update", source=OCOA, home_address=HOME, care_of=OCOA,
                      bicast=True) == "wrong-state"
    data, seq = protocol.request(state, "binding-update", home_address=HOME, care_of=NCOA,
                                 bicast=True)
    [answer] = from_domain_b(rig_a, data)
    with pytest.raises(protocol.ProtocolError) as refused:
        protocol.check_answer(state, answer["payload"], seq, "binding-ack")
    assert refused.value.code == "wrong-state"     # not bound to the nCoA yet
    assert rig_a.core.mobility.bicasts == {} and rig_a.core.counters["bicast_refused"] == 2


def test_the_nar_drops_the_target_leg_of_a_bicast_until_the_mn_arrives(rig_b):
    mn = ForeignMn(rig_b)
    mn.ask("config-request", "config")
    mn.ask("tunnel-request", "tunnel", outer=OCOA)
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch", mode="bicast")
    _, answers = from_domain_a(rig_b, data)
    state = answered_pre_switch(rig_b, mn.state, seq, answers, "domain-a")
    assert state["phase"] == "pre-switching"
    # The home domain sends the other leg to mn1 where it is: none of this
    # goes into the tunnel, none is punted.
    for seq in range(3):
        outcome = correspondent_datagram(rig_b, seq)
        assert not outcome.delivered and not outcome.punted_at
        assert not [h for h in outcome.hops if h[1] == foreign_switch("domain-a")]
    rig_b.add_host("mn1", MN_MAC, NCOA, "ap-b1-1")
    rig_b.arp_request("mn1", NCOA)
    rig_b.run(rig_b.core.mpa_tick(rig_b.now + 1))
    rig_b.now += 1
    outcome = correspondent_datagram(rig_b, 9)
    assert [int.from_bytes(p["payload"], "big") for name, p in outcome.delivered
            if name == "mn1"] == [9]


def test_the_home_domain_bicasts_to_the_address_the_mn_names_in_the_other_domain(rig_a):
    """mn1 is abroad (its port at home is down) and moves within domain-b:
    the leg goes to its address there, which only it can name."""
    _, update = bound_abroad_from_home(rig_a)
    poa = rig_a.topology.poas["ap-a1-1"]
    rig_a.hosts["mn1"].switch, rig_a.hosts["mn1"].port = "nowhere", 0
    rig_a.run(rig_a.core.port_status(rig_a.graph.dpid(poa.switch), poa.port, True, rig_a.now))
    with pytest.raises(protocol.ProtocolError):
        update(bicast=True)                       # not here, and named nowhere
    with pytest.raises(protocol.ProtocolError):
        update(bicast=True, bicast_to="10.1.2.9")   # one of ours, where it is not seen
    ack = update(bicast=True, bicast_to="10.2.1.77")
    assert ack["bicast_to"] == "10.2.1.77"
    assert legs(rig_a.ping("cn1", HOME)) == [("border", NCOA), ("border", "10.2.1.77")]
    # No switch of domain-a restores the home address for a leg abroad.
    assert {s for s in rig_a.net.switches if held(rig_a, s, Feature.BINDING)} == {"cn-ar"}

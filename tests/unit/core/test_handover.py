"""Proactive handover through fake switches (RFC 6252 §6.3 steps 2-6): the
tunnel, the home-address binding, the handover's phases and its buffer,
checked by where packets go and what the switches hold.

mn1 starts at ap-a1-1 in net-a1 and prepares a move to net-b1: it
pre-authenticates there in-band, gets its nCoA, asks for a tunnel and sends
its binding update through it, every message through the real codec.
"""

from __future__ import annotations

import pytest
from ryu.ofproto import ether, ofproto_v1_3 as ofp

from support.fakeoftable import FakeSwitch, from_bytes, ipv4_packet, to_bytes
from mpa_mn import protocol
from support.service_rig import IDENTITY, MN_MAC
from mpa_sdn import openflow as of
from mpa_sdn.ca import mpa_client
from mpa_sdn.mobility import QUIET_S, SETTLE_S
from mpa_sdn.mpa_sa import AUTHORIZED, HELD, PRE_AUTHENTICATED
from mpa_sdn.store import MemoryStore, SqliteStore
from mpa_sdn.tables import EXACT_MASK, Feature, Table, feature_of, host_cookie
from support.network_rig import Outcome
from support.handover_rig import (CN_IP, MN_IP, WALL_OFFSET, datagrams, HOME, NCOA, variant,
                                  make_rig, Mn, authenticated, prepared, tunnelled, bound,
                                  pre_switched, arrive, later, pings, echoes, flows_of, holders,
                                  sa_state, settle_dad)

NEIGHBOUR_MAC, NEIGHBOUR_IP = "02:00:00:00:0b:02", "10.2.1.150"   # a host at ap-b1-2
MOBILITY = (Feature.TUNNEL, Feature.BINDING, Feature.BUFFER)
TUNNEL_PATH = {"ar-b1", "core", "ar-a1"}      # the nAR, the core, mn1's PoA switch
FRAME_BYTES = len(to_bytes(ipv4_packet(MN_MAC, MN_MAC, CN_IP, NCOA)))  # one punted echo


# -- the core, the switches and mn1 ----------------------------------------------------


@pytest.fixture
def rig(topology):
    return make_rig(topology)


# -- what happened -------------------------------------------------------------------------


def crossings(outcome: Outcome) -> list[tuple]:
    """(switch, next switch, MPLS label or None) of every link a packet crossed."""
    out = []
    for switch, following, pkt in outcome.hops:
        labelled = pkt["eth_type"] == ether.ETH_TYPE_MPLS
        assert labelled == ("mpls_label" in pkt) and labelled != ("ipv4_dst" in pkt), pkt
        out.append((switch, following, pkt["mpls_label"] if labelled else None))
    return out


def snapshot(rig) -> dict[str, set]:
    """Every switch's flows (their canonical records: no counters)."""
    return {name: switch.records() for name, switch in rig.net.switches.items()}


def assert_strict_deletes(rig, *features) -> None:
    """Every delete the core sent for a mobility flow names the flow exactly,
    its cookie included; ``features``: those that must have had one."""
    deletes = [m for _, m in rig.sent if of.is_delete(m) and feature_of(m.cookie) in MOBILITY]
    assert {feature_of(m.cookie) for m in deletes} >= set(features)
    for msg in deletes:
        assert msg.command == ofp.OFPFC_DELETE_STRICT, msg
        assert msg.cookie_mask == EXACT_MASK, msg


def tunnel_entry(rig) -> set:
    """The tunnel's entry at the nAR (ROUTE: packets for the nCoA go in)."""
    return {r for r in flows_of(rig, Feature.TUNNEL).get("ar-b1", set())
            if r.key.table_id == Table.ROUTE}


def proxy_replies(outcome: Outcome, address: str) -> list[dict]:
    return [p for p in outcome.to("neighbour")
            if p.get("arp_op") == 2 and p["arp_spa"] == address]


# -- the fake switch's MPLS ------------------------------------------------------------------

def labelling_switch() -> FakeSwitch:
    """Port 1 -> 2 pushes label 100; label 100 from port 2 is popped back out of port 1."""
    switch = FakeSwitch(1, check=None)  # flows of no table: the fake's own MPLS
    switch.apply(of.flow_add(0, 10, of.match(in_port=1, eth_type=ether.ETH_TYPE_IP),
                             of.apply(*of.push_mpls(100), of.output(2)), 1))
    switch.apply(of.flow_add(0, 10, of.match(in_port=2, eth_type=ether.ETH_TYPE_MPLS,
                                             mpls_label=100),
                             of.apply(of.pop_mpls(), of.output(1)), 1))
    return switch


def test_fake_push_hides_the_ipv4_header_and_pop_gives_it_back():
    switch = labelling_switch()
    sent = ipv4_packet(MN_MAC, MN_MAC, CN_IP, NCOA, ttl=9)
    [(port, labelled)] = switch.process(sent, 1)[0]
    assert port == 2 and labelled["eth_type"] == ether.ETH_TYPE_MPLS
    assert (labelled["mpls_label"], labelled["mpls_ttl"], labelled["mpls_bos"]) == (100, 9, 1)
    assert "ipv4_dst" not in labelled and labelled["inner"]["ipv4_dst"] == NCOA
    [(port, back)] = switch.process(labelled, 2)[0]
    assert port == 1 and {k: v for k, v in back.items() if k != "in_port"} == sent


def test_fake_ipv4_flows_neither_match_nor_rewrite_a_labelled_packet():
    switch = labelling_switch()
    [(_, labelled)] = switch.process(ipv4_packet(MN_MAC, MN_MAC, CN_IP, NCOA), 1)[0]
    switch.apply(of.flow_add(0, 20, of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=NCOA),
                             of.apply(of.output(3)), 1))
    assert [port for port, _ in switch.process(labelled, 2)[0]] == [1]
    switch.apply(of.flow_add(0, 30, of.match(in_port=4),
                             of.apply(of.set_field(ipv4_dst=HOME), of.output(1)), 1))
    with pytest.raises(AssertionError, match="the switch would refuse the flow"):
        switch.process(labelled, 4)


def test_fake_labelled_frames_survive_bytes():
    switch = labelling_switch()
    [(_, labelled)] = switch.process(ipv4_packet(MN_MAC, MN_MAC, CN_IP, NCOA), 1)[0]
    del labelled["in_port"]
    assert from_bytes(to_bytes(labelled)) == labelled


# -- the tunnel --------------------------------------------------------------------------------

def test_the_tunnels_answer_names_the_ncoa_and_the_poa(rig):
    mn = prepared(rig)
    answer = mn.ask("tunnel-request", "tunnel")
    assert (answer["address"], answer["poa"]) == (NCOA, "ap-a1-1")
    assert answer["lifetime"] == rig.topology.mpa.tunnel_lifetime_s
    assert holders(rig, Feature.TUNNEL) == TUNNEL_PATH


# Per target network: its credentials, and the links crossed from cn1 to the
# nCoA and back ("down" and "up": labelled with the tunnel's label that way).
# net-b1's AR has one link, so both ways leave it by the port they came in;
# net-a2's tunnel goes on over the ar-a2 -- ar-a1 link.
TARGETS = {
    "net-b1": (("domain-b",),
               [("cn-ar", "core", None), ("core", "ar-b1", None), ("ar-b1", "core", "down"),
                ("core", "ar-a1", "down")],
               [("ar-a1", "core", "up"), ("core", "ar-b1", "up"), ("ar-b1", "core", None),
                ("core", "cn-ar", None)]),
    "net-a2": (("domain-a",),
               [("cn-ar", "core", None), ("core", "ar-a2", None), ("ar-a2", "ar-a1", "down")],
               [("ar-a1", "ar-a2", "up"), ("ar-a2", "core", None), ("core", "cn-ar", None)]),
}


def labelled_way(rig, mn: Mn, way: list) -> list[tuple]:
    tunnel = rig.core.mobility.tunnels[mn.ncoa]
    labels = {"down": tunnel.down_label, "up": tunnel.up_label, None: None}
    return [(switch, following, labels[label]) for switch, following, label in way]


@pytest.mark.parametrize("network", sorted(TARGETS))
def test_traffic_for_the_ncoa_reaches_mn1_through_the_nar_labelled_between_switches(
        rig, topology, network):
    credentials, down, _ = TARGETS[network]
    mn = prepared(rig, network, *credentials)
    mn.ask("tunnel-request", "tunnel")
    outcome = rig.ping("cn1", mn.ncoa)
    assert crossings(outcome) == labelled_way(rig, mn, down)
    [pkt] = outcome.to("mn1")
    assert (pkt["eth_type"], pkt["ipv4_src"], pkt["ipv4_dst"]) == (
        ether.ETH_TYPE_IP, CN_IP, mn.ncoa)
    assert (pkt["eth_src"], pkt["eth_dst"]) == (topology.networks["net-a1"].gateway_mac, MN_MAC)
    assert outcome.punts == 0


@pytest.mark.parametrize("network", sorted(TARGETS))
def test_mn1_sends_from_the_ncoa_through_the_nar(rig, network):
    credentials, _, up = TARGETS[network]
    mn = prepared(rig, network, *credentials)
    mn.ask("tunnel-request", "tunnel")
    outcome = rig.ping("mn1", CN_IP, src_ip=mn.ncoa)
    assert crossings(outcome) == labelled_way(rig, mn, up)
    [pkt] = outcome.to("cn1")
    assert (pkt["ipv4_src"], pkt["ipv4_dst"]) == (mn.ncoa, CN_IP)


def test_proxy_arp_answers_for_the_ncoa_while_the_tunnel_is_up(rig, topology):
    mn = tunnelled(rig)
    rig.add_host("neighbour", NEIGHBOUR_MAC, NEIGHBOUR_IP, "ap-b1-2")
    [reply] = proxy_replies(rig.arp_request("neighbour", NCOA), NCOA)
    assert reply["arp_sha"] == reply["eth_src"] == topology.networks["net-b1"].gateway_mac
    assert reply["arp_tpa"] == NEIGHBOUR_IP

    mn.ask("tunnel-release", "tunnel-released")
    assert flows_of(rig, Feature.TUNNEL) == {}
    assert proxy_replies(rig.arp_request("neighbour", NCOA), NCOA) == []


# -- the binding -----------------------------------------------------------------------------------

def test_before_any_binding_traffic_for_the_home_address_goes_nowhere(rig):
    tunnelled(rig)
    outcome = rig.ping("cn1", HOME)
    assert outcome.frames == [] and outcome.punts == 0


def test_a_binding_through_the_tunnel_carries_the_home_address_both_ways(rig):
    mn = tunnelled(rig)
    answer = mn.bind()
    assert (answer["home_address"], answer["care_of"]) == (HOME, NCOA)
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert (down["ipv4_src"], down["ipv4_dst"]) == (CN_IP, HOME)
    [up] = rig.ping("mn1", CN_IP, src_ip=HOME).to("cn1")
    assert (up["ipv4_src"], up["ipv4_dst"]) == (HOME, CN_IP)


@pytest.mark.parametrize("home, care_of, source, reason", [
    ("10.255.0.9", NCOA, NCOA, "home"),           # not mn1's home address
    (HOME, MN_IP, MN_IP, "care_of"),              # mn1 does not hold it in net-b1
    (HOME, NCOA, MN_IP, "source"),                # not sent from the care-of
])
def test_a_refused_binding_update_changes_no_flow(rig, home, care_of, source, reason):
    mn = tunnelled(rig)
    before = snapshot(rig)
    code = mn.refusal("binding-update", source=source, home_address=home, care_of=care_of)
    assert code == "binding-refused"
    assert rig.core.counters[f"binding_refused_{reason}"] == 1
    assert snapshot(rig) == before
    assert rig.core.mobility.bindings == {}


# -- a handover -----------------------------------------------------------------------------------

def test_a_handover_buffers_then_delivers_in_order_from_the_new_poa(topology):
    # Four packets per flush, a flush every 1/16 s (exact in binary).
    rig = make_rig(variant(flush_batch=4, flush_rate_pps=64))
    pre_switched(rig)
    buffered = pings(rig, "cn1", HOME, range(1, 11))
    assert echoes(buffered) == [] and buffered.punted_at == [("ar-b1", 1, Table.ROUTE)] * 10

    first = arrive(rig)
    assert echoes(first) == [1, 2, 3, 4]
    for switch, port, pkt in first.frames:
        if pkt.get("icmp_type") == 8:
            assert (switch, port) == ("ap-b1", 2)
            assert (pkt["ipv4_src"], pkt["ipv4_dst"]) == (CN_IP, HOME)
            assert pkt["eth_src"] == topology.networks["net-b1"].gateway_mac
    assert echoes(later(rig, 1 / 32)) == []                     # not due yet
    meanwhile = rig.ping("cn1", HOME, seq=11)                  # joins the queue's tail
    assert echoes(meanwhile) == [] and meanwhile.punts == 1
    assert echoes(later(rig, 1 / 32)) == [5, 6, 7, 8]
    assert echoes(later(rig, 1 / 16)) == [9, 10, 11]
    assert echoes(later(rig, 1 / 16)) == []

    straight = rig.ping("cn1", HOME, seq=12)
    assert echoes(straight) == [12] and straight.punts == 0
    [up] = rig.ping("mn1", CN_IP, src_ip=HOME).to("cn1")
    assert up["ipv4_src"] == HOME
    assert rig.core.mobility.history[-1]["phase"] == "completed"


def test_the_buffer_goes_to_the_mn_while_its_new_flows_are_being_confirmed(topology):
    """The whole buffer goes, paced, before any switch confirmed the new
    flows (a packet-out at the new PoA needs none of them); a packet punted
    once it is empty goes at once; the punt stays until the confirmation,
    so nothing takes the direct path before the buffer has been delivered."""
    rig = make_rig(variant(flush_batch=4, flush_rate_pps=64))
    pre_switched(rig)
    pings(rig, "cn1", HOME, range(1, 11))
    rig.hold_confirmations = True
    assert echoes(arrive(rig)) == [1, 2, 3, 4]
    handover = rig.core.mobility.handovers[IDENTITY]
    assert handover.phase == "switching"
    assert echoes(later(rig, 1 / 16)) == [5, 6, 7, 8]
    assert echoes(later(rig, 1 / 16)) == [9, 10]
    assert handover.phase == "switching" and rig.held     # nothing confirmed yet
    meanwhile = rig.ping("cn1", HOME, seq=11)            # the buffer is empty
    assert echoes(meanwhile) == [11] and meanwhile.punts == 1
    assert holders(rig, Feature.BUFFER) == {"ar-b1"}
    assert rig.core.counters["buffer_relayed"] == 1
    rig.hold_confirmations = False
    rig.release_confirmations()
    assert (handover.phase, handover.relaying) == ("flushing", True)   # 11 came just now
    later(rig, QUIET_S)
    assert handover.phase == "completed"
    assert handover.steps_ms()["first_delivery"] == 0.0
    assert handover.steps_ms()["flows_confirmed"] == pytest.approx(2 / 16 * 1000)
    straight = rig.ping("cn1", HOME, seq=12)
    assert echoes(straight) == [12] and straight.punts == 0


def test_the_first_deliveries_go_ahead_of_the_new_flows(rig):
    """A switch takes its messages in order, and installing flows takes it
    longer than sending a packet: the buffer's first packets, which need
    none of the new flows, go to the new PoA before any of them."""
    from mpa_sdn.flow_templates import decoded
    from ryu.ofproto import ofproto_v1_3_parser as parser
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    start = len(rig.sent)
    assert echoes(arrive(rig)) == [1, 2]
    ap_b1 = rig.graph.dpid("ap-b1")        # the new PoA's switch, in the order it got them
    sent = [decoded(msg) for dpid, msg in rig.sent[start:] if dpid == ap_b1]
    echo_outs = [i for i, msg in enumerate(sent) if isinstance(msg, parser.OFPPacketOut)
                 and from_bytes(msg.data).get("icmp_type") == 8]
    flow_mods = [i for i, msg in enumerate(sent) if isinstance(msg, parser.OFPFlowMod)]
    assert len(echo_outs) == 2 and flow_mods
    assert max(echo_outs) < min(flow_mods)


def test_the_mns_first_packet_from_its_home_address_at_the_target_is_its_arrival(rig):
    """Its link is up and it sends from its home address (a TCP ACK) before
    anything announced it: not a stranger to drop for reject_hold_s, but
    the MN arriving.  The packet reaches the correspondent through the
    binding's uplink flows, sent ahead of it."""
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    rig.move("mn1", "ap-b1-1", ip=NCOA)
    first = rig.ping("mn1", CN_IP, src_ip=HOME)
    [up] = first.to("cn1")
    assert (up["ipv4_src"], up["ipv4_dst"]) == (HOME, CN_IP)
    assert echoes(first) == [1, 2]                       # the buffer went too
    handover = rig.core.mobility.handovers[IDENTITY]
    assert handover.arrival == "home"
    assert rig.core.counters["learn_home_address"] == 1
    assert rig.core.counters["learn_home_address_forwarded"] == 1
    assert rig.core.counters["learn_rejected_address"] == 0
    assert holders(rig, Feature.REJECT) == set()
    [again] = rig.ping("mn1", CN_IP, src_ip=HOME).to("cn1")
    assert again["ipv4_src"] == HOME


def test_an_mn_sending_from_its_home_address_where_it_is_not_expected_is_not_held_off(rig):
    """No handover to this network: the packet is dropped, but no drop flow
    holds the MN's uplink off once its binding's flows come."""
    bound(rig)
    rig.move("mn1", "ap-b1-1", ip=NCOA)
    assert rig.ping("mn1", CN_IP, src_ip=HOME).to("cn1") == []
    assert rig.core.counters["learn_home_address"] == 1
    assert rig.core.counters["learn_home_address_forwarded"] == 0
    assert holders(rig, Feature.REJECT) == set()


def test_an_sa_made_with_the_network_the_mn_is_attached_to_is_authorized_at_its_binding(rig):
    # mn1 is learned at ap-a1-1 already: no arrival will come to authorize it,
    # and only an authorized SA is held when the MN leaves (RFC 6252 C.2).
    # PANA names no MAC: the first signed message binds it, and authorizes.
    settle_dad(rig)
    here = authenticated(rig, "net-a1", "domain-a")
    assert sa_state(rig, "net-a1") == PRE_AUTHENTICATED
    here.configure()
    assert sa_state(rig, "net-a1") == AUTHORIZED
    prepared(rig)
    assert sa_state(rig, "net-b1") == PRE_AUTHENTICATED


def test_after_a_handover_only_the_binding_remains_at_the_new_poa(rig):
    authenticated(rig, "net-a1", "domain-a").bind_mac()
    rig.arp_request("mn1", MN_IP)              # seen in net-a1: that SA is authorized
    assert sa_state(rig, "net-a1") == AUTHORIZED
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    assert echoes(arrive(rig)) == [1, 2]
    # Drained: the nAR's tunnel entry went at once; the rest of the tunnel settles.
    assert holders(rig, Feature.BUFFER) == set()
    assert not tunnel_entry(rig)
    later(rig, SETTLE_S)
    assert holders(rig, Feature.TUNNEL) == set()
    assert holders(rig, Feature.BINDING) == {"cn-ar", "ap-b1"}
    at_poa = {r for r in flows_of(rig, Feature.BINDING)["ap-b1"]
              if dict(r.key.match).get("in_port") is not None}
    assert {dict(r.key.match)["in_port"] for r in at_poa} == {rig.graph.poa("ap-b1-1").port}
    assert sa_state(rig, "net-a1") == HELD
    assert sa_state(rig, "net-b1") == AUTHORIZED
    assert_strict_deletes(rig, Feature.TUNNEL, Feature.BINDING, Feature.BUFFER)


def test_arrival_is_seen_when_the_poas_port_comes_up(rig):
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    rig.move("mn1", "ap-b1-1", ip=NCOA)
    assert echoes(rig.port_up("ap-b1-1")) == [1, 2]
    assert rig.core.counters["handover_arrival_port"] == 1
    assert rig.core.hosts[NCOA].poa.id == "ap-b1-1"


def test_an_arrival_forgets_mn1_where_it_was_though_that_poas_port_stays_up(rig):
    """An access point's port stays up when a station leaves it: the
    controller learns of mn1's departure from its arrival where it said it
    would go, and a later pre-authentication with net-a1 finds it gone."""
    authenticated(rig, "net-a1", "domain-a").bind_mac()
    rig.arp_request("mn1", MN_IP)
    assert rig.core.mpa.attached(MN_MAC, "net-a1")
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    rig.move("mn1", "ap-b1-1", ip=NCOA, port_down=False)
    assert echoes(rig.arp_request("mn1", NCOA)) == [1, 2]
    assert MN_IP not in rig.core.hosts and not rig.core.mpa.attached(MN_MAC, "net-a1")
    assert rig.core.counters["host_forgotten_arrived_elsewhere"] == 1
    assert not [e for switch in rig.net.switches.values() for e in switch.entries
                if e.cookie == host_cookie(MN_IP)], "its routes and source check went"
    later(rig, 10.0)
    assert sa_state(rig, "net-a1") == HELD


def test_an_arrival_forgets_only_the_host_mn1_left_and_polls_one_sharing_its_mac(rig):
    """A second interface with mn1's MAC (an in-band standby's) in net-a2 is
    not where mn1 pre-switched from: it is polled, answers, and stays."""
    rig.add_host("standby", MN_MAC, "10.1.2.160", "ap-a2-1")
    rig.ping("standby", CN_IP)
    rig.arp_request("mn1", MN_IP)               # mn1 speaks last: it is at ap-a1-1
    pre_switched(rig)
    rig.move("mn1", "ap-b1-1", ip=NCOA, port_down=False)
    rig.arp_request("mn1", NCOA)
    assert MN_IP not in rig.core.hosts
    assert rig.core.counters["host_forgotten_arrived_elsewhere"] == 1
    # The standby's learning polled mn1, and mn1's announcement the standby:
    # both answered.  The standby answered lately, so the arrival polls it
    # no more, and forgets nothing but mn1's host at ap-a1-1.
    assert rig.core.counters["host_probe_seen_elsewhere"] == 2
    assert rig.core.counters["host_probe_answered"] == 2
    later(rig, 10.0)
    assert rig.core.hosts["10.1.2.160"].poa.id == "ap-a2-1"
    assert rig.core.counters["host_forgotten_idle"] == 0


def test_a_binding_goes_through_the_tunnel_past_the_host_a_port_that_stayed_up_left(rig):
    """mn1 was at ap-b1-1 with the nCoA it is given again, and came back to
    ap-a1-1; ap-b1-1's port stayed up, so its host there is still learned.
    The binding to the nCoA follows the tunnel to where mn1 is, not the host."""
    prepared(rig)                           # the nCoA, leased to mn1
    rig.move("mn1", "ap-b1-1", ip=NCOA, port_down=False)
    rig.ping("mn1", CN_IP)
    rig.move("mn1", "ap-a1-1", ip=MN_IP, port_down=False)
    rig.arp_request("mn1", MN_IP)
    assert rig.core.hosts[NCOA].poa.id == "ap-b1-1", "left behind"
    bound(rig)                              # again: the same nCoA, through a tunnel
    assert echoes(rig.ping("cn1", HOME, seq=1)) == [1]
    assert rig.hosts["mn1"].switch == rig.graph.poa("ap-a1-1").switch


def test_arrival_is_seen_when_mn1_says_it_arrived(rig):
    mn = pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    rig.move("mn1", "ap-b1-1", ip=NCOA)
    outcome, answer = mn.exchange("handover", "handover-state", source=NCOA, phase="arrived")
    assert echoes(outcome) == [1, 2]
    assert {(s, p) for s, p, pkt in outcome.frames if pkt.get("icmp_type") == 8} == {
        ("ap-b1", 2)}
    # The datagram itself, the nCoA's first packet at ap-b1-1, showed the
    # arrival: by the time it is answered, the buffer is out, the punt going.
    assert answer["phase"] == "draining"
    assert rig.core.mobility.handovers[IDENTITY].phase == "completed"
    later(rig, SETTLE_S)   # the tunnel's far end settles
    assert holders(rig, Feature.TUNNEL) == set()


# -- switching back ---------------------------------------------------------------------------

def assert_back_at_the_old_poa(rig, outcome: Outcome, sent: list[int]) -> None:
    """The buffer went to mn1 at ap-a1-1, the punt is gone, the tunnel carries again."""
    assert echoes(outcome) == sent
    assert {(s, p) for s, p, pkt in outcome.frames if pkt.get("icmp_type") == 8} == {
        ("ar-a1", 3)}
    assert all(pkt["ipv4_dst"] == HOME for pkt in outcome.to("mn1") if "icmp_type" in pkt)
    assert holders(rig, Feature.BUFFER) == set()
    assert holders(rig, Feature.TUNNEL) == TUNNEL_PATH
    again = rig.ping("cn1", HOME, seq=sent[-1] + 1)
    assert echoes(again) == [sent[-1] + 1] and again.punts == 0


def test_the_deadline_passing_switches_back_to_the_old_poa(rig):
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2, 3])
    assert echoes(later(rig, rig.topology.mpa.switch_deadline_s / 2)) == []
    outcome = later(rig, rig.topology.mpa.switch_deadline_s / 2)
    assert rig.core.counters["handover_switch_back_deadline"] == 1
    assert_back_at_the_old_poa(rig, outcome, [1, 2, 3])


def test_returning_to_the_old_poa_switches_back_at_once(rig):
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2, 3])
    rig.move("mn1", "ap-a1-1")                  # the link drops and comes back
    outcome = rig.arp_request("mn1", MN_IP)
    assert rig.core.counters["handover_switch_back_returned"] == 1
    assert_back_at_the_old_poa(rig, outcome, [1, 2, 3])


def test_cancel_switches_back(rig):
    mn = pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2, 3])
    outcome, answer = mn.exchange("handover", "handover-state", phase="cancel")
    assert answer["phase"] == "switched-back"
    assert_back_at_the_old_poa(rig, outcome, [1, 2, 3])


# -- the buffer's bounds ------------------------------------------------------------------

@pytest.mark.parametrize("settings, gaps, wait, delivered, dropped", [
    pytest.param({"buffer_packets": 3}, [0] * 5, 0, [1, 2, 3],
                 {"buffer_dropped_full_packets": 2}, id="packets"),
    pytest.param({"buffer_bytes": FRAME_BYTES * 3 + FRAME_BYTES // 2}, [0] * 5, 0, [1, 2, 3],
                 {"buffer_dropped_full_bytes": 2}, id="bytes"),
    pytest.param({"buffer_time_s": 1.0}, [0, 0, 0.75, 0], 0.5, [3, 4],
                 {"buffer_dropped_expired": 2}, id="time"),
])
def test_the_buffer_drops_the_tail_or_the_stale_and_keeps_the_order(
        settings, gaps, wait, delivered, dropped):
    """``gaps``: the time before each packet; ``wait``: before mn1 arrives."""
    rig = make_rig(variant(**settings))
    pre_switched(rig)
    for seq, gap in enumerate(gaps, 1):
        later(rig, gap)
        assert rig.ping("cn1", HOME, seq=seq).punts == 1
    later(rig, wait)
    assert echoes(arrive(rig)) == delivered
    assert {k: rig.core.counters[k] for k in dropped} == dropped


# -- limits -----------------------------------------------------------------------------------

def test_a_tunnel_beyond_the_mns_limit_is_refused_and_changes_nothing():
    rig = make_rig(variant(max_tunnels_per_mn=1))
    tunnelled(rig)
    mn_a2 = prepared(rig, "net-a2", "domain-a")
    before = snapshot(rig)
    assert mn_a2.refusal("tunnel-request") == "tunnel-limit"
    assert snapshot(rig) == before
    assert list(rig.core.mobility.tunnels) == [NCOA]


def test_a_tunnel_to_the_network_mn1_is_attached_to_is_refused(rig):
    mn_a1 = prepared(rig, "net-a1", "domain-a")
    before = snapshot(rig)
    assert mn_a1.refusal("tunnel-request") == "wrong-state"
    assert snapshot(rig) == before
    assert rig.core.mobility.tunnels == {}


# -- lifetimes -----------------------------------------------------------------------------

def test_the_binding_and_the_tunnel_end_with_their_lifetimes_leaving_nothing(rig):
    rig.add_host("neighbour", NEIGHBOUR_MAC, NEIGHBOUR_IP, "ap-b1-2")
    rig.arp_request("neighbour", NEIGHBOUR_IP)           # learned: its flows are baseline too
    baseline = snapshot(rig)
    mn = tunnelled(rig)
    assert mn.bind(lifetime=30)["lifetime"] == 30
    assert holders(rig, Feature.BINDING) == {"cn-ar", "ar-b1", "ar-a1"}

    later(rig, 31)
    assert holders(rig, Feature.BINDING) == set()
    assert holders(rig, Feature.TUNNEL) == TUNNEL_PATH
    assert rig.ping("cn1", HOME).frames == []

    later(rig, rig.topology.mpa.tunnel_lifetime_s)
    assert snapshot(rig) == baseline
    assert rig.core.mobility.tunnels == {} and rig.core.mobility.bindings == {}
    assert proxy_replies(rig.arp_request("neighbour", NCOA), NCOA) == []
    assert_strict_deletes(rig, Feature.TUNNEL, Feature.BINDING)


# -- make-before-break, reconnects, repeats and restarts --------------------------------------

def test_the_old_flows_stay_until_every_switch_confirmed_the_new_ones(rig):
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    tunnel = flows_of(rig, Feature.TUNNEL)
    rig.hold_confirmations = True
    # The buffer goes at once (a packet-out at the new PoA needs no flows);
    # the old flows stay until every switch has confirmed the new ones.
    assert echoes(arrive(rig)) == [1, 2]
    assert len(rig.held) > 1
    assert flows_of(rig, Feature.TUNNEL) == tunnel
    rig.release_confirmations(len(rig.held) - 1)
    assert flows_of(rig, Feature.TUNNEL) == tunnel    # one switch still to answer
    rig.hold_confirmations = False
    assert echoes(rig.release_confirmations()) == []
    # The punt is gone once the buffer is: the tunnel's entry at the nAR
    # went just before, the rest of it once settled.
    assert not tunnel_entry(rig)
    later(rig, SETTLE_S)
    assert flows_of(rig, Feature.TUNNEL) == {}
    assert_strict_deletes(rig, Feature.TUNNEL, Feature.BINDING)


def test_a_flip_back_within_the_settling_time_keeps_the_flows_wanted_again(rig):
    """mn1 moves to ap-a1-2 and straight back: the first move's settling
    deletes must not remove the tunnel's flows the move back put in again."""
    tunnelled(rig)
    for poa in ("ap-a1-2", "ap-a1-1"):
        rig.move("mn1", poa)
        rig.arp_request("mn1", MN_IP)
    later(rig, SETTLE_S)
    for switch in ("ar-a1", "core", "ar-b1"):
        wanted = {of.record_of(m) for m in rig.core.mobility.flows_for(switch)
                  if feature_of(m.cookie) == Feature.TUNNEL}
        assert flows_of(rig, Feature.TUNNEL)[switch] == wanted, switch
    assert any(dict(r.key.match).get("in_port") == rig.graph.poa("ap-a1-1").port
               for r in flows_of(rig, Feature.TUNNEL)["ar-a1"])


def test_a_binding_steers_traffic_only_once_its_receiving_flows_are_confirmed(rig):
    """The edges' rewrites to the nCoA wait for the flows that take the
    traffic at the far end (the nAR's rewrite back to the home address, the
    CN side's for the way back); a packet steered before would reach mn1
    addressed to an address its sockets do not use."""
    mn = tunnelled(rig)
    rig.hold_confirmations = True
    mn.bind()

    def tables(rig):
        return {(name, r.key.table_id) for name, records in
                flows_of(rig, Feature.BINDING).items() for r in records}
    assert tables(rig) == {("ar-b1", Table.ROUTE), ("cn-ar", Table.ROUTE)}
    rig.release_confirmations()
    assert tables(rig) == {("ar-b1", Table.ROUTE), ("cn-ar", Table.ROUTE),
                           ("cn-ar", Table.INGRESS), ("ar-a1", Table.INGRESS)}
    rig.hold_confirmations = False
    rig.release_confirmations()
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert down["ipv4_dst"] == HOME


def test_a_rebinding_keeps_the_old_care_ofs_flows_while_the_datapath_settles(rig):
    """Bound to its address in net-a1, mn1 rebinds to its nCoA: the old
    care-of's rewrite at ap-a1-1 stays SETTLE_S after the new flows are
    confirmed, for packets a switch's cache still steers the old way."""
    here = authenticated(rig, "net-a1", "domain-a")
    rig.arp_request("mn1", MN_IP)
    here.ask("binding-update", "binding-ack", source=MN_IP, home_address=HOME, care_of=MN_IP)
    [old] = [r for r in flows_of(rig, Feature.BINDING)["ar-a1"] if r.key.table_id == Table.ROUTE]

    tunnelled(rig).bind()
    assert old in flows_of(rig, Feature.BINDING)["ar-a1"]
    later(rig, SETTLE_S / 2)
    assert old in flows_of(rig, Feature.BINDING)["ar-a1"]
    later(rig, SETTLE_S / 2)
    assert old not in flows_of(rig, Feature.BINDING).get("ar-a1", set())
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert down["ipv4_dst"] == HOME
    assert_strict_deletes(rig, Feature.BINDING)


def test_the_handover_completes_once_its_punt_is_confirmed_gone(rig):
    """Draining: the buffer is empty, the punt's delete goes with a barrier,
    and only its answer completes the handover."""
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    rig.hold_confirmations = True
    assert echoes(arrive(rig)) == [1, 2]               # flushed as the new flows go in
    rig.release_confirmations()                         # the receiving flows; now the steering
    assert holders(rig, Feature.BUFFER) == {"ar-b1"}   # punting until all are confirmed
    rig.release_confirmations()
    assert holders(rig, Feature.BUFFER) == set()
    assert rig.core.mobility.handovers[IDENTITY].phase == "draining"
    rig.release_confirmations()
    assert rig.core.mobility.handovers[IDENTITY].phase == "completed"


def test_traffic_still_coming_after_the_flush_is_relayed_until_the_controller_caught_up(rig):
    """The buffer is empty but the CN keeps sending: each punted packet goes
    to mn1 at once, and the punt goes right behind one (the rig tells the
    core it caught up after every trace, as the shell does when its
    packet-in queue is empty)."""
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2], quiet=False)
    assert echoes(arrive(rig)) == [1, 2]
    handover = rig.core.mobility.handovers[IDENTITY]
    assert (handover.phase, handover.relaying) == ("flushing", True)
    assert holders(rig, Feature.BUFFER) == {"ar-b1"}

    relayed = rig.ping("cn1", HOME, seq=3)
    assert echoes(relayed) == [3] and relayed.punts == 1
    assert rig.core.counters["buffer_relayed"] == 1
    assert holders(rig, Feature.BUFFER) == set()
    assert handover.phase == "completed"
    straight = rig.ping("cn1", HOME, seq=4)
    assert echoes(straight) == [4] and straight.punts == 0


def test_an_emptied_buffer_stops_punting_after_a_quiet_spell(rig):
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2], quiet=False)
    assert echoes(arrive(rig)) == [1, 2]
    handover = rig.core.mobility.handovers[IDENTITY]
    assert handover.quiet_until == pytest.approx(rig.now + QUIET_S)
    later(rig, QUIET_S / 2)
    assert handover.phase == "flushing"
    later(rig, QUIET_S / 2)
    assert handover.phase == "completed"
    assert holders(rig, Feature.BUFFER) == set()


def test_the_answer_to_pre_switch_waits_for_the_punt_to_be_confirmed(rig):
    """mn1 leaves when it hears the answer: by then every packet the nAR
    sent into the tunnel must be ahead of it, so the answer waits for the
    nAR's barrier and a punted packet, and goes down the tunnel from the nAR
    (past its punt), behind whatever is still on its way there."""
    mn = bound(rig)
    rig.hold_confirmations = True
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch")
    assert datagrams(mn.send(data), "mn1") == []
    assert holders(rig, Feature.BUFFER) == {"ar-b1"}
    assert rig.core.counters["signal_answer_held"] == 1
    [barrier] = rig.held
    assert barrier == (rig.graph.dpid("ar-b1"), "pre-switch:1")
    rig.hold_confirmations = False
    assert datagrams(rig.release_confirmations(), "mn1") == []   # the datapath may lag

    proof = rig.ping("cn1", HOME, seq=1)        # punted: the punt works
    assert proof.punts == 1 and echoes(proof) == []
    [answer] = datagrams(proof, "mn1")
    assert {(s, p) for s, p, pkt in proof.frames} == {("ar-a1", 3)}       # ap-a1-1
    [label] = {lbl for _, _, lbl in crossings(proof) if lbl is not None}
    assert [(a, b) for a, b, lbl in crossings(proof) if lbl == label] == [
        ("ar-b1", "core"), ("core", "ar-a1")]                    # the tunnel, down
    assert rig.core.counters["signal_answer_behind_tunnel"] == 1
    assert protocol.check_answer(mn.state, answer["payload"], seq,
                                 "handover-state")["phase"] == "pre-switching"


def test_without_traffic_the_answer_to_pre_switch_goes_after_a_settling_time(rig):
    mn = bound(rig)
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch")
    assert datagrams(mn.send(data), "mn1") == []
    assert rig.core.next_mpa_tick(rig.now) == pytest.approx(rig.now + SETTLE_S)
    assert datagrams(later(rig, SETTLE_S / 2), "mn1") == []
    [answer] = datagrams(later(rig, SETTLE_S / 2), "mn1")
    assert protocol.check_answer(mn.state, answer["payload"], seq,
                                 "handover-state")["phase"] == "pre-switching"


def test_a_held_answer_goes_when_the_nar_disconnects(rig):
    mn = bound(rig)
    rig.hold_confirmations = True
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch")
    assert datagrams(mn.send(data), "mn1") == []
    gone = rig.run(rig.core.switch_disconnected(rig.graph.dpid("ar-b1"), rig.now))
    [answer] = datagrams(gone, "mn1")
    # Not down the tunnel from the nAR that has gone: straight to mn1's PoA.
    assert crossings(gone) == [] and {(s, p) for s, p, _ in gone.frames} == {("ar-a1", 3)}
    assert rig.core.counters["signal_answer_behind_tunnel"] == 0
    assert protocol.check_answer(mn.state, answer["payload"], seq,
                                 "handover-state")["phase"] == "pre-switching"


def test_a_pre_switch_with_its_nar_gone_is_answered_at_once(rig):
    mn = bound(rig)
    rig.core.switch_disconnected(rig.graph.dpid("ar-b1"), rig.now)
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch")
    [answer] = datagrams(mn.send(data), "mn1")          # not at the deadline
    assert protocol.check_answer(mn.state, answer["payload"], seq,
                                 "handover-state")["phase"] == "pre-switching"


def test_a_switch_reconnecting_mid_handover_is_reconciled_without_churn(rig):
    pre_switched(rig)
    for name in sorted(TUNNEL_PATH | {"cn-ar"}):
        rig.core.switch_disconnected(rig.graph.dpid(name), rig.now)
        rig.connect(name)
        last = rig.core.switches[rig.graph.dpid(name)].last_reconcile
        assert (last["deleted"], last["added"]) == (0, 0), name


def test_the_same_pre_switch_again_changes_nothing(rig):
    mn = bound(rig)
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch")
    mn.send(data)
    [first] = datagrams(later(rig, SETTLE_S), "mn1")
    handover = rig.core.mobility.handovers[IDENTITY]
    pings(rig, "cn1", HOME, [1, 2])
    before = snapshot(rig)

    [again] = datagrams(mn.send(data), "mn1")          # the same seq: the same answer
    assert again["payload"] == first["payload"]
    answer = mn.handover("pre-switch")                  # a new one: the same phase
    assert (answer["phase"], answer["buffered"]) == ("pre-switching", 2)
    assert rig.core.mobility.handovers[IDENTITY] is handover
    assert snapshot(rig) == before
    assert rig.core.counters["handover_pre_switch"] == 1


@pytest.mark.parametrize("kind", ["memory", "sqlite"])
def test_tunnels_and_bindings_survive_a_restart(topology, tmp_path, kind):
    path = str(tmp_path / "state.db")
    store = MemoryStore() if kind == "memory" else SqliteStore(path)
    rig = make_rig(topology, store=store)
    bound(rig)
    kept = flows_of(rig, Feature.TUNNEL, Feature.BINDING)
    assert set(kept) == TUNNEL_PATH | {"cn-ar"}

    rig.restart(store=store if kind == "memory" else SqliteStore(path))   # the same state
    assert list(rig.core.mobility.tunnels) == [NCOA] and list(rig.core.mobility.bindings) == [HOME]
    assert flows_of(rig, Feature.TUNNEL, Feature.BINDING) == kept
    rig.net.switches["ar-b1"].entries = []            # one that lost everything
    rig.connect("ar-b1")
    assert flows_of(rig, Feature.TUNNEL, Feature.BINDING) == kept
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert down["ipv4_dst"] == HOME


# -- metrics ----------------------------------------------------------------------------------

def scrape(rig) -> dict[str, float]:
    """GET /metrics, in-process: sample (name and labels) -> value."""
    from support.apitest import request, tokens
    from mpa_sdn.facade import Facade
    from rest_api.app import RestApi
    response, _ = request(RestApi(Facade(rig.core, clock=lambda: rig.now), rig.core.counters,
                                  tokens=tokens()), "/metrics")
    assert response.status_int == 200
    assert response.content_type == "text/plain"
    samples = {}
    for line in response.text.splitlines():
        if line and not line.startswith("#"):
            name, value = line.rsplit(" ", 1)
            samples[name] = float(value)
    return samples


def test_the_metrics_move_during_a_handover(rig):
    before = scrape(rig)
    assert before['mpa_handovers_total{result="completed"}'] == 0
    pre_switched(rig)
    pings(rig, "cn1", HOME, [1, 2])
    during = scrape(rig)
    assert during["mpa_handovers_in_progress"] == 1
    assert during['mpa_buffer_occupancy{unit="packets"}'] == 2
    assert during['mpa_buffer_packets_total{event="buffered"}'] == 2
    assert during["mpa_handovers_started_total"] == 1
    arrive(rig)
    later(rig, QUIET_S)
    after = scrape(rig)
    assert after['mpa_handovers_total{result="completed"}'] == 1
    assert after["mpa_handovers_in_progress"] == 0
    assert after['mpa_buffer_occupancy{unit="packets"}'] == 0
    assert after['mpa_handover_step_seconds_count{mode="buffer",result="completed",step="signal_to_flows"}'] == 1
    assert after['mpa_handover_step_seconds_count{mode="buffer",result="completed",step="total"}'] == 1
    assert after["mpa_packet_ins_total"] > before["mpa_packet_ins_total"]
    assert after['mpa_switches{state="connected"}'] == len(rig.graph.switch_ids())
    # Every counter of the core is there, under its own family or as an event.
    assert after['mpa_events_total{event="handover_flows_confirmed"}'] == 1


def test_metrics_answer_get_only_and_need_a_token():
    from mpa_sdn.config import load_topology
    from mpa_sdn.controller import Controller
    from mpa_sdn.facade import Facade
    from rest_api.app import RestApi
    from support.paths import DEFAULT_TOPOLOGY
    from support.apitest import request, tokens
    api = RestApi(Facade(Controller(load_topology(DEFAULT_TOPOLOGY)), clock=lambda: 0.0),
                  tokens=tokens())
    response, _ = request(api, "/metrics", method="POST")
    assert response.status_int == 405 and "GET" in response.allow
    response, problem = request(api, "/metrics", role=None)
    assert response.status_int == 401 and problem["type"] == "urn:mpa-sdn:problem:unauthorized"


# -- a binding never points into a black hole -------------------------------------------------
#
# mn1 binds its home address to its nCoA through the tunnel and then does not
# move (a cancelled handover, a switch-back at the deadline, no handover at
# all).  Whenever the tunnel ends, the binding must go back to where mn1 is:
# its address at ap-a1-1, which the controller has learned.

def assert_bound_where_mn1_is(rig, cause: str) -> None:
    """The binding fell back to mn1's address at ap-a1-1: traffic for the
    home address reaches mn1 there, both ways, and the state says so."""
    outcome = rig.ping("cn1", HOME, seq=7)
    [down] = outcome.to("mn1")
    assert (down["ipv4_src"], down["ipv4_dst"]) == (CN_IP, HOME)
    assert {(s, p) for s, p, _ in outcome.frames} == {("ar-a1", 3)}
    assert outcome.punts == 0
    [up] = rig.ping("mn1", CN_IP, src_ip=HOME).to("cn1")
    assert (up["ipv4_src"], up["ipv4_dst"]) == (HOME, CN_IP)
    mobility = rig.core.mobility
    assert mobility.tunnels == {}
    assert mobility.bindings[HOME].care_of == MN_IP
    assert mobility.bindings[HOME].network == "net-a1"
    assert rig.core.counters["binding_fell_back"] == 1
    assert rig.core.counters["binding_ended_no_route"] == 0
    later(rig, SETTLE_S)   # the old flows' deletes settle
    assert holders(rig, Feature.TUNNEL) == set()
    assert holders(rig, Feature.BINDING) == {"cn-ar", "ar-a1"}
    [event] = [e for e in rig.core.events.after(0)[0]
               if e["type"] == "binding" and e["data"].get("reason")]
    assert event["data"] == {"identity": IDENTITY, "network": "net-a1", "home_address": HOME,
                             "care_of": MN_IP, "reason": "fell-back",
                             "previous_care_of": NCOA, "cause": cause}


def switched_back(rig, how: str) -> Mn:
    """mn1 pre-switched and did not move: it cancelled, or its deadline passed."""
    mn = pre_switched(rig)
    if how == "cancel":
        assert mn.handover("cancel")["phase"] == "switched-back"
    else:
        later(rig, rig.topology.mpa.switch_deadline_s)
        assert rig.core.counters["handover_switch_back_deadline"] == 1
    return mn


@pytest.mark.parametrize("how", ["cancel", "deadline"])
def test_after_a_switch_back_the_tunnels_end_moves_the_binding_to_where_mn1_is(rig, how):
    switched_back(rig, how)
    later(rig, 1)
    # Until the tunnel ends, it carries the home address to mn1 (and mn1 may
    # pre-switch again on it without a new binding update).
    assert rig.core.mobility.bindings[HOME].care_of == NCOA
    assert echoes(rig.ping("cn1", HOME, seq=1)) == [1]
    later(rig, rig.topology.mpa.tunnel_lifetime_s)
    assert rig.core.counters["tunnel_expired"] == 1
    assert_bound_where_mn1_is(rig, "tunnel-expired")


@pytest.mark.parametrize("message, fields, cause", [
    ("tunnel-release", {}, "tunnel-released"),
    ("release", {}, "tunnel-released"),                 # the nCoA's lease: its tunnel first
    ("release", {"scope": "all"}, "tunnel-released"),   # the lease and the MPA-SA
])
def test_a_release_moves_the_binding_to_where_mn1_is(rig, message, fields, cause):
    mn = bound(rig)
    mn.ask(message, f"{message}d", **fields)
    assert_bound_where_mn1_is(rig, cause)


def test_a_lease_ending_ends_its_tunnel_and_moves_the_binding_to_where_mn1_is(rig):
    """However the nCoA's lease ends at the CA (a DHCP release or decline,
    an SA dropped with its lease), the address goes back to the pool: its
    tunnel must not carry it to mn1 any longer."""
    bound(rig)
    assert rig.core.mpa.ca.release("net-b1", mpa_client(IDENTITY, MN_MAC), WALL_OFFSET + rig.now)
    rig.run(rig.core.mobility.drain())
    assert rig.core.counters["tunnel_lease_released"] == 1
    assert_bound_where_mn1_is(rig, "tunnel-lease-released")


def test_an_sa_expiring_ends_its_tunnel_at_once_and_the_binding_with_its_lifetime():
    """The AA expires an MPA-SA in mpa_tick, which the shell also runs
    between ticks: the tunnel it granted ends there and then.  The binding,
    whose lifetime was the SA's, ends at mobility's next tick; meanwhile it
    reaches mn1 where it is, and afterwards nothing steers the home
    address anywhere."""
    rig = make_rig(variant(sa_lifetime_s=30))
    bound(rig)
    rig.now += 30
    rig.run(rig.core.mpa_tick(rig.now))
    assert rig.core.counters["tunnel_sa_expired"] == 1
    assert rig.core.mobility.bindings[HOME].care_of == MN_IP
    assert echoes(rig.ping("cn1", HOME, seq=1)) == [1]
    later(rig, SETTLE_S)
    assert rig.core.counters["binding_expired"] == 1
    outcome = rig.ping("cn1", HOME, seq=2)
    assert outcome.frames == [] and outcome.punts == 0
    assert holders(rig, Feature.BINDING) == holders(rig, Feature.TUNNEL) == set()
    [tunnel] = [e["data"] for e in rig.core.events.after(0)[0]
                if e["type"] == "tunnel" and not e["data"]["up"]]
    assert tunnel["reason"] == "sa-expired"


def test_a_lease_ending_during_a_handover_ends_the_tunnel_once_mn1_switched_back(rig):
    mn = pre_switched(rig)
    assert rig.core.mpa.ca.release("net-b1", mpa_client(IDENTITY, MN_MAC), WALL_OFFSET + rig.now)
    rig.run(rig.core.mobility.drain())
    assert rig.core.counters["tunnel_end_deferred"] == 1
    assert holders(rig, Feature.BUFFER) == {"ar-b1"}        # the handover goes on
    assert mn.handover("cancel")["phase"] == "switched-back"
    later(rig, 1)
    assert_bound_where_mn1_is(rig, "tunnel-expired")


def test_the_binding_follows_mn1_arriving_in_the_tunnels_network_at_another_address(rig):
    """mn1 moves to net-b1 without a handover and uses an address there that
    is not its nCoA: the tunnel ends (mn1 is in its network), and the
    binding goes to the address mn1 uses."""
    bound(rig)
    rig.move("mn1", "ap-b1-1", ip=NEIGHBOUR_IP)
    rig.arp_request("mn1", NEIGHBOUR_IP)
    assert rig.core.counters["tunnel_arrived"] == 1
    assert rig.core.mobility.bindings[HOME].care_of == NEIGHBOUR_IP
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert down["ipv4_dst"] == HOME
    assert rig.core.counters["binding_fell_back"] == 1


def test_a_binding_whose_mn_is_nowhere_known_ends_when_its_tunnel_does(rig):
    """mn1's link at ap-a1-1 went down and it has not shown up since: when
    the tunnel ends there is nowhere to send its traffic, and the binding
    ends rather than lead it to net-b1's AR, which would hold it for an
    address nobody answers for."""
    bound(rig)
    rig.move("mn1", "ap-a1-2")                     # the port goes down; not seen since
    later(rig, rig.topology.mpa.tunnel_lifetime_s)
    assert rig.core.mobility.bindings == {}
    assert rig.core.counters["binding_ended_no_route"] == 1
    outcome = rig.ping("cn1", HOME)
    assert outcome.frames == [] and outcome.punts == 0
    [event] = [e for e in rig.core.events.after(0)[0]
               if e["type"] == "binding" and e["data"].get("reason")]
    assert event["data"] == {"identity": IDENTITY, "network": "net-b1", "home_address": HOME,
                             "care_of": None, "reason": "no-route",
                             "previous_care_of": NCOA, "cause": "tunnel-expired"}
    later(rig, SETTLE_S)
    assert holders(rig, Feature.BINDING) == holders(rig, Feature.TUNNEL) == set()


def test_an_arrival_keeps_the_binding_on_the_ncoa(rig):
    """The tunnel ends because mn1 arrived at its nCoA: the binding reaches
    it there, nothing falls back."""
    pre_switched(rig)
    arrive(rig)
    later(rig, SETTLE_S)
    assert rig.core.mobility.bindings[HOME].care_of == NCOA
    assert rig.core.counters["binding_fell_back"] == rig.core.counters[
        "binding_ended_no_route"] == 0


def test_the_fallen_back_binding_is_what_a_restart_finds(topology, tmp_path):
    path = str(tmp_path / "state.db")
    rig = make_rig(topology, store=SqliteStore(path))
    bound(rig).ask("tunnel-release", "tunnel-released")
    later(rig, SETTLE_S)
    kept = flows_of(rig, Feature.TUNNEL, Feature.BINDING)

    rig.restart(store=SqliteStore(path))
    assert rig.core.mobility.tunnels == {}
    assert rig.core.mobility.bindings[HOME].care_of == MN_IP
    rig.arp_request("mn1", MN_IP)       # a restarted controller learns its hosts again
    assert flows_of(rig, Feature.TUNNEL, Feature.BINDING) == kept
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert down["ipv4_dst"] == HOME

"""Base connectivity, checked by where packets go in a fake OpenFlow network."""

import pytest

from support.paths import DEFAULT_TOPOLOGY
from support.fakeoftable import arp_packet, ipv4_packet
from mpa_sdn import openflow as of
from mpa_sdn import packets
from mpa_sdn.config import load_topology
from mpa_sdn.openflow import record_of
from ryu.ofproto import ofproto_v1_3 as ofp
from mpa_sdn.tables import host_cookie
from support.network_rig import Rig

MN_MAC = "02:00:00:00:01:01"
CN = "cn1"
CN_IP = "10.0.0.10"


@pytest.fixture
def rig(topology):
    rig = Rig(topology)
    rig.connect_all()
    return rig


def mn_address(rig, poa):
    return str(rig.graph.network(poa.network).pool.last)


def attach_mn(rig, poa):
    return rig.add_host("mn1", MN_MAC, mn_address(rig, poa), poa.id)


def test_every_switch_is_reconciled_with_its_full_flow_set(rig):
    for switch in rig.graph.switch_ids():
        dpid = rig.graph.dpid(switch)
        assert rig.net.switches[switch].records() == {
            record_of(m) for m in rig.core.desired_flows(dpid)}
        assert len(rig.net.switches[switch].entries) == rig.core.expected_flow_count(dpid)
        state = rig.core.switches[dpid]
        assert state.reconciled_at == rig.now and not state.reconciling


def test_gateway_arp_is_answered_in_the_switch(rig, topology):
    net = topology.networks["net-a1"]
    host = attach_mn(rig, net.poas[0])
    outcome = rig.arp_request("mn1", str(net.gateway))
    assert outcome.punts == 0, "the switch answers ARP for the gateway itself"
    [reply] = outcome.to("mn1")
    assert reply["arp_op"] == 2
    assert (reply["arp_sha"], reply["arp_spa"]) == (net.gateway_mac, str(net.gateway))
    assert (reply["arp_tha"], reply["arp_tpa"]) == (host.mac, host.ip)
    assert (reply["eth_src"], reply["eth_dst"]) == (net.gateway_mac, host.mac)


def test_gateway_arp_is_not_answered_for_another_networks_gateway(rig, topology):
    attach_mn(rig, topology.networks["net-a1"].poas[0])
    outcome = rig.arp_request("mn1", str(topology.networks["net-a2"].gateway))
    assert outcome.to("mn1") == []


@pytest.mark.parametrize("poa_id", [p for p, poa in load_topology(DEFAULT_TOPOLOGY).poas.items()
                                    if poa.network != "net-cn"])
def test_mn_and_cn_reach_each_other_from_every_poa(rig, topology, poa_id):
    poa = rig.graph.poa(poa_id)
    mn = attach_mn(rig, poa)
    network = topology.networks[poa.network]
    cn_net = topology.networks["net-cn"]

    first = rig.ping("mn1", CN_IP)
    [at_cn] = first.to(CN)
    assert first.punts == 1, "the first packet teaches the controller the MN"
    assert (at_cn["eth_src"], at_cn["eth_dst"]) == (cn_net.gateway_mac, "02:00:00:00:0c:01")
    assert at_cn["ttl"] == 63 and at_cn["ipv4_src"] == mn.ip

    again = rig.ping("mn1", CN_IP, seq=2)
    assert len(again.to(CN)) == 1 and again.punts == 0, "steady state: no packet-ins"

    back = rig.ping(CN, mn.ip)
    [at_mn] = back.to("mn1")
    assert back.punts == 0
    assert (at_mn["eth_src"], at_mn["eth_dst"]) == (network.gateway_mac, MN_MAC)
    assert at_mn["ipv4_src"] == CN_IP


def test_path_follows_the_graph(rig, topology):
    poa = topology.poas["ap-b1-2"]
    attach_mn(rig, poa)
    rig.ping("mn1", CN_IP)
    host = rig.hosts["mn1"]
    trace = rig.net.send("cn-ar", 2, ipv4_packet("02:00:00:00:0c:01",
                                                topology.networks["net-cn"].gateway_mac,
                                                CN_IP, host.ip))
    [delivery] = trace.deliveries
    assert delivery.path == tuple(rig.graph.switch_path("cn-ar", "ap-b1"))
    assert delivery.path == ("cn-ar", "core", "ar-b1", "ap-b1")


def test_unknown_destination_is_resolved_and_the_packet_delivered(rig, topology):
    poa = topology.poas["ap-a2-1"]
    mn = attach_mn(rig, poa)
    outcome = rig.ping(CN, mn.ip)
    # Punted at the AR, held; the gateway asks for the MN, the MN answers,
    # and the held packet is delivered.
    arp_requests = [p for p in outcome.to("mn1") if p.get("arp_op") == 1]
    echoes = [p for p in outcome.to("mn1") if p.get("ipv4_dst") == mn.ip]
    assert len(arp_requests) == 1
    assert arp_requests[0]["arp_spa"] == str(topology.networks["net-a2"].gateway)
    assert len(echoes) == 1
    assert rig.core.counters["pending_released"] == 1
    assert rig.ping(CN, mn.ip, seq=2).punts == 0


def test_resolution_requests_are_rate_limited(rig, topology):
    target = "10.1.2.150"  # nobody has it
    for seq in range(5):
        rig.ping(CN, target, seq=seq)
    assert rig.core.counters["arp_resolve_sent"] == 1
    assert rig.core.counters["arp_resolve_suppressed"] == 4
    assert rig.core.counters["pending_held"] == 5
    rig.now += 10
    rig.core.tick(rig.now)
    assert rig.core.counters["pending_dropped_expired"] == 5
    assert rig.core.router.resolution.pending == {}


def test_host_moving_within_its_network_keeps_its_address(rig, topology):
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    rig.move("mn1", "ap-a1-2")
    assert mn.ip not in rig.core.hosts, "its old port went down"
    # The CN's next packet finds it: the gateway asks, the MN answers from
    # its new PoA, the held packet is delivered there.
    found = rig.ping(CN, mn.ip)
    assert [p["ipv4_dst"] for p in found.to("mn1") if "ipv4_dst" in p] == [mn.ip]
    assert rig.core.hosts[mn.ip].poa.id == "ap-a1-2"
    steady = rig.ping(CN, mn.ip, seq=3)
    assert len(steady.to("mn1")) == 1 and steady.punts == 0


def test_gratuitous_arp_relocates_a_host(rig, topology):
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    rig.hosts["mn1"].switch, rig.hosts["mn1"].port = "ar-a1", topology.poas["ap-a1-2"].port
    rig.inject("ar-a1", mn.port, arp_packet(1, MN_MAC, mn.ip, mn.ip))
    assert rig.core.hosts[mn.ip].poa.id == "ap-a1-2"
    assert len(rig.ping(CN, mn.ip).to("mn1")) == 1
    old_source_checks = [e for e in rig.net.switches["ar-a1"].entries
                         if e.match.get("in_port") == topology.poas["ap-a1-1"].port
                         and "ipv4_src" in e.match]
    assert old_source_checks == []


def test_host_moving_to_another_network_reaches_cn_with_its_new_address(rig, topology):
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    new_ip = str(topology.networks["net-b1"].pool.last)
    rig.move("mn1", "ap-b1-1", ip=new_ip)
    assert mn.ip == new_ip and "10.1.1.199" not in rig.core.hosts, "the old address left with its link"
    assert len(rig.ping("mn1", CN_IP).to(CN)) == 1
    assert len(rig.ping(CN, new_ip).to("mn1")) == 1


def test_spoofed_source_is_not_routed(rig, topology):
    attach_mn(rig, topology.poas["ap-a1-1"])
    rig.hosts["mn1"].ip = "10.2.1.150"  # an address of another network
    outcome = rig.ping("mn1", CN_IP)
    assert outcome.to(CN) == []
    assert rig.core.counters["learn_rejected_address"] == 1


def test_correspondent_address_cannot_be_taken(rig, topology):
    rig.add_host("intruder", "02:00:00:00:66:66", CN_IP, "ap-a1-1")
    assert rig.ping("intruder", "10.1.1.1").delivered == []
    assert rig.core.hosts[CN_IP].mac == "02:00:00:00:0c:01"


def test_proxy_arp_for_a_known_host_in_the_same_network(rig, topology):
    net = topology.networks["net-a1"]
    rig.add_host("h1", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.add_host("h2", "02:00:00:00:00:a2", "10.1.1.151", "ap-a1-2")
    rig.ping("h2", CN_IP)  # h2 becomes known
    outcome = rig.arp_request("h1", "10.1.1.151")
    [reply] = outcome.to("h1")
    assert (reply["arp_op"], reply["arp_sha"], reply["arp_spa"]) == (2, net.gateway_mac, "10.1.1.151")
    [pkt] = rig.ping("h1", "10.1.1.151").to("h2")
    assert pkt["eth_dst"] == "02:00:00:00:00:a2"


def test_probe_for_an_address_in_use_is_answered(rig, topology):
    rig.add_host("h1", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.add_host("h2", "02:00:00:00:00:a2", "10.1.1.151", "ap-a1-2")
    rig.ping("h2", CN_IP)
    [reply] = rig.arp_request("h1", "10.1.1.151", probe=True).to("h1")
    assert reply["arp_spa"] == "10.1.1.151", "the prober learns the address is taken"
    assert "0.0.0.0" not in rig.core.hosts


def test_gateway_answers_ping(rig, topology):
    net = topology.networks["net-a1"]
    mn = attach_mn(rig, net.poas[0])
    rig.ping("mn1", CN_IP)
    [reply] = rig.ping("mn1", str(net.gateway)).to("mn1")
    assert (reply["ipv4_src"], reply["ipv4_dst"]) == (str(net.gateway), mn.ip)
    assert reply["icmp_type"] == 0


def idle_out(rig, mn):
    match = {"in_port": mn.port, "eth_src": mn.mac, "ipv4_src": mn.ip, "eth_type": 0x0800}
    sw = rig.net.switches[mn.switch]
    sw.entries = [e for e in sw.entries if not (e.cookie == host_cookie(mn.ip) and e.table_id == 0)]
    return rig.run(rig.core.flow_removed(sw.dpid, host_cookie(mn.ip), ofp.OFPRR_IDLE_TIMEOUT,
                                         match, rig.now))


def test_quiet_host_that_answers_its_poll_is_kept(rig, topology):
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    outcome = idle_out(rig, mn)
    [poll] = [p for p in outcome.to("mn1") if p.get("arp_op") == 1]
    assert poll["eth_dst"] == mn.mac, "a unicast poll"
    assert rig.core.counters["host_probe_answered"] == 1
    rig.now += 10
    rig.run(rig.core.tick(rig.now))
    assert mn.ip in rig.core.hosts
    steady = rig.ping(CN, mn.ip)
    assert len(steady.to("mn1")) == 1 and steady.punts == 0
    assert rig.net.switches["ar-a1"].records() == {
        record_of(m) for m in rig.core.desired_flows(rig.graph.dpid("ar-a1"))}


def test_quiet_host_that_does_not_answer_is_forgotten_with_its_flows(rig, topology):
    mn = attach_mn(rig, topology.poas["ap-b1-1"])
    rig.ping("mn1", CN_IP)
    del rig.hosts["mn1"]  # gone without its port going down
    idle_out(rig, mn)
    assert mn.ip in rig.core.hosts, "not before the poll's deadline"
    rig.now += topology.controller.host_probe_s + 0.1
    rig.run(rig.core.tick(rig.now))
    assert mn.ip not in rig.core.hosts
    assert rig.core.counters["host_forgotten_idle"] == 1
    for switch in rig.net.switches.values():
        assert not [e for e in switch.entries if e.cookie == host_cookie(mn.ip)]


def move_to_net_b1(rig, topology, mn):
    """mn1 leaves ap-a1-1 for ap-b1-1, whose port stays up as an access
    point's does, and sends from an address of net-b1 there."""
    old = mn.ip
    rig.move("mn1", "ap-b1-1", ip=mn_address(rig, topology.poas["ap-b1-1"]), port_down=False)
    outcome = rig.ping("mn1", CN_IP)
    assert rig.core.hosts[mn.ip].poa.id == "ap-b1-1"
    [poll] = [pkt for switch, port, pkt in outcome.frames
              if pkt.get("arp_op") == 1 and pkt["arp_tpa"] == old]
    assert poll["eth_dst"] == mn.mac, "a unicast poll where it was"
    return old


def test_a_host_whose_mac_shows_up_in_another_network_is_polled_and_forgotten_if_silent(
        rig, topology):
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    old = move_to_net_b1(rig, topology, mn)
    assert rig.core.counters["host_probe_seen_elsewhere"] == 1
    assert old in rig.core.hosts, "not before the poll's deadline"
    rig.now += topology.controller.host_probe_s + 0.1
    rig.run(rig.core.tick(rig.now))
    assert old not in rig.core.hosts and mn.ip in rig.core.hosts
    assert rig.core.counters["host_forgotten_idle"] == 1
    for switch in rig.net.switches.values():
        assert not [e for e in switch.entries if e.cookie == host_cookie(old)]


def test_a_host_whose_mac_shows_up_elsewhere_but_still_answers_stays(rig, topology):
    """Two interfaces with one MAC (an MN's in-band standby): both stay."""
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    rig.add_host("standby", MN_MAC, mn.ip, "ap-a1-1")   # answers the poll where mn1 was
    old = move_to_net_b1(rig, topology, mn)
    # The standby's answer polls mn1 in net-b1 in turn, which answers; and
    # there it ends (each answered a poll just now).
    assert rig.core.counters["host_probe_seen_elsewhere"] == 2
    assert rig.core.counters["host_probe_answered"] == 2
    rig.now += topology.controller.host_probe_s + 0.1
    rig.run(rig.core.tick(rig.now))
    assert old in rig.core.hosts and mn.ip in rig.core.hosts
    assert rig.core.counters["host_forgotten_idle"] == 0


def test_coming_back_to_a_host_still_learned_polls_the_one_just_left(rig, topology):
    """Ports that stay up, and a quick return: back at ap-a1-1, where its host
    is still learned, mn1's host in net-b1 is polled and forgotten."""
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    first = move_to_net_b1(rig, topology, mn)
    there = mn.ip
    rig.move("mn1", "ap-a1-1", ip=first, port_down=False)
    rig.arp_request("mn1", first)                # its announcement, back home
    assert rig.core.counters["host_probe_seen_elsewhere"] == 2
    rig.now += topology.controller.host_probe_s + 0.1
    rig.run(rig.core.tick(rig.now))
    assert there not in rig.core.hosts and rig.core.hosts[first].poa.id == "ap-a1-1"


def test_unknown_switch_is_left_alone(rig):
    assert rig.core.switch_connected(0xdead, rig.now) == []
    assert rig.core.counters["switch_unknown"] == 1


def test_malformed_packet_in_changes_nothing(rig):
    before = dict(rig.core.hosts)
    dpid = rig.graph.dpid("ar-a1")
    udp = packets.udp_frame(src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02",
                            src_ip="10.1.1.5", dst_ip="10.2.1.1", src_port=40000,
                            dst_port=5001, payload=b"x" * 100)
    arp = packets.arp_request(sender_mac="02:00:00:00:00:01", sender_ip="10.1.1.5",
                              target_ip="10.1.1.1")
    junk = (b"", b"\x00" * 10, b"\xff" * 12 + b"\x08\x06" + b"\x00" * 3,
            bytes(60),                                # all padding
            udp[:30],                                 # an IPv4 header cut short
            udp[:-20],                                # a datagram cut short
            udp[:38] + b"\x00\x04" + udp[40:],        # a UDP length under its header's
            arp[:14] + b"\x00\x06" + arp[16:],        # ARP over another hardware type
            arp[:30])                                 # ARP cut short
    for frame in junk:
        assert rig.core.packet_in(dpid, 3, 1, frame, rig.now) == []
    assert rig.core.counters["packet_in_malformed"] == len(junk)
    assert rig.core.hosts == before


def test_host_table_bound(topology):
    import dataclasses
    small = dataclasses.replace(topology, controller=dataclasses.replace(
        topology.controller, max_hosts=2))  # cn1 takes one place
    rig = Rig(small)
    rig.connect_all()
    rig.add_host("h1", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.add_host("h2", "02:00:00:00:00:a2", "10.1.1.151", "ap-a1-2")
    assert len(rig.ping("h1", CN_IP).to(CN)) == 1
    assert rig.ping("h2", CN_IP).to(CN) == []
    assert rig.core.counters["learn_rejected_full"] == 1


def test_stale_idle_timeout_after_a_move_keeps_the_host(rig, topology):
    mn = attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    old_port = mn.port
    rig.move("mn1", "ap-a1-2")
    rig.ping("mn1", CN_IP)
    stale = {"in_port": old_port, "eth_src": mn.mac, "ipv4_src": mn.ip, "eth_type": 0x0800}
    dpid = rig.graph.dpid("ar-a1")
    assert rig.core.flow_removed(dpid, host_cookie(mn.ip), ofp.OFPRR_IDLE_TIMEOUT, stale,
                                 rig.now) == []
    assert rig.core.hosts[mn.ip].poa.id == "ap-a1-2"
    assert rig.core.counters["flow_removed_stale"] == 1


def test_host_routes_live_only_on_the_path_from_the_ar(rig, topology):
    attach_mn(rig, topology.poas["ap-b1-1"])
    rig.ping("mn1", CN_IP)
    holding = sorted(name for name, sw in rig.net.switches.items()
                     if any(e.cookie == host_cookie("10.2.1.199") for e in sw.entries))
    assert holding == ["ap-b1", "ar-b1"]


def test_missing_route_at_the_ar_does_not_loop(rig, topology):
    mn = attach_mn(rig, topology.poas["ap-b1-1"])
    rig.ping("mn1", CN_IP)
    ar = rig.net.switches["ar-b1"]
    ar.entries = [e for e in ar.entries if e.cookie != host_cookie(mn.ip)]
    outcome = rig.ping(CN, mn.ip)
    assert len(outcome.to("mn1")) == 1, "delivered straight from its PoA"
    assert outcome.punts == 1


def test_refused_source_is_dropped_in_the_switch(rig, topology):
    attach_mn(rig, topology.poas["ap-a1-1"])
    rig.hosts["mn1"].ip = "10.2.1.150"
    assert rig.ping("mn1", CN_IP).punts == 1
    again = rig.ping("mn1", CN_IP, seq=2)
    assert again.punts == 0 and again.delivered == []
    assert rig.core.counters["learn_rejected_address"] == 1


def test_spoofing_a_correspondent_at_its_own_poa_is_refused(rig, topology):
    gw = topology.networks["net-cn"].gateway_mac
    spoof = ipv4_packet("02:00:00:00:66:66", gw, CN_IP, "10.1.1.150")
    first = rig.inject("cn-ar", topology.poas["cn-port"].port, spoof)
    second = rig.inject("cn-ar", topology.poas["cn-port"].port, spoof)
    assert first.delivered == [] and first.lost == [] and second.punts == 0
    assert rig.core.counters["learn_rejected_static"] == 1


def test_multicast_source_mac_is_refused(rig, topology):
    net = topology.networks["net-a1"]
    pkt = ipv4_packet("01:00:5e:00:00:01", net.gateway_mac, "10.1.1.150", CN_IP)
    assert rig.inject("ar-a1", 3, pkt).to(CN) == []
    assert rig.core.counters["learn_rejected_mac"] == 1
    assert "10.1.1.150" not in rig.core.hosts


def test_held_addresses_are_bounded(topology):
    import dataclasses
    small = dataclasses.replace(topology, controller=dataclasses.replace(
        topology.controller, pending_addresses=2, pending_per_address=1))
    rig = Rig(small)
    rig.connect_all()
    for last in range(150, 154):
        rig.ping(CN, f"10.1.2.{last}")
    rig.ping(CN, "10.1.2.150", seq=2)
    assert rig.core.counters["pending_held"] == 2
    assert rig.core.counters["pending_dropped_full"] == 3
    assert len(rig.core.router.resolution.pending) == 2


def test_port_status_of_a_trunk_or_unknown_port_changes_nothing(rig, topology):
    attach_mn(rig, topology.poas["ap-a1-1"])
    rig.ping("mn1", CN_IP)
    before = dict(rig.core.hosts)
    dpid = rig.graph.dpid("ar-a1")
    assert rig.core.port_status(dpid, 1, True, rig.now) == []     # trunk to core
    assert rig.core.port_status(dpid, 99, True, rig.now) == []    # no such port
    assert rig.core.port_status(dpid, 3, False, rig.now) == []    # PoA, link up
    assert rig.core.hosts == before


def expire_rejections(rig):
    """The switches' hard timeouts run out; the controller's tick notices."""
    for sw in rig.net.switches.values():
        sw.entries = [e for e in sw.entries if e.hard_timeout == 0]
    rig.now += rig.core.settings.reject_hold_s
    rig.run(rig.core.tick(rig.now))


def test_a_live_hosts_address_cannot_be_taken(rig, topology):
    rig.add_host("victim", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.add_host("thief", "02:00:00:00:00:a2", "10.1.1.150", "ap-a1-2")
    for _ in range(6):
        rig.now += 1
        assert len(rig.ping("victim", CN_IP).to(CN)) == 1
    stolen = rig.ping("thief", CN_IP)
    assert stolen.to(CN) == []
    assert rig.core.counters["learn_rejected_conflict"] == 1
    assert rig.core.counters["host_probe_answered"] == 1, "the owner was polled and answered"
    assert rig.core.hosts["10.1.1.150"].mac == "02:00:00:00:00:a1"
    assert [p["ipv4_dst"] for p in rig.ping(CN, "10.1.1.150").to("victim")] == ["10.1.1.150"]
    again = rig.ping("thief", CN_IP, seq=2)
    assert again.punts == 0 and again.delivered == [], "dropped in the switch"


def test_an_address_changes_hands_once_its_owner_is_gone(rig, topology):
    rig.add_host("old", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.ping("old", CN_IP)
    del rig.hosts["old"]  # left without its port going down
    rig.add_host("new", "02:00:00:00:00:a2", "10.1.1.150", "ap-a1-2")
    assert rig.ping("new", CN_IP).to(CN) == []   # refused while the owner is polled
    rig.now += rig.core.settings.host_probe_s + 0.1
    rig.run(rig.core.tick(rig.now))
    assert "10.1.1.150" not in rig.core.hosts, "the poll went unanswered"
    expire_rejections(rig)
    assert len(rig.ping("new", CN_IP).to(CN)) == 1
    assert rig.core.hosts["10.1.1.150"].mac == "02:00:00:00:00:a2"


def test_a_refused_source_gets_no_arp_answers_and_is_not_punted_twice(rig, topology):
    rig.add_host("h", "02:00:00:00:00:a1", "10.2.1.150", "ap-a1-1")  # net-b1's address
    first = rig.arp_request("h", "10.1.1.151")
    assert first.punts == 1 and first.delivered == []
    second = rig.arp_request("h", "10.1.1.151")
    assert second.punts == 0
    assert rig.core.counters["learn_rejected_address"] == 1
    assert rig.core.counters["arp_resolve_sent"] == 0


def test_an_arp_from_a_known_host_sends_no_flows(rig, topology):
    rig.add_host("h1", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.ping("h1", CN_IP)
    dpid = rig.graph.dpid("ar-a1")
    from support.fakeoftable import arp_packet, to_bytes
    request = to_bytes(arp_packet(1, "02:00:00:00:00:a1", "10.1.1.150", "10.1.1.199"))
    sends = rig.core.packet_in(dpid, 3, 1, request, rig.now)
    assert [m for s in sends for m in s.messages if of.message_name(m) == "OFPFlowMod"] == []


def test_a_correspondents_idle_timeout_is_ignored(rig, topology):
    cn = rig.hosts[CN]
    match = {"in_port": cn.port, "eth_src": cn.mac, "ipv4_src": cn.ip, "eth_type": 0x0800}
    assert rig.core.flow_removed(rig.graph.dpid(cn.switch), host_cookie(cn.ip),
                                 ofp.OFPRR_IDLE_TIMEOUT, match, rig.now) == []
    assert rig.core.router.probing == {}


def test_expected_flow_count_matches_after_learning_moving_and_forgetting(rig, topology):
    rig.add_host("h1", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.add_host("h2", "02:00:00:00:00:b1", "10.2.1.150", "ap-b1-1")
    rig.ping("h1", CN_IP)
    rig.ping("h2", CN_IP)
    rig.move("h2", "ap-b1-2")
    rig.ping("h2", CN_IP)
    rig.move("h1", "ap-a1-2")
    for name, sw in rig.net.switches.items():
        dpid = sw.dpid
        assert sw.records() == {record_of(m) for m in rig.core.desired_flows(dpid)}, name
        assert rig.core.expected_flow_count(dpid) == len(rig.core.desired_flows(dpid)), name


def test_an_unaddressed_host_is_neither_learned_nor_blocked(rig, topology):
    rig.add_host("h", "02:00:00:00:00:a1", "0.0.0.0", "ap-a1-1")
    dhcp_like = ipv4_packet("02:00:00:00:00:a1", "ff:ff:ff:ff:ff:ff", "0.0.0.0", "255.255.255.255")
    assert rig.inject("ar-a1", 3, dhcp_like).punts == 1
    assert rig.core.counters["packet_in_unaddressed"] == 1
    assert not [e for sw in rig.net.switches.values() for e in sw.entries if e.hard_timeout]
    # Its ARP probe for the address it is about to use still reaches the controller.
    probe = rig.inject("ar-a1", 3, arp_packet(1, "02:00:00:00:00:a1", "0.0.0.0", "10.1.1.150"))
    assert probe.punts == 1
    assert "0.0.0.0" not in rig.core.hosts


def test_a_reconnect_clears_refusals_and_a_refused_source_is_dropped_anew(rig, topology):
    rig.add_host("h", "02:00:00:00:00:a1", "10.2.1.150", "ap-a1-1")  # net-b1's address
    rig.ping("h", CN_IP)
    assert rig.ping("h", CN_IP).punts == 0
    dpid = rig.graph.dpid("ar-a1")
    rig.core.switch_disconnected(dpid, rig.now)
    rig.connect("ar-a1")  # reconciliation removes the temporary drops
    assert rig.ping("h", CN_IP).punts == 1
    assert rig.ping("h", CN_IP).punts == 0, "dropped in the switch again"
    assert rig.core.counters["learn_rejected_address"] == 2

"""The AA's and CA's traffic through fake switches: where signalling, DHCP
and DAD probes go, and what the core changes when they arrive.

The core runs with its AA and CA (in-memory store, deterministic entropy);
the MN speaks through mpa_mn.protocol, its datagrams carried by the fake
network like any other packet.
"""

import pytest
from ryu.lib.packet import dhcp as ryu_dhcp
from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_mn import protocol
from mpa_mn.pana_client import PanaClient
from mpa_protocol import messages, pana
from mpa_protocol.pana import PANA_PORT, PanaMessage
from mpa_sdn import dhcp, reconcile
from mpa_sdn.mpa_sa import AUTHORIZED, PRE_AUTHENTICATED
from mpa_sdn.tables import PRIO_GATEWAY_PUNT, Feature, Table, feature_of
from support.aaa import peer
from support.handover_rig import (B1_GATEWAY, CN_IP, MN_IP, MN_PORT, PANA_MN_PORT, PORT,
                                  Mn, datagrams, exchange, make_rig, pana_exchange, preauth,
                                  settle_dad)
from support.service_rig import IDENTITY, MN_MAC, counter_entropy

LAPTOP_MAC = "02:00:00:00:0d:01"
SQUATTER_MAC = "02:00:00:00:99:99"


@pytest.fixture
def rig(topology):
    return make_rig(topology)   # mn1 learned at ap-a1-1


# -- helpers ------------------------------------------------------------------------


def configure(rig, state) -> dict:
    data, seq = protocol.request(state, "config-request")
    outcome = rig.udp("mn1", B1_GATEWAY, PORT, data, src_port=MN_PORT)
    answers = datagrams(outcome, "mn1") or datagrams(settle_dad(rig), "mn1")
    [answer] = answers
    return protocol.check_answer(state, answer["payload"], seq, "config")


def dhcp_reply(pkt: dict) -> tuple[int, str, dict]:
    """(message type, yiaddr, options) of a DHCP reply frame."""
    msg, _, _ = ryu_dhcp.dhcp.parser(pkt["payload"])
    options = {o.tag: o.value for o in msg.options.option_list}
    return options[dhcp.OPT_MESSAGE_TYPE][0], msg.yiaddr, options


def leases(rig, network="net-b1"):
    return [(v["address"], v["mac"], v["state"])
            for v in rig.core.mpa.lease_views(rig.now, network)]


def pool(rig, network="net-b1"):
    return rig.core.mpa.ca.pool_view(network, rig.core.mpa.wall(rig.now))


# -- in-band signalling ---------------------------------------------------------------

def test_in_band_pre_authentication_and_configuration_end_to_end(rig, topology):
    net_a1, net_b1 = topology.networks["net-a1"], topology.networks["net-b1"]
    client = PanaClient(peer("domain-b"), pre=True, entropy=counter_entropy(b"mn"))

    pci = rig.udp("mn1", B1_GATEWAY, PANA_PORT, client.initiation(), src_port=PANA_MN_PORT)
    # Punted at the first switch, in ROUTE (mn1 passed its source check) ...
    assert pci.punted_at == [("ar-a1", 3, Table.ROUTE)]
    # ... and answered straight out of mn1's PoA, from net-b1's gateway as
    # routed traffic would come: the MAC of mn1's own router.
    [(switch, port, par)] = pci.frames
    assert (switch, port) == ("ar-a1", 3)
    assert (par["eth_src"], par["eth_dst"]) == (net_a1.gateway_mac, MN_MAC)
    assert (par["ipv4_src"], par["ipv4_dst"]) == (B1_GATEWAY, MN_IP)
    assert (par["udp_src"], par["udp_dst"]) == (PANA_PORT, PANA_MN_PORT)
    first = PanaMessage.decode(par["payload"], 4096)
    assert first.msg_type == pana.AUTH and first.has(pana.FLAG_S) and first.has(pana.FLAG_E)

    # Every later round trip: out of mn1's PoA too; the RADIUS requests went
    # to domain-b's server alone.
    answer, radius = client.receive(par["payload"]), []
    while not client.done:
        outcome = rig.udp("mn1", B1_GATEWAY, PANA_PORT, answer, src_port=PANA_MN_PORT)
        radius += outcome.radius
        [(switch, port, pkt)] = outcome.frames
        assert (switch, port, pkt["udp_src"]) == ("ar-a1", 3, PANA_PORT)
        answer = client.receive(pkt["payload"])
    rig.udp("mn1", B1_GATEWAY, PANA_PORT, answer, src_port=PANA_MN_PORT)   # the final PAN
    assert client.result == "success"   # the AA proved it holds the key
    assert radius and {(d.address, d.port) for d in radius} == {
        (s.address, s.port) for s in topology.domains["domain-b"].radius.servers}
    sa_id, sa_keys = client.established.sa(IDENTITY, "net-b1")
    state = protocol.SaState("net-b1", "domain-b", IDENTITY, MN_MAC, sa_id, sa_keys,
                             client.established.lifetime)
    sa = rig.core.mpa.aa.sas[state.sa]
    assert (sa.state, sa.network, sa.mn_mac, sa.source) == (
        PRE_AUTHENTICATED, "net-b1", None, MN_IP)   # PANA names no MAC

    # Nothing probed yet: the configuration waits for DAD, then comes by itself.
    data, seq = protocol.request(state, "config-request")
    waiting = rig.udp("mn1", B1_GATEWAY, PORT, data, src_port=MN_PORT)
    assert waiting.punts == 1 and waiting.frames == []
    settled = settle_dad(rig)
    [answer] = datagrams(settled, "mn1")
    assert (answer["ipv4_src"], answer["udp_src"], answer["udp_dst"]) == (
        B1_GATEWAY, PORT, MN_PORT)
    config = protocol.check_answer(state, answer["payload"], seq, "config")
    assert config["address"] == "10.2.1.100"
    assert (config["router"], config["prefix_len"], config["gateway_mac"]) == (
        B1_GATEWAY, 24, net_b1.gateway_mac)
    assert leases(rig) == [("10.2.1.100", MN_MAC, "bound")]
    assert sa.mn_mac == MN_MAC                  # the config-request bound it
    # Nothing of this reached net-b1's PoAs but the CA's own probes.
    assert {(s, p) for s, p, pkt in settled.frames if pkt.get("ip_proto") == 17} == {
        ("ar-a1", 3)}


def test_the_first_packet_of_an_unknown_mn_may_be_signalling(rig, topology):
    """Its source check missing, it is learned from the datagram, which then
    goes on through the pipeline to the signalling punt."""
    rig.add_host("mn2", "02:00:00:00:01:02", "10.1.1.60", "ap-a1-2")
    client = PanaClient(peer("domain-b", "mn2@domain-a"), pre=True,
                        entropy=counter_entropy(b"mn2"))
    outcome = rig.udp("mn2", B1_GATEWAY, PANA_PORT, client.initiation(), src_port=MN_PORT)
    assert outcome.punted_at == [("ar-a1", 4, Table.INGRESS),
                                 ("ar-a1", ofp.OFPP_CONTROLLER, Table.ROUTE)]
    assert rig.core.hosts["10.1.1.60"].poa.id == "ap-a1-2"
    [answer] = datagrams(outcome, "mn2")
    par = PanaMessage.decode(answer["payload"], 4096)
    assert (par.msg_type, par.is_request, par.has(pana.FLAG_S)) == (pana.AUTH, True, True)


def test_the_nCoA_is_used_after_the_move_and_the_sa_becomes_authorized(rig):
    settle_dad(rig)
    state = preauth(rig)
    ncoa = configure(rig, state)["address"]
    rig.move("mn1", "ap-b1-2", ip=ncoa)
    outcome = rig.ping("mn1", CN_IP)
    assert len(outcome.to("cn1")) == 1
    assert rig.core.hosts[ncoa].mac == MN_MAC
    assert rig.core.mpa.aa.sas[state.sa].state == AUTHORIZED


JUNK = [
    (b"", "malformed"),
    (b"{", "malformed"),
    (b"[]", "malformed"),
    (b'{"v":2,"type":"discover"}', "unsupported_version"),
    (b'{"v":1,"type":"config"}', "unknown_type"),          # an answer is no request
    (b'{"v":1,"type":"config-request","network":"net-b1"}', "malformed"),
    (b"x" * 2000, "oversized"),
]


@pytest.mark.parametrize("payload, code", JUNK)
def test_junk_to_the_signalling_port_gets_silence(rig, payload, code):
    outcome = rig.udp("mn1", B1_GATEWAY, PORT, payload, src_port=MN_PORT)
    assert outcome.punted_at == [("ar-a1", 3, Table.ROUTE)]
    assert outcome.frames == []
    assert rig.core.counters[f"signal_refused_{code}"] == 1
    assert rig.core.counters["signal_inband_answer"] == 0


def test_messages_nobody_could_have_authenticated_get_silence(rig):
    state = preauth(rig)
    answered = rig.core.counters["signal_inband_answer"]
    forged = messages.sign(messages.build("config-request", network="net-b1", sa=state.sa,
                                          seq=1, mn_mac=MN_MAC), b"k" * 32)
    unknown_sa = messages.sign(messages.build("config-request", network="net-b1",
                                              sa="00" * 16, seq=1, mn_mac=MN_MAC),
                               state.keys.mn_ca)
    for message in (forged, unknown_sa):
        outcome = rig.udp("mn1", B1_GATEWAY, PORT, messages.encode(message))
        assert outcome.punts == 1 and outcome.frames == []
    # PANA for a session that is not open, and a PAN from another PaC's port.
    no_session = PanaMessage(pana.AUTH, 0, 0x1234, 1).encode()
    assert pana_exchange(rig, no_session) == []
    counters = rig.core.counters
    assert (counters["signal_refused_bad_mac"], counters["signal_refused_unknown_sa"],
            counters["pana_dropped_unknown_session"]) == (1, 1, 1)
    assert counters["signal_inband_answer"] == answered
    sa = rig.core.mpa.aa.sas[state.sa]
    assert sa.high == 0 and sa.mn_mac is None, "nothing was committed, no MAC bound"


def test_a_rejected_pre_authentication_is_told_in_band(rig):
    """The MN took part in the exchange: the final PAR says it was rejected."""
    rig.radius.revoked.add(IDENTITY)
    with pytest.raises(protocol.ProtocolError) as err:
        preauth(rig)
    assert err.value.code == "authentication-rejected"
    assert rig.core.counters["pana_authentication_rejected"] == 1
    assert rig.core.mpa.aa.sas == {}


def test_udp_to_a_gateway_on_another_port_is_not_signalling(rig):
    outcome = rig.udp("mn1", B1_GATEWAY, PORT + 1, b'{"v":1,"type":"discover"}')
    assert outcome.punted_at == [("ar-a1", 3, Table.ROUTE)]   # the gateway punt
    assert outcome.frames == []
    assert rig.core.counters["gateway_packet_ignored"] == 1
    assert rig.core.counters["signal_inband"] == 0


def test_the_correspondent_network_has_no_signalling_punt_but_says_not_served(rig):
    """net-cn's gateway is punted like every gateway (for echo replies), so a
    datagram to its signalling port reaches the service, which has no AA or
    CA there: the MN is told, as on REST; PANA there is dropped and counted."""
    with pytest.raises(protocol.ProtocolError) as err:
        protocol.decode_answer(exchange(rig, messages.encode(messages.build(
            "config-request", network="net-cn", sa="00" * 16, seq=1, mn_mac=MN_MAC,
            mac="00" * 32)), gateway="10.0.0.1"))
    assert err.value.code == "not-served"
    client = PanaClient(peer("domain-a"), pre=True)
    assert pana_exchange(rig, client.initiation(), gateway="10.0.0.1") == []
    assert rig.core.counters["pana_dropped_not_served"] == 1


# -- DAD --------------------------------------------------------------------------------

def test_dad_probes_go_out_at_every_poa_of_their_network_and_nowhere_else(rig, topology):
    outcome = rig.run(rig.core.mpa_tick(rig.now))
    assert outcome.punts == 0 and outcome.frames
    by_target: dict[str, set] = {}
    for switch, port, pkt in outcome.frames:
        network = rig.graph.network_of_address(pkt["arp_tpa"])
        assert (pkt["arp_op"], pkt["arp_spa"], pkt["eth_dst"]) == (1, "0.0.0.0",
                                                                   "ff:ff:ff:ff:ff:ff")
        assert pkt["arp_sha"] == pkt["eth_src"] == network.gateway_mac
        by_target.setdefault(pkt["arp_tpa"], set()).add((switch, port))
    reserve = topology.mpa.dad_reserve
    for network in rig.graph.access_networks():
        targets = [t for t in by_target if rig.graph.network_of_address(t) == network]
        assert len(targets) == reserve, network.id
        for target in targets:
            assert by_target[target] == {(p.switch, p.port) for p in network.poas}
    assert by_target["10.2.1.100"] == {("ap-b1", 2), ("ap-b1", 3)}
    assert by_target["10.1.1.100"] == {("ar-a1", 3), ("ar-a1", 4)}
    assert len(outcome.frames) == reserve * sum(
        len(n.poas) for n in rig.graph.access_networks())


def test_a_squatter_answering_a_probe_makes_the_ca_skip_the_address(rig):
    rig.add_host("squatter", SQUATTER_MAC, "10.2.1.100", "ap-b1-1")
    outcome = rig.run(rig.core.mpa_tick(rig.now))
    # The probe reached it; its reply (to the gateway's MAC) was punted from
    # its PoA and heard by the CA.
    assert [p["arp_tpa"] for p in outcome.to("squatter")].count("10.2.1.100") == 1
    assert ("ap-b1", 2, Table.ARP) in outcome.punted_at
    assert rig.core.counters["dad_conflict"] == 1
    assert pool(rig)["in_use_elsewhere"] == ["10.2.1.100"]
    settle_dad(rig)
    assert "10.2.1.100" not in pool(rig)["verified_free"]
    assert configure(rig, preauth(rig))["address"] == "10.2.1.101"


# -- DHCP ---------------------------------------------------------------------------------

@pytest.mark.parametrize("broadcast", [False, True])
def test_dhcp_client_without_an_address_is_served_at_its_poa(rig, topology, broadcast):
    net_b1 = topology.networks["net-b1"]
    settle_dad(rig)
    laptop = rig.add_host("laptop", LAPTOP_MAC, "0.0.0.0", "ap-b1-2")
    discover = dhcp.build_request(dhcp.DISCOVER, chaddr=LAPTOP_MAC, xid=0x1234,
                                  broadcast=broadcast)
    offered = rig.inject_frame("ap-b1", 3, discover)
    assert offered.punted_at == [("ap-b1", 3, Table.INGRESS)]
    [(switch, port, offer)] = offered.frames          # that port only: never flooded
    assert (switch, port) == ("ap-b1", 3)
    kind, address, options = dhcp_reply(offer)
    assert (kind, address) == (dhcp.OFFER, "10.2.1.100")
    assert options[dhcp.OPT_SERVER_ID] == bytes([10, 2, 1, 1])
    assert (offer["eth_src"], offer["ipv4_src"], offer["udp_src"], offer["udp_dst"]) == (
        net_b1.gateway_mac, B1_GATEWAY, 67, 68)
    assert (offer["eth_dst"], offer["ipv4_dst"]) == (
        ("ff:ff:ff:ff:ff:ff", "255.255.255.255") if broadcast else (LAPTOP_MAC, address))
    # Not learned, not refused: no host, no drop flow.
    assert LAPTOP_MAC not in {h.mac for h in rig.core.hosts.values()}
    assert not [e for e in rig.net.switches["ap-b1"].entries
                if feature_of(e.cookie) == Feature.REJECT]

    request = dhcp.build_request(dhcp.REQUEST, chaddr=LAPTOP_MAC, xid=0x1235,
                                 broadcast=broadcast, requested_ip=address,
                                 server_id=B1_GATEWAY)
    acked = rig.inject_frame("ap-b1", 3, request)
    [(switch, port, ack)] = acked.frames
    assert (switch, port) == ("ap-b1", 3)
    assert dhcp_reply(ack)[:2] == (dhcp.ACK, address)
    assert leases(rig) == [(address, LAPTOP_MAC, "bound")]

    laptop.ip = address
    first = rig.ping("laptop", CN_IP)
    assert len(first.to("cn1")) == 1
    assert rig.core.hosts[address].mac == LAPTOP_MAC
    assert rig.core.hosts[address].poa.id == "ap-b1-2"
    assert len(rig.ping("cn1", address).to("laptop")) == 1


def proactive(kind, *, xid, eth_dst, ciaddr="0.0.0.0", requested_ip=None, server_id=None):
    """mn1's unicast DHCP from net-a1 to net-b1's gateway (RFC 6252 §7.3.3)."""
    return dhcp.build_request(kind, chaddr=MN_MAC, xid=xid, eth_dst=eth_dst, ip_src=MN_IP,
                              ip_dst=B1_GATEWAY, ciaddr=ciaddr, requested_ip=requested_ip,
                              server_id=server_id)


@pytest.mark.parametrize("first", ["dhcp", "mpa"])
def test_proactive_dhcp_needs_pre_authentication_and_shares_the_mpa_lease(
        rig, topology, first):
    net_a1 = topology.networks["net-a1"]
    settle_dad(rig)
    discover = proactive(dhcp.DISCOVER, xid=7, eth_dst=net_a1.gateway_mac)
    refused = rig.inject_frame("ar-a1", 3, discover)
    assert refused.punted_at == [("ar-a1", 3, Table.INGRESS)]   # before the source check
    assert refused.frames == []
    assert rig.core.counters["dhcp_proactive_refused"] == 1
    assert leases(rig) == []

    state = preauth(rig)
    # PANA names no MAC: the MN's first signed message binds it to the SA.
    config = configure(rig, state) if first == "mpa" else Mn(rig, state).bind_mac()
    offered = rig.inject_frame("ar-a1", 3, discover)
    [(switch, port, offer)] = offered.frames
    assert (switch, port) == ("ar-a1", 3)
    # Unicast back to the MN where it is now, from its own router's MAC.
    assert (offer["eth_src"], offer["eth_dst"]) == (net_a1.gateway_mac, MN_MAC)
    assert (offer["ipv4_src"], offer["ipv4_dst"]) == (B1_GATEWAY, MN_IP)
    kind, address, options = dhcp_reply(offer)
    assert kind == dhcp.OFFER
    assert options[dhcp.OPT_ROUTER] == bytes([10, 2, 1, 1])
    request = proactive(dhcp.REQUEST, xid=8, eth_dst=net_a1.gateway_mac,
                        requested_ip=address, server_id=B1_GATEWAY)
    [(_, _, ack)] = rig.inject_frame("ar-a1", 3, request).frames
    assert dhcp_reply(ack)[:2] == (dhcp.ACK, address)
    if config is None:
        config = configure(rig, state)
    assert config["address"] == address
    assert leases(rig) == [(address, MN_MAC, "bound")]   # one lease per MN per network
    assert rig.core.counters["dhcp_proactive"] == 2


def test_proactive_dhcp_is_refused_from_a_source_not_learned_there(rig, topology):
    """The DHCP punt comes before the source check, so the core itself must
    check that a §7.3.3 request comes from the MN it learned at that PoA: an
    impostor at another PoA, sending with mn1's MAC and address, would
    otherwise release (or decline) mn1's pre-configured nCoA."""
    net_a1 = topology.networks["net-a1"]
    settle_dad(rig)
    ncoa = configure(rig, preauth(rig))["address"]
    impostor_port = rig.graph.poa("ap-a1-2").port
    discover = proactive(dhcp.DISCOVER, xid=9, eth_dst=net_a1.gateway_mac)
    release = proactive(dhcp.RELEASE, xid=10, eth_dst=net_a1.gateway_mac, ciaddr=ncoa)
    decline = proactive(dhcp.DECLINE, xid=11, eth_dst=net_a1.gateway_mac, requested_ip=ncoa)
    for frame in (discover, release, decline):
        outcome = rig.inject_frame("ar-a1", impostor_port, frame)
        assert outcome.punts == 1 and outcome.frames == []
        assert leases(rig) == [(ncoa, MN_MAC, "bound")]
    assert pool(rig)["in_use_elsewhere"] == []
    assert rig.core.counters["dhcp_proactive_unknown_source"] == 3
    # From mn1 itself, where it was learned, the same discover is answered.
    [(_, _, offer)] = rig.inject_frame("ar-a1", 3, discover).frames
    assert dhcp_reply(offer)[:2] == (dhcp.OFFER, ncoa)


def test_an_address_leased_to_another_mac_is_refused(rig, topology):
    settle_dad(rig)
    ncoa = configure(rig, preauth(rig))["address"]   # leased to mn1, still in net-a1
    rig.add_host("intruder", "02:00:00:00:66:66", ncoa, "ap-b1-1")
    outcome = rig.ping("intruder", CN_IP)
    assert outcome.to("cn1") == []
    assert rig.core.counters["learn_rejected_leased"] == 1
    assert ncoa not in rig.core.hosts
    again = rig.ping("intruder", CN_IP, seq=2)
    assert again.punts == 0 and again.to("cn1") == [], "dropped in the switch"
    # The lease holder itself is welcome there.
    rig.move("mn1", "ap-b1-2", ip=ncoa)
    assert len(rig.ping("mn1", CN_IP).to("cn1")) == 1
    assert rig.core.hosts[ncoa].mac == MN_MAC


# -- the punts themselves -------------------------------------------------------------------

def test_signalling_punts_per_served_network_and_dhcp_punts_at_every_poa(rig, topology):
    served = {str(n.gateway) for n in topology.networks.values() if n.pool is not None}
    assert served == {"10.1.1.1", "10.1.2.1", "10.2.1.1"}   # not net-cn's 10.0.0.1
    for name, switch in rig.net.switches.items():
        signalling_entries = [e for e in switch.entries
                              if feature_of(e.cookie) == Feature.SIGNALLING]
        # The MPA signalling port and PANA's, at every served gateway.
        assert sorted((e.match["ipv4_dst"], e.match["udp_dst"]) for e in signalling_entries) \
            == sorted((g, p) for g in served for p in (PORT, PANA_PORT)), name
        for e in signalling_entries:
            assert e.table_id == Table.ROUTE and e.priority > PRIO_GATEWAY_PUNT
            assert e.match["ip_proto"] == 17
        dhcp_entries = [e for e in switch.entries if feature_of(e.cookie) == Feature.DHCP]
        assert {e.match["in_port"] for e in dhcp_entries} == {
            p.port for p in rig.graph.poas_on(name)}, name
        for e in dhcp_entries:
            assert e.table_id == Table.INGRESS and (e.match["ip_proto"],
                                                    e.match["udp_dst"]) == (17, 67)


def test_a_reconnecting_switch_keeps_the_punts_without_churn(rig):
    settle_dad(rig)
    preauth(rig)                                        # signalling punts used at ar-a1
    discover = dhcp.build_request(dhcp.DISCOVER, chaddr=LAPTOP_MAC, xid=1)
    rig.inject_frame("ap-b1", 2, discover)              # a DHCP punt used at ap-b1
    for name, switch in rig.net.switches.items():
        plan = reconcile.plan(switch.flow_stats(), rig.core.desired_flows(switch.dpid))
        assert plan.messages == [], name
    for name in ("ar-a1", "ap-b1"):
        switch = rig.net.switches[name]
        punts = {(e.table_id, e.priority, e.cookie, str(e.match)): e.packet_count
                 for e in switch.entries
                 if feature_of(e.cookie) in (Feature.SIGNALLING, Feature.DHCP)}
        assert any(punts.values()), name
        before = {k: rig.core.counters[k] for k in ("reconcile_added", "reconcile_deleted")}
        rig.core.switch_disconnected(switch.dpid, rig.now)
        rig.connect(name)
        after = {(e.table_id, e.priority, e.cookie, str(e.match)): e.packet_count
                 for e in switch.entries
                 if feature_of(e.cookie) in (Feature.SIGNALLING, Feature.DHCP)}
        assert after == punts, "kept, counters and all"
        assert {k: rig.core.counters[k] for k in before} == before


def test_a_request_for_an_address_the_client_was_not_offered_is_naked(rig, topology):
    settle_dad(rig)
    rig.add_host("laptop", LAPTOP_MAC, "0.0.0.0", "ap-b1-2")
    request = dhcp.build_request(dhcp.REQUEST, chaddr=LAPTOP_MAC, xid=0x77,
                                 requested_ip="10.2.1.150", server_id=B1_GATEWAY)
    outcome = rig.inject_frame("ap-b1", 3, request)
    [(switch, port, nak)] = outcome.frames
    assert (switch, port) == ("ap-b1", 3)
    kind, address, options = dhcp_reply(nak)
    assert (kind, address) == (dhcp.NAK, "0.0.0.0")
    assert (nak["eth_dst"], nak["ipv4_dst"]) == ("ff:ff:ff:ff:ff:ff", "255.255.255.255")
    # RFC 2131 Table 3: a NAK carries no configuration.
    assert not {dhcp.OPT_SUBNET_MASK, dhcp.OPT_ROUTER, dhcp.OPT_LEASE_TIME} & set(options)
    assert leases(rig) == []


def test_a_learned_host_cannot_speak_dhcp_for_an_mn_by_naming_its_mac(rig, topology):
    """Learned with its own MAC, mallory puts mn1's MAC in chaddr: the MN's
    lease is not hers to renew or give back."""
    settle_dad(rig)
    ncoa = configure(rig, preauth(rig))["address"]
    mallory = rig.add_host("mallory", "02:00:00:00:66:01", "10.2.1.150", "ap-b1-1")
    assert len(rig.ping("mallory", CN_IP).to("cn1")) == 1     # learned at ap-b1-1
    net_b1 = topology.networks["net-b1"]
    for kind, fields in ((dhcp.REQUEST, {"ciaddr": ncoa}), (dhcp.RELEASE, {"ciaddr": ncoa})):
        frame = dhcp.build_request(kind, chaddr=MN_MAC, xid=5, eth_src=mallory.mac,
                                   eth_dst=net_b1.gateway_mac, ip_src="10.2.1.150",
                                   ip_dst=B1_GATEWAY, **fields)
        outcome = rig.inject_frame("ap-b1", rig.graph.poa("ap-b1-1").port, frame)
        assert all(dhcp_reply(f[2])[0] != dhcp.ACK for f in outcome.frames)
    assert leases(rig) == [(ncoa, MN_MAC, "bound")]

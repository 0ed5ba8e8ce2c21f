"""The real thing: OVS (userspace datapath), Mininet and the controller process."""

import subprocess

import pytest

from support.lab_rig import OFP_PORT, flows_match_controller, ofctl_flows, wait_for
from mpa_lab.net.probes import ping, tcp
from mpa_lab.net.reachability import tour
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration


def test_every_switch_connects_and_holds_exactly_the_expected_flows(lab, controller):
    switches = controller.get("/mpa/v1/switches")
    assert sorted(s["id"] for s in switches) == sorted(lab.topology.switches)
    assert all(s["connected"] and s["reconciled"] for s in switches)
    assert all(s["openflow_errors"] == 0 for s in switches), switches
    wait_for(lambda: flows_match_controller(controller), 10, "flow counts to match")
    assert not [line for line in ofctl_flows("core") if "cookie=0x4d" not in line]


def test_cn_and_mn_reach_each_other_from_every_poa(lab):
    visits = tour(lab, "mn1")
    poas = [p.id for n in lab.graph.access_networks() for p in n.poas]
    assert sorted(v.poa for v in visits) == sorted(poas)
    for visit in visits:
        assert visit.recovery_ms is not None, f"cn1 never reached mn1 at {visit.poa}"
        for pair in visit.pairs:
            assert pair.ping.ok, f"ping {pair.source}->{pair.destination} at {visit.poa}: {pair.ping}"
            assert pair.tcp.ok, f"tcp {pair.source}->{pair.destination} at {visit.poa}: {pair.tcp}"


def test_moved_mn_is_reachable_at_its_new_poa_and_forgotten_at_the_old(lab, controller):
    lab.move("mn1", "ap-a1-1")
    assert ping(lab.host("cn1"), "10.1.1.199").ok
    forgotten = controller.get("/mpa/v1/counters").get("host_forgotten_link_down", 0)
    address = lab.move("mn1", "ap-b1-2")
    assert address == "10.2.1.199"
    cn = lab.host("cn1")
    assert ping(cn, address).ok
    assert tcp(lab.host("mn1"), cn, "10.0.0.10").ok
    counters = controller.get("/mpa/v1/counters")
    assert counters["host_forgotten_link_down"] == forgotten + 1, "the old PoA's port went"


def test_reconnecting_switch_ends_with_exactly_the_right_flows(lab, controller):
    lab.move("mn1", "ap-a1-1")
    assert ping(lab.host("cn1"), lab.address("mn1")).ok
    switch = "ar-a1"
    before = ofctl_flows(switch)
    ours = [line for line in before if "arp_tpa=10.1.1.1" in line]
    assert ours, "the ARP responder for net-a1's gateway is installed"

    # Someone else's flow appears, one of ours vanishes, the switch reconnects.
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "add-flow", switch,
                    "cookie=0x1234,table=2,priority=999,ip,nw_dst=192.0.2.1,actions=drop"],
                   check=True)
    subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--strict", "del-flows", switch,
                    "table=1,priority=200,arp,in_port=3,arp_op=1,arp_tpa=10.1.1.1"], check=True)
    tampered = ofctl_flows(switch)
    assert tampered != before
    # A new controller target drops the connection and makes a new one, and
    # OVS keeps the flows (removing the controller altogether would flush them).
    subprocess.run(["ovs-vsctl", "set-controller", switch, f"tcp:127.0.0.2:{OFP_PORT}"],
                   check=True)

    after = wait_for(lambda: (f := ofctl_flows(switch)) == before and f, 20,
                     "the switch's flows to be restored")
    assert not [line for line in after if "192.0.2.1" in line]
    row = wait_for(lambda: next(s for s in controller.get("/mpa/v1/switches")
                                if s["id"] == switch and s["reconciled"]), 10, "reconciled")
    # Exactly the foreign flow went and the missing one came back; every
    # other flow, as OVS reports it, was recognised and left alone.
    assert row["last_reconcile"] == {"deleted": 1, "added": 1, "kept": len(before) - 1}
    assert ping(lab.host("cn1"), lab.address("mn1")).ok


def test_controller_restart_keeps_the_network_working(lab, controller):
    lab.move("mn1", "ap-a2-1")
    controller.stop()
    controller.start()
    controller.wait_switches()
    wait_for(lambda: flows_match_controller(controller), 15, "flows to match the new controller")
    cn, mn = lab.host("cn1"), lab.host("mn1")
    assert ping(cn, lab.address("mn1")).ok
    assert tcp(cn, mn, lab.address("mn1")).ok
    wait_for(lambda: flows_match_controller(controller), 15, "learned hosts' flows to settle")


def test_rest_errors_on_the_real_server(controller):
    status, headers, problem = controller.request("GET", "/mpa/v1/networks/net-zz")
    assert (status, headers.get_content_type()) == (404, "application/problem+json")
    assert problem["type"] == "urn:mpa-sdn:problem:not-found"
    assert problem["detail"] == "unknown network 'net-zz'"
    assert controller.request("DELETE", "/mpa/v1/networks", role=None)[0] == 405
    # Without a token, reads are refused too; the document is not.
    status, headers, _ = controller.request("GET", "/mpa/v1/networks", role=None)
    assert status == 401 and headers["WWW-Authenticate"].startswith("Bearer")
    status, _, document = controller.request("GET", "/mpa/v1/openapi.json", role=None)
    assert status == 200 and document["openapi"].startswith("3.1")


def test_a_steady_udp_stream_from_cn_to_mn_arrives_whole(lab, tmp_path):
    """The measurement tool of the handover tests, on an MN that stays put:
    the baseline is no loss, no duplicate, no reordering."""
    lab.move("mn1", "ap-a1-1")
    # Both known to the controller first: the stream measures forwarding,
    # not the resolution of a host nobody has heard from yet.
    assert ping(lab.host("cn1"), lab.address("mn1")).ok
    # A fixed number of slots: the sender ends by itself after 2 s at 1000/s.
    with UdpStream(lab, "cn1", "mn1", lab.address("mn1"), 5001, 1000,
                   tmp_path / "arrivals.log", duration_s=2) as stream:
        stream.sender.wait(timeout=30)
    sent = stream.sent
    assert not sent["stopped_early"] and sent["errors"] == {}, sent
    # A slot the sender woke too late for is skipped, not sent: every slot is one or the other.
    assert sent["sent"] + sent["skipped"] == 2000 and sent["attempted"] == sent["sent"], sent
    report = stream.analysis([])
    assert report["received"] == sent["sent"] == stream.received["received"]
    assert report["lost"] == report["duplicated"] == report["reordered"] == 0


def test_a_poa_holding_a_second_interface_is_taken(lab):
    """A PoA has one port: a second interface there keeps others out."""
    here = lab.location["mn1"]
    poa = next(p for n in lab.graph.access_networks() for p in n.poas
               if p != here and lab._holder(p) is None)
    lab.add_interface("mn1", poa.id, "02:00:00:00:01:02")
    try:
        assert lab._holder(poa) == "mn1's second interface"
        with pytest.raises(ValueError, match=f"PoA {poa.id} already holds mn1's second"):
            lab.move("mn1", poa.id)
        assert lab.location["mn1"] == here
    finally:
        lab.remove_interface("mn1")
    assert lab._holder(poa) is None


def test_a_host_printing_bytes_that_are_not_utf8_does_not_stop_the_lab(lab, caplog):
    """Mininet's pty reader raised UnicodeDecodeError out of the command
    running (one ``mpa-lab run`` in four stopped with "'utf-8' codec can't
    decode byte 0x85", naming nothing); the lab's hosts show U+FFFD, count
    the byte and log who printed it."""
    host = lab.host("mn1")
    before = host.undecodable_bytes
    with caplog.at_level("WARNING", logger="mpa_lab.net.host_output"):
        out = host.cmd("printf 'rtt \\205 ms\\n'")
    assert out.strip() == "rtt \ufffd ms"
    assert host.undecodable_bytes == before + 1
    assert any(m.startswith("mn1, running \"printf 'rtt \\\\205 ms\\\\n'\" printed 1 byte")
               for m in caplog.messages), caplog.messages
    assert host.cmd("echo after").strip() == "after"
    assert ping(host, "10.0.0.10").ok, "the lab goes on"


def test_the_lab_s_controller_nodes_read_their_shell_as_hosts_do(lab):
    """Mininet probed each remote controller with telnet on the controller
    node's pty, which printed the controller's binary OpenFlow HELLO now and
    then: mpa-lab run stopped at a session's start."""
    from mpa_lab.net.host_output import LabRemoteController

    assert lab.net.controllers and all(isinstance(c, LabRemoteController)
                                       for c in lab.net.controllers)
    node = lab.net.controllers[0]
    assert node.cmd("printf '\\004\\000\\000\\010\\205\\221\\n'").strip() == \
        "\x04\x00\x00\x08\ufffd\ufffd"

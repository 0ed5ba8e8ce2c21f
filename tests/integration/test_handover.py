"""Proactive handover (RFC 6252 §6.3 steps 3-6) on the real thing: OVS, Mininet,
the controller process and ``mpa-mn handover`` in the MN's host.

mn1 holds its home address; cn1 talks to that address only, and mn1's
receivers are bound to it.  mn1 cycles through three networks in two
domains, ap-a1-1 (net-a1) -> ap-a2-1 (net-a2) -> ap-b1-1 (net-b1) -> ap-a1-1,
while a stream runs, and nothing may be lost or duplicated; nothing reordered
but what the controller delivered late (see ``assert_whole``).

The lab is the default topology with a short tunnel lifetime and switch
deadline, so that the last test can wait for every tunnel to expire.
"""

import dataclasses
import json
import shutil
import signal
import subprocess

import pytest

from support.lab_rig import (REST_PORT, flows_match_controller, management_fixtures, ofctl_flows,
                             variant_fixtures, wait_for)
from mpa_lab.experiment.handover_driver import HandoverDriver
from mpa_lab.net.lab import CONTROLLER_QUEUE_SIZE
from mpa_lab.net.probes import ping
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
CYCLE = ("ap-a1-1", "ap-a2-1", "ap-b1-1")   # net-a1 -> net-a2 -> net-b1 -> net-a1
TUNNEL_LIFETIME_S = 10
SWITCH_DEADLINE_S = 2.0
RATE_PPS = 1000
IPERF3_LIMIT_S = 600     # far beyond five handovers: the test stops the client
IPERF3_CLIENT_STOPPED = "interrupt - the client has terminated"
IPERF3_SERVER_STOPPED = "the client has terminated"


# -- the lab --------------------------------------------------------------------

topology_file, topology = variant_fixtures("two_domains_handover.yaml",
                                           tunnel_lifetime_s=TUNNEL_LIFETIME_S,
                                           switch_deadline_s=SWITCH_DEADLINE_S)
controller, lab = management_fixtures("controller-handover", "topology_file")


@pytest.fixture(scope="module")
def home(topology) -> str:
    return str(topology.mobile_nodes[MN].home_address)


@pytest.fixture(scope="module")
def driver(lab, controller, tmp_path_factory):
    return HandoverDriver(lab, REST_PORT, str(tmp_path_factory.mktemp("mn-state")),
                          mobile_nodes=controller.mobile_nodes)


@pytest.fixture(scope="module")
def bound(lab, driver, home):
    """Both hosts known to the controller, mn1's home address bound to its
    address in net-a1, and cn1 reaching it there."""
    result = driver.bind_home(MN, CN)
    assert result.ok, result
    return driver


def next_poas(lab, count: int) -> list[str]:
    here = CYCLE.index(lab.location[MN].id)
    return [CYCLE[(here + k) % len(CYCLE)] for k in range(1, count + 1)]


def handovers(driver, targets) -> list:
    """Handovers of mn1 to each PoA in turn, up to the first that fails
    (after which the MN is not where the next one starts from)."""
    results = []
    for poa in targets:
        results.append(driver.handover(MN, poa))
        if not results[-1].ok:
            break
    return results


def record(log_dir, name: str, results, controller=None) -> None:
    """Every handover's result (and the controller's counters then), for
    whoever reads the logs of a run."""
    with open(log_dir / f"handovers-{name}.json", "w", encoding="utf-8") as f:
        json.dump([dataclasses.asdict(r) for r in results], f, indent=1)
    if controller is not None:
        with open(log_dir / f"counters-{name}.json", "w", encoding="utf-8") as f:
            json.dump(controller.get("/mpa/v1/counters"), f, indent=1)


def assert_all_done(results) -> None:
    failed = [(r.index, r.kind, r.to_poa, r.errors, r.stderr[-600:]) for r in results if not r.ok]
    assert not failed, failed


# -- traffic --------------------------------------------------------------------

def late_deliveries(controller) -> int:
    """Punted packets the controller delivered after it removed their punt."""
    return controller.get("/mpa/v1/counters").get("buffer_late_delivered", 0)


def assert_whole(report: dict, late: int) -> None:
    """Nothing lost or duplicated.  Reordering: only packets the controller
    delivered late (``late``, during the test), each of which was on its
    way to the controller when the punt went: OVS cannot hold a packet, so
    the first packet of the direct path can overtake them (see "Draining"
    in docs/architecture.md)."""
    keys = ("expected", "received", "lost", "reordered", "duplicated")
    spoiled = [{k: w[k] for k in ("label", *keys)} for w in report["windows"]
               if w["lost"] or w["reordered"] or w["duplicated"]]
    summary = {k: report[k] for k in keys}
    assert (report["lost"], report["duplicated"]) == (0, 0), \
        (summary, report["longest_loss_run"], spoiled)
    assert report["reordered"] <= late, (summary, late, spoiled)
    assert report["received"] > 0


def iperf3_across_handovers(driver, lab, log_dir, home: str, port: int, *client_args):
    """An iperf3 server on mn1 bound to its home address, a client on cn1,
    and five handovers while it runs; then the client is stopped (SIGINT:
    it reports what it did, as does the server).  Returns (results, the
    client's and the server's JSON reports)."""
    assert shutil.which("iperf3"), "iperf3 is missing: run `make setup`"
    mn, cn = lab.host(MN), lab.host(CN)
    server = mn.popen(["iperf3", "-s", "-1", "-B", home, "-p", str(port), "--json"])
    client = None
    try:
        wait_for(lambda: str(port) in mn.cmd(f"ss -Hltn 'sport = :{port}'"), 10,
                 f"iperf3 to listen on {port}")
        client = cn.popen(["iperf3", "-c", home, "-p", str(port), "-t", str(IPERF3_LIMIT_S),
                           *client_args, "--json"])
        results = handovers(driver, next_poas(lab, 5))
        record(log_dir, f"iperf3-{port}", results)
        assert_all_done(results)
        assert client.poll() is None, "iperf3 ended before the handovers did"
        client.send_signal(signal.SIGINT)
        sent, _ = client.communicate(timeout=30)
        received, _ = server.communicate(timeout=15)
    finally:
        for process in (server, client):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()
    sent, received = json.loads(sent), json.loads(received)
    # Stopped, not failed: these are the only errors the two may report.
    assert sent.get("error") in (None, IPERF3_CLIENT_STOPPED), sent.get("error")
    assert received.get("error") in (None, IPERF3_SERVER_STOPPED), received.get("error")
    return results, sent, received


# -- the lab's side ---------------------------------------------------------------

def test_the_mn_holds_its_home_address_and_leaves_arp_for_ncoas_to_the_ar(lab, home):
    mn = lab.host(MN)
    intf = mn.defaultIntf().name
    assert f"{home}/32" in mn.cmd(f"ip -4 -o addr show dev {intf}")
    for conf in ("all", intf):
        values = mn.cmd(f"sysctl -n net.ipv4.conf.{conf}.arp_ignore "
                        f"net.ipv4.conf.{conf}.arp_announce net.ipv4.conf.{conf}.rp_filter")
        assert values.split() == ["1", "2", "0"], conf


def test_every_bridge_of_the_lab_queues_512_packet_ins(lab):
    for switch in sorted(lab.topology.switches):
        uuids = subprocess.run(["ovs-vsctl", "get", "Bridge", switch, "controller"],
                               capture_output=True, text=True, check=True).stdout
        for uuid in uuids.strip("[]\n").split(", "):
            size = subprocess.run(["ovs-vsctl", "get", "Controller", uuid,
                                   "controller_queue_size"],
                                  capture_output=True, text=True, check=True).stdout
            assert int(size) == CONTROLLER_QUEUE_SIZE, switch


def test_a_link_only_move_keeps_the_interface_and_records_the_switch(lab, controller):
    mn = lab.host(MN)
    address = lab.address(MN)
    try:
        assert lab.move(MN, "ap-a1-2", readdress=False) is None
        switch = lab.last_link_switch
        assert (switch.host, switch.from_poa, switch.to_poa) == (MN, "ap-a1-1", "ap-a1-2")
        assert switch.down_ns < switch.up_ns and switch.down_wall_ns <= switch.up_wall_ns
        assert lab.location[MN].id == "ap-a1-2"
        ofport = subprocess.run(["ovs-vsctl", "get", "Interface", "ar-a1-eth4", "ofport"],
                                capture_output=True, text=True, check=True).stdout
        assert int(ofport) == 4
        assert mn.cmd(f"cat /sys/class/net/{mn.defaultIntf()}/carrier").strip() == "1"
        assert address in mn.cmd(f"ip -4 -o addr show dev {mn.defaultIntf()}")
        # Nothing announced the MN: it is found once it speaks, as the client does.
        lab.announce(MN)
        assert ping(lab.host(CN), address).ok
    finally:
        lab.move(MN, "ap-a1-1")


# -- handovers ---------------------------------------------------------------------

def test_twenty_handovers_lose_nothing_duplicate_nothing(
        bound, lab, controller, home, tmp_path, log_dir):
    targets = next_poas(lab, 20)
    late = late_deliveries(controller)
    before = controller.metrics()
    with UdpStream(lab, CN, MN, home, 5001, RATE_PPS, tmp_path / "arrivals.log") as stream:
        results = handovers(bound, targets)
    record(log_dir, "twenty", results, controller)
    late = late_deliveries(controller) - late
    # Prometheus sees them: every handover ended, its steps observed.
    after = controller.metrics()
    for sample in ('mpa_handovers_total{result="completed"}',
                   'mpa_handover_step_seconds_count{mode="buffer",result="completed",step="signal_to_flows"}',
                   'mpa_handover_step_seconds_count{mode="buffer",result="completed",step="total"}'):
        assert after[sample] - before.get(sample, 0) == 20, sample
    for sample in ('mpa_openflow_messages_sent_total{message="OFPFlowMod"}', "mpa_packet_ins_total",
                   'mpa_buffer_packets_total{event="buffered"}'):
        assert after[sample] > before[sample], sample
    assert after['mpa_switches{state="connected"}'] == len(lab.graph.switch_ids())
    assert_all_done(results)
    assert [r.to_poa for r in results] == targets
    assert {r.to_network for r in results} == {"net-a1", "net-a2", "net-b1"}
    assert stream.sent["errors"] == {}, stream.sent
    report = stream.analysis([r.window() for r in results])
    assert len(report["windows"]) == 20
    assert_whole(report, late)


def test_an_iperf3_udp_stream_loses_nothing_across_five_handovers(bound, lab, controller, home,
                                                                   log_dir):
    late = late_deliveries(controller)
    _, sent, received = iperf3_across_handovers(
        bound, lab, log_dir, home, 5201, "-u", "-b", "1M", "-l", "1000")
    late = late_deliveries(controller) - late
    total = received["end"]["sum_received"]
    assert total["packets"] > 0
    assert total["lost_packets"] == 0, total
    assert received["end"]["streams"][0]["udp"]["out_of_order"] <= late


def test_an_iperf3_tcp_session_survives_five_handovers(bound, lab, home, log_dir):
    _, sent, received = iperf3_across_handovers(
        bound, lab, log_dir, home, 5202, "-b", "10M")
    # The session lasted through all five (it was still running when stopped).
    assert received["end"]["sum_received"]["bytes"] > 0
    assert sent["end"]["sum_sent"]["bytes"] >= received["end"]["sum_received"]["bytes"]


def test_failed_handovers_lose_nothing(bound, lab, controller, home, tmp_path, log_dir):
    here = lab.location[MN].id
    target = next_poas(lab, 1)[0]
    late = late_deliveries(controller)
    with UdpStream(lab, CN, MN, home, 5003, RATE_PPS, tmp_path / "arrivals.log") as stream:
        no_arrival = bound.failed_handover(MN, target, "no-arrival")
        returned = bound.failed_handover(MN, target, "return")
        afterwards = bound.handover(MN, target)
    results = [no_arrival, returned, afterwards]
    record(log_dir, "failed", results, controller)
    assert_all_done(results)
    assert no_arrival.link == [] and no_arrival.switched_back_ms is not None
    assert [(s.from_poa, s.to_poa) for s in returned.link] == [(here, target), (target, here)]
    assert returned.switched_back_ms is not None
    assert afterwards.to_poa == lab.location[MN].id == target, "the MN can still go there"
    assert stream.sent["errors"] == {}, stream.sent
    assert_whole(stream.analysis([r.window() for r in results]),
                 late_deliveries(controller) - late)


def test_afterwards_every_switch_holds_what_the_controller_expects(
        bound, lab, controller, home):
    def settled():
        states = controller.get("/mpa/v1/mobile-nodes")
        return states if all(not s["tunnels"] and s["handover"] is None for s in states) \
            else None

    states = wait_for(settled, TUNNEL_LIFETIME_S + 10, "every tunnel to expire")
    mine = {s["identity"]: s for s in states}[lab.topology.mobile_nodes[MN].identity]
    assert mine["home_address"] == home and mine["binding"] is not None, mine
    assert mine["binding"]["care_of"] == lab.address(MN), mine
    assert mine["binding"]["reach"] == {"poa": lab.location[MN].id, "tunnel": False}, mine
    wait_for(lambda: flows_match_controller(controller), 15, "flow counts to match")
    for switch in sorted(lab.topology.switches):
        assert all("cookie=0x4d" in line for line in ofctl_flows(switch)), switch
    assert ping(lab.host(CN), home).ok

"""The inter-domain handover (RFC 6252 §6.3 across administrative domains)
on the real thing: two ``mpa-controller --domain`` processes, OVS (userspace
datapath), Mininet and ``mpa-mn handover`` in mn1's host, in-band, on
topologies/inter_domain.yaml (docs/inter-domain.md, "The handover").

mn1 (identity mn1@domain-a, home address 10.255.0.1) starts at ap-a1-1 in
net-a1, its home address bound there; cn1, in domain-a's net-cn, sends it a
UDP stream at its home address throughout each handover, and nothing may be
lost or duplicated, over the whole stream (see ``assert_whole``).
The tests run in file order, each starting where the one before left mn1:
to net-b1 (domain-b) and back, a handover to net-b1 cancelled before the
move, then one towards a domain whose controller is dead (the last test
kills domain-b's controller).
"""

import ipaddress
import json
import os
import signal
import time

import pytest

from support.domain_rig import (PORTS, domain_lab_fixtures, domain_mpa_mn, nft_tables,
                                udp_no_ports)
from support.lab_rig import domain_topology_fixture, ofctl_flows, wait_for
from mpa_lab.experiment.handover_driver import HandoverDriver
from mpa_lab.net.probes import ping
from mpa_lab.traffic.streams import UdpStream
from mpa_sdn.aa import LEAVE_GRACE_S

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
MN_IDENTITY = "mn1@domain-a"
HOME_POA, ABROAD_POA = "ap-a1-1", "ap-b1-1"
RATE_PPS = 250
# A handover that waits for a link-layer switch that never comes: how long
# mpa-mn watches its carrier before it cancels.
LINK_TIMEOUT_S = 2
# mpa-mn's wait for one in-band answer when domain-b's controller is dead;
# how long past it, or past LINK_TIMEOUT_S, a command may take (its start,
# its other steps) before it counts as hanging.
FAILING_TIMEOUT_S = 2
HANG_MARGIN_S = 20
REWRITE_TABLE = "mpa_binding"


# -- the lab ----------------------------------------------------------------------

topology_file, topology, controllers, lab = domain_lab_fixtures()
topology_file = domain_topology_fixture()   # the domains' AAA servers apart


@pytest.fixture(scope="module")
def home(topology) -> str:
    return str(topology.mobile_nodes[MN].home_address)


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """mpa-mn's state (its SAs), one file for every run of it."""
    return tmp_path_factory.mktemp("mn-state")


@pytest.fixture(scope="module")
def drivers(lab, controllers, state_dir):
    """Per domain, a driver whose handovers into that domain's networks wait
    for that domain's controller (the target's AR keeps the handover)."""
    return {domain: HandoverDriver(lab, PORTS["domain-a"][1], str(state_dir),
                                   mobile_nodes=controller.mobile_nodes)
            for domain, controller in controllers.items()}


@pytest.fixture(scope="module")
def bound(lab, controllers, drivers):
    """mn1's home address bound at domain-a to its address in net-a1, cn1
    reaching it there, and mn1's MPA-SA with net-a1 authorized."""
    result = drivers["domain-a"].bind_home(MN, CN)
    assert result.ok, result
    # The SA was made with mn1 already attached to net-a1, so it is authorized
    # only once domain-a sees mn1 there again (RFC 6252 C.2): its gratuitous
    # ARP, as when it attaches.
    lab.announce(MN)
    wait_for(lambda: sa_states(controllers["domain-a"], "net-a1") == ["authorized"], 10,
             "mn1's MPA-SA with net-a1 to be authorized")
    return drivers


# -- what the tests look at ---------------------------------------------------------

def view(controller) -> dict:
    """The controller's whole view of mn1 (GET /mpa/v1/mobile-nodes/ID)."""
    return controller.get(f"/mpa/v1/mobile-nodes/{MN_IDENTITY}")


def summary(controller) -> dict | None:
    """mn1 in the controller's list of MNs (None: it has no state for it)."""
    return next((m for m in controller.mobile_nodes() if m["identity"] == MN_IDENTITY), None)


def last_handover(controller) -> dict | None:
    mine = [h for h in controller.get("/mpa/v1/handovers") if h["identity"] == MN_IDENTITY]
    return mine[-1] if mine else None


def sa_states(controller, network: str) -> list[str]:
    return [sa["state"] for sa in controller.get("/mpa/v1/sas")
            if sa["identity"] == MN_IDENTITY and sa["network"] == network]


def streamed(lab, home: str, port: int, log):
    """cn1 -> mn1's home address at RATE_PPS (the caller waits for its first
    arrivals)."""
    return UdpStream(lab, CN, MN, home, port, RATE_PPS, log)


def first_arrivals(stream) -> None:
    wait_for(lambda: os.path.getsize(stream.log) > 0, 10, "the stream's first arrivals")


def more_arrivals(stream, count: int = RATE_PPS // 2) -> None:
    """``count`` more packets reach mn1 where it is now."""
    already = len(stream.arrivals())
    wait_for(lambda: len(stream.arrivals()) >= already + count, 10,
             f"{count} more arrivals after the handover")


def assert_whole(stream, refused: int = 0) -> dict:
    """Everything cn1 sent reached mn1 once, over the whole stream: none
    lost, none duplicated.  ``refused`` (mn1's UDP NoPorts over the stream)
    is said when it fails: a packet that reached mn1 addressed to a care-of
    before mn1 restored its home address for it finds no listener there
    (the binding moves only once mn1 rewrites: docs/inter-domain.md, "Make
    before break, with the MN as a switch")."""
    assert stream.sent["errors"] == {}, stream.sent
    keys = ("expected", "received", "lost", "reordered", "duplicated", "longest_loss_run")
    report = stream.analysis([])
    summary = {k: report[k] for k in keys}
    assert (report["lost"], report["duplicated"]) == (0, 0), (summary, {"refused": refused})
    assert report["received"] == stream.sent["sent"] > 0, (summary, {"refused": refused})
    return report


def record(log_dir, name: str, result) -> None:
    """A handover's result, for whoever reads the logs of a run."""
    with open(log_dir / f"inter-domain-{name}.json", "w", encoding="utf-8") as f:
        json.dump({"errors": result.errors, "returncode": result.returncode,
                   "ready": result.ready, "client": result.client, "stderr": result.stderr},
                  f, indent=1)


def streamed_handover(driver, poa: str, home: str, port: int, tmp_path, log_dir):
    """mn1's handover to ``poa`` by ``driver`` while cn1 streams to its home
    address on ``port``: its result, once it is done, mn1 at ``poa`` and the
    stream whole (see assert_whole)."""
    lab = driver.lab
    refusals = udp_no_ports(lab.host(MN))
    with streamed(lab, home, port, tmp_path / "arrivals.log") as stream:
        first_arrivals(stream)
        result = driver.handover(MN, poa)
        more_arrivals(stream)
    record(log_dir, f"to-{poa}", result)
    assert result.ok, (result.errors, result.stderr[-800:])
    assert lab.location[MN].id == poa
    assert_whole(stream, udp_no_ports(lab.host(MN)) - refusals)
    return result


def mn_flows(switch: str, mac: str) -> list[str]:
    return [flow for flow in ofctl_flows(switch) if mac in flow]


# -- the handovers ------------------------------------------------------------------

def test_to_domain_b_loses_nothing_and_leaves_the_binding_at_home(
        bound, lab, controllers, home, tmp_path, log_dir):
    domain_a, domain_b = controllers["domain-a"], controllers["domain-b"]
    mac = lab.topology.mobile_nodes[MN].mac
    assert lab.location[MN].id == HOME_POA
    assert mn_flows("ar-a1", mac), "domain-a forwards to mn1 at ap-a1-1"
    result = streamed_handover(bound["domain-b"], ABROAD_POA, home, 5301, tmp_path, log_dir)
    ncoa = result.address
    assert ipaddress.ip_address(ncoa) in lab.topology.networks["net-b1"].prefix
    # The tunnel was the MN-terminated VXLAN one, and the binding went home.
    assert result.ready["tunnel"]["encapsulation"] == "vxlan", result.ready
    assert result.ready["binding"]["care_of"] == ncoa, result.ready
    binding = summary(domain_a)["binding"]
    assert binding["care_of"] == ncoa, binding
    assert (summary(domain_b) or {}).get("binding") is None, summary(domain_b)
    assert REWRITE_TABLE in nft_tables(lab.host(MN)), "the MN rewrites for cn1 itself"
    assert ping(lab.host(CN), home).ok, "the MN's rewriting, both ways"
    assert last_handover(domain_b)["phase"] == "completed", last_handover(domain_b)
    assert last_handover(domain_b)["to_poa"] == ABROAD_POA
    # Domain-a forgot mn1 at ap-a1-1 and holds its SA with net-a1 (C.2).
    mine = view(domain_a)
    assert [a for a in mine["attached"] if a["poa"] == HOME_POA] == [], mine["attached"]
    wait_for(lambda: not mn_flows("ar-a1", mac), 10, "ar-a1's flows to mn1 to go")
    # Held once mn1 has not come back to net-a1 within the AA's grace for a
    # move between the network's own PoAs.
    wait_for(lambda: sa_states(domain_a, "net-a1") == ["held"], LEAVE_GRACE_S + 5,
             "domain-a to hold mn1's MPA-SA with net-a1")


def test_back_home_loses_nothing(bound, lab, controllers, home, tmp_path, log_dir):
    domain_a, domain_b = controllers["domain-a"], controllers["domain-b"]
    assert lab.location[MN].id == ABROAD_POA, "the test before left mn1 in net-b1"
    result = streamed_handover(bound["domain-a"], HOME_POA, home, 5302, tmp_path, log_dir)
    # Domain-a's ar-a1 tunnelled to mn1 in domain-b (VXLAN: no switch of
    # domain-a's saw mn1 there), and the binding stayed home, now at net-a1.
    assert result.ready["tunnel"]["encapsulation"] == "vxlan", result.ready
    assert result.ready["binding"]["bound_at"] == "net-a1", result.ready
    assert summary(domain_a)["binding"]["care_of"] == result.address
    assert (summary(domain_b) or {}).get("binding") is None, summary(domain_b)
    assert last_handover(domain_a)["phase"] == "completed", last_handover(domain_a)
    # Attached at home, domain-a's switches rewrite for mn1: its own table went.
    assert REWRITE_TABLE not in nft_tables(lab.host(MN)), "the MN's table left from abroad"
    # Both ways: cn1's echo to the home address and mn1's answer from it.
    assert ping(lab.host(CN), home).ok


def bicast_handover(driver, poa: str, home: str, port: int, tmp_path, log_dir) -> tuple:
    """mn1's bicast handover to ``poa`` under cn1's stream: its result and
    the stream's analysis (the handover's window, and what came after)."""
    lab = driver.lab
    with streamed(lab, home, port, tmp_path / "arrivals.log") as stream:
        first_arrivals(stream)
        result = driver.handover(MN, poa, mode="bicast")
        more_arrivals(stream)
        stopped = time.time_ns()
    record(log_dir, f"bicast-to-{poa}", result)
    assert result.ok, (result.errors, result.stderr[-800:])
    assert stream.sent["errors"] == {}, stream.sent
    after = {"label": "after", "start_ns": result.ended_wall_ns, "end_ns": stopped}
    report = stream.analysis([result.window(), after])
    during, tail = report["windows"]
    # Bicasting holds nothing back: what goes to the old PoA while the link
    # switches is lost (RFC 6252 §7.6.1), one run of it; nothing else is,
    # and the stream follows mn1.
    assert report["loss_runs"] <= 1 and tail["lost"] == 0 < tail["received"], report
    assert lab.location[MN].id == poa
    return result, report


def test_a_bicast_to_domain_b_is_steered_by_the_home_domain(
        bound, lab, controllers, home, tmp_path, log_dir):
    """The home domain (domain-a) sends the second leg to mn1 at ap-a1-1
    while domain-b's nAR drops the target leg; the leg ends as mn1 leaves."""
    domain_a, domain_b = controllers["domain-a"], controllers["domain-b"]
    before = domain_a.counters().get("bicast_steered", 0)
    here = lab.address(MN)
    result, report = bicast_handover(bound["domain-b"], ABROAD_POA, home, 5305, tmp_path,
                                     log_dir)
    assert result.ready["bicast"] == {"at": "net-a1", "to": here}, result.ready
    assert domain_a.counters()["bicast_steered"] == before + 1
    handover = last_handover(domain_b)
    assert (handover["mode"], handover["phase"], handover["switched_back"]) == (
        "bicast", "completed", False), handover
    assert handover["buffer"]["buffered"] == 0, handover
    wait_for(lambda: summary(domain_a)["binding"]["care_of"] == result.address, 10,
             "the binding at home on mn1's address in net-b1")
    assert ping(lab.host(CN), home).ok


def test_a_bicast_back_home_sends_the_leg_abroad_until_mn1_arrives(
        bound, lab, controllers, home, tmp_path, log_dir):
    """Home is the nAR now: it sends the second leg across the border to mn1's
    address in net-b1 (mn1 names it), and drops the target leg at ar-a1."""
    domain_a = controllers["domain-a"]
    assert lab.location[MN].id == ABROAD_POA, "the test before left mn1 in net-b1"
    abroad = lab.address(MN)
    result, report = bicast_handover(bound["domain-a"], HOME_POA, home, 5306, tmp_path,
                                     log_dir)
    assert result.ready["bicast"] == {"at": "net-a1", "to": abroad}, result.ready
    handover = last_handover(domain_a)
    assert (handover["mode"], handover["phase"]) == ("bicast", "completed"), handover
    # The leg ends bicast_period_s after the arrival; then one way again.
    wait_for(lambda: domain_a.counters().get("bicast_ended", 0) >= 2,
             lab.topology.mpa.bicast_period_s + 10, "the leg abroad to end")
    assert REWRITE_TABLE not in nft_tables(lab.host(MN)), "the MN's table left from abroad"
    assert ping(lab.host(CN), home).ok


def test_a_cancelled_handover_returns_the_buffer_into_the_tunnel(
        bound, lab, controllers, home, state_dir, tmp_path, log_dir):
    """mn1 pre-switches towards net-b1 and never moves: it cancels when its
    link does not switch, domain-b switches back, and what ar-b1 buffered
    meanwhile goes back into the VXLAN tunnel to mn1 at ap-a1-1."""
    domain_b = controllers["domain-b"]
    before = domain_b.counters().get("buffer_returned_to_tunnel", 0)
    refusals = udp_no_ports(lab.host(MN))
    with streamed(lab, home, 5303, tmp_path / "arrivals.log") as stream:
        first_arrivals(stream)
        rc, (ready, *_, document) = domain_mpa_mn(
            lab, MN, state_dir, "handover", "net-b1", "--home", home, "--wait-link",
            "--link-timeout", str(LINK_TIMEOUT_S), timeout_s=LINK_TIMEOUT_S + HANG_MARGIN_S)
        wait_for(lambda: summary(domain_b)["handover"] is None, 10,
                 "domain-b to end the handover")
        more_arrivals(stream)
    returned = domain_b.counters().get("buffer_returned_to_tunnel", 0) - before
    assert rc == 1, (rc, document)
    assert ready["event"] == "ready" and ready["tunnel"]["encapsulation"] == "vxlan", ready
    [result] = document["results"]
    assert result["network"] == "net-b1" and not result["ok"], document
    assert "cancelled" in result["error"]["message"], document
    assert lab.location[MN].id == HOME_POA
    # Over, switched back; everything it took in went back into the tunnel
    # (the view's "buffered" counts what it took in, "packets" what it holds;
    # the counter also counts punts that came after the buffer's end).
    handover = last_handover(domain_b)
    assert (handover["switched_back"], handover["reason"]) == (True, "cancelled"), handover
    buffer = handover["buffer"]
    assert buffer["flushed"] == buffer["buffered"] > 0 == buffer["dropped"], handover
    assert returned >= buffer["buffered"], (handover, returned)
    assert_whole(stream, udp_no_ports(lab.host(MN)) - refusals)


def test_a_handover_towards_a_dead_domain_fails_cleanly_and_loses_nothing(
        bound, lab, controllers, home, state_dir, tmp_path):
    domain_b = controllers["domain-b"]
    # mn1 bound at home again, to its address in net-a1.
    result = bound["domain-a"].bind_home(MN, CN)
    assert result.ok, result
    os.kill(domain_b.process.pid, signal.SIGKILL)
    assert domain_b.stop() == -signal.SIGKILL
    limit = FAILING_TIMEOUT_S + HANG_MARGIN_S
    with streamed(lab, home, 5304, tmp_path / "arrivals.log") as stream:
        first_arrivals(stream)
        rc, (*_, document) = domain_mpa_mn(
            lab, MN, state_dir, "--timeout", str(FAILING_TIMEOUT_S), "handover", "net-b1",
            "--home", home, "--wait-link", timeout_s=limit)
    # An error and exit 1: not killed for hanging (137), not a crash.
    assert rc == 1, (rc, document)
    [failed] = document["results"]
    assert failed["network"] == "net-b1" and not failed["ok"], document
    # Pre-authentication, its first step, found no AA answering at net-b1's
    # gateway: its PCI sent again within mpa-mn's timeout, then no more.
    assert failed["error"]["code"] == "no-answer", document
    assert document["counters"]["pana_no_answer"] == 1, document
    assert document["counters"]["pana_pci_retransmitted"] >= 1, document
    assert lab.location[MN].id == HOME_POA
    assert_whole(stream)
    assert ping(lab.host(CN), home).ok
    switches = controllers["domain-a"].get("/mpa/v1/switches")
    assert all(s["connected"] and s["reconciled"] for s in switches), switches

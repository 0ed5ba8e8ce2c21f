"""The handovers MPA is compared with, on the real thing: OVS, Mininet, the
controller process and ``mpa-mn`` in the MN's host, each under a UDP stream
from cn1 to mn1's home address.

* reactive (no MPA, RFC 6252 C.5): ``mpa-mn reactive``: after the move,
  authentication, DHCP on the wire, RFC 5227 DAD (once with its own
  constants, once shortened), the address, the binding update;
* ``none``: MPA without the pre-switch: nothing buffers while the link
  switches;
* ``bicast``: the correspondent's edge sends to both networks meanwhile (see
  its test for what that can and cannot save).

mn1 goes ap-a1-1 -> ap-b1-1 -> ap-a2-1 -> ap-a1-1 -> ap-b1-1 (net-a1, net-b1,
net-a2, net-a1, net-b1).  No test asserts a duration that depends on the
machine: only that a reactive handover's interruption is longer than the
least time its DAD can take, which holds by construction.
"""

import dataclasses
import ipaddress
import json
import time

import pytest

from support.lab_rig import REST_PORT, management_fixtures
from mpa_lab.experiment.handover_driver import HandoverDriver
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
RATE_PPS = 1000
TAIL_S = 0.5             # the stream goes on this long after a handover
# RFC 5227's waits, shortened, for the second reactive handover.
SHORT_DAD = dict(probe_wait=0.1, probe_num=2, probe_min=0.1, probe_max=0.2, announce_wait=0.3,
                 announce_interval=0.3)

controller, lab = management_fixtures("controller-modes")


@pytest.fixture(scope="module")
def drivers(lab, controller, tmp_path_factory):
    """Two drivers sharing the MN's state file: one signalling over REST (the
    MN's management link), one in-band."""
    state = str(tmp_path_factory.mktemp("mn-state"))
    return {channel: HandoverDriver(lab, REST_PORT, state, channel,
                                    mobile_nodes=controller.mobile_nodes)
            for channel in ("rest", "inband")}


@pytest.fixture(scope="module")
def home(drivers):
    """Both hosts known to the controller; mn1's home address bound to its
    address in net-a1, where cn1 reaches it."""
    bound = drivers["rest"].bind_home(MN, CN)
    assert bound.ok, bound
    return bound.home_address


def under_stream(lab, home, tmp_path, port, handover):
    """``handover()`` while cn1 streams to the home address, the stream going
    on ``TAIL_S`` after it.  Returns (its result, the stream's analysis with
    two windows: the handover's, and what was sent after it)."""
    with UdpStream(lab, CN, MN, home, port, RATE_PPS, tmp_path / "arrivals.log") as stream:
        time.sleep(0.2)
        result = handover()
        time.sleep(TAIL_S)
        stopped = time.time_ns()
    tail = {"label": "after", "start_ns": result.ended_wall_ns, "end_ns": stopped}
    assert stream.sent["errors"] == {}, stream.sent
    return result, stream.analysis([result.window(), tail])


def record(log_dir, name, result, report):
    with open(log_dir / f"modes-{name}.json", "w", encoding="utf-8") as f:
        json.dump({"result": dataclasses.asdict(result),
                   "windows": report["windows"]}, f, indent=1)


def assert_done_and_resumed(result, report, duplicates: bool = False):
    assert result.ok, (result.errors, result.stderr[-800:])
    during, after = report["windows"]
    if not duplicates:
        assert report["duplicated"] == 0, during
    assert after["received"] > 0 and after["lost"] == 0, after
    return during


def assert_bound_here(controller, result):
    [row] = [r for r in controller.get("/mpa/v1/mobile-nodes") if r["identity"].startswith(MN)]
    assert row["handover"] is None and row["tunnels"] == [], row
    assert row["binding"]["care_of"] == result.address, row
    assert row["binding"]["reach"] == {"poa": result.to_poa, "tunnel": False}, row


def test_a_reactive_handover_at_rfc_5227_defaults(lab, controller, drivers, home, tmp_path,
                                                  log_dir):
    result, report = under_stream(lab, home, tmp_path, 5401,
                                  lambda: drivers["rest"].reactive(MN, "ap-b1-1"))
    record(log_dir, "reactive-rfc5227", result, report)
    during = assert_done_and_resumed(result, report)
    client = result.report
    # Its address came by DHCP: a plain lease (no MPA identity) for its MAC.
    assert ipaddress.IPv4Address(result.address) in ipaddress.IPv4Network("10.2.1.0/24")
    assert client["dhcp"]["sent"]["discover"] >= 1 and client["dhcp"]["received"]["ack"] == 1
    [lease] = [l for l in controller.get("/mpa/v1/networks/net-b1/leases")
               if l["address"] == result.address]
    assert (lease["mac"], lease["identity"], lease["state"]) == \
        (lab.topology.mobile_nodes[MN].mac, None, "bound")
    assert client["dad"]["probes"] == 3 and client["dad"]["settings"]["probe_num"] == 3
    assert client["ignored"].get("malformed", 0) == 0
    # PANA, whatever the channel, only once the address is on the interface.
    assert client["attached_at"] <= client["authenticated_at"] <= client["bound_at"]
    # The MN cannot have its traffic back before its DAD is over.
    least = client["dad"]["minimum_ms"]
    assert least == 4000
    assert result.interruption_ms > least
    assert during["longest_gap"]["ms"] > least and during["lost"] > 0
    assert_bound_here(controller, result)


def test_a_reactive_handover_in_band_with_a_short_dad(lab, controller, drivers, home,
                                                      tmp_path, log_dir):
    result, report = under_stream(lab, home, tmp_path, 5402,
                                  lambda: drivers["inband"].reactive(MN, "ap-a2-1", **SHORT_DAD))
    record(log_dir, "reactive-short", result, report)
    assert_done_and_resumed(result, report)
    client = result.report
    assert ipaddress.IPv4Address(result.address) in ipaddress.IPv4Network("10.1.2.0/24")
    # The AA is asked (PANA) only once the address is on the interface.
    assert client["attached_at"] <= client["authenticated_at"] <= client["bound_at"]
    assert client["dad"]["probes"] == 2
    assert result.interruption_ms > client["dad"]["minimum_ms"] == 400
    assert_bound_here(controller, result)


def test_a_handover_without_pre_switch_completes_and_the_stream_resumes(
        lab, controller, drivers, home, tmp_path, log_dir):
    result, report = under_stream(lab, home, tmp_path, 5403,
                                  lambda: drivers["inband"].handover(MN, "ap-a1-1", mode="none"))
    record(log_dir, "none", result, report)
    assert_done_and_resumed(result, report)
    assert result.mode == "none" and "pre_switch" not in result.ready
    assert "arrived" not in result.report and result.settled_ms is not None
    # No handover at the controller; the gratuitous ARP moved the binding.
    assert not [h for h in controller.get("/mpa/v1/handovers")
                if h["to_poa"] == "ap-a1-1" and h["from_poa"] == "ap-a2-1"]
    assert_bound_here(controller, result)


def test_a_bicast_handover_loses_only_what_the_link_switch_drops(lab, controller, drivers,
                                                                 home, tmp_path, log_dir):
    """Bicasting holds nothing back: what is sent while the link switches is
    lost (RFC 6252 §7.6.1: bicasting "does not eliminate packet loss if
    link-layer handover is not seamlessly performed", and the lab's is
    break-before-make).  What it must do: lose nothing else (one run of
    losses, the link's), and let the traffic follow the MN.  A packet or
    two may arrive twice while the edge's second leg and the tunnel both
    carry it, before the nAR drops its leg."""
    result, report = under_stream(lab, home, tmp_path, 5404,
                                  lambda: drivers["inband"].handover(MN, "ap-b1-1",
                                                                     mode="bicast"))
    record(log_dir, "bicast", result, report)
    during = assert_done_and_resumed(result, report, duplicates=True)
    assert during["loss_runs"] <= 1, during
    assert result.ready["pre_switch"]["phase"] == "pre-switching"
    [handover] = [h for h in controller.get("/mpa/v1/handovers")
                  if h["from_poa"] == "ap-a1-1" and h["to_poa"] == "ap-b1-1"
                  and h["mode"] == "bicast"]
    assert handover["phase"] == "completed" and not handover["switched_back"], handover
    assert handover["buffer"]["buffered"] == 0
    assert_bound_here(controller, result)

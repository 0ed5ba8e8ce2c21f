"""Copy-and-forward (RFC 6252 §7.6.2) on the real thing: OVS, Mininet, the
controller process and ``mpa-mn standby`` in the MN's host.

mn1 is attached at ap-a1-1 with its home address bound there; the lab gives
it a second interface at ap-b1-1 (net-b1, the other domain), which the MN
prepares over REST and binds in standby.  A 1,000 packets/s stream runs to
the home address; the first interface's link is then cut (a sudden loss),
and nothing may be lost or duplicated.
"""

import dataclasses
import json

import pytest

from support.lab_rig import REST_PORT, management_fixtures, ofctl_flows
from mpa_lab.experiment.handover_driver import HandoverDriver
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
SECOND_POA, SECOND_MAC = "ap-b1-1", "02:00:00:00:01:02"
RATE_PPS = 1000

controller, lab = management_fixtures("controller-copy")


@pytest.fixture(scope="module")
def driver(lab, controller, tmp_path_factory):
    driver = HandoverDriver(lab, REST_PORT, str(tmp_path_factory.mktemp("mn-state")), "rest",
                            mobile_nodes=controller.mobile_nodes)
    yield driver
    if MN in lab.second:
        lab.remove_interface(MN)


def test_copy_and_forward_with_a_sudden_link_loss_loses_nothing(lab, driver, controller,
                                                                   topology, log_dir, tmp_path):
    home = str(topology.mobile_nodes[MN].home_address)
    bound = driver.bind_home(MN, CN)
    assert bound.ok, bound
    with UdpStream(lab, CN, MN, home, 5101, RATE_PPS, tmp_path / "arrivals.log") as stream:
        result = driver.sudden_loss(MN, SECOND_POA, SECOND_MAC)
    counters = controller.get("/mpa/v1/counters")
    report = stream.analysis([result.window()])
    with open(log_dir / "copy-and-forward.json", "w", encoding="utf-8") as f:
        json.dump({"result": dataclasses.asdict(result), "counters": counters,
                   "handovers": controller.get("/mpa/v1/handovers"), "stream": report}, f,
                  indent=1)
    assert result.ok, (result.errors, result.stderr)
    assert stream.sent["errors"] == {}, stream.sent
    summary = {k: report[k] for k in ("expected", "received", "lost", "reordered", "duplicated")}
    assert (report["lost"], report["duplicated"]) == (0, 0), (summary, report["windows"])
    late = counters.get("copy_late_delivered", 0) + counters.get("buffer_late_delivered", 0)
    assert report["reordered"] <= late, (summary, late)
    # The MN said which frames reached it: the controller sent none twice.
    assert counters.get("copy_sorted_by_marker") == 1, counters
    # Every copy was either forwarded, skipped (the MN had it), delivered late or aged out,
    assert counters["copy_made"] == sum(counters.get(f"copy_{k}", 0) for k in (
        "forwarded", "skipped", "late_delivered", "aged")), counters
    # and no more were skipped than the MN's lost interface received.
    assert 0 < counters["copy_skipped"] <= result.report["received"], counters
    # Nothing left behind: no standby, no handover, no copying or buffering flow.
    [row] = [r for r in controller.get("/mpa/v1/mobile-nodes") if r["identity"].startswith(MN)]
    assert row["standby"] is None and row["handover"] is None, row
    assert row["binding"]["care_of"] == result.report["address"], row
    for switch in ("ar-a1", "ap-b1", "ar-b1"):
        punts = [f for f in ofctl_flows(switch) if "CONTROLLER" in f
                 and (home in f or result.report["address"] in f)]
        assert not punts, (switch, punts)

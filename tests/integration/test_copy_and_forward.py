"""Copy-and-forward (RFC 6252 §7.6.2) on the real thing: OVS, Mininet, the
controller process and ``mpa-mn standby`` in the MN's host.

mn1 is attached at ap-a1-1 with its home address bound there; the lab gives
it a second interface at ap-b1-1 (net-b1, the other domain), which the MN
prepares over REST and binds in standby.  A 1,000 packets/s stream runs to
the home address; the first interface's link is then cut (a sudden loss),
and nothing may be lost or duplicated.
"""

import json
import subprocess
import tempfile
import time

import pytest

from integration.conftest import REST_PORT, ofctl_flows, running_controller, running_lab, wait_for
from topologies.handover import HandoverDriver, _Lines
from topologies.preconfigure import mpa_mn_command
from topologies.probes import ping
from topologies.streams import UdpStream

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
SECOND_POA, SECOND_MAC = "ap-b1-1", "02:00:00:00:01:02"
RATE_PPS = 1000
BEFORE_S, AFTER_S = 1.0, 1.0     # the stream before the loss, and after the switch


@pytest.fixture(scope="module")
def controller(prerequisites, log_dir):
    with running_controller(log_dir, "controller-copy", rest_host="0.0.0.0") as process:
        yield process


@pytest.fixture(scope="module")
def lab(controller, topology):
    with running_lab(controller, topology, management=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def driver(lab, tmp_path_factory):
    return HandoverDriver(lab, REST_PORT, str(tmp_path_factory.mktemp("mn-state")), "rest")


def counters(controller) -> dict:
    return controller.get("/mpa/v1/counters")


def mobile_node(controller) -> dict:
    [row] = [r for r in controller.get("/mpa/v1/mobile-nodes") if r["identity"].startswith(MN)]
    return row


def test_copy_and_forward_with_a_sudden_link_loss_loses_nothing(lab, driver, controller,
                                                                   topology, log_dir, tmp_path):
    home = str(topology.mobile_nodes[MN].home_address)
    cn, mn = lab.host(CN), lab.host(MN)
    assert ping(cn, lab.address(MN)).ok, "warm-up: cn1 reaches mn1's address"
    bound = driver.bind_home(MN)
    assert bound.ok, bound
    wait_for(lambda: ping(cn, home, count=1).ok, 10, "cn1 to reach mn1's home address")
    old = mn.defaultIntf().name
    second = lab.add_interface(MN, SECOND_POA, SECOND_MAC)
    command = mpa_mn_command(lab, MN, REST_PORT, driver.state_path(MN), "rest", "standby",
                             "net-b1", "--interface", second, "--old-interface", old,
                             "--home", home, "--wait-loss")
    stderr = tempfile.TemporaryFile()
    with UdpStream(lab, CN, MN, home, 5101, RATE_PPS, tmp_path / "arrivals.log") as stream:
        client = mn.popen(command, stdout=subprocess.PIPE, stderr=stderr)
        lines = _Lines(client.stdout)
        ready = json.loads(lines.line(time.monotonic() + 30) or b"{}")
        assert ready.get("event") == "ready", (ready, _tail(stderr))
        wait_for(lambda: mobile_node(controller)["standby"], 5, "the standby to be armed")
        time.sleep(BEFORE_S)
        cut_ns = lab.cut_link(MN)
        client.wait(timeout=30)
        out = lines.rest()
        assert client.returncode == 0, (out[-2000:], _tail(stderr))
        wait_for(lambda: counters(controller).get("handover_completed", 0) >= 1, 10,
                 "the copy-and-forward handover to complete")
        time.sleep(AFTER_S)
    [result] = json.loads(out)["results"]
    seen = counters(controller)
    report = stream.analysis([("loss", cut_ns - 500_000_000, cut_ns + 1_000_000_000)])
    with open(log_dir / "copy-and-forward.json", "w", encoding="utf-8") as f:
        json.dump({"ready": ready, "client": result, "cut_ns": cut_ns, "counters": seen,
                   "handovers": controller.get("/mpa/v1/handovers"), "stream": report}, f,
                  indent=1)
    assert stream.sent["errors"] == {}, stream.sent
    [window] = report["windows"]
    summary = {k: report[k] for k in ("expected", "received", "lost", "reordered", "duplicated")}
    assert (report["lost"], report["duplicated"]) == (0, 0), (summary, window)
    late = seen.get("copy_late_delivered", 0) + seen.get("buffer_late_delivered", 0)
    assert report["reordered"] <= late, (summary, late)
    # The MN said which frames reached it, so the controller sent none twice.
    assert seen.get("copy_sorted_by_marker") == 1, seen
    assert seen.get("copy_forwarded", 0) > 0 and seen.get("copy_made", 0) > RATE_PPS * BEFORE_S / 2
    # Nothing left behind: no standby, no copies, no buffer, no copying flow.
    row = mobile_node(controller)
    assert row["standby"] is None and row["handover"] is None, row
    assert row["binding"]["care_of"] == result["address"], row
    for switch in ("ar-a1", "ap-b1", "ar-b1"):
        copying = [f for f in ofctl_flows(switch) if "CONTROLLER" in f and home in f]
        assert not copying, (switch, copying)


def _tail(stderr) -> str:
    stderr.seek(0)
    return stderr.read().decode(errors="replace")[-2000:]

"""No binding into a black hole, on the real thing: OVS, Mininet, the
controller process and ``mpa-mn`` in mn1's host.

mn1 prepares a proactive handover to net-a2 (pre-authentication, nCoA, the
tunnel and the binding update through it: RFC 6252 §6.3 steps 1-3), pre-
switches, and does not move: it cancels, or the switch deadline passes.
cn1 then streams to mn1's home address while the tunnel's (short) lifetime
runs out.  The binding stays on the tunnel while it lasts, falls back to
mn1's address at its PoA when it ends, and the stream loses nothing.
"""

import re
import subprocess

import pytest

from support.lab_rig import (
    REST_PORT, management_fixtures, ofctl_flows, variant_fixtures, wait_for)
from mpa_sdn.tables import Feature, Table, address_cookie, cookie
from mpa_lab.experiment.handover_driver import HandoverDriver
from mpa_lab.experiment.preconfigure import run_mpa_mn
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
TARGET, TARGET_POA = "net-a2", "ap-a2-1"
TUNNEL_LIFETIME_S = 8
SWITCH_DEADLINE_S = 3.0
RATE_PPS = 100               # the rate of the lab where the defect was seen
AFTER_FALLBACK = 100         # packets delivered the new way before the stream stops
MARGIN_S = 10.0              # beyond the controller's own bound, for a state to show


topology_file, topology = variant_fixtures("two_domains_fallback.yaml",
                                           tunnel_lifetime_s=TUNNEL_LIFETIME_S,
                                           switch_deadline_s=SWITCH_DEADLINE_S)
controller, lab = management_fixtures("controller-fallback", "topology_file")


@pytest.fixture(scope="module")
def driver(lab, controller, tmp_path_factory):
    """mn1's home address bound to its address in net-a1, cn1 reaching it."""
    driver = HandoverDriver(lab, REST_PORT, str(tmp_path_factory.mktemp("mn-state")),
                            mobile_nodes=controller.mobile_nodes)
    result = driver.bind_home(MN, CN)
    assert result.ok, result
    return driver


def mpa_mn(driver, *args) -> int:
    """``mpa-mn ARGS`` in mn1's host, in-band; its exit status."""
    rc, _ = run_mpa_mn(driver.lab, MN, REST_PORT, driver.state_path(MN), "inband", *args)
    return rc


def cancel(driver, home: str) -> None:
    """Steps 1-4, then ``cancel`` before the deadline."""
    assert mpa_mn(driver, "handover", TARGET, "--home", home) == 0
    assert mpa_mn(driver, "switch", TARGET, "--phase", "cancel") == 0


def deadline(driver, home: str) -> None:
    """Steps 1-4, and the deadline passes without mn1 moving."""
    result = driver.failed_handover(MN, TARGET_POA, "no-arrival")
    assert result.ok and result.switched_back_ms is not None, result


def binding_of(driver) -> dict:
    state = driver.mobile_node_state(MN) or {}
    return {"binding": state.get("binding"), "tunnels": state.get("tunnels"),
            "handover": state.get("handover")}


def switched_back(driver) -> dict | None:
    """mn1's state once no handover is in progress."""
    state = binding_of(driver)
    return state if state["handover"] is None else None


def delivered_by(switch: str, home: str, care_of: str) -> int:
    """Packets the binding's last hop at ``switch`` took from correspondents
    to ``care_of`` (the flow that restores the home address)."""
    binding = address_cookie(Feature.BINDING, home)
    out = subprocess.run(
        ["ovs-ofctl", "-O", "OpenFlow13", "dump-flows", switch,
         f"table={int(Table.ROUTE)},ip,nw_dst={care_of},cookie={binding:#x}/-1"],
        capture_output=True, text=True, check=True).stdout
    return sum(int(n) for n in re.findall(r"n_packets=(\d+)", out))


def tunnel_flows(lab) -> list[str]:
    """Every tunnel's flows on every switch of the lab."""
    prefix = f"cookie={cookie(Feature.TUNNEL) >> 48:#x}"
    return [line for switch in sorted(lab.topology.switches) for line in ofctl_flows(switch)
            if prefix in line]


def since_the_tunnel(controller, start: dict, switch: str, home: str, address: str) -> int:
    """Packets for the home address that came the new way since the
    tunnel ended: delivered by the binding's last hop at ``switch``, or
    punted at an AR with no route for them (held, then dropped)."""
    counters = controller.counters()
    unrouted = sum(counters.get(k, 0) - start.get(k, 0)
                   for k in ("pending_held", "pending_dropped_full"))
    return delivered_by(switch, home, address) + unrouted


@pytest.mark.parametrize("switch_back", [cancel, deadline], ids=["cancel", "deadline"])
def test_when_the_tunnel_of_a_switched_back_handover_ends_a_stream_to_the_mn_loses_nothing(
        driver, lab, controller, tmp_path, switch_back):
    home = driver.home_address(MN)
    here, address = lab.location[MN], lab.address(MN)
    before = controller.counters()
    switch_back(driver, home)
    state = wait_for(lambda: switched_back(driver), MARGIN_S, "the handover to end")
    # Switched back, the binding stays on the tunnel, which reaches mn1 where it is.
    assert state["binding"]["network"] == TARGET, state
    assert state["binding"]["reach"] == {"poa": here.id, "tunnel": True}, state

    with UdpStream(lab, CN, MN, home, 5011, RATE_PPS, tmp_path / "arrivals.log") as stream:
        wait_for(lambda: not binding_of(driver)["tunnels"], TUNNEL_LIFETIME_S + MARGIN_S,
                 "the tunnel to end")
        wait_for(lambda: not tunnel_flows(lab), MARGIN_S, "the tunnel's flows to go")
        start = controller.counters()
        wait_for(lambda: since_the_tunnel(controller, start, here.switch, home, address)
                 >= AFTER_FALLBACK, AFTER_FALLBACK / RATE_PPS + MARGIN_S,
                 f"{AFTER_FALLBACK} packets for {home} after the tunnel's end")
    after = controller.counters()
    assert stream.sent["errors"] == {}, stream.sent
    report = stream.analysis([])
    summary = {k: report[k] for k in ("expected", "received", "lost", "reordered",
                                      "duplicated")}
    assert (report["lost"], report["duplicated"]) == (0, 0), (summary,
                                                               report["longest_loss_run"])
    assert report["received"] > AFTER_FALLBACK, summary
    state = binding_of(driver)
    assert state["binding"]["care_of"] == address, state
    assert state["binding"]["reach"] == {"poa": here.id, "tunnel": False}, state

    def grew(name: str) -> int:
        return after.get(name, 0) - before.get(name, 0)
    assert grew("binding_fell_back") == 1
    assert grew("binding_ended_no_route") == 0
    assert grew("pending_dropped_full") == 0

"""The lab's modelled link layer (mpa_lab/net/link_layer.py) on the real
thing: a move is one carrier drop and one carrier rise at the MN, the old
PoA's port down as Open vSwitch tells the controller, the link held down for
the outage the topology (or the experiment) imposes, and the MN's traffic at
the new PoA afterwards."""

import re
import subprocess

import pytest

from mpa_lab.net.link_layer import PER_STATION, STAY_UP
from mpa_lab.net.probes import ping
from support.lab_rig import ofctl_flows, wait_for
from mpa_sdn.tables import host_cookie

pytestmark = pytest.mark.integration


def carrier_changes(lab, mn="mn1", intf="mn1-eth0") -> int:
    return int(lab.host(mn).cmd(f"cat /sys/class/net/{intf}/carrier_changes").strip())


def host_flows(lab, poa_id: str, address: str) -> list[str]:
    """The flows of the host learned at ``address`` on ``poa_id``'s switch."""
    cookie = f"cookie={host_cookie(address):#x},"
    return [line for line in ofctl_flows(lab.graph.poa(poa_id).switch) if cookie in line]


def port_link_down(lab, poa_id: str) -> bool:
    """Whether the PoA's OpenFlow port is LINK_DOWN, as OVS reports it to
    its controller (OFPPS_LINK_DOWN in the port's state)."""
    poa = lab.graph.poa(poa_id)
    text = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "dump-ports-desc", poa.switch],
                          check=True, capture_output=True, text=True).stdout
    block = re.search(rf"^ {poa.port}\(.*?(?=^ \d+\(|^ LOCAL|\Z)", text, re.M | re.S)
    assert block, f"no port {poa.port} on {poa.switch}: {text}"
    return bool(re.search(r"state:\s+LINK_DOWN", block.group(0)))


def test_a_move_holds_the_topology_s_outage_and_delivers_at_the_new_poa(lab, controller):
    lab.move("mn1", "ap-a1-1")
    assert ping(lab.host("cn1"), lab.address("mn1")).ok
    changes = carrier_changes(lab)
    forgotten = controller.get("/mpa/v1/counters").get("host_forgotten_link_down", 0)

    address = lab.move("mn1", "ap-a2-1")     # net-a1 -> net-a2: l2_handover_ms 50

    switch = lab.last_link_switch
    assert (switch.from_poa, switch.to_poa, switch.imposed_ms) == ("ap-a1-1", "ap-a2-1", 50.0)
    assert switch.duration_ms >= switch.imposed_ms
    assert switch.ioctl_ms is not None and switch.ioctl_ms < switch.duration_ms
    assert carrier_changes(lab) == changes + 2, "one carrier drop and one rise"
    assert port_link_down(lab, "ap-a1-1") and not port_link_down(lab, "ap-a2-1")
    assert controller.get("/mpa/v1/counters")["host_forgotten_link_down"] == forgotten + 1
    assert ping(lab.host("cn1"), address).ok


def test_within_a_network_nothing_is_imposed_unless_the_experiment_says_so(lab):
    lab.move("mn1", "ap-a1-1")
    lab.move("mn1", "ap-a1-2")
    assert lab.last_link_switch.imposed_ms == 0.0
    lab.link_layer_ms = 16.0          # as a scenario's link_layer_ms, for this move
    try:
        lab.move("mn1", "ap-a1-1")
    finally:
        lab.link_layer_ms = None
    assert lab.last_link_switch.imposed_ms == 16.0
    assert lab.last_link_switch.duration_ms >= 16.0
    assert ping(lab.host("cn1"), lab.address("mn1")).ok


def test_a_link_that_never_comes_up_at_the_target_brings_no_port_up(lab):
    lab.move("mn1", "ap-a1-1")
    changes = carrier_changes(lab)
    lab.move("mn1", "ap-a1-2", readdress=False, link_up=False)
    assert lab.last_link_switch.up_ns is None
    assert port_link_down(lab, "ap-a1-1") and port_link_down(lab, "ap-a1-2")
    assert carrier_changes(lab) == changes + 1
    lab.move("mn1", "ap-a1-1")
    assert carrier_changes(lab) == changes + 2
    assert not port_link_down(lab, "ap-a1-1") and port_link_down(lab, "ap-a1-2")
    assert ping(lab.host("cn1"), lab.address("mn1")).ok


def test_a_sudden_loss_drops_the_mn_s_carrier_and_its_poa_s_port(lab):
    lab.move("mn1", "ap-a1-1")
    changes = carrier_changes(lab)
    lab.cut_link("mn1")
    assert carrier_changes(lab) == changes + 1 and port_link_down(lab, "ap-a1-1")
    lab.move("mn1", "ap-a1-2")          # the link comes back elsewhere
    assert carrier_changes(lab) == changes + 2
    assert ping(lab.host("cn1"), lab.address("mn1")).ok


def test_with_ports_that_stay_up_a_move_changes_no_port_and_the_old_host_is_polled_away(lab):
    """An access point's port stays up as a station leaves it: the
    controller learns of the move from the MN at its new PoA, polls its old
    address where it was, and forgets it there unanswered."""
    lab.move("mn1", "ap-a1-1")
    lab.use_poa_ports(STAY_UP)
    try:
        assert not port_link_down(lab, "ap-a1-2") and not port_link_down(lab, "ap-a2-1")
        old = lab.address("mn1")
        assert ping(lab.host("cn1"), old).ok
        assert host_flows(lab, "ap-a1-1", old), "its source check and route at ap-a1-1"
        changes = carrier_changes(lab)
        address = lab.move("mn1", "ap-a2-1")
        assert carrier_changes(lab) == changes + 2, "one carrier drop and one rise"
        assert not port_link_down(lab, "ap-a1-1") and not port_link_down(lab, "ap-a2-1")
        assert ping(lab.host("cn1"), address).ok
        wait_for(lambda: not host_flows(lab, "ap-a1-1", old), 15,
                 f"{old}'s flows at ap-a1-1 to go (polled, unanswered)")
        lab.move("mn1", "ap-a1-1")
        assert ping(lab.host("cn1"), lab.address("mn1")).ok
    finally:
        lab.use_poa_ports(PER_STATION)
    assert port_link_down(lab, "ap-a1-2") and port_link_down(lab, "ap-a2-1")

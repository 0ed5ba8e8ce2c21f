"""The handover driver's bookkeeping (mpa_lab/experiment/handover_driver.py) with a stand-in
lab and a stand-in client: no root, no Mininet.  The client is a small
Python program that talks like ``mpa-mn handover --json``."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import time
from types import SimpleNamespace

import pytest

from mpa_mn.cli import build_parser
from mpa_mn.dad import DadSettings
from mpa_lab.experiment.handover_driver import (POLL_S, REACTIVE_OPTIONS, DomainApi,
                                                HandoverDriver, _poll)

HOME = "10.255.0.1"
NETWORK_OF = {"ap-a": "net-a", "ap-b": "net-b"}

# argv[1]: what the client does.  "ok": ready, then its report (over several
# lines, as --json prints it); "refused": an error document before it is
# ready; "hang": ready, then it waits to be stopped; "reactive": ready with no
# address, then a reactive handover's report.
CLIENT = textwrap.dedent("""
    import json, sys, time
    if sys.argv[1] == "refused":
        print(json.dumps({"ok": False, "error": {"code": "wrong-state",
                                                 "message": "a handover is in progress"}},
                         indent=1))
        sys.exit(1)
    if sys.argv[1] == "reactive":
        print(json.dumps({"event": "ready", "network": "net-b"}), flush=True)
        print(json.dumps({"ok": True, "results": [{
            "network": "net-b", "address": "10.2.0.150", "link_down_at": 1000000,
            "attached_at": 4501000000, "bound_at": 4511000000}]}, indent=1))
        sys.exit(0)
    print(json.dumps({"event": "ready", "network": "net-b", "address": "10.2.0.100"}),
          flush=True)
    if sys.argv[1] == "hang":
        time.sleep(60)
    if sys.argv[1] == "switched-back":
        print(json.dumps({"ok": False, "error": {"code": "switched-back", "message": "late"},
                          "results": [{"network": "net-b", "link_down_at": 1000000,
                                       "attached_at": 26000000}]}, indent=1))
        sys.exit(1)
    print(json.dumps({"ok": True, "results": [{"network": "net-b", "link_down_at": 1000000,
                                               "attached_at": 26000000}]}, indent=1))
""")


class FakeHost:
    def __init__(self, behaviour: str):
        self.behaviour = behaviour
        self.commands = []

    def defaultIntf(self):  # noqa: N802 (Mininet's name)
        return SimpleNamespace(name="mn1-eth0")

    def popen(self, command, **kwargs):
        self.commands.append(command)
        return subprocess.Popen([sys.executable, "-c", CLIENT, self.behaviour], **kwargs)


class FakeLab:
    """What the driver uses of mpa_lab.net.lab.Lab."""

    def __init__(self, behaviour: str = "ok"):
        poa = lambda id: SimpleNamespace(id=id, network=NETWORK_OF[id])  # noqa: E731
        self.graph = SimpleNamespace(poa=poa)
        self.topology = SimpleNamespace(
            mobile_nodes={"mn1": SimpleNamespace(home_address=HOME, identity="mn1@a",
                                                 credentials="mn1.yaml")},
            networks={"net-a": SimpleNamespace(domain="a"), "net-b": SimpleNamespace(domain="b")},
            mpa=SimpleNamespace(switch_deadline_s=0.2, buffer_time_s=0.2, copy_wait_s=0.2))
        self.location = {"mn1": poa("ap-a")}
        self.mn = FakeHost(behaviour)
        self.moves, self.noted, self.announced, self.cut = [], [], [], []
        self.link_switches = []

    def host(self, name):
        return self.mn

    def management_addresses(self, name):
        return "172.31.0.1", "172.31.0.2"

    def address(self, name):
        return "10.1.0.199"

    def move(self, mn, poa, readdress=True, link_up=True):
        assert readdress is False, "the MN's client addresses itself"
        self.moves.append((mn, poa, link_up))
        self.link_switches.append(SimpleNamespace(host=mn, to_poa=poa, duration_ms=20.0,
                                                  up_wall_ns=6000000))
        self.location[mn] = self.graph.poa(poa)

    def note_address(self, mn, address):
        self.noted.append((mn, address))

    def announce(self, mn):
        self.announced.append((mn, self.location[mn].id))

    def add_interface(self, mn, poa, mac):
        return "mn1-eth1"

    def cut_link(self, mn):
        self.cut.append(mn)
        return 7000000


@pytest.fixture
def controller():
    """The controller's mobility state: mn1 with ``handover`` and ``binding``."""
    state = {"handover": None, "binding": None}
    return SimpleNamespace(
        state=state,
        mobile_nodes=lambda: [{"identity": "mn1@a", "home_address": HOME, **state}])


def driver_for(lab, controller, tmp_path):
    driver = HandoverDriver(lab, 1, str(tmp_path), mobile_nodes=controller.mobile_nodes)
    driver.settle_margin_s = 0.3
    driver.binding_grace_s = 0.01
    return driver


def test_a_handover_moves_the_link_once_the_client_is_ready_and_keeps_its_report(
        controller, tmp_path):
    lab = FakeLab("ok")
    result = driver_for(lab, controller, tmp_path).handover("mn1", "ap-b", buffer_old=True)
    assert result.ok, result.errors
    assert (result.index, result.kind, result.from_network, result.to_network) == \
        (1, "handover", "net-a", "net-b")
    assert lab.moves == [("mn1", "ap-b", True)]
    assert lab.noted == [("mn1", "10.2.0.100")]
    command = lab.mn.commands[0]
    assert command[command.index("handover"):] == [
        "handover", "net-b", "--wait-link", "--home", HOME, "--buffer-old"]
    assert "--json" in command and command[command.index("--state") + 1].endswith("mn1.json")
    assert result.returncode == 0 and result.address == "10.2.0.100"
    assert result.report["attached_at"] == 26000000
    assert result.interruption_ms == 25.0 and result.link_layer_ms == 20.0
    assert result.attach_after_link_ms == 20.0
    assert result.settled_ms is not None
    window = result.window()
    assert window["label"] == "1 handover ap-a->ap-b"
    assert window["start_ns"] < window["end_ns"] == result.ended_wall_ns


def test_a_client_refused_before_it_is_ready_leaves_the_mn_where_it_is(controller, tmp_path):
    lab = FakeLab("refused")
    result = driver_for(lab, controller, tmp_path).handover("mn1", "ap-b")
    assert not result.ok and lab.moves == [] and lab.noted == []
    assert result.returncode == 1
    assert result.client["error"]["code"] == "wrong-state"
    assert any("wrong-state: a handover is in progress" in e for e in result.errors), \
        result.errors


def test_a_handover_switched_back_fails_and_the_lab_keeps_the_address_the_mn_took(
        controller, tmp_path):
    lab = FakeLab("switched-back")
    result = driver_for(lab, controller, tmp_path).handover("mn1", "ap-b")
    assert not result.ok and result.returncode == 1
    assert any("switched-back: late" in e for e in result.errors), result.errors
    assert lab.moves == [("mn1", "ap-b", True)]
    assert lab.noted == [("mn1", "10.2.0.100")], "the MN holds the nCoA at the target"
    assert result.settled_ms is None


def test_a_handover_the_controller_never_finishes_is_reported(controller, tmp_path):
    controller.state["handover"] = {"phase": "flushing"}
    result = driver_for(FakeLab("ok"), controller, tmp_path).handover("mn1", "ap-b")
    assert result.settled_ms is None
    assert result.errors == ["the controller still reports the handover in progress after "
                             "mpa.buffer_time_s"]


@pytest.mark.parametrize("mode, moves", [
    ("no-arrival", []),
    ("return", [("mn1", "ap-b", False), ("mn1", "ap-a", True)]),
])
def test_a_failed_handover_never_attaches_and_waits_for_the_switch_back(
        controller, tmp_path, mode, moves):
    lab = FakeLab("ok")
    result = driver_for(lab, controller, tmp_path).failed_handover("mn1", "ap-b", mode)
    assert result.ok, result.errors
    assert "--wait-link" not in lab.mn.commands[0]
    assert result.kind == mode and result.switched_back_ms is not None
    assert lab.moves == moves
    assert [s.to_poa for s in result.link] == [poa for _, poa, _ in moves]
    assert lab.announced == ([("mn1", "ap-a")] if mode == "return" else [])
    assert lab.location["mn1"].id == "ap-a" and lab.noted == []


def test_a_client_that_does_not_finish_is_stopped_and_reported(controller, tmp_path):
    driver = driver_for(FakeLab("hang"), controller, tmp_path)
    driver.finish_timeout_s = 0.2
    result = driver.handover("mn1", "ap-b")
    assert result.returncode not in (None, 0)
    assert "mpa-mn did not finish within 0.2 s; stopped" in result.errors


def test_a_failed_handover_the_controller_never_switches_back_is_reported(
        controller, tmp_path):
    controller.state["handover"] = {"phase": "pre-switching"}
    result = driver_for(FakeLab("ok"), controller, tmp_path).failed_handover(
        "mn1", "ap-b", "no-arrival")
    assert result.switched_back_ms is None and not result.ok


def test_an_unknown_failure_mode_is_refused(controller, tmp_path):
    with pytest.raises(ValueError, match="no-arrival, return"):
        driver_for(FakeLab(), controller, tmp_path).failed_handover("mn1", "ap-b", "vanish")


@pytest.mark.parametrize("mode, extra", [("bicast", ["--mode", "bicast"]),
                                         ("none", ["--mode", "none"]), ("buffer", [])])
def test_a_handover_passes_its_mode(controller, tmp_path, mode, extra):
    lab = FakeLab("ok")
    controller.state["binding"] = {"care_of": "10.2.0.100",
                                   "reach": {"poa": "ap-b", "tunnel": False}}
    result = driver_for(lab, controller, tmp_path).handover("mn1", "ap-b", mode=mode)
    assert result.ok, result.errors
    command = lab.mn.commands[0]
    assert command[command.index("handover"):] == [
        "handover", "net-b", "--wait-link", "--home", HOME, *extra]
    assert (result.kind, result.mode) == ("handover", mode)
    assert result.interruption_ms == 25.0 and result.settled_ms is not None


def test_without_a_pre_switch_it_waits_for_the_binding_to_reach_the_mn(controller, tmp_path):
    """No handover at the controller to wait for: its binding tells."""
    controller.state["binding"] = {"care_of": "10.2.0.100",
                                   "reach": {"poa": "ap-a", "tunnel": True}}
    result = driver_for(FakeLab("ok"), controller, tmp_path).handover("mn1", "ap-b", mode="none")
    assert result.settled_ms is None
    assert result.errors == ["the controller does not show mn1's binding to 10.2.0.100 "
                             "reaching it at ap-b"]


@pytest.mark.parametrize("kwargs", [dict(mode="copy"), dict(mode="bicast", buffer_old=True)])
def test_modes_that_do_not_exist_or_fit_are_refused(controller, tmp_path, kwargs):
    with pytest.raises(ValueError):
        driver_for(FakeLab(), controller, tmp_path).handover("mn1", "ap-b", **kwargs)


def test_a_reactive_handover_passes_its_options_and_ends_at_the_binding(controller, tmp_path):
    lab = FakeLab("reactive")
    controller.state["binding"] = {"care_of": "10.2.0.150",
                                   "reach": {"poa": "ap-b", "tunnel": False}}
    result = driver_for(lab, controller, tmp_path).reactive(
        "mn1", "ap-b", probe_num=2, announce_wait=0.5, dhcp_retry=1.0)
    assert result.ok, result.errors
    command = lab.mn.commands[0]
    assert command[command.index("reactive"):] == [
        "reactive", "net-b", "--wait-link", "--home", HOME, "--announce-wait", "0.5",
        "--dhcp-retry", "1", "--probe-num", "2"]
    assert (result.kind, result.mode) == ("reactive", None)
    assert lab.moves == [("mn1", "ap-b", True)] and lab.noted == [("mn1", "10.2.0.150")]
    assert result.address == "10.2.0.150"
    # From the link going down to the binding's answer, not to the address.
    assert result.interruption_ms == 4510.0
    assert result.settled_ms is not None
    assert result.window()["label"] == "1 reactive ap-a->ap-b"


def test_an_unknown_reactive_option_is_refused(controller, tmp_path):
    with pytest.raises(ValueError, match="no reactive option probes"):
        driver_for(FakeLab(), controller, tmp_path).reactive("mn1", "ap-b", probes=3)


def test_a_reactive_handover_passes_every_dad_setting_an_option_does_not_override(
        controller, tmp_path):
    lab = FakeLab("reactive")
    controller.state["binding"] = {"care_of": "10.2.0.150",
                                   "reach": {"poa": "ap-b", "tunnel": False}}
    dad = DadSettings(probe_num=2, probe_wait_s=0.1, probe_min_s=0.2, probe_max_s=0.3,
                      announce_wait_s=0.3)
    result = driver_for(lab, controller, tmp_path).reactive("mn1", "ap-b", dad=dad,
                                                            probe_num=1)
    assert result.ok, result.errors
    command = lab.mn.commands[0]
    assert command[command.index("--home") + 2:] == [
        "--announce-interval", "2", "--announce-num", "2", "--announce-wait", "0.3",
        "--max-conflicts", "10", "--probe-max", "0.3", "--probe-min", "0.2", "--probe-num", "1",
        "--probe-wait", "0.1"]


def test_every_reactive_option_is_one_mpa_mn_reactive_takes():
    """The driver names mpa-mn's DAD options after DadSettings' fields."""
    args = build_parser().parse_args(
        ["reactive", "net-b", *[arg for option in REACTIVE_OPTIONS
                                for arg in (f"--{option.replace('_', '-')}", "1")]])
    assert all(getattr(args, option) == 1 for option in REACTIVE_OPTIONS)


def test_polling_sleeps_between_tries_and_stops_at_its_deadline():
    tries = []

    def never() -> bool:
        tries.append(time.monotonic())
        return False
    assert _poll(never, time.monotonic() + 3 * POLL_S) is None
    # Not a spin, however fast the try fails: POLL_S between two tries.
    assert 2 <= len(tries) <= 5
    assert all(b - a >= POLL_S - 1e-3 for a, b in zip(tries, tries[1:])), tries
    assert _poll(lambda: True, time.monotonic() - 1) is not None   # tried once, even late


@pytest.mark.parametrize("standby, cut", [(True, ["mn1"]), (False, [])])
def test_a_sudden_loss_cuts_the_link_once_the_controller_shows_the_standby(
        controller, tmp_path, standby, cut):
    lab = FakeLab("ok")
    controller.state["standby"] = {"poa": "ap-b"} if standby else None
    driver = driver_for(lab, controller, tmp_path)
    driver.ready_timeout_s = 0.2
    result = driver.sudden_loss("mn1", "ap-b", "02:00:00:00:01:02", before_s=0)
    assert lab.cut == cut
    if standby:
        assert result.ok, result.errors
        assert result.loss_wall_ns == 7000000 and result.settled_ms is not None
        command = lab.mn.commands[0]
        assert command[command.index("standby"):] == [
            "standby", "net-b", "--interface", "mn1-eth1", "--old-interface", "mn1-eth0",
            "--home", HOME, "--wait-loss"]
    else:
        assert "the controller never showed the standby" in result.errors


# -- one controller per domain ----------------------------------------------------------------
# mn1's home is domain a (mn1@a); net-a is a's, net-b is b's.

@pytest.fixture
def domains():
    """Each domain's controller: mn1's state there (None: it lists no mn1)."""
    states = {"a": {"handover": None, "binding": None, "tunnels": []}, "b": None}

    def listing(domain):
        return lambda: [] if states[domain] is None else [{"identity": "mn1@a",
                                                          **states[domain]}]
    return SimpleNamespace(states=states, apis={"a": DomainApi(8080, listing("a")),
                                                "b": DomainApi(8081, listing("b"))})


def per_domain_driver(lab, domains, tmp_path):
    driver = HandoverDriver(lab, 8080, str(tmp_path), domains=domains.apis)
    driver.settle_margin_s = 0.3
    driver.binding_grace_s = 0.01
    return driver


def test_the_client_is_told_each_domain_s_rest_api(domains, tmp_path):
    lab = FakeLab("ok")
    per_domain_driver(lab, domains, tmp_path).handover("mn1", "ap-b")
    command = lab.mn.commands[0]
    given = [command[i + 1] for i, arg in enumerate(command) if arg == "--domain-controller"]
    assert given == ["a=http://172.31.0.1:8080", "b=http://172.31.0.1:8081"]
    assert command[command.index("--controller") + 1] == "http://172.31.0.1:8080"


def test_a_handover_to_another_domain_waits_for_the_target_s_controller(domains, tmp_path):
    """The home domain shows no handover; the target's still does."""
    domains.states["b"] = {"handover": {"phase": "flushing"}, "binding": None, "tunnels": []}
    result = per_domain_driver(FakeLab("ok"), domains, tmp_path).handover("mn1", "ap-b")
    assert result.settled_ms is None
    assert result.errors == ["the controller still reports the handover in progress after "
                             "mpa.buffer_time_s"]
    domains.states["b"]["handover"] = None
    result = per_domain_driver(FakeLab("ok"), domains, tmp_path).handover("mn1", "ap-b")
    assert result.ok and result.settled_ms is not None, result.errors


def test_the_target_s_controller_listing_no_mn_means_no_handover_in_progress(domains, tmp_path):
    domains.states["a"]["handover"] = {"phase": "flushing"}   # not the target's: not read
    result = per_domain_driver(FakeLab("ok"), domains, tmp_path).handover("mn1", "ap-b")
    assert result.ok and result.settled_ms is not None, result.errors


@pytest.mark.parametrize("tunnelled, settled", [(True, False), (False, True)])
def test_a_binding_abroad_is_read_at_home_and_the_tunnel_s_end_at_the_target(
        domains, tmp_path, tunnelled, settled):
    """Home sees no PoA of domain b (reach null): its binding names net-b, and
    b has dropped its tunnel to the care-of once it saw the MN at its PoA."""
    domains.states["a"]["binding"] = {"care_of": "10.2.0.100", "network": "net-b",
                                      "reach": None}
    domains.states["b"] = {"handover": None, "binding": None,
                           "tunnels": [{"address": "10.2.0.100"}] if tunnelled else []}
    result = per_domain_driver(FakeLab("ok"), domains, tmp_path).handover("mn1", "ap-b",
                                                                         mode="none")
    assert (result.settled_ms is not None) is settled
    assert result.ok is settled, result.errors


def test_a_reactive_handover_abroad_ends_at_the_home_domain_s_binding(domains, tmp_path):
    lab = FakeLab("reactive")
    domains.states["a"]["binding"] = {"care_of": "10.2.0.150", "network": "net-b",
                                      "reach": None}
    result = per_domain_driver(lab, domains, tmp_path).reactive("mn1", "ap-b")
    assert result.ok and result.settled_ms is not None, result.errors
    domains.states["a"]["binding"]["care_of"] = "10.1.0.199"     # still the old care-of
    result = per_domain_driver(FakeLab("reactive"), domains, tmp_path).reactive("mn1", "ap-b")
    assert result.errors == ["the controller does not show mn1's binding to 10.2.0.150 "
                             "reaching it at ap-b"]


def test_a_reactive_handover_home_waits_for_the_binding_to_reach_the_poa(domains, tmp_path):
    lab = FakeLab("reactive")
    lab.location["mn1"] = lab.graph.poa("ap-b")
    domains.states["a"]["binding"] = {"care_of": "10.2.0.150", "network": "net-a",
                                      "reach": {"poa": "ap-a", "tunnel": True}}
    result = per_domain_driver(lab, domains, tmp_path).reactive("mn1", "ap-a")
    assert result.settled_ms is None and not result.ok
    domains.states["a"]["binding"]["reach"] = {"poa": "ap-a", "tunnel": False}
    lab = FakeLab("reactive")
    lab.location["mn1"] = lab.graph.poa("ap-b")
    result = per_domain_driver(lab, domains, tmp_path).reactive("mn1", "ap-a")
    assert result.ok and result.settled_ms is not None, result.errors


def test_the_state_of_an_mn_is_its_home_domain_s_unless_a_domain_is_named(domains, tmp_path):
    driver = per_domain_driver(FakeLab(), domains, tmp_path)
    domains.states["b"] = {"handover": {"phase": "switching"}}
    assert driver.mobile_node_state("mn1")["handover"] is None
    assert driver.mobile_node_state("mn1", "b")["handover"] == {"phase": "switching"}
    assert (driver.domain_of("net-b"), driver.home_domain("mn1")) == ("b", "a")


@pytest.mark.parametrize("kwargs", [{}, {"mobile_nodes": list, "domains": {}}])
def test_the_driver_reads_one_controller_or_one_per_domain(tmp_path, kwargs):
    with pytest.raises(ValueError, match="one per domain"):
        HandoverDriver(FakeLab(), 1, str(tmp_path), **kwargs)


def test_handovers_together_run_at_the_same_time_and_come_back_in_order(controller, tmp_path):
    import threading
    driver = driver_for(FakeLab(), controller, tmp_path)
    # Each handover waits until the other has started: run one after the
    # other, they would break the barrier instead.
    both = threading.Barrier(2, timeout=30)

    def one(mn, poa):
        both.wait()
        return SimpleNamespace(mn=mn, to_poa=poa, thread=threading.current_thread().name)
    results = driver.together([("mn1", "ap-b"), ("mn2", "ap-a")], one)
    assert [(r.mn, r.to_poa) for r in results] == [("mn1", "ap-b"), ("mn2", "ap-a")]
    assert {r.thread for r in results} == {"handover-mn1", "handover-mn2"}


def test_a_handover_that_raises_together_with_others_raises_after_all_have_ended(
        controller, tmp_path):
    driver = driver_for(FakeLab(), controller, tmp_path)
    ended = []

    def one(mn, poa):
        if mn == "mn1":
            raise RuntimeError("the lab could not move mn1")
        ended.append(mn)
        return SimpleNamespace(mn=mn)
    with pytest.raises(RuntimeError, match="could not move mn1"):
        driver.together([("mn1", "ap-b"), ("mn2", "ap-a")], one)
    assert ended == ["mn2"]

"""Scenario keys for TCP streams and MNs moving together
(mpa_lab/experiment/scenario.py): what they become, their plan, and each
mistake reported with its key path."""

from __future__ import annotations

import os

import pytest

from support.paths import DEFAULT_TOPOLOGY, ROOT
from support.scenario_files import errors_of, write
from mpa_lab.experiment.runner import sessions
from mpa_lab.experiment.scenario import MPA_BUFFER, MPA_COPY_FORWARD, load_scenario

TCP = os.path.join(ROOT, "topologies", "scenarios", "tcp.yaml")
MANY = os.path.join(ROOT, "topologies", "scenarios", "many.yaml")
MANY_TOPOLOGY = os.path.join(ROOT, "topologies", "many.yaml")


def tcp_scenario(traffic: str) -> str:
    return f"""\
        version: 1
        topology: {DEFAULT_TOPOLOGY}
        traffic: {traffic}
        mobile_nodes: {{mn1: {{targets: [ap-a2-1, ap-a1-1]}}}}
        modes: [mpa_buffer]
        """


def together(mobile_nodes: str, modes: str = "[mpa_buffer]", extra: str = "") -> str:
    """A scenario on the 10-MN topology: mn1 starts at ap1-1-1, mn2 at
    ap1-2-1, mn3 at ap1-1-2, ..."""
    return f"""\
        version: 1
        topology: {MANY_TOPOLOGY}
        traffic: {{from: cn1}}
        mobile_nodes: {mobile_nodes}
        modes: {modes}
        handovers: {{together: true, count: 2{extra}}}
        """


# -- TCP -------------------------------------------------------------------------

def test_the_tcp_scenario_streams_records_over_tcp_across_ten_buffered_handovers():
    scenario = load_scenario(TCP)
    t = scenario.traffic
    assert (t.protocol, t.rate_pps, t.size, t.throughput_window_ms) == ("tcp", 1000, 1000, 500)
    assert scenario.handovers == {MPA_BUFFER: 10, MPA_COPY_FORWARD: 2}
    assert scenario.to_dict()["traffic"]["protocol"] == "tcp"


def test_a_tcp_record_is_1000_bytes_by_default_and_may_be_larger_than_a_datagram(tmp_path):
    default = load_scenario(write(tmp_path, tcp_scenario("{from: cn1, protocol: tcp}")))
    assert default.traffic.size == 1000
    big = load_scenario(write(tmp_path, tcp_scenario(
        "{from: cn1, protocol: tcp, size: 8000, throughput_window_ms: 200}")))
    assert (big.traffic.size, big.traffic.throughput_window_ms) == (8000, 200)
    # UDP keeps its defaults.
    udp = load_scenario(write(tmp_path, tcp_scenario("{from: cn1}")))
    assert (udp.traffic.protocol, udp.traffic.size) == ("udp", 172)


@pytest.mark.parametrize("traffic, expected", [
    ("{from: cn1, protocol: sctp}", "traffic.protocol: 'sctp' is not one of udp, tcp"),
    ("{from: cn1, size: 2000}", "traffic.size: 2000 is out of range"),
    ("{from: cn1, protocol: tcp, size: 65508}", "traffic.size: 65508 is out of range"),
    ("{from: cn1, protocol: tcp, throughput_window_ms: 10}",
     "traffic.throughput_window_ms: 10 is out of range"),
    ("{from: cn1, throughput_window_ms: 500}",
     "traffic.throughput_window_ms: is for protocol tcp only"),
])
def test_a_tcp_mistake_is_reported_with_its_key_path(tmp_path, traffic, expected):
    lines = errors_of(tmp_path, tcp_scenario(traffic))
    assert any(line.startswith(expected) for line in lines), lines


# -- MNs moving together -------------------------------------------------------------

def test_many_moves_ten_mobile_nodes_at_once_in_each_moment():
    scenario = load_scenario(MANY)
    assert scenario.together and len(scenario.mobile_nodes) == 10
    moments = scenario.moments(MPA_BUFFER)
    assert len(moments) == 3 and all(len(m) == 10 for m in moments)
    assert moments[0][:2] == [("mn1", "ap1-2-6"), ("mn2", "ap1-1-6")]
    assert moments[1][:2] == [("mn1", "ap1-1-1"), ("mn2", "ap1-2-1")]
    assert moments[2] == moments[0]
    # The plan is the moments one after the other; a session keeps them apart.
    assert scenario.plan(MPA_BUFFER) == [move for m in moments for move in m]
    session = sessions(scenario)[0]
    assert [len(m) for m in session.moments] == [10, 10, 10] and len(session.plan) == 30
    assert scenario.to_dict()["together"] is True


def test_without_together_each_moment_is_one_handover_and_the_mns_take_turns(tmp_path):
    scenario = load_scenario(write(tmp_path, together(
        "{mn1: {targets: [ap1-1-9, ap1-1-1]}, mn2: {targets: [ap1-2-9, ap1-2-1]}}")
        .replace("together: true", "together: false")))
    assert scenario.moments(MPA_BUFFER) == [[("mn1", "ap1-1-9")], [("mn2", "ap1-2-9")]]
    assert [m for m in sessions(scenario)[0].moments] == [(("mn1", "ap1-1-9"),),
                                                          (("mn2", "ap1-2-9"),)]


@pytest.mark.parametrize("text, expected", [
    (together("{mn1: {targets: [ap1-2-9, ap1-1-1]}}"),
     "handovers.together: needs at least two mobile nodes to move together"),
    (together("{mn1: {targets: [ap1-2-9]}, mn2: {targets: [ap1-2-9]}}"),
     "mobile_nodes.mn2.targets: moment 1 of mpa_buffer would move mn2 and mn1 both to "
     "ap1-2-9"),
    # mn2 leaves ap1-2-1 in the moment mn1 would take it.
    (together("{mn1: {targets: [ap1-2-1, ap1-1-1]}, mn2: {targets: [ap1-1-9, ap1-2-1]}}"),
     "mobile_nodes.mn1.targets: moment 1 of mpa_buffer would move mn1 to ap1-2-1, where mn2 "
     "is until the moment starts"),
    # Its second target is where it is after the first: no move.
    (together("{mn1: {targets: [ap1-1-9, ap1-1-9]}, mn2: {targets: [ap1-2-9, ap1-2-1]}}"),
     "mobile_nodes.mn1.targets: moment 2 of mpa_buffer would move mn1 to ap1-1-9, where it "
     "already is"),
    (together("{mn1: {targets: [ap1-1-9, ap1-1-1]}, mn2: {targets: [ap1-2-9, ap1-2-1]}}",
              modes="[mpa_buffer, mpa_copy_forward]"),
     "modes[1]: mpa_copy_forward cannot run with handovers.together"),
    (together("{mn1: {targets: [ap1-1-9, ap1-1-1]}, mn2: {targets: [ap1-2-9, ap1-2-1]}}",
              modes="{mpa_copy_forward: null}"),
     "modes.mpa_copy_forward: mpa_copy_forward cannot run with handovers.together"),
    (together("{mn1: {targets: [ap1-1-9, ap1-1-1]}, mn2: {targets: [ap1-2-9, ap1-2-1]}}")
     .replace("together: true", "together: sometimes"),
     "handovers.together: "),
])
def test_a_mistake_in_moving_together_is_reported_with_its_key_path(tmp_path, text, expected):
    lines = errors_of(tmp_path, text)
    assert any(line.startswith(expected) for line in lines), lines


def test_mpa_lab_run_check_says_the_mns_move_together(tmp_path, capsys):
    from mpa_lab.cli import main as mpa_lab
    assert mpa_lab(["run", MANY, "--check", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "mpa_buffer: 30 handover(s) in 3 moments, every MN at once x 1" in out
    assert "to each of 10 MNs' home address" in out

"""Scenario files (mpa_lab/experiment/scenario.py): what a valid one becomes, and
every mistake reported with its key path before anything runs."""

from __future__ import annotations

import os

import pytest

from support.paths import DEFAULT_TOPOLOGY, ROOT
from support.scenario_files import errors_of, write
from mpa_protocol.schema import ConfigError
from mpa_lab.cli import main as mpa_lab
from mpa_mn.dad import DadSettings
from mpa_lab.experiment.scenario import (MODES, MPA, MPA_BICAST, MPA_BUFFER, MPA_COPY_FORWARD,
                                         REACTIVE, default_standby_mac, load_scenario)

DEMO = os.path.join(ROOT, "topologies", "scenarios", "demo.yaml")
INTER_DOMAIN = os.path.join(ROOT, "topologies", "scenarios", "inter_domain.yaml")
INTER_DOMAIN_TOPOLOGY = os.path.join(ROOT, "topologies", "inter_domain.yaml")
BASE = f"""\
version: 1
topology: {DEFAULT_TOPOLOGY}
traffic: {{from: cn1}}
mobile_nodes: {{mn1: {{targets: [ap-a2-1, ap-a1-1]}}}}
modes: [mpa_buffer]
"""


def with_lines(**replace) -> str:
    """BASE with whole top-level lines replaced (key -> new text, or None to drop)."""
    lines = []
    for line in BASE.splitlines(keepends=True):
        key = line.split(":", 1)[0]
        if key in replace:
            if replace[key] is not None:
                lines.append(replace.pop(key) + "\n")
            continue
        lines.append(line)
    return "".join(lines) + "".join(v + "\n" for v in replace.values() if v is not None)


def test_the_demo_scenario_runs_every_mode_ten_times_at_100_packets_a_second():
    scenario = load_scenario(DEMO)
    assert scenario.name == "demo"
    assert scenario.topology_path == DEFAULT_TOPOLOGY
    assert scenario.modes == MODES
    assert scenario.handovers == {mode: 10 for mode in MODES}
    assert (scenario.traffic.source, scenario.traffic.rate_pps) == ("cn1", 100)
    assert scenario.dad == DadSettings()   # RFC 5227's constants
    assert scenario.link_layer_ms == 4.0   # RFC 6252's testbed's link layer
    assert scenario.plan(MPA_BUFFER)[:4] == [("mn1", "ap-a2-1"), ("mn1", "ap-b1-1"),
                                             ("mn1", "ap-a1-1"), ("mn1", "ap-a2-1")]
    # Each loss starts where mn1 starts: its second interface goes elsewhere.
    assert scenario.plan(MPA_COPY_FORWARD)[:3] == [("mn1", "ap-a2-1"), ("mn1", "ap-b1-1"),
                                                   ("mn1", "ap-a2-1")]


def test_defaults_and_a_topology_path_relative_to_the_scenario(tmp_path):
    path = write(tmp_path, with_lines(topology="topology: " + os.path.relpath(
        DEFAULT_TOPOLOGY, tmp_path)), name="ping-pong.yaml")
    scenario = load_scenario(path)
    assert scenario.name == "ping-pong"
    assert scenario.topology_path == DEFAULT_TOPOLOGY
    assert scenario.handovers == {MPA_BUFFER: 10}
    assert (scenario.repetitions, scenario.interval_s, scenario.channel) == (1, 1.0, "inband")
    assert scenario.traffic.size == 172 and scenario.traffic.protocol == "udp"
    # A ping-pong between two PoAs; the standby goes wherever the MN does not start.
    assert scenario.plan(MPA_BUFFER)[:3] == [("mn1", "ap-a2-1"), ("mn1", "ap-a1-1"),
                                             ("mn1", "ap-a2-1")]
    assert scenario.mobile_node("mn1").standby_poas == ("ap-a2-1",)
    assert scenario.mobile_node("mn1").standby_mac == default_standby_mac("mn1")


def test_modes_as_a_mapping_set_their_own_counts(tmp_path):
    scenario = load_scenario(write(tmp_path, with_lines(
        modes="modes: {reactive: {handovers: 2}, mpa_buffer: null}",
        handovers="handovers: {count: 4, interval_s: 0.2, warmup_s: 0}")))
    assert scenario.modes == (REACTIVE, MPA_BUFFER)
    assert scenario.handovers == {REACTIVE: 2, MPA_BUFFER: 4}
    assert (scenario.interval_s, scenario.warmup_s) == (0.2, 0.0)


@pytest.mark.parametrize("replace, expected", [
    ({"version": "version: 2"}, "version: must be 1, not 2"),
    ({"version": "version: 1.0"}, "version: must be 1, not 1.0"),   # as a topology's
    ({"version": "version: true"}, "version: must be 1, not True"),
    ({"version": None}, "version: is required"),
    ({"colour": "colour: red"}, "colour: unknown key"),
    ({"topology": "topology: nowhere.yaml"}, "topology: "),
    ({"traffic": "traffic: {from: mn1}"}, "traffic.from: 'mn1' is not a correspondent"),
    ({"traffic": "traffic: {from: cn1, protocol: sctp}"}, "traffic.protocol: 'sctp' is not"),
    ({"traffic": "traffic: {from: cn1, rate_pps: 0}"}, "traffic.rate_pps: 0 is out of range"),
    ({"traffic": "traffic: {from: cn1, size: 9000}"}, "traffic.size: 9000 is out of range"),
    ({"traffic": "traffic: {from: cn1, rate: 5}"}, "traffic.rate: unknown key"),
    ({"mobile_nodes": "mobile_nodes: {mn9: {targets: [ap-a2-1]}}"},
     "mobile_nodes.mn9: is not a mobile node"),
    ({"mobile_nodes": "mobile_nodes: {mn1: {targets: [ap-z]}}"},
     "mobile_nodes.mn1.targets[0]: 'ap-z' is not a PoA"),
    ({"mobile_nodes": "mobile_nodes: {mn1: {targets: [cn-port]}}"},
     "mobile_nodes.mn1.targets[0]: cn-port is in net-cn, which is not an access network"),
    ({"mobile_nodes": "mobile_nodes: {mn1: {targets: []}}"},
     "mobile_nodes.mn1.targets: must be a non-empty list"),
    ({"mobile_nodes": "mobile_nodes: {mn1: {targets: [ap-a1-1, ap-a2-1]}}"},
     "handover 1 of mpa_buffer would move mn1 to ap-a1-1, where it already is"),
    ({"mobile_nodes": "mobile_nodes: {mn1: {targets: [ap-a2-1, ap-b1-1, ap-a2-1]}}"},
     "handover 4 of mpa_buffer would move mn1 to ap-a2-1, where it already is"),
    ({"mobile_nodes": "mobile_nodes: {mn1: {targets: [ap-a2-1], standby: {poas: [ap-a1-1]}}}"},
     "mobile_nodes.mn1.standby.poas: ap-a1-1 is where mn1 starts"),
    ({"mobile_nodes": "mobile_nodes: {mn1: {targets: [ap-a2-1], standby: {mac: 'ff:00:00:00:00:01'}}}"},
     "mobile_nodes.mn1.standby.mac: ff:00:00:00:00:01 is a multicast address"),
    ({"modes": "modes: [mpa_buffer, teleport]"}, "modes[1]: 'teleport' is not a mode"),
    ({"modes": "modes: [mpa_buffer, mpa_buffer]"}, "modes[1]: mpa_buffer is listed twice"),
    ({"modes": "modes: []"}, "modes: must name at least one mode"),
    ({"modes": "modes: mpa_buffer"}, "modes: must be a list of modes"),
    ({"modes": "modes: {mpa_buffer: {handovers: 0}}"},
     "modes.mpa_buffer.handovers: 0 is out of range"),
    ({"handovers": "handovers: {count: 5000}"}, "handovers.count: 5000 is out of range"),
    ({"handovers": "handovers: {interval_s: -1}"}, "handovers.interval_s: -1 is out of range"),
    ({"handovers": "handovers: {count: 2, every: 1}"}, "handovers.every: unknown key"),
    ({"repetitions": "repetitions: 0"}, "repetitions: 0 is out of range"),
    ({"channel": "channel: carrier-pigeon"}, "channel: 'carrier-pigeon' is not one of"),
    ({"controllers": "controllers: two"}, "controllers: 'two' is not one of one, per-domain"),
    # two_domains.yaml names no controller ports per domain.
    ({"controllers": "controllers: per-domain"},
     "controllers: per-domain needs each domain's controller ports: the topology gives no "
     "domains.domain-a.controller.openflow_port"),
    ({"reactive": "reactive: {dad: {probe_min_s: 3, probe_max_s: 2}}"},
     "reactive.dad: DAD waits are not negative, and the least wait between probes is at most "
     "the most"),
    ({"reactive": "reactive: {dad: {probe_num: 11}}"},
     "reactive.dad.probe_num: 11 is out of range"),
    ({"reactive": "reactive: {dad: {announce_num: 0}}"},
     "reactive.dad.announce_num: 0 is out of range"),
    ({"reactive": "reactive: {dad: {probes: 3}}"}, "reactive.dad.probes: unknown key"),
    ({"copy_forward": "copy_forward: {loss_after_s: 0}"},
     "copy_forward.loss_after_s: 0 is out of range"),
    ({"link_layer_ms": "link_layer_ms: -1"}, "link_layer_ms: -1 is out of range"),
    ({"link_layer_ms": "link_layer_ms: fast"}, "link_layer_ms: must be a number"),
])
def test_a_mistake_is_reported_with_its_key_path(tmp_path, replace, expected):
    assert any(expected in line for line in errors_of(tmp_path, with_lines(**replace))), \
        errors_of(tmp_path, with_lines(**replace))


def test_reactive_dad_takes_dad_settings_by_their_names(tmp_path):
    scenario = load_scenario(write(tmp_path, with_lines(reactive=(
        "reactive: {dad: {probe_num: 0, probe_wait_s: 0.1, probe_min_s: 0, probe_max_s: 0,"
        " announce_wait_s: 0.5, announce_num: 1, announce_interval_s: 0.2,"
        " max_conflicts: 3}}"))))
    assert scenario.dad == DadSettings(probe_wait_s=0.1, probe_num=0, probe_min_s=0.0,
                                       probe_max_s=0.0, announce_wait_s=0.5, announce_num=1,
                                       announce_interval_s=0.2, max_conflicts=3)
    assert scenario.to_dict()["dad"]["probe_num"] == 0


def test_handovers_that_is_not_a_mapping_is_one_mistake(tmp_path):
    assert errors_of(tmp_path, with_lines(handovers="handovers: 5")) == [
        "handovers: must be a mapping, not an integer"]


def test_every_mistake_is_reported_at_once(tmp_path):
    lines = errors_of(tmp_path, with_lines(traffic="traffic: {from: cn1, rate_pps: 0}",
                                           repetitions="repetitions: 0",
                                           channel="channel: x"))
    assert len(lines) == 3


def test_two_mobile_nodes_never_meet_at_one_poa(tmp_path, topology):
    # A topology with two MNs, the second starting at ap-b1-1.
    anchor = "        credentials: /run/mpa-lab/aaa/mn1.yaml}"
    text = open(DEFAULT_TOPOLOGY).read()
    assert anchor in text
    two = tmp_path / "two.yaml"
    two.write_text(text.replace(anchor, anchor + "\n"
                                "  mn2: {mac: \"02:00:00:00:01:03\", attach: ap-b1-1, "
                                "identity: mn2@domain-a,\n"
                                "        home_address: 10.255.0.2, "
                                "credentials: /run/mpa-lab/aaa/mn2.yaml}"))
    lines = errors_of(tmp_path, with_lines(
        topology=f"topology: {two}",
        mobile_nodes="mobile_nodes: {mn1: {targets: [ap-b1-1, ap-a1-1]}, "
                     "mn2: {targets: [ap-a2-1, ap-b1-1]}}"))
    assert any("handover 1 of mpa_buffer would move mn1 to ap-b1-1, where mn2 is" in line
               for line in lines), lines
    scenario = load_scenario(write(tmp_path, with_lines(
        topology=f"topology: {two}",
        mobile_nodes="mobile_nodes: {mn1: {targets: [ap-a2-1, ap-a1-1]}, "
                     "mn2: {targets: [ap-b1-2, ap-b1-1]}}")))
    # The MNs take turns.
    assert scenario.plan(MPA_BUFFER)[:4] == [("mn1", "ap-a2-1"), ("mn2", "ap-b1-2"),
                                             ("mn1", "ap-a1-1"), ("mn2", "ap-b1-1")]


def test_bad_yaml_and_unreadable_files_are_errors_not_crashes(tmp_path):
    assert any("not valid YAML" in line for line in errors_of(tmp_path, "version: [1\n"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_scenario(str(tmp_path / "missing.yaml"))
    assert any("must be a mapping" in line for line in errors_of(tmp_path, "- 1\n"))


def test_mpa_lab_run_check_prints_the_plan_and_runs_nothing(tmp_path, capsys):
    assert mpa_lab(["run", DEMO, "--check", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert "mpa_copy_forward: 10 handover(s) x 1: mn1->ap-a2-1 mn1->ap-b1-1" in out
    assert "50 handovers in all" in out
    assert not (tmp_path / "out").exists()


def test_mpa_lab_run_refuses_a_bad_scenario_with_status_2(tmp_path, capsys):
    path = write(tmp_path, with_lines(repetitions="repetitions: 0"))
    assert mpa_lab(["run", path, "--check"]) == 2
    assert "repetitions: 0 is out of range" in capsys.readouterr().err


# -- one controller per domain --------------------------------------------------------------

def per_domain(**replace) -> str:
    """BASE on the inter-domain topology with one controller per domain."""
    return with_lines(**{"topology": f"topology: {INTER_DOMAIN_TOPOLOGY}",
                         "controllers": "controllers: per-domain", **replace})


def test_the_inter_domain_scenario_runs_one_controller_per_domain():
    scenario = load_scenario(INTER_DOMAIN)
    assert (scenario.name, scenario.controllers, scenario.per_domain) == (
        "inter-domain", "per-domain", True)
    assert scenario.topology_path == INTER_DOMAIN_TOPOLOGY
    assert scenario.modes == (REACTIVE, MPA, MPA_BUFFER, MPA_COPY_FORWARD, MPA_BICAST)
    assert scenario.traffic.rate_pps == 100
    assert scenario.to_dict()["controllers"] == "per-domain"
    # Copy-and-forward: from home, to a second interface within the domain, then abroad.
    assert scenario.moves(MPA_COPY_FORWARD) == [("mn1", "ap-a1-1", "ap-a2-1"),
                                                ("mn1", "ap-a1-1", "ap-b1-1")]
    # Intra-domain, then inter-domain there and back, in every other mode.
    for mode in (m for m in scenario.modes if m != MPA_COPY_FORWARD):
        moves = scenario.moves(mode)
        assert moves[:3] == [("mn1", "ap-a1-1", "ap-a2-1"), ("mn1", "ap-a2-1", "ap-b1-1"),
                             ("mn1", "ap-b1-1", "ap-a1-1")]
        assert [scenario.domain_of_poa(here) != scenario.domain_of_poa(poa)
                for _, here, poa in moves] == [False, True, True] * (len(moves) // 3)


def test_one_controller_is_the_default():
    scenario = load_scenario(DEMO)
    assert (scenario.controllers, scenario.per_domain) == ("one", False)


def test_every_mode_crosses_domains_with_one_controller_per_domain(tmp_path):
    scenario = load_scenario(write(tmp_path, per_domain(
        modes="modes: [mpa_buffer, mpa_copy_forward, mpa_bicast]",
        mobile_nodes="mobile_nodes: {mn1: {targets: [ap-a2-1, ap-b1-1, ap-a1-1]}}")))
    assert scenario.modes == (MPA_BUFFER, MPA_COPY_FORWARD, MPA_BICAST)
    assert ("mn1", "ap-a1-1", "ap-b1-1") in scenario.moves(MPA_COPY_FORWARD)
    assert ("mn1", "ap-b1-1", "ap-a1-1") in scenario.moves(MPA_BICAST)


@pytest.mark.parametrize("modes, path", [("[mpa, mpa_copy_forward]", "modes[1]"),
                                         ("{mpa_copy_forward: null}", "modes.mpa_copy_forward")])
def test_copy_and_forward_from_outside_the_home_domain_is_refused_per_domain(tmp_path, modes,
                                                                            path):
    topology = inter_domain_topology(tmp_path, ("attach: ap-a1-1", "attach: ap-b1-2"))
    lines = errors_of(tmp_path, per_domain(
        topology=f"topology: {topology}", modes=f"modes: {modes}",
        mobile_nodes="mobile_nodes: {mn1: {targets: [ap-a1-1, ap-b1-1], "
                     "standby: {poas: [ap-a1-1]}}}"))
    assert lines == [f"{path}: handover 1 of mpa_copy_forward starts mn1 at ap-b1-2 (domain-b): "
                     "with one controller per domain, copy-and-forward copies at the active "
                     "interface's PoA, which must be in mn1's home domain (domain-a), the one "
                     "that keeps its binding: docs/inter-domain.md"]


def test_modes_not_built_across_domains_run_within_one(tmp_path):
    scenario = load_scenario(write(tmp_path, per_domain(
        modes="modes: [mpa_bicast, mpa_copy_forward]",
        mobile_nodes="mobile_nodes: {mn1: {targets: [ap-a2-1, ap-a1-1]}}")))
    assert scenario.modes == (MPA_BICAST, MPA_COPY_FORWARD)


def test_with_one_controller_every_mode_crosses_domains(tmp_path):
    scenario = load_scenario(write(tmp_path, with_lines(
        topology=f"topology: {INTER_DOMAIN_TOPOLOGY}", modes="modes: [mpa_bicast]",
        mobile_nodes="mobile_nodes: {mn1: {targets: [ap-a2-1, ap-b1-1, ap-a1-1]}}")))
    assert scenario.controllers == "one"


def inter_domain_topology(tmp_path, *replace: tuple[str, str]) -> str:
    """The inter-domain topology with each (old, new) of ``replace`` done
    (the files it names are absolute paths: it can be written anywhere)."""
    text = open(INTER_DOMAIN_TOPOLOGY).read()
    for old, new in replace:
        assert old in text
        text = text.replace(old, new)
    path = tmp_path / "topology.yaml"
    path.write_text(text)
    return str(path)


NO_DOMAIN = ("core-a: {dpid: 0x1, domain: domain-a}", "core-a: {dpid: 0x1}")
NO_PHT_PORTS = (", pht_port: 100}", "}")


def test_a_switch_of_no_domain_is_refused_with_one_controller_per_domain(tmp_path):
    topology = inter_domain_topology(tmp_path, NO_DOMAIN, NO_PHT_PORTS)
    lines = errors_of(tmp_path, per_domain(topology=f"topology: {topology}"))
    assert lines == ["controllers: per-domain needs each switch's domain: the topology's "
                     "switches.core-a.domain is needed to serve one domain: the switch is no "
                     "network's AR and holds no PoA, or holds those of several domains"]
    load_scenario(write(tmp_path, with_lines(topology=f"topology: {topology}")))   # one: fine


def test_a_topology_whose_tunnels_the_lab_cannot_build_is_refused_in_any_mode(tmp_path):
    """The lab gives the pht ports' VXLAN endpoints routes by domain, whatever
    the controllers."""
    topology = inter_domain_topology(tmp_path, NO_DOMAIN)
    for text in (per_domain(topology=f"topology: {topology}"),
                 with_lines(topology=f"topology: {topology}")):
        lines = errors_of(tmp_path, text)
        assert any(line.startswith(f"topology: {topology}: the lab cannot build it: ")
                   and "switches.core-a.domain" in line for line in lines), lines


def test_a_correspondent_outside_the_mn_s_home_domain_is_refused_per_domain(tmp_path):
    topology = inter_domain_topology(tmp_path, (
        "  cn1: {poa: cn-port",
        '  cn2: {poa: ap-b1-2, address: 10.2.1.10, mac: "02:00:00:00:0c:02"}\n'
        "  cn1: {poa: cn-port"))
    lines = errors_of(tmp_path, per_domain(topology=f"topology: {topology}",
                                           traffic="traffic: {from: cn2}"))
    assert lines == ["traffic.from: cn2 is in domain-b, and mn1's home domain (its identity's "
                     "realm) is domain-a: a correspondent outside the MN's home domain is not "
                     "built yet across domains: docs/inter-domain.md"]


def test_mpa_lab_run_check_says_the_controllers_and_which_handovers_cross(capsys):
    assert mpa_lab(["run", INTER_DOMAIN, "--check"]) == 0
    out = capsys.readouterr().out
    assert ("controllers: one per domain: domain-a (OpenFlow :6653, REST :8080), domain-b "
            "(OpenFlow :6654, REST :8081)") in out
    assert "mpa: 6 handover(s) x 1: mn1->ap-a2-1 mn1->ap-b1-1* mn1->ap-a1-1* " in out
    assert "(* from one domain to another)" in out


def test_mpa_lab_run_per_domain_takes_its_ports_from_the_topology(capsys):
    assert mpa_lab(["run", INTER_DOMAIN, "--rest-port", "9000"]) == 2
    assert ("controllers: per-domain takes each controller's ports from the topology's "
            "domains.ID.controller, not --ofp-port or --rest-port") in capsys.readouterr().err


def test_link_layer_ms_overrides_the_topology_s_link_layer_time_for_every_move(tmp_path):
    assert load_scenario(write(tmp_path, BASE)).link_layer_ms is None   # the topology's
    scenario = load_scenario(write(tmp_path, with_lines(link_layer_ms="link_layer_ms: 4")))
    assert scenario.link_layer_ms == 4.0
    assert scenario.to_dict()["link_layer_ms"] == 4.0


def test_poa_ports_are_per_station_unless_the_scenario_says_they_stay_up(tmp_path):
    assert load_scenario(write(tmp_path, BASE)).poa_ports == "per_station"
    scenario = load_scenario(write(tmp_path, with_lines(poa_ports="poa_ports: stay_up")))
    assert scenario.poa_ports == "stay_up" and scenario.to_dict()["poa_ports"] == "stay_up"


def test_poa_ports_must_be_a_model_the_lab_has(tmp_path):
    assert errors_of(tmp_path, with_lines(poa_ports="poa_ports: down")) == [
        "poa_ports: 'down' is not one of per_station, stay_up"]

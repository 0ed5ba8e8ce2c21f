"""A session's controller(s) for ``mpa-lab run`` (mpa_lab/experiment/controllers.py):
one for every domain, or one per domain on its own ports, and what is read
of each.  No process starts: the processes are built, or stand-ins."""

from __future__ import annotations

import os

import pytest

from support.paths import ROOT
from mpa_lab.experiment.controllers import SessionControllers
from mpa_lab.experiment.scenario import load_scenario

SCENARIOS = os.path.join(ROOT, "topologies", "scenarios")


def path(sub, name):
    return f"/out/{sub}/{name}"


def test_per_domain_each_domain_s_controller_on_its_topology_ports():
    scenario = load_scenario(os.path.join(SCENARIOS, "inter_domain.yaml"))
    controllers = SessionControllers.for_session(scenario, path, "mpa", ofp_port=1,
                                                 rest_port=2, log_level="INFO")
    assert controllers.per_domain
    assert [(p.domain, p.ofp_port, p.rest_port, p.log_path, p.state_db, p.rest_host)
            for p in controllers.processes] == [
        ("domain-a", 6653, 8080, "/out/logs/controller-mpa-domain-a.log",
         "/out/state/mpa-domain-a.db", "0.0.0.0"),
        ("domain-b", 6654, 8081, "/out/logs/controller-mpa-domain-b.log",
         "/out/state/mpa-domain-b.db", "0.0.0.0")]
    assert controllers.lab_controllers() == {"domain-a": ("127.0.0.1", 6653),
                                             "domain-b": ("127.0.0.1", 6654)}


def test_one_controller_on_the_ports_given():
    scenario = load_scenario(os.path.join(SCENARIOS, "demo.yaml"))
    controllers = SessionControllers.for_session(scenario, path, "mpa", ofp_port=1,
                                                 rest_port=2, log_level="INFO")
    [one] = controllers.processes
    assert (one.domain, one.ofp_port, one.rest_port, one.log_path) == (
        None, 1, 2, "/out/logs/controller-mpa.log")
    assert not controllers.per_domain and controllers.lab_controllers() is None


class StandIn:
    """What the session reads of a ControllerProcess."""

    def __init__(self, domain, rest_port, answers=True):
        self.domain, self.rest_port, self.answers = domain, rest_port, answers
        self.waited = None

    def get(self, path):
        if not self.answers:
            raise OSError("connection refused")
        assert path == "/mpa/v1/handovers"
        return [{"id": 1, "domain": self.domain}]

    def counters(self):
        if not self.answers:
            raise RuntimeError("GET /mpa/v1/counters: 503")
        return {"handover_completed": self.rest_port}

    def mobile_nodes(self):
        return [{"identity": "mn1@domain-a", "seen_by": self.domain}]

    def wait_switches(self, ids=None):
        self.waited = ids


class Lab:
    topology = None

    def switches_of(self, domain):
        return [f"{domain}-switch"]


def test_per_domain_records_and_counters_are_each_domain_s_and_a_silent_one_has_none():
    a, b = StandIn("domain-a", 8080), StandIn("domain-b", 8081, answers=False)
    controllers = SessionControllers([a, b])
    assert controllers.handovers() == {"domain-a": [{"id": 1, "domain": "domain-a"}]}
    assert controllers.counters() == {"domain-a": {"handover_completed": 8080}}
    controllers.wait_switches(Lab())
    assert (a.waited, b.waited) == (["domain-a-switch"], ["domain-b-switch"])


def test_one_controller_s_records_are_keyed_none_and_its_counters_flat():
    one = StandIn(None, 8080)
    controllers = SessionControllers([one])
    assert controllers.handovers() == {None: [{"id": 1, "domain": None}]}
    assert controllers.counters() == {"handover_completed": 8080}
    controllers.wait_switches(Lab())
    assert one.waited is None          # every switch it lists


def test_the_driver_per_domain_tells_each_rest_api_and_reads_each_controller(tmp_path):
    controllers = SessionControllers([StandIn("domain-a", 8080), StandIn("domain-b", 8081)])
    driver = controllers.driver(Lab(), str(tmp_path), "inband")
    assert driver.domain_rest_ports == {"domain-a": 8080, "domain-b": 8081}
    assert driver.rest_port == 8080 and driver.mobile_nodes is None
    assert driver.domains["domain-b"].mobile_nodes()[0]["seen_by"] == "domain-b"


def test_the_driver_of_one_controller_reads_it_alone(tmp_path):
    controllers = SessionControllers([StandIn(None, 8080)])
    driver = controllers.driver(Lab(), str(tmp_path), "rest")
    assert driver.domain_rest_ports is None and driver.domains is None
    assert driver.mobile_nodes()[0]["seen_by"] is None


@pytest.mark.parametrize("domains", [[], [None, "domain-a"], ["domain-a", "domain-a"]])
def test_one_controller_or_one_per_domain_nothing_else(domains):
    with pytest.raises(ValueError):
        SessionControllers([StandIn(d, 1) for d in domains])

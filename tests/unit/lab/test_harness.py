"""The lab's controller process (mpa_lab/net/controller_process.py), where it needs no lab."""

import os
import socket

import pytest

from support.paths import ROOT
from mpa_lab.net.controller_process import ControllerProcess
from mpa_sdn.config import load_topology


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_controller_that_does_not_come_up_leaves_nothing_behind(tmp_path):
    controller = ControllerProcess(str(tmp_path / "no-such-topology.yaml"),
                                   ofp_port=free_port(), rest_port=free_port(),
                                   log_path=str(tmp_path / "controller.log"))
    made = []
    make_tokens = controller._make_tokens
    controller._make_tokens = lambda: made.append(os.path.dirname(make_tokens())) or \
        os.path.join(made[-1], "api-tokens.yaml")
    with pytest.raises(RuntimeError, match="exited with 2"):
        controller.start(timeout_s=20)
    assert controller.process is None and controller.tokens == {}
    assert not os.path.exists(made[0]), "its tokens directory is gone"


def test_a_controller_that_cannot_listen_says_so(tmp_path):
    """Another process on its OpenFlow port (a controller the engine started
    beside the demo's, say): the lab stops with the controller's own reason,
    not later with switches that talk to the other one."""
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        controller = ControllerProcess(os.path.join(ROOT, "topologies", "two_domains.yaml"),
                                       ofp_port=port, rest_port=free_port(),
                                       state_db=":memory:",
                                       log_path=str(tmp_path / "controller.log"))
        with pytest.raises(RuntimeError) as refused:
            controller.start(timeout_s=20)
    assert f"exited with 2: OpenFlow: cannot listen on 0.0.0.0:{port} (Address already in use)" \
        in str(refused.value)
    assert str(tmp_path / "controller.log") in str(refused.value)


def test_a_controller_for_one_domain_is_started_with_it(tmp_path):
    """--domain reaches mpa-controller: a domain the topology lacks is refused."""
    log = tmp_path / "controller.log"
    controller = ControllerProcess(os.path.join(ROOT, "topologies", "inter_domain.yaml"),
                                   ofp_port=free_port(), rest_port=free_port(),
                                   log_path=str(log), domain="domain-z")
    with pytest.raises(RuntimeError, match="mpa-controller --domain domain-z exited with 2"):
        controller.start(timeout_s=20)
    assert "'domain-z' is not a domain of the topology" in log.read_text()


def test_the_lab_per_domain_puts_each_switch_on_its_own_domain_s_controller():
    from mpa_lab.net.lab import Lab
    topology = load_topology(os.path.join(ROOT, "topologies", "inter_domain.yaml"))
    lab = Lab(topology, controllers={"domain-a": ("127.0.0.1", 6653),
                                     "domain-b": ("127.0.0.2", 6654)})
    assert {name: (c.ip, c.port, c.domain) for name, c in lab.controllers.items()} == {
        "c-domain-a": ("127.0.0.1", 6653, "domain-a"),
        "c-domain-b": ("127.0.0.2", 6654, "domain-b")}
    assert str(lab.controllers["c-domain-b"]) == "domain-b's controller (127.0.0.2:6654)"
    assert lab.controller_of == {
        **dict.fromkeys(("core-a", "cn-ar", "ar-a1", "ar-a2"), "c-domain-a"),
        **dict.fromkeys(("core-b", "ar-b1", "ap-b1"), "c-domain-b")}
    assert lab.switches_of("domain-b") == ["ap-b1", "ar-b1", "core-b"]
    with pytest.raises(ValueError, match="no controller given for domain-b"):
        Lab(topology, controllers={"domain-a": ("127.0.0.1", 6653)})
    single = Lab(topology, controller_port=6700)
    assert [str(c) for c in single.controllers.values()] == ["the controller (127.0.0.1:6700)"]
    assert single.switches_of(None) == sorted(topology.switches)

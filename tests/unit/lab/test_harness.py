"""The lab's controller process (mpa_lab/net/controller_process.py), where it needs no lab."""

import os
import socket

import pytest

from mpa_lab.net.controller_process import ControllerProcess


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

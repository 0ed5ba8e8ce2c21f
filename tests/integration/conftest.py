"""Integration fixtures: real Open vSwitch, Mininet and the controller process.

These tests never skip themselves: `make test` is meant to run them, as root,
on a machine `make setup` prepared.  Missing prerequisites fail loudly.
"""

import pytest

from support.lab_rig import missing_prerequisites, running_controller, running_lab


@pytest.fixture(scope="session")
def prerequisites():
    problems = missing_prerequisites()
    if problems:
        pytest.fail("integration tests need root, Open vSwitch and Mininet (run `make test` "
                    "as root; `make unit` runs the rest): " + "; ".join(problems))


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="module")
def controller(prerequisites, log_dir):
    with running_controller(log_dir) as process:
        yield process


@pytest.fixture(scope="module")
def lab(controller, topology):
    with running_lab(controller, topology) as lab:
        yield lab

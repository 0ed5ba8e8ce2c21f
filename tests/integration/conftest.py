"""Integration fixtures: real Open vSwitch, Mininet and the controller process.

These tests never skip themselves: `make test` is meant to run them, as root,
on a machine `make setup` prepared.  Missing prerequisites fail loudly.
"""

import pytest

from support.lab_rig import (missing_prerequisites, running_aaa, running_controller,
                             running_lab, write_test_topology)
from support.paths import DEFAULT_TOPOLOGY


@pytest.fixture(scope="session")
def prerequisites():
    problems = missing_prerequisites()
    if problems:
        pytest.fail("integration tests need root, Open vSwitch and Mininet (run `make test` "
                    "as root; `make unit` runs the rest): " + "; ".join(problems))


@pytest.fixture(scope="session")
def tshark_installed():
    """The capture checks need tshark, which make installs: never skipped."""
    from support import tshark
    if tshark.TSHARK is None:
        pytest.fail("tshark missing: run scripts/install-system.sh as root (make does)")


@pytest.fixture(scope="session")
def log_dir(tmp_path_factory):
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def lab_topology_file(tmp_path_factory) -> str:
    """The default lab's topology with its AAA servers on free ports and
    their secrets and the MNs' credentials in the session's directory."""
    return write_test_topology(DEFAULT_TOPOLOGY,
                               tmp_path_factory.mktemp("lab") / "two_domains.yaml")


@pytest.fixture(scope="session")
def aaa(prerequisites, lab_topology_file):
    """Each domain's FreeRADIUS for ``lab_topology_file``, for the session."""
    with running_aaa(lab_topology_file) as servers:
        yield servers


@pytest.fixture(scope="session")
def topology(lab_topology_file):
    """The integration tests' lab topology (the default lab's, AAA apart)."""
    from mpa_sdn.config import load_topology
    return load_topology(lab_topology_file)


@pytest.fixture(scope="module")
def controller(prerequisites, log_dir, aaa, lab_topology_file):
    with running_controller(log_dir, config=lab_topology_file) as process:
        yield process


@pytest.fixture(scope="module")
def lab(controller, topology):
    with running_lab(controller, topology) as lab:
        yield lab

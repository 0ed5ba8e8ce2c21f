"""The lab for integration tests: real Open vSwitch, Mininet and the controller
process on ports apart from the defaults; each domain's FreeRADIUS on free
ports of loopback, its secret and the MNs' credentials in the test's own
directory (so neither a demo nor another test run is any bother); fixture
factories for a variant topology and a controller the MNs reach over REST;
and polls with deadlines."""

import contextlib
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest
import yaml

from support.paths import DEFAULT_TOPOLOGY

# Ports apart from the defaults so a demo running beside the tests is no bother.
OFP_PORT = 16653
REST_PORT = 18080


def missing_prerequisites() -> list[str]:
    """What this machine lacks for the integration tests (nothing: an empty list)."""
    problems = []
    if os.geteuid() != 0:
        problems.append("not root")
    if shutil.which("ovs-vsctl") is None:
        problems.append("Open vSwitch is not installed")
    elif subprocess.run(["ovs-vsctl", "--timeout=3", "show"], capture_output=True).returncode:
        problems.append("Open vSwitch is not running (make setup starts it)")
    try:
        __import__("mininet.net")  # only whether it imports
    except ImportError as exc:
        problems.append(f"Mininet cannot be imported ({exc})")
    return problems


def free_udp_port() -> int:
    """A UDP port of loopback nothing holds now (the kernel's pick)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def with_test_aaa(raw: dict, directory) -> dict:
    """``raw`` (a topology as loaded from YAML) with each domain's RADIUS
    server on a free port of loopback, its secret file and each MN's
    credentials file under ``directory``: the lab's AAA servers
    (mpa_lab/aaa/lab_servers.py) go there for the test."""
    directory = Path(directory)
    for did, domain in raw["domains"].items():
        domain["radius"] = {"servers": [{"address": "127.0.0.1", "port": free_udp_port(),
                                         "secret_file": str(directory / did / "secret")}]}
    for mid, mn in raw["mobile_nodes"].items():
        mn["credentials"] = str(directory / f"{mid}.yaml")
    return raw


def write_test_topology(source: str, path, directory=None, **mpa) -> str:
    """``source``'s topology with_test_aaa (under ``directory``, default
    beside ``path``) and other ``mpa:`` settings, written to ``path``."""
    path = Path(path)
    raw = yaml.safe_load(open(source, encoding="utf-8"))
    with_test_aaa(raw, directory or path.parent / f"{path.stem}-aaa")
    if mpa:
        raw.setdefault("mpa", {}).update(mpa)
    path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
    return str(path)


@contextlib.contextmanager
def running_aaa(topology_file: str):
    """The lab's AAA servers for ``topology_file``, started, stopped after."""
    from mpa_lab.aaa.lab_servers import LabAaa
    from mpa_sdn.config import load_topology
    with LabAaa(load_topology(topology_file)) as aaa:
        yield aaa


def variant_fixtures(name: str, **mpa):
    """Module fixtures ``topology_file`` and ``topology``: the integration
    tests' lab topology (``lab_topology_file``, whose AAA servers run for the
    session) with other ``mpa:`` settings, written as ``name``.  Assign both
    to module names."""
    @pytest.fixture(scope="module", name="topology_file")
    def topology_file(tmp_path_factory, lab_topology_file, aaa) -> str:
        raw = yaml.safe_load(open(lab_topology_file, encoding="utf-8"))
        raw.setdefault("mpa", {}).update(mpa)
        path = tmp_path_factory.mktemp("topology") / name
        path.write_text(yaml.safe_dump(raw, sort_keys=False), encoding="utf-8")
        return str(path)

    @pytest.fixture(scope="module", name="topology")
    def topology(topology_file):
        from mpa_sdn.config import load_topology
        return load_topology(topology_file)
    return topology_file, topology


@contextlib.contextmanager
def running_controller(log_dir, name: str = "controller", config: str = DEFAULT_TOPOLOGY,
                       **options):
    """``config``: a topology whose domains' AAA servers run (and whose
    secret files exist), as the controller exits 2 without them."""
    """The controller process, its state file and log in ``log_dir``; stops cleanly or fails."""
    from mpa_lab.net.controller_process import ControllerProcess
    options.setdefault("log_level", os.environ.get("MPA_TEST_LOG_LEVEL", "INFO"))
    process = ControllerProcess(config, ofp_port=OFP_PORT, rest_port=REST_PORT,
                                state_db=str(log_dir / f"{name}.db"),
                                log_path=str(log_dir / f"{name}.log"), **options)
    process.start()
    yield process
    rc = process.stop()
    process.close()
    assert rc == 0, f"controller did not stop cleanly (exit {rc}); see {process.log_path}"


@contextlib.contextmanager
def running_lab(controller, topology, **options):
    """The Mininet lab on the controller, every switch connected and reconciled."""
    from mininet.log import setLogLevel
    from mpa_lab.net.lab import Lab
    setLogLevel("error")
    lab = Lab(topology, controller_port=OFP_PORT, **options)
    try:
        lab.start()
        controller.wait_switches()
        yield lab
    finally:
        lab.stop()


def management_fixtures(name: str, config_fixture: str | None = None):
    """Module fixtures ``controller`` and ``lab`` for tests whose MN signals
    over REST: the controller's REST API beyond loopback (the MN reaches it
    over its management link), its log and state file called ``name``, its
    topology file from the fixture ``config_fixture`` (default: the default
    lab's); and the lab with its management links.  Assign both (or only
    the controller) to module names."""
    @pytest.fixture(scope="module", name="controller")
    def controller(prerequisites, log_dir, request, aaa, lab_topology_file):
        config = (request.getfixturevalue(config_fixture) if config_fixture
                  else lab_topology_file)
        with running_controller(log_dir, name, config=config, rest_host="0.0.0.0") as process:
            yield process

    @pytest.fixture(scope="module", name="lab")
    def lab(controller, topology):
        with running_lab(controller, topology, management=True) as lab:
            yield lab
    return controller, lab


def ofctl_flows(switch: str) -> list[str]:
    """The switch's flows as ovs-ofctl prints them, without counters, sorted."""
    out = subprocess.run(["ovs-ofctl", "-O", "OpenFlow13", "--no-stats", "dump-flows", switch],
                         capture_output=True, text=True, check=True).stdout
    return sorted(line.strip() for line in out.splitlines() if line.strip())


def wait_for(predicate, timeout_s: float, what: str, interval_s: float = 0.2):
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(interval_s)


def expected_counts(controller):
    return {s["id"]: s["expected_flows"] for s in controller.get("/mpa/v1/switches")}


def flows_match_controller(controller):
    expected = expected_counts(controller)
    return all(len(ofctl_flows(switch)) == count for switch, count in expected.items())


def apart(path: str, directory=None, **mpa) -> str:
    """Rewrite the topology file ``path`` in place with_test_aaa (under
    ``directory``, default beside it) and other ``mpa:`` settings; ``path``."""
    return write_test_topology(path, path, directory, **mpa)


def domain_topology_fixture(**mpa):
    """A module fixture ``topology_file`` for domain_rig's domain_lab_fixtures:
    its inter-domain topology with each domain's FreeRADIUS on free ports,
    running while the module does (and other ``mpa:`` settings).  Assign it
    to ``topology_file`` after domain_lab_fixtures, which it replaces."""
    @pytest.fixture(scope="module", name="topology_file")
    def topology_file(prerequisites, tmp_path_factory):
        from support.domain_rig import write_topology
        path = write_topology(tmp_path_factory.mktemp("topology") / "inter_domain.yaml")
        with running_aaa(apart(path, **mpa)):
            yield path
    return topology_file

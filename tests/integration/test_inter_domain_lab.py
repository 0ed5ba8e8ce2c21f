"""One controller per administrative domain on the real thing: two
``mpa-controller --domain`` processes, OVS (userspace datapath), Mininet and
``mpa-mn`` in mn1's host, on topologies/inter_domain.yaml.

domain-a's controller serves core-a, cn-ar, ar-a1 and ar-a2; domain-b's
core-b, ar-b1 and ap-b1; they share nothing but the border link
core-a:9 -- core-b:9.  mn1 (identity mn1@domain-a) is at ap-a1-1 in net-a1.
"""

import ipaddress
import os
import shlex
import signal
import subprocess

import pytest

from support.domain_rig import (PORTS, running_domain_controllers, running_domain_lab,
                                write_topology)
from support.lab_rig import wait_for
from mpa_lab.experiment.preconfigure import mpa_mn_command
from mpa_lab.net.probes import ping
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration

DOMAIN_SWITCHES = {"domain-a": ["ar-a1", "ar-a2", "cn-ar", "core-a"],
                   "domain-b": ["ap-b1", "ar-b1", "core-b"]}
B1_GATEWAY = "10.2.1.1"
MN_IDENTITY = "mn1@domain-a"
# mpa-mn's wait for one answer in the fault test, and how long past its
# four sends the command may take (its own start, the discovery that still
# works) before it counts as hanging.
FAILING_TIMEOUT_S = 2
HANG_MARGIN_S = 20
RATE_PPS = 500


@pytest.fixture(scope="module")
def topology_file(tmp_path_factory):
    return write_topology(tmp_path_factory.mktemp("topology") / "inter_domain.yaml")


@pytest.fixture(scope="module")
def topology(topology_file):
    from mpa_sdn.config import load_topology
    return load_topology(topology_file)


@pytest.fixture(scope="module")
def controllers(prerequisites, log_dir, topology_file):
    with running_domain_controllers(log_dir, topology_file) as controllers:
        yield controllers


@pytest.fixture(scope="module")
def lab(controllers, topology):
    with running_domain_lab(controllers, topology, management=True) as lab:
        yield lab


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """mpa-mn's state (its SAs)."""
    return tmp_path_factory.mktemp("mn")


def mpa_mn(lab, state_dir, *args, timeout_s: float | None = None) -> tuple[int, str]:
    """``mpa-mn --json --channel inband ARGS`` in mn1's host, killed if it
    outlives ``timeout_s`` (exit 137): (exit status, its stdout)."""
    command = mpa_mn_command(lab, "mn1", PORTS["domain-a"][1], str(state_dir / "mn1.json"),
                             "inband", *args)
    if timeout_s is not None:
        command = ["timeout", "-s", "KILL", str(timeout_s), *command]
    out = lab.host("mn1").cmd(" ".join(shlex.quote(c) for c in command) +
                              " 2>/dev/null; echo rc=$?")
    output, _, rc = out.rpartition("rc=")
    return int(rc.strip()), output


def sas_for(controller, network: str) -> list[dict]:
    return [sa for sa in controller.get("/mpa/v1/sas")
            if sa["identity"] == MN_IDENTITY and sa["network"] == network]


def test_each_controller_lists_exactly_its_domain_s_switches_connected(lab, controllers):
    for domain, controller in controllers.items():
        switches = controller.get("/mpa/v1/switches")
        assert sorted(s["id"] for s in switches) == DOMAIN_SWITCHES[domain], domain
        assert all(s["connected"] and s["reconciled"] for s in switches), switches
        assert all(s["openflow_errors"] == 0 for s in switches), switches


def test_each_switch_has_its_own_domain_s_controller_alone(lab, controllers):
    for domain, switches in DOMAIN_SWITCHES.items():
        for switch in switches:
            targets = subprocess.run(["ovs-vsctl", "get-controller", switch],
                                     capture_output=True, text=True, check=True).stdout.split()
            assert targets == [f"tcp:127.0.0.1:{controllers[domain].ofp_port}"], switch


def test_the_nars_end_tunnels_and_each_domain_routes_its_own_out_of_its_border(lab):
    """What OVS was given for MN-terminated tunnels: a VXLAN port on each AR
    with a pht_port, and per domain the routes to the other's prefixes."""
    for e in lab.tunnelling.endpoints:
        interface = subprocess.run(
            ["ovs-vsctl", "get", "Interface", e.port_name, "ofport", "options:local_ip"],
            capture_output=True, text=True, check=True).stdout.split()
        assert interface == [str(e.port), f'"{e.address}"'], e
        hwaddr = subprocess.run(["ovs-vsctl", "get", "Bridge", e.switch,
                                 "other-config:hwaddr"], capture_output=True, text=True,
                                check=True).stdout.strip().strip('"')
        assert hwaddr == e.mac
    shown = subprocess.run(["ovs-appctl", "ovs/route/show"], capture_output=True, text=True,
                           check=True).stdout
    users = {line.split()[1]: line.split()[3] for line in shown.splitlines()
             if line.startswith("User:") and "MARK" not in line}
    assert {p: users.get(p) for p in ("10.2.1.0/24", "10.0.0.0/24", "10.1.1.0/24",
                                      "10.1.2.0/24")} == {
        "10.2.1.0/24": "core-a", "10.0.0.0/24": "core-b", "10.1.1.0/24": "core-b",
        "10.1.2.0/24": "core-b"}


def test_a_host_in_domain_a_pings_domain_b_s_gateway_across_the_border(lab):
    # domain-b's controller answers echo requests for its gateways: the
    # request crossed core-a:9 -- core-b:9 and the answer came back.
    result = ping(lab.host("mn1"), B1_GATEWAY, count=3)
    assert result.ok, result


def test_mn_pre_authenticates_and_pre_configures_with_domain_b_by_ordinary_routing(
        lab, controllers, state_dir):
    rc, out = mpa_mn(lab, state_dir, "preauth", "net-b1")
    assert rc == 0, out
    rc, out = mpa_mn(lab, state_dir, "configure", "net-b1")
    assert rc == 0, out
    b1 = lab.topology.networks["net-b1"]
    sas = sas_for(controllers["domain-b"], "net-b1")
    assert [sa["state"] for sa in sas] == ["pre-authenticated"], sas
    leases = [lease["address"] for lease in
              controllers["domain-b"].get("/mpa/v1/networks/net-b1/leases")
              if lease["mac"] == lab.topology.mobile_nodes["mn1"].mac]
    assert len(leases) == 1 and ipaddress.ip_address(leases[0]) in b1.pool, leases
    # domain-a's controller took no part: it holds no SA for mn1 in net-b1.
    assert sas_for(controllers["domain-a"], "net-b1") == []


def test_killing_domain_b_s_controller_leaves_domain_a_whole(lab, controllers, state_dir,
                                                             tmp_path):
    cn, mn = lab.host("cn1"), lab.host("mn1")
    address = lab.address("mn1")
    assert ping(cn, address).ok  # both known to domain-a's controller first
    domain_b = controllers["domain-b"]
    with UdpStream(lab, "cn1", "mn1", address, 5201, RATE_PPS, tmp_path / "arrivals.log",
                   duration_s=4) as stream:
        wait_for(lambda: os.path.getsize(stream.log) > 0, 10, "the stream's first arrivals")
        os.kill(domain_b.process.pid, signal.SIGKILL)
        stream.sender.wait(timeout=30)
    assert domain_b.stop() == -signal.SIGKILL
    sent = stream.sent
    assert not sent["stopped_early"] and sent["errors"] == {}, sent
    report = stream.analysis([])
    assert report["received"] == sent["sent"], report
    assert report["lost"] == report["duplicated"] == 0, report

    # Pre-authentication with domain-b now fails cleanly: an error, exit 1,
    # not a hang (killed: 137) or a crash.
    limit = 4 * FAILING_TIMEOUT_S + HANG_MARGIN_S
    rc, out = mpa_mn(lab, state_dir, "--timeout", str(FAILING_TIMEOUT_S), "preauth",
                           "net-b1", timeout_s=limit)
    assert rc == 1, (rc, out)
    assert "error" in out, out
    assert ping(cn, address).ok and ping(mn, "10.0.0.10").ok

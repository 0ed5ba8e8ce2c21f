"""One controller per administrative domain on the real thing: two
``mpa-controller --domain`` processes, OVS (userspace datapath), Mininet and
``mpa-mn`` in mn1's host, on topologies/inter_domain.yaml.

domain-a's controller serves core-a, cn-ar, ar-a1 and ar-a2; domain-b's
core-b, ar-b1 and ap-b1; they share nothing but the border link
core-a:9 -- core-b:9.  mn1 (identity mn1@domain-a) is at ap-a1-1 in net-a1.
The tests run in file order: the last one kills domain-b's controller.
"""

import ipaddress
import json
import os
import shlex
import signal
import subprocess
import sys

import pytest

from support.domain_rig import PORTS, domain_lab_fixtures, write_topology
from support.lab_rig import apart, domain_topology_fixture, wait_for
from mpa_lab.experiment.preconfigure import mpa_mn_command
from mpa_lab.net.probes import ping
from mpa_lab.traffic.streams import UdpStream
from mpa_sdn.config import load_topology

pytestmark = pytest.mark.integration

DOMAIN_SWITCHES = {"domain-a": ["ar-a1", "ar-a2", "cn-ar", "core-a"],
                   "domain-b": ["ap-b1", "ar-b1", "core-b"]}
B1_GATEWAY = "10.2.1.1"
MN_IDENTITY = "mn1@domain-a"
# mpa-mn's wait for one answer in the fault test (in-band, spread over its
# four sends), and how long past it the command may take (its own start, the
# discovery that domain-a still answers) before it counts as hanging.
FAILING_TIMEOUT_S = 2
HANG_MARGIN_S = 20
RATE_PPS = 500
MPA_LAB = os.path.join(os.path.dirname(sys.executable), "mpa-lab")


def user_routes(topology) -> dict[str, str]:
    """The routes a user added to OVS's table for ``topology``'s prefixes:
    prefix -> the bridge they leave by."""
    shown = subprocess.run(["ovs-appctl", "ovs/route/show"], capture_output=True, text=True,
                           check=True).stdout
    prefixes = {str(n.prefix) for n in topology.networks.values()}
    return {words[1]: words[words.index("dev") + 1] for words in map(str.split,
                                                                     shown.splitlines())
            if words[:1] == ["User:"] and words[1] in prefixes}


def mpa_lab(*args: str, timeout_s: float) -> str:
    """``mpa-lab ARGS --per-domain`` as a user would run it (with no standard
    input, as CI may); its output, once it exited with 0."""
    result = subprocess.run(["bash", "-c", 'exec "$@" 0<&-', "bash", MPA_LAB, *args,
                             "--per-domain"], capture_output=True, text=True, timeout=timeout_s)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


# The first tests build (or try to build) a lab of their own, with the same
# bridges: they come before the tests that bring the module's lab up.

def test_mpa_lab_up_per_domain_starts_a_controller_per_domain(prerequisites, tmp_path):
    ports = {domain: (ofp + 10, rest + 10) for domain, (ofp, rest) in PORTS.items()}
    topology_path = apart(write_topology(tmp_path / "inter_domain.yaml", ports))
    script = tmp_path / "commands"
    script.write_text("mn1 ping -c 1 -W 2 10.0.0.10\n"
                      "move mn1 ap-b1-1\n"
                      "cn1 ping -c 1 -W 2 10.2.1.199\n")
    out = mpa_lab("up", "--topology", topology_path, "--script", str(script),
                  "--out", str(tmp_path / "run"), timeout_s=180)
    for domain, (ofp, rest) in ports.items():
        assert (f"Controller of {domain} up: OpenFlow on :{ofp}, REST on "
                f"http://127.0.0.1:{rest}/mpa/v1 (log: {tmp_path}/run/controller-{domain}.log)"
                in out), out
        assert (tmp_path / "run" / f"state-{domain}.db").exists()
    assert "Lab up: 7 switches connected and reconciled" in out
    assert (f"  mn1: mpa-mn --domain-controller domain-a=http://172.31.0.1:{ports['domain-a'][1]}"
            f" --domain-controller domain-b=http://172.31.0.1:{ports['domain-b'][1]}\n") in out
    # Within domain-a, then from domain-a to mn1 in domain-b: across the border.
    assert out.count("1 packets transmitted, 1 received") == 2, out
    assert "Lab, controllers and AAA servers stopped (their logs: " in out
    assert "Traceback" not in out
    assert user_routes(load_topology(topology_path)) == {}, "the lab's routes went with it"


def test_mpa_lab_tour_per_domain_pre_authenticates_with_each_domain_s_controller(
        prerequisites, tmp_path):
    ports = {domain: (ofp + 10, rest + 10) for domain, (ofp, rest) in PORTS.items()}
    topology_path = apart(write_topology(tmp_path / "inter_domain.yaml", ports))
    out = mpa_lab("tour", "--topology", topology_path,
                  "--out", str(tmp_path / "run"), timeout_s=300)
    # net-b1 over REST: at domain-b's controller, reached at its own port.
    assert "mn1 in net-a1 -> net-b1  over rest   MPA-SA with domain-b's AA" in out, out
    assert ("domain-a's controller's MPA-SAs: mn1@domain-a for net-a2 pre-authenticated\n"
            "  domain-b's controller's MPA-SAs: mn1@domain-a for net-b1 pre-authenticated"
            in out), out
    assert "Result: 10/10 host pairs reachable (ping and TCP) over 5 PoAs." in out, out


def test_the_lab_will_not_start_while_something_else_holds_a_tunnel_endpoint(prerequisites,
                                                                           tmp_path):
    """A gateway address on another interface, or another VXLAN port ending
    tunnels there (a run by hand left them): OVS would end net-b1's tunnels
    there, or refuse ar-b1's port.  The lab names them, and builds nothing."""
    from mpa_lab.net.lab import Lab
    topology = load_topology(apart(write_topology(tmp_path / "inter_domain.yaml")))
    subprocess.run(["ip", "link", "add", "mpa-squat", "type", "veth", "peer", "name",
                    "mpa-squat1"], check=True)
    subprocess.run(["ovs-vsctl", "add-br", "mpa-squatbr", "--", "set", "bridge", "mpa-squatbr",
                    "datapath_type=netdev", "--", "add-port", "mpa-squatbr", "mpa-squatpht",
                    "--", "set", "interface", "mpa-squatpht", "type=vxlan",
                    "options:remote_ip=flow", "options:key=flow", "options:local_ip=10.1.2.1"],
                   check=True)
    try:
        subprocess.run(["ip", "addr", "add", "10.2.1.1/32", "dev", "mpa-squat"], check=True)
        lab = Lab(topology, controllers={d: ("127.0.0.1", p) for d, (p, _) in PORTS.items()})
        with pytest.raises(RuntimeError) as refused:
            with lab:
                pass
        assert "10.2.1.1 (for ar-b1) is already on mpa-squat" in str(refused.value)
        assert ("VXLAN port mpa-squatpht already ends tunnels at 10.1.2.1 (for ar-a2)"
                in str(refused.value))
        assert lab.net is None and not os.path.exists("/sys/class/net/ar-b1")
    finally:
        subprocess.run(["ip", "link", "del", "mpa-squat"], capture_output=True)
        subprocess.run(["ovs-vsctl", "--if-exists", "del-br", "mpa-squatbr"],
                       capture_output=True)


def test_switches_without_their_controller_are_named_per_controller(prerequisites, tmp_path):
    from mpa_lab.net.lab import Lab
    topology = load_topology(apart(write_topology(tmp_path / "inter_domain.yaml")))
    # Nothing listens on these ports: no switch connects.
    lab = Lab(topology, controllers={d: ("127.0.0.1", p + 20) for d, (p, _) in PORTS.items()})
    with pytest.raises(TimeoutError) as waited:
        try:
            lab.start(wait_s=1)
        finally:
            lab.stop()
    a, b = (PORTS[d][0] + 20 for d in ("domain-a", "domain-b"))
    assert str(waited.value) == (
        f"switches not connected: to domain-a's controller (127.0.0.1:{a}): "
        f"{', '.join(DOMAIN_SWITCHES['domain-a'])}; "
        f"to domain-b's controller (127.0.0.1:{b}): {', '.join(DOMAIN_SWITCHES['domain-b'])}")


topology_file, topology, controllers, lab = domain_lab_fixtures()
topology_file = domain_topology_fixture()   # the domains' AAA servers apart


@pytest.fixture(scope="module")
def state_dir(tmp_path_factory):
    """mpa-mn's state (its SAs)."""
    return tmp_path_factory.mktemp("mn")


def mpa_mn(lab, state_dir, *args, timeout_s: float | None = None,
           channel: str = "inband") -> tuple[int, str]:
    """``mpa-mn --json --channel CHANNEL ARGS`` in mn1's host (REST: to each
    network's domain's controller), killed if it outlives ``timeout_s``
    (exit 137): (exit status, its stdout)."""
    command = mpa_mn_command(lab, "mn1", PORTS["domain-a"][1], str(state_dir / "mn1.json"),
                             channel, *args,
                             domain_rest_ports={d: rest for d, (_, rest) in PORTS.items()})
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
    assert user_routes(lab.topology) == {
        "10.2.1.0/24": "core-a", "10.0.0.0/24": "core-b", "10.1.1.0/24": "core-b",
        "10.1.2.0/24": "core-b"}


def trace(*args: str) -> str:
    return subprocess.run(["ovs-appctl", *args], capture_output=True, text=True,
                          check=True).stdout


@pytest.mark.parametrize("nar, outer, border", [("ar-b1", "10.1.1.199", "core-b"),
                                                ("ar-a1", "10.2.1.150", "core-a")])
def test_a_nar_s_tunnel_packet_leaves_encapsulated_by_its_domain_s_border(lab, nar, outer,
                                                                          border):
    """What the nAR sends into its VXLAN port for an MN in the other domain
    (the tunnel's key and the MN's outer address set) is encapsulated from
    the gateway to the border switch's next hop, and enters the border
    switch at LOCAL, where its controller routes it across the border."""
    endpoint = next(e for e in lab.tunnelling.endpoints if e.switch == nar)
    hop = next(h for h in lab.tunnelling.next_hops if h.switch == border)
    out = trace("ofproto/trace-packet-out", nar,
                f"in_port=LOCAL,ip,dl_src={endpoint.mac},nw_src=10.9.0.1,nw_dst=10.9.0.2,"
                "nw_ttl=64",
                f"set_field:42->tun_id,set_field:{outer}->tun_dst,output:{endpoint.port}")
    assert f"-> tunneling to {hop.gateway} via {border}" in out, out
    assert f" {endpoint.address} to {hop.mac} {hop.gateway}" in out, out
    border_part = out.split(f'bridge("{border}")', 1)[1]
    assert "output:9" in border_part and "tnl_push(" in out, out


def test_a_tunnel_packet_for_a_nar_s_gateway_is_decapsulated_there(lab):
    """VXLAN from an MN in domain-a to net-b1's gateway, as it arrives at
    ar-b1 from the border: OVS pops it at ar-b1's LOCAL port."""
    out = trace("ofproto/trace", "ar-b1",
                "in_port=1,udp,dl_dst=02:00:00:00:00:99,nw_src=10.1.1.199,"
                f"nw_dst={B1_GATEWAY},nw_ttl=64,udp_src=5555,udp_dst=4789")
    assert "tnl_pop(" in out.split("Datapath actions:", 1)[1], out


def test_a_host_in_domain_a_pings_domain_b_s_gateway_across_the_border(lab):
    # domain-b's controller answers echo requests for its gateways: the
    # request crossed core-a:9 -- core-b:9 and the answer came back.
    result = ping(lab.host("mn1"), B1_GATEWAY, count=3)
    assert result.ok, result


def test_mn_pre_authenticates_with_domain_b_over_rest_at_domain_b_s_controller(
        lab, controllers, state_dir):
    """Over REST, mn1 asks domain-a's controller (where it is) for its
    candidates and domain-b's for net-b1's MPA-SA, each over the management
    link at that controller's port."""
    before = {d: c.counters().get("pana_sessions_started", 0) for d, c in controllers.items()}
    rc, out = mpa_mn(lab, state_dir, "preauth", "net-b1", channel="rest")
    assert rc == 0, out
    after = {d: c.counters().get("pana_sessions_started", 0) for d, c in controllers.items()}
    assert after == {"domain-a": before["domain-a"], "domain-b": before["domain-b"] + 1}
    assert [sa["state"] for sa in sas_for(controllers["domain-b"], "net-b1")] == [
        "pre-authenticated"]


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


def test_cn_reaches_the_mn_s_ncoa_in_domain_b_through_the_nar_s_vxlan_tunnel(
        lab, controllers, state_dir):
    """RFC 6252 §7.4 across domains: while mn1 is still in net-a1, ar-b1
    tunnels what comes for its nCoA in net-b1 to mn1's address in net-a1
    (VXLAN from ar-b1's pht port, out of core-b's LOCAL port and across the
    border), and mn1 answers through the tunnel."""
    rc, out = mpa_mn(lab, state_dir, "tunnel", "net-b1")
    assert rc == 0, out
    try:
        mn1 = lab.topology.mobile_nodes["mn1"]
        ncoa = next(lease["address"] for lease in
                    controllers["domain-b"].get("/mpa/v1/networks/net-b1/leases")
                    if lease["mac"] == mn1.mac)
        tunnels = [t for m in controllers["domain-b"].mobile_nodes() for t in m["tunnels"]]
        assert [(t["network"], t["encapsulation"], t["outer"]) for t in tunnels] == [
            ("net-b1", "vxlan", lab.address("mn1"))], tunnels
        result = ping(lab.host("cn1"), ncoa)
        assert result.ok, result
    finally:
        rc, out = mpa_mn(lab, state_dir, "untunnel", "net-b1")
    assert rc == 0, out


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
    limit = FAILING_TIMEOUT_S + HANG_MARGIN_S
    rc, out = mpa_mn(lab, state_dir, "--timeout", str(FAILING_TIMEOUT_S), "preauth",
                     "net-b1", timeout_s=limit)
    assert rc == 1, (rc, out)
    [result] = json.loads(out)["results"]
    assert result["network"] == "net-b1" and not result["ok"] and result["error"]["code"], out
    assert ping(cn, address).ok and ping(mn, "10.0.0.10").ok
    switches = controllers["domain-a"].get("/mpa/v1/switches")
    assert all(s["connected"] and s["reconciled"] for s in switches), switches

"""`mpa-lab up --script` and `mpa-lab tour`, run as a user would."""

import json
import os
import subprocess
import sys

import pytest

from support.lab_rig import OFP_PORT, REST_PORT, apart, write_test_topology
from support.paths import DEFAULT_TOPOLOGY

pytestmark = pytest.mark.integration

MPA_LAB = os.path.join(os.path.dirname(sys.executable), "mpa-lab")


def mpa_lab(*args, out_dir, timeout_s) -> str:
    """Run mpa-lab as a user would, with no standard input at all (as CI may
    start it: Open vSwitch's tools abort if their socket lands on fd 0)."""
    result = subprocess.run(["bash", "-c", 'exec "$@" 0<&-', "bash", MPA_LAB, *args,
                             "--out", str(out_dir), "--ofp-port", str(OFP_PORT),
                             "--rest-port", str(REST_PORT)],
                            capture_output=True, text=True, timeout=timeout_s)
    out = result.stdout + result.stderr
    assert result.returncode == 0, out
    return out


def test_move_and_ping_from_the_lab_cli(prerequisites, tmp_path):
    # What a run killed before its teardown leaves: a bridge and a port.
    subprocess.run(["ovs-vsctl", "--may-exist", "add-br", "core", "--", "set", "bridge", "core",
                    "datapath_type=netdev"], check=True)
    subprocess.run(["ip", "link", "del", "ar-a1-eth2"], capture_output=True)  # a killed run's
    subprocess.run(["ip", "link", "add", "ar-a1-eth2", "type", "veth", "peer", "name", "mpa-stale"],
                   check=True)
    script = tmp_path / "commands"
    script.write_text("poas\n"
                      "move mn1 ap-b1-1\n"
                      "move mn1 nowhere\n"
                      "mn1 ping -c 1 -W 2 10.0.0.10\n"
                      "cn1 ping -c 1 -W 2 10.2.1.199\n")
    topology = write_test_topology(DEFAULT_TOPOLOGY, tmp_path / "two_domains.yaml")
    out = mpa_lab("up", "--topology", topology, "--script", str(script), out_dir=tmp_path,
                  timeout_s=120)
    assert "ap-a1-1    net-a1   ar-a1:3    mn1" in out
    assert "mn1 is at ap-b1-1 (net-b1) with 10.2.1.199" in out
    assert "move: unknown PoA nowhere" in out
    assert out.count("1 packets transmitted, 1 received") == 2, out
    assert "FreeRADIUS of domain-a on 127.0.0.1:" in out and "(log: " in out
    assert "Lab, controller and AAA servers stopped (their logs: " in out
    assert "Traceback" not in out
    assert not os.path.exists("/sys/class/net/mpa-stale"), "the leftover pair was removed"


def test_the_readme_s_mpa_handover_by_hand_in_mpa_lab_up(prerequisites, tmp_path):
    """The MN's client does the handover (RFC 6252 §6.3) and the lab only
    moves its link, once the client is ready: the README's sequence, in a
    script, then a second handover with a plain ``move``, which finds the
    client waiting in the MN.  Before, ``move`` re-addressed the MN under
    its client, which then failed ("Address not found")."""
    from mpa_sdn.config import load_topology

    topology = write_test_topology(DEFAULT_TOPOLOGY, tmp_path / "two_domains.yaml")
    mn = load_topology(topology).mobile_nodes["mn1"]
    mpa_mn = (f"mn1 {os.path.join(os.path.dirname(sys.executable), 'mpa-mn')} --controller "
              f"http://172.31.0.1:{REST_PORT} --credentials {mn.credentials} --interface "
              f"mn1-eth0 --state {tmp_path}/mn1.json --json handover")
    logs = [tmp_path / "mn1-handover-a2.log", tmp_path / "mn1-handover-b1.log"]
    traffic = ("mn1 ping -c 3 -W 2 cn1\n"                     # from the nCoA
               f"cn1 ping -c 3 -W 2 {mn.home_address}\n")      # the binding: home -> nCoA
    script = tmp_path / "commands"
    script.write_text(
        f"{mpa_mn} net-a2 --home {mn.home_address} --wait-link > {logs[0]} 2>&1 &\n"
        f"move --when-ready {logs[0]} mn1 ap-a2-1\n"
        "mn1 wait\n" + traffic                           # wait: for the client's report
        + f"{mpa_mn} net-b1 --home {mn.home_address} --wait-link > {logs[1]} 2>&1 &\n"
        # As a user at the prompt would: the client is running, and ready, by the time
        # they type a plain move (just started in the background, it may not be yet).
        f"mn1 timeout 60 sh -c 'until grep -q ready {logs[1]}; do sleep 0.1; done'\n"
        "move mn1 ap-b1-1\n"
        "mn1 wait\n" + traffic
        # The controller's record of both, with the token mpa-lab up wrote for its user.
        + f'sh curl -s -H "Authorization: Bearer $(cat {tmp_path}/api-token)" '
        f"http://127.0.0.1:{REST_PORT}/mpa/v1/handovers\n")
    out = mpa_lab("up", "--topology", topology, "--script", str(script), out_dir=tmp_path,
                  timeout_s=240)
    assert "mn1's client is ready (ready event for net-a2)" in out
    assert "mn1's link moved from ap-a1-1 to ap-a2-1 (net-a2) in " in out
    assert "--json handover net-b1 --home 10.255.0.1 --wait-link (pid " in out
    assert "which sets its addresses: only its link moves" in out
    assert "mn1's client is ready (ready event for net-b1)" in out
    assert "mn1's link moved from ap-a2-1 to ap-b1-1 (net-b1) in " in out
    for log, prefix in zip(logs, ("10.1.2.", "10.2.1.")):
        first, rest = log.read_text().split("\n", 1)
        ready, report = json.loads(first), json.loads(rest)
        assert ready["event"] == "ready", first
        assert report["ok"] is True, rest
        (result,) = report["results"]
        assert result["address"] == ready["address"] and result["address"].startswith(prefix)
        assert "arrived" in result, result    # the controller took it: not switched back
    assert out.count("3 packets transmitted, 3 received") == 4, out
    (records,) = [json.loads(line) for line in out.splitlines() if line.startswith("[{")]
    assert [(r["to_poa"], r["phase"], r["switched_back"]) for r in records] == [
        ("ap-a2-1", "completed", False), ("ap-b1-1", "completed", False)], records
    assert "Traceback" not in out


def test_tour_on_a_generated_topology_with_two_mobile_nodes(prerequisites, tmp_path):
    from mpa_lab.topogen import main as topogen
    topology = tmp_path / "generated.yaml"
    assert topogen(["--domains", "2", "--networks-per-domain", "2", "--poas-per-network", "2",
                    "--mobile-nodes", "2", "-o", str(topology)]) == 0
    out = mpa_lab("tour", "--topology", apart(str(topology)), out_dir=tmp_path, timeout_s=300)
    # mn1 visits the 7 PoAs mn2 leaves free; 3 hosts make 6 ordered pairs.
    assert "Result: 42/42 host pairs reachable (ping and TCP) over 7 PoAs." in out
    assert "not visited, other hosts are there: ap2-1-1 (mn2)" in out
    # Each MN pre-authenticated with each candidate of its network, with the
    # credentials the lab wrote with its AAA servers, over both channels in turn.
    mpa_lines = [line for line in out.splitlines() if " -> " in line and " over " in line]
    assert mpa_lines and all("MPA-SA with" in line and "nCoA" in line for line in mpa_lines), out
    assert {"inband", "rest"} <= {line.split(" over ")[1].split()[0] for line in mpa_lines}
    assert {line.split()[0] for line in mpa_lines} == {"mn1", "mn2"}

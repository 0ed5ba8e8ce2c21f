"""What a killed lab leaves: its link layer's bridges and veths go with the
namespace that holds them (the lab's process gone, its shell ends), and the
next lab of the topology removes the rest (its bridges and the PoAs' ports)
and builds cleanly."""

import os
import signal
import subprocess
import sys
import textwrap

import pytest

from support.lab_rig import OFP_PORT, running_lab, wait_for
from support.paths import ROOT
from mpa_lab.net.probes import ping
from mpa_sdn.interface_names import port_name

pytestmark = pytest.mark.integration

# A lab that stays up until it is killed, and says where its link layer is.
HOLD = textwrap.dedent(f"""
    import sys, time
    from mininet.log import setLogLevel
    from mpa_sdn.config import load_topology
    from mpa_lab.net.lab import Lab
    setLogLevel("error")
    lab = Lab(load_topology(sys.argv[1]), controller_port={OFP_PORT})
    try:
        lab.start(wait_s=30)
    except TimeoutError:
        pass
    print("up", lab.link_node.pid, flush=True)
    time.sleep(600)
""")


def interfaces() -> set[str]:
    return set(os.listdir("/sys/class/net"))


def test_a_killed_lab_leaves_no_link_layer_and_the_next_one_builds(controller, topology,
                                                                   lab_topology_file):
    process = subprocess.Popen([sys.executable, "-c", HOLD, lab_topology_file],
                               stdout=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True,
                               env={**os.environ, "PYTHONPATH": str(ROOT)},
                               start_new_session=True)
    try:
        line = process.stdout.readline()
        assert line.startswith("up "), f"the lab did not come up: {line!r}"
        node = int(line.split()[1])
        poa_ports = {port_name(p.switch, p.port) for p in topology.poas.values()}
        assert poa_ports <= interfaces()
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        wait_for(lambda: not os.path.exists(f"/proc/{node}"), 10,
                 "the link layer's namespace to go with the lab")
        # Each free PoA's port was a veth whose other end was in that namespace.
        free = {port_name(p.switch, p.port) for p in topology.poas.values()
                if p.id not in {c.poa for c in topology.correspondents.values()}}
        wait_for(lambda: not free & interfaces(), 10, "the PoAs' veths to go")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=10)
    with running_lab(controller, topology) as lab:
        lab.move("mn1", "ap-a1-2")
        assert ping(lab.host("cn1"), lab.address("mn1")).ok
    assert not poa_ports & interfaces(), "the lab took its ports away"

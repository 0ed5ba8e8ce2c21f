"""Benchmark: what the lab's link-layer switch costs itself.

mn1 moves between ap-a1-1 and ap-a1-2 (one network: no outage imposed)
``--switches`` times on the real lab (Open vSwitch, Mininet, the controller
process and each domain's FreeRADIUS, as ``mpa-lab`` starts them), without
re-addressing or announcing: only the link moves.  Each switch's
``duration_ms`` is the MN's link down to its link up at the other PoA; on a
lab with the modelled link layer (mpa_lab/net/link_layer.py) ``ioctl_ms`` is
what the switch's ioctls took, the hold apart, and the outage imposed is 0
here, so the two differ only by the clock reads between them.

The same script runs on a tree from before the modelled link layer (its
switch was one ovs-vsctl transaction moving the MN's port: copy this file
into that tree's benchmarks/ and run it there), which gives the old cost
beside the new.  Needs root and the lab's lock (other labs use the same
switch names).  Writes JSON to ``--out`` and prints a Markdown table:

    flock /tmp/ovs-lab.lock .venv/bin/python benchmarks/link_switch.py --switches 500 \\
        --out results/bench/link_switch-DATE-COMMIT.json
"""

from __future__ import annotations

import argparse
import inspect
import os
import sys
import tempfile
import time

import lab_runs
from common import TOPOLOGY, report, stamped

POAS = ("ap-a1-2", "ap-a1-1")   # mn1 starts at ap-a1-1
# Between two switches: the controller's reaction to the ports (forgetting
# the MN, a port status each) is over long before; the next switch does not
# measure it.
PAUSE_S = 0.02


def spread(values: list[float]) -> dict:
    """The project's percentiles (nearest rank), with the count and the minimum."""
    if not values:
        return {}
    return {"n": len(values), "min": round(min(values), 4),
            **{k: round(v, 4) for k, v in lab_runs.spread(values, 50, 99).items()}}


def bench(switches: int, ofp_port: int, rest_port: int) -> dict:
    from mininet.log import setLogLevel

    from mpa_lab.aaa.lab_servers import LabAaa
    from mpa_lab.net.controller_process import ControllerProcess
    from mpa_lab.net.lab import Lab
    from mpa_sdn.config import load_topology

    lab_runs.need_root("benchmarks/link_switch.py")
    setLogLevel("error")
    topology = load_topology(TOPOLOGY)
    modelled = "link_layer_ms" in inspect.signature(Lab).parameters
    options = {"link_layer_ms": 0.0} if modelled else {}
    with tempfile.TemporaryDirectory() as directory, LabAaa(topology):
        controller = ControllerProcess(TOPOLOGY, ofp_port=ofp_port, rest_port=rest_port,
                                       state_db=os.path.join(directory, "state.db"),
                                       log_path=os.path.join(directory, "controller.log"),
                                       log_level="WARNING")
        lab = Lab(topology, controller_port=ofp_port, **options)
        with controller, lab:
            controller.wait_switches()
            for index in range(switches):
                lab.move("mn1", POAS[index % 2], readdress=False)
                time.sleep(PAUSE_S)
            moves = list(lab.link_switches)
    durations = [m.duration_ms for m in moves]
    ioctls = [m.ioctl_ms for m in moves if getattr(m, "ioctl_ms", None) is not None]
    return {"link_layer": "modelled" if modelled else "ovs-vsctl", "switches": switches,
            "poas": list(POAS), "duration_ms": spread(durations), "ioctl_ms": spread(ioctls),
            "raw": {"duration_ms": [round(d, 4) for d in durations],
                    "ioctl_ms": [round(d, 4) for d in ioctls]}}


def table(result: dict) -> str:
    lines = [f"link layer: {result['link_layer']}, {result['switches']} switches "
             f"({result['commit']}, {result['date']})", "",
             "| ms | p50 | p99 | max |", "|---|---:|---:|---:|"]
    for key in ("duration_ms", "ioctl_ms"):
        s = result[key]
        if s:
            lines.append(f"| {key} | {s['p50']:.3f} | {s['p99']:.3f} | {s['max']:.3f} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--switches", type=int, default=500)
    parser.add_argument("--ofp-port", type=int, default=6653)
    parser.add_argument("--rest-port", type=int, default=8080)
    parser.add_argument("--out")
    args = parser.parse_args(argv)
    if not 1 <= args.switches <= 100_000:
        parser.error("--switches: from 1 to 100000")
    result = stamped(bench(args.switches, args.ofp_port, args.rest_port))
    return report(args.out, result, table(result))


if __name__ == "__main__":
    sys.exit(main())

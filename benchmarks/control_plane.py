"""Control-plane benchmark of the foundation: no Mininet, no root.

Drives the core (the same code the Ryu app runs) against fake OpenFlow
switches and measures, for generated topologies of growing size:

* loading and validating the topology file;
* a connect storm: every switch connects with an empty table and the core
  computes and plans all of its flows;
* host learning: hosts appear at PoAs, each through one packet-in, and the
  core decides their flows (along the path from the AR to the PoA);
* memory per known host (tracemalloc) and flows per switch.

Only the core is timed (the decisions and the OpenFlow messages it builds),
not the switches.

Writes JSON to ``--out`` and prints a Markdown table.  Run:

    .venv/bin/python benchmarks/control_plane.py --out results/bench/control_plane.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import subprocess
import sys
import time
import tracemalloc

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, os.path.join(ROOT, "tests"))

from support.fakeoftable import ipv4_packet, to_bytes  # noqa: E402
from mpa_sdn.config import load_topology_text  # noqa: E402
from mpa_sdn.controller import Controller  # noqa: E402
from mpa_lab.topogen import generate, render  # noqa: E402

def _hosts(core, per_network):
    """(dpid, port, frame) of the first packet of each host, spread over the PoAs."""
    out = []
    for n in core.graph.access_networks():
        for k in range(per_network):
            poa = n.poas[k % len(n.poas)]
            address = str(n.pool.first + k)
            index = len(out)
            mac = "02:%02x:%02x:%02x:%02x:%02x" % (0x10, *(index.to_bytes(4, "big")))
            frame = to_bytes(ipv4_packet(mac, n.gateway_mac, address, "10.0.0.10"))
            out.append((core.graph.dpid(poa.switch), poa.port, frame))
    return out


def _connect_all(core):
    """Every switch connects with an empty table: the core's part of a connect storm."""
    messages = 0
    for switch in core.graph.switch_ids():
        dpid = core.graph.dpid(switch)
        core.switch_connected(dpid, 0.0)
        for send in core.flow_stats(dpid, [], more=False):
            messages += len(send.messages)
            core.flows_confirmed(dpid, send.confirm, 0.0)
    return messages


def bench(domains, networks, poas, hosts_per_network):
    text = render(generate(domains, networks, poas, neighbours="ring"))
    started = time.perf_counter()
    topology = load_topology_text(text)
    load_s = time.perf_counter() - started

    core = Controller(topology)
    started = time.perf_counter()
    flow_mods = _connect_all(core)
    connect_s = time.perf_counter() - started

    hosts = _hosts(core, hosts_per_network)
    latencies, sent = [], 0
    for dpid, port, frame in hosts:
        t0 = time.perf_counter()
        sends = core.packet_in(dpid, port, 0, frame, 0.0)
        latencies.append(time.perf_counter() - t0)
        sent += sum(len(s.messages) for s in sends)
    assert len(core.hosts) - len(topology.correspondents) == len(hosts)

    # Memory: the same learning again in a fresh core, under tracemalloc.
    core = Controller(topology)
    _connect_all(core)
    gc.collect()
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for dpid, port, frame in hosts:
        core.packet_in(dpid, port, 0, frame, 0.0)
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(d.size_diff for d in after.compare_to(before, "filename"))

    flows = sorted(core.expected_flow_count(core.graph.dpid(s)) for s in core.graph.switch_ids())
    latencies.sort()
    return {
        "networks": len(topology.networks), "switches": len(topology.switches),
        "poas": len(topology.poas), "hosts": len(hosts),
        "load_ms": round(load_s * 1000, 1),
        "connect_storm_ms": round(connect_s * 1000, 1),
        "connect_flow_mods": flow_mods,
        "flows_per_switch_max": flows[-1],
        "learn_us_p50": round(latencies[len(latencies) // 2] * 1e6),
        "learn_us_p99": round(latencies[int(len(latencies) * 0.99)] * 1e6),
        "learns_per_s": round(len(latencies) / sum(latencies)),
        "messages_per_learn": round(sent / len(hosts), 2),
        "bytes_per_host": round(grown / len(hosts)),
    }


SIZES = [  # (domains, networks per domain, PoAs per network, hosts per network)
    (2, 3, 2, 10),
    (5, 10, 4, 20),
    (10, 30, 4, 20),
]


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", default="results/bench/control_plane.json")
    args = parser.parse_args(argv)
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT,
                            capture_output=True, text=True).stdout.strip()
    rows = [bench(*size) for size in SIZES]
    os.makedirs(os.path.dirname(os.path.abspath(args.out)), exist_ok=True)
    with open(args.out, "w") as handle:
        json.dump({"commit": commit, "date": time.strftime("%Y-%m-%d"), "rows": rows},
                  handle, indent=1)
    keys = list(rows[0])
    print("| " + " | ".join(keys) + " |")
    print("|" + "---|" * len(keys))
    for row in rows:
        print("| " + " | ".join(str(row[k]) for k in keys) + " |")
    print(f"\ncommit {commit}; written to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

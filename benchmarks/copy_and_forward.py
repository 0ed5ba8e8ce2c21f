"""Benchmark: copy-and-forward with a sudden link loss (RFC 6252 §7.6.2), on
the real lab.

Each run, a fresh controller and the default lab: mn1 binds its home address
at ap-a1-1, cn1 streams to it, and ``HandoverDriver.sudden_loss`` gives mn1
a second interface at ap-b1-1 (net-b1), bound in standby by ``mpa-mn standby
--wait-loss``, then cuts the first interface's link.  Per run it records:

* lost, duplicated and reordered packets, and the longest gap between
  arrivals at the MN (the interruption);
* the copies the controller made, forwarded (the MN had not got them),
  skipped (it had) and delivered late, and how it told them apart;
* the cut -> the MN seeing its carrier drop -> its ``link-lost`` answered;
* the loss -> the new flows confirmed at the controller;
* the packets buffered at net-b1's AR and the delay added to them.

Run as root:

    .venv/bin/python benchmarks/copy_and_forward.py [--runs 5] [--rate 1000]
        [--out results/bench/copy_and_forward.json]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time

from common import TOPOLOGY, stamped, unwind_on_sigterm, write

from mpa_sdn.config import load_topology
from topologies.traffic_analysis import percentile

SECOND_POA, SECOND_MAC = "ap-b1-1", "02:00:00:00:01:02"
PORT = 5001


def run_once(index: int, rate: int, ofp_port: int, rest_port: int, work: str) -> dict:
    from mininet.log import setLogLevel

    from topologies.handover import HandoverDriver
    from topologies.harness import ControllerProcess
    from topologies.lab import Lab
    from topologies.streams import UdpStream

    setLogLevel("error")
    topology = load_topology(TOPOLOGY)
    home = str(topology.mobile_nodes["mn1"].home_address)
    controller = ControllerProcess(TOPOLOGY, ofp_port=ofp_port, rest_port=rest_port,
                                   log_path=os.path.join(work, f"controller-{index}.log"),
                                   state_db=os.path.join(work, f"state-{index}.db"),
                                   rest_host="0.0.0.0", log_level="WARNING")
    lab = Lab(topology, controller_port=ofp_port, management=True)
    with controller, lab:
        controller.wait_switches()
        driver = HandoverDriver(lab, rest_port, os.path.join(work, f"mn-{index}"), "rest")
        bound = driver.bind_home("mn1", "cn1")
        if not bound.ok:
            raise RuntimeError(f"initial binding failed: {bound.errors}")
        stream = UdpStream(lab, "cn1", "mn1", home, PORT, rate,
                           os.path.join(work, f"arrivals-{index}.log"))
        with stream:
            result = driver.sudden_loss("mn1", SECOND_POA, SECOND_MAC)
        counters = controller.get("/mpa/v1/counters")
        [handover] = [h for h in controller.get("/mpa/v1/handovers")
                      if h["mode"] == "copy-and-forward"]
        lab.remove_interface("mn1")
    if not result.ok:
        raise RuntimeError(f"run {index}: {result.errors} {result.stderr[-500:]}")
    window = stream.analysis([result.window()])["windows"][0]
    client = result.report
    return {
        "run": index, "lost": window["lost"], "duplicated": window["duplicated"],
        "reordered": window["reordered"], "expected": window["expected"],
        "interruption_ms": (window.get("longest_gap") or {}).get("ms"),
        **{f"copies_{k}": counters.get(f"copy_{k}", 0)
           for k in ("made", "forwarded", "skipped", "late_delivered", "aged")},
        "buffer_late_delivered": counters.get("buffer_late_delivered", 0),
        "decided_by": (handover.get("copies") or {}).get("decided_by"),
        "cut_to_detected_ms": round((client["loss_detected_at"] - result.loss_wall_ns) / 1e6, 3),
        "detected_to_answered_ms": round(
            (client["signalled_at"] - client["loss_detected_at"]) / 1e6, 3),
        "loss_to_flows_ms": handover["signal_to_flows_ms"],
        "buffered": handover["buffer"]["buffered"],
        "added_delay_max_ms": handover["buffer"]["max_delay_ms"]}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--rate", type=int, default=1000)
    parser.add_argument("--ofp-port", type=int, default=6653)
    parser.add_argument("--rest-port", type=int, default=8080)
    parser.add_argument("--out", default="results/bench/copy_and_forward.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/copy_and_forward.py needs root (Mininet)")
    unwind_on_sigterm()
    rows = []
    with tempfile.TemporaryDirectory(prefix="mpa-bench-") as work:
        for index in range(1, args.runs + 1):
            rows.append(run_once(index, args.rate, args.ofp_port, args.rest_port, work))
            print(json.dumps(rows[-1]), flush=True)
            time.sleep(0.5)
    summary = {"rate_pps": args.rate, "runs": len(rows),
               **{k: sum(r[k] for r in rows) for k in ("lost", "duplicated", "reordered")}}
    for name in ("interruption_ms", "loss_to_flows_ms", "detected_to_answered_ms",
                 "copies_forwarded", "copies_late_delivered", "buffered"):
        values = [r[name] for r in rows if r[name] is not None]
        summary[name] = {"p50": percentile(values, 50), "max": max(values, default=None)}
    write(args.out, stamped({"summary": summary, "runs": rows}))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

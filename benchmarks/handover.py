"""Benchmark: proactive handovers under a UDP stream, on the real lab.

For each rate (packets/s, default 100 and 1,000), a fresh controller and the
default lab: cn1 streams to mn1's home address, and mn1 hands over
``--handovers`` times, cycling net-a1 -> net-a2 -> net-b1 (two domains),
each with ``mpa-mn handover --wait-link`` and the lab's link-layer switch.
Per handover it records:

* the interruption at the MN: the longest gap between arrivals in the
  handover's window (the receiver's clock), next to the lab's link-layer
  switch time (the switch-side interface down -> up on the new switch);
* signal-to-flows-confirmed at the controller: the MN's arrival seen -> the
  last barrier reply for the new flows (``GET /mpa/v1/handovers``);
* the packets buffered, and the delay the buffer added to them (mean, max);
* lost, reordered and duplicated packets.

Targets (issue): interruption <= link-layer switch + 10 ms; signal-to-flows
p99 < 10 ms.  Run as root:

    .venv/bin/python benchmarks/handover.py [--rates 100,1000] [--handovers 10]
        [--out results/bench/handover.json]
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
from topologies.results import controller_record
from topologies.traffic_analysis import percentile

CYCLE = ("ap-a2-1", "ap-b1-1", "ap-a1-1")   # from ap-a1-1, where mn1 starts
PORT = 5001


def run_rate(rate: int, count: int, ofp_port: int, rest_port: int, work: str) -> dict:
    from topologies.handover import HandoverDriver
    from topologies.harness import ControllerProcess
    from topologies.lab import Lab
    from topologies.streams import UdpStream

    topology = load_topology(TOPOLOGY)
    home = str(topology.mobile_nodes["mn1"].home_address)
    controller = ControllerProcess(TOPOLOGY, ofp_port=ofp_port, rest_port=rest_port,
                                   log_path=os.path.join(work, f"controller-{rate}.log"),
                                   state_db=os.path.join(work, f"state-{rate}.db"),
                                   rest_host="0.0.0.0")
    lab = Lab(topology, controller_port=ofp_port, management=True)
    with controller, lab:
        controller.wait_switches()
        driver = HandoverDriver(lab, rest_port, os.path.join(work, f"mn-{rate}"))
        bound = driver.bind_home("mn1", "cn1")
        if not bound.ok:
            raise RuntimeError(f"initial binding failed: {bound}")
        time.sleep(0.5)
        results = []
        stream = UdpStream(lab, "cn1", "mn1", home, PORT, rate,
                           os.path.join(work, f"arrivals-{rate}.log"))
        with stream:
            time.sleep(1.0)
            for index in range(count):
                results.append(driver.handover("mn1", CYCLE[index % len(CYCLE)]))
                if not results[-1].ok:
                    break
                time.sleep(0.5)
        history = controller.get("/mpa/v1/handovers")
    report = stream.analysis([r.window() for r in results])
    rows = []
    for result, window in zip(results, report["windows"]):
        gap = (window.get("longest_gap") or {}).get("ms")
        handover = controller_record(history, result)
        buffer = handover.get("buffer") or {}
        rows.append({
            "index": result.index, "from": result.from_network, "to": result.to_network,
            "ok": result.ok, "errors": result.errors,
            "interruption_ms": gap, "link_layer_ms": result.link_layer_ms,
            "over_link_layer_ms": None if gap is None or result.link_layer_ms is None
            else round(gap - result.link_layer_ms, 3),
            "signal_to_flows_ms": handover.get("signal_to_flows_ms"),
            "arrival": handover.get("arrival"),
            "buffered": buffer.get("buffered"), "dropped": buffer.get("dropped"),
            "added_delay_mean_ms": buffer.get("mean_delay_ms"),
            "added_delay_max_ms": buffer.get("max_delay_ms"),
            "lost": window["lost"], "reordered": window["reordered"],
            "duplicated": window["duplicated"]})

    def column(name):
        return [r[name] for r in rows if r[name] is not None]
    summary = {
        "rate_pps": rate, "handovers": len(rows), "failed": sum(not r["ok"] for r in rows),
        "lost": report["lost"], "reordered": report["reordered"],
        "duplicated": report["duplicated"], "received": report["received"],
        "jitter_ms": report["jitter_ms"], "delay_ms": report["delay_ms"]}
    for name in ("interruption_ms", "link_layer_ms", "over_link_layer_ms", "signal_to_flows_ms",
                 "buffered", "added_delay_mean_ms", "added_delay_max_ms"):
        values = column(name)
        summary[name] = {"p50": percentile(values, 50), "p99": percentile(values, 99),
                         "max": max(values) if values else None}
    return {"summary": summary, "handovers": rows}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rates", default="100,1000")
    parser.add_argument("--handovers", type=int, default=10)
    parser.add_argument("--ofp-port", type=int, default=6653)
    parser.add_argument("--rest-port", type=int, default=8080)
    parser.add_argument("--out", default="results/bench/handover.json")
    args = parser.parse_args()
    if os.geteuid() != 0:
        sys.exit("benchmarks/handover.py needs root (Mininet)")
    unwind_on_sigterm()
    results = stamped({"rates": []})
    with tempfile.TemporaryDirectory(prefix="mpa-bench-") as work:
        for rate in (int(r) for r in args.rates.split(",")):
            outcome = run_rate(rate, args.handovers, args.ofp_port, args.rest_port, work)
            results["rates"].append(outcome)
            print(json.dumps(outcome["summary"]), flush=True)
    write(args.out, results)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: proactive handovers within a domain and across domains, one
controller per domain, under a UDP stream, on the real lab.

The inter-domain scenario (topologies/scenarios/inter_domain.yaml: one
``mpa-controller --domain`` per domain, mn1 of domain-a moving net-a1 ->
net-a2 -> net-b1 -> net-a1 ...) in one mode (default ``mpa_buffer``), at
``--rate`` packets/s (default 1,000), ``--cycles`` times round (default 20):
so, in one run, that many intra-domain handovers (net-a1 -> net-a2), that many
from domain-a to domain-b (net-a2 -> net-b1) and that many back (net-b1 ->
net-a1).  Per direction: lost, duplicated and reordered packets, and the
interruption beyond the link-layer switch (the longest gap at the MN minus
the lab's link move), p50 / p99 / max.  ``mpa-lab run``'s own code runs it
(mpa_lab/experiment/runner.py).  As root:

    .venv/bin/python benchmarks/inter_domain_handover.py [--rate 1000] [--cycles 20]
        [--mode mpa_buffer] [--interval 0.5] [--out results/bench/inter-domain-handover.json]
"""

from __future__ import annotations

import dataclasses
import os
import sys
import tempfile

from common import ROOT, stamped, unwind_on_sigterm, write
from lab_runs import spread

from mpa_lab.experiment.scenario import load_scenario

SCENARIO = os.path.join(ROOT, "topologies", "scenarios", "inter_domain.yaml")
DIRECTIONS = (("net-a1", "net-a2"), ("net-a2", "net-b1"), ("net-b1", "net-a1"))


def run(mode: str, rate: int, cycles: int, interval_s: float = 0.5) -> dict:
    from mininet.log import setLogLevel

    from mpa_lab.experiment.progress import Progress
    from mpa_lab.experiment.runner import Experiment

    setLogLevel("error")
    base = load_scenario(SCENARIO)
    count = cycles * len(DIRECTIONS)
    scenario = dataclasses.replace(
        base, traffic=dataclasses.replace(base.traffic, rate_pps=rate), modes=(mode,),
        handovers={mode: count}, interval_s=interval_s)
    with tempfile.TemporaryDirectory(prefix="mpa-bench-") as work:
        # One controller per domain: each on its domain's ports from the topology.
        return Experiment(scenario, work, ofp_port=6653, rest_port=8080,
                          progress=Progress(count, out=sys.stderr)).run()


def by_direction(rows: list[dict]) -> dict:
    out = {}
    for source, target in DIRECTIONS:
        mine = [r for r in rows if (r["from"], r["to"]) == (source, target)]
        good = [r for r in mine if r["ok"]]
        out[f"{source} -> {target}"] = {
            "inter_domain": bool(mine and mine[0]["inter_domain"]),
            "handovers": len(mine), "failed": len(mine) - len(good),
            **{k: sum(r[k] for r in mine) for k in ("sent", "lost", "duplicates", "reordered")},
            "beyond_link_layer_ms": spread([r["beyond_link_layer_ms"] for r in good], 50, 99),
            "link_layer_ms": spread([r["link_layer_ms"] for r in good], 50, 99),
            "signal_to_flows_ms": spread([r["signal_to_flows_ms"] for r in good], 50, 99)}
    return out


def main() -> int:
    import argparse
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--mode", default="mpa_buffer")
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--cycles", type=int, default=20)
    p.add_argument("--interval", type=float, default=0.5,
                   help="seconds of stream between two handovers (default 0.5)")
    p.add_argument("--out", default="results/bench/inter-domain-handover.json")
    args = p.parse_args()
    if os.geteuid() != 0:
        sys.exit("inter_domain_handover.py needs root (Mininet)")
    unwind_on_sigterm()
    results = run(args.mode, args.rate, args.cycles, args.interval)
    rows = results["modes"][args.mode]["handovers"]
    for row in rows:
        row.pop("timeline", None)
    summary = {"mode": args.mode, "rate_pps": args.rate, "cycles": args.cycles,
               "interval_s": args.interval,
               "complete": results["complete"], "directions": by_direction(rows)}
    write(args.out, stamped({"summary": summary, "handovers": rows}))
    print("| handovers | crosses domains | n (failed) | lost | duplicated | reordered | "
          "beyond link layer p50 / p99 / max (ms) |")
    print("|---|---|---|---|---|---|---|")
    for name, d in summary["directions"].items():
        b = d["beyond_link_layer_ms"]
        print(f"| {name} | {'yes' if d['inter_domain'] else 'no'} | {d['handovers']} "
              f"({d['failed']}) | {d['lost']} | {d['duplicates']} | {d['reordered']} | "
              f"{b['p50']} / {b['p99']} / {b['max']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""What the lab benchmarks share: one mode of the demo scenario, changed as
they need, run by the experiment runner (mpa_lab/experiment/runner.py, the code
behind ``mpa-lab run``), in a directory of their own."""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import tempfile

from common import ROOT, stamped, unwind_on_sigterm, write

from mpa_lab.experiment.scenario import load_scenario
from mpa_lab.net.link_layer import POA_PORTS
from mpa_lab.traffic.analysis import percentile

DEMO = os.path.join(ROOT, "topologies", "scenarios", "demo.yaml")


def parser(doc: str, out: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=doc,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--ofp-port", type=int, default=6653)
    p.add_argument("--rest-port", type=int, default=8080)
    p.add_argument("--out", default=out)
    p.add_argument("--poa-ports", choices=POA_PORTS, default=None,
                   help="what a PoA's port does as the MN comes and goes "
                        "(mpa_lab/net/link_layer.py; default: the scenario's)")
    return p


def need_root(name: str) -> None:
    if os.geteuid() != 0:
        sys.exit(f"{name} needs root (Mininet)")
    unwind_on_sigterm()


def run_mode(mode: str, count: int, rate: int, args, scenario_path: str = DEMO,
             **mn_changes) -> dict:
    """``count`` handovers of ``mode`` at ``rate`` packets/s in the scenario
    at ``scenario_path`` (the demo's by default), with its PoA port model or
    ``--poa-ports``; the run's results (results.json's object).
    ``mn_changes`` change mn1's plan."""
    from mininet.log import setLogLevel

    from mpa_lab.experiment.runner import Experiment
    from mpa_lab.experiment.progress import Progress

    setLogLevel("error")
    demo = load_scenario(scenario_path)
    mn1 = dataclasses.replace(demo.mobile_node("mn1"), **mn_changes)
    scenario = dataclasses.replace(
        demo, traffic=dataclasses.replace(demo.traffic, rate_pps=rate), modes=(mode,),
        handovers={mode: count}, mobile_nodes=(mn1,), interval_s=0.5,
        poa_ports=args.poa_ports or demo.poa_ports)
    with tempfile.TemporaryDirectory(prefix="mpa-bench-") as work:
        results = Experiment(scenario, work, ofp_port=args.ofp_port, rest_port=args.rest_port,
                             progress=Progress(count, out=sys.stderr)).run()
    return results


def spread(values, *ps) -> dict:
    """Percentiles (by nearest rank) and the max of the values that are there."""
    values = [v for v in values if v is not None]
    return {**{f"p{p}": percentile(values, p) for p in ps},
            "max": max(values) if values else None}


def run_each(key: str, items, run_one, out: str) -> int:
    """``run_one(item)`` for each item, its summary printed as it ends; the
    outcomes under ``key``, stamped, written to ``out``."""
    results = stamped({key: []})
    for item in items:
        outcome = run_one(item)
        results[key].append(outcome)
        print(json.dumps(outcome["summary"]), flush=True)
    write(out, results)
    return 0

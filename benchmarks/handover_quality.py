"""Benchmark: the quality of a proactive handover on the real lab, quiet and
with the other core busy.

The demo scenario's ``mpa_buffer`` mode (``mpa-lab run``'s code, a fresh
controller and lab per run): cn1 streams to mn1's home address at
``--rate`` packets/s while mn1 hands over ``--handovers`` times, net-a1 ->
net-a2 -> net-a1 (a ping-pong) -> net-a2 -> net-b1 (the other domain) ->
net-a1 ..., with ``mpa-mn handover --wait-link`` and the lab's modelled link
layer.  Each run is made twice: on a quiet machine, and with a busy loop
pinned to the other core (``--load``; "a benchmark running on the other
core").  Per handover (the rows of results.json, docs/scenarios.md):

* lost, duplicated and reordered packets at the receiver, and the packets
  the controller delivered after its cut to the direct path (``late``);
* the link-layer outage the lab imposed and measured, and the interruption
  beyond it (the longest gap between arrivals minus the link-layer time);
* the controller's steps after the arrival (``steps_ms``): the first packet
  delivered, the flows confirmed, the buffer empty, the cut and its
  confirmation, the last late packet.

Targets (issue 19): 0 lost, 0 duplicated, 0 reordered; beyond the
link-layer switch p50 <= 5 ms and max <= 10 ms, also with the other core
busy.  Run as root:

    .venv/bin/python benchmarks/handover_quality.py [--rate 1000] [--handovers 20]
        [--loads quiet,busy] [--poa-ports per_station|stay_up]
        [--out results/bench/handover_quality.json]
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import sys

from lab_runs import need_root, parser, run_each, run_mode, spread

# A ping-pong (net-a1 -> net-a2 -> net-a1), then on through the other domain.
TARGETS = ("ap-a2-1", "ap-a1-1", "ap-a2-1", "ap-b1-1", "ap-a1-1")
BUSY_LOOP = "while True: pass"


@contextlib.contextmanager
def load(kind: str):
    """``busy``: a process spinning on the last CPU for the run's length."""
    if kind == "quiet":
        yield None
        return
    cpu = str(os.cpu_count() - 1)
    proc = subprocess.Popen(["taskset", "-c", cpu, sys.executable, "-c", BUSY_LOOP])
    try:
        yield f"a busy loop on CPU {cpu}"
    finally:
        proc.kill()
        proc.wait()


def row_of(row: dict) -> dict:
    gap, link = row["interruption_ms"], row["link_layer_ms"]
    return {"index": row["index"], "from": row["from"], "to": row["to"], "ok": row["ok"],
            "lost": row["lost"], "duplicated": row["duplicates"],
            "reordered": row["reordered"], "late": row.get("late_delivered"),
            "relayed": row.get("relayed"), "arrival": row["arrival"],
            "link_layer_ms": link, "imposed_ms": row.get("imposed_ms"),
            "interruption_ms": gap, "beyond_link_layer_ms": row["beyond_link_layer_ms"],
            "buffered": row["buffered"], "steps_ms": row.get("controller_steps_ms"),
            "client_timings_ms": row.get("client_timings_ms")}


def run_once(rate: int, count: int, kind: str, args) -> dict:
    with load(kind) as what:
        results = run_mode("mpa_buffer", count, rate, args, targets=TARGETS)
    mode = results["modes"]["mpa_buffer"]
    rows = [row_of(r) for r in mode["handovers"]]
    ok = [r for r in rows if r["ok"]]
    s = mode["summary"]
    summary = {"load": kind, "load_detail": what, "rate_pps": rate,
               "poa_ports": results["settings"]["poa_ports"], "targets": list(TARGETS),
               "complete": results["complete"],
               **{k: s[k] for k in ("handovers", "failed", "sent", "received", "lost",
                                    "duplicates", "reordered")},
               "late": sum(r["late"] or 0 for r in rows),
               "handovers_reordering": sum(1 for r in rows if r["reordered"]),
               "beyond_link_layer_ms": spread([r["beyond_link_layer_ms"] for r in ok], 50),
               "link_layer_ms": spread([r["link_layer_ms"] for r in ok], 50),
               **{f"{step}_ms": spread([(r["steps_ms"] or {}).get(step) for r in ok], 50)
                  for step in ("first_delivery", "flows_confirmed", "cut",
                               "cut_confirmed")}}
    return {"summary": summary, "handovers": rows}


def main() -> int:
    p = parser(__doc__, "results/bench/handover_quality.json")
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--handovers", type=int, default=20)
    p.add_argument("--loads", default="quiet,busy")
    args = p.parse_args()
    need_root("benchmarks/handover_quality.py")
    kinds = args.loads.split(",")
    if not set(kinds) <= {"quiet", "busy"}:
        sys.exit(f"--loads: quiet and/or busy, not {args.loads!r}")
    return run_each("runs", kinds, lambda kind: run_once(args.rate, args.handovers, kind, args),
                    args.out)


if __name__ == "__main__":
    sys.exit(main())

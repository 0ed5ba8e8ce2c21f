"""Benchmark: proactive handovers under a UDP stream, on the real lab.

For each rate (packets/s, default 100 and 1,000): the demo scenario's
``mpa_buffer`` mode alone (``mpa-lab run``'s code, a fresh controller and
lab): cn1 streams to mn1's home address, and mn1 hands over ``--handovers``
times, net-a1 -> net-a2 -> net-b1 -> net-a1 (two domains), with ``mpa-mn
handover --wait-link`` and the lab's link-layer switch.  Per handover (the
rows of results.json, docs/scenarios.md):

* the interruption at the MN (the longest gap between arrivals), next to
  the lab's link-layer switch (its interface down -> up on the new switch);
* signal-to-flows-confirmed at the controller;
* the packets buffered and the delay the buffer added to them (mean, max);
* lost, reordered and duplicated packets.

Targets (issue 4): interruption <= link-layer switch + 10 ms; signal-to-flows
p99 < 10 ms.  Run as root:

    .venv/bin/python benchmarks/handover_interruption.py [--rates 100,1000] [--handovers 10]
        [--out results/bench/handover.json]
"""

from __future__ import annotations

import sys

from lab_runs import need_root, parser, run_each, run_mode, spread

COLUMNS = ("interruption_ms", "link_layer_ms", "over_link_layer_ms", "signal_to_flows_ms",
           "buffered", "buffer_added_delay_mean_ms", "buffer_added_delay_max_ms")


def run_rate(rate: int, count: int, args) -> dict:
    results = run_mode("mpa_buffer", count, rate, args)
    mode = results["modes"]["mpa_buffer"]
    rows = mode["handovers"]
    for row in rows:
        gap, link = row["interruption_ms"], row["link_layer_ms"]
        row["over_link_layer_ms"] = None if gap is None or link is None else round(
            gap - link, 3)
        row.pop("timeline")
    s = mode["summary"]
    summary = {"rate_pps": rate, "complete": results["complete"], **{
        k: s[k] for k in ("handovers", "failed", "sent", "received", "lost", "duplicates",
                          "reordered", "jitter_ms", "one_way_delay_ms_p50")}}
    summary.update({name: spread([r[name] for r in rows if r["ok"]], 50, 99)
                    for name in COLUMNS})
    return {"summary": summary, "handovers": rows}


def main() -> int:
    p = parser(__doc__, "results/bench/handover.json")
    p.add_argument("--rates", default="100,1000")
    p.add_argument("--handovers", type=int, default=10)
    args = p.parse_args()
    need_root("benchmarks/handover_interruption.py")
    return run_each("rates", [int(r) for r in args.rates.split(",")],
                    lambda rate: run_rate(rate, args.handovers, args), args.out)


if __name__ == "__main__":
    sys.exit(main())

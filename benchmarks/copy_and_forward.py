"""Benchmark: copy-and-forward with a sudden link loss (RFC 6252 §7.6.2), on
the real lab.

The demo scenario's ``mpa_copy_forward`` mode alone (``mpa-lab run``'s code):
each run a fresh controller and the default lab; mn1 binds its home address
at ap-a1-1, cn1 streams to it, and ``HandoverDriver.sudden_loss`` gives mn1 a
second interface at ap-b1-1 (net-b1), bound in standby by ``mpa-mn standby
--wait-loss``, then cuts the first interface's link.  Per run it records:

* lost, duplicated and reordered packets, and the longest gap between
  arrivals at the MN (the interruption);
* the copies the controller made, forwarded (the MN had not got them),
  skipped (it had) and delivered late, and how it told them apart;
* the cut -> the MN seeing its carrier drop -> its ``link-lost`` answered;
* the loss -> the new flows confirmed at the controller;
* the packets buffered at net-b1's AR and the delay added to them.

With ``--per-domain``, the inter-domain scenario instead (one controller per
domain, topologies/inter_domain.yaml): the second interface at ap-b1-1 is in
the other domain, the standby is bound at mn1's home domain, and what came
after the loss waits at its border (docs/inter-domain.md); the counters are
the home domain's.

Run as root:

    .venv/bin/python benchmarks/copy_and_forward.py [--runs 5] [--rate 1000]
        [--per-domain] [--out results/bench/copy_and_forward.json]
"""

from __future__ import annotations

import json
import os
import sys

from common import ROOT, stamped, write
from lab_runs import need_root, parser, run_mode, spread

SECOND_POA = "ap-b1-1"
INTER_DOMAIN = os.path.join(ROOT, "topologies", "scenarios", "inter_domain.yaml")
HOME_DOMAIN = "domain-a"     # mn1's, which keeps its binding and standby


def _ms(later, earlier):
    return None if later is None or earlier is None else round((later - earlier) / 1e6, 3)


def run(row: dict, session: dict, home: str | None = None) -> dict:
    """One run's row; ``home``: the domain whose counters count (one
    controller per domain)."""
    counters, marks = session["counters"], row["client_marks"]
    counters = counters[home] if home else counters
    return {
        "run": row["index"], "ok": row["ok"], "errors": row["errors"],
        "lost": row["lost"], "duplicated": row["duplicates"], "reordered": row["reordered"],
        "expected": row["sent"], "interruption_ms": row["interruption_ms"],
        **{f"copies_{k}": counters.get(f"copy_{k}", 0)
           for k in ("made", "forwarded", "skipped", "late_delivered", "aged")},
        "buffer_late_delivered": counters.get("buffer_late_delivered", 0),
        "decided_by": (row.get("copies") or {}).get("decided_by"),
        "cut_to_detected_ms": _ms(marks.get("loss_detected_at"), row["loss_wall_ns"]),
        "detected_to_answered_ms": _ms(marks.get("signalled_at"),
                                       marks.get("loss_detected_at")),
        "loss_to_flows_ms": row["signal_to_flows_ms"], "buffered": row["buffered"],
        "added_delay_max_ms": row["buffer_added_delay_max_ms"]}


def main() -> int:
    p = parser(__doc__, "results/bench/copy_and_forward.json")
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--per-domain", action="store_true",
                   help="one controller per domain, the second interface in the other one")
    args = p.parse_args()
    need_root("benchmarks/copy_and_forward.py")
    extra = {"scenario_path": INTER_DOMAIN} if args.per_domain else {}
    results = run_mode("mpa_copy_forward", args.runs, args.rate, args,
                       standby_poas=(SECOND_POA,), **extra)
    mode = results["modes"]["mpa_copy_forward"]
    home = HOME_DOMAIN if args.per_domain else None
    # One session per loss, in order.
    rows = [run(row, session, home)
            for row, session in zip(mode["handovers"], mode["sessions"])]
    summary = {"rate_pps": args.rate, "runs": len(rows), "complete": results["complete"],
               "per_domain": args.per_domain,
               **{k: sum(r[k] for r in rows) for k in ("lost", "duplicated", "reordered")}}
    for name in ("interruption_ms", "loss_to_flows_ms", "detected_to_answered_ms",
                 "copies_forwarded", "copies_late_delivered", "buffered"):
        summary[name] = spread([r[name] for r in rows], 50)
    write(args.out, stamped({"summary": summary, "runs": rows}))
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())

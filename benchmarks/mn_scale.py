"""Control-plane benchmark at scale: many MNs through the Ryu application.

No Mininet, no root.  For each number of MNs (default 100, 1,000 and
10,000), in a fresh process: a generated topology with one MN per PoA, the
Ryu application (``apps.mpa_app``) driven with fake switches and its state
file on disk (:mod:`scale_driver`), and two phases, ``--window`` MNs in
flight at a time:

1. *prepare*: every MN attaches (its first packet at its PoA, a packet-in),
   pre-authenticates and pre-configures in the next network of the ring
   over the REST channel's path, gets a tunnel and binds its home address
   to its nCoA;
2. *hand over*, with every MN resident: pre-switch (a correspondent's
   packet for the nCoA is punted at the nAR meanwhile and buffered),
   arrival (the MN's first packet at the target PoA), and the handover
   completes: flows confirmed by the switches' barrier replies, flush,
   drain.

Per step, p50 and p99 latency: from the MN's request to its answer
(``attach``: its first packet to the host learned; ``arrival-to-flows`` and
``complete``: from the arrival, by the core's own clock).  Handovers per
second: overall (both phases) and sustained (the second), by the wall clock
of this one process (which also runs the switches and the MNs), and the
controller's capacity: MNs per second of time spent in the application's
handlers and worker.  Memory per MN: the process's RSS growth over both
phases, divided by the MNs (it includes the fake switches' tables and the
MNs' keys); and, with tracemalloc, what ``--sample`` more MNs doing both
phases leave allocated once their handovers are over (switches that keep
no flows meanwhile), divided by the sample; and what a second sample as
large adds on top (``traced_steady_bytes_per_mn``): the first sample's
entries in the bounded structures (the event log's ring, the match and
address caches) push out entries made before tracing began, whose release
tracemalloc does not see, so the first figure counts them as growth; in the
second they push out the first sample's, and what stays is what an MN adds.

Per handover, the controller's time beside building the same messages with
Ryu alone and from the templates (``message_floor.py``), the longest event
on the worker and the events over 20 ms, the garbage collector's time and
longest pause per phase, and the pause of the hourly full collection.

Writes JSON to ``--out`` and prints Markdown tables.  Run:

    .venv/bin/python benchmarks/mn_scale.py --out results/bench/mn_scale.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import tracemalloc

import message_floor  # noqa: E402
from common import ROOT, report, stamped  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))

SIZES = (100, 1_000, 10_000)
WINDOW = 50
SAMPLE = 200
SETTLE_S = 1.2   # past a completed handover's linger and its settling deletes


def _rss() -> int:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


def _percentiles(samples: list[float]) -> dict:
    ordered = sorted(samples)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"p50_ms": round(q[49], 3), "p99_ms": round(q[98], 3)}


class _Collections:
    """Time the cyclic garbage collector runs, and its longest pause."""

    def __init__(self):
        self.total, self.longest, self._started = 0.0, 0.0, 0.0
        gc.callbacks.append(self._callback)

    def _callback(self, phase, info) -> None:
        if phase == "start":
            self._started = time.perf_counter()
        else:
            pause = time.perf_counter() - self._started
            self.total += pause
            self.longest = max(self.longest, pause)

    def take(self) -> tuple[float, float]:
        taken = (self.total, self.longest)
        self.total = self.longest = 0.0
        return taken


class _Discard:
    """A switch that keeps nothing (during the memory sample)."""

    def apply(self, msg) -> None:
        pass


def measure(count: int, window: int, sample: int) -> dict:
    from apps import heap
    from apps.mpa_app import settle_heap
    from scale_driver import Driver, check_completed, hand_over, of_the_controller, prepare, \
        scale_topology, state_store

    started = time.perf_counter()
    topology, radius, mns = scale_topology(count + 2 * sample)
    load_s = time.perf_counter() - started
    resident, extra, more = mns[:count], mns[count:count + sample], mns[count + sample:]
    with tempfile.TemporaryDirectory() as directory:
        store = state_store(directory)
        driver = Driver(topology, radius, store)
        settle_heap()   # as MpaApp.start does
        started = time.perf_counter()
        driver.connect_all()
        connect_s = time.perf_counter() - started
        _stalls(driver)   # the connect storm's are not the prepare phase's
        gc.collect()
        rss_before = _rss()
        collector = _Collections()
        states: dict = {}
        busy = driver.busy
        prepare_s = driver.run((prepare(driver, mn, states) for mn in resident), window)
        prepare_busy, busy = driver.busy - busy, driver.busy
        gc_prepare = collector.take()
        stalls_prepare = _stalls(driver)
        driver.capture, sent = [], driver.sent
        handover_s = driver.run((hand_over(driver, mn, states) for mn in resident), window)
        handover_busy = driver.busy - busy
        gc_handover = collector.take()
        stalls_handover = _stalls(driver)
        messages_per_handover = (driver.sent - sent) / count
        captured, driver.capture = driver.capture, None
        driver.settle(SETTLE_S)
        check_completed(driver, resident)
        flows = sum(len(dp.table.flows) for dp in driver.datapaths.values())
        gc.collect()
        rss_after = _rss()

        driver.record = False
        for dp in driver.datapaths.values():
            dp.table = _Discard()
        gc.collect()
        tracemalloc.start()
        traced = _traced_after(driver, extra, states, window)
        # A second sample: the bounded structures (the event log's ring,
        # the match and address caches) now drop entries the first one
        # made, which tracemalloc sees go, so what stays is what each MN
        # adds for good.
        steady = _traced_after(driver, more, states, window) - traced
        tracemalloc.stop()
        check_completed(driver, extra + more)
        counters = driver.core.counters
        store.close()
        # Cycles frozen alive and dropped since: what a full collection
        # finds, and how long its walk takes.  DEBUG_SAVEALL keeps what it
        # finds (to tell whose it is), so freeing it is not in the time.
        started = time.perf_counter()
        gc.set_debug(gc.DEBUG_SAVEALL)
        cycles = heap.collect_everything()
        full_collection_ms = round((time.perf_counter() - started) * 1000, 1)
        # Whose: the driver's MNs and RADIUS server make cycles (TLS, EAP);
        # the controller should make none (gc_full_every_s is off for that).
        controllers = sum(1 for o in gc.garbage if of_the_controller(o))
        gc.set_debug(0)
        gc.garbage.clear()
    # The same messages built with Ryu alone: the framework's floor.
    floor = message_floor.floor(captured)
    per_handover = {name.replace("_us_per_message", "_us_per_handover"):
                    round(us * messages_per_handover, 1) for name, us in floor.items()}
    controller_us = handover_busy / count * 1e6
    return {
        "mns": count, "window": window,
        "networks": len(topology.networks), "switches": len(topology.switches),
        "poas": len(topology.poas),
        "load_s": round(load_s, 2), "connect_s": round(connect_s, 2),
        "prepare_s": round(prepare_s, 3), "handover_s": round(handover_s, 3),
        "handovers_per_s_overall": round(count / (prepare_s + handover_s)),
        "handovers_per_s_sustained": round(count / handover_s),
        "controller_s_prepare": round(prepare_busy, 3),
        "controller_s_handover": round(handover_busy, 3),
        "controller_handovers_per_s_overall": round(count / (prepare_busy + handover_busy)),
        "controller_handovers_per_s_sustained": round(count / handover_busy),
        "controller_ms_per_mn": round((prepare_busy + handover_busy) / count * 1000, 3),
        "gc_s_prepare": round(gc_prepare[0], 3), "gc_s_handover": round(gc_handover[0], 3),
        "gc_longest_ms": round(max(gc_prepare[1], gc_handover[1]) * 1000, 1),
        "full_collection_ms": full_collection_ms, "cycles_found_by_full_collection": cycles,
        "cycle_objects_of_the_controller": controllers,
        "gc_longest_ms_prepare": round(gc_prepare[1] * 1000, 1),
        "gc_longest_ms_handover": round(gc_handover[1] * 1000, 1),
        "worker_longest_ms_prepare": stalls_prepare[0], "worker_longest_prepare": stalls_prepare[1],
        "worker_stalls_prepare": stalls_prepare[2],
        "worker_stalls_by_event_prepare": stalls_prepare[3],
        "worker_longest_cpu_ms_prepare": stalls_prepare[4],
        "worker_longest_cpu_prepare": stalls_prepare[5],
        "worker_stalls_cpu_prepare": stalls_prepare[6],
        "worker_longest_ms_handover": stalls_handover[0],
        "worker_longest_handover": stalls_handover[1], "worker_stalls_handover": stalls_handover[2],
        "worker_stalls_by_event_handover": stalls_handover[3],
        "worker_longest_cpu_ms_handover": stalls_handover[4],
        "worker_longest_cpu_handover": stalls_handover[5],
        "worker_stalls_cpu_handover": stalls_handover[6],
        "messages_per_handover": round(messages_per_handover, 2),
        "messages_timed": len(captured),
        "controller_us_per_handover": round(controller_us, 1),
        **floor, **per_handover,
        "ratio_to_ryu_floor": round(controller_us / per_handover["ryu_us_per_handover"], 2),
        "steps": {step: _percentiles(samples) for step, samples in driver.samples.items()},
        "flows_on_switches": flows,
        "rss_bytes_per_mn": round((rss_after - rss_before) / count),
        "traced_bytes_per_mn": round(traced / sample),
        "traced_steady_bytes_per_mn": round(steady / sample),
        "memory_sample": sample,
        "events": driver.events,
        "config_waiting_for_dad": counters["config_waiting_for_dad"],
        "dad_probe_sent": counters["dad_probe_sent"],
    }


def _traced_after(driver, mns, states: dict, window: int) -> int:
    """``mns`` prepare and hand over; what is traced once they are done."""
    from scale_driver import hand_over, prepare
    driver.run((prepare(driver, mn, states) for mn in mns), window)
    driver.run((hand_over(driver, mn, states) for mn in mns), window)
    driver.settle(SETTLE_S)
    gc.collect()
    return tracemalloc.get_traced_memory()[0]


def _stalls(driver) -> tuple:
    """The longest event the worker took since the last call (ms, what) and
    how many took over scale_driver.STALL_S (by event), the same by the
    worker thread's CPU time; then starts again."""
    taken = (round(driver.longest_event * 1000, 1), driver.longest_what, driver.stalls,
             dict(sorted(driver.stalls_by.items())),
             round(driver.longest_cpu * 1000, 1), driver.longest_cpu_what, driver.stalls_cpu)
    driver.longest_event, driver.longest_what, driver.stalls = 0.0, None, 0
    driver.stalls_by = {}
    driver.longest_cpu, driver.longest_cpu_what, driver.stalls_cpu = 0.0, None, 0
    return taken


def _table(result: dict) -> str:
    rows = result["rows"]
    lines = ["| MNs | handovers/s overall | sustained | controller: overall | sustained "
             "| controller ms per MN | RSS per MN | traced per MN | traced, second sample |",
             "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['mns']:,} | {r['handovers_per_s_overall']:,} | "
            f"{r['handovers_per_s_sustained']:,} | "
            f"{r['controller_handovers_per_s_overall']:,} | "
            f"{r['controller_handovers_per_s_sustained']:,} | {r['controller_ms_per_mn']} | "
            f"{r['rss_bytes_per_mn'] / 1024:.1f} KiB | {r['traced_bytes_per_mn'] / 1024:.1f} KiB | "
            f"{r['traced_steady_bytes_per_mn'] / 1024:.1f} KiB |")
    lines += ["", "| MNs | controller µs per handover | messages | built with Ryu "
              "(match given) | Ryu (match too) | templates | ratio to Ryu's floor "
              "| longest event, prepare / handover (ms) | events over 20 ms "
              "| longest GC pause, prepare / handover (ms) | GC s, prepare |",
              "|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        lines.append(
            f"| {r['mns']:,} | {r['controller_us_per_handover']:,} | "
            f"{r['messages_per_handover']} | {r['ryu_us_per_handover']} | "
            f"{r['ryu_with_match_us_per_handover']} | {r['templates_us_per_handover']} | "
            f"{r['ratio_to_ryu_floor']} | {r['worker_longest_ms_prepare']} "
            f"({r['worker_longest_prepare']}) / {r['worker_longest_ms_handover']} "
            f"({r['worker_longest_handover']}) | "
            f"{r['worker_stalls_prepare'] + r['worker_stalls_handover']} | "
            f"{r['gc_longest_ms_prepare']} / {r['gc_longest_ms_handover']} | "
            f"{r['gc_s_prepare']} |")
    lines += ["", "| step | " + " | ".join(f"{r['mns']:,} MNs p50 / p99 (ms)" for r in rows)
              + " |", "|---|" + "---|" * len(rows)]
    for step in rows[0]["steps"]:
        cells = [f"{r['steps'][step]['p50_ms']} / {r['steps'][step]['p99_ms']}" for r in rows]
        lines.append(f"| {step} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)),
                        help="numbers of MNs, comma-separated")
    parser.add_argument("--window", type=int, default=WINDOW, help="MNs in flight at once")
    parser.add_argument("--sample", type=int, default=SAMPLE,
                        help="MNs more, for the traced memory per MN (twice: a second "
                             "sample after the first)")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one:
        print(json.dumps(measure(args.one, args.window, args.sample)))
        return 0
    rows = []
    for size in (int(s) for s in args.sizes.split(",")):
        # A fresh process each: its RSS is its own, and eventlet's patching
        # stays there.
        run = subprocess.run([sys.executable, os.path.abspath(__file__), "--one", str(size),
                              "--window", str(args.window), "--sample", str(args.sample)],
                             capture_output=True, text=True)
        if run.returncode:
            print("\n".join(run.stderr.splitlines()[-40:]), file=sys.stderr)
            run.check_returncode()
        out = run.stdout
        rows.append(json.loads(out.strip().splitlines()[-1]))
        print(f"{size} MNs: {rows[-1]['handovers_per_s_sustained']} handovers/s sustained",
              file=sys.stderr)
    result = stamped({"benchmark": "mn_scale", "rows": rows})
    return report(args.out, result, _table(result))


if __name__ == "__main__":
    sys.exit(main())

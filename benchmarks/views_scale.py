"""State, DAD and views at scale: what the operator's views, the DAD tick and
the state file cost the controller's one worker.

No Mininet, no root: the Ryu application driven with fake switches and its
state file on disk (:mod:`scale_driver`), each measurement in a fresh
process.  Two kinds of run:

``views``, per topology size (``--views``: switches approximately, with
``--hosts`` learned hosts):

* *start to first answer*: the topology parsed, the application built and
  started (``settle_heap``), and the first ``GET /mpa/v1/switches``
  answered, in process (``webob``), as soon as the REST server would
  listen, before any switch connects;
* the switches connect and are reconciled, DAD fills every reserve, and
  each host's first packet at its PoA is learned;
* ``GET /mpa/v1/switches``: the first call with the hosts learned, the
  median of ``REPEAT`` more, and the peak of what one more call allocates
  (tracemalloc, untimed);
* the idle ``mpa_tick`` (every reserve full, nothing due): the median cost
  of one call, and of ``next_mpa_tick``, with and without a handful of
  probes in flight.

``state``, per number of MNs (``--state``): every MN attaches,
pre-authenticates, pre-configures, gets a tunnel and binds (mn_scale's
*prepare*), with the state file on disk; the longest single event the
worker handled, the longest tick, and every WAL checkpoint's duration and
whether it ran on the worker.

Writes JSON to ``--out`` and prints Markdown tables.  The numbers come from
a shared machine (two cores, other jobs running): compare ratios between
runs of the same day, not single values across days.  Run:

    .venv/bin/python benchmarks/views_scale.py --out results/bench/views_scale.json
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

from common import ROOT, report, stamped  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))

# (domains, access networks per domain): generate() makes 2 + D + D * N switches.
SHAPES = {52: (2, 24), 1_000: (5, 199), 2_000: (10, 199)}
HOSTS = 10_000
STATE_SIZES = (3_000, 10_000)
REPEAT = 5
WINDOW = 50


def _ms(seconds: float) -> float:
    return round(seconds * 1000, 3)


def _timed(call):
    t0 = time.perf_counter()
    value = call()
    return time.perf_counter() - t0, value


def _get(app, path: str):
    from webob import Request

    from support.apitest import TOKENS
    from mpa_protocol import api_tokens
    request = Request.blank(path, headers={
        "Authorization": f"Bearer {TOKENS[api_tokens.READER]}"})
    response = request.get_response(app.rest)
    assert response.status_int == 200, (path, response.status, response.body[:300])
    return json.loads(response.body)


class _TimedWorker:
    """Every event the worker handles, timed: the longest of each kind, by
    the wall clock and by the worker thread's own CPU time.  On a shared
    machine the first also holds the time the thread waited for a core (or
    for the GIL); the second is what the event cost the worker itself."""

    def __init__(self, app):
        self.longest: dict[str, float] = {}
        self.longest_cpu: dict[str, float] = {}
        handle = app.handle

        def timed(item):
            t0, c0 = time.perf_counter(), time.thread_time()
            handle(item)
            took, cpu = time.perf_counter() - t0, time.thread_time() - c0
            if took > self.longest.get(item[0], 0.0):
                self.longest[item[0]] = took
            if cpu > self.longest_cpu.get(item[0], 0.0):
                self.longest_cpu[item[0]] = cpu
        app.handle = timed


class _TimedCheckpoints:
    """Each WAL checkpoint: how long, and whether the worker ran it."""

    def __init__(self, store, driver):
        self.on_worker: list[float] = []
        checkpoint = getattr(store, "maintain", None)   # the worker's, before 2d1ac5c

        def timed():
            took, _ = _timed(checkpoint)
            self.on_worker.append(took)
        if checkpoint is not None:
            store.maintain = timed
        self.thread = None
        checkpointer = getattr(driver.app, "checkpointer", None)
        if checkpointer is not None:
            # The application's own checkpointer thread, as MpaApp.start starts it.
            checkpointer.start()
            self.thread = checkpointer


def measure_views(switches: int, hosts: int) -> dict:
    from apps.mpa_app import settle_heap
    from support.apitest import tokens
    from scale_driver import Driver, Punt, Until, _frame, scale_topology, state_store
    from mpa_sdn.tables import Table

    domains, networks = SHAPES[switches]
    with tempfile.TemporaryDirectory() as directory:
        t0 = time.perf_counter()
        topology, credentials, mns = scale_topology(hosts, domains, networks)
        parsed = time.perf_counter()
        driver = Driver(topology, credentials, state_store(directory))
        driver.app.rest.tokens = tokens()
        settle_heap()
        built = time.perf_counter()
        first = _get(driver.app, "/mpa/v1/switches")
        answered = time.perf_counter()
        assert len(first) == len([s for s in topology.switches.values()]), len(first)

        connect_s, _ = _timed(driver.connect_all)
        core, graph = driver.core, driver.graph

        def attach(mn):
            poa = graph.poa(mn.poa)
            here = graph.network_of_address(mn.address)
            yield Punt(graph.dpid(poa.switch), poa.port, Table.INGRESS,
                       _frame(mn.mac, here.gateway_mac, mn.address, "10.0.0.10"))
            yield Until(lambda: mn.address in core.hosts)
        attach_s = driver.run((attach(mn) for mn in mns), WINDOW)
        assert len(core.hosts) >= hosts, len(core.hosts)

        gc.collect()
        first_call_s, rows = _timed(lambda: _get(driver.app, "/mpa/v1/switches"))
        later = [_timed(lambda: _get(driver.app, "/mpa/v1/switches"))[0]
                 for _ in range(REPEAT)]
        # What one more call allocates at its peak (traced apart: tracing
        # slows every allocation down, so no time above is traced).
        tracemalloc.start()
        _get(driver.app, "/mpa/v1/switches")
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        expected = sum(r["expected_flows"] for r in rows)
        flows = sum(len(dp.table.flows) for dp in driver.datapaths.values())

        now = driver.clock()
        idle = [_timed(lambda: core.mpa_tick(now))[0] for _ in range(50)]
        due = [_timed(lambda: core.next_mpa_tick(now))[0] for _ in range(50)]
        return {
            "switches": len(topology.switches), "networks": len(topology.networks),
            "pools": len(core.mpa.ca.pools), "hosts": len(core.hosts),
            "parse_s": round(parsed - t0, 3), "build_s": round(built - parsed, 3),
            "first_answer_s": round(answered - built, 3),
            "start_to_first_answer_s": round(answered - t0, 3),
            "connect_s": round(connect_s, 2), "attach_s": round(attach_s, 2),
            "switches_first_ms": _ms(first_call_s),
            "switches_call_peak_mib": round(peak / 2**20, 1),
            "switches_later_ms": _ms(statistics.median(later)),
            "expected_flows": expected, "flows_on_switches": flows,
            "idle_mpa_tick_us": round(statistics.median(idle) * 1e6, 1),
            "next_mpa_tick_us": round(statistics.median(due) * 1e6, 1),
        }


def measure_state(count: int) -> dict:
    from apps.mpa_app import settle_heap
    from scale_driver import Driver, prepare, scale_topology, state_store

    topology, credentials, mns = scale_topology(count)
    with tempfile.TemporaryDirectory() as directory:
        store = state_store(directory)
        driver = Driver(topology, credentials, store)
        settle_heap()
        driver.connect_all()
        worker = _TimedWorker(driver.app)
        checkpoints = _TimedCheckpoints(store, driver)
        states: dict = {}
        prepare_s = driver.run((prepare(driver, mn, states) for mn in mns), WINDOW)
        wal = os.path.getsize(store.path + "-wal") if os.path.exists(store.path + "-wal") else 0
        # One checkpoint of the WAL this phase left, timed wherever it runs.
        thread, during_s = checkpoints.thread, 0.0
        if thread is not None:
            thread.stop()
            during_s = thread.longest_s
            last_s, _ = _timed(thread.checkpoint_now)
        else:
            last_s, _ = _timed(store.maintain)
            checkpoints.on_worker.pop()
        counters = driver.core.counters
        result = {
            "mns": count, "prepare_s": round(prepare_s, 2),
            "longest_event_ms": {k: _ms(v) for k, v in sorted(worker.longest.items())},
            "longest_worker_event_ms": _ms(max(worker.longest.values())),
            "longest_event_cpu_ms": {k: _ms(v) for k, v in sorted(worker.longest_cpu.items())},
            "longest_worker_event_cpu_ms": _ms(max(worker.longest_cpu.values())),
            "checkpoints_on_worker": len(checkpoints.on_worker),
            "checkpoint_on_worker_longest_ms": _ms(max(checkpoints.on_worker, default=0.0)),
            "checkpoints_off_worker": counters["state_checkpoint"],
            "checkpoint_off_worker_longest_ms": _ms(during_s),
            "wal_bytes_before_last_checkpoint": wal,
            "checkpoints_behind": counters["state_checkpoint_behind"],
            "state_write_by_delay": counters["state_write_by_delay"],
            "state_write_by_records": counters["state_write_by_records"],
            "last_checkpoint_ms": _ms(last_s),
            "state_writes": counters["state_write"],
            "state_records_written": counters["state_records_written"],
            "record_bytes_sa": _record_bytes(store, "sa"),
        }
        store.close()
    return result


def _record_bytes(store, kind: str) -> int:
    """The mean size of one record of ``kind`` in the state file."""
    store.flush() if hasattr(store, "flush") else None
    row = store._db.execute("SELECT avg(length(body)) FROM records WHERE kind = ?",
                            (kind,)).fetchone()
    return round(row[0] or 0)


def _tables(result: dict) -> str:
    lines = ["| switches | hosts | start to first answer (s) | GET /switches first (ms) "
             "| a call's peak (MiB) | later (ms) | idle mpa_tick (µs) | next_mpa_tick (µs) |",
             "|---|---|---|---|---|---|---|---|"]
    for r in result["views"]:
        lines.append(f"| {r['switches']:,} | {r['hosts']:,} | {r['start_to_first_answer_s']} | "
                     f"{r['switches_first_ms']:,} | {r.get('switches_call_peak_mib', '')} | "
                     f"{r['switches_later_ms']:,} | {r['idle_mpa_tick_us']:,} | "
                     f"{r['next_mpa_tick_us']} |")
    lines += ["", "| MNs | longest worker event: wall, CPU (ms) | checkpoints on the worker: count, longest "
              "(ms) | off the worker: count, longest (ms) | SA record (bytes) |",
              "|---|---|---|---|---|"]
    for r in result["state"]:
        lines.append(f"| {r['mns']:,} | {r['longest_worker_event_ms']}, "
                     f"{r.get('longest_worker_event_cpu_ms', '')} | "
                     f"{r['checkpoints_on_worker']}, {r['checkpoint_on_worker_longest_ms']} | "
                     f"{r['checkpoints_off_worker']}, {r['checkpoint_off_worker_longest_ms']} | "
                     f"{r['record_bytes_sa']} |")
    return "\n".join(lines)


def _sub(*args) -> dict:
    out = subprocess.run([sys.executable, os.path.abspath(__file__), *args], check=True,
                         capture_output=True, text=True).stdout
    return json.loads(out.strip().splitlines()[-1])


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--views", default=",".join(map(str, SHAPES)),
                        help=f"switch counts, comma-separated, of {sorted(SHAPES)} (or none)")
    parser.add_argument("--hosts", type=int, default=HOSTS,
                        help="learned hosts (at most 98 per access network)")
    parser.add_argument("--state", default=",".join(map(str, STATE_SIZES)),
                        help="numbers of MNs for the state file's run (or none)")
    parser.add_argument("--label", default="", help="a name for this run in the JSON")
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--one-views", nargs=2, type=int, help=argparse.SUPPRESS)
    parser.add_argument("--one-state", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.one_views:
        print(json.dumps(measure_views(*args.one_views)))
        return 0
    if args.one_state:
        print(json.dumps(measure_state(args.one_state)))
        return 0
    views, state = [], []
    for switches in (int(s) for s in args.views.split(",") if s not in ("", "none")):
        domains, networks = SHAPES[switches]
        hosts = min(args.hosts, domains * networks * 98)
        views.append(_sub("--one-views", str(switches), str(hosts)))
        print(f"{switches} switches: {views[-1]}", file=sys.stderr)
    for count in (int(s) for s in args.state.split(",") if s not in ("", "none")):
        state.append(_sub("--one-state", str(count)))
        print(f"{count} MNs: {state[-1]}", file=sys.stderr)
    result = stamped({"benchmark": "views_scale", "label": args.label, "views": views,
                      "state": state})
    return report(args.out, result, _tables(result))


if __name__ == "__main__":
    sys.exit(main())

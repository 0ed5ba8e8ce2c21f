"""The application writes the state file after the flows, in groups, and
checkpoints it from a thread of its own (apps/mpa_app.py, apps/checkpoint.py).

The Ryu application with fake switches (benchmarks/scale_driver.py), its
state file on disk opened as mpa-controller opens it; time is the test's."""

from __future__ import annotations

import collections
import dataclasses
import os
import sqlite3
import sys
import time
import types

import pytest

from apps import mpa_app
from apps.checkpoint import Checkpointer
from support.paths import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from scale_driver import Driver, prepare, scale_topology, state_store  # noqa: E402


class Clock:
    def __init__(self):
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def app(tmp_path, monkeypatch):
    clock = Clock()
    monkeypatch.setattr(mpa_app, "time", types.SimpleNamespace(
        monotonic=clock, time=lambda: 1_700_000_000.0 + clock()))
    topology, radius, mns = scale_topology(4, domains=1, networks=3)
    store = state_store(str(tmp_path))
    driver = Driver(topology, radius, store, clock=clock, sleep=clock.sleep)
    driver.connect_all()
    yield driver, store, mns
    driver.app.checkpointer.stop()
    store.close()


def records_in_the_file(path: str, kind: str) -> int:
    db = sqlite3.connect(path)
    try:
        return db.execute("SELECT COUNT(*) FROM records WHERE kind = ?", (kind,)).fetchone()[0]
    finally:
        db.close()


def logged(driver, store) -> list:
    """What happens, in order: ("event", what) as the worker takes one,
    ("send", message type) and ("write", records)."""
    log = []
    handle = driver.app.handle

    def handled(item):
        log.append(("event", item[0]))
        handle(item)
    driver.app.handle = handled
    for dp in driver.datapaths.values():
        def send(msg, dp=dp, original=dp.send_msg):
            log.append(("send", type(msg).__name__))
            return original(msg)
        dp.send_msg = send
    flush = store.flush

    def write():
        written = flush()
        log.append(("write", written))
        return written
    store.flush = write
    return log


def test_an_events_records_are_written_after_its_flows_are_sent(app):
    driver, store, mns = app
    log = logged(driver, store)
    driver.run((prepare(driver, mn, {}) for mn in mns[:1]), window=1)
    events = []
    for what, detail in log:
        if what == "event":
            events.append([])
        else:
            events[-1].append(what)
    written = [e for e in events if "write" in e]
    assert any("send" in e for e in written), log
    # Within an event, nothing is sent after the write: its flows (the
    # tunnel's, the binding's, their barriers) and answers went first.
    for event in written:
        assert "send" not in event[event.index("write"):], log
    assert records_in_the_file(store.path, "tunnel") == 1
    assert records_in_the_file(store.path, "binding") == 1


def test_events_queued_together_are_written_in_one_transaction(app):
    driver, store, mns = app
    driver.run((prepare(driver, mn, {}) for mn in mns), window=4)
    counters = driver.core.counters
    writes, records = counters["state_write"], counters["state_records_written"]
    log = logged(driver, store)
    ca = driver.core.mpa.ca

    def renew(now, mn):
        ca.allocate(mn.target, f"mpa:{mn.identity}|{mn.mac}", mn.mac, driver.core.mpa.wall(now))
        return []
    # Four MNs' leases renewed by four events queued at once: one write.
    for mn in mns:
        driver.app._post("rest signal", None, lambda now, mn=mn: renew(now, mn))
    driver.pump()
    assert [entry for entry in log if entry[0] == "write"] == [("write", 4)]
    assert counters["state_write"] == writes + 1
    assert counters["state_records_written"] == records + 4
    assert not counters["state_write_by_records"] and not counters["state_write_by_delay"]


def test_a_busy_worker_writes_once_its_bound_of_records_waits(app):
    driver, store, mns = app
    driver.app.settings = dataclasses.replace(driver.app.settings, state_write_records=2)
    driver.run((prepare(driver, mn, {}) for mn in mns[:1]), window=1)
    log = logged(driver, store)
    for i in range(5):
        driver.app._post("rest signal", None, lambda now, i=i: store.put(
            "probe", str(i), {"i": i}) or [])
    driver.pump()
    assert [entry for entry in log if entry[0] == "write"] == [
        ("write", 2), ("write", 2), ("write", 1)]
    assert driver.core.counters["state_write_by_records"] == 2


def test_the_checkpointer_moves_the_wal_into_the_file_from_its_own_thread(app):
    driver, store, mns = app
    driver.run((prepare(driver, mn, {}) for mn in mns[:1]), window=1)
    wal = store.path + "-wal"
    assert os.path.getsize(wal) > 0
    immutable = f"file:{store.path}?immutable=1"

    def leases_in_the_database_file() -> int:
        db = sqlite3.connect(immutable, uri=True)
        try:
            return db.execute("SELECT COUNT(*) FROM records WHERE kind = 'lease'").fetchone()[0]
        except sqlite3.OperationalError:
            return 0
        finally:
            db.close()
    assert leases_in_the_database_file() == 0
    counters = driver.core.counters
    checkpointer = Checkpointer(store, counters, every_s=0.01)
    checkpointer.start()
    deadline = time.monotonic() + 30
    while not counters["state_checkpoint"] and time.monotonic() < deadline:
        time.sleep(0.01)
    checkpointer.stop()
    assert counters["state_checkpoint"] >= 1 and not counters["state_checkpoint_failed"]
    assert leases_in_the_database_file() == 1
    assert checkpointer._thread is None


def test_a_checkpoint_that_did_not_catch_up_is_counted_and_one_that_failed_too():
    class Store:
        path = "state.db"

        def __init__(self, result):
            self.result = result

        def checkpoint(self):
            if isinstance(self.result, Exception):
                raise self.result
            return self.result
    counters = collections.Counter()
    Checkpointer(Store(False), counters, 1.0).checkpoint_now()
    Checkpointer(Store(True), counters, 1.0).checkpoint_now()
    Checkpointer(Store(OSError("disk gone")), counters, 1.0).checkpoint_now()
    assert counters == {"state_checkpoint": 2, "state_checkpoint_behind": 1,
                        "state_checkpoint_failed": 1}


def test_while_a_checkpoint_runs_the_worker_writes_only_past_its_bounds(app):
    driver, store, mns = app
    driver.run((prepare(driver, mn, {}) for mn in mns[:1]), window=1)
    log = logged(driver, store)
    store.checkpointing = True
    driver.app._post("rest signal", None, lambda now: store.put("probe", "a", {}) or [])
    driver.pump()
    assert not [entry for entry in log if entry[0] == "write"] and store.pending == 1
    # Past state_write_delay_s it is written, checkpoint or not.
    driver.clock.sleep(driver.app.settings.state_write_delay_s)
    driver.app._post("rest signal", None, lambda now: [])
    driver.pump()
    assert [entry for entry in log if entry[0] == "write"] == [("write", 1)]
    assert driver.core.counters["state_write_by_delay"] == 1
    store.checkpointing = False

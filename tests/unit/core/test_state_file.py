"""The state file written in groups: nothing of a group until its flush,
all of it then; a restart from the file finds what was flushed, and a crash
before a flush loses the whole group, whose flows reconciliation removes."""

from __future__ import annotations

import os
import sqlite3

import pytest

from mpa_sdn.store import SqliteStore, StoreError
from mpa_sdn.tables import Feature
from support.handover_rig import HOME, NCOA, bound, flows_of, make_rig, prepared
from support.paths import DEFAULT_TOPOLOGY
from mpa_sdn.config import load_topology


@pytest.fixture(scope="module")
def topology():
    return load_topology(DEFAULT_TOPOLOGY)


def in_the_file(path: str) -> dict:
    """What another process reading the file sees: (kind, key) -> body."""
    db = sqlite3.connect(path)
    try:
        return {(k, key): body for k, key, body in db.execute(
            "SELECT kind, key, body FROM records ORDER BY kind, key")}
    finally:
        db.close()


def test_a_grouped_store_writes_nothing_before_its_flush_and_the_group_whole_at_it(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, grouped=True)
    store.put("lease", "a", {"n": 1})
    store.put("lease", "a", {"n": 2})       # the record as it is at the flush
    store.put("sa", "x", {"n": 3})
    store.delete("sa", "x")                  # put and deleted in one group: not there
    store.put("sa", "y", {"n": 4})
    assert store.pending == 3
    assert in_the_file(path) == {}
    assert store.flush() == 3
    assert in_the_file(path) == {("lease", "a"): '{"n": 2}', ("sa", "y"): '{"n": 4}'}
    assert store.pending == 0 and store.flush() == 0
    store.delete("lease", "a")
    store.close()                            # a clean stop writes what is noted
    assert in_the_file(path) == {("sa", "y"): '{"n": 4}'}


def test_a_failed_flush_writes_none_of_its_group_and_keeps_it_for_the_next(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, grouped=True)
    store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON records WHEN NEW.kind = 'bad' "
                      "BEGIN SELECT RAISE(ABORT, 'refused'); END")
    store.put("lease", "a", {"n": 1})
    store.put("bad", "b", {"n": 2})
    with pytest.raises(StoreError, match="2 records not written"):
        store.flush()
    assert in_the_file(path) == {}
    assert store.pending == 2
    store._db.execute("DROP TRIGGER refuse")
    assert store.flush() == 2
    assert set(in_the_file(path)) == {("lease", "a"), ("bad", "b")}


def test_an_ungrouped_store_writes_each_record_at_once(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path)
    store.put("lease", "a", {"n": 1})
    assert store.pending == 0 and in_the_file(path) == {("lease", "a"): '{"n": 1}'}


def test_a_restart_after_the_flush_finds_every_sa_lease_tunnel_and_binding(topology, tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, grouped=True)
    rig = make_rig(topology, store=store)
    mn = bound(rig)
    kept = flows_of(rig, Feature.TUNNEL, Feature.BINDING)
    assert store.pending
    store.flush()
    # The process dies after the flush: its connection is never closed.
    rig.restart(store=SqliteStore(path, grouped=True))
    assert list(rig.core.mobility.tunnels) == [NCOA]
    assert list(rig.core.mobility.bindings) == [HOME]
    assert flows_of(rig, Feature.TUNNEL, Feature.BINDING) == kept
    assert mn.configure() == NCOA            # its SA answers, its lease is the same


def test_a_crash_before_the_flush_loses_the_group_whole_and_its_flows_go(topology, tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, grouped=True)
    rig = make_rig(topology, store=store)
    mn = prepared(rig)                       # its SA and lease, written
    store.flush()
    mn.ask("tunnel-request", "tunnel")
    mn.bind()                                # answered, flows sent, records only noted
    assert store.pending
    assert flows_of(rig, Feature.TUNNEL, Feature.BINDING)
    rig.restart(store=SqliteStore(path, grouped=True))   # the process died before the flush
    assert not rig.core.mobility.tunnels and not rig.core.mobility.bindings
    # Reconciliation takes off the switches what the lost group put there.
    assert not flows_of(rig, Feature.TUNNEL, Feature.BINDING)
    # The SA lost the numbers the MN used since the flush; the MN's go on
    # rising, so what it sends next is new to the SA, and the same steps work again.
    assert mn.configure() == NCOA
    mn.ask("tunnel-request", "tunnel")
    mn.bind()
    assert list(rig.core.mobility.bindings) == [HOME]


def write_records(store, count: int, start: int = 0) -> None:
    for i in range(start, start + count):
        store.put("lease", f"k{i:06d}", {"n": i, "pad": "x" * 200})
    store.flush()


def test_a_checkpoint_that_caught_up_lets_the_wal_start_over_cut_to_its_limit(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, grouped=True)
    store._db.execute("PRAGMA journal_size_limit=65536")
    for group in range(10):
        write_records(store, 200, group * 200)
    assert os.path.getsize(path + "-wal") > 65536
    assert store.checkpoint() is True
    write_records(store, 1, 5000)             # the writer starts the WAL over
    assert os.path.getsize(path + "-wal") <= 65536
    assert len(store.load("lease")) == 2001


def test_a_checkpoint_held_back_by_a_reader_says_it_did_not_catch_up(tmp_path):
    path = str(tmp_path / "state.db")
    store = SqliteStore(path, grouped=True)
    write_records(store, 10)
    reader = sqlite3.connect(path, isolation_level=None)
    reader.execute("BEGIN")
    reader.execute("SELECT COUNT(*) FROM records").fetchone()   # its snapshot, held
    write_records(store, 10, 10)               # after the reader's snapshot
    assert store.checkpoint() is False         # cannot copy past what the reader reads
    reader.execute("COMMIT")
    reader.close()
    assert store.checkpoint() is True

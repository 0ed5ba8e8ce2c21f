"""Persistence for SAs, leases and MN state: records by kind and key.

The Authentication and Configuration Agents, mobility and the actions put
every change here, so a restarted controller finds every SA, lease, tunnel
and binding where it left them.  A record is a JSON object under (kind,
key); the parts own what is in it.

The SQLite file is created with mode 0600 (it holds derived keys) and opened
in WAL mode with ``synchronous=NORMAL``: a commit costs a write, not an
fsync, and a crash can lose at most the last commits, never corrupt the file.

Grouped (``grouped=True``, as mpa-controller opens it): a put or delete only
notes the record; :meth:`flush` writes every record noted since the last one
in one transaction, each as it is then.  The shell flushes after the flows
and answers of the events that made the changes have been sent
(apps/mpa_app.py), so no write delays a handover's flows, and one commit
serves many events.  The group is all or nothing: a crash before the flush
loses the group's changes together (docs/architecture.md, "The state file",
says what that loses and why it is safe).  Ungrouped, each put is its own
commit at once (the core's tests, and tools that write one record).

Checkpoints (copying the WAL back into the file: tens of ms with thousands
of MNs) are not left to whichever write crosses SQLite's threshold:
:meth:`checkpoint` runs one on a connection of its own, which the shell
calls from a thread of its own (apps/checkpoint.py), never the worker.
"""

from __future__ import annotations

import json
import os
import sqlite3
import stat

SCHEMA = """
CREATE TABLE IF NOT EXISTS records (
    kind TEXT NOT NULL,
    key  TEXT NOT NULL,
    body TEXT NOT NULL,
    PRIMARY KEY (kind, key)
) WITHOUT ROWID;
"""


CHECKPOINT_PASSES = 4            # passes of one checkpoint, to catch up with the writer
WAL_LIMIT_BYTES = 16 * 2**20     # a WAL that starts over is cut to this size


class StoreError(Exception):
    """The state file cannot be used; the message says why and where."""


class MemoryStore:
    """The same interface, in memory: for tests and ``state_db: ":memory:"``."""

    path = None
    checkpointing = False   # a checkpoint runs (the writer waits for it, within its bounds)

    def __init__(self):
        self._records: dict[str, dict[str, str]] = {}

    @property
    def pending(self) -> int:
        """Records noted and not yet written."""
        return 0

    def flush(self) -> int:
        """Write what is noted; the number of records written."""
        return 0

    def checkpoint(self) -> bool:
        return True

    def load(self, kind: str) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self._records.get(kind, {}).items()}

    def put(self, kind: str, key: str, body: dict) -> None:
        self._records.setdefault(kind, {})[key] = json.dumps(body, sort_keys=True)

    def delete(self, kind: str, key: str) -> None:
        self._records.get(kind, {}).pop(key, None)

    def close(self) -> None:
        pass


class SqliteStore(MemoryStore):
    def __init__(self, path: str, *, grouped: bool = False):
        self.path = path
        self.grouped = grouped
        # (kind, key) -> the body to write (a dict, serialized at the flush:
        # a record put ten times in a group is encoded once), or None to delete.
        self._noted: dict[tuple[str, str], dict | None] = {}
        self._checkpointer: sqlite3.Connection | None = None
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            # Create it 0600 before SQLite opens it: never a moment readable by others.
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
            mode = stat.S_IMODE(os.stat(path).st_mode)
            if mode & 0o077:
                os.chmod(path, 0o600)
            self._db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute("PRAGMA wal_autocheckpoint=0")
            self._db.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self._db.executescript(SCHEMA)
            self._db.execute("SELECT count(*) FROM records").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot use the state file: {exc}") from None
        for suffix in ("-wal", "-shm"):
            # SQLite creates these with the process umask.
            if os.path.exists(path + suffix):
                os.chmod(path + suffix, 0o600)

    @property
    def pending(self) -> int:
        return len(self._noted)

    def load(self, kind: str) -> dict[str, dict]:
        self.flush()   # what was noted is part of what there is
        rows = self._db.execute("SELECT key, body FROM records WHERE kind = ?", (kind,))
        records = {}
        for key, body in rows:
            try:
                value = json.loads(body)
            except ValueError:
                value = None
            if isinstance(value, dict):
                records[key] = value
        return records

    def put(self, kind: str, key: str, body: dict) -> None:
        self._noted[(kind, key)] = body
        if not self.grouped:
            self.flush()

    def delete(self, kind: str, key: str) -> None:
        self._noted[(kind, key)] = None
        if not self.grouped:
            self.flush()

    def flush(self) -> int:
        """Every noted record in one transaction; on a failure nothing is
        written, the records stay noted (the next flush tries again) and the
        error is raised as a StoreError."""
        if not self._noted:
            return 0
        puts = [(kind, key, json.dumps(body, sort_keys=True))
                for (kind, key), body in self._noted.items() if body is not None]
        deletes = [key for key, body in self._noted.items() if body is None]
        try:
            self._db.execute("BEGIN")
            try:
                self._db.executemany(
                    "INSERT OR REPLACE INTO records (kind, key, body) VALUES (?, ?, ?)", puts)
                self._db.executemany("DELETE FROM records WHERE kind = ? AND key = ?", deletes)
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        except sqlite3.Error as exc:
            raise StoreError(f"{self.path}: {len(self._noted)} records not written: {exc}"
                             ) from None
        written = len(self._noted)
        self._noted.clear()
        return written

    def checkpoint(self) -> bool:
        """Checkpoint the WAL on a connection of its own, so that a thread
        other than the writer's can run it while the writer goes on: SQLite
        lets writers carry on during a passive checkpoint.  What the writer
        committed meanwhile is copied by another pass (a short one), so that
        the WAL is wholly copied and starts over; without it, a writer never
        idle for a whole checkpoint made the WAL grow without end.  Whether
        it caught up.  One caller at a time (the shell's one checkpointer)."""
        if self._checkpointer is None:
            self._checkpointer = sqlite3.connect(self.path, isolation_level=None,
                                                 check_same_thread=False)
        self.checkpointing = True
        try:
            for _ in range(CHECKPOINT_PASSES):
                busy, frames, copied = self._checkpointer.execute(
                    "PRAGMA wal_checkpoint(PASSIVE)").fetchone()
                if frames == copied:
                    # Caught up: the writer's next transaction starts the WAL
                    # over (and cuts it to WAL_LIMIT_BYTES) instead of growing it.
                    return True
            return False
        finally:
            self.checkpointing = False

    def close(self) -> None:
        self.flush()
        if self._checkpointer is not None:
            self._checkpointer.close()
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")
        self._db.close()


def open_store(path: str, grouped: bool = False) -> MemoryStore:
    return MemoryStore() if path == ":memory:" else SqliteStore(path, grouped=grouped)

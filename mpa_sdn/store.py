"""Persistence for SAs, leases and MN state: records by kind and key.

The Authentication and Configuration Agents write through on every change,
so a restarted controller finds every SA and lease where it left them.  A
record is a JSON object under (kind, key); the agents own what is in it.

The SQLite file is created with mode 0600 (it holds derived keys) and opened
in WAL mode with ``synchronous=NORMAL``: a commit costs a write, not an
fsync, and a crash can lose at most the last commits, never corrupt the file.
Checkpoints (copying the WAL back into the file, a few ms) are not left to
whichever write crosses SQLite's threshold: :meth:`maintain`, called from
the controller's timer, runs them between messages.
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


class StoreError(Exception):
    """The state file cannot be used; the message says why and where."""


class MemoryStore:
    """The same interface, in memory: for tests and ``state_db: ":memory:"``."""

    def __init__(self):
        self._records: dict[str, dict[str, str]] = {}

    def load(self, kind: str) -> dict[str, dict]:
        return {k: json.loads(v) for k, v in self._records.get(kind, {}).items()}

    def put(self, kind: str, key: str, body: dict) -> None:
        self._records.setdefault(kind, {})[key] = json.dumps(body, sort_keys=True)

    def delete(self, kind: str, key: str) -> None:
        self._records.get(kind, {}).pop(key, None)

    def maintain(self) -> None:
        pass

    def close(self) -> None:
        pass


class SqliteStore(MemoryStore):
    def __init__(self, path: str):
        self.path = path
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
            self._db.executescript(SCHEMA)
            self._db.execute("SELECT count(*) FROM records").fetchone()
        except (OSError, sqlite3.Error) as exc:
            raise StoreError(f"{path}: cannot use the state file: {exc}") from None
        for suffix in ("-wal", "-shm"):
            # SQLite creates these with the process umask.
            if os.path.exists(path + suffix):
                os.chmod(path + suffix, 0o600)

    def load(self, kind: str) -> dict[str, dict]:
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
        self._db.execute("INSERT OR REPLACE INTO records (kind, key, body) VALUES (?, ?, ?)",
                         (kind, key, json.dumps(body, sort_keys=True)))

    def delete(self, kind: str, key: str) -> None:
        self._db.execute("DELETE FROM records WHERE kind = ? AND key = ?", (kind, key))

    def maintain(self) -> None:
        """Checkpoint the WAL (off the path of any request)."""
        self._db.execute("PRAGMA wal_checkpoint(PASSIVE)")

    def close(self) -> None:
        self.maintain()
        self._db.close()


def open_store(path: str) -> MemoryStore:
    return MemoryStore() if path == ":memory:" else SqliteStore(path)

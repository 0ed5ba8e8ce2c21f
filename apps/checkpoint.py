"""The state file's checkpoints, on an operating-system thread of their own.

A checkpoint copies the write-ahead log back into the state file: 39 to
45 ms at 3,000 MNs.  Run by the worker (it was, every two seconds), it held
up every event queued behind it.  Here it runs in a real thread (eventlet's
original ``threading``: Ryu's hub has patched the module into green
threads, which would run it on the hub's one thread again), on a connection
of its own (``MemoryStore.checkpoint``).  SQLite lets the worker go on
writing during a passive checkpoint, and Python's sqlite3 releases the GIL
while SQLite works, so neither the worker nor REST waits for it.
"""

from __future__ import annotations

import logging
import time

from eventlet import patcher

_threading = patcher.original("threading")
LOG = logging.getLogger("apps.checkpoint")


class Checkpointer:
    """Checkpoints ``store`` every ``every_s`` seconds from :meth:`start`
    until :meth:`stop`; each counted (``state_checkpoint``, or
    ``state_checkpoint_failed``, logged) in ``counters``."""

    def __init__(self, store, counters, every_s: float):
        self.store = store
        self.counters = counters
        self.every_s = every_s
        self.longest_s = 0.0       # the longest checkpoint so far (benchmarks read it)
        self._stopping = _threading.Event()
        self._thread = None

    def start(self) -> None:
        if self.store.path is None or self._thread is not None:
            return   # in memory: nothing to checkpoint
        self._thread = _threading.Thread(target=self._run, name="state-checkpoint",
                                         daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """No checkpoint after this returns (one under way finishes first)."""
        self._stopping.set()
        if self._thread is not None:
            self._thread.join()
            self._thread = None

    def _run(self) -> None:
        while not self._stopping.wait(self.every_s):
            self.checkpoint_now()

    def checkpoint_now(self) -> None:
        started = time.perf_counter()
        try:
            caught_up = self.store.checkpoint()
        except Exception:
            self.counters["state_checkpoint_failed"] += 1
            LOG.exception("checkpoint of the state file %s failed", self.store.path)
            return
        self.longest_s = max(self.longest_s, time.perf_counter() - started)
        self.counters["state_checkpoint"] += 1
        if not caught_up:
            # The worker wrote through every pass: the WAL grows until a
            # checkpoint catches up (counted, so that a WAL that keeps
            # growing shows).
            self.counters["state_checkpoint_behind"] += 1

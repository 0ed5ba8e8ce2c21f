"""What the lab benchmarks share: the repository's root on the path, a
SIGTERM that tears the lab down like Ctrl-C, and the date and commit every
result is stamped with."""

from __future__ import annotations

import json
import os
import signal
import sys
import time

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TOPOLOGY = os.path.join(ROOT, "topologies", "two_domains.yaml")
if ROOT not in sys.path:
    sys.path.insert(0, ROOT)


def _interrupt(signum, frame):
    raise KeyboardInterrupt


def unwind_on_sigterm() -> None:
    """SIGTERM (timeout(1), a CI job's end) unwinds like Ctrl-C, so the lab
    and the controller process are torn down, not left behind."""
    signal.signal(signal.SIGTERM, _interrupt)


def stamped(result: dict) -> dict:
    """``result`` with the date, the commit and whether the tree differed from it."""
    from mpa_lab.experiment.runner import source_commit
    return {**result, "date": time.strftime("%Y-%m-%d"), **source_commit()}


def report(path: str | None, result: dict, text: str) -> int:
    """A benchmark's end: its result written to ``path`` (if given), its
    tables printed; the exit status."""
    if path:
        write(path, result)
    print(text)
    return 0


def write(path: str, result: dict) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    with open(path, "w", encoding="utf-8") as f:
        json.dump(result, f, indent=1)
    print(f"written to {path}")

"""Where a long run is: a bar redrawn in place on a terminal, one line per
step elsewhere (a CI log, a file), so the output stays readable in both."""

from __future__ import annotations

import sys
import time
from typing import TextIO

WIDTH = 30


class Progress:
    def __init__(self, total: int, out: TextIO | None = None, clock=time.monotonic):
        self.total, self.done = max(total, 1), 0
        self.out = out or sys.stderr
        self.clock = clock
        self.started = clock()
        self.tty = hasattr(self.out, "isatty") and self.out.isatty()
        self._drawn = False

    def note(self, text: str) -> None:
        """A line above the bar (what just happened)."""
        if self.tty and self._drawn:
            self.out.write("\r\033[K")
        self.out.write(text + "\n")
        self._drawn = False
        self.out.flush()

    def step(self, text: str, advance: int = 1) -> None:
        """``advance`` steps done; ``text`` says which."""
        self.done = min(self.total, self.done + advance)
        self.show(text)

    def show(self, text: str) -> None:
        """What is going on now, without a step done."""
        filled = WIDTH * self.done // self.total
        elapsed = self.clock() - self.started
        bar = f"[{'#' * filled}{'.' * (WIDTH - filled)}] {self.done}/{self.total} " \
              f"{_clock(elapsed)} {text}"
        if self.tty:
            self.out.write("\r\033[K" + bar)
            self._drawn = True
        else:
            self.out.write(bar + "\n")
        self.out.flush()

    def close(self) -> None:
        if self.tty and self._drawn:
            self.out.write("\n")
            self.out.flush()
        self._drawn = False


def _clock(seconds: float) -> str:
    minutes, seconds = divmod(int(seconds), 60)
    return f"{minutes}:{seconds:02d}"

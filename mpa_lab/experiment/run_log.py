"""The log of one ``mpa-lab run``: ``logs/mpa-lab.log`` in its directory.

It holds the lab's own warnings (a host's output that was not UTF-8, with
the host and the command; a leftover of an earlier run removed) and, when
something stops the run, what it was, where it was raised and its whole
traceback.  The terminal and ``results.json`` get one line: the error's
type, its message and where it was raised (:func:`describe`), so that an
error whose own message names nothing (Python's "'utf-8' codec can't
decode byte 0x85 ...") still says where it came from.
"""

from __future__ import annotations

import logging
import os
import sysconfig
import traceback

from mpa_lab.plain_logging import lab_logger
from mpa_protocol.program_output import not_utf8

NAME = "mpa-lab.log"
LOGGER = "mpa_lab"
LOG = lab_logger("mpa_lab.experiment.run_log")
# Frames in these are Python's own: never "where" an error comes from.
_PYTHON = tuple(os.path.realpath(sysconfig.get_paths()[k]) for k in ("stdlib", "platstdlib"))
_PROJECT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.realpath(__file__))))


class RunLog:
    """The ``mpa_lab`` loggers' INFO and above, also to ``directory/mpa-lab.log``,
    until :meth:`close`."""

    def __init__(self, directory: str):
        self.path = os.path.join(directory, NAME)
        self._handler = logging.FileHandler(self.path, encoding="utf-8")
        self._handler.setFormatter(
            logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        self._logger = lab_logger(LOGGER)
        self._level = self._logger.level
        if self._logger.getEffectiveLevel() > logging.INFO:
            self._logger.setLevel(logging.INFO)
        self._logger.addHandler(self._handler)

    def stopped(self, exc: BaseException) -> str:
        """Log what stopped the run, with its traceback; its one line."""
        line = describe(exc)
        LOG.error("the run stopped: %s", line, exc_info=(type(exc), exc, exc.__traceback__))
        return line

    def close(self) -> None:
        self._logger.removeHandler(self._handler)
        self._logger.setLevel(self._level)
        self._handler.close()


def describe(exc: BaseException) -> str:
    """``exc`` in one line: its type, its message and where it was raised."""
    message = str(exc)
    if isinstance(exc, UnicodeDecodeError) and isinstance(exc.object, (bytes, bytearray)):
        message = f"output {not_utf8(bytes(exc.object), exc)}"
    where = raised_at(exc)
    return f"{type(exc).__name__}: {message}" + (f" (raised {where})" if where else "")


def raised_at(exc: BaseException) -> str:
    """Where ``exc`` was raised: the innermost frame outside Python's own
    library and, if that is not the project's, the project's innermost
    frame that led there; "" if the traceback has neither."""
    frames = traceback.extract_tb(exc.__traceback__)
    outside = [f for f in frames if not _in_python(f.filename)]
    if not outside:
        return ""
    ours = [f for f in outside if _ours(f.filename)]
    where = f"in {_frame(outside[-1])}"
    if ours and ours[-1] is not outside[-1]:
        where += f", called from {_frame(ours[-1])}"
    return where


def _in_python(filename: str) -> bool:
    return filename.startswith("<") or os.path.realpath(filename).startswith(_PYTHON)


def _ours(filename: str) -> bool:
    """In the project's source (not in a virtual environment inside it)."""
    path = os.path.realpath(filename)
    return path.startswith(_PROJECT + os.sep) and not {
        "site-packages", "dist-packages"} & set(path.split(os.sep))


def _frame(frame: traceback.FrameSummary) -> str:
    path = os.path.realpath(frame.filename)
    shown = os.path.relpath(path, _PROJECT) if _ours(path) else path
    return f"{shown}:{frame.lineno} ({frame.name})"

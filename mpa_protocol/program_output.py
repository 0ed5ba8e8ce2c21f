"""What another program printed, as text: decoded as UTF-8 and, when it is
not, an error that says whose output it was and where it broke.

Python's own message ("'utf-8' codec can't decode byte 0x85 in position
12: invalid start byte") names neither the program nor the host, and
``UnicodeDecodeError`` is a ``ValueError``, which callers catch as bad input
and print without a traceback.  Output that must be parsed (JSON, a
Prometheus page) is decoded strictly with :func:`utf8`; output that is
only shown or logged is decoded with ``errors="replace"`` by its reader.
"""

from __future__ import annotations

import json

CONTEXT_BYTES = 24   # of the output shown before the offending byte


class OutputError(ValueError):
    """A program's output is not what its reader needs: ``source`` says
    whose (which program, on which host, run how)."""

    def __init__(self, source: str, problem: str):
        super().__init__(f"{source}: {problem}")
        self.source, self.problem = source, problem


def not_utf8(data: bytes, exc: UnicodeDecodeError) -> str:
    """What is wrong with ``data``, in words: the byte, where, and what came before."""
    bad = data[exc.start:exc.end]
    before = data[max(0, exc.start - CONTEXT_BYTES):exc.start]
    return (f"printed bytes that are not UTF-8: {bad.hex(' ', 1)} at byte {exc.start} of "
            f"{len(data)} ({exc.reason}), after {before!r}")


def utf8(data: bytes, source: str) -> str:
    """``data`` as text; OutputError naming ``source`` if it is not UTF-8."""
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise OutputError(source, not_utf8(data, exc)) from None


def json_output(data: bytes, source: str):
    """The one JSON document ``data`` holds; OutputError naming ``source``
    if it is not UTF-8 or not JSON."""
    text = utf8(data, source)
    try:
        return json.loads(text)
    except ValueError as exc:
        shown = text.strip()
        shown = shown if len(shown) <= 200 else f"{shown[:100]} ... {shown[-100:]}"
        raise OutputError(source, f"printed no JSON document ({exc}): {shown!r}") from None

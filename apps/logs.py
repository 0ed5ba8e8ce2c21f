"""The controller's log formats: text for people, JSON lines for machines.

The core and the shell write English with ``key=value`` tokens about what a
line concerns (``identity=mn1@domain-a mac=02:00:00:00:01:01``,
``dpid=0000000000000001 switch=ap-a1``, ``sa=1f2e3d4c``, ``handover=3``,
``network=net-b1``, ``poa=ap-b1-1``).  The text format shows the line as it
is; the JSON format also lifts each token into a field of its own, so that
a log collector can select every line about one MN or one switch without
parsing English.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The fields of a line before its tokens; a token with one of these names
# stays in the message only.
RESERVED = frozenset({"time", "level", "logger", "message", "exception", "stack"})

# A token starts a word: ``Foo(a=1`` is a repr, not a token.
_TOKEN = re.compile(r"(?<!\S)([A-Za-z_][A-Za-z0-9_]*)=(\S+)")


def _value(raw: str) -> str | None:
    """A token's value without the punctuation English put after it: a
    comma, a semicolon, an unmatched ")", a colon (but an IPv6 address may
    end in "::")."""
    while raw:
        last = raw[-1]
        if (last in ",;" or last == ")" and raw.count("(") < raw.count(")")
                or last == ":" and (not raw.endswith("::") or raw.endswith(":::"))):
            raw = raw[:-1]
        else:
            break
    return None if raw == "None" else raw


def tokens(message: str) -> dict[str, str | None]:
    """The ``key=value`` tokens of a message; the first of a key counts."""
    found: dict[str, str | None] = {}
    for match in _TOKEN.finditer(message):
        key = match.group(1)
        if key not in RESERVED and key not in found:
            value = _value(match.group(2))
            if value != "":
                found[key] = value
    return found


class TextFormatter(logging.Formatter):
    """The line as written: ``time level logger: message``."""

    def __init__(self, fmt: str = LOG_FORMAT, datefmt: str | None = None):
        super().__init__(fmt, datefmt)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC, milliseconds), level,
    logger, message, the message's tokens as fields (``None`` as null), and
    exception when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line = {"time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname,
                "logger": record.name,
                "message": message}
        line.update(tokens(message))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)


FORMATTERS = {"text": TextFormatter, "json": JsonFormatter}
FORMATS = tuple(FORMATTERS)


class _Handler(logging.StreamHandler):
    """The handler configure() installs, so that a second call replaces it."""


def configure(level: int | str = logging.INFO, fmt: str = "text",
              stream=None) -> logging.Handler:
    """Log to ``stream`` (standard error by default) in ``fmt`` ("text" or
    "json") from ``level`` up: one handler on the root logger, which
    replaces the one an earlier call installed."""
    if fmt not in FORMATTERS:
        raise ValueError(f"unknown log format {fmt!r}; one of {', '.join(FORMATS)}")
    root = logging.getLogger()
    for old in [h for h in root.handlers if isinstance(h, _Handler)]:
        root.removeHandler(old)
    handler = _Handler(sys.stderr if stream is None else stream)
    handler.setFormatter(FORMATTERS[fmt]())
    root.addHandler(handler)
    root.setLevel(level)
    return handler

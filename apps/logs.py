"""The controller's log formats: text for people, JSON lines for machines.

The core and the shell write English with ``key=value`` tokens about what a
line concerns (``identity=mn1@domain-a mac=02:00:00:00:01:01``,
``dpid=0000000000000001 switch=ap-a1``, ``sa=1f2e3d4c``, ``handover=3``,
``network=net-b1``, ``poa=ap-b1-1``).  The text format shows the line as it
is; the JSON format also lifts each token of the format string into a
field of its own, so that a log collector can select every line about one
MN or one switch without parsing English.

Much of what is logged came from the wire: request paths, remote addresses,
the fields of signalling messages, eventlet's access log of each request.
So that no sender can write a line of its own (a newline in a path) or hide
one (a carriage return, terminal escapes, bidirectional overrides), both
formats escape every control character in a line's message after its ``%``
arguments are in, wherever the logging call is: ``\\n`` as ``\\\\n``, the
rest as ``\\xNN`` or ``\\uNNNN``.  A traceback is the process's own and
keeps its lines.
"""

from __future__ import annotations

import datetime
import json
import logging
import re
import sys
from collections.abc import Mapping

from mpa_protocol.log_text import CONTROL, EscapingFormatter, escape

LOG_FORMAT = "%(asctime)s %(levelname)-7s %(name)s: %(message)s"

# The fields of a line before its tokens; a token with one of these names
# stays in the message only.
RESERVED = frozenset({"time", "level", "logger", "message", "exception", "stack"})

# A token starts a word: ``Foo(a=1`` is a repr, not a token.
_TOKEN = re.compile(r"(?<!\S)([A-Za-z_][A-Za-z0-9_]*)=(\S+)")
# One %-conversion of a format string, ``%%`` among them.
_CONVERSION = re.compile(
    r"%(?:\([^)]*\))?[#0+ -]*(?:\*|\d+)?(?:\.(?:\*|\d+))?[hlL]?[diouxXeEfFgGcrsa%]")
# Where an argument goes, in a format string while its tokens are read.
_ARGUMENT = "\x00"


def _trim(raw: str) -> str:
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
    return raw


def fields(record: logging.LogRecord) -> dict[str, str | None]:
    """The ``key=value`` tokens of a record, the first of a key counting,
    each value as the line shows it (escaped; ``None`` as None).

    The format string alone, the program's own, says what is a token and
    where its value ends; an argument fills in a value, whatever it holds,
    and never adds a token: a request path with `` identity=someone`` in it
    does not make a line about someone.  A record without arguments gives
    none: its message may be anything (Ryu's hub logs eventlet's access
    line that way, request line and all)."""
    fmt, args = record.msg, record.args
    if not args or not isinstance(fmt, str) or _ARGUMENT in fmt:
        return {}
    texts: list[str] = []

    def stand_in(match: re.Match) -> str:
        spec = match.group()
        if spec == "%%":
            return "%"
        if "*" in spec:           # a width from the arguments: not worth reading
            raise ValueError(spec)
        texts.append(spec % (args if isinstance(args, Mapping) else (args[len(texts)],)))
        return _ARGUMENT
    try:
        skeleton = _CONVERSION.sub(stand_in, fmt)
    except (TypeError, ValueError, IndexError, KeyError):
        return {}                 # getMessage() fails too, and logging says so
    found: dict[str, str | None] = {}
    for match in _TOKEN.finditer(skeleton):
        key = match.group(1)
        if key in RESERVED or key in found:
            continue
        first = skeleton.count(_ARGUMENT, 0, match.start(2))
        literal, *rest = _trim(match.group(2)).split(_ARGUMENT)
        value = literal + "".join(texts[first + i] + after for i, after in enumerate(rest))
        if value:
            found[key] = None if value == "None" else escape(value)
    return found


class TextFormatter(EscapingFormatter):
    """The line as written, escaped: ``time level logger: message``; then the
    traceback, if any, on lines of its own."""

    def __init__(self, fmt: str = LOG_FORMAT, datefmt: str | None = None):
        super().__init__(fmt, datefmt)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC, milliseconds), level,
    logger, message, the message's tokens as fields (``None`` as null), and
    exception when there is one.

    The message is escaped as the text format's is, and so are its tokens'
    values (see :func:`fields`): JSON alone would keep the line whole, but a
    collector that shows ``message`` or ``identity`` would then print the
    sender's newline.  Every other string (the traceback) keeps its
    characters, each control character in it written as a JSON ``\\u``
    escape, so that nothing splits the line, whichever characters the reader
    breaks lines at."""

    def format(self, record: logging.LogRecord) -> str:
        message = escape(record.getMessage())
        created = datetime.datetime.fromtimestamp(record.created, datetime.timezone.utc)
        line = {"time": created.isoformat(timespec="milliseconds").replace("+00:00", "Z"),
                "level": record.levelname,
                "logger": record.name,
                "message": message}
        line.update(fields(record))
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        # Outside strings JSON is ASCII: every match is in a string, where
        # \uNNNN is the same character.
        return CONTROL.sub(lambda m: f"\\u{ord(m.group()):04x}",
                            json.dumps(line, ensure_ascii=False, default=str))


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

"""Log lines no sender can forge: both ends log what came from the wire.

The controller logs request paths, addresses and the fields of signalling
messages; the MN (``mpa-mn -v``) logs the errors and answers a network sent
it.  So that no sender can write a line of its own (a newline) or hide one
(a carriage return, terminal escapes, bidirectional overrides), a line's
message is escaped after its ``%`` arguments are in: ``\\n`` as ``\\\\n``,
every other control character as ``\\xNN`` or ``\\uNNNN``.  A traceback is
the process's own and keeps its lines.
"""

from __future__ import annotations

import logging
import re

# What a line never shows as it is: C0, DEL and C1 controls (among them
# every character str.splitlines() breaks at), the Unicode line and paragraph
# separators, the bidirectional formatting controls (they reorder what a
# terminal shows) and lone surrogates (no encoding can write them).
CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200e\u200f\u2028-\u202e\u2066-\u2069"
                     "\ud800-\udfff]")
_NAMED = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _escaped(match: re.Match) -> str:
    char = match.group()
    return _NAMED.get(char) or (f"\\x{ord(char):02x}" if ord(char) < 0x100
                                else f"\\u{ord(char):04x}")


def escape(text: str) -> str:
    """``text`` with every character of :data:`CONTROL` written as an escape."""
    return CONTROL.sub(_escaped, text)


class EscapingFormatter(logging.Formatter):
    """A line as its format writes it, the message part escaped; then the
    traceback, if any, on lines of its own."""

    def formatMessage(self, record: logging.LogRecord) -> str:
        return escape(super().formatMessage(record))

"""Log lines no sender can forge, on both ends (mpa_protocol/log_text.py):
the controller's formats build on it, and so does ``mpa-mn -v``."""

from __future__ import annotations

import io
import logging
import sys

import pytest

from mpa_mn import cli
from mpa_protocol.log_text import EscapingFormatter, escape


@pytest.mark.parametrize("raw, shown", [("a\nb", "a\\nb"), ("a\rb", "a\\rb"),
                                        ("\x1b[2J", "\\x1b[2J"), ("\x85", "\\x85"),
                                        ("\u2028", "\\u2028"), ("\u202e", "\\u202e"),
                                        ("\ud800", "\\ud800"), ("plain é", "plain é")])
def test_every_control_character_is_written_as_an_escape(raw, shown):
    assert escape(raw) == shown


def test_the_message_is_escaped_and_a_traceback_keeps_its_lines():
    formatter = EscapingFormatter("%(levelname)s %(message)s")
    try:
        raise ValueError("own")
    except ValueError:
        record = logging.LogRecord("mpa_mn.x", logging.INFO, __file__, 1,
                                   "answer %s", ("busy\nINFO forged",), True)
        record.exc_info = sys.exc_info()
    text = formatter.format(record)
    first, *rest = text.split("\n")
    assert first == "INFO answer busy\\nINFO forged"
    assert rest[0] == "Traceback (most recent call last):"


def test_mpa_mn_verbose_logs_escaped_lines(tmp_path):
    err = io.StringIO()
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        cli.main(["-v", "--state", str(tmp_path / "state.json"), "status"],
                 cli.System(stdout=io.StringIO(), stderr=err))
        logging.getLogger("mpa_mn.channels").info("error from the network: %s",
                                                  "busy\n2026-12-07 mpa_mn forged")
    finally:
        for handler in root.handlers[:]:
            if handler not in before[0]:
                root.removeHandler(handler)
        root.setLevel(before[1])
    lines = [line for line in err.getvalue().splitlines() if "from the network" in line]
    assert len(lines) == 1 and lines[0].endswith("busy\\n2026-12-07 mpa_mn forged")
    assert "forged" not in "".join(l for l in err.getvalue().splitlines() if l not in lines)

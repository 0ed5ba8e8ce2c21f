"""Structured logs: every line about an MN names it (identity=, mac=), every
line about a switch names it (dpid=, switch=), as key=value tokens that the
JSON format lifts into fields."""

from __future__ import annotations

import ast
import io
import json
import logging
import pathlib
import re
import signal
import sys

import pytest

from apps import logs
from mpa_rig import IDENTITY, MN_MAC
from mpa_sdn.aa import AUTHORIZED
from mpa_sdn.controller import RECONCILE, Controller
from mpa_sdn.mobility import SETTLE_S
from test_handover import (
    HOME, MN_IP, PSK_A, arrive, authenticated, echoes, later, make_rig, pings, pre_switched,
    sa_state)

ROOT = pathlib.Path(__file__).resolve().parent.parent
PROJECT = ("mpa_sdn", "apps", "rest_api", "mpa_mn")   # the packages whose loggers these read


def record(msg, *args, level=logging.INFO, exc_info=None, **extra) -> logging.LogRecord:
    rec = logging.LogRecord("mpa_sdn.test", level, __file__, 1, msg, args, exc_info)
    rec.__dict__.update(extra)
    return rec


def as_json(rec: logging.LogRecord) -> dict:
    line = logs.JsonFormatter().format(rec)
    assert "\n" not in line
    return json.loads(line)


# -- the formats ---------------------------------------------------------------------------

def test_tokens_become_fields_and_the_message_stays_readable():
    line = as_json(record("MPA-SA sa=%s identity=%s mac=%s network=%s state %s -> %s",
                          "1f2e3d4c", IDENTITY, MN_MAC, "net-b1", "authorized", "held"))
    assert line["message"] == (f"MPA-SA sa=1f2e3d4c identity={IDENTITY} mac={MN_MAC} "
                               "network=net-b1 state authorized -> held")
    assert (line["sa"], line["identity"], line["mac"], line["network"]) == (
        "1f2e3d4c", IDENTITY, MN_MAC, "net-b1")
    assert (line["level"], line["logger"]) == ("INFO", "mpa_sdn.test")
    assert "exception" not in line


def test_dpid_stays_hex_none_is_null_and_punctuation_is_not_a_value():
    line = as_json(record("dpid=%016x switch=%s connected; identity=%s handover=%d at poa=%s, "
                          "(at poa=%s) old=%s: done", 0x1a, "ap-b1", None, 7, "ap-b1-1",
                          "x", "fe80::"))
    assert line["dpid"] == "000000000000001a" and line["switch"] == "ap-b1"
    assert line["identity"] is None and line["handover"] == "7"
    assert line["poa"] == "ap-b1-1"          # the first of a key counts
    assert line["old"] == "fe80::"


def test_a_message_without_tokens_has_no_fields_of_them():
    line = as_json(record("restored %d MPA-SAs", 3))
    assert set(line) == {"time", "level", "logger", "message"}
    assert line["message"] == "restored 3 MPA-SAs"
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z", line["time"])


def test_a_repr_and_reserved_names_are_not_lifted():
    line = as_json(record("changed: %s level=%s message=%s", "Policy(a=1)", "x", "y"))
    assert line["level"] == "INFO" and line["message"].startswith("changed: Policy(a=1)")
    assert "a" not in line


def test_an_exception_is_rendered():
    try:
        raise ValueError("boom")
    except ValueError:
        rec = record("dpid=%s switch=%s handling %s failed", "0000000000000001", "ap-a1",
                     "packet in", level=logging.ERROR, exc_info=sys.exc_info())
    line = as_json(rec)
    assert line["level"] == "ERROR" and line["dpid"] == "0000000000000001"
    assert line["exception"].startswith("Traceback") and "ValueError: boom" in line["exception"]


def test_fields_come_from_the_message_alone():
    # The convention is tokens in the message, which the text format shows
    # too; a record's extra attributes are not fields.
    line = as_json(record("something happened", dpid=26, identity=IDENTITY))
    assert set(line) == {"time", "level", "logger", "message"}


def test_configure_installs_one_handler_of_the_chosen_format():
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)
    # One an earlier configure() installed (a launcher run in this process) is replaced too.
    others = [h for h in before if not isinstance(h, logs._Handler)]
    text, jsonl = io.StringIO(), io.StringIO()
    try:
        logs.configure(logging.INFO, "text", text)
        logs.configure(logging.DEBUG, "json", jsonl)   # replaces the first
        assert len(root.handlers) == len(others) + 1 and root.level == logging.DEBUG
        # A logger that exists, which the fixture cleared: one made now
        # could be a MininetLogger at a level of its own.
        probe = logging.getLogger("mpa_sdn.controller")
        probe.debug("identity=%s seen", IDENTITY)
    finally:
        for handler in root.handlers[:]:
            if handler not in before:
                root.removeHandler(handler)
        for handler in before:
            if handler not in root.handlers:
                root.addHandler(handler)
        root.setLevel(level)
    assert text.getvalue() == ""
    assert json.loads(jsonl.getvalue())["identity"] == IDENTITY
    with pytest.raises(ValueError):
        logs.configure(logging.INFO, "xml", io.StringIO())


def test_the_text_format_is_the_launchers():
    rec = record("dpid=%016x switch=%s disconnected", 1, "ap-a1")
    assert re.fullmatch(r"\S+ \S+ INFO    mpa_sdn\.test: dpid=0000000000000001 switch=ap-a1 "
                        r"disconnected", logs.TextFormatter().format(rec))


# -- the convention, checked on the source ----------------------------------------------------

LEVELS = {"debug", "info", "warning", "warn", "error", "exception", "critical", "log"}
LOGGERS = {"LOG", "log", "logger"}
# What an argument mentions -> the token the format string must then have.
RULES = (
    ("identity=", lambda name: name == "identity" or name.endswith("_identity")),
    ("dpid=", lambda name: "dpid" in name),
    ("mac=", lambda name: name in ("mac", "mn_mac", "src_mac", "chaddr")),
    ("network=", lambda name: name in ("network", "network_id")),
    ("switch=", lambda name: name in ("switch", "switch_of_dpid")),
    ("poa=", lambda name: name == "poa"),
)
# ``sa.id``, ``handover.id``, ``datapath.id``: an object's id names it.
ID_RULES = {"sa": "sa=", "handover": "handover=", "datapath": "dpid="}


def log_calls(path: pathlib.Path):
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and node.func.attr in LEVELS):
            continue
        receiver = node.func.value
        if (isinstance(receiver, ast.Name) and receiver.id in LOGGERS
                or isinstance(receiver, ast.Attribute) and receiver.attr in LOGGERS
                or isinstance(receiver, ast.Call) and "getLogger" in ast.unparse(receiver.func)):
            yield node


def required_tokens(args: list[ast.expr]) -> set[str]:
    needed = set()
    for arg in args:
        for node in ast.walk(arg):
            name = node.id if isinstance(node, ast.Name) else (
                node.attr if isinstance(node, ast.Attribute) else None)
            if name is None:
                continue
            needed |= {token for token, mentions in RULES if mentions(name)}
            if isinstance(node, ast.Attribute) and node.attr == "id":
                owner = node.value
                owner = owner.id if isinstance(owner, ast.Name) else getattr(owner, "attr", "")
                if owner in ID_RULES:
                    needed.add(ID_RULES[owner])
    return needed


def sources():
    return sorted((ROOT / "mpa_sdn").glob("*.py")) + sorted((ROOT / "apps").glob("*.py"))


def problems_of(path: pathlib.Path) -> list[str]:
    out = []
    for call in log_calls(path):
        args = call.args[1:] if call.func.attr == "log" else call.args
        where = f"{path.relative_to(ROOT)}:{call.lineno}"
        if not args:
            out.append(f"{where}: no message")
            continue
        fmt, rest = args[0], args[1:]
        if not (isinstance(fmt, ast.Constant) and isinstance(fmt.value, str)):
            out.append(f"{where}: the message is not a literal format string")
            continue
        needed = required_tokens(rest)
        if has_token(fmt.value, "mac="):
            needed.add("identity=")    # a MAC may be an MN's: say whose (None: no MN's)
        for token in sorted(needed):
            if not has_token(fmt.value, token):
                out.append(f"{where}: {fmt.value!r} has no {token}")
    return out


def has_token(fmt: str, token: str) -> bool:
    return re.search(r"(?<![\w])" + re.escape(token), fmt) is not None


@pytest.mark.parametrize("path", sources(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_log_lines_name_what_they_are_about(path):
    assert problems_of(path) == []


def test_the_scan_sees_the_log_calls():
    calls = [c for p in sources() for c in log_calls(p)]
    assert len(calls) > 40
    old = ast.parse('LOG.info("MPA-SA %s (%s, %s): %s -> %s", sa.id[:8], sa.identity, '
                    'sa.network, sa.state, state)').body[0].value
    assert required_tokens(old.args[1:]) == {"sa=", "identity=", "network="}


# -- a real core run ------------------------------------------------------------------------

@pytest.fixture
def switch_events(monkeypatch, caplog):
    """(dpid, first record, end) of every event about a switch itself the core
    handled: its connection, its flows read, the barrier that ends their
    reconciliation, its disconnection."""
    spans = []

    def watch(name, only=lambda *args: True):
        original = getattr(Controller, name)

        def watched(self, dpid, *args):
            start = len(caplog.records)
            try:
                return original(self, dpid, *args)
            finally:
                if only(*args):
                    spans.append((dpid, start, len(caplog.records)))
        monkeypatch.setattr(Controller, name, watched)

    for name in ("switch_connected", "flow_stats", "switch_disconnected"):
        watch(name)
    watch("flows_confirmed", only=lambda tag, now: tag == RECONCILE)
    return spans


def test_a_core_run_names_the_mn_and_the_switch_on_every_line_about_them(
        topology, caplog, switch_events):
    caplog.set_level(logging.DEBUG)
    rig = make_rig(topology)                       # mn1 learned at ap-a1-1
    authenticated(rig, "net-a1", PSK_A, "domain-a")
    rig.arp_request("mn1", MN_IP)
    assert sa_state(rig, "net-a1") == AUTHORIZED
    pre_switched(rig)                              # pre-authenticated with net-b1, tunnel, binding
    pings(rig, "cn1", HOME, [1, 2])
    assert echoes(arrive(rig)) == [1, 2]           # the handover
    later(rig, SETTLE_S)
    assert rig.core.mobility.history[-1]["phase"] == "completed"
    rig.run(rig.core.switch_disconnected(rig.graph.dpid("ar-a1"), rig.now))
    rig.connect("ar-a1")
    rig.run(rig.core.switch_connected(0xbad, rig.now))   # a switch not in the topology
    rig.ping("cn1", HOME, seq=3)

    lines = [as_json(r) for r in caplog.records]
    about_mn = [line for line in lines if IDENTITY in line["message"]
                or MN_MAC in line["message"]]
    assert len(about_mn) > 10
    assert [line for line in about_mn if line.get("identity") != IDENTITY] == []
    for key in ("handover", "sa"):
        assert [line for line in lines if key in line and "identity" not in line] == []
    assert all(re.fullmatch(r"[0-9a-f]{8}", line["sa"]) for line in lines if "sa" in line)
    seen = {key for line in lines for key in line}
    assert seen >= {"identity", "mac", "network", "sa", "handover", "poa", "dpid", "switch"}

    assert len(switch_events) > len(rig.net.switches)
    from_switches = [(dpid, as_json(r)) for dpid, start, end in switch_events
                     for r in caplog.records[start:end]]
    assert len(from_switches) > 2 * len(rig.net.switches)
    assert [line for dpid, line in from_switches if line.get("dpid") != f"{dpid:016x}"] == []
    assert {line.get("switch") for _, line in from_switches} >= {"ar-a1", "ap-b1", None}


# -- the controller's flag ---------------------------------------------------------------------

def test_the_controller_logs_json_lines_when_asked(tmp_path):
    from test_launcher import controller, free_ports, output, wait_rest
    ofp, rest = free_ports(2)
    with controller(tmp_path, "--ofp-port", str(ofp), "--rest-port", str(rest),
                    "--log-format", "json") as (process, log):
        wait_rest(rest, process, log)
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        text = output(log)
    assert process.returncode == 0, text
    # (eventlet may print a warning of its own, beside the logging module)
    assert not re.search(r"^\d{4}-\d\d-\d\d \d\d:", text, re.MULTILINE), text
    lines = [json.loads(line) for line in text.splitlines() if line.startswith("{")]
    messages = [line["message"] for line in lines if line["logger"].startswith("mpa_sdn")]
    assert "controller stopped" in messages
    assert any(line["message"].startswith("REST API on http://") for line in lines)


def test_the_log_format_flag_takes_text_or_json():
    from apps.launcher import _arguments
    assert _arguments(["--config", "x.yaml"]).log_format == "text"
    assert _arguments(["--config", "x.yaml", "--log-format", "json"]).log_format == "json"
    with pytest.raises(SystemExit):
        _arguments(["--config", "x.yaml", "--log-format", "xml"])

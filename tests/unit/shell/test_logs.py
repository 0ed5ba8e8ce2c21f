"""Structured logs: every line about an MN names it (identity=, mac=), every
line about a switch names it (dpid=, switch=), as key=value tokens that the
JSON format lifts into fields; nothing that came from the wire writes a line
or a field of its own."""

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
from support.service_rig import IDENTITY, MN_MAC
from mpa_sdn.controller import RECONCILE, Controller
from mpa_sdn.mobility import SETTLE_S
from mpa_sdn.mpa_sa import AUTHORIZED
from support.handover_rig import (HOME, MN_IP, arrive, authenticated, echoes, later, make_rig,
                                  pings, pre_switched, sa_state)
from support.paths import ROOT

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


def test_an_argument_fills_a_value_and_never_adds_a_token():
    line = as_json(record("%s %s from %s: unknown or malformed bearer token", "GET",
                          "/x identity=victim@domain-a dpid=0000000000000001", "192.0.2.1"))
    assert set(line) == {"time", "level", "logger", "message"}
    line = as_json(record("PANA message from %s identity=%s refused: %s", "192.0.2.1",
                          "a b sa=1", "no switch=ap-a1 here"))
    assert line["identity"] == "a b sa=1"
    assert "sa" not in line and "switch" not in line


def test_a_message_logged_without_arguments_has_no_fields():
    # Ryu's hub logs eventlet's access line so: the request line is the sender's.
    line = as_json(record('192.0.2.1 - - [07/Dec/2026 07:00:00] "GET identity=victim@domain-a '
                          'HTTP/1.1" 404 205 0.000412'))
    assert set(line) == {"time", "level", "logger", "message"}


def test_named_arguments_and_a_percent_sign_are_read_as_logging_reads_them():
    line = as_json(record("100%% of dpid=%(dpid)016x switch=%(switch)s, handover=%(n)d",
                          {"dpid": 26, "switch": "ap-b1", "n": 7}))
    assert (line["dpid"], line["switch"], line["handover"]) == ("000000000000001a", "ap-b1", "7")
    assert line["message"] == "100% of dpid=000000000000001a switch=ap-b1, handover=7"


def test_fields_come_from_the_message_alone():
    # The convention is tokens in the message, which the text format shows
    # too; a record's extra attributes are not fields.
    line = as_json(record("something happened", dpid=26, identity=IDENTITY))
    assert set(line) == {"time", "level", "logger", "message"}


@pytest.fixture
def log_to():
    """configure(level, fmt) onto a new stream, returned; the root logger's
    handlers and level as they were afterwards (one an earlier configure()
    installed, a launcher run in this process, is replaced meanwhile)."""
    root = logging.getLogger()
    level, before = root.level, list(root.handlers)

    def install(fmt: str, level=logging.INFO) -> io.StringIO:
        stream = io.StringIO()
        logs.configure(level, fmt, stream)
        return stream
    yield install
    for handler in root.handlers[:]:
        if handler not in before:
            root.removeHandler(handler)
    for handler in before:
        if handler not in root.handlers:
            root.addHandler(handler)
    root.setLevel(level)


def test_configure_installs_one_handler_of_the_chosen_format(log_to):
    root = logging.getLogger()
    others = [h for h in root.handlers if not isinstance(h, logs._Handler)]
    text = log_to("text")
    jsonl = log_to("json", logging.DEBUG)       # replaces the first
    assert len(root.handlers) == len(others) + 1 and root.level == logging.DEBUG
    # A logger that exists, which the fixture cleared: one made now
    # could be a MininetLogger at a level of its own.
    logging.getLogger("mpa_sdn.controller").debug("identity=%s seen", IDENTITY)
    assert text.getvalue() == ""
    assert json.loads(jsonl.getvalue())["identity"] == IDENTITY
    with pytest.raises(ValueError):
        logs.configure(logging.INFO, "xml", io.StringIO())


def test_the_text_format_is_the_launchers():
    rec = record("dpid=%016x switch=%s disconnected", 1, "ap-a1")
    assert re.fullmatch(r"\S+ \S+ INFO    mpa_sdn\.test: dpid=0000000000000001 switch=ap-a1 "
                        r"disconnected", logs.TextFormatter().format(rec))


# -- what came from the wire ------------------------------------------------------------------

# Each breaks a line for some reader (str.splitlines() breaks at the first
# eight), rewrites what a terminal shows, or cannot be encoded at all.
CONTROLS = ["\n", "\r", "\x0b", "\x1c", "\x1e", "\x85", "\u2028", "\u2029", "\x00", "\x1b",
            "\x7f", "\x9b", "\t", "\u202e", "\u2066", "\ud800"]
FORGED = "2026-12-07 07:00:00,000 INFO    mpa_sdn.aa: MPA-SA sa=00000000 switch=evil"
LINE_START = re.compile(r"\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} [A-Z]+ +\S+: ")


def test_escape_writes_each_control_character_as_an_escape_and_nothing_else():
    assert logs.escape("a\nb\rc\td\x00\x1b[2J\x7f\x85\u2028\u202e\ud800 caf\u00e9 \u00a0") == (
        "a\\nb\\rc\\td\\x00\\x1b[2J\\x7f\\x85\\u2028\\u202e\\ud800 caf\u00e9 \u00a0")


@pytest.mark.parametrize("char", CONTROLS, ids=ascii)
def test_a_control_character_in_a_message_cannot_start_a_line(char):
    rec = record("GET %s from %s: unknown or malformed bearer token",
                 f"/mpa/v1/mobile-nodes/x{char}{FORGED}", "192.0.2.1")
    text = logs.TextFormatter().format(rec)
    assert char not in text and len(text.splitlines()) == 1
    assert logs.escape(char) + FORGED in text
    line = logs.JsonFormatter().format(rec)
    assert char not in line and len(line.splitlines()) == 1
    fields = json.loads(line)
    # The same message in both formats, and nothing lifted out of the forgery.
    assert fields["message"] == text.split("mpa_sdn.test: ", 1)[1]
    assert "switch" not in fields and "sa" not in fields


def test_a_token_with_a_control_character_is_one_escaped_field():
    line = as_json(record("MPA-SA identity=%s refused", "mn1@domain-a\nswitch=evil"))
    assert line["identity"] == "mn1@domain-a\\nswitch=evil"
    assert "switch" not in line


def test_a_traceback_keeps_its_lines_and_the_message_is_escaped():
    try:
        raise ValueError("boom\u2028after")
    except ValueError:
        rec = record("GET %s failed", f"/x\n{FORGED}", level=logging.ERROR,
                     exc_info=sys.exc_info())
    text = logs.TextFormatter().format(rec).split("\n")
    assert LINE_START.match(text[0]) and text[0].endswith("GET /x\\n" + FORGED + " failed")
    assert text[1] == "Traceback (most recent call last):"
    assert text[-1] == "ValueError: boom\u2028after"    # the process's own: as it is
    rec.exc_text = None
    line = logs.JsonFormatter().format(rec)
    assert len(line.splitlines()) == 1 and "\u2028" not in line
    assert json.loads(line)["exception"].endswith("ValueError: boom\u2028after")


@pytest.mark.parametrize("fmt", logs.FORMATS)
def test_a_request_cannot_write_a_log_line_of_its_own(topology, log_to, fmt):
    """The REST API served by the controller's REST listener: the path
    (which WSGI decodes: %0A is a newline) in the API's own warning, the raw
    request line in eventlet's access log (ESC and CSI as they are)."""
    from apps import compat
    compat.patch_eventlet()
    import eventlet
    from eventlet.green import socket as green_socket
    from ryu.lib import hub

    from support.apitest import rig_api
    from apps.rest_server import RestServer
    api = rig_api(make_rig(topology))
    stream = log_to(fmt)
    server = RestServer(("127.0.0.1", 0), api, topology.controller, api.counters)
    thread = hub.spawn(server.serve_forever)
    path = (f"/mpa/v1/mobile-nodes/{IDENTITY}%0A{FORGED.replace(' ', '%20')}"
            "%0D%1B[2J%C2%85\x1b[2J\xc2\x9b2J").encode("latin-1")
    try:
        with eventlet.Timeout(10), \
                green_socket.create_connection(server.server.getsockname()) as sock:
            sock.sendall(b"GET " + path + b" HTTP/1.0\r\nAuthorization: Bearer not-a-token"
                         b"\r\n\r\n")
            with sock.makefile("rb") as reply:       # HTTP/1.0: to the end
                assert reply.read().startswith(b"HTTP/1.1 401 ")
    finally:
        server.close()
        hub.kill(thread)
    assert api.counters["rest_auth_invalid"] == 1
    text = stream.getvalue()
    lines = text.split("\n")
    assert lines[-1] == "" and text.splitlines() == lines[:-1]
    if fmt == "text":
        assert all(LINE_START.match(line) for line in lines[:-1]), text
        messages = [line.split(": ", 1)[1] for line in lines[:-1]]
    else:
        messages = [json.loads(line)["message"] for line in lines[:-1]]
        assert "switch" not in {key for line in lines[:-1] for key in json.loads(line)}
    warning = [m for m in messages if "bearer token" in m]
    access = [m for m in messages if '" 401 ' in m]
    assert len(warning) == 1 and len(access) == 1, text
    assert f"{IDENTITY}\\n{FORGED}\\r\\x1b[2J\\x85\\x1b[2J\\x9b2J from 127.0.0.1" in warning[0]
    # eventlet reads the request line as Latin-1: U+009B's two bytes, the second C1.
    assert "%0D%1B[2J%C2%85\\x1b[2J\u00c2\\x9b2J HTTP/1.0" in access[0]
    assert not any(re.search("[\x00-\x1f\x7f-\x9f]", m) for m in messages)


def test_a_signalling_mac_with_a_newline_is_refused_before_any_line_names_it(
        topology, log_to):
    from support.apitest import request, rig_api
    api = rig_api(make_rig(topology))
    stream = log_to("text")
    message = {"v": 1, "type": "config-request", "network": "net-b1", "sa": "ab" * 16,
               "seq": 1, "mn_mac": f"{MN_MAC}\n{FORGED}", "mac": "00" * 32}
    response, answer = request(api, "/mpa/v1/networks/net-b1/config", "POST", None, message)
    assert (response.status_int, answer["code"]) == (400, "malformed")
    text = stream.getvalue()
    assert "refused: malformed" in text and "evil" not in text
    assert all(LINE_START.match(line) for line in text.splitlines())


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
    authenticated(rig, "net-a1", "domain-a").bind_mac()
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
    from support.controller_command import controller, free_ports, output, wait_rest
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

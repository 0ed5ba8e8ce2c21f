"""Output of the lab's hosts and programs that is not UTF-8: a character cut
in two by a read, and bytes that are not UTF-8 at all (0x85 is a
continuation byte: alone it starts nothing).  A log goes on with U+FFFD, the
node and the command named; a document fails with an error that says whose
output it was and where it broke; what stops ``mpa-lab run`` says where it
was raised, its traceback in the run's log."""

import logging
import os
import socket
import subprocess
import sys
import threading

import pytest
from mininet.node import Node

from mpa_lab.experiment.handover_driver import _not_a_document
from mpa_lab.experiment.preconfigure import run_mpa_mn
from mpa_lab.experiment.run_log import RunLog, describe
from mpa_lab.net.controller_process import ControllerProcess
from mpa_lab.net.host_output import (LabHost, LabRemoteController, LenientOutput,
                                     OutputDecoder, decoded)
from mpa_lab.traffic.streams import _stop
from mpa_mn.vif import Ip, VifError
from mpa_protocol.program_output import OutputError, json_output, utf8

TEXT = "PoA ap-a2-1 → net-a2 (é, 😀)\n"   # two, three and four bytes a character
BAD = b"rtt 0.5 ms\x85 done\n"


def test_a_character_cut_in_two_by_every_read_comes_out_whole():
    decoder = OutputDecoder(lambda: "mn1")
    data = TEXT.encode()
    assert "".join(decoder.decode(data[i:i + 1]) for i in range(len(data))) == TEXT
    assert decoder.replaced == 0


def test_a_byte_that_is_not_utf8_is_replaced_counted_and_reported(caplog):
    decoder = OutputDecoder(lambda: "mn1, running 'ping -c 1 10.0.0.10'")
    with caplog.at_level(logging.WARNING, logger="mpa_lab.net.host_output"):
        first = decoder.decode(BAD[:12])              # ... "ms\x85 "
        rest = decoder.decode(BAD[12:] + "é".encode()[:1])   # a character's first half
        last = decoder.decode("é".encode()[1:])
    assert first + rest + last == "rtt 0.5 ms\ufffd done\né"
    assert decoder.replaced == 1
    assert caplog.messages == [
        "mn1, running 'ping -c 1 10.0.0.10' printed 1 byte(s) that are not UTF-8 (the first: "
        "85, after 'rtt 0.5 ms'); shown as U+FFFD"]


def test_mininet_s_own_reader_goes_on_past_such_a_byte():
    """Node.read, Mininet's, with the lab's decoder: Mininet's own raised
    UnicodeDecodeError out of whatever cmd() was running."""
    node = LabHost.__new__(LabHost)        # no shell, no namespace: only its reader
    node.name, node.lastCmd, node.readbuf = "mn1", "ip -j addr", ""
    reader, writer = os.pipe()
    node.stdout = os.fdopen(reader, "rb")
    node.decoder = OutputDecoder(node._printed_by)
    try:
        os.write(writer, BAD + TEXT.encode()[:-3])
        # The emoji's first three bytes wait for its fourth.
        assert Node.read(node, 1024) == "rtt 0.5 ms\ufffd done\n" + TEXT[:-3]
        os.write(writer, TEXT.encode()[-3:])
        assert Node.read(node, 1024) == TEXT[-3:]
        assert node.undecodable_bytes == 1
    finally:
        os.close(writer)
        node.stdout.close()


class Shell(LenientOutput):
    """A node whose commands run here: pexec's decoding alone."""

    name, lastCmd = "cn1", None

    def popen(self, *args, **kwargs):
        return subprocess.Popen(list(args), **kwargs)


def test_pexec_decodes_a_command_s_output_as_the_node_s_reader_does(caplog):
    with caplog.at_level(logging.WARNING, logger="mpa_lab.net.host_output"):
        out, err, code = Shell().pexec("printf", "ok\\205\\n")
    assert (out, err, code) == ("ok\ufffd\n", "", 0)
    assert caplog.messages[0].startswith("cn1, running 'printf ok\\\\205\\\\n' printed 1 byte")
    assert decoded("é".encode(), "x") == "é"


# -- documents: strictly UTF-8, or an error naming whose ---------------------------

def test_a_document_that_is_not_utf8_names_its_source_the_byte_and_what_came_before():
    with pytest.raises(OutputError) as raised:
        json_output(b'{"ok": true, "x": "\x85"}', "mpa-mn in mn1 (up net-a2)")
    assert str(raised.value) == (
        "mpa-mn in mn1 (up net-a2): printed bytes that are not UTF-8: 85 at byte 19 of 22 "
        "(invalid start byte), after b'{\"ok\": true, \"x\": \"'")
    with pytest.raises(OutputError, match=r"^mpa-mn in mn1 \(up net-a2\): printed no JSON "
                       r"document \(Expecting value: line 1 column 1 \(char 0\)\): 'oops'$"):
        json_output(b"oops\n", "mpa-mn in mn1 (up net-a2)")
    assert json_output('{"é": 1}'.encode(), "x") == {"é": 1}
    assert utf8(TEXT.encode(), "x") == TEXT
    assert isinstance(OutputError("x", "y"), ValueError), "callers catch it as bad input"


class Host:
    """A lab host whose ``popen`` runs ``program`` here, whatever it is asked."""

    def __init__(self, program):
        self.program = program

    def popen(self, command, **kwargs):
        return subprocess.Popen(self.program, **kwargs)

    def defaultIntf(self):
        return type("Intf", (), {"name": "mn1-eth0"})


class Lab:
    def __init__(self, program):
        self.hosts = {"mn1": Host(program)}
        self.topology = type("T", (), {"mobile_nodes": {
            "mn1": type("M", (), {"credentials": "/creds.yaml"})}})

    def host(self, name):
        return self.hosts[name]

    def management_addresses(self, mn):
        return "172.31.0.1", "172.31.0.2"


def printing(stdout: bytes, stderr: bytes = b"") -> list[str]:
    return [sys.executable, "-c", f"import sys; sys.stdout.buffer.write({stdout!r}); "
            f"sys.stderr.buffer.write({stderr!r})"]


def test_mpa_mn_s_document_is_read_from_a_pipe_and_a_broken_one_names_the_mn(tmp_path):
    rc, document = run_mpa_mn(Lab(printing(b'{"ok": true}\n')), "mn1", 8080, "s.json", "rest",
                              "up", "net-a2")
    assert (rc, document) == (0, {"ok": True})
    rc, document = run_mpa_mn(Lab(printing(b'{"ok": \x85}', b"warning: \x85 odd\n")), "mn1",
                              8080, "s.json", "rest", "up", "net-a2")
    assert rc == 0 and document["ok"] is False
    assert document["error"] == {"code": "output", "message": (
        "mpa-mn in mn1 (up net-a2): printed bytes that are not UTF-8: 85 at byte 7 of 9 "
        "(invalid start byte), after b'{\"ok\": '; its stderr ends: warning: \ufffd odd")}


def test_a_client_s_last_output_that_is_not_utf8_is_named_so():
    assert _not_a_document(b"done \xff", "mpa-mn in mn1 (handover to net-a2)") == (
        "mpa-mn in mn1 (handover to net-a2): printed bytes that are not UTF-8: ff at byte 5 "
        "of 6 (invalid start byte), after b'done '")
    assert _not_a_document(b"[1]", "mpa-mn in mn1 (handover to net-a2)") == (
        "mpa-mn in mn1 (handover to net-a2): its last output is not a JSON object: b'[1]'")


def test_a_traffic_tool_s_report_that_is_not_utf8_names_the_tool_and_its_host():
    # It says it is ready (its handler is set), then reports when told to stop.
    process = subprocess.Popen(
        [sys.executable, "-c", "import signal, sys, time\n"
         "signal.signal(signal.SIGTERM, lambda *a: (sys.stdout.buffer.write(b'\\x85'), "
         "sys.exit(0)))\nprint('ready', file=sys.stderr, flush=True)\ntime.sleep(60)"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    assert process.stderr.readline() == b"ready\n"
    with pytest.raises(OutputError, match=r"^mpa-traffic receive in mn1: printed bytes that "
                                          r"are not UTF-8: 85 at byte 0 of 1"):
        _stop(process, "mpa-traffic receive in mn1")
    process.stderr.close()
    assert process.returncode == 0


def test_an_answer_of_the_controller_that_is_not_utf8_names_the_controller_and_the_call():
    controller = ControllerProcess("topology.yaml", domain="domain-b")
    controller._open = lambda *args: (200, {}, b'{"a": "\xe9"}')
    with pytest.raises(OutputError, match=r"^mpa-controller --domain domain-b's answer to GET "
                                          r"/mpa/v1/counters \(200\): printed bytes that are "
                                          r"not UTF-8: e9 at byte 7"):
        controller.counters()
    controller._open = lambda *args: (200, {}, b"mpa_x 1\n\xff")
    with pytest.raises(OutputError, match=r"'s GET /metrics: printed bytes that are not UTF-8"):
        controller.metrics()


def test_the_mn_s_ip_output_that_is_not_utf8_is_a_clear_error_and_its_stderr_is_shown():
    def run(argv, **kwargs):
        assert kwargs["errors"] == "surrogateescape"
        out = b'[{"ifname": "\x85"}]'.decode("utf-8", "surrogateescape")
        return subprocess.CompletedProcess(argv, 0, out, "")
    with pytest.raises(VifError, match=r"^`ip -j addr` printed bytes that are not UTF-8: 85 "
                                       r"at byte 13 of 17 \(invalid start byte\)"):
        Ip(run).json("addr")

    def failing(argv, **kwargs):
        return subprocess.CompletedProcess(argv, 1, "", b"Error: \x85\n".decode(
            "utf-8", "surrogateescape"))
    with pytest.raises(VifError, match="^`ip addr` failed \\(exit 1\\): Error: \ufffd$"):
        Ip(failing)("addr")


# -- what stops a run -----------------------------------------------------------------

def read_a_host_s_output():
    return b"ok \x85".decode("utf-8")


def test_what_stops_a_run_says_where_it_was_raised_and_its_traceback_is_logged(tmp_path):
    log = RunLog(str(tmp_path))
    try:
        read_a_host_s_output()
    except UnicodeDecodeError as exc:
        line = log.stopped(exc)
    finally:
        log.close()
    assert line.startswith("UnicodeDecodeError: output printed bytes that are not UTF-8: 85 "
                           "at byte 3 of 4 (invalid start byte), after b'ok ' (raised in "
                           "tests/unit/lab/test_host_output.py:")
    assert line.endswith(" (read_a_host_s_output))")
    written = open(log.path, encoding="utf-8").read()
    assert "ERROR the run stopped: UnicodeDecodeError: output printed" in written
    assert "Traceback (most recent call last):" in written
    assert 'return b"ok \\x85".decode("utf-8")' in written
    assert describe(KeyError("x")).startswith("KeyError: 'x'")


class NoAaa:
    """The run's AAA servers, not started: the session fails before it needs them."""

    def __init__(self, topology):
        pass

    def start(self):
        pass

    def describe(self):
        return []

    def log_paths(self):
        return []

    def stop(self):
        pass


def a_session_whose_host_printed_0x85(self, session):
    return read_a_host_s_output()


def test_mpa_lab_run_stopped_by_such_an_error_says_where_and_logs_its_traceback(
        tmp_path, monkeypatch, capsys):
    import json

    from mpa_lab import cli
    from mpa_lab.experiment import runner

    monkeypatch.setattr(runner, "LabAaa", NoAaa)
    monkeypatch.setattr(runner.Experiment, "_session", a_session_whose_host_printed_0x85)
    monkeypatch.setattr(cli, "_stop_on_signals", lambda: None)
    monkeypatch.setattr(cli.os, "geteuid", lambda: 0)
    out = tmp_path / "run"
    assert cli.main(["run", "--out", str(out)]) == 1
    err = capsys.readouterr().err
    log = out / "logs" / "mpa-lab.log"
    assert ("mpa-lab run: UnicodeDecodeError: output printed bytes that are not UTF-8: 85 at "
            "byte 3 of 4 (invalid start byte), after b'ok ' (raised in "
            "tests/unit/lab/test_host_output.py:") in err
    assert f"(read_a_host_s_output)); the lab is down (traceback in {log})" in err
    assert "Traceback" not in err, "the terminal gets one line, the log the traceback"
    results = json.loads((out / "results.json").read_text())
    assert results["complete"] is False and results["log"] == str(log)
    assert results["stopped"].startswith("UnicodeDecodeError: output printed bytes")
    written = log.read_text()
    assert "Traceback (most recent call last):" in written
    assert "in a_session_whose_host_printed_0x85" in written


def test_the_controller_probe_connects_and_prints_nothing_the_controller_says(caplog):
    """Mininet's probe (telnet on the node's pty) printed the controller's
    OpenFlow HELLO, whose random xid stopped a run now and then."""
    probe = LabRemoteController.__new__(LabRemoteController)   # no shell: nothing to print on
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        port = listener.getsockname()[1]

        def hello():
            conn, _ = listener.accept()
            with conn:
                conn.sendall(b"\x04\x00\x00\x08\x85\x91\xff\x00")   # HELLO, its xid
        answering = threading.Thread(target=hello)
        answering.start()
        assert probe.isListening("127.0.0.1", port) is True
        answering.join(5)
    with caplog.at_level(logging.WARNING, logger="mininet"):
        assert probe.isListening("127.0.0.1", port) is False   # nobody listens any more
    assert caplog.messages[-1].startswith(
        f"Unable to contact the remote controller at 127.0.0.1:{port} (")

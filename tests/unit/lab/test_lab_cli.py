"""``mpa-lab up``'s own commands (mpa_lab/net/lab_cli.py) and what ``move
--when-ready`` reads of an MN's client (mpa_lab/net/client_events.py), on a
lab that only records what it is asked: no Mininet network, no root."""

import json
import logging
import os
from types import SimpleNamespace

import pytest
from mininet.log import lg, setLogLevel

from support.paths import DEFAULT_TOPOLOGY
from mpa_lab.net.client_events import (NotReady, client_said, network_namespace, wait_ready,
                                       waiting_clients, waiting_for_link)
from mpa_lab.net.lab import LinkSwitch
from mpa_lab.net.lab_cli import LabCLI
from mpa_sdn.config import load_topology
from mpa_sdn.neighbourhood import NeighbourhoodGraph

READY = {"event": "ready", "network": "net-a2", "address": "10.1.2.199", "mode": "buffer"}
HOST_PID = 100          # mn1's shell, in the fake /proc
HANDOVER = ["/venv/bin/python3", "/venv/bin/mpa-mn", "--json", "handover", "net-a2", "--home",
            "10.255.0.1", "--wait-link"]


class FakeProc:
    """A /proc with mn1's shell in a network namespace of its own, and the
    processes a test starts: in that namespace, or in another one."""

    def __init__(self, root):
        self.root = root
        self._process(HOST_PID, ["bash", "--norc", "-is", "mininet:mn1"])
        (root / "other-namespace").write_text("")

    def _process(self, pid, argv, namespace=None, output=None):
        directory = self.root / str(pid)
        (directory / "ns").mkdir(parents=True)
        (directory / "fd").mkdir()
        (directory / "cmdline").write_bytes(b"\0".join(a.encode() for a in argv) + b"\0")
        if namespace is None and pid == HOST_PID:
            (directory / "ns" / "net").write_text("")       # the namespace: this file's inode
        else:
            os.link(namespace or self.root / str(HOST_PID) / "ns" / "net", directory / "ns" / "net")
        if output is not None:
            os.symlink(output, directory / "fd" / "1")

    def start(self, pid, argv, output=None, elsewhere=False):
        self._process(pid, argv, self.root / "other-namespace" if elsewhere else None, output)


@pytest.fixture(autouse=True)
def proc(tmp_path, monkeypatch):
    """The CLI looks for an MN's clients in a fake /proc (none unless a test starts one)."""
    fake = FakeProc(tmp_path / "proc")
    monkeypatch.setattr(LabCLI, "proc", str(fake.root))
    return fake


class RecordingLab:
    """The lab as LabCLI uses it: moves are recorded, the MN's addresses are
    what the lab gave it (``readdress``) and nothing else."""

    def __init__(self):
        self.topology = load_topology(DEFAULT_TOPOLOGY)
        self.graph = NeighbourhoodGraph(self.topology)
        self.net = {}
        self.location = {mn.id: self.graph.poa(mn.attach)
                         for mn in self.topology.mobile_nodes.values()}
        self.moves = []
        self.link_switches = []

    def host(self, name):
        return SimpleNamespace(pid=HOST_PID)

    @property
    def last_link_switch(self):
        return self.link_switches[-1] if self.link_switches else None

    def move(self, mn, poa, readdress=True):
        here, target = self.location[mn], self.graph.poa(poa)
        self.moves.append((mn, poa, readdress))
        self.link_switches.append(LinkSwitch(mn, here.id, poa, 0, 2_500_000, 0, 2_500_000))
        self.location[mn] = target
        return "10.1.2.199" if readdress else None


class Said(logging.Handler):
    """What the CLI printed (Mininet's output and error go to its logger)."""

    def __init__(self):
        super().__init__()
        self.lines = []

    def emit(self, record):
        self.lines.append(record.getMessage())

    @property
    def text(self):
        return "".join(self.lines)


@pytest.fixture
def said():
    handler = Said()
    setLogLevel("output")
    lg.addHandler(handler)
    yield handler
    lg.removeHandler(handler)
    setLogLevel("error")


def run_cli(tmp_path, lab, *commands):
    script = tmp_path / "commands"
    script.write_text("".join(f"{c}\n" for c in commands))
    with open(os.devnull) as stdin:
        LabCLI(lab, stdin=stdin, script=str(script))


def test_move_re_addresses_the_mn_as_before(tmp_path, said, proc):
    proc.start(200, ["/venv/bin/python3", "/venv/bin/mpa-mn", "status"])   # waits for nothing
    proc.start(201, HANDOVER, elsewhere=True)                            # in another host
    lab = RecordingLab()
    run_cli(tmp_path, lab, "move mn1 ap-a2-1")
    assert lab.moves == [("mn1", "ap-a2-1", True)]
    assert "mn1 is at ap-a2-1 (net-a2) with 10.1.2.199" in said.text


def test_move_finds_a_client_waiting_in_the_mn_and_moves_only_the_link_once_it_is_ready(
        tmp_path, said, proc):
    out = tmp_path / "handover.log"
    out.write_text(json.dumps(READY) + "\n")
    proc.start(300, HANDOVER, output=out)
    lab = RecordingLab()
    run_cli(tmp_path, lab, "move mn1 ap-a2-1")
    assert lab.moves == [("mn1", "ap-a2-1", False)]
    assert ("mn1 runs mpa-mn --json handover net-a2 --home 10.255.0.1 --wait-link (pid 300), "
            "which sets its addresses: only its link moves\n") in said.text
    assert "mn1's client is ready (ready event for net-a2)" in said.text


def test_move_does_not_move_a_found_client_s_mn_before_it_is_ready(tmp_path, said, proc):
    out = tmp_path / "handover.log"
    out.write_text("")
    proc.start(300, HANDOVER, output=out)
    lab = RecordingLab()
    run_cli(tmp_path, lab, "move --timeout 0 mn1 ap-a2-1")
    assert lab.moves == []
    assert f"move: no ready event in {out} within 0 s" in said.text


def test_a_found_client_writing_to_no_file_gets_its_link_moved_at_once(tmp_path, said, proc):
    proc.start(300, ["python3", "-m", "mpa_mn.cli", "follow", "--home", "10.255.0.1"])
    lab = RecordingLab()
    run_cli(tmp_path, lab, "move mn1 ap-a2-1")
    assert lab.moves == [("mn1", "ap-a2-1", False)]
    assert ("mn1 runs mpa-mn follow --home 10.255.0.1 (pid 300), which sets its addresses: "
            "only its link moves (its output goes to no file: no ready event to wait for)"
            ) in said.text


@pytest.mark.parametrize("argv, waits", [
    (HANDOVER, True),
    (["/venv/bin/mpa-mn", "reactive", "net-a2", "--home", "h", "--wait-link"], True),
    (["/venv/bin/mpa-mn", "follow", "--home", "h"], True),
    (["/venv/bin/mpa-mn", "handover", "net-a2", "--home", "h"], False),   # no --wait-link
    (["/venv/bin/mpa-mn", "standby", "net-a2", "--wait-loss"], False),
    (["/venv/bin/mpa-traffic", "receive", "--wait-link", "handover"], False),
    (["bash", "-c", "mpa-mn handover net-a2 --wait-link"], False),   # its shell, not it
])
def test_which_processes_are_clients_waiting_for_the_link(argv, waits):
    assert (waiting_for_link(argv) is not None) == waits


def test_clients_are_found_in_the_mn_s_namespace_only(tmp_path, proc):
    proc.start(301, HANDOVER, output=tmp_path)           # a directory: not a file to read
    proc.start(302, HANDOVER, elsewhere=True)
    found = waiting_clients(network_namespace(HOST_PID, str(proc.root)), str(proc.root))
    assert [(c.pid, c.output) for c in found] == [(301, None)]


def test_move_link_only_leaves_the_addresses_to_the_mn_s_client(tmp_path, said):
    lab = RecordingLab()
    run_cli(tmp_path, lab, "move --link-only mn1 ap-a2-1")
    assert lab.moves == [("mn1", "ap-a2-1", False)]
    assert ("mn1's link moved from ap-a1-1 to ap-a2-1 (net-a2) in 2.5 ms; its address is "
            "its client's to set") in said.text


def move_when(tmp_path, client_output: str, command: str) -> tuple[RecordingLab, str]:
    """``command`` (``{out}``: the client's output file, holding
    ``client_output``) on a fresh lab; the lab and the file's path."""
    lab, out = RecordingLab(), tmp_path / "handover.log"
    out.write_text(client_output)
    run_cli(tmp_path, lab, command.format(out=out))
    return lab, str(out)


def test_move_when_ready_moves_the_link_once_the_client_is_ready(tmp_path, said):
    lab, _ = move_when(tmp_path, '{"event": "progress"}\n' + json.dumps(READY) + "\n",
                       "move --when-ready {out} mn1 ap-a2-1")
    assert lab.moves == [("mn1", "ap-a2-1", False)], "waiting for the client implies link-only"
    assert "mn1's client is ready (ready event for net-a2)" in said.text


def test_a_second_move_waits_for_a_newer_event_than_the_first_took(tmp_path, said):
    lab, out = RecordingLab(), tmp_path / "follow.log"
    out.write_text(json.dumps(READY) + "\n")           # one event, for net-a2
    run_cli(tmp_path, lab, f"move --when-ready {out} mn1 ap-a2-1",
            f"move --when-ready {out} --timeout 0 mn1 ap-a1-1")
    assert lab.moves == [("mn1", "ap-a2-1", False)]
    assert f"move: no ready event in {out} within 0 s" in said.text


@pytest.mark.parametrize("client_output, command, message", [
    # It failed first: its error line (stderr, with 2>&1).
    ("mpa-mn: net-a2: unauthorized: the AA refused\n",
     "move --when-ready {out} --timeout 30 mn1 ap-a2-1",
     "move: the client writing to {out} failed: mpa-mn: net-a2: unauthorized: the AA refused"),
    (json.dumps(READY) + "\n", "move --when-ready {out} mn1 ap-b1-1",
     "move: the client is ready for net-a2, not for net-b1 (ap-b1-1's network)"),
    ("preauth net-a2\n", "move --when-ready {out} --timeout 0 mn1 ap-a2-1",
     "move: no ready event in {out} within 0 s (its last line: preauth net-a2)"),
])
def test_move_when_ready_moves_nothing_unless_the_client_is_ready_for_that_network(
        tmp_path, said, client_output, command, message):
    lab, out = move_when(tmp_path, client_output, command)
    assert lab.moves == []
    assert message.format(out=out) + "; mn1 stays at ap-a1-1\n" in said.text


@pytest.mark.parametrize("command, message", [
    ("move mn1", "move: the following arguments are required: poa"),
    ("move --sideways mn1 ap-a2-1", "move: unrecognized arguments: --sideways"),
    ("move --when-ready f --timeout -1 mn1 ap-a2-1", "move: --timeout must not be negative"),
    ("move --when-ready f --timeout soon mn1 ap-a2-1", "move: argument --timeout: invalid"),
    ("move cn1 ap-a2-1", "move: cn1 is not a mobile node (mn1)"),
    ("move mn1 nowhere", "move: unknown PoA nowhere ("),
    ("move --link-only mn1 ap-a1-1", "mn1 is at ap-a1-1 already; nothing moved"),
])
def test_a_move_that_cannot_be_done_says_why_and_moves_nothing(tmp_path, said, command,
                                                                message):
    lab = RecordingLab()
    run_cli(tmp_path, lab, command)
    assert lab.moves == []
    assert message in said.text


# -- what the client said ----------------------------------------------------------

@pytest.mark.parametrize("text, event, failure", [
    ("", None, None),
    ("net-a2: preauth done\n", None, None),
    (json.dumps(READY), None, None),                    # half written: no newline yet
    (json.dumps(READY) + "\nmpa-mn: net-a2: link-timeout: never\n", READY, None),
    ('{"event": "switch", "network": "net-a2", "poa": "ap-a2-1"}\n',
     {"event": "switch", "network": "net-a2", "poa": "ap-a2-1"}, None),
    ("mpa-mn: handover: state: locked\n", None, "mpa-mn: handover: state: locked"),
    ("Traceback (most recent call last):\n  File \"x\", line 1\nKeyError: 'x'\n", None,
     "it crashed: KeyError: 'x'"),
    ('{\n "ok": false,\n "results": [{"error": {"code": "refused", "message": "no"}}]\n}\n',
     None, "it ended without a ready event: refused: no"),
])
def test_what_a_client_said_first(text, event, failure):
    said = client_said(text)
    if event is None and failure is None:
        assert said is None
    else:
        assert (said.event, said.failure) == (event, failure)


def test_an_event_an_earlier_move_took_does_not_count_again():
    """mpa-mn follow prints a switch event per instruction, in one file."""
    first = {"event": "switch", "network": "net-a2", "poa": "ap-a2-1"}
    second = {"event": "switch", "network": "net-a1", "poa": "ap-a1-1"}
    text = json.dumps(first) + "\n"
    taken = client_said(text)
    assert taken.event == first and taken.end == len(text)
    assert client_said(text, taken.end) is None               # not ready again yet
    text += "net-a1: prepared\n" + json.dumps(second) + "\n"
    assert client_said(text, taken.end).event == second


def test_a_handover_s_closing_document_does_not_fail_the_next_one_in_the_same_file():
    """mpa-mn handover --json appended to one file: the first run's ready
    event and its closing document, then the second run's ready event."""
    first = {**READY, "network": "net-a2"}
    text = json.dumps(first) + "\n" + json.dumps({"ok": True, "results": []}) + "\n"
    taken = client_said(text)
    assert client_said(text, taken.end) is None               # the document is the last's
    failed = text + '{\n "ok": false,\n "error": {"code": "refused", "message": "no"}\n}\n'
    assert client_said(failed, taken.end).failure == \
        "it ended without a ready event: refused: no"       # the second run's own
    text += json.dumps(READY) + "\n"
    assert client_said(text, taken.end).event == READY


def test_a_failure_document_after_event_lines_is_a_failure():
    text = ('{"event": "instruction", "id": 3}\n'
            '{\n "ok": false,\n "error": {"code": "link-timeout", "message": "never"}\n}\n')
    assert client_said(text).failure == "it ended without a ready event: link-timeout: never"


def test_waiting_for_a_file_that_never_appears_names_it(tmp_path):
    with pytest.raises(NotReady, match="does not exist"):
        wait_ready(str(tmp_path / "nowhere.log"), 0)


def test_waiting_polls_until_the_ready_line_is_written(tmp_path):
    out = tmp_path / "handover.log"
    out.write_text("")
    now = [0.0]

    def sleep(seconds):   # the client writes its line while the CLI waits
        now[0] += seconds
        out.write_text(json.dumps(READY) + "\n")
    assert wait_ready(str(out), 30, clock=lambda: now[0], sleep=sleep).event == READY
    assert 0 < now[0] < 30

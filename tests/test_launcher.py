"""The controller process itself: start, answer, stop on SIGTERM, refuse busy ports."""

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from conftest import DEFAULT_TOPOLOGY

MPA_CONTROLLER = os.path.join(os.path.dirname(sys.executable), "mpa-controller")


def free_ports(count: int) -> list[int]:
    """Distinct free ports: all held open at once while they are chosen."""
    with contextlib.ExitStack() as stack:
        sockets = [stack.enter_context(socket.socket()) for _ in range(count)]
        for s in sockets:
            s.bind(("127.0.0.1", 0))
        return [s.getsockname()[1] for s in sockets]


@contextlib.contextmanager
def controller(tmp_path, *extra):
    log = open(tmp_path / "controller.log", "w+")
    process = subprocess.Popen([MPA_CONTROLLER, "--config", DEFAULT_TOPOLOGY, *extra],
                               stdout=log, stderr=subprocess.STDOUT, text=True)
    try:
        yield process, log
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        log.close()


def output(log) -> str:
    log.seek(0)
    return log.read()


def wait_rest(port, process, log, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, output(log)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/mpa/v1/networks", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("REST never answered:\n" + output(log))


def test_runs_answers_and_stops_cleanly_on_sigterm(tmp_path):
    ofp, rest = free_ports(2)
    with controller(tmp_path, "--ofp-port", str(ofp), "--rest-port", str(rest)) as (process, log):
        networks = wait_rest(rest, process, log)
        assert [n["id"] for n in networks] == ["net-a1", "net-a2", "net-b1", "net-cn"]
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=15)
        text = output(log)
    assert process.returncode == 0, text
    assert "controller stopped" in text
    assert "Traceback" not in text and "uncaught exception" not in text


@pytest.mark.parametrize("which", ["--rest-port", "--ofp-port"])
def test_a_busy_port_is_refused(tmp_path, which):
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as eventlet listens
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        ofp, rest = free_ports(2)
        ports = {"--ofp-port": str(ofp), "--rest-port": str(rest), which: str(busy)}
        args = [x for pair in ports.items() for x in pair]
        with controller(tmp_path, *args) as (process, log):
            process.wait(timeout=20)
            text = output(log)
    assert process.returncode == 2
    assert f":{busy} (Address already in use)" in text
    assert "Traceback" not in text


def test_out_of_range_port_override_is_refused(tmp_path):
    with controller(tmp_path, "--rest-port", "70000") as (process, log):
        process.wait(timeout=20)
        text = output(log)
    assert process.returncode == 2
    assert "70000 is out of range" in text

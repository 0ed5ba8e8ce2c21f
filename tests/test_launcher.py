"""The controller process itself: start, answer, stop on SIGTERM, refuse busy ports."""

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


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start(*extra):
    return subprocess.Popen([MPA_CONTROLLER, "--config", DEFAULT_TOPOLOGY, *extra],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_rest(port, process, timeout_s=20):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, process.communicate()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/mpa/v1/networks", timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("REST never answered")


def test_runs_answers_and_stops_cleanly_on_sigterm():
    rest = free_port()
    process = start("--ofp-port", str(free_port()), "--rest-port", str(rest))
    try:
        networks = wait_rest(rest, process)
        assert [n["id"] for n in networks] == ["net-a1", "net-a2", "net-b1", "net-cn"]
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=15)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == 0
    assert "controller stopped" in err
    assert "Traceback" not in err


@pytest.mark.parametrize("which", ["--rest-port", "--ofp-port"])
def test_a_busy_port_is_refused(which):
    with socket.socket() as holder:
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)  # as eventlet listens
        holder.bind(("0.0.0.0", 0))
        holder.listen()
        busy = holder.getsockname()[1]
        ports = {"--rest-port": str(free_port()), "--ofp-port": str(free_port())}
        ports[which] = str(busy)
        process = start(*[x for kv in ports.items() for x in kv])
        out, err = process.communicate(timeout=20)
    assert process.returncode == 2
    assert f":{busy} (Address already in use)" in err
    assert "Traceback" not in err


def test_out_of_range_port_override_is_refused():
    process = start("--rest-port", "70000")
    out, err = process.communicate(timeout=20)
    assert process.returncode == 2
    assert "70000 is out of range" in err

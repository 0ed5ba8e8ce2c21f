"""The real controller as a process (mpa-controller) on free local ports, its
output kept, and a wait for its REST listener with a deadline."""

import contextlib
import json
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from support.paths import DEFAULT_TOPOLOGY

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
    """The OpenAPI document, which needs no token, once the controller serves it."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        assert process.poll() is None, output(log)
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/mpa/v1/openapi.json",
                                        timeout=2) as r:
                return json.loads(r.read())
        except OSError:
            time.sleep(0.1)
    raise AssertionError("REST never answered:\n" + output(log))

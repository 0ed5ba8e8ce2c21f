"""The REST listener under idle connections and event streams: no Mininet, no root.

Starts the real controller process (``mpa-controller``, as the lab harness
does, on ports 26653/28080) with a topology whose ``controller:`` section
lets one loopback source hold thousands of connections and streams, then:

1. times normal requests with nothing else open (the baseline);
2. opens ``--idle`` TCP connections that send nothing and ``--streams``
   event streams (``GET /mpa/v1/events``, one reader token), and holds them;
3. while they are open, for ``--seconds``, times a normal API request
   (``GET /mpa/v1/networks`` with a token, on a new connection) and an
   MN's ``discover`` POST, alternately, every ``--interval`` seconds;
4. samples the controller's resident memory (``/proc/PID/status``) once a
   second through all of it, and after everything is closed again.

``--before DIR`` runs the controller from another source tree instead (e.g.
``git archive 08c5ad4 | tar -x -C DIR``, the listener as it was before its
bounds): only ``--idle`` connections are opened (no streams), and requests
that get no answer within ``--request-timeout`` are counted, not timed.

Writes raw results (every latency, every memory sample) as JSON to ``--out``
and prints a summary.  Run:

    .venv/bin/python benchmarks/rest_load.py --out results/bench/rest_load-DATE-COMMIT.json
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import resource
import socket
import statistics
import sys
import tempfile
import threading
import time

import yaml

from common import TOPOLOGY, stamped, unwind_on_sigterm, write

from mpa_mn import protocol  # noqa: E402
from mpa_protocol import api_tokens
from mpa_lab.net import controller_process  # noqa: E402

OFP_PORT, REST_PORT = 26653, 28080
# Bounds wide enough for the load: this run measures the listener's cost per
# connection held, not its refusals (tests/unit/shell/test_rest_server.py covers those).
CONTROLLER = {"rest_max_connections": 4096, "rest_connections_per_source": 4096,
              "rest_max_streams": 1200, "rest_streams_per_token": 1200,
              "rest_header_timeout_s": 3600, "rest_idle_timeout_s": 3600}


def topology_file(directory: str, before: bool) -> str:
    """two_domains.yaml with the wide bounds, its relative paths made absolute."""
    with open(TOPOLOGY, encoding="utf-8") as f:
        data = yaml.safe_load(f)
    if not before:   # the settings did not exist then
        data["controller"].update(CONTROLLER)
    base = os.path.dirname(TOPOLOGY)
    for domain in data["domains"].values():
        domain["credentials"] = os.path.join(base, domain["credentials"])
    path = os.path.join(directory, "rest-load.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(data, f)
    return path


def launcher_from(tree: str, directory: str) -> str:
    """An ``mpa-controller`` that runs the controller of another source tree."""
    path = os.path.join(directory, "mpa-controller-before")
    with open(path, "w", encoding="utf-8") as f:
        f.write(f"#!{sys.executable}\nimport sys\nsys.path.insert(0, {tree!r})\n"
                "from apps.launcher import main\nsys.exit(main())\n")
    os.chmod(path, 0o755)
    return path


def rss_kib(pid: int) -> int:
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    return 0


class Sampler(threading.Thread):
    """The controller's resident memory once a second, with the phase it is in."""

    def __init__(self, pid: int, started: float):
        super().__init__(daemon=True)
        self.pid, self.started = pid, started
        self.phase = "start"
        self.samples: list[dict] = []
        self.done = threading.Event()

    def run(self):
        while not self.done.is_set():
            try:
                kib = rss_kib(self.pid)
            except OSError:
                return
            self.samples.append({"t_s": round(time.monotonic() - self.started, 1),
                                 "phase": self.phase, "rss_kib": kib})
            self.done.wait(1.0)


def timed(kind: str, token: str, timeout: float) -> dict:
    """One request on a new connection: its kind, status (None: no answer
    in time) and latency."""
    started = time.perf_counter()
    connection = http.client.HTTPConnection("127.0.0.1", REST_PORT, timeout=timeout)
    try:
        if kind == "networks":
            connection.request("GET", "/mpa/v1/networks",
                               headers={"Authorization": f"Bearer {token}"})
        else:
            connection.request("POST", "/mpa/v1/discover",
                               body=protocol.discover(address="10.1.1.199"),
                               headers={"Content-Type": "application/json"})
        response = connection.getresponse()
        response.read()
        status = response.status
    except (OSError, http.client.HTTPException) as exc:
        status, error = None, type(exc).__name__
    else:
        error = None
    finally:
        connection.close()
    return {"kind": kind, "status": status, "error": error,
            "ms": round((time.perf_counter() - started) * 1000, 3)}


def open_idle(count: int, timeout: float) -> tuple[list, int]:
    held, failed = [], 0
    for _ in range(count):
        sock = socket.socket()
        sock.settimeout(timeout)
        try:
            sock.connect(("127.0.0.1", REST_PORT))
            held.append(sock)
        except OSError:
            failed += 1
            sock.close()
    return held, failed


def open_streams(count: int, token: str, timeout: float) -> tuple[list, int]:
    request = (f"GET /mpa/v1/events HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Authorization: Bearer {token}\r\n\r\n").encode()
    held, refused = [], 0
    for _ in range(count):
        sock = socket.create_connection(("127.0.0.1", REST_PORT), timeout=timeout)
        sock.sendall(request)
        head = b""
        while b"\r\n\r\n" not in head:
            chunk = sock.recv(4096)
            if not chunk:
                break
            head += chunk
        if head.startswith(b"HTTP/1.1 200"):
            held.append(sock)
        else:
            refused += 1
            sock.close()
    return held, refused


def summary(samples: list[dict]) -> dict:
    answered = [s["ms"] for s in samples if s["status"] is not None]
    out = {"requests": len(samples), "answered": len(answered),
           "unanswered": len(samples) - len(answered),
           "statuses": sorted({s["status"] for s in samples if s["status"] is not None})}
    if len(answered) >= 2:
        q = statistics.quantiles(sorted(answered), n=100, method="inclusive")
        out.update(median_ms=round(statistics.median(answered), 2), p99_ms=round(q[98], 2),
                   max_ms=round(max(answered), 2))
    return out


def run(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    need = args.idle + args.streams + 256
    if soft < need:   # this process holds every connection it opens
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(need, soft)), hard))
    with tempfile.TemporaryDirectory(prefix="rest-load-") as directory:
        config = topology_file(directory, bool(args.before))
        if args.before:
            controller_process.MPA_CONTROLLER = launcher_from(os.path.abspath(args.before),
                                                              directory)
        controller = controller_process.ControllerProcess(
            config, ofp_port=OFP_PORT, rest_port=REST_PORT,
            log_path=os.path.join(directory, "controller.log"), log_level="WARNING")
        controller.start()
        started = time.monotonic()
        sampler = Sampler(controller.process.pid, started)
        sampler.start()
        token = controller.tokens[api_tokens.READER]
        idle = streams = []
        try:
            sampler.phase = "baseline"
            baseline = [timed(kind, token, args.request_timeout)
                        for _ in range(args.baseline) for kind in ("networks", "discover")]
            sampler.phase = "opening"
            opened = time.monotonic()
            idle, idle_failed = open_idle(args.idle, args.request_timeout)
            streams, refused = ([], 0) if args.before else open_streams(
                args.streams, token, args.request_timeout)
            opening_s = time.monotonic() - opened
            sampler.phase = "held"
            loaded = []
            deadline = time.monotonic() + args.seconds
            while time.monotonic() < deadline:
                loaded.append({"t_s": round(time.monotonic() - started, 2),
                               **timed("networks" if len(loaded) % 2 == 0 else "discover",
                                       token, args.request_timeout)})
                time.sleep(args.interval)
            counters = {} if args.before else {
                k: v for k, v in controller.counters().items() if k.startswith("rest_")}
        finally:
            sampler.phase = "closed"
            for sock in idle + streams:
                sock.close()
        time.sleep(5)
        sampler.done.set()
        sampler.join()
        controller.close()
    return {"mode": "before" if args.before else "bounded",
            "controller_commit": args.before_commit if args.before else None,
            "machine": machine(),
            "settings": {} if args.before else CONTROLLER,
            "idle_requested": args.idle, "idle_open": len(idle), "idle_failed": idle_failed,
            "streams_requested": 0 if args.before else args.streams,
            "streams_open": len(streams), "streams_refused": refused,
            "opening_s": round(opening_s, 2), "request_timeout_s": args.request_timeout,
            "baseline": summary(baseline), "under_load": summary(loaded),
            "under_load_by_kind": {kind: summary([s for s in loaded if s["kind"] == kind])
                                   for kind in ("networks", "discover")},
            "controller_counters": counters,
            "rss": sampler.samples, "requests": baseline + loaded}


def machine() -> dict:
    with open("/proc/cpuinfo", encoding="ascii", errors="replace") as f:
        model = next((line.split(":", 1)[1].strip() for line in f
                      if line.startswith("model name")), "unknown")
    return {"cpu": model, "cpus": os.cpu_count(), "python": sys.version.split()[0],
            "kernel": os.uname().release}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--idle", type=int, default=2000)
    parser.add_argument("--streams", type=int, default=1000)
    parser.add_argument("--seconds", type=float, default=60.0)
    parser.add_argument("--interval", type=float, default=0.2)
    parser.add_argument("--baseline", type=int, default=20)
    parser.add_argument("--request-timeout", type=float, default=5.0)
    parser.add_argument("--before", metavar="DIR", help="run the controller of this source tree")
    parser.add_argument("--before-commit", metavar="COMMIT",
                        help="with --before: the commit that tree was taken from, recorded")
    parser.add_argument("--out", required=True)
    args = parser.parse_args()
    unwind_on_sigterm()
    result = stamped(run(args))
    write(args.out, result)
    printed = {k: v for k, v in result.items() if k not in ("rss", "requests")}
    print(json.dumps(printed, indent=1))
    rss = result["rss"]
    print("rss KiB by phase:", {p: (min(s["rss_kib"] for s in rss if s["phase"] == p),
                                    max(s["rss_kib"] for s in rss if s["phase"] == p))
                                for p in dict.fromkeys(s["phase"] for s in rss)})


if __name__ == "__main__":
    main()

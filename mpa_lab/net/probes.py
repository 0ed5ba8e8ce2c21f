"""Reachability probes run inside the lab's hosts (ping and a TCP echo).

``python -m mpa_lab.net.probes serve PORT`` runs in the destination host's
namespace; the source host runs ``connect``.  The probes themselves run as
separate processes so they use each host's own network stack.
"""

from __future__ import annotations

import argparse
import re
import socket
import sys
import time
from dataclasses import dataclass

PAYLOAD = b"mpa-sdn reachability probe\n"


@dataclass(frozen=True)
class Result:
    ok: bool
    detail: str
    rtt_ms: float | None = None


def ping(host, address: str, count: int = 3, interval: float = 0.2, wait_s: int = 1) -> Result:
    out = host.cmd(f"ping -n -c {count} -i {interval} -W {wait_s} {address}")
    match = re.search(r"(\d+) packets transmitted, (\d+) received", out)
    if not match:
        return Result(False, out.strip().splitlines()[-1] if out.strip() else "no output")
    sent, received = int(match.group(1)), int(match.group(2))
    rtt = re.search(r"= [\d.]+/([\d.]+)/", out)
    return Result(received > 0, f"{received}/{sent}", float(rtt.group(1)) if rtt else None)


def tcp(client, server, address: str, port: int = 5001, timeout_s: float = 5.0) -> Result:
    """A TCP connection from ``client`` to ``server`` at ``address``, echoing a line."""
    process = server.popen([sys.executable, "-m", "mpa_lab.net.probes", "serve", str(port),
                            "--timeout", str(timeout_s)])
    try:
        out = ""
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            out = client.cmd(f"{sys.executable} -m mpa_lab.net.probes connect {address} {port} "
                             f"--timeout {timeout_s}").strip()
            if out.startswith("ok"):
                return Result(True, "echoed", float(out.split()[1]))
            time.sleep(0.1)  # the server may not be listening yet
        return Result(False, out or "no answer")
    finally:
        process.kill()
        process.wait()


def _serve(port: int, timeout_s: float) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as listener:
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("0.0.0.0", port))
        listener.listen(4)
        listener.settimeout(timeout_s)
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(timeout_s)
            data = conn.recv(len(PAYLOAD))
            conn.sendall(data)
    return 0


def _connect(address: str, port: int, timeout_s: float) -> int:
    start = time.monotonic()
    try:
        with socket.create_connection((address, port), timeout=timeout_s) as conn:
            conn.sendall(PAYLOAD)
            echoed = b""
            while len(echoed) < len(PAYLOAD):
                chunk = conn.recv(len(PAYLOAD))
                if not chunk:
                    break
                echoed += chunk
    except OSError as exc:
        print(f"error {exc}")
        return 1
    if echoed != PAYLOAD:
        print("error wrong echo")
        return 1
    print(f"ok {(time.monotonic() - start) * 1000:.2f}")
    return 0


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="python -m mpa_lab.net.probes")
    sub = parser.add_subparsers(dest="command", required=True)
    serve = sub.add_parser("serve")
    serve.add_argument("port", type=int)
    serve.add_argument("--timeout", type=float, default=5.0)
    connect = sub.add_parser("connect")
    connect.add_argument("address")
    connect.add_argument("port", type=int)
    connect.add_argument("--timeout", type=float, default=5.0)
    args = parser.parse_args(argv)
    if args.command == "serve":
        return _serve(args.port, args.timeout)
    return _connect(args.address, args.port, args.timeout)


if __name__ == "__main__":
    sys.exit(main())

"""How often Mininet's probe of a remote controller stops the lab.

Mininet's ``RemoteController`` asks ``echo A | telnet -e A IP PORT`` on its
node's pty when it is made.  A controller answers a connection with an
OpenFlow HELLO whose xid is four random bytes; when telnet prints them
before it quits, Mininet's strict UTF-8 reader may raise
``UnicodeDecodeError`` out of ``Mininet.addController``: what stopped
``mpa-lab run`` now and then.  This makes ``count`` controller nodes of each
class against a local server answering so, and counts those that raised.
Needs Mininet's ``mnexec`` and ``telnet``, not Open vSwitch.  Usage:

    python benchmarks/controller_probe.py [--count 200] [--out results/bench/FILE.json]
"""

from __future__ import annotations

import argparse
import os
import socket
import threading

from common import report, stamped
from mininet.node import RemoteController

from mpa_lab.net.host_output import LabRemoteController

HELLO = b"\x04\x00\x00\x08"    # OpenFlow 1.3, HELLO, 8 bytes long; then the xid


def answer_as_a_controller(listener: socket.socket) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return      # closed: the benchmark is over
        with conn:
            try:
                conn.sendall(HELLO + os.urandom(4))
            except OSError:
                pass


def raised(cls, count: int, port: int) -> int:
    failures = 0
    for index in range(count):
        try:
            cls(f"probe{index}", ip="127.0.0.1", port=port).terminate()
        except UnicodeDecodeError:
            failures += 1
    return failures


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--count", type=int, default=200)
    parser.add_argument("--out")
    args = parser.parse_args()
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        threading.Thread(target=answer_as_a_controller, args=(listener,), daemon=True).start()
        port = listener.getsockname()[1]
        counts = {cls.__name__: raised(cls, args.count, port)
                  for cls in (RemoteController, LabRemoteController)}
    result = stamped({"benchmark": "controller_probe", "count": args.count,
                      "raised_unicode_decode_error": counts})
    text = "\n".join(f"{name}: {failed} of {args.count} raised UnicodeDecodeError"
                     for name, failed in counts.items())
    return report(args.out, result, text)


if __name__ == "__main__":
    raise SystemExit(main())

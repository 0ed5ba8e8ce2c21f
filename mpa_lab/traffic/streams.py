"""A measured UDP or TCP stream between two lab hosts (``mpa-traffic`` at both ends).

The receiver logs every arrival; when the stream ends, the sender and the
receiver report what they did and the log is analysed against what the
sender attempted, one window per event of interest (a handover).
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time

from mpa_lab.traffic.datagrams import read_log
from mpa_lab.traffic.analysis import analyse
from mpa_protocol.program_output import json_output

TRAFFIC = os.path.join(os.path.dirname(sys.executable), "mpa-traffic")
DRAIN_S = 1.0          # after the sender stops, for what is still on its way


class UdpStream:
    """``sender`` sends to ``address``:``port`` at ``rate`` packets/s; the
    ``receiver`` host listens bound to ``address`` and logs to ``log``."""

    protocol = "udp"
    send_verb, receive_verb = "send", "receive"      # mpa-traffic's subcommands

    def __init__(self, lab, sender: str, receiver: str, address: str, port: int, rate: int,
                 log: str, size: int | None = None, duration_s: int = 3600):
        self.lab, self.address, self.port, self.rate = lab, address, port, rate
        self.sender_host, self.receiver_host = sender, receiver
        self.log, self.size, self.duration_s = str(log), size, duration_s
        self.sent = self.received = None

    def receiver_command(self) -> list[str]:
        return [TRAFFIC, self.receive_verb, "--port", str(self.port), "--bind", self.address,
                "--log", self.log]

    def sender_command(self) -> list[str]:
        size = ["--size", str(self.size)] if self.size else []
        return [TRAFFIC, self.send_verb, "--to", f"{self.address}:{self.port}", "--rate",
                str(self.rate), "--duration", str(self.duration_s), *size]

    def __enter__(self):
        self.sender = None
        self.receiver = self.lab.host(self.receiver_host).popen(self.receiver_command())
        try:
            line = self.receiver.stderr.readline()
            if not line.startswith(b"mpa-traffic: receiving"):
                raise RuntimeError(f"the receiver did not start: {line!r}")
            self.sender = self.lab.host(self.sender_host).popen(self.sender_command())
            line = self.sender.stderr.readline()
            if not line.startswith(b"mpa-traffic: sending"):
                raise RuntimeError(f"the sender did not start: {line!r}")
        except BaseException:
            self._kill()   # __exit__ will not run: leave nothing behind
            raise
        return self

    def __exit__(self, *exc):
        try:
            self.sent = _stop(self.sender, f"mpa-traffic send in {self.sender_host}")
            time.sleep(DRAIN_S)
            self.received = _stop(self.receiver, f"mpa-traffic receive in {self.receiver_host}")
        finally:
            self._kill()
        # Both ends' own reports beside the arrivals (the TCP sender's holds
        # its counter samples): what the analysis read, kept with the run.
        with open(self.reports_path, "w", encoding="utf-8") as f:
            json.dump({"sender": self.sent, "receiver": self.received}, f)

    @property
    def reports_path(self) -> str:
        """Beside the log: ``arrivals-NAME.log`` -> ``ends-NAME.json``."""
        folder, name = os.path.split(self.log)
        return os.path.join(folder, "ends-" + os.path.splitext(name)[0].removeprefix(
            "arrivals-") + ".json")

    def _kill(self) -> None:
        for process in (self.sender, self.receiver):
            if process is not None and process.poll() is None:
                process.kill()
                process.wait()

    def arrivals(self) -> list[tuple[int, int, int]]:
        """(seq, send ns, receive ns) of every arrival, in the order received."""
        return read_log(self.log)[1]

    def analysis(self, windows, arrivals=None) -> dict:
        """The receiver's log (or ``arrivals`` read from it) against what the
        sender attempted."""
        return analyse(self.arrivals() if arrivals is None else arrivals,
                       sent=self.sent["attempted"], windows=windows,
                       period_ns=round(1e9 / self.rate))


class TcpStream(UdpStream):
    """The same records on one TCP connection (``mpa-traffic tcp-send`` and
    ``tcp-receive``, mpa_lab/traffic/tcp_flow.py): the receiver listens
    first, the sender connects; each record's arrival is logged as a
    datagram's is, and the sender reports its retransmission counters."""

    protocol = "tcp"
    send_verb, receive_verb = "tcp-send", "tcp-receive"

    def samples(self) -> list[list[int]]:
        """The sender's counter samples: (wall ns, *tcp_flow.COUNTERS) each."""
        return (self.sent or {}).get("samples") or []


def _stop(process, source: str) -> dict:
    """Its report (OutputError naming ``source`` if it printed none)."""
    process.send_signal(signal.SIGTERM)  # it reports what it saw, then ends
    out, _ = process.communicate(timeout=15)
    return json_output(out, source)

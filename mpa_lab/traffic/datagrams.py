"""UDP test traffic for proactive handover (RFC 6252 section 6.3, steps 3-6).

The CN runs ``send``, the MN runs ``receive``; both run inside Mininet hosts,
which share one wall clock, so the one-way delay of every datagram is exact.

    mpa-traffic send --to ADDR:PORT --rate PPS --duration S [--size BYTES]
                     [--flow-id N] [--bind ADDR] [--max-burst N]
    mpa-traffic receive --port PORT [--bind ADDR] [--duration S] [--flow-id N]
                        [--log FILE] [--windows FILE] [--sent N] [--rate PPS]
    mpa-traffic analyse --log FILE [--windows FILE] [--sent N] [--rate PPS]
    mpa-traffic tcp-send --to ADDR:PORT --rate RECORDS_PER_S --duration S [--size BYTES]
    mpa-traffic tcp-receive --port PORT [--bind ADDR] [--log FILE]

(``tcp-send`` and ``tcp-receive``: the same records on one TCP connection,
mpa_lab/traffic/tcp_flow.py.)

Each prints one JSON object on stdout when it ends (at the end of its
duration, or on SIGTERM/SIGINT) and progress lines on stderr; the first
stderr line says it is ready.

Every datagram starts with a `Header`: magic, version, total length, flow id,
sequence number (from 0) and the wall-clock send time in ns; zeros pad it to
``--size``.

Pacing: slot k is due at start + k/rate on the monotonic clock (absolute
deadlines, so sleeping late never drifts the rate).  When the sender wakes up
with n slots due it sends min(n, max_burst) datagrams back to back and skips
the older slots, counting them in ``skipped``.  A stall of any length thus
costs at most one burst of ``max_burst`` datagrams, and the sender never gets
ahead of the schedule.  Sequence numbers count datagrams, not slots, so a
skipped slot is not a loss at the receiver.  A datagram whose ``sendto``
fails (ENETUNREACH while the MN moves) keeps its sequence number: the
receiver counts it as lost, and the sender counts the error by errno name.
Pass the sender's ``attempted`` to the receiver's ``--sent``.

`analyse` places each lost datagram in time by interpolating its send time
linearly between the nearest received sequence numbers below and above it;
losses before the first or after the last received datagram are placed at
one sender period per sequence number from it (the period is 1/--rate, or
else the median send-time step between consecutive received sequence
numbers).  A datagram, lost or received, belongs to every window
[start_ns, end_ns) its send time falls in.
"""

from __future__ import annotations

import argparse
import errno
import json
import platform
import signal
import socket
import struct
import sys
import time
from array import array
from dataclasses import dataclass

from mpa_lab.traffic.analysis import analyse, parse_window

MAGIC = b"MPAT"
VERSION = 1
HEADER_STRUCT = struct.Struct("!4sBBHIQQ")  # magic, version, reserved, length, flow, seq, send ns
HEADER_SIZE = HEADER_STRUCT.size
MAX_SIZE = 65507  # the largest UDP payload over IPv4
MAX_FLOW_ID = 2**32 - 1
DEFAULT_MAX_BURST = 8
DEFAULT_MAX_ARRIVALS = 10_000_000  # 240 MB of arrays; beyond it arrivals are counted only
POLL_NS = 50_000_000  # how long a sleep or receive may delay noticing a stop

LOG_MAGIC = b"MPATLOG1"
LOG_HEADER = struct.Struct("<8sI4x")  # magic, flow id
LOG_RECORD = struct.Struct("<QQQ")  # seq, send ns, receive ns

# Python does not name SO_TIMESTAMPNS; 35 is its value everywhere but on
# SPARC and PA-RISC.  Kernel receive times leave out the receiver's own
# scheduling delay, which would otherwise look like a network interruption.
SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", None)
if SO_TIMESTAMPNS is None and sys.platform == "linux" \
        and not platform.machine().startswith(("sparc", "parisc")):
    SO_TIMESTAMPNS = 35
TIMESPEC = struct.Struct("@ll")


class HeaderError(ValueError):
    """A datagram that is not ours; ``reason`` names the check it failed."""

    def __init__(self, reason: str, detail: str):
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


@dataclass(frozen=True)
class Header:
    flow_id: int
    seq: int
    send_ns: int
    length: int = HEADER_SIZE

    def pack(self) -> bytes:
        """The whole datagram: this header, then zeros up to ``length``."""
        if not HEADER_SIZE <= self.length <= MAX_SIZE:
            raise ValueError(f"length {self.length} is outside {HEADER_SIZE}..{MAX_SIZE}")
        head = HEADER_STRUCT.pack(MAGIC, VERSION, 0, self.length, self.flow_id, self.seq,
                                  self.send_ns)
        return head + bytes(self.length - HEADER_SIZE)

    @classmethod
    def unpack(cls, datagram) -> Header:
        if len(datagram) < HEADER_SIZE:
            raise HeaderError("short", f"{len(datagram)} bytes")
        magic, version, _, length, flow_id, seq, send_ns = HEADER_STRUCT.unpack_from(datagram)
        if magic != MAGIC:
            raise HeaderError("magic", repr(bytes(magic)))
        if version != VERSION:
            raise HeaderError("version", str(version))
        if length != len(datagram):
            raise HeaderError("length", f"says {length}, has {len(datagram)}")
        return cls(flow_id, seq, send_ns, length)


class Sender:
    """Paced datagrams to ``dest``; `run` returns the JSON summary."""

    def __init__(self, sock, dest, *, rate_pps: float, duration_s: float,
                 size: int = HEADER_SIZE, flow_id: int = 0,
                 max_burst: int = DEFAULT_MAX_BURST,
                 monotonic_ns=time.monotonic_ns, wall_ns=time.time_ns, sleep=time.sleep):
        if not rate_pps > 0 or not duration_s > 0:
            raise ValueError("rate and duration must be positive")
        if not HEADER_SIZE <= size <= MAX_SIZE:
            raise ValueError(f"size must be within {HEADER_SIZE}..{MAX_SIZE}")
        if not 0 <= flow_id <= MAX_FLOW_ID or max_burst < 1:
            raise ValueError("bad flow id or max burst")
        self.sock, self.dest = sock, dest
        self.rate_pps, self.duration_s = rate_pps, duration_s
        self.size, self.flow_id, self.max_burst = size, flow_id, max_burst
        self._monotonic_ns, self._wall_ns, self._sleep = monotonic_ns, wall_ns, sleep
        self._buffer = bytearray(size)
        self._stopping = False
        self.attempted = self.sent = self.skipped = 0
        self.errors: dict[str, int] = {}
        self.first_send_ns = self.last_send_ns = None

    @classmethod
    def open(cls, to: tuple[str, int], bind: str | None = None, **kwargs) -> Sender:
        family, _, _, _, dest = socket.getaddrinfo(*to, type=socket.SOCK_DGRAM)[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        if bind:
            sock.bind((bind, 0))
        return cls(sock, dest, **kwargs)

    def stop(self) -> None:
        """Safe from a signal handler or another thread: only sets a flag."""
        self._stopping = True

    def _offset(self, slot: int) -> int:
        return round(slot * 1e9 / self.rate_pps)

    def _slots_before(self, offset_ns: int) -> int:
        """How many slots are due strictly before ``offset_ns`` after the start."""
        k = int(offset_ns * self.rate_pps / 1e9)
        while self._offset(k) < offset_ns:
            k += 1
        while k > 0 and self._offset(k - 1) >= offset_ns:
            k -= 1
        return k

    def run(self) -> dict:
        start = self._monotonic_ns()
        duration_ns = round(self.duration_s * 1e9)
        slots = self._slots_before(duration_ns)
        slot = 0
        while not self._stopping:
            now = self._monotonic_ns() - start
            wake = self._offset(slot) if slot < slots else duration_ns
            if now < wake:
                self._sleep(min(wake - now, POLL_NS) / 1e9)
                continue
            if slot >= slots:
                break
            due = min(self._slots_before(now + 1), slots)  # slots due by now
            if due - slot > self.max_burst:
                self.skipped += due - slot - self.max_burst
                slot = due - self.max_burst
            for _ in range(slot, due):
                self._send_one()
            slot = due
        elapsed_ns = self._monotonic_ns() - start
        return self.summary(elapsed_ns)

    def _send_one(self) -> None:
        send_ns = self._wall_ns()
        HEADER_STRUCT.pack_into(self._buffer, 0, MAGIC, VERSION, 0, self.size, self.flow_id,
                          self.attempted, send_ns)
        self.attempted += 1
        if self.first_send_ns is None:
            self.first_send_ns = send_ns
        self.last_send_ns = send_ns
        try:
            self.sock.sendto(self._buffer, self.dest)
        except OSError as exc:
            name = errno.errorcode.get(exc.errno, "OSError") if exc.errno else "OSError"
            self.errors[name] = self.errors.get(name, 0) + 1
        else:
            self.sent += 1

    def summary(self, elapsed_ns: int) -> dict:
        elapsed_s = elapsed_ns / 1e9
        return {
            "flow_id": self.flow_id, "to": format_address(self.dest),
            "rate_pps": self.rate_pps, "size": self.size, "max_burst": self.max_burst,
            "attempted": self.attempted, "sent": self.sent, "skipped": self.skipped,
            "errors": dict(sorted(self.errors.items())),
            "elapsed_s": round(elapsed_s, 9),
            "achieved_pps": round(self.sent / elapsed_s, 3) if elapsed_s > 0 else None,
            "stopped_early": self._stopping,
            "first_send_ns": self.first_send_ns, "last_send_ns": self.last_send_ns,
        }


class Receiver:
    """Validates and records every arrival of one flow; `report` analyses them."""

    def __init__(self, sock, *, flow_id: int = 0, max_arrivals: int = DEFAULT_MAX_ARRIVALS,
                 log=None, wall_ns=time.time_ns, monotonic_ns=time.monotonic_ns):
        self.sock, self.flow_id, self.max_arrivals = sock, flow_id, max_arrivals
        self._log = log
        self._wall_ns, self._monotonic_ns = wall_ns, monotonic_ns
        self.seqs, self.send_ns, self.recv_ns = array("Q"), array("Q"), array("Q")
        self.junk: dict[str, int] = {}
        self.not_recorded = 0
        self._stopping = False
        self.kernel_timestamps = False
        if sock is not None and SO_TIMESTAMPNS is not None:
            try:
                sock.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                self.kernel_timestamps = True
            except OSError:
                pass
        if log is not None:
            log.write(LOG_HEADER.pack(LOG_MAGIC, flow_id))

    @classmethod
    def open(cls, port: int, bind: str = "0.0.0.0", **kwargs) -> Receiver:
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        sock = socket.socket(family, socket.SOCK_DGRAM)
        # Room for a receiver descheduled for a while; the kernel caps it at rmem_max.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        sock.bind((bind, port))
        return cls(sock, **kwargs)

    @property
    def received(self) -> int:
        return len(self.seqs) + self.not_recorded

    def arrivals(self) -> list[tuple[int, int, int]]:
        return list(zip(self.seqs, self.send_ns, self.recv_ns))

    def stop(self) -> None:
        """Safe from a signal handler or another thread: only sets a flag."""
        self._stopping = True

    def handle(self, datagram, recv_ns: int) -> bool:
        """Record one datagram received at ``recv_ns``; False if it was junk."""
        try:
            header = Header.unpack(datagram)
            if header.flow_id != self.flow_id:
                raise HeaderError("flow", str(header.flow_id))
        except HeaderError as exc:
            self.junk[exc.reason] = self.junk.get(exc.reason, 0) + 1
            return False
        if len(self.seqs) >= self.max_arrivals:
            self.not_recorded += 1
            return True
        self.seqs.append(header.seq)
        self.send_ns.append(header.send_ns)
        self.recv_ns.append(recv_ns)
        if self._log is not None:
            self._log.write(LOG_RECORD.pack(header.seq, header.send_ns, recv_ns))
        return True

    def run(self, duration_s: float | None = None) -> None:
        """Receive until `stop` or ``duration_s``, then take what is already
        queued (for at most POLL_NS, in case the sender is still going)."""
        view = memoryview(bytearray(65536))
        deadline = None if duration_s is None else self._monotonic_ns() + round(duration_s * 1e9)
        timeout_ns = None
        while not self._stopping:
            wait_ns = POLL_NS
            if deadline is not None:
                wait_ns = min(wait_ns, deadline - self._monotonic_ns())
                if wait_ns <= 0:
                    break
            if wait_ns != timeout_ns:  # settimeout costs a system call
                self.sock.settimeout(wait_ns / 1e9)
                timeout_ns = wait_ns
            self._receive_one(view)
        self.sock.setblocking(False)
        drain_until = self._monotonic_ns() + POLL_NS
        while self._receive_one(view) and self._monotonic_ns() < drain_until:
            pass

    def _receive_one(self, view) -> bool:
        try:
            if not self.kernel_timestamps:
                nbytes = self.sock.recv_into(view)
                recv_ns = self._wall_ns()
            else:
                nbytes, ancillary, _, _ = self.sock.recvmsg_into(
                    [view], socket.CMSG_SPACE(TIMESPEC.size))
                recv_ns = kernel_time(ancillary) or self._wall_ns()
        except (TimeoutError, BlockingIOError):
            return False
        self.handle(view[:nbytes], recv_ns)
        return True

    def report(self, sent: int | None = None, windows=None, period_ns: int | None = None) -> dict:
        result = analyse(self.arrivals(), sent=sent, windows=windows, period_ns=period_ns)
        result.update({
            "flow_id": self.flow_id,
            "junk": sum(self.junk.values()), "junk_by_reason": dict(sorted(self.junk.items())),
            "not_recorded": self.not_recorded,
            "receive_timestamps": "kernel" if self.kernel_timestamps else "user",
        })
        return result


def kernel_time(ancillary) -> int | None:
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == SO_TIMESTAMPNS \
                and len(data) >= TIMESPEC.size:
            seconds, nanoseconds = TIMESPEC.unpack_from(data)
            return seconds * 1_000_000_000 + nanoseconds
    return None


# ---- analysis: mpa_lab/traffic/analysis.py -------------------------------

# ---- files ------------------------------------------------------------------

class LogError(ValueError):
    pass


def read_log(path: str) -> tuple[int, list[tuple[int, int, int]]]:
    """(flow id, arrivals) from a receiver's log; a torn last record is dropped."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < LOG_HEADER.size or data[:len(LOG_MAGIC)] != LOG_MAGIC:
        raise LogError(f"{path}: not an mpa-traffic log")
    _, flow_id = LOG_HEADER.unpack_from(data)
    body = memoryview(data)[LOG_HEADER.size:]
    whole = len(body) - len(body) % LOG_RECORD.size
    return flow_id, list(LOG_RECORD.iter_unpack(body[:whole]))


def load_windows(path: str) -> list[tuple[str, int, int]]:
    """A JSON list of {label, start_ns, end_ns}; errors name the offending key."""
    with open(path) as f:
        data = json.load(f)
    if not isinstance(data, list):
        raise ValueError(f"{path}: expected a list of windows")
    windows = []
    for i, item in enumerate(data):
        where = f"{path}: [{i}]"
        if not isinstance(item, dict):
            raise ValueError(f"{where}: expected an object")
        wrong = sorted(set(item) ^ {"label", "start_ns", "end_ns"})
        if wrong:
            key = wrong[0]
            raise ValueError(f"{where}.{key}: " + ("unknown key" if key in item else "missing"))
        try:
            windows.append(parse_window(item))
        except ValueError as exc:
            raise ValueError(f"{where}: {exc}") from None
    return windows


# ---- command line -----------------------------------------------------------

def format_address(address) -> str:
    host, port = address[:2]
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _address_port(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    host = host[1:-1] if host.startswith("[") and host.endswith("]") else host
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise argparse.ArgumentTypeError(f"expected ADDR:PORT, got {text!r}")
    return host, int(port)


def _bounded(kind, low, high=None, low_open=False):
    def parse(text):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value != value or (value <= low if low_open else value < low) \
                or (high is not None and value > high):
            bound = f"> {low}" if low_open else f">= {low}"
            raise argparse.ArgumentTypeError(
                f"{text} is out of range ({bound}" + (f", <= {high})" if high else ")"))
        return value
    return parse


_positive = _bounded(float, 0, 1e9, low_open=True)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="mpa-traffic", description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    send = sub.add_parser("send", help="send paced datagrams")
    send.add_argument("--to", type=_address_port, required=True, metavar="ADDR:PORT")
    send.add_argument("--rate", type=_positive, required=True, metavar="PPS")
    send.add_argument("--duration", type=_positive, required=True, metavar="S")
    send.add_argument("--size", type=_bounded(int, HEADER_SIZE, MAX_SIZE), default=HEADER_SIZE)
    send.add_argument("--max-burst", type=_bounded(int, 1, 1_000_000), default=DEFAULT_MAX_BURST)
    receive = sub.add_parser("receive", help="receive and report")
    receive.add_argument("--port", type=_bounded(int, 0, 65535), required=True)
    receive.add_argument("--bind", default="0.0.0.0", metavar="ADDR")
    receive.add_argument("--duration", type=_positive, metavar="S",
                         help="default: until SIGTERM or SIGINT")
    receive.add_argument("--log", metavar="FILE", help="binary log of every arrival")
    receive.add_argument("--max-arrivals", type=_bounded(int, 1), default=DEFAULT_MAX_ARRIVALS)
    analyse_cmd = sub.add_parser("analyse", help="report on a receiver's log")
    analyse_cmd.add_argument("--log", metavar="FILE", required=True)
    for command in (send, receive):
        command.add_argument("--flow-id", type=_bounded(int, 0, MAX_FLOW_ID), default=0)
    send.add_argument("--bind", metavar="ADDR", help="source address")
    for command in (receive, analyse_cmd):
        command.add_argument("--windows", metavar="FILE",
                             help="JSON list of {label, start_ns, end_ns}")
        command.add_argument("--sent", type=_bounded(int, 0), metavar="N",
                             help="the sender's 'attempted' (default: highest seq + 1)")
        command.add_argument("--rate", type=_positive, metavar="PPS",
                             help="the sender's rate, to place losses at either end")
    from mpa_lab.traffic import tcp_flow   # it builds on this module's header and sender
    tcp_flow.add_commands(sub, _address_port, _bounded, _positive)
    return parser


def stop_on_signals(stop) -> None:
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stop())


def emit(report: dict) -> None:
    sys.stdout.write(json.dumps(report, sort_keys=True) + "\n")
    sys.stdout.flush()


def _period_ns(rate: float | None) -> int | None:
    return None if rate is None else round(1e9 / rate)


def main(argv=None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    windows = None
    if getattr(args, "windows", None):
        try:
            windows = load_windows(args.windows)
        except (OSError, ValueError) as exc:
            parser.error(f"--windows: {exc}")
    try:
        if args.command == "send":
            return _send(args)
        if args.command == "receive":
            return _receive(args, windows)
        if args.command.startswith("tcp-"):
            from mpa_lab.traffic import tcp_flow
            return (tcp_flow.send_command if args.command == "tcp-send"
                    else tcp_flow.receive_command)(args)
        flow_id, arrivals = read_log(args.log)
    except OSError as exc:  # an unknown host, an address in use, an unreadable log
        print(f"mpa-traffic: {exc}", file=sys.stderr)
        return 1
    except LogError as exc:
        parser.error(str(exc))
    report = analyse(arrivals, sent=args.sent, windows=windows, period_ns=_period_ns(args.rate))
    emit({"flow_id": flow_id, **report})
    return 0


def _send(args) -> int:
    sender = Sender.open(args.to, args.bind, rate_pps=args.rate, duration_s=args.duration,
                         size=args.size, flow_id=args.flow_id, max_burst=args.max_burst)
    stop_on_signals(sender.stop)
    print(f"mpa-traffic: sending flow {args.flow_id} to {format_address(sender.dest)} "
          f"at {args.rate:g} pps for {args.duration:g} s", file=sys.stderr, flush=True)
    try:
        summary = sender.run()
    finally:
        sender.sock.close()
    emit(summary)
    return 0


def _receive(args, windows) -> int:
    log = open(args.log, "wb") if args.log else None
    try:
        receiver = Receiver.open(args.port, args.bind, flow_id=args.flow_id,
                                 max_arrivals=args.max_arrivals, log=log)
        stop_on_signals(receiver.stop)
        print(f"mpa-traffic: receiving flow {args.flow_id} on "
              f"{format_address(receiver.sock.getsockname())}", file=sys.stderr, flush=True)
        try:
            receiver.run(args.duration)
        finally:
            receiver.sock.close()
    finally:
        if log is not None:
            log.close()
    emit(receiver.report(sent=args.sent, windows=windows, period_ns=_period_ns(args.rate)))
    return 0


if __name__ == "__main__":
    sys.exit(main())

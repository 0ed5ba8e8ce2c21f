"""A measured TCP stream: ``mpa-traffic tcp-send`` and ``tcp-receive``.

The sender writes paced records (the UDP datagrams' `Header`, padded to
``--size``) on one TCP connection; the receiver cuts the byte stream back
into records and logs each one's arrival in the UDP receiver's log format,
so one analysis (mpa_lab/traffic/analysis.py, tcp_analysis.py) reads both.

Why our own tools rather than iperf3: the longest stall across a handover
is a gap of tens of milliseconds, and iperf3 reports per interval (100 ms at
the finest) with no arrival times; its server cannot be given a packet
socket's timestamps either.  Here every ``recvmsg`` carries the kernel's
receive time of the last segment it returns (SO_TIMESTAMPNS works on TCP
sockets), so the receiver's own scheduling delay does not pass for a
network stall, and a record's send time is in it, for the one-way delay.
A paced stream keeps throughput comparable before, around and after a
handover instead of filling the lab's two shared cores.

The sender samples its socket's ``TCP_INFO`` (``tcpi_total_retrans``, and
``tcpi_total_rto``: retransmission timeouts, Linux 6.7 and later) and its
namespace's ``TcpExt: TCPTimeouts``, ``TCPLossProbes`` and ``Tcp: RetransSegs``
(/proc/net/netstat, /proc/net/snmp) every ``--sample-ms``, keeping each
change with its wall-clock time: an RTO is what a handover must not cause,
so it is counted on its own, from both sources.
"""

from __future__ import annotations

import errno
import socket
import struct
import sys
import threading
import time

from mpa_lab.traffic.datagrams import (DEFAULT_MAX_BURST, HEADER_STRUCT, HEADER_SIZE, LOG_MAGIC,
                                       MAGIC, MAX_SIZE, POLL_NS, VERSION,
                                       LOG_HEADER, LOG_RECORD, Header, HeaderError, Sender,
                                       format_address, emit, kernel_time, SO_TIMESTAMPNS,
                                       stop_on_signals, TIMESPEC)

# Room for the PHT's encapsulation (MPLS, or VXLAN's 50 bytes across
# domains) inside the lab's 1,500-byte links: full-size segments would not fit.
DEFAULT_MSS = 1400
MAX_RECORD = MAX_SIZE        # the header's length field holds what a datagram's does
DEFAULT_RECORD = 1000        # bytes a record, when no --size is given
DEFAULT_SAMPLE_MS = 10
MAX_SAMPLES = 1_000_000      # beyond it changes are counted in samples_dropped only
_TCP_INFO_LEN = 248
_TOTAL_RETRANS = struct.Struct("@I")       # at offset 100 of struct tcp_info
_TOTAL_RTO = struct.Struct("@H")           # at offset 240 (Linux 6.7+)
COUNTERS = ("total_retrans", "total_rto", "ns_timeouts", "ns_retrans_segs", "ns_loss_probes")


def tcp_info_counters(info: bytes) -> tuple[int, int | None]:
    """(tcpi_total_retrans, tcpi_total_rto or None if the kernel has none)
    from a ``TCP_INFO`` answer."""
    retrans = _TOTAL_RETRANS.unpack_from(info, 100)[0] if len(info) >= 104 else 0
    rto = _TOTAL_RTO.unpack_from(info, 240)[0] if len(info) >= 242 else None
    return retrans, rto


def namespace_counters(netstat: str, snmp: str) -> tuple[int | None, int | None, int | None]:
    """(TcpExt TCPTimeouts, Tcp RetransSegs, TcpExt TCPLossProbes: tail loss
    probes, retransmissions that are not a timeout) from /proc/net/netstat and
    /proc/net/snmp's text: each a header line and a value line per group."""
    def value(text: str, group: str, name: str) -> int | None:
        lines = [line.split() for line in text.splitlines() if line.startswith(group + ":")]
        for names, values in zip(lines[::2], lines[1::2]):
            if name in names:
                return int(values[names.index(name)])
        return None
    return (value(netstat, "TcpExt", "TCPTimeouts"), value(snmp, "Tcp", "RetransSegs"),
            value(netstat, "TcpExt", "TCPLossProbes"))


def _read(path: str) -> str:
    try:
        with open(path, encoding="ascii") as f:
            return f.read()
    except OSError:
        return ""


class CounterSampler(threading.Thread):
    """Samples a connected socket's retransmission counters and its
    namespace's every ``period_s``; keeps (wall ns, *COUNTERS) at each change."""

    def __init__(self, sock, period_s: float, max_samples: int = MAX_SAMPLES):
        super().__init__(daemon=True, name="tcp-counters")
        self.sock, self.period_s, self.max_samples = sock, period_s, max_samples
        self.samples: list[list[int | None]] = []
        self.dropped = 0
        self._halt = threading.Event()

    def read(self) -> tuple:
        try:
            info = self.sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_LEN)
        except OSError:
            info = b""
        return (*tcp_info_counters(info),
                *namespace_counters(_read("/proc/net/netstat"), _read("/proc/net/snmp")))

    def sample(self) -> None:
        values = self.read()
        if self.samples and tuple(self.samples[-1][1:]) == values:
            return
        if len(self.samples) >= self.max_samples:
            self.dropped += 1
            return
        self.samples.append([time.time_ns(), *values])

    def run(self) -> None:
        while not self._halt.wait(self.period_s):
            self.sample()

    def finish(self) -> None:
        self._halt.set()
        self.join()
        self.sample()   # the last word, after the sender stopped


class TcpSender(Sender):
    """`Sender`'s pacing, its records written on one TCP connection.  A
    record is never split by a skipped slot: it is written whole, waiting
    while the send buffer is full (the slots missed meanwhile are skipped
    and counted as the UDP sender's are), but never past a stop: a stalled
    connection would otherwise hold the sender, and its report, until it
    was killed."""

    @classmethod
    def connect(cls, to: tuple[str, int], bind: str | None = None, mss: int = DEFAULT_MSS,
                timeout_s: float = 10.0, **kwargs) -> "TcpSender":
        family, _, _, _, dest = socket.getaddrinfo(*to, type=socket.SOCK_STREAM)[0]
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)   # a record, a segment
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_MAXSEG, mss)
        if bind:
            sock.bind((bind, 0))
        sock.settimeout(timeout_s)
        sock.connect(dest)
        return cls(sock, dest, **kwargs)

    def __init__(self, sock, dest, **kwargs):
        super().__init__(sock, dest, **kwargs)
        sock.settimeout(POLL_NS / 1e9)    # a full send buffer is waited on in steps

    def _send_one(self) -> None:
        if self.errors:          # a broken connection ends the stream
            self.stop()
            return
        send_ns = self._wall_ns()
        HEADER_STRUCT.pack_into(self._buffer, 0, MAGIC, VERSION, 0, self.size, self.flow_id,
                          self.attempted, send_ns)
        if self.first_send_ns is None:
            self.first_send_ns = send_ns
        try:
            if not self._write(memoryview(self._buffer)):
                return   # stopped with the record half written: the receiver drops its part
        except OSError as exc:
            name = errno.errorcode.get(exc.errno, "OSError") if exc.errno else "OSError"
            self.errors[name] = self.errors.get(name, 0) + 1
            return
        # Only a record written whole counts: TCP delivers it, or nothing after it.
        self.attempted += 1
        self.sent += 1
        self.last_send_ns = send_ns

    def _write(self, data: memoryview) -> bool:
        """``data`` written whole (True), or the sender stopped first."""
        while data:
            try:
                data = data[self.sock.send(data):]
            except TimeoutError:
                if self._stopping:
                    return False
        return True


class RecordStream:
    """Cuts a TCP byte stream into records; logs (seq, send ns, receive ns)
    of each, the receive time that of the ``recvmsg`` that completed it."""

    def __init__(self, flow_id: int = 0, log=None):
        self.flow_id, self._log = flow_id, log
        self.pending = bytearray()
        self.records = self.bytes = 0
        if log is not None:
            log.write(LOG_HEADER.pack(LOG_MAGIC, flow_id))

    def feed(self, data, recv_ns: int) -> None:
        """Bytes received at ``recv_ns``; raises HeaderError if the stream is
        not ours (or lost its framing)."""
        self.bytes += len(data)
        self.pending += data
        while len(self.pending) >= HEADER_SIZE:
            # The header is checked as soon as it is in: a length read from
            # junk would otherwise have the receiver wait for it for ever.
            magic, version, _, length = HEADER_STRUCT.unpack_from(self.pending)[:4]
            if magic != MAGIC or version != VERSION or length < HEADER_SIZE:
                raise HeaderError("magic", repr(bytes(self.pending[:8])))
            if len(self.pending) < length:
                return
            header = Header.unpack(bytes(self.pending[:length]))
            if header.flow_id != self.flow_id:
                raise HeaderError("flow", str(header.flow_id))
            del self.pending[:length]
            self.records += 1
            if self._log is not None:
                self._log.write(LOG_RECORD.pack(header.seq, header.send_ns, recv_ns))


class TcpReceiver:
    """Accepts one connection on ``port`` and records its records."""

    def __init__(self, port: int, bind: str = "0.0.0.0", flow_id: int = 0, log=None):
        family = socket.AF_INET6 if ":" in bind else socket.AF_INET
        self.listener = socket.socket(family, socket.SOCK_STREAM)
        self.listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.listener.bind((bind, port))
        self.listener.listen(1)
        self.stream = RecordStream(flow_id, log)
        self.kernel_timestamps = False
        self.error: str | None = None
        self.peer = None
        self._stopping = False

    def stop(self) -> None:
        self._stopping = True

    def run(self, poll_s: float = 0.05) -> None:
        self.listener.settimeout(poll_s)
        conn = None
        while conn is None and not self._stopping:
            try:
                conn, self.peer = self.listener.accept()
            except TimeoutError:
                continue
        if conn is None:
            return
        with conn:
            if SO_TIMESTAMPNS is not None:
                try:
                    conn.setsockopt(socket.SOL_SOCKET, SO_TIMESTAMPNS, 1)
                    self.kernel_timestamps = True
                except OSError:
                    pass
            conn.settimeout(poll_s)
            self._receive(conn)

    def _receive(self, conn) -> None:
        view = memoryview(bytearray(MAX_RECORD * 4))
        while not self._stopping:
            try:
                nbytes, ancillary, _, _ = conn.recvmsg_into(
                    [view], socket.CMSG_SPACE(TIMESPEC.size))
            except TimeoutError:
                continue
            except OSError as exc:
                self.error = f"{type(exc).__name__}: {exc}"
                return
            if nbytes == 0:
                return      # the sender closed: everything is in
            recv_ns = kernel_time(ancillary) or time.time_ns()
            try:
                self.stream.feed(view[:nbytes], recv_ns)
            except HeaderError as exc:
                self.error = f"not a record stream: {exc}"
                return

    def report(self) -> dict:
        return {"records": self.stream.records, "bytes": self.stream.bytes,
                "peer": None if self.peer is None else format_address(self.peer),
                "error": self.error,
                "receive_timestamps": "kernel" if self.kernel_timestamps else "user"}


# ---- command line (mpa-traffic tcp-send, tcp-receive) ------------------------

def add_commands(sub, address_port, bounded, positive) -> None:
    """The two commands, on mpa-traffic's sub-parsers."""
    send = sub.add_parser("tcp-send", help="send paced records on one TCP connection")
    send.add_argument("--to", type=address_port, required=True, metavar="ADDR:PORT")
    send.add_argument("--rate", type=positive, required=True, metavar="RECORDS_PER_S")
    send.add_argument("--duration", type=positive, required=True, metavar="S")
    send.add_argument("--size", type=bounded(int, HEADER_SIZE, MAX_RECORD),
                      default=DEFAULT_RECORD)
    send.add_argument("--mss", type=bounded(int, 536, 65495), default=DEFAULT_MSS)
    send.add_argument("--max-burst", type=bounded(int, 1, 1_000_000), default=DEFAULT_MAX_BURST,
                      help="records written back to back after a stall; older slots are "
                           "skipped (counted in 'skipped')")
    send.add_argument("--sample-ms", type=bounded(float, 1, 1000), default=DEFAULT_SAMPLE_MS,
                      help="how often the retransmission counters are read")
    send.add_argument("--bind", metavar="ADDR", help="source address")
    receive = sub.add_parser("tcp-receive", help="accept one TCP stream and log its records")
    receive.add_argument("--port", type=bounded(int, 1, 65535), required=True)
    receive.add_argument("--bind", default="0.0.0.0", metavar="ADDR")
    receive.add_argument("--log", metavar="FILE", help="binary log of every record's arrival")
    for command in (send, receive):
        command.add_argument("--flow-id", type=bounded(int, 0, 2**32 - 1), default=0)


def send_command(args) -> int:
    sender = TcpSender.connect(args.to, args.bind, mss=args.mss, rate_pps=args.rate,
                               duration_s=args.duration, size=args.size, flow_id=args.flow_id,
                               max_burst=args.max_burst)
    sampler = CounterSampler(sender.sock, args.sample_ms / 1000)
    sampler.sample()
    sampler.start()
    stop_on_signals(sender.stop)
    print(f"mpa-traffic: sending TCP flow {args.flow_id} to {format_address(args.to)} at "
          f"{args.rate:g} records/s of {args.size} bytes", file=sys.stderr, flush=True)
    try:
        summary = sender.run()
    finally:
        sampler.finish()
        sender.sock.close()
    emit({**summary, "protocol": "tcp", "mss": args.mss,
           "counters": ["wall_ns", *COUNTERS], "samples": sampler.samples,
           "samples_dropped": sampler.dropped})
    return 0


def receive_command(args) -> int:
    log = open(args.log, "wb") if args.log else None
    try:
        receiver = TcpReceiver(args.port, args.bind, args.flow_id, log)
        stop_on_signals(receiver.stop)
        print(f"mpa-traffic: receiving TCP flow {args.flow_id} on "
              f"{format_address((args.bind, args.port))}",
              file=sys.stderr, flush=True)
        try:
            receiver.run()
        finally:
            receiver.listener.close()
    finally:
        if log is not None:
            log.close()
    emit(receiver.report())
    return 0

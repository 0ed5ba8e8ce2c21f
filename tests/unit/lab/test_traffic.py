"""mpa-traffic: the header, the analysis, the sender's pacing, and both ends on loopback."""

import collections
import errno
import json
import os
import re
import signal
import socket
import subprocess
import sys
import threading
import time

import pytest

from mpa_lab.traffic.datagrams import (HEADER_SIZE, Header, HeaderError, Receiver, Sender,
                                       analyse, load_windows, main, read_log)
from support.lab_rig import wait_for
from support.paths import ROOT

MS = 1_000_000
WALL0 = 1_700_000_000 * 10**9


# ---- header -----------------------------------------------------------------

def test_header_round_trip():
    header = Header(flow_id=2**32 - 1, seq=2**64 - 1, send_ns=WALL0 + 123, length=100)
    datagram = header.pack()
    assert len(datagram) == 100
    assert datagram[HEADER_SIZE:] == bytes(100 - HEADER_SIZE)
    assert Header.unpack(datagram) == header
    assert Header.unpack(memoryview(Header(1, 2, 3).pack())) == Header(1, 2, 3, HEADER_SIZE)


@pytest.mark.parametrize("datagram, reason", [
    (b"", "short"),
    (Header(0, 1, 2).pack()[:-1], "short"),
    (b"XXXX" + Header(0, 1, 2).pack()[4:], "magic"),
    (Header(0, 1, 2).pack()[:4] + b"\x02" + Header(0, 1, 2).pack()[5:], "version"),
    (Header(0, 1, 2, length=64).pack()[:63], "length"),
    (Header(0, 1, 2).pack() + b"\x00", "length"),
])
def test_header_rejects_junk(datagram, reason):
    with pytest.raises(HeaderError) as caught:
        Header.unpack(datagram)
    assert caught.value.reason == reason


def test_receiver_counts_junk_and_other_flows_by_reason():
    receiver = Receiver(None, flow_id=5)
    assert receiver.handle(Header(5, 0, 10).pack(), 20)
    assert not receiver.handle(Header(6, 1, 10).pack(), 20)
    assert not receiver.handle(b"hello", 20)
    assert not receiver.handle(b"GET / HTTP/1.1\r\n\r\nand some more bytes", 20)
    report = receiver.report()
    assert report["received"] == 1
    assert report["junk"] == 3
    assert report["junk_by_reason"] == {"flow": 1, "magic": 1, "short": 1}


def test_receiver_bounds_what_it_records():
    receiver = Receiver(None, max_arrivals=3)
    for seq in range(5):
        receiver.handle(Header(0, seq, seq).pack(), seq + 1)
    assert receiver.received == 5
    assert receiver.arrivals() == [(0, 0, 1), (1, 1, 2), (2, 2, 3)]
    assert receiver.report()["not_recorded"] == 2


# ---- analysis ---------------------------------------------------------------

def flow(seqs, delay_ms=5, period_ms=10):
    """Arrivals of ``seqs`` in that order: sent every period, received ``delay_ms`` later."""
    return [(s, s * period_ms * MS, s * period_ms * MS + delay_ms * MS) for s in seqs]


def test_losses_duplicates_and_reordering():
    report = analyse(flow([0, 1, 3, 2, 3, 5, 6]), sent=8)
    assert report["expected"] == 8 and report["expected_from"] == "sent"
    assert report["received"] == 7
    assert report["unique"] == 6
    assert report["duplicated"] == 1
    assert report["reordered"] == 1
    assert report["lost"] == 2  # 4 and 7
    assert report["loss_runs"] == 2
    assert report["longest_loss_run"] == {"first_seq": 4, "last_seq": 4, "count": 1}
    # Without the sent count, the trailing loss of 7 is invisible.
    report = analyse(flow([0, 1, 3, 2, 3, 5, 6]))
    assert (report["expected"], report["lost"], report["expected_from"]) == (7, 1, "highest_seq")


def test_reordering_is_counted_against_the_highest_seen_rfc4737():
    report = analyse(flow([0, 3, 1, 2, 1, 4]))
    assert report["reordered"] == 2  # 1 and 2 both arrive after 3; the second 1 is a duplicate
    assert report["duplicated"] == 1
    assert report["lost"] == 0


def test_longest_loss_run_and_longest_gap_find_the_interruption():
    seqs = [*range(0, 20), *range(35, 50)]
    arrivals = flow(seqs)
    report = analyse(arrivals, sent=50)
    assert report["lost"] == 15
    assert report["longest_loss_run"] == {"first_seq": 20, "last_seq": 34, "count": 15}
    assert report["longest_gap"] == {"ms": 160.0, "after_seq": 19, "before_seq": 35,
                                     "from_recv_ns": 195 * MS, "to_recv_ns": 355 * MS}


def test_one_way_delay_percentiles_by_nearest_rank():
    arrivals = [(s, s * MS, s * MS + (s + 1) * MS) for s in range(100)]  # delays 1..100 ms
    assert analyse(arrivals)["delay_ms"] == {"min": 1.0, "p50": 50.0, "p99": 99.0, "max": 100.0}
    assert analyse(arrivals[:1])["delay_ms"] == {"min": 1.0, "p50": 1.0, "p99": 1.0, "max": 1.0}


def test_interarrival_jitter_rfc3550():
    arrivals = [(0, 0, 10 * MS), (1, 20 * MS, 32 * MS), (2, 40 * MS, 50 * MS)]
    # D(0,1) = (32 - 10) - (20 - 0) = 2 ms:   J = 0 + (2 - 0) / 16 = 0.125
    # D(1,2) = (50 - 32) - (40 - 20) = -2 ms: J = 0.125 + (2 - 0.125) / 16
    expected = 0.125 + (2 - 0.125) / 16
    assert analyse(arrivals)["jitter_ms"] == pytest.approx(expected)
    # A duplicate is not a packet of the stream: the jitter ignores it.
    assert analyse(arrivals[:2] + [(1, 20 * MS, 45 * MS)] + arrivals[2:])["jitter_ms"] \
        == pytest.approx(expected)
    assert analyse(flow(range(10)))["jitter_ms"] == 0.0


def test_nothing_received():
    report = analyse([], sent=10, windows=[("w", 0, 100)])
    assert (report["received"], report["lost"], report["lost_unplaced"]) == (0, 10, 10)
    assert report["longest_gap"] is None and report["delay_ms"] is None
    assert report["jitter_ms"] is None
    assert report["windows"][0]["expected"] == 0
    assert analyse([])["expected"] == 0


# ---- windows ----------------------------------------------------------------

def test_windows_attribute_received_and_lost_packets_by_send_time():
    # Sent every 10 ms; 4 and 5 lost (sent at 40 and 50 ms), 8 arrives twice, 7 late.
    arrivals = flow([0, 1, 2, 3, 6, 8, 7, 8, 9])
    report = analyse(arrivals, windows=[("before", 0, 35 * MS), ("handover", 35 * MS, 55 * MS),
                                        ("after", 55 * MS, 100 * MS)])
    before, handover, after = report["windows"]
    assert (before["expected"], before["received"], before["lost"]) == (4, 4, 0)
    assert handover == {**handover, "expected": 2, "received": 0, "lost": 2,
                        "longest_loss_run": {"first_seq": 4, "last_seq": 5, "count": 2},
                        "longest_gap": None, "delay_ms": None}
    assert (after["expected"], after["received"], after["unique"]) == (4, 5, 4)
    assert (after["duplicated"], after["reordered"], after["lost"]) == (1, 1, 0)
    assert after["longest_gap"]["after_seq"] == 6
    assert before["label"] == "before" and before["start_ns"] == 0
    assert sum(w["lost"] for w in report["windows"]) == report["lost"]


def test_lost_packets_are_placed_between_their_neighbours():
    # The sender stalled: 10 at 100 ms, 14 at 200 ms; 11..13 placed at 125, 150, 175 ms.
    arrivals = [(s, s * 10 * MS, s * 10 * MS + MS) for s in range(11)]
    arrivals += [(14, 200 * MS, 201 * MS), (15, 210 * MS, 211 * MS)]
    windows = [("a", 120 * MS, 130 * MS), ("b", 140 * MS, 160 * MS),
               ("c", 170 * MS, 180 * MS), ("overlap", 120 * MS, 200 * MS)]
    lost = [w["lost"] for w in analyse(arrivals, windows=windows)["windows"]]
    assert lost == [1, 1, 1, 3]


def test_losses_at_either_end_are_placed_one_period_apart():
    arrivals = flow(range(3, 7))  # 0..2 and 7..9 lost: sent at 0..20 ms and 70..90 ms
    windows = [("start", 0, 25 * MS), ("end", 65 * MS, 85 * MS)]
    by_median_step = analyse(arrivals, sent=10, windows=windows)
    assert [w["lost"] for w in by_median_step["windows"]] == [3, 2]
    by_rate = analyse(arrivals, sent=10, windows=windows, period_ns=5 * MS)
    # At 5 ms a packet, 0..2 were sent at 15..25 ms and 7..9 at 65..75 ms.
    assert [w["lost"] for w in by_rate["windows"]] == [2, 3]
    assert by_rate["lost_unplaced"] == 0
    alone = analyse(flow([3]), sent=5, windows=windows)
    assert alone["lost_unplaced"] == 4
    assert analyse(flow([3]), sent=5, windows=windows, period_ns=10 * MS)["lost_unplaced"] == 0


def test_windows_are_validated(tmp_path):
    assert analyse(flow([0]), windows=[{"label": "x", "start_ns": 0, "end_ns": 1}])["windows"]
    for bad in [("x", 5, 5), ("x", 0.0, 5), (1, 0, 5), ("x", True, 5)]:
        with pytest.raises(ValueError):
            analyse([], windows=[bad])
    path = tmp_path / "windows.json"
    path.write_text(json.dumps([{"label": "ho1", "start_ns": 10, "end_ns": 20}]))
    assert load_windows(str(path)) == [("ho1", 10, 20)]
    for content, message in [({"label": "x"}, "expected a list"),
                             ([1], r"\[0\]: expected an object"),
                             ([{"label": "x", "start_ns": 0}], r"\[0\]\.end_ns: missing"),
                             ([{"label": "x", "start_ns": 0, "end_ns": 1, "colour": 1}],
                              r"\[0\]\.colour: unknown key"),
                             ([{"label": "x", "start_ns": 2, "end_ns": 1}], "start_ns < end_ns")]:
        path.write_text(json.dumps(content))
        with pytest.raises(ValueError, match=message):
            load_windows(str(path))


def test_the_report_survives_a_json_round_trip():
    report = analyse(flow([0, 2, 1, 1, 5]), sent=7, windows=[("w", 0, 30 * MS)])
    assert json.loads(json.dumps(report)) == report


# ---- pacing -----------------------------------------------------------------

class FakeClock:
    """Time moves only when the sender sleeps; ``stalls`` {at_ns: extra_ns} deschedule it."""

    def __init__(self, stalls=None):
        self.now = 0
        self.stalls = dict(stalls or {})
        self.on_sleep = None

    def monotonic_ns(self):
        return self.now

    def wall_ns(self):
        return WALL0 + self.now

    def sleep(self, seconds):
        assert 0 < seconds <= 0.05
        self.now += round(seconds * 1e9)
        for at in sorted(self.stalls):
            if self.now >= at:
                self.now += self.stalls.pop(at)
        if self.on_sleep:
            self.on_sleep(self.now)


class FakeSocket:
    def __init__(self, clock, fail=None):
        self.clock, self.fail = clock, fail
        self.sent = []  # (monotonic ns, Header)

    def sendto(self, data, dest):
        header = Header.unpack(bytes(data))
        code = self.fail(header.seq) if self.fail else None
        if code:
            raise OSError(code, os.strerror(code))
        self.sent.append((self.clock.now, header))


def fake_sender(clock, rate=1000, duration=1.0, fail=None, **kwargs):
    sock = FakeSocket(clock, fail)
    sender = Sender(sock, ("192.0.2.1", 5000), rate_pps=rate, duration_s=duration,
                    monotonic_ns=clock.monotonic_ns, wall_ns=clock.wall_ns, sleep=clock.sleep,
                    **kwargs)
    return sender, sock


def test_sender_paces_by_absolute_deadlines():
    clock = FakeClock()
    sender, sock = fake_sender(clock, size=64, flow_id=3)
    summary = sender.run()
    assert [t for t, _ in sock.sent] == [i * MS for i in range(1000)]
    assert [h.seq for _, h in sock.sent] == list(range(1000))
    assert all(h.send_ns == WALL0 + t and h.length == 64 and h.flow_id == 3
               for t, h in sock.sent)
    assert summary == {**summary, "attempted": 1000, "sent": 1000, "skipped": 0, "errors": {},
                       "elapsed_s": 1.0, "achieved_pps": 1000.0, "stopped_early": False,
                       "first_send_ns": WALL0, "last_send_ns": WALL0 + 999 * MS,
                       "to": "192.0.2.1:5000"}
    json.dumps(summary)


def test_sender_handles_rates_that_do_not_divide_a_second():
    clock = FakeClock()
    sender, sock = fake_sender(clock, rate=3, duration=1.0)
    sender.run()
    assert [t for t, _ in sock.sent] == [0, 333_333_333, 666_666_667]


@pytest.mark.parametrize("max_burst", [1, 8])
def test_sender_catches_up_with_a_bounded_burst_after_a_stall(max_burst):
    # Waiting for slot 100 (100 ms), the sender is descheduled until 300 ms:
    # slots 100..300 are due at once.
    clock = FakeClock(stalls={100 * MS: 200 * MS})
    sender, sock = fake_sender(clock, max_burst=max_burst)
    summary = sender.run()
    times = [t for t, _ in sock.sent]
    assert max(collections.Counter(times).values()) == max_burst
    assert times[100:100 + max_burst] == [300 * MS] * max_burst  # the newest due slots
    assert times[100 + max_burst:] == [t * MS for t in range(301, 1000)]  # back on the grid
    assert summary["skipped"] == 201 - max_burst
    assert summary["sent"] == 1000 - summary["skipped"]
    assert [h.seq for _, h in sock.sent] == list(range(summary["sent"]))  # no gaps
    # Never ahead of the schedule: by time t at most t/period + 1 datagrams.
    assert all(i + 1 <= t // MS + 1 for i, t in enumerate(times))


def test_send_errors_are_counted_by_errno_and_keep_their_sequence_numbers():
    clock = FakeClock()
    unreachable = {*range(10, 20)}
    sender, sock = fake_sender(clock, rate=100, fail=lambda seq: errno.ENETUNREACH
                               if seq in unreachable else errno.EPERM if seq == 50 else None)
    summary = sender.run()
    assert summary["errors"] == {"ENETUNREACH": 10, "EPERM": 1}
    assert (summary["attempted"], summary["sent"]) == (100, 89)
    seqs = [h.seq for _, h in sock.sent]
    assert not unreachable & set(seqs) and 50 not in seqs and seqs[-1] == 99


def test_sender_stops_early_with_its_summary():
    clock = FakeClock()
    sender, sock = fake_sender(clock, duration=10.0)
    clock.on_sleep = lambda now: now >= 500 * MS and sender.stop()
    summary = sender.run()
    assert summary["stopped_early"] is True
    assert summary["attempted"] == summary["sent"] == len(sock.sent) == 500
    assert summary["elapsed_s"] == 0.5


# ---- on loopback ------------------------------------------------------------

def start(target, *args):
    thread = threading.Thread(target=target, args=args, daemon=True)
    thread.start()
    return thread


def run_flow(receiver, to, rate, duration, expected_received):
    """Send to ``to``, wait until ``expected_received(summary)`` arrived, stop the receiver."""
    receiving = start(receiver.run)
    sender = Sender.open(to, rate_pps=rate, duration_s=duration, size=100)
    try:
        summary = sender.run()
    finally:
        sender.sock.close()
    wait_for(lambda: receiver.received >= expected_received(summary), 10.0,
             "the datagrams sent", interval_s=0.01)
    receiver.stop()
    receiving.join(5)
    receiver.sock.close()
    return summary


def test_loopback_sender_and_receiver(tmp_path):
    with open(tmp_path / "arrivals.log", "wb") as log:
        receiver = Receiver.open(0, "127.0.0.1", log=log)
        summary = run_flow(receiver, receiver.sock.getsockname(), 500, 1.0, lambda s: s["sent"])
    report = receiver.report(sent=summary["attempted"])
    assert summary["errors"] == {} and summary["sent"] == summary["attempted"] > 0
    assert report["received"] == report["unique"] == summary["sent"]
    assert (report["lost"], report["duplicated"], report["reordered"]) == (0, 0, 0)
    assert report["delay_ms"]["min"] >= 0
    assert report["receive_timestamps"] in ("kernel", "user")
    flow_id, arrivals = read_log(str(tmp_path / "arrivals.log"))
    assert (flow_id, arrivals) == (0, receiver.arrivals())


class DroppingRelay:
    """Forwards datagrams, dropping every 10th and swapping the 51st and 52nd."""

    def __init__(self, target):
        self.target = target
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.05)
        self.dropped = 0
        self.stopping = False

    def run(self):
        held, index = None, 0
        while not self.stopping:
            try:
                data = self.sock.recv(65536)
            except TimeoutError:
                continue
            index, i = index + 1, index
            if i % 10 == 9:
                self.dropped += 1
                continue
            if i == 50:
                held = data
                continue
            self.sock.sendto(data, self.target)
            if i == 51:
                self.sock.sendto(held, self.target)


def test_loss_and_reordering_through_a_dropping_relay():
    receiver = Receiver.open(0, "127.0.0.1")
    relay = DroppingRelay(receiver.sock.getsockname())
    relaying = start(relay.run)
    try:
        summary = run_flow(receiver, relay.sock.getsockname(), 500, 0.4,
                           lambda s: s["sent"] - s["sent"] // 10)
    finally:
        relay.stopping = True
        relaying.join(5)
        relay.sock.close()
    assert summary["sent"] == summary["attempted"] >= 52
    report = receiver.report(sent=summary["attempted"])
    assert report["lost"] == relay.dropped == summary["sent"] // 10
    assert report["reordered"] == 1
    assert report["received"] == report["unique"] == summary["sent"] - relay.dropped
    assert report["duplicated"] == 0
    assert report["loss_runs"] == relay.dropped  # every 10th: never two in a row


# ---- command line -----------------------------------------------------------

@pytest.mark.parametrize("argv", [
    [], ["bogus"], ["send"],
    ["send", "--to", "127.0.0.1", "--rate", "10", "--duration", "1"],
    ["send", "--to", "127.0.0.1:99999", "--rate", "10", "--duration", "1"],
    ["send", "--to", ":5000", "--rate", "10", "--duration", "1"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "0", "--duration", "1"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "nan", "--duration", "1"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "fast", "--duration", "1"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "10", "--duration", "-1"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "10"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "10", "--duration", "1", "--size", "10"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "10", "--duration", "1", "--size", "70000"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "10", "--duration", "1", "--flow-id", "-1"],
    ["send", "--to", "127.0.0.1:5000", "--rate", "10", "--duration", "1",
     "--flow-id", str(2**32)],
    ["send", "--to", "127.0.0.1:5000", "--rate", "10", "--duration", "1", "--max-burst", "0"],
    ["receive"], ["receive", "--port", "70000"], ["receive", "--port", "0", "--sent", "-1"],
    ["analyse"],
])
def test_argument_errors_exit_2(argv, capsys):
    with pytest.raises(SystemExit) as caught:
        main(argv)
    assert caught.value.code == 2


def test_bad_files_exit_2(tmp_path, capsys):
    windows = tmp_path / "windows.json"
    windows.write_text('[{"label": "x", "start_ns": 0}]')
    not_a_log = tmp_path / "not.log"
    not_a_log.write_bytes(b"hello")
    for argv in (["receive", "--port", "0", "--windows", str(windows)],
                 ["receive", "--port", "0", "--windows", str(tmp_path / "missing.json")],
                 ["analyse", "--log", str(not_a_log)]):
        with pytest.raises(SystemExit) as caught:
            main(argv)
        assert caught.value.code == 2
    assert "end_ns: missing" in capsys.readouterr().err


def spawn(*args):
    process = subprocess.Popen([sys.executable, "-m", "mpa_lab.traffic.datagrams", *args], cwd=ROOT,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready = process.stderr.readline()
    assert ready.startswith("mpa-traffic: "), ready + process.stderr.read()
    return process, ready


def finish(process, signum=signal.SIGTERM):
    process.send_signal(signum)
    out, err = process.communicate(timeout=10)
    assert process.returncode == 0, err
    lines = out.splitlines()
    assert len(lines) == 1, out
    return json.loads(lines[0])


def test_sigterm_stops_receive_with_its_report(tmp_path, capsys):
    log = tmp_path / "arrivals.log"
    windows = tmp_path / "windows.json"
    windows.write_text(json.dumps([{"label": "all", "start_ns": 0, "end_ns": 2**63}]))
    process, ready = spawn("receive", "--port", "0", "--bind", "127.0.0.1", "--flow-id", "7",
                           "--log", str(log), "--windows", str(windows), "--sent", "6")
    try:
        port = int(re.search(r":(\d+)$", ready.strip()).group(1))
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            for seq in (0, 1, 2, 4, 4):
                sock.sendto(Header(7, seq, time.time_ns(), 64).pack(), ("127.0.0.1", port))
            sock.sendto(b"junk", ("127.0.0.1", port))
            sock.sendto(Header(8, 3, time.time_ns()).pack(), ("127.0.0.1", port))
        report = finish(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()
    assert report["flow_id"] == 7
    assert (report["received"], report["unique"], report["duplicated"]) == (5, 4, 1)
    assert (report["expected"], report["lost"]) == (6, 2)
    assert report["junk_by_reason"] == {"flow": 1, "short": 1}
    assert report["windows"][0]["lost"] == 2 and report["windows"][0]["received"] == 5

    # The log re-analysed afterwards gives the same report.
    assert main(["analyse", "--log", str(log), "--sent", "6", "--windows", str(windows)]) == 0
    again = json.loads(capsys.readouterr().out)
    for key in ("received", "unique", "lost", "duplicated", "delay_ms", "jitter_ms", "windows"):
        assert again[key] == report[key]

    # A record torn by a kill is dropped.
    with open(log, "ab") as f:
        f.write(b"\x01\x02\x03")
    assert len(read_log(str(log))[1]) == 5


def test_receive_for_a_duration():
    process = subprocess.run([sys.executable, "-m", "mpa_lab.traffic.datagrams", "receive",
                              "--port", "0", "--bind", "127.0.0.1", "--duration", "0.1"], cwd=ROOT,
                             capture_output=True, text=True, timeout=10)
    assert process.returncode == 0, process.stderr
    report = json.loads(process.stdout)
    assert (report["received"], report["expected"], report["windows"]) == (0, 0, [])


def test_sigterm_stops_send_with_its_summary():
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sink:
        sink.bind(("127.0.0.1", 0))
        port = sink.getsockname()[1]
        process, _ = spawn("send", "--to", f"127.0.0.1:{port}", "--rate", "100",
                           "--duration", "600", "--flow-id", "2")
        try:
            summary = finish(process, signal.SIGINT)
        finally:
            if process.poll() is None:
                process.kill()
                process.communicate()
    assert summary["stopped_early"] is True and summary["flow_id"] == 2
    assert summary["to"] == f"127.0.0.1:{port}"

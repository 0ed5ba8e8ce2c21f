"""The TCP stream (mpa_lab/traffic/tcp_flow.py) and its analysis
(mpa_lab/traffic/tcp_analysis.py) on synthetic arrivals and counters: the
longest stall around a handover, throughput before, around and after it,
retransmissions and retransmission timeouts."""

from __future__ import annotations

import io
import socket
import struct

import pytest

from mpa_lab.experiment.results import summary, table
from mpa_lab.traffic import tcp_analysis
from mpa_lab.traffic.datagrams import LOG_HEADER, LOG_RECORD, Header, HeaderError, read_log
from mpa_lab.traffic.tcp_flow import (MAX_RECORD, RecordStream, TcpSender, namespace_counters,
                                      tcp_info_counters)

MS = 1_000_000
T0 = 1_700_000_000_000_000_000


def arrivals_every_ms(first_ms: int, last_ms: int, skip=()) -> list[int]:
    """Receive times, one record a millisecond, none inside ``skip`` (ms ranges)."""
    return [T0 + t * MS for t in range(first_ms, last_ms)
            if not any(a <= t < b for a, b in skip)]


def sample(at_ms, retrans, rto, ns_timeouts, ns_retrans, ns_probes=0):
    return [T0 + at_ms * MS, retrans, rto, ns_timeouts, ns_retrans, ns_probes]


# -- the analysis -----------------------------------------------------------------

def test_the_stall_is_the_longest_gap_that_reaches_into_the_handover():
    # A 30 ms gap long before the handover, a 20 ms one across its outage.
    recv = arrivals_every_ms(0, 2000, skip=[(100, 130), (1000, 1020)])
    stall = tcp_analysis.longest_stall(recv, T0 + 1000 * MS, T0 + 1500 * MS)
    assert stall["ms"] == 21.0
    assert (stall["from_recv_ns"], stall["to_recv_ns"]) == (T0 + 999 * MS, T0 + 1020 * MS)
    # A gap that began before the outage and ends after it counts too.
    assert tcp_analysis.longest_stall(recv, T0 + 1010 * MS, T0 + 1500 * MS)["ms"] == 21.0
    assert tcp_analysis.longest_stall([], T0, T0 + MS) is None


def test_throughput_counts_the_payload_received_in_each_window():
    recv = arrivals_every_ms(0, 3000, skip=[(1000, 1250)])
    # 1,000 records of 1,000 bytes a second: 8 Mbit/s; a quarter of a second missing.
    assert tcp_analysis.throughput_mbps(recv, 1000, T0, T0 + 1000 * MS) == 8.0
    assert tcp_analysis.throughput_mbps(recv, 1000, T0 + 1000 * MS, T0 + 2000 * MS) == 6.0


def test_counters_grow_by_what_their_samples_say_within_the_window():
    samples = [sample(0, 5, 0, 2, 7), sample(1010, 6, 0, 2, 8, 1), sample(1300, 9, 1, 3, 11, 3),
               sample(2500, 12, 1, 3, 14, 5)]
    assert tcp_analysis.counter_at(samples, "total_retrans", T0 + 1200 * MS) == 6
    # Before the first sample: the first sample's value.
    assert tcp_analysis.counter_at(samples, "total_retrans", T0 - MS) == 5
    assert tcp_analysis.counter_growth(samples, "total_retrans", T0 + 900 * MS,
                                       T0 + 2000 * MS) == 4
    assert tcp_analysis.counter_growth(samples, "total_rto", T0 + 900 * MS, T0 + 2000 * MS) == 1
    assert tcp_analysis.counter_at([], "total_rto", T0) is None
    assert tcp_analysis.stream_totals(samples) == {
        "total_retrans": 7, "total_rto": 1, "ns_timeouts": 1, "ns_retrans_segs": 7,
        "ns_loss_probes": 5, "timeout_wall_ns": [T0 + 1300 * MS]}


def test_a_handovers_figures_from_arrivals_and_samples():
    recv = arrivals_every_ms(0, 3000, skip=[(1000, 1040)])
    samples = [sample(0, 0, 0, 0, 0), sample(1050, 2, 0, 0, 2, 1)]
    figures = tcp_analysis.handover(
        recv, samples, size=1000, window={"start_ns": T0 + 900 * MS, "end_ns": T0 + 1600 * MS},
        outage_ns=T0 + 1000 * MS, link_layer_ms=30.0, window_ns=500 * MS)
    assert figures["stall_ms"] == 41.0 and figures["stall_beyond_link_layer_ms"] == 11.0
    assert figures["throughput_mbps"] == {"before": 8.0, "around": 7.36, "after": 8.0}
    assert (figures["retransmits"], figures["timeouts"], figures["ns_timeouts"],
            figures["ns_retrans_segs"], figures["ns_loss_probes"]) == (2, 0, 0, 2, 1)


def test_a_timeout_after_the_controller_settled_is_still_the_handovers():
    """The driver's window of a handover ends once the controller is done;
    an RTO the move caused fires 200 ms after the flush, often later.  It
    belongs to the handover until the next one starts."""
    windows = [{"start_ns": T0, "end_ns": T0 + 400 * MS},
               {"start_ns": T0 + 1500 * MS, "end_ns": T0 + 1900 * MS}]
    spans = tcp_analysis.spans(windows, T0 + 3000 * MS)
    assert spans == [{"start_ns": T0, "end_ns": T0 + 1500 * MS},
                     {"start_ns": T0 + 1500 * MS, "end_ns": T0 + 3000 * MS}]
    # Data stalls at 350 ms after the flush, the RTO is seen at 560 ms.
    recv = arrivals_every_ms(0, 3000, skip=[(300, 340), (350, 560)])
    samples = [sample(0, 0, 0, 0, 0), sample(560, 1, 1, 1, 1)]
    first = tcp_analysis.handover(recv, samples, size=1000, window=spans[0],
                                  outage_ns=T0 + 300 * MS, link_layer_ms=30.0,
                                  window_ns=500 * MS)
    assert (first["timeouts"], first["ns_timeouts"], first["stall_ms"]) == (1, 1, 211.0)
    second = tcp_analysis.handover(recv, samples, size=1000, window=spans[1],
                                   outage_ns=T0 + 1600 * MS, link_layer_ms=30.0,
                                   window_ns=500 * MS)
    assert second["timeouts"] == 0
    # A window longer than the time to the next start keeps its own end.
    assert tcp_analysis.spans([{"start_ns": T0, "end_ns": T0 + 5 * MS}], T0 + MS) == [
        {"start_ns": T0, "end_ns": T0 + 5 * MS}]


def test_a_kernel_without_tcpi_total_rto_gives_no_timeouts_rather_than_zero():
    info = bytearray(104)
    struct.pack_into("@I", info, 100, 7)
    assert tcp_info_counters(bytes(info)) == (7, None)
    longer = bytearray(248)
    struct.pack_into("@I", longer, 100, 7)
    struct.pack_into("@H", longer, 240, 2)
    assert tcp_info_counters(bytes(longer)) == (7, 2)
    samples = [[T0, 7, None, 0, 0, 0], [T0 + MS, 9, None, 0, 2, 0]]
    assert tcp_analysis.counter_growth(samples, "total_rto", T0, T0 + MS) is None


def test_namespace_counters_are_read_by_name_from_netstat_and_snmp():
    netstat = ("TcpExt: SyncookiesSent TCPTimeouts TCPLossProbes\n"
               "TcpExt: 0 4 9\n"
               "IpExt: InNoRoutes\nIpExt: 0\n")
    snmp = ("Ip: Forwarding\nIp: 1\n"
            "Tcp: RtoAlgorithm ActiveOpens RetransSegs\nTcp: 1 3 17\n")
    assert namespace_counters(netstat, snmp) == (4, 17, 9)
    assert namespace_counters("", "") == (None, None, None)


# -- the stream -----------------------------------------------------------------------

def test_records_are_cut_from_the_byte_stream_however_it_arrives():
    records = b"".join(Header(0, seq, T0 + seq, 100).pack() for seq in range(3))
    log = io.BytesIO()
    stream = RecordStream(log=log)
    # The first record and a half, then the rest: each completes at its own recv.
    stream.feed(records[:150], T0 + 10)
    stream.feed(records[150:], T0 + 20)
    logged = list(LOG_RECORD.iter_unpack(log.getvalue()[LOG_HEADER.size:]))
    assert logged == [(0, T0, T0 + 10), (1, T0 + 1, T0 + 20), (2, T0 + 2, T0 + 20)]
    assert (stream.records, stream.bytes) == (3, 300)


def test_a_stream_that_is_not_ours_is_refused():
    with pytest.raises(HeaderError):
        RecordStream().feed(b"GET / HTTP/1.1\r\nHost: x\r\n\r\n" + bytes(40), T0)
    with pytest.raises(HeaderError, match="flow"):
        RecordStream(flow_id=1).feed(Header(2, 0, T0, 64).pack(), T0)


def test_the_sender_writes_paced_records_the_receiver_logs_them(tmp_path):
    """A TcpSender on one end of a stream socket pair, on an injected clock;
    the records come out whole at the other end, in order."""
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    clock = {"now": 0}

    def sleep(seconds):
        clock["now"] += round(seconds * 1e9)
    sender = TcpSender(a, ("10.255.0.1", 5001), rate_pps=100, duration_s=0.1, size=200,
                       monotonic_ns=lambda: clock["now"], wall_ns=lambda: T0 + clock["now"],
                       sleep=sleep)
    report = sender.run()
    a.close()
    assert (report["attempted"], report["sent"], report["errors"]) == (10, 10, {})
    data = b""
    while chunk := b.recv(65536):
        data += chunk
    path = tmp_path / "log"
    with open(path, "wb") as log:
        RecordStream(log=log).feed(data, T0 + 10**9)
    arrivals = read_log(str(path))[1]
    assert [seq for seq, _, _ in arrivals] == list(range(10))
    assert [send for _, send, _ in arrivals] == [T0 + k * 10 * MS for k in range(10)]


def test_a_broken_connection_ends_the_sender_and_is_counted():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    b.close()
    clock = {"now": 0}
    sender = TcpSender(a, ("10.255.0.1", 5001), rate_pps=100, duration_s=1, size=100,
                       monotonic_ns=lambda: clock["now"], wall_ns=lambda: T0,
                       sleep=lambda s: clock.__setitem__("now", clock["now"] + round(s * 1e9)))
    report = sender.run()
    assert report["stopped_early"] and report["attempted"] == 0 and report["errors"] == {
        "EPIPE": 1}


def test_a_sender_stalled_on_a_full_send_buffer_stops_when_told():
    """A connection that takes nothing (a handover that failed): the sender
    waits for its send buffer in steps, so a stop ends it and it reports,
    instead of blocking until it is killed."""
    import threading
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    sender = TcpSender(a, ("10.255.0.1", 5001), rate_pps=1000, duration_s=3600,
                       size=MAX_RECORD)
    reports = []
    runner = threading.Thread(target=lambda: reports.append(sender.run()))
    runner.start()
    for _ in range(1000):                  # the buffer takes a few records, then is full
        if sender.sent:
            break
        threading.Event().wait(0.01)
    sender.stop()
    runner.join(10)
    stuck = runner.is_alive()
    a.close()                              # frees a sender that did not stop
    b.close()
    assert not stuck and reports[0]["sent"] >= 1


# -- results ---------------------------------------------------------------------------

def row(mn: str, tcp=None, **counts) -> dict:
    return {"mn": mn, "ok": True, "interruption_ms": 40.0, "signal_to_flows_ms": None,
            "buffered": 3, "sent": 100, "received": 100, "lost": 0, "duplicates": 0,
            "reordered": 0, "inter_domain": False, "beyond_link_layer_ms": 10.0,
            **({"tcp": tcp} if tcp else {}), **counts}


def stream(mn: str, **counts) -> dict:
    return {"mn": mn, "expected": 500, "unique": 500 - counts.get("lost", 0),
            "lost": 0, "duplicated": 0, "reordered": 0, "jitter_ms": 0.1, **counts}


def test_a_summary_holds_each_mobile_nodes_counts_and_the_table_shows_them():
    rows = [row("mn1"), row("mn2", interruption_ms=60.0)]
    s = summary(rows, [stream("mn1"), stream("mn2", lost=2, reordered=3)], [1.0])
    assert s["per_mn"]["mn2"] == {"handovers": 1, "failed": 0, "sent": 500, "received": 498,
                                  "lost": 2, "duplicates": 0, "reordered": 3,
                                  "interruption_ms_p50": 60.0, "interruption_ms_max": 60.0}
    assert (s["lost"], s["reordered"]) == (2, 3)
    text = table({"modes": {"mpa_buffer": {"summary": s}}})
    assert "Per mobile node" in text and "mn2" in text
    named = summary([row("mn10"), row("mn2"), row("mn1")],
                    [stream("mn10"), stream("mn2"), stream("mn1")], [1.0])
    assert list(named["per_mn"]) == ["mn1", "mn2", "mn10"]
    # One MN: no per-MN part.
    assert "per_mn" not in summary([row("mn1")], [stream("mn1")], [1.0])


def test_moments_say_how_close_together_the_links_went_down():
    def moving(mn, moment, down_ms, up_ms):
        return row(mn, moment=moment, repetition=1, link_down_wall_ns=T0 + down_ms * MS,
                   link_up_wall_ns=T0 + up_ms * MS)
    rows = [moving("mn1", 1, 0, 40), moving("mn2", 1, 10, 60),      # overlapping
            moving("mn1", 2, 1000, 1030), moving("mn2", 2, 1050, 1080)]   # one after the other
    s = summary(rows, [stream("mn1"), stream("mn2")], [1.0])
    assert s["moments"] == {"moments": 2, "link_down_spread_ms_p50": 10.0,
                            "link_down_spread_ms_max": 50.0, "all_links_down_at_once": 1}
    assert "all down at one instant in 1" in table({"modes": {"mpa_buffer": {"summary": s}}})
    # One handover a moment: nothing moved together.
    alone = [row("mn1", moment=1, repetition=1), row("mn2", moment=2, repetition=1)]
    assert "moments" not in summary(alone, [stream("mn1"), stream("mn2")], [1.0])


def test_a_tcp_summary_takes_the_worst_stall_and_counts_every_timeout():
    figures = [{"stall_ms": s, "stall_beyond_link_layer_ms": s - 30, "retransmits": r,
                "timeouts": t, "ns_timeouts": t, "ns_retrans_segs": r,
                "throughput_mbps": {"before": 8.0, "around": a, "after": 8.0}}
               for s, r, t, a in ((40.0, 1, 0, 7.0), (90.0, 3, 1, 5.0), (50.0, 0, 0, 7.5))]
    totals = [{"mn": "mn1", "total_retrans": 6, "total_rto": 1, "ns_timeouts": 1,
               "ns_retrans_segs": 6, "ns_loss_probes": 4}]
    s = summary([row("mn1", f) for f in figures], [stream("mn1")], [1.0], totals)["tcp"]
    assert (s["stall_ms_p50"], s["stall_ms_max"], s["stall_beyond_link_layer_ms_max"]) == (
        50.0, 90.0, 60.0)
    assert s["throughput_mbps_p50"] == {"before": 8.0, "around": 7.0, "after": 8.0}
    assert s["throughput_mbps_min"] == {"before": 8.0, "around": 5.0, "after": 8.0}
    assert (s["retransmits_in_handovers"], s["timeouts_in_handovers"]) == (4, 1)
    assert (s["retransmits"], s["timeouts"], s["ns_timeouts"]) == (6, 1, 1)
    text = table({"modes": {"mpa_buffer": {"summary": summary(
        [row("mn1", f) for f in figures], [stream("mn1")], [1.0], totals)}}})
    assert "TCP across the handovers" in text and "90.0 ms" in text


def test_a_streams_end_reports_are_kept_beside_its_arrivals_but_not_as_one():
    """Readers count a run's streams by its arrivals-* logs."""
    from mpa_lab.traffic.streams import TcpStream, UdpStream
    for kind in (UdpStream, TcpStream):
        stream = kind(None, "cn1", "mn1", "10.255.0.1", 5001, 100,
                      "/out/logs/arrivals-mpa_buffer-mn1.log")
        assert stream.reports_path == "/out/logs/ends-mpa_buffer-mn1.json"


def test_the_largest_record_a_scenario_takes_is_one_the_sender_writes():
    a, b = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    with a, b:
        assert TcpSender(a, ("10.255.0.1", 5001), rate_pps=1, duration_s=1,
                         size=MAX_RECORD).size == MAX_RECORD
        with pytest.raises(ValueError):
            TcpSender(a, ("10.255.0.1", 5001), rate_pps=1, duration_s=1, size=MAX_RECORD + 1)

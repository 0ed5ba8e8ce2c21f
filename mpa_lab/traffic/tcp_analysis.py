"""What a TCP stream went through around each handover: the longest stall,
throughput before, around and after it, and the retransmissions and
retransmission timeouts (RTOs) the sender counted meanwhile.

Pure: given the receiver's arrivals (seq, send ns, receive ns) of each
record (mpa_lab/traffic/tcp_flow.py), the sender's counter samples and,
per handover, its window and its link-layer switch, it returns numbers.

Each handover owns its *span*: from its start until the next handover of
the same MN starts (the last one: until the stream ends), not only the
driver's window, which ends once the controller has settled: a timeout
that the move caused fires 200 ms or more after the flush, often after it.

- ``stall_ms``: the longest gap between two consecutive arrivals (receive
  order) that ends after the handover's outage began and starts within its
  span.  ``stall_beyond_link_layer_ms`` is that less the lab's
  link-layer switch.
- ``throughput_mbps``: payload received (records x their size) in three
  windows of ``window_ns`` by receive time: ``before`` the outage began,
  ``around`` (from it on) and ``after`` (the next one).
- ``retransmits`` (the socket's ``tcpi_total_retrans``), ``timeouts`` (its
  ``tcpi_total_rto``; None on a kernel without it) and the sender
  namespace's ``ns_timeouts`` (TcpExt TCPTimeouts) and ``ns_retrans_segs``
  (Tcp RetransSegs) and ``ns_loss_probes`` (TcpExt TCPLossProbes: tail
  loss probes, the retransmissions Linux sends well before an RTO): how
  much each grew within the handover's span.
"""

from __future__ import annotations

from bisect import bisect_right

from mpa_lab.traffic.tcp_flow import COUNTERS


def counter_at(samples, name: str, at_ns: int) -> int | None:
    """The value of counter ``name`` at ``at_ns``: its last sample at or
    before then (the first one before the first sample); None if unknown."""
    if not samples:
        return None
    column = COUNTERS.index(name) + 1
    index = max(bisect_right([s[0] for s in samples], at_ns) - 1, 0)
    return samples[index][column]


def counter_growth(samples, name: str, start_ns: int, end_ns: int) -> int | None:
    before, after = counter_at(samples, name, start_ns), counter_at(samples, name, end_ns)
    return None if before is None or after is None else after - before


def longest_stall(recv_ns: list[int], from_ns: int, to_ns: int) -> dict | None:
    """The longest gap between consecutive arrivals (``recv_ns`` sorted)
    that ends at or after ``from_ns`` and starts before ``to_ns``."""
    best = None
    start = max(bisect_right(recv_ns, from_ns) - 1, 0)
    for a, b in zip(recv_ns[start:], recv_ns[start + 1:]):
        if a >= to_ns:
            break
        if b >= from_ns and (best is None or b - a > best[1] - best[0]):
            best = (a, b)
    if best is None:
        return None
    return {"ms": round((best[1] - best[0]) / 1e6, 3), "from_recv_ns": best[0],
            "to_recv_ns": best[1]}


def throughput_mbps(recv_ns: list[int], size: int, start_ns: int, end_ns: int) -> float:
    """Mbit/s of payload received in [start_ns, end_ns)."""
    count = bisect_right(recv_ns, end_ns - 1) - bisect_right(recv_ns, start_ns - 1)
    return round(count * size * 8 / ((end_ns - start_ns) / 1e9) / 1e6, 3)


def spans(windows: list[dict], stream_end_ns: int) -> list[dict]:
    """Each of one MN's handover ``windows`` (in the order they ran) as its
    span: from its start to the next one's start, the last to
    ``stream_end_ns`` (never shorter than the window itself)."""
    starts = [w["start_ns"] for w in windows]
    return [{"start_ns": w["start_ns"], "end_ns": max(w["end_ns"], until)}
            for w, until in zip(windows, starts[1:] + [stream_end_ns])]


def handover(recv_ns: list[int], samples, *, size: int, window: dict, outage_ns: int,
             link_layer_ms: float | None, window_ns: int) -> dict:
    """One handover's TCP figures; ``window``: its span's {start_ns,
    end_ns} (`spans`), ``outage_ns``: when its link went down (or was cut)."""
    stall = longest_stall(recv_ns, outage_ns, window["end_ns"])
    stall_ms = stall["ms"] if stall else None
    growth = {name: counter_growth(samples, name, window["start_ns"], window["end_ns"])
              for name in COUNTERS}
    return {
        "stall_ms": stall_ms, "stall": stall,
        "stall_beyond_link_layer_ms": None if stall_ms is None or link_layer_ms is None
        else round(stall_ms - link_layer_ms, 3),
        "throughput_mbps": {
            "before": throughput_mbps(recv_ns, size, outage_ns - window_ns, outage_ns),
            "around": throughput_mbps(recv_ns, size, outage_ns, outage_ns + window_ns),
            "after": throughput_mbps(recv_ns, size, outage_ns + window_ns,
                                     outage_ns + 2 * window_ns)},
        "retransmits": growth["total_retrans"], "timeouts": growth["total_rto"],
        "ns_timeouts": growth["ns_timeouts"], "ns_retrans_segs": growth["ns_retrans_segs"],
        "ns_loss_probes": growth["ns_loss_probes"],
    }


def stream_totals(samples) -> dict:
    """Each counter's growth over the whole stream (its first to last
    sample), and ``timeout_wall_ns``: when the socket's RTOs were seen (the
    sample that first showed each; within the sampling period of it)."""
    if not samples:
        return {name: None for name in COUNTERS} | {"timeout_wall_ns": []}
    column = COUNTERS.index("total_rto") + 1
    seen = [(s[0], s[column]) for s in samples if s[column] is not None]
    return {**{name: counter_growth(samples, name, samples[0][0], samples[-1][0])
               for name in COUNTERS},
            "timeout_wall_ns": [at for (_, before), (at, after) in zip(seen, seen[1:])
                                for _ in range(max(after - before, 0))]}

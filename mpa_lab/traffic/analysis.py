"""Analysis of the arrivals ``mpa-traffic receive`` records: loss, duplicates,
reordering (RFC 4737), the longest gap between arrivals (the interruption),
one-way delay and interarrival jitter (RFC 3550 §6.4.1), overall and per
time window (one per handover).

A packet, lost or received, belongs to every window ``[start_ns, end_ns)``
that holds its send time.  A lost packet's send time is interpolated
between the nearest received sequence numbers on either side; before the
first or after the last one received, it is placed one period per sequence
number away (``period_ns``, else the median step); failing both it is
counted as ``lost_unplaced``.
"""

from __future__ import annotations

_IN_ORDER, _REORDERED, _DUPLICATE = 0, 1, 2


def analyse(arrivals, sent: int | None = None, windows=None, *,
            period_ns: int | None = None) -> dict:
    """Statistics of ``arrivals`` ((seq, send_ns, recv_ns) in the order received).

    ``sent``: how many sequence numbers the sender used (default: the highest
    seen + 1).  ``windows``: (label, start_ns, end_ns) send-time windows, each
    reported with the same statistics.  ``period_ns``: the sender's period,
    for placing losses before the first or after the last arrival.
    """
    if sent is not None and sent < 0:
        raise ValueError(f"sent must not be negative: {sent}")
    windows = [parse_window(w) for w in (windows or ())]
    classified, first_send = [], {}
    highest = -1
    for seq, send_ns, recv_ns in arrivals:
        if seq in first_send:
            kind = _DUPLICATE
        else:
            first_send[seq] = send_ns
            kind = _REORDERED if seq < highest else _IN_ORDER  # RFC 4737: below next expected
        highest = max(highest, seq)
        classified.append((seq, send_ns, recv_ns, kind))
    expected = sent if sent is not None else highest + 1
    if period_ns is None:
        period_ns = _median_step(first_send)
    lost = _place_losses(first_send, expected, period_ns)  # [(seq, send_ns or None)]

    report = _statistics(classified, [seq for seq, _ in lost], expected)
    report.update({
        "expected_from": "sent" if sent is not None else "highest_seq",
        "beyond_sent": sum(1 for seq in first_send if seq >= expected),
        "lost_unplaced": sum(1 for _, t in lost if t is None),
        "windows": [],
    })
    for label, start, end in windows:
        inside = [a for a in classified if start <= a[1] < end]
        lost_inside = [seq for seq, t in lost if t is not None and start <= t < end]
        stats = _statistics(inside, lost_inside, expected)
        report["windows"].append({"label": label, "start_ns": start, "end_ns": end, **stats})
    return report


def parse_window(window) -> tuple[str, int, int]:
    if isinstance(window, dict):
        window = (window.get("label"), window.get("start_ns"), window.get("end_ns"))
    label, start, end = window
    if not isinstance(label, str) or not all(isinstance(v, int) and not isinstance(v, bool)
                                             for v in (start, end)) or start >= end:
        raise ValueError(f"window {window!r}: needs a label and integer start_ns < end_ns")
    return label, start, end


def _median_step(first_send: dict[int, int]) -> int | None:
    steps = sorted(first_send[s + 1] - t for s, t in first_send.items() if s + 1 in first_send)
    return steps[len(steps) // 2] if steps else None


def _place_losses(first_send: dict[int, int], expected: int, period_ns: int | None):
    """Every lost sequence number below ``expected`` with its estimated send time."""
    received = sorted(s for s in first_send if s < expected)
    lost = []
    bounds = [None, *received, None]
    for below, above in zip(bounds, bounds[1:]):
        first = 0 if below is None else below + 1
        last = expected - 1 if above is None else above - 1
        for seq in range(first, last + 1):
            if below is not None and above is not None:
                t0, t1 = first_send[below], first_send[above]
                t = t0 + (t1 - t0) * (seq - below) // (above - below)
            elif period_ns is None or (below is None and above is None):
                t = None
            elif below is not None:
                t = first_send[below] + (seq - below) * period_ns
            else:
                t = first_send[above] - (above - seq) * period_ns
            lost.append((seq, t))
    return lost


def _statistics(classified, lost: list[int], expected: int) -> dict:
    firsts = [a for a in classified if a[3] != _DUPLICATE]
    in_range = sum(1 for a in firsts if a[0] < expected)
    return {
        "expected": in_range + len(lost),
        "received": len(classified),
        "unique": len(firsts),
        "duplicated": len(classified) - len(firsts),
        "reordered": sum(1 for a in firsts if a[3] == _REORDERED),
        "lost": len(lost),
        **_loss_runs(lost),
        "longest_gap": _longest_gap(classified),
        "delay_ms": _delays(firsts),
        "jitter_ms": _jitter(firsts),
    }


def _loss_runs(lost: list[int]) -> dict:
    runs, longest = 0, None
    i = 0
    while i < len(lost):
        j = i
        while j + 1 < len(lost) and lost[j + 1] == lost[j] + 1:
            j += 1
        runs += 1
        if longest is None or j - i + 1 > longest["count"]:
            longest = {"first_seq": lost[i], "last_seq": lost[j], "count": j - i + 1}
        i = j + 1
    return {"loss_runs": runs, "longest_loss_run": longest}


def _longest_gap(classified) -> dict | None:
    best = None
    for previous, current in zip(classified, classified[1:]):
        gap = current[2] - previous[2]
        if best is None or gap > best[0]:
            best = (gap, previous, current)
    if best is None:
        return None
    gap, previous, current = best
    return {"ms": _ms(gap), "after_seq": previous[0], "before_seq": current[0],
            "from_recv_ns": previous[2], "to_recv_ns": current[2]}


def percentile(values, p: float):
    """The ``p``-th percentile of ``values`` by nearest rank (None if empty)."""
    ordered = sorted(values)
    if not ordered:
        return None
    return ordered[max(0, -(-len(ordered) * p // 100) - 1)]


def _delays(firsts) -> dict | None:
    """One-way delays; percentiles by nearest rank."""
    delays = [recv - send for _, send, recv, _ in firsts]
    if not delays:
        return None
    return {"min": _ms(min(delays)), "p50": _ms(percentile(delays, 50)),
            "p99": _ms(percentile(delays, 99)), "max": _ms(max(delays))}


def _jitter(firsts) -> float | None:
    """RFC 3550 section 6.4.1 interarrival jitter, in arrival order, in ms."""
    if not firsts:
        return None
    jitter = 0.0
    for (_, s0, r0, _), (_, s1, r1, _) in zip(firsts, firsts[1:]):
        d = ((r1 - r0) - (s1 - s0)) / 1e6
        jitter += (abs(d) - jitter) / 16
    return jitter


def _ms(ns: int) -> float:
    return round(ns / 1e6, 6)

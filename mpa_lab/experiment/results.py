"""The results of a handover experiment: ``results.json``'s rows and
summaries, and the comparison table printed with RFC 6252's figures.

Pure bookkeeping: the runner (mpa_lab/experiment/runner.py) hands in what the
lab, the MN client, the controller and the receiver recorded; nothing here
touches the lab.

Per handover, the receiver's view of the packets *sent* during it (its
window, see mpa_lab/traffic/analysis.py): ``sent`` of them, ``received``
once or more, ``lost``, received more than once (``duplicates``) and out of
order (``reordered``), and ``interruption_ms``, the longest gap between two
arrivals.  The controller's view, where it has one (MPA modes that signal a
handover): the packets it ``buffered`` and ``signal_to_flows_ms``, from the
MN's arrival seen to the last switch confirming the new flows.

Each handover says whether it crossed domains (the domains of the networks
it left and reached, from the topology, whether one controller served both
or one each), and each mode's summary, the table and the plots take intra-
and inter-domain handovers apart: what they lose, duplicate and reorder,
and their interruption beyond the lab's link-layer switch, the part the
handover mode and the controllers are responsible for.
"""

from __future__ import annotations

import re

from mpa_lab.experiment.scenario import (MODES, MPA, MPA_BICAST, MPA_BUFFER, MPA_COPY_FORWARD,
                                         REACTIVE)
from mpa_lab.traffic.analysis import percentile

# RFC 6252 Appendix C.5, next to each mode in the table.
RFC_FIGURES = {
    REACTIVE: "about 4 s and about 200 packets lost at a 16 ms interval (C.5.1)",
    MPA: "1.33-1.5 packets lost at a 16 ms interval; L3 handoff 1 ms (C.5.1)",
    MPA_BUFFER: "0 lost; 29-45 ms between packets across the handover (C.5.1)",
    MPA_COPY_FORWARD: "0 lost, 50 ms, about 10 duplicates: WLAN to CDMA (C.5.2)",
    MPA_BICAST: "no figure in C.5",
}
LABELS = {REACTIVE: "reactive (no MPA)", MPA: "mpa (no buffering)", MPA_BUFFER: "mpa_buffer",
          MPA_COPY_FORWARD: "mpa_copy_forward", MPA_BICAST: "mpa_bicast"}
TIMELINE_MARGIN_NS = 300_000_000   # arrivals kept either side of a handover's gap
# A mode's handovers taken apart: "inter_domain" is a row's value.
CROSSINGS = (("intra_domain", False), ("inter_domain", True))
CROSSING_LABELS = {"intra_domain": "intra-domain", "inter_domain": "inter-domain"}


def controller_record(history: list[dict], result) -> dict:
    """The controller's record of ``result``'s handover, taken out of
    ``history`` (``GET /mpa/v1/handovers``, oldest first): the first one
    between the same PoAs that was not switched back; {} if it has none
    (no MPA signalling, or the handover failed before it began).  A record
    with no ``from_poa`` is the target's controller's of an MN that came
    from another domain, whose PoAs it does not know: its ``to_poa`` says;
    one with no ``to_poa`` is the home domain's of a copy-and-forward to a
    second interface in another domain: its ``network`` says."""
    for index, handover in enumerate(history):
        if handover.get("switched_back"):
            continue
        to = handover.get("to_poa")
        if handover.get("from_poa") in (None, result.from_poa) and (
                to == result.to_poa or (to is None and handover.get("from_poa") is not None
                                        and handover.get("network") == result.to_network)):
            return history.pop(index)
    return {}


def event_ns(result) -> int:
    """When the handover's outage began: the link cut, the link-layer switch
    going down, or (neither recorded) the run's start."""
    if result.loss_wall_ns is not None:
        return result.loss_wall_ns
    if result.link:
        return result.link[0].down_wall_ns
    return result.started_wall_ns


def timeline(arrivals, window: dict, zero_ns: int) -> dict:
    """Arrivals of packets sent in ``window`` whose arrival is within
    TIMELINE_MARGIN_NS of its longest gap, as ms from ``zero_ns`` and
    sequence numbers, in arrival order (duplicates included: they show)."""
    gap = window.get("longest_gap") or {}
    start = gap.get("from_recv_ns", zero_ns) - TIMELINE_MARGIN_NS
    end = gap.get("to_recv_ns", zero_ns) + TIMELINE_MARGIN_NS
    points = [(recv, seq) for seq, send, recv in arrivals
              if window["start_ns"] <= send < window["end_ns"] and start <= recv <= end]
    return {"zero_wall_ns": zero_ns,
            "ms": [round((recv - zero_ns) / 1e6, 3) for recv, _ in points],
            "seq": [seq for _, seq in points]}


def handover_row(index: int, repetition: int, result, window: dict, record: dict,
                 points: dict, domains: tuple[str, str] | None = None,
                 tcp: dict | None = None) -> dict:
    """``domains``: those of the networks it left and reached (None: not
    known, and whether it crossed domains is null).  ``tcp``: a TCP
    stream's figures (mpa_lab/traffic/tcp_analysis.py's ``handover``)."""
    buffer = record.get("buffer") or {}
    copies = record.get("copies")
    interruption = (window.get("longest_gap") or {}).get("ms")
    link_layer = result.link_layer_ms
    return {
        "index": index, "repetition": repetition, "moment": result.moment,
        "mn": result.mn, "kind": result.kind,
        "from": result.from_network, "to": result.to_network,
        "from_poa": result.from_poa, "to_poa": result.to_poa,
        "from_domain": domains[0] if domains else None,
        "to_domain": domains[1] if domains else None,
        "inter_domain": domains[0] != domains[1] if domains else None,
        "ok": result.ok, "errors": result.errors,
        "sent": window["expected"], "received": window["unique"], "lost": window["lost"],
        "duplicates": window["duplicated"], "reordered": window["reordered"],
        "interruption_ms": interruption,
        "link_layer_ms": _round(link_layer),
        # Of which the lab held the link down on purpose (the modelled link layer).
        "imposed_ms": _round(result.imposed_ms),
        # What the handover added to the link-layer switch's own outage.
        "beyond_link_layer_ms": None if interruption is None or link_layer is None
        else _round(interruption - link_layer),
        "buffered": buffer.get("buffered"),
        "buffer_added_delay_mean_ms": buffer.get("mean_delay_ms"),
        "buffer_added_delay_max_ms": buffer.get("max_delay_ms"),
        "signal_to_flows_ms": record.get("signal_to_flows_ms"),
        "arrival": record.get("arrival"),
        # The controller's steps after the arrival, and what it delivered
        # after cutting to the direct path (late: the candidates to overtake).
        "controller_steps_ms": record.get("steps_ms"),
        "relayed": record.get("relayed"),
        "late_delivered": record.get("late_delivered"),
        **({"copies": copies} if copies else {}),
        "client_timings_ms": result.report.get("timings_ms"),
        # Wall-clock marks (ns), comparable with the receiver's and the lab's.
        "client_marks": {k: v for k, v in result.report.items()
                         if k.endswith("_at") and isinstance(v, int)},
        "loss_wall_ns": result.loss_wall_ns,
        # The lab's link switch (wall-clock ns): MNs moving together overlap.
        "link_down_wall_ns": result.link[0].down_wall_ns if result.link else None,
        "link_up_wall_ns": result.link[0].up_wall_ns if result.link else None,
        **({"tcp": tcp} if tcp is not None else {}),
        "timeline": points,
    }


def first_delays_ms(arrivals) -> list[float]:
    """One-way delay of each packet's first arrival."""
    seen, out = set(), []
    for seq, send, recv in arrivals:
        if seq not in seen:
            seen.add(seq)
            out.append((recv - send) / 1e6)
    return out


def summary(rows: list[dict], streams: list[dict], delays_ms: list[float],
            tcp_streams: list[dict] | None = None) -> dict:
    """A mode's summary: ``streams`` are the analyses of its whole streams
    (every session's, warm-up and pauses included; each with its ``mn``),
    ``delays_ms`` their pooled one-way delays; the interruption percentiles
    are over its handovers (``rows``).  ``tcp_streams``: each TCP stream's
    counters' growth over its life (tcp_analysis.stream_totals, with its
    ``mn``).  With more than one MN, ``per_mn`` says the same per MN."""
    # A failed handover's gap says nothing about the mode: it is counted apart.
    gaps = [r["interruption_ms"] for r in rows if r["ok"] and r["interruption_ms"] is not None]
    received = sum(s["unique"] for s in streams)
    jitters = [(s["jitter_ms"], s["unique"]) for s in streams if s["jitter_ms"] is not None]
    return {
        "handovers": len(rows), "failed": sum(not r["ok"] for r in rows),
        "sent": sum(s["expected"] for s in streams), "received": received,
        "lost": sum(s["lost"] for s in streams),
        "duplicates": sum(s["duplicated"] for s in streams),
        "reordered": sum(s["reordered"] for s in streams),
        "lost_in_handovers": sum(r["lost"] for r in rows),
        "interruption_ms_p50": _round(percentile(gaps, 50)),
        "interruption_ms_max": _round(max(gaps, default=None)),
        "one_way_delay_ms_p50": _round(percentile(delays_ms, 50)),
        # RFC 3550 jitter per stream, averaged over the packets of each.
        "jitter_ms": _round(sum(j * n for j, n in jitters) / sum(n for _, n in jitters)
                            if jitters and sum(n for _, n in jitters) else None),
        "signal_to_flows_ms_p50": _round(percentile(
            [r["signal_to_flows_ms"] for r in rows if r["signal_to_flows_ms"] is not None], 50)),
        "buffered": sum(r["buffered"] or 0 for r in rows),
        **{name: crossing_summary([r for r in rows if r.get("inter_domain") is inter])
           for name, inter in CROSSINGS},
        **({"tcp": tcp_summary(rows, tcp_streams)} if tcp_streams else {}),
        **({"per_mn": per_mn(rows, streams)} if len(_mns(rows, streams)) > 1 else {}),
        **({"moments": moments_summary(rows)}
           if any(len(m) > 1 for m in _by_moment(rows).values()) else {}),
    }


def _by_moment(rows: list[dict]) -> dict:
    out: dict = {}
    for r in rows:
        if r.get("moment") is not None:
            out.setdefault((r.get("repetition"), r["moment"]), []).append(r)
    return out


def moments_summary(rows: list[dict]) -> dict:
    """MNs moving together: per moment, how far apart their links went
    down (first to last), and in how many moments every link was down at
    one instant (the last went down before the first came up)."""
    spreads, overlapping = [], 0
    moments = [m for m in _by_moment(rows).values() if len(m) > 1]
    for moment in moments:
        downs = [r["link_down_wall_ns"] for r in moment if r.get("link_down_wall_ns")]
        ups = [r["link_up_wall_ns"] for r in moment if r.get("link_up_wall_ns")]
        if len(downs) == len(moment):
            spreads.append((max(downs) - min(downs)) / 1e6)
            overlapping += bool(ups) and len(ups) == len(moment) and max(downs) < min(ups)
    return {"moments": len(moments), "link_down_spread_ms_p50": _round(percentile(spreads, 50)),
            "link_down_spread_ms_max": _round(max(spreads, default=None)),
            "all_links_down_at_once": overlapping}


def per_mn(rows: list[dict], streams: list[dict]) -> dict:
    """Each MN's stream (every session's) and handovers: what its receiver
    counted, and its handovers' interruption."""
    out = {}
    for mn in _mns(rows, streams):
        mine = [s for s in streams if s.get("mn") == mn]
        gaps = [r["interruption_ms"] for r in rows
                if r["mn"] == mn and r["ok"] and r["interruption_ms"] is not None]
        out[mn] = {"handovers": sum(r["mn"] == mn for r in rows),
                   "failed": sum(r["mn"] == mn and not r["ok"] for r in rows),
                   **{key: sum(s[field] for s in mine) for key, field in (
                       ("sent", "expected"), ("received", "unique"), ("lost", "lost"),
                       ("duplicates", "duplicated"), ("reordered", "reordered"))},
                   "interruption_ms_p50": _round(percentile(gaps, 50)),
                   "interruption_ms_max": _round(max(gaps, default=None))}
    return out


def _mns(rows: list[dict], streams: list[dict]) -> list[str]:
    """The MNs named, mn2 before mn10."""
    return sorted({s["mn"] for s in streams if s.get("mn")} | {r["mn"] for r in rows
                                                                 if r.get("mn")},
                  key=lambda name: [int(part) if part.isdigit() else part
                                    for part in re.split(r"(\d+)", name)])


def tcp_summary(rows: list[dict], tcp_streams: list[dict]) -> dict:
    """A mode's TCP figures: over its handovers that succeeded the longest
    stall (median and worst, and beyond the link-layer switch), throughput
    in each window (median); over all of them the retransmissions and
    timeouts counted in them, and over the whole streams the same."""
    figures = [r["tcp"] for r in rows if r.get("tcp") and r["ok"]]

    def spread(key: str) -> dict:
        values = [f[key] for f in figures if f.get(key) is not None]
        return {f"{key}_p50": _round(percentile(values, 50)),
                f"{key}_max": _round(max(values, default=None))}

    def total(items, key, of=sum):
        values = [i.get(key) for i in items]
        return None if any(v is None for v in values) else of(values) if values else 0
    in_handovers = [r["tcp"] for r in rows if r.get("tcp")]
    return {**spread("stall_ms"), **spread("stall_beyond_link_layer_ms"),
            "throughput_mbps_p50": {
                name: _round(percentile([f["throughput_mbps"][name] for f in figures], 50))
                for name in ("before", "around", "after")},
            # The worst handover's: a median hides the one that stalled.
            "throughput_mbps_min": {
                name: _round(min((f["throughput_mbps"][name] for f in figures), default=None))
                for name in ("before", "around", "after")},
            "retransmits_in_handovers": total(in_handovers, "retransmits"),
            "timeouts_in_handovers": total(in_handovers, "timeouts"),
            "ns_timeouts_in_handovers": total(in_handovers, "ns_timeouts"),
            "retransmits": total(tcp_streams, "total_retrans"),
            "timeouts": total(tcp_streams, "total_rto"),
            # The namespace's counters, one namespace (the correspondent's)
            # whichever stream sampled them: the widest sample, not a sum.
            "ns_timeouts": total(tcp_streams, "ns_timeouts", max),
            "ns_retrans_segs": total(tcp_streams, "ns_retrans_segs", max),
            "ns_loss_probes": total(tcp_streams, "ns_loss_probes", max),
            "timeout_wall_ns": sorted(at for s in tcp_streams for at in s.get("timeout_wall_ns")
                                      or [])}


def crossing_summary(rows: list[dict]) -> dict:
    """The handovers of one kind (intra- or inter-domain), from their rows:
    the packets sent during them, and over those that succeeded the
    interruption and what it was beyond the link-layer switch."""
    good = [r for r in rows if r["ok"]]

    def spread(key: str) -> dict:
        values = [r.get(key) for r in good if r.get(key) is not None]
        return {f"{key}_p50": _round(percentile(values, 50)),
                f"{key}_max": _round(max(values, default=None))}
    return {"handovers": len(rows), "failed": len(rows) - len(good),
            **{key: sum(r[field] for r in rows)
               for key, field in (("sent", "sent"), ("received", "received"), ("lost", "lost"),
                                  ("duplicates", "duplicates"), ("reordered", "reordered"))},
            **spread("interruption_ms"), **spread("beyond_link_layer_ms")}


def _round(value, digits: int = 3):
    return None if value is None else round(value, digits)


def ratio(results: dict, slow: str = REACTIVE, fast: str = MPA_BUFFER) -> float | None:
    """How many times ``slow``'s median interruption is ``fast``'s."""
    modes = results.get("modes", {})
    try:
        a = modes[slow]["summary"]["interruption_ms_p50"]
        b = modes[fast]["summary"]["interruption_ms_p50"]
    except KeyError:
        return None
    return None if not a or not b else round(a / b, 1)


def table(results: dict) -> str:
    """The comparison on stdout: one row per mode, RFC 6252's figure beside
    it; then each mode's intra- and inter-domain handovers apart."""
    head = ("mode", "handovers", "sent", "lost", "dup", "reord",
            "interruption p50", "max", "RFC 6252 Appendix C.5")
    rows = []
    modes = [m for m in MODES if m in results.get("modes", {})]
    for mode in modes:
        s = results["modes"][mode]["summary"]
        rows.append((LABELS[mode], _handovers(s), str(s["sent"]), str(s["lost"]),
                     str(s["duplicates"]), str(s["reordered"]),
                     _duration(s["interruption_ms_p50"]), _duration(s["interruption_ms_max"]),
                     RFC_FIGURES[mode]))
    out = _columns(head, rows, right={1, 2, 3, 4, 5, 6, 7})
    split = [(LABELS[mode], CROSSING_LABELS[name], _handovers(c), str(c["lost"]),
              str(c["duplicates"]), str(c["reordered"]), _duration(c["interruption_ms_p50"]),
              _duration(c["beyond_link_layer_ms_p50"]), _duration(c["beyond_link_layer_ms_max"]))
             for mode in modes for name, _ in CROSSINGS
             for c in [results["modes"][mode]["summary"].get(name)] if c and c["handovers"]]
    if split:
        out += ["", "Intra- and inter-domain handovers (the packets sent during them; the "
                "interruption beyond the link-layer switch):",
                *_columns(("mode", "", "handovers", "lost", "dup", "reord",
                           "interruption p50", "beyond L2 p50", "max"), split,
                          right={2, 3, 4, 5, 6, 7, 8})]
    out += _tcp_table(results, modes) + _per_mn_table(results, modes)
    factor = ratio(results)
    if factor is not None:
        out.append(f"\nreactive's median interruption is {factor:g} times mpa_buffer's.")
    return "\n".join(out)


def _tcp_table(results: dict, modes: list[str]) -> list[str]:
    rows = []
    for mode in modes:
        t = results["modes"][mode]["summary"].get("tcp")
        if not t:
            continue
        put = t["throughput_mbps_p50"]
        worst = t.get("throughput_mbps_min", {}).get("around")
        rows.append((LABELS[mode], _duration(t["stall_ms_p50"]), _duration(t["stall_ms_max"]),
                     _duration(t["stall_beyond_link_layer_ms_max"]),
                     " / ".join("-" if put[k] is None else f"{put[k]:g}"
                                for k in ("before", "around", "after")),
                     "-" if worst is None else f"{worst:g}",
                     _count(t["retransmits"]), _count(t.get("ns_loss_probes")),
                     _count(t["timeouts"]), _count(t["ns_timeouts"])))
    if not rows:
        return []
    return ["", "TCP across the handovers (stall: the longest gap in data at the MN; "
            "throughput in Mbit/s, median before / around / after, and the worst around; "
            "over the whole streams "
            "the retransmissions, of which tail loss probes, and the timeouts (RTOs), the "
            "socket's and TcpExt TCPTimeouts):",
            *_columns(("mode", "stall p50", "max", "beyond L2 max", "throughput",
                       "worst", "retrans", "TLPs", "RTOs", "TCPTimeouts"), rows,
                      right={1, 2, 3, 5, 6, 7, 8, 9})]


def _per_mn_table(results: dict, modes: list[str]) -> list[str]:
    rows = [(LABELS[mode], mn, _handovers(m), str(m["sent"]), str(m["lost"]),
             str(m["duplicates"]), str(m["reordered"]), _duration(m["interruption_ms_p50"]),
             _duration(m["interruption_ms_max"]))
            for mode in modes
            for mn, m in (results["modes"][mode]["summary"].get("per_mn") or {}).items()]
    if not rows:
        return []
    together = [f"{LABELS[mode]}: {m['moments']} moments; the links went down within "
                f"{_duration(m['link_down_spread_ms_p50'])} of each other (median), "
                f"{_duration(m['link_down_spread_ms_max'])} at worst; all down at one instant "
                f"in {m['all_links_down_at_once']}"
                for mode in modes
                for m in [results["modes"][mode]["summary"].get("moments")] if m]
    return ["", "Per mobile node (its whole stream):",
            *_columns(("mode", "MN", "handovers", "sent", "lost", "dup", "reord",
                       "interruption p50", "max"), rows, right={2, 3, 4, 5, 6, 7, 8}),
            *together]


def _count(value) -> str:
    return "-" if value is None else str(value)


def _handovers(s: dict) -> str:
    return f"{s['handovers']}" + (f" ({s['failed']} failed)" if s["failed"] else "")


def _columns(head: tuple, rows: list[tuple], right: set[int]) -> list[str]:
    """``head`` and ``rows`` in aligned columns (``right``: right-aligned ones)."""
    widths = [max(len(r[i]) for r in [head, *rows]) for i in range(len(head))]

    def line(cells):
        return "  ".join(c.rjust(w) if i in right else c.ljust(w)
                         for i, (c, w) in enumerate(zip(cells, widths))).rstrip()
    return [line(head), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _duration(ms) -> str:
    if ms is None:
        return "-"
    return f"{ms / 1000:.2f} s" if ms >= 1000 else f"{ms:.1f} ms"

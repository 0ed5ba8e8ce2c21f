"""PNG plots of a handover experiment's ``results.json`` (matplotlib, no display).

* ``timeline-MODE.png``: for each handover of the mode, the sequence number
  of every packet against its arrival time, in ms from the moment the
  outage began (the link-layer switch going down, or the link cut); the
  longest gap is shaded.  Buffered packets show as a steep run after the
  gap, duplicates as points below the line.
* ``timelines.png``: the handover with the median interruption of each
  mode, side by side.
* ``summary.png``: per mode, the interruption (median, with the worst as
  a whisker; log scale: the modes differ by orders of magnitude) and the
  packets lost and duplicated.
* ``domains.png``: per mode, intra-domain and inter-domain handovers side
  by side: the interruption beyond the link-layer switch (median, whisker
  to the worst; log scale) and the packets lost, duplicated and reordered
  during them.  Drawn when some handover's domains are known.
* ``tcp.png`` (a TCP stream): per mode, each handover's longest stall
  beside its link-layer switch, and the median throughput before, around
  and after the handovers, the retransmissions and RTOs in the title.
* ``mobile-nodes.png`` (more than one MN): per mode and MN, the packets
  lost, duplicated and reordered, and the median interruption.
"""

from __future__ import annotations

import math
import os

from mpa_lab.experiment.results import CROSSING_LABELS, CROSSINGS, LABELS

COLUMNS = 5


def _pyplot():
    import matplotlib
    matplotlib.use("Agg")   # files only, whether or not a display is set
    import matplotlib.pyplot as plt
    return plt


def write_plots(results: dict, out_dir: str) -> list[str]:
    """Every plot of ``results`` in ``out_dir``; their paths."""
    plt = _pyplot()
    os.makedirs(out_dir, exist_ok=True)
    paths = []
    modes = {m: body for m, body in results.get("modes", {}).items() if body.get("handovers")}
    for mode, body in modes.items():
        paths.append(_save(plt, _mode_timelines(plt, mode, body["handovers"]),
                           os.path.join(out_dir, f"timeline-{mode}.png")))
    if modes:
        paths.append(_save(plt, _median_timelines(plt, modes),
                           os.path.join(out_dir, "timelines.png")))
        paths.append(_save(plt, _summary(plt, results, modes),
                           os.path.join(out_dir, "summary.png")))
    if any(r.get("inter_domain") is not None for body in modes.values()
           for r in body["handovers"]):
        paths.append(_save(plt, _domains(plt, results, modes),
                           os.path.join(out_dir, "domains.png")))
    tcp = {m: body for m, body in modes.items() if (body.get("summary") or {}).get("tcp")}
    if tcp:
        paths.append(_save(plt, _tcp(plt, tcp), os.path.join(out_dir, "tcp.png")))
    many = {m: body for m, body in modes.items() if (body.get("summary") or {}).get("per_mn")}
    if many:
        paths.append(_save(plt, _mobile_nodes(plt, many),
                           os.path.join(out_dir, "mobile-nodes.png")))
    return paths


def _tcp(plt, modes: dict):
    """Per mode (a row): the stalls per handover, the throughput windows."""
    figure, axes = plt.subplots(len(modes), 2, figsize=(12, 3.4 * len(modes)), squeeze=False)
    for (mode, body), (left, right) in zip(modes.items(), axes):
        rows = [r for r in body["handovers"] if r.get("tcp")]
        x = [r["index"] for r in rows]
        left.bar(x, [r["tcp"]["stall_ms"] or 0 for r in rows], color="tab:red",
                 label="longest stall")
        left.plot(x, [r["link_layer_ms"] or 0 for r in rows], "k_", markersize=14,
                  label="link-layer switch")
        left.set_xticks(x)
        left.set(xlabel="handover", ylabel="ms", title=f"{LABELS.get(mode, mode)}: stall")
        left.legend(fontsize=8)
        t = body["summary"]["tcp"]
        names = ("before", "around", "after")
        right.bar(names, [t["throughput_mbps_p50"][n] or 0 for n in names], color="tab:blue")
        right.set(ylabel="Mbit/s (median)",
                  title=f"throughput; retransmissions {t['retransmits']}, "
                        f"RTOs {t['timeouts']}, TCPTimeouts {t['ns_timeouts']}")
    figure.tight_layout()
    return figure


def _mobile_nodes(plt, modes: dict):
    """Per mode (a row): each MN's lost, duplicated and reordered packets,
    and its median interruption."""
    figure, axes = plt.subplots(len(modes), 2, figsize=(12, 3.4 * len(modes)), squeeze=False)
    for (mode, body), (left, right) in zip(modes.items(), axes):
        per = body["summary"]["per_mn"]
        names = list(per)
        x = range(len(names))
        for offset, (key, color) in enumerate((("lost", "tab:red"), ("duplicates", "tab:orange"),
                                               ("reordered", "tab:purple"))):
            left.bar([i + (offset - 1) * 0.27 for i in x], [per[n][key] for n in names],
                     width=0.27, color=color, label=key)
        left.set_xticks(list(x), names, rotation=45, fontsize=8)
        left.set(ylabel="packets", title=f"{LABELS.get(mode, mode)}: per MN")
        left.legend(fontsize=8)
        right.bar(names, [per[n]["interruption_ms_p50"] or 0 for n in names], color="tab:green")
        right.tick_params(axis="x", rotation=45, labelsize=8)
        right.set(ylabel="ms", title="median interruption")
    figure.tight_layout()
    return figure


def _save(plt, figure, path: str) -> str:
    figure.savefig(path, dpi=100)
    plt.close(figure)
    return path


def _draw(ax, row: dict, title: str) -> None:
    points = row.get("timeline") or {}
    ms, seq = points.get("ms") or [], points.get("seq") or []
    ax.plot(ms, seq, ".", markersize=3, color="tab:blue")
    ax.axvline(0, color="tab:red", linewidth=0.8, label="outage begins")
    gap = _gap(points)
    if gap is not None:
        ax.axvspan(*gap, color="tab:orange", alpha=0.25, label="longest gap")
    ax.set_title(title, fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(True, linewidth=0.3)


def _gap(points: dict) -> tuple[float, float] | None:
    """The longest gap between two arrivals of the timeline, in its ms."""
    ms = points.get("ms") or []
    if len(ms) < 2:
        return None
    widest = max(range(1, len(ms)), key=lambda i: ms[i] - ms[i - 1])
    return ms[widest - 1], ms[widest]


def _caption(row: dict) -> str:
    gap = row.get("interruption_ms")
    gap = "-" if gap is None else (f"{gap / 1000:.2f} s" if gap >= 1000 else f"{gap:.0f} ms")
    return (f"{row['index']}: {row['from']} -> {row['to']}\n"
            f"gap {gap}, lost {row['lost']}, dup {row['duplicates']}"
            + ("" if row.get("ok", True) else " (failed)"))


def _mode_timelines(plt, mode: str, rows: list[dict]):
    columns = min(COLUMNS, len(rows))
    lines = math.ceil(len(rows) / columns)
    figure, axes = plt.subplots(lines, columns, figsize=(3.2 * columns, 2.6 * lines + 0.6),
                                squeeze=False)
    for ax, row in zip(axes.flat, rows):
        _draw(ax, row, _caption(row))
    for ax in list(axes.flat)[len(rows):]:
        ax.set_visible(False)
    for ax in axes[-1]:
        ax.set_xlabel("ms from the outage's start", fontsize=7)
    for ax in axes[:, 0]:
        ax.set_ylabel("sequence number", fontsize=7)
    figure.suptitle(f"{LABELS.get(mode, mode)}: packet arrivals around each handover",
                    fontsize=10)
    figure.tight_layout()
    return figure


def _median_row(rows: list[dict]) -> dict:
    measured = sorted((r for r in rows if r.get("interruption_ms") is not None),
                      key=lambda r: r["interruption_ms"])
    return measured[(len(measured) - 1) // 2] if measured else rows[0]


def _median_timelines(plt, modes: dict):
    figure, axes = plt.subplots(1, len(modes), figsize=(3.4 * len(modes), 3.2), squeeze=False)
    for ax, (mode, body) in zip(axes[0], modes.items()):
        row = _median_row(body["handovers"])
        _draw(ax, row, f"{LABELS.get(mode, mode)}\n{_caption(row)}")
        ax.set_xlabel("ms from the outage's start", fontsize=7)
    axes[0][0].set_ylabel("sequence number", fontsize=7)
    axes[0][0].legend(fontsize=6, loc="upper left")
    figure.suptitle("The median handover of each mode", fontsize=10)
    figure.tight_layout()
    return figure


def _summary(plt, results: dict, modes: dict):
    names = list(modes)
    labels = [LABELS.get(m, m).replace(" (", "\n(") for m in names]
    summaries = [modes[m]["summary"] or {} for m in names]
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    medians = [s.get("interruption_ms_p50") or 0 for s in summaries]
    worst = [max((s.get("interruption_ms_max") or 0) - p, 0) for s, p in zip(summaries, medians)]
    from matplotlib.ticker import FuncFormatter

    bars = left.bar(labels, medians, yerr=[[0] * len(worst), worst], capsize=4,
                    color="tab:blue")
    left.set_yscale("log")
    left.set_ylim(bottom=1)
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.set_ylabel("interruption (ms, log scale)")
    left.set_title("Interruption per handover: median, whisker to the worst", fontsize=9)
    left.bar_label(bars, [f"{v:.0f} ms" if v else "" for v in medians], label_type="center",
                   color="white", fontsize=7)
    width = 0.4
    xs = range(len(names))
    lost = [s.get("lost", 0) for s in summaries]
    duplicates = [s.get("duplicates", 0) for s in summaries]
    for offset, values, label, color in ((-width / 2, lost, "lost", "tab:red"),
                                         (width / 2, duplicates, "duplicated", "tab:gray")):
        bars = right.bar([x + offset for x in xs], values, width, label=label, color=color)
        right.bar_label(bars, [str(v) for v in values], fontsize=7)
    right.set_ylim(bottom=0, top=max([*lost, *duplicates, 1]) * 1.15)
    right.set_xticks(list(xs), labels)
    right.set_ylabel("packets")
    right.set_title("Packets lost and duplicated over all handovers", fontsize=9)
    right.legend(fontsize=8)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", linewidth=0.3)
    traffic = results.get("settings", {}).get("traffic", {})
    figure.suptitle(f"{results.get('scenario')}: {traffic.get('rate_pps')} packets/s, "
                    f"commit {results.get('commit')}", fontsize=10)
    figure.tight_layout()
    return figure


def _domains(plt, results: dict, modes: dict):
    """Intra- and inter-domain handovers of each mode, side by side."""
    from matplotlib.ticker import FuncFormatter

    names = list(modes)
    xs = range(len(names))
    figure, (left, right) = plt.subplots(1, 2, figsize=(12, 4.2))
    width = 0.38
    colours = {"intra_domain": "tab:blue", "inter_domain": "tab:purple"}
    tallest = 1
    for k, (crossing, _) in enumerate(CROSSINGS):
        parts = [(modes[m]["summary"] or {}).get(crossing) or {} for m in names]
        medians = [p.get("beyond_link_layer_ms_p50") or 0 for p in parts]
        worst = [max((p.get("beyond_link_layer_ms_max") or 0) - v, 0)
                 for p, v in zip(parts, medians)]
        offset = (k - 0.5) * width
        bars = left.bar([x + offset for x in xs], [max(v, 0) for v in medians], width,
                        yerr=[[0] * len(worst), worst], capsize=3, color=colours[crossing],
                        label=CROSSING_LABELS[crossing])
        left.bar_label(bars, [f"{v:.0f} ms" if v else "" for v in medians], fontsize=6)
        # Lost, duplicated and reordered: three thin bars per kind of handover.
        for j, (key, hatch) in enumerate((("lost", ""), ("duplicates", "//"),
                                          ("reordered", ".."))):
            values = [p.get(key, 0) for p in parts]
            tallest = max([tallest, *values])
            bars = right.bar([x + offset + (j - 1) * width / 3 for x in xs], values,
                             width / 3, color=colours[crossing], hatch=hatch,
                             edgecolor="white",
                             label=f"{CROSSING_LABELS[crossing]}: {key}")
            right.bar_label(bars, [str(v) for v in values], fontsize=6)
    # Each kind's count under its mode: the packets are totals over its handovers.
    counts = [" / ".join(f"{((modes[m]['summary'] or {}).get(c) or {}).get('handovers', 0)} "
                         f"{CROSSING_LABELS[c].split('-')[0]}" for c, _ in CROSSINGS)
              for m in names]
    labels = [LABELS.get(m, m).replace(" (", "\n(") + f"\n{n}" for m, n in zip(names, counts)]
    left.set_yscale("log")
    left.set_ylim(bottom=1)
    left.yaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    left.set_ylabel("beyond the link-layer switch (ms, log scale)")
    left.set_title("Interruption beyond the link-layer switch: median, whisker to the worst",
                   fontsize=9)
    right.set_ylim(bottom=0, top=tallest * 1.2)
    right.set_ylabel("packets")
    right.set_title("Packets lost, duplicated (//) and reordered (..) during the handovers "
                    "(totals)", fontsize=9)
    for ax in (left, right):
        ax.set_xticks(list(xs), labels)
        ax.tick_params(labelsize=7)
        ax.grid(True, axis="y", linewidth=0.3)
        ax.legend(fontsize=6)
    figure.suptitle(f"{results.get('scenario')}: intra-domain and inter-domain handovers, "
                    f"commit {results.get('commit')}", fontsize=10)
    figure.tight_layout()
    return figure

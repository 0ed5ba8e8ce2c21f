"""Benchmark: where a buffered handover's interruption goes, by the wire.

The demo scenario's ``mpa_buffer`` mode (``mpa-lab run``'s code, a fresh
controller and lab), mn1 ping-ponging net-a1 <-> net-a2 under a UDP stream
at ``--rate`` packets/s, the modelled link layer holding each switch down
4 ms, while ``dumpcap`` captures every root-namespace interface: the OVS
ports (what enters and leaves the switches) and the OpenFlow channel on the
loopback.  Per handover, on one clock (ms, 0 = the MN's link going down):

* ``last_packet``: the last stream packet the MN received before the gap;
* ``answer``: the answer to pre-switch leaving the switch towards the MN;
* ``link_up``: the link layer up again (the lab's clock);
* ``announcement``: the MN's gratuitous ARP entering the new PoA's port;
* ``packet_in``: that ARP in a packet-in on the OpenFlow channel (Open
  vSwitch's time: ``packet_in - announcement``);
* ``packet_out``: the first packet-out of a stream packet after it (the
  controller's time, Ryu included: ``packet_out - packet_in``);
* ``first_packet``: the first stream packet the MN received after the gap.

Run as root (the capture reads every interface):

    .venv/bin/python benchmarks/handover_gap.py [--rate 1000] [--handovers 12]
        [--poa-ports per_station|stay_up] [--out results/bench/handover_gap.json]
"""

from __future__ import annotations

import os
import signal
import subprocess
import tempfile
import time

from lab_runs import need_root, parser, run_mode, spread
from common import stamped, write

from mpa_protocol.messages import SIGNALLING_PORT

TARGETS = ("ap-a2-1", "ap-a1-1")
FIELDS = ("frame.time_epoch", "sll.pkttype", "openflow_v4.type", "arp.src.proto_ipv4",
          "arp.dst.proto_ipv4", "udp.srcport", "udp.dstport")
BROADCAST, OUTGOING = "1", "4"          # sll_pkttype
PACKET_IN, PACKET_OUT = "10", "13"      # OpenFlow 1.3 message types


def capture(path: str, ofp_port: int, log) -> subprocess.Popen:
    """dumpcap writing to ``path`` (its messages to ``log``), once it runs."""
    bpf = f"arp or (udp port {SIGNALLING_PORT}) or (tcp port {ofp_port})"
    dumpcap = subprocess.Popen(["dumpcap", "-q", "-i", "any", "-f", bpf, "-w", path],
                               stdout=subprocess.DEVNULL, stderr=log)
    for _ in range(50):          # it creates the file once it captures
        if dumpcap.poll() is not None:
            log.seek(0)
            raise SystemExit(f"dumpcap ended at once: {log.read().decode(errors='replace')}")
        if os.path.exists(path):
            return dumpcap
        time.sleep(0.1)
    dumpcap.kill()
    raise SystemExit("dumpcap wrote nothing within 5 s")


def frames(path: str) -> list[dict]:
    out = subprocess.run(["tshark", "-r", path, "-T", "fields",
                          *[a for f in FIELDS for a in ("-e", f)]],
                         capture_output=True, text=True, check=True).stdout
    rows = []
    for line in out.splitlines():
        cells = dict(zip(FIELDS, line.split("\t")))
        cells["t"] = float(cells.pop("frame.time_epoch")) * 1000
        rows.append(cells)
    return rows


def announcements(rows: list[dict]) -> list[int]:
    """Indexes of the MN's gratuitous ARPs as they enter a switch port."""
    return [i for i, r in enumerate(rows)
            if r["sll.pkttype"] == BROADCAST and r["arp.src.proto_ipv4"]
            and r["arp.src.proto_ipv4"] == r["arp.dst.proto_ipv4"]
            and r["arp.src.proto_ipv4"] != "0.0.0.0" and not r["openflow_v4.type"]]


def after(rows, start: int, wanted) -> float | None:
    return next((r["t"] for r in rows[start:start + 2000] if wanted(r)), None)


def breakdown(row: dict, rows: list[dict], announced: list[int],
              stream_port: int) -> dict | None:
    """One handover's moments (ms since its timeline's zero: its link going
    down), from the results' row, the capture and the capture's
    announcements (:func:`announcements`); the stream is to ``stream_port``."""
    zero = row["timeline"]["zero_wall_ns"] / 1e6
    times = row["timeline"]["ms"]
    if row.get("link_up_wall_ns") is None or len(times) < 2:
        return None
    link_up = row["link_up_wall_ns"] / 1e6 - zero
    at = [i for i in announced if 0 <= rows[i]["t"] - zero <= 1000]
    if not at:
        return None
    i = at[0]
    address = rows[i]["arp.src.proto_ipv4"]
    packet_in = after(rows, i, lambda r: r["openflow_v4.type"].split(",")[0] == PACKET_IN
                      and r["arp.src.proto_ipv4"] == address)
    packet_out = after(rows, i, lambda r: PACKET_OUT in r["openflow_v4.type"].split(",")
                       and r["udp.dstport"] == str(stream_port)
                       and (packet_in is None or r["t"] > packet_in))
    answer = None
    for r in reversed(rows[:i]):
        if r["t"] < zero - 100:
            break
        if r["t"] <= zero and r["sll.pkttype"] == OUTGOING \
                and r["udp.srcport"] == str(SIGNALLING_PORT):
            answer = r["t"]
            break
    gap = max(range(1, len(times)), key=lambda k: times[k] - times[k - 1])
    def rel(t):
        return None if t is None else round(t - zero, 3)
    return {"index": row["index"], "from": row["from"], "to": row["to"],
            "last_packet": round(times[gap - 1], 3), "answer": rel(answer),
            "link_up": round(link_up, 3), "announcement": rel(rows[i]["t"]),
            "packet_in": rel(packet_in), "packet_out": rel(packet_out),
            "first_packet": round(times[gap], 3),
            "beyond_link_layer_ms": row["beyond_link_layer_ms"]}


def summary(moments: list[dict]) -> dict:
    def part(a, b):
        return spread([round(m[b] - m[a], 3) for m in moments
                       if m[a] is not None and m[b] is not None], 50)
    return {"handovers": len(moments),
            "beyond_link_layer_ms": spread([m["beyond_link_layer_ms"] for m in moments], 50),
            "last_packet_to_link_down_ms": spread([-m["last_packet"] for m in moments], 50),
            "answer_to_link_down_ms": spread([-m["answer"] for m in moments
                                              if m["answer"] is not None], 50),
            "link_up_to_announcement_ms": part("link_up", "announcement"),
            "announcement_to_packet_in_ms": part("announcement", "packet_in"),
            "packet_in_to_packet_out_ms": part("packet_in", "packet_out"),
            "packet_out_to_first_packet_ms": part("packet_out", "first_packet")}


def main() -> int:
    p = parser(__doc__, "results/bench/handover_gap.json")
    p.add_argument("--rate", type=int, default=1000)
    p.add_argument("--handovers", type=int, default=12)
    args = p.parse_args()
    need_root("handover_gap")
    with tempfile.TemporaryDirectory(prefix="mpa-gap-") as work, \
            tempfile.TemporaryFile() as log:
        pcap = os.path.join(work, "handover.pcapng")
        dumpcap = capture(pcap, args.ofp_port, log)
        try:
            results = run_mode("mpa_buffer", args.handovers, args.rate, args, targets=TARGETS)
        finally:
            dumpcap.send_signal(signal.SIGINT)
            dumpcap.wait(30)
        rows = frames(pcap)
    handovers = results["modes"]["mpa_buffer"]["handovers"]
    announced = announcements(rows)
    port = results["settings"]["traffic"]["port"]
    moments = [m for m in (breakdown(h, rows, announced, port) for h in handovers if h["ok"])
               if m]
    out = stamped({"rate_pps": args.rate, "poa_ports": results["settings"]["poa_ports"],
                   "summary": summary(moments), "handovers": moments})
    print(out["summary"])
    write(args.out, out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

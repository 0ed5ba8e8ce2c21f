"""benchmarks/handover_gap.py's reading of a capture, on a hand-made one:
which frames are the handover's moments, on the handover's own clock."""

import os
import sys

from support.paths import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))
import handover_gap  # noqa: E402

ZERO_MS = 1_000_000.0          # the link went down (wall clock, ms)


def frame(t_ms, pkttype="", of_type="", arp=("", ""), udp=("", "")):
    return {"t": ZERO_MS + t_ms, "sll.pkttype": pkttype, "openflow_v4.type": of_type,
            "arp.src.proto_ipv4": arp[0], "arp.dst.proto_ipv4": arp[1],
            "udp.srcport": udp[0], "udp.dstport": udp[1]}


NCOA = ("10.1.2.100", "10.1.2.100")
CAPTURE = [
    frame(-1.5, handover_gap.OUTGOING, udp=("7664", "40001")),       # the answer, out
    frame(-0.5, handover_gap.OUTGOING, udp=("5001", "5001")),        # no signalling
    frame(5.0, handover_gap.BROADCAST, arp=NCOA),                    # the announcement
    frame(5.2, "0", handover_gap.PACKET_OUT, udp=("9", "5001")),     # before the packet-in
    frame(9.0, "0", handover_gap.PACKET_IN, arp=NCOA),               # its packet-in
    frame(9.5, "0", handover_gap.PACKET_IN, udp=("9", "5001")),
    frame(11.0, "0", "14," + handover_gap.PACKET_OUT, udp=("9", "5001")),
]
ROW = {"index": 1, "from": "net-a1", "to": "net-a2", "beyond_link_layer_ms": 9.0,
       "link_down_wall_ns": int(ZERO_MS * 1e6), "link_up_wall_ns": int((ZERO_MS + 4.4) * 1e6),
       "timeline": {"zero_wall_ns": int(ZERO_MS * 1e6), "ms": [-3.0, -2.0, 12.0, 13.0]}}


def test_a_handovers_moments_are_read_from_the_capture():
    moments = handover_gap.breakdown(ROW, CAPTURE, handover_gap.announcements(CAPTURE), 5001)
    assert moments == {"index": 1, "from": "net-a1", "to": "net-a2", "last_packet": -2.0,
                       "answer": -1.5, "link_up": 4.4, "announcement": 5.0, "packet_in": 9.0,
                       "packet_out": 11.0, "first_packet": 12.0, "beyond_link_layer_ms": 9.0}
    summary = handover_gap.summary([moments])
    assert summary["announcement_to_packet_in_ms"]["p50"] == 4.0
    assert summary["packet_in_to_packet_out_ms"]["p50"] == 2.0
    assert summary["last_packet_to_link_down_ms"]["p50"] == 2.0


def test_a_handover_without_an_announcement_in_the_capture_has_no_moments():
    assert handover_gap.breakdown(ROW, CAPTURE[:2], handover_gap.announcements(CAPTURE[:2]), 5001) \
        is None

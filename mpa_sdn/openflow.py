"""Builders for OpenFlow 1.3 messages with no datapath attached.

The core returns these; the Ryu shell attaches the datapath when it sends
them.  Ryu's ofproto parser is a plain library (no event loop), so the core
may use it.  Also here: a canonical form of a flow (table, priority, match,
instructions) used to compare what a switch holds with what it should hold.
"""

from __future__ import annotations

from dataclasses import dataclass

from ryu.ofproto import ether, nicira_ext
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import matches

# Punted packets carry the whole frame: OVS never buffers in the switch.
CONTROLLER_MAX_LEN = ofp.OFPCML_NO_BUFFER


@dataclass
class Send:
    """Messages for one switch.

    ``barrier`` asks the shell to follow them with a barrier; ``confirm``
    also asks it to report the barrier's reply back with this tag.
    """

    dpid: int
    messages: list
    barrier: bool = False
    confirm: str | None = None


def apply(*actions) -> list:
    return [parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, list(actions))]


def goto(table: int) -> list:
    return [parser.OFPInstructionGotoTable(int(table))]


def output(port: int):
    return parser.OFPActionOutput(port, 0 if port != ofp.OFPP_CONTROLLER else CONTROLLER_MAX_LEN)


def to_controller():
    return output(ofp.OFPP_CONTROLLER)


def set_field(**kwargs):
    return parser.OFPActionSetField(**kwargs)


def dec_ttl():
    return parser.OFPActionDecNwTtl()


def push_mpls(label: int) -> list:
    """Into a label-switched path: the IPv4 packet gets one MPLS label."""
    return [parser.OFPActionPushMpls(ether.ETH_TYPE_MPLS), set_field(mpls_label=label)]


def pop_mpls():
    return parser.OFPActionPopMpls(ether.ETH_TYPE_IP)


def reg_load(field: str, n_bits: int, value: int):
    """Write a field (Nicira extension): for fields OpenFlow 1.3 cannot set."""
    return parser.NXActionRegLoad(ofs_nbits=nicira_ext.ofs_nbits(0, n_bits - 1), dst=field,
                                  value=value)


def reg_move(src: str, dst: str, n_bits: int):
    """Copy a header field into another (Nicira extension, supported by OVS)."""
    return parser.NXActionRegMove(src_field=src, dst_field=dst, n_bits=n_bits)


def match(**fields):
    return matches.build(**fields)


def flow_add(table: int, priority: int, match_, instructions: list, cookie: int,
             idle_timeout: int = 0, hard_timeout: int = 0, notify_removal: bool = False):
    flags = ofp.OFPFF_SEND_FLOW_REM if notify_removal else 0
    return parser.OFPFlowMod(
        None, cookie=cookie, table_id=int(table), command=ofp.OFPFC_ADD,
        idle_timeout=idle_timeout, hard_timeout=hard_timeout, priority=priority,
        buffer_id=ofp.OFP_NO_BUFFER, flags=flags, match=match_, instructions=instructions)


def flow_delete_strict(table: int, priority: int, match_, cookie: int = 0, cookie_mask: int = 0):
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=cookie_mask, table_id=int(table),
        command=ofp.OFPFC_DELETE_STRICT, priority=priority, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=match_)


def flow_delete_cookie(cookie: int, cookie_mask: int, table: int = ofp.OFPTT_ALL):
    return parser.OFPFlowMod(
        None, cookie=cookie, cookie_mask=cookie_mask, table_id=int(table),
        command=ofp.OFPFC_DELETE, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch())


def packet_out(data: bytes, actions: list, in_port: int = ofp.OFPP_CONTROLLER):
    return parser.OFPPacketOut(None, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=actions, data=data)


def flow_stats_request():
    return parser.OFPFlowStatsRequest(None, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                      0, 0, parser.OFPMatch())


def is_delete(msg) -> bool:
    return isinstance(msg, parser.OFPFlowMod) and msg.command in (
        ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT)


# -- canonical flows -----------------------------------------------------------

@dataclass(frozen=True)
class FlowKey:
    """What makes a flow entry distinct in a table (OpenFlow 1.3 section 6.4)."""

    table_id: int
    priority: int
    match: tuple


@dataclass(frozen=True)
class FlowRecord:
    key: FlowKey
    cookie: int
    instructions: tuple
    idle_timeout: int = 0
    flags: int = 0


def _normal(value):
    if isinstance(value, str):
        return value.lower()
    if isinstance(value, (tuple, list)):
        return tuple(_normal(v) for v in value)
    return value


def canonical_match(m) -> tuple:
    return tuple(sorted((name, _normal(value)) for name, value in m.items()))


def canonical_instructions(instructions) -> tuple:
    """Instructions as wire bytes, sorted by type (their execution order is fixed)."""
    encoded = []
    for inst in instructions:
        buf = bytearray()
        inst.serialize(buf, 0)
        encoded.append((inst.type, bytes(buf)))
    return tuple(sorted(encoded))


def key_of(msg) -> FlowKey:
    """What identifies a flow-mod's flow (a delete's too)."""
    return FlowKey(msg.table_id, msg.priority, canonical_match(msg.match))


def record_of(msg) -> FlowRecord:
    """The canonical form of a flow-mod (ADD) or of a flow-stats entry."""
    return FlowRecord(
        key=FlowKey(msg.table_id, msg.priority, canonical_match(msg.match)),
        cookie=msg.cookie, instructions=canonical_instructions(msg.instructions),
        idle_timeout=msg.idle_timeout, flags=msg.flags & ofp.OFPFF_SEND_FLOW_REM)

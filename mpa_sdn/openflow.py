"""Builders for OpenFlow 1.3 messages with no datapath attached.

The core returns these; the Ryu shell attaches the datapath when it sends
them.  Ryu's ofproto parser is a plain library (no event loop), so the core
may use it.  Also here: a canonical form of a flow (table, priority, match,
instructions) used to compare what a switch holds with what it should hold.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ryu.ofproto import ether, nicira_ext
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import flow_templates as templates
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
    return [templates.apply_actions(actions)]


def goto(table: int) -> list:
    return [templates.goto_table(int(table))]


def output(port: int):
    return templates.output(port, 0 if port != ofp.OFPP_CONTROLLER else CONTROLLER_MAX_LEN)


def to_controller():
    return output(ofp.OFPP_CONTROLLER)


def set_field(**kwargs):
    [(name, value)] = kwargs.items()
    return templates.set_field(name, value)


def dec_ttl():
    return templates.DEC_NW_TTL


def push_mpls(label: int) -> list:
    """Into a label-switched path: the IPv4 packet gets one MPLS label."""
    return [templates.push_mpls(ether.ETH_TYPE_MPLS), set_field(mpls_label=label)]


def pop_mpls():
    return templates.pop_mpls(ether.ETH_TYPE_IP)


@functools.lru_cache(maxsize=64)
def reg_load(field: str, n_bits: int, value: int):
    """Write a field (Nicira extension): for fields OpenFlow 1.3 cannot set."""
    return templates.of_ryu(parser.NXActionRegLoad(
        ofs_nbits=nicira_ext.ofs_nbits(0, n_bits - 1), dst=field, value=value))


@functools.lru_cache(maxsize=64)
def reg_move(src: str, dst: str, n_bits: int):
    """Copy a header field into another (Nicira extension, supported by OVS)."""
    return templates.of_ryu(parser.NXActionRegMove(src_field=src, dst_field=dst, n_bits=n_bits))


def match(**fields):
    return matches.build(**fields)


def flow_add(table: int, priority: int, match_, instructions: list, cookie: int,
             idle_timeout: int = 0, hard_timeout: int = 0, notify_removal: bool = False):
    flags = ofp.OFPFF_SEND_FLOW_REM if notify_removal else 0
    # out_port and out_group 0, as Ryu leaves them in an add (a switch ignores them there).
    return templates.flow_mod(ofp.OFPFC_ADD, int(table), priority, matches.wire(match_),
                              templates.instructions_wire(instructions), cookie, 0,
                              idle_timeout, hard_timeout, flags, out_port=0, out_group=0)


def flow_delete_strict(table: int, priority: int, match_, cookie: int = 0, cookie_mask: int = 0):
    return templates.flow_mod(ofp.OFPFC_DELETE_STRICT, int(table), priority,
                              matches.wire(match_), b"", cookie, cookie_mask)


def delete_strict_of(mod, cookie: int, cookie_mask: int):
    """The strict delete of the flow ``mod`` adds, scoped by ``cookie``."""
    if isinstance(mod, templates.FlowMod):
        return templates.delete_strict_of(mod, cookie, cookie_mask)
    return flow_delete_strict(mod.table_id, mod.priority, mod.match, cookie, cookie_mask)


def flow_delete_cookie(cookie: int, cookie_mask: int, table: int = ofp.OFPTT_ALL):
    # Priority as Ryu leaves it (a non-strict delete ignores it).
    return templates.flow_mod(ofp.OFPFC_DELETE, int(table), ofp.OFP_DEFAULT_PRIORITY,
                              _EMPTY_MATCH, b"", cookie, cookie_mask)


def packet_out(data: bytes, actions: list, in_port: int = ofp.OFPP_CONTROLLER):
    return templates.packet_out(data, actions, in_port)


def flow_stats_request():
    return parser.OFPFlowStatsRequest(None, 0, ofp.OFPTT_ALL, ofp.OFPP_ANY, ofp.OFPG_ANY,
                                      0, 0, parser.OFPMatch())


def is_delete(msg) -> bool:
    return (isinstance(msg, (templates.FlowMod, parser.OFPFlowMod))
            and msg.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT))


messages_in = templates.messages_in
_PACKED = frozenset({templates.FlowMod, templates.PacketOut})
_NAMED = _PACKED | {templates.Serialized}


def message_name(msg) -> str:
    """What a message is, as Ryu names its class (the sent_* counters)."""
    return msg.name if type(msg) in _NAMED else type(msg).__name__


def matches_any(mod, name: str, values) -> bool:
    """Whether ``mod`` matches field ``name`` exactly on one of ``values``."""
    if not isinstance(mod, templates.FlowMod):
        return mod.match.get(name) in values
    tlvs = {tlv for _, tlv in templates.oxm_tlvs(mod.match_fields)}
    return any(templates.oxm(name, value)[1] in tlvs for value in values)


def on_the_wire(messages: list, datapath) -> list:
    """``messages`` as the shell hands them to ``datapath``, in their order:
    each run of ours (bytes already) as one Serialized, each of Ryu's given
    the datapath."""
    out, run = [], []
    for msg in messages:
        if type(msg) in _PACKED:
            run.append(msg)
            continue
        if run:
            out.append(templates.Serialized(datapath, run))
            run = []
        msg.datapath = datapath
        out.append(msg)
    if run:
        out.append(templates.Serialized(datapath, run))
    return out


_EMPTY_MATCH = templates.match_wire(())


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


# -- compact canonical flows: what the desired state and reconciliation compare ------

def flow_key(msg) -> bytes:
    """``key_of`` as bytes: table, priority and the match's fields in
    OXM-number order.  A flow-mod of ours, or a flow-stats entry."""
    if isinstance(msg, templates.FlowMod):
        return msg.key
    match = matches.wire(msg.match)
    length = int.from_bytes(match[2:4], "big")
    return (bytes((msg.table_id,)) + msg.priority.to_bytes(2, "big")
            + templates.canonical_oxms(match[4:length]))


def flow_record(msg) -> bytes:
    """``record_of`` less the key, as bytes: cookie, idle timeout, whether
    the switch reports the flow's removal, and the instructions."""
    if isinstance(msg, templates.FlowMod):
        body = msg.instructions_wire
    else:
        body = templates.instructions_wire(msg.instructions)
    return (msg.cookie.to_bytes(8, "big") + msg.idle_timeout.to_bytes(2, "big")
            + (msg.flags & ofp.OFPFF_SEND_FLOW_REM).to_bytes(2, "big")
            + templates.canonical_instructions(body))

"""OpenFlow 1.3 messages packed from byte templates, kept as their bytes.

Ryu builds a flow-mod as a tree of objects (the message, its match, each
instruction and action) and serializes the tree on every send: some 14 µs a
flow-mod even with the matches pre-built, and some 1.3 KiB of objects for
each flow the controller keeps in its desired state.  The messages the core
sends most (a host's route, a tunnel's and a binding's flows, their strict
deletes) have a few fixed shapes, so here each shape's fixed bytes are
packed once (an OXM field's header, an action's type and length, a
flow-mod's version, type, buffer and out-port fields) and only the varying
fields (addresses, ports, labels, cookie, table, priority) are packed in.

What comes out is the message's wire form: :class:`FlowMod` and
:class:`PacketOut` are ``bytes`` with read-only accessors for the fields
the core and the tests look at, decoded from the bytes (``match`` and
``instructions`` by Ryu's own parser, so what the tests see is what a switch
would).  The desired state keeps those bytes and nothing else.  A test
checks that every shape decodes to exactly the message Ryu's builders make
(tests/unit/core/test_flow_templates.py).

:class:`Serialized` hands such bytes to Ryu's datapath, which sends message
objects: its ``serialize`` copies the bytes and puts in the xid the datapath
gave it, so barriers and their replies pair up as before.
"""

from __future__ import annotations

import functools
import re
import struct

from ryu.lib import type_desc
from ryu.ofproto import ofproto_parser
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

# Dotted quads as Ryu writes them (no leading zeros: inet_aton reads those as octal).
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")
_MAC = re.compile(r"[0-9a-fA-F]{2}(?::[0-9a-fA-F]{2}){5}")

# ofp_header + ofp_flow_mod up to its match (OpenFlow 1.3 §7.3.4.1): 48 bytes.
_FLOW_MOD = struct.Struct("!BBHIQQBBHHHIIIH2x")
_PACKET_OUT = struct.Struct("!BBHIIIH6x")       # ofp_header + ofp_packet_out: 24 bytes
_MATCH_HEAD = struct.Struct("!HH")
_U16, _U32, _U64 = struct.Struct("!H"), struct.Struct("!I"), struct.Struct("!Q")
MATCH_AT = _FLOW_MOD.size
ALL_ONES_64 = (1 << 64) - 1


def _pad8(n: int) -> int:
    return (n + 7) // 8 * 8


# -- OXM fields (matches and set-field) --------------------------------------------

@functools.cache
def _field(name: str, masked: bool):
    """A field's fixed bytes (its OXM header) and how its values are packed.

    The header is Ryu's own, taken once from a serialization of a zero
    value; values of the usual types (addresses, MACs, integers) are packed
    here, any other goes through Ryu (``None``)."""
    num, kind = ofp.oxm_get_field_info_by_name(name)
    size = kind.size
    zero = bytes(size)
    scratch = bytearray()
    length = ofp.oxm_serialize(num, zero, zero if masked else None, scratch, 0)
    head = bytes(scratch[:length - size * (2 if masked else 1)])
    if kind is type_desc.IPv4Addr:
        encode = _ipv4
    elif kind is type_desc.MacAddr:
        encode = _mac
    elif isinstance(kind, type_desc.IntDescr):
        encode = functools.partial(_int, size)
    else:
        encode = None
    return num, head, encode


@functools.lru_cache(maxsize=4096)
def _ipv4(value) -> bytes:
    # Cached: an MN's addresses come back in most of its flows.
    if type(value) is not str or not _IPV4.fullmatch(value):
        raise ValueError(value)
    return bytes(map(int, value.split(".")))


def _mac(value) -> bytes:
    if type(value) is not str or not _MAC.fullmatch(value):
        raise ValueError(value)
    return bytes.fromhex(value.replace(":", ""))


def _int(size: int, value) -> bytes:
    if type(value) is not int:
        raise ValueError(value)
    return value.to_bytes(size, "big")


def oxm(name: str, value) -> tuple[int, bytes]:
    """One field as an OXM TLV: (its number, for ordering; its bytes)."""
    masked = isinstance(value, tuple)
    num, head, encode = _field(name, masked)
    if encode is not None:
        try:
            if masked:
                return num, head + encode(value[0]) + encode(value[1])
            return num, head + encode(value)
        except (ValueError, OverflowError, OSError):
            pass
    # A value in another form (a CIDR, a name): Ryu converts it.
    num, wire_value, mask = ofp.oxm_from_user(name, value)
    scratch = bytearray()
    length = ofp.oxm_serialize(num, wire_value, mask, scratch, 0)
    return num, bytes(scratch[:length])


def packed_match(fields) -> tuple[list, bytes]:
    """(name, value) pairs in the order Ryu sorts them in (by OXM number),
    and their ofp_match (padded)."""
    tlvs = sorted((*oxm(name, value), name, value) for name, value in fields)
    body = b"".join([t[1] for t in tlvs])
    length = 4 + len(body)
    return ([(t[2], t[3]) for t in tlvs],
            _MATCH_HEAD.pack(ofp.OFPMT_OXM, length) + body + bytes(_pad8(length) - length))


def match_wire(fields) -> bytes:
    """An ofp_match (padded) from (name, value) pairs."""
    return packed_match(fields)[1]


def oxm_tlvs(body: bytes) -> list[tuple[int, bytes]]:
    """A match's OXM TLVs (no ofp_match header, no padding): (number, bytes)."""
    tlvs, at = [], 0
    while at < len(body):
        header = _U32.unpack_from(body, at)[0]
        end = at + 4 + (header & 0xff)
        tlvs.append((header >> 9, body[at:end]))
        at = end
    return tlvs


def canonical_oxms(body: bytes) -> bytes:
    """A match's OXM TLVs in OXM-number order: a switch may report a flow's
    fields in another order than we sent them."""
    tlvs = oxm_tlvs(body)
    if all(tlvs[i][0] <= tlvs[i + 1][0] for i in range(len(tlvs) - 1)):
        return body
    return b"".join(tlv for _, tlv in sorted(tlvs))


# -- actions and instructions -------------------------------------------------------

class Wire:
    """An action or an instruction as its wire bytes.  ``serialize`` and
    ``len`` are what Ryu's containers call (OFPInstructionActions, a packet-
    out), so these mix with Ryu's own objects; ``decoded`` gives Ryu's."""

    __slots__ = ("wire",)

    def __init__(self, wire: bytes):
        self.wire = wire

    @property
    def len(self) -> int:
        return len(self.wire)

    def serialize(self, buf: bytearray, offset: int) -> None:
        end = offset + len(self.wire)
        if len(buf) < end:
            buf += bytearray(end - len(buf))
        buf[offset:end] = self.wire

    def __eq__(self, other):
        return type(other) is type(self) and other.wire == self.wire

    def __hash__(self):
        return hash(self.wire)

    def __repr__(self):
        return repr(self.decoded())


class Action(Wire):
    __slots__ = ()

    def decoded(self):
        return parser.OFPAction.parser(self.wire, 0)


class Instruction(Wire):
    __slots__ = ()

    @property
    def type(self) -> int:
        return _U16.unpack_from(self.wire, 0)[0]

    def decoded(self):
        return parser.OFPInstruction.parser(self.wire, 0)


_OUTPUT = struct.Struct("!HHIH6x")
_ETHERTYPE = struct.Struct("!HHH2x")
_GOTO = struct.Struct("!HHB3x")
_APPLY_HEAD = _U16.pack(ofp.OFPIT_APPLY_ACTIONS)


@functools.lru_cache(maxsize=1024)
def output(port: int, max_len: int) -> Action:
    return Action(_OUTPUT.pack(ofp.OFPAT_OUTPUT, 16, port, max_len))


def set_field(name: str, value) -> Action:
    _, tlv = oxm(name, value)
    length = _pad8(4 + len(tlv))
    return Action(_U16.pack(ofp.OFPAT_SET_FIELD) + _U16.pack(length) + tlv
                  + bytes(length - 4 - len(tlv)))


DEC_NW_TTL = Action(struct.pack("!HH4x", ofp.OFPAT_DEC_NW_TTL, 8))


def push_mpls(ethertype: int) -> Action:
    return Action(_ETHERTYPE.pack(ofp.OFPAT_PUSH_MPLS, 8, ethertype))


def pop_mpls(ethertype: int) -> Action:
    return Action(_ETHERTYPE.pack(ofp.OFPAT_POP_MPLS, 8, ethertype))


def of_ryu(action) -> Action:
    """Any of Ryu's actions (a Nicira extension) as its bytes."""
    scratch = bytearray()
    action.serialize(scratch, 0)
    return Action(bytes(scratch[:action.len]))


def apply_actions(actions) -> Instruction:
    body = b"".join(a.wire if type(a) is Action else of_ryu(a).wire for a in actions)
    return Instruction(_APPLY_HEAD + _U16.pack(8 + len(body)) + bytes(4) + body)


@functools.lru_cache(maxsize=256)
def goto_table(table: int) -> Instruction:
    return Instruction(_GOTO.pack(ofp.OFPIT_GOTO_TABLE, 8, table))


def instructions_wire(instructions) -> bytes:
    out = []
    for inst in instructions:
        if type(inst) is Instruction:
            out.append(inst.wire)
        else:   # one of Ryu's (its actions may be ours)
            scratch = bytearray()
            inst.serialize(scratch, 0)
            out.append(bytes(scratch[:inst.len]))
    return b"".join(out)


def canonical_instructions(body: bytes) -> bytes:
    """Instructions sorted by type: their execution order is fixed whatever
    order they are listed in (OpenFlow 1.3 §5.9)."""
    parts, at = [], 0
    while at < len(body):
        kind, length = struct.unpack_from("!HH", body, at)
        parts.append(body[at:at + length])
        at += length
    if len(parts) < 2:
        return body
    return b"".join(sorted(parts, key=lambda p: (_U16.unpack_from(p, 0)[0], p)))


# -- messages -----------------------------------------------------------------------

class FlowMod(bytes):
    """An OFPT_FLOW_MOD as its bytes (xid 0), with the fields a reader asks for."""

    __slots__ = ()
    name = "OFPFlowMod"

    cookie = property(lambda self: _U64.unpack_from(self, 8)[0])
    cookie_mask = property(lambda self: _U64.unpack_from(self, 16)[0])
    table_id = property(lambda self: self[24])
    command = property(lambda self: self[25])
    idle_timeout = property(lambda self: _U16.unpack_from(self, 26)[0])
    hard_timeout = property(lambda self: _U16.unpack_from(self, 28)[0])
    priority = property(lambda self: _U16.unpack_from(self, 30)[0])
    buffer_id = property(lambda self: _U32.unpack_from(self, 32)[0])
    out_port = property(lambda self: _U32.unpack_from(self, 36)[0])
    out_group = property(lambda self: _U32.unpack_from(self, 40)[0])
    flags = property(lambda self: _U16.unpack_from(self, 44)[0])

    @property
    def _match_length(self) -> int:
        """ofp_match's length field: header and fields, no padding."""
        return _U16.unpack_from(self, MATCH_AT + 2)[0]

    @property
    def match_fields(self) -> bytes:
        """The match's OXM TLVs, as sent."""
        return self[MATCH_AT + 4:MATCH_AT + self._match_length]

    @property
    def instructions_wire(self) -> bytes:
        return self[MATCH_AT + _pad8(self._match_length):]

    @property
    def key(self) -> bytes:
        """What makes the flow distinct in its switch (OpenFlow 1.3 §6.4):
        table, priority and match, as bytes."""
        return self[24:25] + self[30:32] + self.match_fields

    @property
    def match(self):
        return parser.OFPMatch.parser(self, MATCH_AT)

    @property
    def instructions(self) -> list:
        body, at, out = self.instructions_wire, 0, []
        while at < len(body):
            inst = parser.OFPInstruction.parser(body, at)
            out.append(inst)
            at += inst.len
        return out

    def decoded(self):
        """The message as Ryu's parser reads it off the wire."""
        return parser.OFPFlowMod.parser(None, ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, len(self),
                                        0, self)

    def __repr__(self):
        return (f"FlowMod(table={self.table_id}, priority={self.priority}, "
                f"command={self.command}, cookie={self.cookie:#x}, match={self.match}, "
                f"instructions={self.instructions})")


def flow_mod(command: int, table: int, priority: int, match: bytes, instructions: bytes,
             cookie: int = 0, cookie_mask: int = 0, idle_timeout: int = 0,
             hard_timeout: int = 0, flags: int = 0, out_port: int = ofp.OFPP_ANY,
             out_group: int = ofp.OFPG_ANY) -> FlowMod:
    """A flow-mod from its match (``match_wire``) and instructions, packed."""
    length = MATCH_AT + len(match) + len(instructions)
    return FlowMod(_FLOW_MOD.pack(
        ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, length, 0, cookie, cookie_mask, table, command,
        idle_timeout, hard_timeout, priority, ofp.OFP_NO_BUFFER, out_port, out_group, flags)
        + match + instructions)


def delete_strict_of(mod: FlowMod, cookie: int, cookie_mask: int) -> FlowMod:
    """The strict delete of ``mod``'s flow: its table, priority and match
    bytes as they are."""
    match = mod[MATCH_AT:MATCH_AT + _pad8(mod._match_length)]
    return flow_mod(ofp.OFPFC_DELETE_STRICT, mod.table_id, mod.priority, match, b"",
                    cookie, cookie_mask)


class PacketOut(bytes):
    """An OFPT_PACKET_OUT as its bytes (xid 0)."""

    __slots__ = ()
    name = "OFPPacketOut"

    buffer_id = property(lambda self: _U32.unpack_from(self, 8)[0])
    in_port = property(lambda self: _U32.unpack_from(self, 12)[0])

    @property
    def _actions_len(self) -> int:
        return _U16.unpack_from(self, 16)[0]

    @property
    def actions(self) -> list:
        end, at, out = _PACKET_OUT.size + self._actions_len, _PACKET_OUT.size, []
        while at < end:
            action = parser.OFPAction.parser(self, at)
            out.append(action)
            at += action.len
        return out

    @property
    def data(self) -> bytes:
        return bytes(self[_PACKET_OUT.size + self._actions_len:])

    def decoded(self):
        """As Ryu would have built it (Ryu has no parser for packet-outs)."""
        return parser.OFPPacketOut(None, buffer_id=self.buffer_id, in_port=self.in_port,
                                   actions=self.actions, data=self.data)


def packet_out(data: bytes, actions, in_port: int) -> PacketOut:
    body = b"".join(a.wire if type(a) is Action else of_ryu(a).wire for a in actions)
    return PacketOut(_PACKET_OUT.pack(ofp.OFP_VERSION, ofp.OFPT_PACKET_OUT,
                                      _PACKET_OUT.size + len(body) + len(data), 0,
                                      ofp.OFP_NO_BUFFER, in_port, len(body))
                     + body + data)


class Serialized(ofproto_parser.MsgBase):
    """Messages already in wire form, one after another, as the one message
    Ryu's datapath sends: ``serialize`` copies them and puts in each the xid
    the datapath set (``set_xid``).  One write to the switch's connection
    for a run of flow-mods instead of one each; a barrier sent after them
    has its own xid, so its reply still names it."""

    def __init__(self, datapath, parts: list):
        super().__init__(datapath)
        self.parts = parts
        self.msg_type = parts[0][1]
        self.name = parts[0].name if len(parts) == 1 else "batch"

    def serialize(self):
        self.version = ofp.OFP_VERSION
        if self.xid is None:
            self.xid = 0
        self.buf = bytearray(b"".join(self.parts))
        self.msg_len = len(self.buf)
        at = 4
        for part in self.parts:
            _U32.pack_into(self.buf, at, self.xid)
            at += len(part)


def messages_in(msg) -> list:
    """The messages a send carries (several for a Serialized run)."""
    return msg.parts if isinstance(msg, Serialized) else [msg]


def decoded(msg):
    """Ryu's message for anything the core or the shell sends (the tests'
    switches read this)."""
    return msg.decoded() if isinstance(msg, (FlowMod, PacketOut)) else msg

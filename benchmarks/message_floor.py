"""The framework's floor: what building the messages a run sent costs with
Ryu alone, beside packing them from the core's byte templates.

Given the bytes of flow-mods and packet-outs the switches received, each is
read back with Ryu's parser and turned into two recipes that make the same
message again:

* ``ryu``: Ryu at its best, as an application would use it: the match
  built beforehand (it is often shared), the actions, the instructions and
  the message built anew and serialized (``OFPFlowMod(...).serialize()``);
* ``ryu_with_match``: the same with the match built too (``OFPMatch(**fields)``);
* ``templates``: the core's builders (:mod:`mpa_sdn.openflow`), the match
  from its fields too (its cache emptied first).

Both recipes are checked to give the bytes that were sent, then timed over
every message, ``rounds`` times, keeping the fastest round.
"""

from __future__ import annotations

import functools
import time
import types

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import flow_templates as templates
from mpa_sdn import matches
from mpa_sdn import openflow as of

DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser)


def _action(a):
    """(Ryu's builder, ours) of one decoded action."""
    if isinstance(a, parser.OFPActionOutput):
        return (functools.partial(parser.OFPActionOutput, a.port, a.max_len),
                functools.partial(templates.output, a.port, a.max_len))
    if isinstance(a, parser.OFPActionSetField):
        fields = {a.key: a.value}
        return (functools.partial(parser.OFPActionSetField, **fields),
                functools.partial(of.set_field, **fields))
    if isinstance(a, parser.OFPActionDecNwTtl):
        return parser.OFPActionDecNwTtl, of.dec_ttl
    if isinstance(a, parser.OFPActionPushMpls):
        return (functools.partial(parser.OFPActionPushMpls, a.ethertype),
                functools.partial(templates.push_mpls, a.ethertype))
    if isinstance(a, parser.OFPActionPopMpls):
        return (functools.partial(parser.OFPActionPopMpls, a.ethertype),
                functools.partial(templates.pop_mpls, a.ethertype))
    if isinstance(a, parser.NXActionRegLoad):
        return (functools.partial(parser.NXActionRegLoad, ofs_nbits=a.ofs_nbits, dst=a.dst,
                                  value=a.value),
                functools.partial(of.reg_load, a.dst, (a.ofs_nbits & 0x3f) + 1, a.value))
    if isinstance(a, parser.NXActionRegMove):
        return (functools.partial(parser.NXActionRegMove, src_field=a.src_field,
                                  dst_field=a.dst_field, n_bits=a.n_bits),
                functools.partial(of.reg_move, a.src_field, a.dst_field, a.n_bits))
    raise NotImplementedError(type(a).__name__)


def _instructions(decoded) -> tuple:
    ryu, ours = [], []
    for inst in decoded:
        if isinstance(inst, parser.OFPInstructionGotoTable):
            ryu.append(functools.partial(parser.OFPInstructionGotoTable, inst.table_id))
            ours.append(functools.partial(of.goto, inst.table_id))
        else:
            pairs = [_action(a) for a in inst.actions]
            ryu.append(functools.partial(
                lambda t, makers: parser.OFPInstructionActions(t, [m() for m in makers]),
                inst.type, [r for r, _ in pairs]))
            ours.append(functools.partial(lambda makers: of.apply(*(m() for m in makers)),
                                          [o for _, o in pairs]))
    return ryu, ours


def _ryu_serialized(msg) -> bytes:
    msg.serialize()
    return msg.buf


def recipes(wire: bytes):
    """(Ryu's with the match given, Ryu's building the match, ours) for one message."""
    msg = templates.decoded(wire)
    if isinstance(msg, parser.OFPPacketOut):
        pairs = [_action(a) for a in msg.actions]
        data, port = msg.data, msg.in_port

        def ryu(match=None):
            return _ryu_serialized(parser.OFPPacketOut(
                DATAPATH, buffer_id=ofp.OFP_NO_BUFFER, in_port=port,
                actions=[r() for r, _ in pairs], data=data))
        return ryu, ryu, lambda: of.packet_out(data, [o() for _, o in pairs], port)
    fields = dict(msg.match.items())
    prebuilt = parser.OFPMatch(**fields)
    ryu_inst, our_inst = _instructions(msg.instructions)
    attrs = dict(cookie=msg.cookie, cookie_mask=msg.cookie_mask, table_id=msg.table_id,
                 command=msg.command, idle_timeout=msg.idle_timeout,
                 hard_timeout=msg.hard_timeout, priority=msg.priority,
                 buffer_id=msg.buffer_id, out_port=msg.out_port, out_group=msg.out_group,
                 flags=msg.flags)

    def ryu(match=prebuilt):
        return _ryu_serialized(parser.OFPFlowMod(DATAPATH, match=match,
                                                 instructions=[m() for m in ryu_inst], **attrs))

    def ryu_with_match():
        return ryu(parser.OFPMatch(**fields))

    if msg.command == ofp.OFPFC_ADD:
        def ours():
            return of.flow_add(msg.table_id, msg.priority, of.match(**fields),
                               [i for m in our_inst for i in m()], msg.cookie, msg.idle_timeout,
                               msg.hard_timeout, bool(msg.flags & ofp.OFPFF_SEND_FLOW_REM))
    elif msg.command == ofp.OFPFC_DELETE_STRICT:
        def ours():
            return of.flow_delete_strict(msg.table_id, msg.priority, of.match(**fields),
                                         msg.cookie, msg.cookie_mask)
    else:
        def ours():
            return of.flow_delete_cookie(msg.cookie, msg.cookie_mask, msg.table_id)
    return ryu, ryu_with_match, ours


def floor(sent: list[bytes], rounds: int = 5) -> dict:
    """Microseconds per message for each way of building ``sent``."""
    built = [recipes(w) for w in sent]
    for wire, (ryu, ryu_with_match, ours) in zip(sent, built):
        assert bytes(ryu()) == bytes(ryu_with_match()) == bytes(ours()) == bytes(wire), wire
    out = {}
    for name, index in (("ryu", 0), ("ryu_with_match", 1), ("templates", 2)):
        best = float("inf")
        for _ in range(rounds):
            if index == 2:
                matches._build.cache_clear()
            t0 = time.perf_counter()
            for recipe in built:
                recipe[index]()
            best = min(best, time.perf_counter() - t0)
        out[f"{name}_us_per_message"] = round(best / len(built) * 1e6, 2)
    return out

"""Every message the core packs from byte templates is the message Ryu's
builders make: the same bytes, and Ryu's parser reads the same message back.

Property tests over the shapes the core sends (a host's route, a tunnel's
and a binding's flows, their strict deletes, a cookie's delete, a
packet-out) and the ranges of their fields, with seeded generators so a
failure names the seed that found it."""

from __future__ import annotations

import ipaddress
import random
import types

import pytest
from ryu.ofproto import ether, nicira_ext
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import flow_templates as templates
from mpa_sdn import openflow as of
from mpa_sdn.mobility.flowsync import delete_of

DATAPATH = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser)
SEEDS = range(200)


def ryu_bytes(msg) -> bytes:
    """What Ryu's own Datapath.send_msg would put on the wire (xid 0)."""
    msg.datapath = DATAPATH
    msg.serialize()
    return bytes(msg.buf)


# -- generators of field values, boundaries included -----------------------------

def _ipv4(rng) -> str:
    return str(ipaddress.IPv4Address(rng.choice([0, 0xFFFFFFFF, rng.getrandbits(32)])))


def _mac(rng) -> str:
    value = rng.choice([0, (1 << 48) - 1, rng.getrandbits(48)])
    return ":".join(f"{b:02x}" for b in value.to_bytes(6, "big"))


def _uint(bits):
    return lambda rng: rng.choice([0, (1 << bits) - 1, rng.getrandbits(bits)])


def _prefix(rng) -> tuple:
    length = rng.randint(0, 32)
    mask = str(ipaddress.IPv4Address((0xFFFFFFFF << (32 - length)) & 0xFFFFFFFF))
    return _ipv4(rng), mask


MATCH_FIELDS = {
    "in_port": _uint(32), "eth_type": _uint(16), "eth_src": _mac, "eth_dst": _mac,
    "ip_proto": _uint(8), "ipv4_src": _ipv4, "ipv4_dst": _ipv4, "udp_src": _uint(16),
    "udp_dst": _uint(16), "tcp_dst": _uint(16), "arp_op": _uint(16), "arp_spa": _ipv4,
    "arp_tpa": _ipv4, "mpls_label": _uint(20), "tunnel_id": _uint(64), "tun_ipv4_src": _ipv4,
    "tun_ipv4_dst": _ipv4,
}
MASKABLE = ("ipv4_src", "ipv4_dst")
SET_FIELDS = ("eth_src", "eth_dst", "ipv4_src", "ipv4_dst", "mpls_label", "tunnel_id",
              "tun_ipv4_dst")


def random_match_fields(rng) -> dict:
    names = rng.sample(sorted(MATCH_FIELDS), rng.randint(0, 6))
    fields = {name: MATCH_FIELDS[name](rng) for name in names}
    for name in MASKABLE:
        if name in fields and rng.random() < 0.3:
            fields[name] = _prefix(rng)
    return fields


def random_actions(rng) -> list[tuple]:
    """(ours, Ryu's) pairs of actions."""
    out = []
    for _ in range(rng.randint(0, 5)):
        kind = rng.choice(["output", "controller", "set_field", "dec_ttl", "push_mpls",
                           "pop_mpls", "reg_load", "reg_move"])
        if kind == "output":
            port = rng.choice([1, 0xFFFFFFF8, ofp.OFPP_LOCAL, rng.getrandbits(16)])
            out.append((of.output(port), parser.OFPActionOutput(port, 0)))
        elif kind == "controller":
            out.append((of.to_controller(),
                        parser.OFPActionOutput(ofp.OFPP_CONTROLLER, ofp.OFPCML_NO_BUFFER)))
        elif kind == "set_field":
            name = rng.choice(SET_FIELDS)
            value = MATCH_FIELDS[name](rng)
            out.append((of.set_field(**{name: value}), parser.OFPActionSetField(**{name: value})))
        elif kind == "dec_ttl":
            out.append((of.dec_ttl(), parser.OFPActionDecNwTtl()))
        elif kind == "push_mpls":
            label = _uint(20)(rng)
            ours = of.push_mpls(label)
            out += [(ours[0], parser.OFPActionPushMpls(ether.ETH_TYPE_MPLS)),
                    (ours[1], parser.OFPActionSetField(mpls_label=label))]
        elif kind == "pop_mpls":
            out.append((of.pop_mpls(), parser.OFPActionPopMpls(ether.ETH_TYPE_IP)))
        elif kind == "reg_load":
            value = _uint(16)(rng)
            out.append((of.reg_load("in_port_nxm", 16, value), parser.NXActionRegLoad(
                ofs_nbits=nicira_ext.ofs_nbits(0, 15), dst="in_port_nxm", value=value)))
        else:
            out.append((of.reg_move("eth_src", "eth_dst", 48),
                        parser.NXActionRegMove(src_field="eth_src", dst_field="eth_dst",
                                               n_bits=48)))
    return out


def random_instructions(rng) -> tuple[list, list]:
    ours, ryus = [], []
    if rng.random() < 0.8:
        pairs = random_actions(rng)
        ours += of.apply(*(a for a, _ in pairs))
        ryus.append(parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS,
                                                 [r for _, r in pairs]))
    if rng.random() < 0.4:
        table = rng.randint(1, 254)
        ours += of.goto(table)
        ryus.append(parser.OFPInstructionGotoTable(table))
    return ours, ryus


def check(ours, ryus) -> None:
    """Same bytes as Ryu's, and Ryu's parser reads back what Ryu built."""
    wire = ryu_bytes(ryus)
    assert bytes(ours) == wire
    assert ours.decoded().to_jsondict() == parser.OFPFlowMod.parser(
        DATAPATH, ofp.OFP_VERSION, ofp.OFPT_FLOW_MOD, len(wire), 0, wire).to_jsondict()


# -- the properties ----------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_a_flow_add_is_the_flow_mod_ryu_builds(seed):
    rng = random.Random(seed)
    fields = random_match_fields(rng)
    ours_inst, ryu_inst = random_instructions(rng)
    table, priority, cookie = rng.randint(0, 254), _uint(16)(rng), _uint(64)(rng)
    idle, hard, notify = _uint(16)(rng), _uint(16)(rng), rng.random() < 0.5
    ours = of.flow_add(table, priority, of.match(**fields), ours_inst, cookie, idle, hard, notify)
    ryus = parser.OFPFlowMod(
        DATAPATH, cookie=cookie, table_id=table, command=ofp.OFPFC_ADD, idle_timeout=idle,
        hard_timeout=hard, priority=priority, buffer_id=ofp.OFP_NO_BUFFER,
        flags=ofp.OFPFF_SEND_FLOW_REM if notify else 0, match=parser.OFPMatch(**fields),
        instructions=ryu_inst)
    check(ours, ryus)
    assert (ours.table_id, ours.priority, ours.cookie, ours.idle_timeout, ours.hard_timeout,
            ours.command) == (table, priority, cookie, idle, hard, ofp.OFPFC_ADD)
    assert dict(ours.match.items()) == dict(parser.OFPMatch(**fields).items()) or fields == {}


@pytest.mark.parametrize("seed", SEEDS)
def test_the_strict_deletes_are_the_flow_mods_ryu_builds(seed):
    rng = random.Random(seed)
    fields = random_match_fields(rng)
    table, priority, cookie, mask = (rng.randint(0, 254), _uint(16)(rng), _uint(64)(rng),
                                     _uint(64)(rng))
    ryus = parser.OFPFlowMod(
        DATAPATH, cookie=cookie, cookie_mask=mask, table_id=table,
        command=ofp.OFPFC_DELETE_STRICT, priority=priority, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch(**fields))
    check(of.flow_delete_strict(table, priority, of.match(**fields), cookie, mask), ryus)
    # The delete of a flow the desired state holds, cut from its bytes.
    ours_inst, _ = random_instructions(rng)
    held = of.flow_add(table, priority, of.match(**fields), ours_inst, cookie)
    ryus = parser.OFPFlowMod(
        DATAPATH, cookie=cookie, cookie_mask=(1 << 64) - 1, table_id=table,
        command=ofp.OFPFC_DELETE_STRICT, priority=priority, buffer_id=ofp.OFP_NO_BUFFER,
        out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY, match=parser.OFPMatch(**fields))
    check(delete_of(held), ryus)
    assert of.flow_key(delete_of(held)) == of.flow_key(held)


@pytest.mark.parametrize("seed", range(20))
def test_a_cookie_s_delete_is_the_flow_mod_ryu_builds(seed):
    rng = random.Random(seed)
    cookie, mask = _uint(64)(rng), _uint(64)(rng)
    table = rng.choice([ofp.OFPTT_ALL, rng.randint(0, 254)])
    ryus = parser.OFPFlowMod(
        DATAPATH, cookie=cookie, cookie_mask=mask, table_id=table, command=ofp.OFPFC_DELETE,
        buffer_id=ofp.OFP_NO_BUFFER, out_port=ofp.OFPP_ANY, out_group=ofp.OFPG_ANY,
        match=parser.OFPMatch())
    check(of.flow_delete_cookie(cookie, mask, table), ryus)


@pytest.mark.parametrize("seed", range(50))
def test_a_packet_out_is_the_one_ryu_builds(seed):
    rng = random.Random(seed)
    pairs = random_actions(rng) or [(of.output(1), parser.OFPActionOutput(1, 0))]
    data = rng.randbytes(rng.randint(0, 1500))
    in_port = rng.choice([ofp.OFPP_CONTROLLER, rng.randint(1, 48)])
    ours = of.packet_out(data, [a for a, _ in pairs], in_port)
    ryus = parser.OFPPacketOut(DATAPATH, buffer_id=ofp.OFP_NO_BUFFER, in_port=in_port,
                               actions=[r for _, r in pairs], data=data)
    assert bytes(ours) == ryu_bytes(ryus)
    assert (ours.in_port, ours.data) == (in_port, data)
    assert [a.to_jsondict() for a in ours.actions] == [r.to_jsondict() for _, r in pairs]


@pytest.mark.parametrize("seed", range(50))
def test_the_compact_key_and_record_tell_flows_apart_as_the_canonical_ones_do(seed):
    """Two flows have the same key (record) bytes exactly when their
    canonical keys (records) are equal; a switch's report of a flow, its
    fields in another order, has the same as the flow-mod."""
    rng = random.Random(seed)
    flows = []
    for _ in range(8):
        fields = random_match_fields(random.Random(rng.randint(0, 3)))
        inst, _ = random_instructions(random.Random(rng.randint(0, 3)))
        flows.append(of.flow_add(rng.randint(0, 2), rng.randint(0, 2), of.match(**fields), inst,
                                 rng.randint(0, 2), rng.randint(0, 1)))
    for a in flows:
        for b in flows:
            assert (of.flow_key(a) == of.flow_key(b)) == (of.key_of(a) == of.key_of(b))
            same = of.flow_key(a) == of.flow_key(b) and of.flow_record(a) == of.flow_record(b)
            assert same == (of.record_of(a) == of.record_of(b))
        stats = parser.OFPFlowStats(
            table_id=a.table_id, duration_sec=0, duration_nsec=0, priority=a.priority,
            idle_timeout=a.idle_timeout, hard_timeout=0, flags=a.flags, cookie=a.cookie,
            packet_count=0, byte_count=0,
            match=parser.OFPMatch(_ordered_fields=list(reversed(list(a.match.items())))),
            instructions=list(reversed(a.instructions)))
        assert (of.flow_key(stats), of.flow_record(stats)) == (of.flow_key(a), of.flow_record(a))


def test_a_value_in_another_form_goes_through_ryu_s_conversion():
    """A CIDR, an upper-case MAC: not packed here, but the same bytes."""
    for fields in ({"eth_type": 0x0800, "ipv4_dst": "10.2.0.0/16"},
                   {"eth_src": "02:AB:00:00:00:01"}):
        ours = of.flow_add(1, 10, of.match(**fields), of.goto(2), 5)
        ryus = parser.OFPFlowMod(DATAPATH, cookie=5, table_id=1, command=ofp.OFPFC_ADD,
                                 priority=10, buffer_id=ofp.OFP_NO_BUFFER,
                                 match=parser.OFPMatch(**fields),
                                 instructions=[parser.OFPInstructionGotoTable(2)])
        check(ours, ryus)


def test_ours_mix_with_ryu_s_containers():
    """An action of ours inside Ryu's instruction (or a Ryu action inside
    ours) serializes the same as Ryu's alone."""
    ours = [of.output(3), of.set_field(ipv4_dst="10.0.0.1")]
    theirs = [parser.OFPActionOutput(3, 0), parser.OFPActionSetField(ipv4_dst="10.0.0.1")]
    assert templates.apply_actions([ours[0], theirs[1]]) == of.apply(*ours)[0]
    a, b = bytearray(), bytearray()
    parser.OFPInstructionActions(ofp.OFPIT_APPLY_ACTIONS, theirs).serialize(a, 0)
    of.apply(*ours)[0].serialize(b, 0)
    assert a == b


def test_a_packet_out_with_no_actions_keeps_its_data_whole():
    """Ryu 4.34 packs such a packet-out's header over the first 16 bytes of
    its data (it has no action to make room): ours keeps the layout of
    OpenFlow 1.3 §7.3.7."""
    data = bytes(range(64))
    ours = of.packet_out(data, [], 5)
    assert len(ours) == 24 + 64 and ours.data == data and ours.actions == []


def test_a_flow_matches_a_field_on_a_value_read_from_its_bytes():
    mod = of.flow_add(2, 300, of.match(eth_type=0x0800, ipv4_src="10.0.0.10",
                                       ipv4_dst="10.2.1.100"), of.goto(3), 7)
    assert of.matches_any(mod, "ipv4_dst", {"10.9.9.9", "10.2.1.100"})
    assert not of.matches_any(mod, "ipv4_dst", {"10.0.0.10"})      # its source, not destination
    assert not of.matches_any(mod, "ipv4_dst", set())
    prefix = of.flow_add(2, 10, of.match(eth_type=0x0800, ipv4_dst=("10.2.1.0", "255.255.255.0")),
                         of.goto(3), 7)
    assert not of.matches_any(prefix, "ipv4_dst", {"10.2.1.0"})    # a prefix is no address
    assert of.matches_any(prefix.decoded(), "ipv4_dst", {("10.2.1.0", "255.255.255.0")})

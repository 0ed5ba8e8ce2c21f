"""A fake OpenFlow 1.3 switch and network for unit tests.

Flow-mods are applied with real add / delete / delete-strict semantics, and a
packet (a dict of OXM field names; a UDP datagram also carries its data as
``payload``) is run through the multi-table pipeline:
highest-priority match, apply-actions in order, goto-table.  ``FakeNetwork``
joins fake switches along the topology's links and answers "where does this
packet go?": which host ports it reaches, with which headers, what crossed
each link and what was punted to the controller on the way.

MPLS as OpenFlow 1.3 and OVS do it: push_mpls hides everything above
Ethernet under the label (the packet keeps it as ``inner``, where no match
and no set-field reaches it), the label's TTL is the IP TTL, and pop_mpls
gives the IPv4 packet back as it was pushed.  A set-field or dec_ttl that
does not fit the packet (an IPv4 rewrite under a label) fails loudly: OVS
would refuse the flow.

Every flow-mod a switch receives is checked against its table's declaration
(``mpa_sdn.tables.check_flow``): one that breaks it fails the test with the
flow and the rules it breaks, so every behaviour test checks every flow the
core builds.  A switch built with ``check=None`` takes any flow (for tests of
the fake itself).
"""

from __future__ import annotations

import copy
import ipaddress
from dataclasses import dataclass, field

from ryu.lib.packet import arp, ethernet, icmp, ipv4, mpls, packet, udp
from ryu.ofproto import ether, inet
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn.flow_templates import decoded, messages_in
from mpa_sdn.openflow import record_of
from mpa_sdn.tables import PREREQUISITES, check_flow, oxm_name

MAX_HOPS = 64
ETHERNET_HEADER, MPLS_HEADER = 14, 4
# What stays outside a pushed MPLS label: the pipeline's in_port and Ethernet.
OUTER_FIELDS = ("in_port", "eth_src", "eth_dst", "eth_type")


@dataclass
class Entry:
    table_id: int
    priority: int
    match: dict
    instructions: list
    cookie: int
    idle_timeout: int = 0
    hard_timeout: int = 0
    flags: int = 0
    packet_count: int = 0

    def stats(self):
        """As a switch reports it: match and instructions decoded from the wire."""
        buf = bytearray()
        parser.OFPMatch(**self.match).serialize(buf, 0)
        match = parser.OFPMatch.parser(bytes(buf), 0)
        instructions = []
        for inst in self.instructions:
            buf = bytearray()
            inst.serialize(buf, 0)
            instructions.append(parser.OFPInstruction.parser(bytes(buf), 0))
        return parser.OFPFlowStats(
            table_id=self.table_id, duration_sec=0, duration_nsec=0, priority=self.priority,
            idle_timeout=self.idle_timeout, hard_timeout=self.hard_timeout, flags=self.flags,
            cookie=self.cookie, packet_count=self.packet_count, byte_count=0,
            match=match, instructions=instructions)


def _to_int(name, value):
    if name.startswith(("ipv4", "arp_spa", "arp_tpa", "tun_ipv4")):
        return int(ipaddress.IPv4Address(value))
    if name.startswith(("eth_src", "eth_dst", "arp_sha", "arp_tha")):
        return int(value.replace(":", ""), 16)
    return int(value)


def _field_matches(name, want, have) -> bool:
    if have is None:
        return False
    if isinstance(want, tuple):
        value, mask = want
        m = _to_int(name, mask)
        return _to_int(name, have) & m == _to_int(name, value) & m
    return _to_int(name, have) == _to_int(name, want)


def _covers(general: dict, specific: dict) -> bool:
    """Non-strict delete: every field of ``general`` is in ``specific`` with that value."""
    return all(k in specific and specific[k] == v for k, v in general.items())


def describe_flow(msg) -> str:
    """A flow-mod in a line: where it goes, whose it is, what it matches and does."""
    return (f"table {msg.table_id} priority {msg.priority} cookie {msg.cookie:#x} "
            f"match {dict(msg.match.items())} instructions {list(msg.instructions)}")


class FakeSwitch:
    def __init__(self, dpid: int, name: str = "", check=check_flow):
        self.dpid = dpid
        self.name = name
        self.check = check
        self.entries: list[Entry] = []
        self.packet_outs: list = []

    # -- control plane ----------------------------------------------------

    def apply(self, sent) -> None:
        # What the controller packed as bytes is read back by Ryu's parser,
        # as a switch would read it off the wire.
        for msg in messages_in(sent):
            self._apply(decoded(msg))

    def _apply(self, msg) -> None:
        if isinstance(msg, parser.OFPFlowMod):
            self._flow_mod(msg)
        elif isinstance(msg, parser.OFPPacketOut):
            self.packet_outs.append(msg)
        elif isinstance(msg, (parser.OFPBarrierRequest, parser.OFPFlowStatsRequest)):
            pass
        else:
            raise NotImplementedError(f"fake switch cannot apply {type(msg).__name__}")

    def install_foreign(self, msg) -> None:
        """A flow someone else left on the switch (another controller, an
        older run of ours): no declaration of ours binds it."""
        self._flow_mod(decoded(msg), checked=False)

    def _flow_mod(self, msg, checked: bool = True) -> None:
        breaches = self.check(msg) if checked and self.check is not None else []
        if breaches:
            raise AssertionError(
                f"switch {self.name or self.dpid}: {describe_flow(msg)} breaks its table's "
                "declaration: " + "; ".join(str(b) for b in breaches))
        match = dict(msg.match.items())
        if msg.command == ofp.OFPFC_ADD:
            self.entries = [e for e in self.entries
                            if not (e.table_id == msg.table_id and e.priority == msg.priority
                                    and e.match == match)]
            self.entries.append(Entry(msg.table_id, msg.priority, match,
                                      list(msg.instructions), msg.cookie,
                                      msg.idle_timeout, msg.hard_timeout, msg.flags))
            return
        if msg.command not in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
            raise NotImplementedError(f"flow-mod command {msg.command}")
        strict = msg.command == ofp.OFPFC_DELETE_STRICT

        def doomed(e: Entry) -> bool:
            if msg.table_id != ofp.OFPTT_ALL and e.table_id != msg.table_id:
                return False
            if (e.cookie & msg.cookie_mask) != (msg.cookie & msg.cookie_mask):
                return False
            if strict:
                return e.priority == msg.priority and e.match == match
            return _covers(match, e.match)
        self.entries = [e for e in self.entries if not doomed(e)]

    def flow_stats(self) -> list:
        return [e.stats() for e in self.entries]

    def records(self) -> set:
        return {record_of(e.stats()) for e in self.entries}

    # -- data plane -------------------------------------------------------

    def lookup(self, table_id: int, pkt: dict) -> Entry | None:
        best = None
        for e in self.entries:
            if e.table_id != table_id:
                continue
            if all(_field_matches(k, v, pkt.get(k)) for k, v in e.match.items()):
                if best is None or e.priority > best.priority:
                    best = e
        return best

    def process(self, pkt: dict, in_port: int, start_table: int = 0):
        """Run the pipeline; returns ([(out_port, pkt)], [(table_id, pkt)])."""
        pkt = dict(pkt, in_port=in_port)
        outputs, punts = [], []
        table = start_table
        while True:
            entry = self.lookup(table, pkt)
            if entry is None:
                return outputs, punts  # no table-miss entry: dropped
            entry.packet_count += 1
            goto = None
            for inst in entry.instructions:
                if isinstance(inst, parser.OFPInstructionActions):
                    if inst.type != ofp.OFPIT_APPLY_ACTIONS:
                        raise NotImplementedError("only apply-actions")
                    pkt = self._apply_actions(inst.actions, pkt, in_port, table, outputs, punts)
                    if pkt is None:
                        return outputs, punts
                elif isinstance(inst, parser.OFPInstructionGotoTable):
                    goto = inst.table_id
                else:
                    raise NotImplementedError(type(inst).__name__)
            if goto is None:
                return outputs, punts
            assert goto > table, "goto-table must move forward"
            table = goto

    def _apply_actions(self, actions, pkt, in_port, table, outputs, punts):
        for action in actions:
            if isinstance(action, parser.OFPActionOutput):
                # As a set-field may have changed it: OVS lets a flow clear
                # in_port to send a packet back out of the port it came in on.
                came_in = pkt.get("in_port", in_port)
                if action.port == ofp.OFPP_CONTROLLER:
                    punts.append((table, dict(pkt)))
                elif action.port == ofp.OFPP_IN_PORT:
                    outputs.append((came_in, dict(pkt)))
                elif action.port == came_in:
                    pass  # OpenFlow never sends a packet back out its in_port implicitly
                else:
                    outputs.append((action.port, dict(pkt)))
            elif isinstance(action, parser.OFPActionSetField):
                _check_prerequisite(action.key, pkt)
                pkt[action.key] = action.value
            elif isinstance(action, parser.OFPActionDecNwTtl):
                _check_prerequisite("ip_ttl", pkt)
                pkt["ttl"] = pkt["ttl"] - 1
                if pkt["ttl"] <= 0:
                    return None
            elif isinstance(action, parser.OFPActionPushMpls):
                pkt = push_mpls(pkt, action.ethertype)
            elif isinstance(action, parser.OFPActionPopMpls):
                pkt = pop_mpls(pkt, action.ethertype)
            elif isinstance(action, parser.NXActionRegLoad):
                name = oxm_name(action.dst)
                # A 16-bit in_port holds OpenFlow 1.0 port numbers (0xfffe: LOCAL).
                value = ofp.OFPP_LOCAL if (name, action.value) == ("in_port", 0xFFFE) else action.value
                pkt[name] = value
            elif isinstance(action, parser.NXActionRegMove):
                assert action.src_ofs == 0 and action.dst_ofs == 0
                pkt[oxm_name(action.dst_field)] = pkt[oxm_name(action.src_field)]
            else:
                raise NotImplementedError(type(action).__name__)
        return pkt


def _check_prerequisite(name: str, pkt: dict) -> None:
    """OpenFlow's field prerequisites, which a set-field must meet too: the
    packet must have the field for it to be written."""
    for prefix, needed, value in PREREQUISITES:
        if name.startswith(prefix) and pkt.get(needed) != value:
            have = pkt.get(needed)
            raise AssertionError(f"{name} on a packet with {needed} "
                                 f"{'none' if have is None else hex(have)}: "
                                 "the switch would refuse the flow")


def push_mpls(pkt: dict, ethertype: int) -> dict:
    """The packet under a new label, as OpenFlow 1.3 fills it in: label and
    TC copied from an outer label if any, else 0; TTL from the IP TTL."""
    assert ethertype == ether.ETH_TYPE_MPLS, f"push_mpls with ethertype {ethertype:#06x}"
    labelled = pkt["eth_type"] == ether.ETH_TYPE_MPLS
    if not labelled and pkt["eth_type"] != ether.ETH_TYPE_IP:
        raise NotImplementedError(f"push_mpls on eth_type {pkt['eth_type']:#06x}")
    inner = {k: v for k, v in pkt.items() if k not in OUTER_FIELDS} | {
        "eth_type": pkt["eth_type"]}
    outer = {k: pkt[k] for k in OUTER_FIELDS if k in pkt}
    return outer | {"eth_type": ethertype, "mpls_label": pkt.get("mpls_label", 0),
                    "mpls_tc": pkt.get("mpls_tc", 0), "mpls_bos": int(not labelled),
                    "mpls_ttl": pkt["mpls_ttl"] if labelled else pkt["ttl"], "inner": inner}


def pop_mpls(pkt: dict, ethertype: int) -> dict:
    """The packet under the outer label, as it was pushed (OpenFlow 1.3 does
    not copy the label's TTL back into the IP header on a pop)."""
    if pkt.get("eth_type") != ether.ETH_TYPE_MPLS:
        raise AssertionError("pop_mpls on a packet with no label")
    inner = pkt["inner"]
    if inner["eth_type"] != ethertype:
        raise AssertionError(f"pop_mpls says {ethertype:#06x} is under the label, "
                             f"but it is {inner['eth_type']:#06x}")
    return {k: pkt[k] for k in OUTER_FIELDS if k in pkt and k != "eth_type"} | inner


# -- packets as dicts, and their bytes ------------------------------------------

def ipv4_packet(eth_src, eth_dst, src, dst, ttl=64, ident=1, seq=1) -> dict:
    return {"eth_src": eth_src, "eth_dst": eth_dst, "eth_type": ether.ETH_TYPE_IP,
            "ipv4_src": src, "ipv4_dst": dst, "ip_proto": inet.IPPROTO_ICMP, "ttl": ttl,
            "icmp_type": icmp.ICMP_ECHO_REQUEST, "icmp_id": ident, "icmp_seq": seq}


def arp_packet(op, sha, spa, tpa, tha="00:00:00:00:00:00", eth_dst=None) -> dict:
    return {"eth_src": sha,
            "eth_dst": eth_dst or ("ff:ff:ff:ff:ff:ff" if op == 1 else tha),
            "eth_type": ether.ETH_TYPE_ARP, "arp_op": op,
            "arp_sha": sha, "arp_spa": spa, "arp_tha": tha, "arp_tpa": tpa}


def udp_packet(eth_src, eth_dst, src, dst, sport, dport, payload=b"", ttl=64) -> dict:
    """A UDP datagram; ``payload`` is its data, raw bytes (a DHCP message included)."""
    return {"eth_src": eth_src, "eth_dst": eth_dst, "eth_type": ether.ETH_TYPE_IP,
            "ipv4_src": src, "ipv4_dst": dst, "ip_proto": inet.IPPROTO_UDP, "ttl": ttl,
            "udp_src": sport, "udp_dst": dport, "payload": bytes(payload)}


def to_bytes(pkt: dict) -> bytes:
    if pkt["eth_type"] == ether.ETH_TYPE_MPLS:
        # Ethernet, the label, then what was under it without its Ethernet header.
        label = mpls.mpls(label=pkt["mpls_label"], exp=pkt["mpls_tc"], bsb=pkt["mpls_bos"],
                          ttl=pkt["mpls_ttl"])
        head = packet.Packet()
        head.add_protocol(ethernet.ethernet(dst=pkt["eth_dst"], src=pkt["eth_src"],
                                            ethertype=ether.ETH_TYPE_MPLS))
        head.add_protocol(label)
        head.serialize()
        # (ryu pads the frame to Ethernet's minimum: only the headers are kept)
        return (bytes(head.data)[:ETHERNET_HEADER + MPLS_HEADER]
                + to_bytes({**pkt, **pkt["inner"]})[ETHERNET_HEADER:])
    out = packet.Packet()
    out.add_protocol(ethernet.ethernet(dst=pkt["eth_dst"], src=pkt["eth_src"],
                                       ethertype=pkt["eth_type"]))
    if pkt["eth_type"] == ether.ETH_TYPE_ARP:
        out.add_protocol(arp.arp(opcode=pkt["arp_op"], src_mac=pkt["arp_sha"],
                                 src_ip=pkt["arp_spa"], dst_mac=pkt["arp_tha"],
                                 dst_ip=pkt["arp_tpa"]))
    elif pkt["ip_proto"] == inet.IPPROTO_UDP:
        out.add_protocol(ipv4.ipv4(src=pkt["ipv4_src"], dst=pkt["ipv4_dst"],
                                   proto=pkt["ip_proto"], ttl=pkt["ttl"]))
        out.add_protocol(udp.udp(src_port=pkt["udp_src"], dst_port=pkt["udp_dst"]))
        out.add_protocol(pkt["payload"])  # ryu fills in the UDP length and checksum
    else:
        out.add_protocol(ipv4.ipv4(src=pkt["ipv4_src"], dst=pkt["ipv4_dst"],
                                   proto=pkt["ip_proto"], ttl=pkt["ttl"]))
        out.add_protocol(icmp.icmp(type_=pkt["icmp_type"], code=0,
                                   data=icmp.echo(id_=pkt["icmp_id"], seq=pkt["icmp_seq"],
                                                  data=b"fake")))
    out.serialize()
    return bytes(out.data)


def from_bytes(data: bytes) -> dict:
    pkt = packet.Packet(data)
    eth = pkt.get_protocol(ethernet.ethernet)
    if eth.ethertype == ether.ETH_TYPE_MPLS:
        label = pkt.get_protocol(mpls.mpls)
        assert label.bsb, "one label at a time"
        under = data[:ETHERNET_HEADER - 2] + ether.ETH_TYPE_IP.to_bytes(2, "big") + \
            data[ETHERNET_HEADER + MPLS_HEADER:]
        inner = {k: v for k, v in from_bytes(under).items() if k not in OUTER_FIELDS}
        return {"eth_src": eth.src, "eth_dst": eth.dst, "eth_type": eth.ethertype,
                "mpls_label": label.label, "mpls_tc": label.exp, "mpls_bos": label.bsb,
                "mpls_ttl": label.ttl, "inner": inner | {"eth_type": ether.ETH_TYPE_IP}}
    a = pkt.get_protocol(arp.arp)
    if a is not None:
        return arp_packet(a.opcode, a.src_mac, a.src_ip, a.dst_ip, a.dst_mac, eth_dst=eth.dst) | {
            "eth_src": eth.src}
    ip = pkt.get_protocol(ipv4.ipv4)
    if ip.proto == inet.IPPROTO_UDP:
        # The payload is cut from the frame itself: ryu would parse a DHCP
        # message into an object, and a test wants the bytes.
        datagram = pkt.get_protocol(udp.udp)
        start = 14 + ip.header_length * 4 + 8
        return udp_packet(eth.src, eth.dst, ip.src, ip.dst, datagram.src_port,
                          datagram.dst_port, data[start:start + datagram.total_length - 8],
                          ttl=ip.ttl)
    ic = pkt.get_protocol(icmp.icmp)
    return {"eth_src": eth.src, "eth_dst": eth.dst, "eth_type": eth.ethertype,
            "ipv4_src": ip.src, "ipv4_dst": ip.dst, "ip_proto": ip.proto, "ttl": ip.ttl,
            "icmp_type": ic.type, "icmp_id": ic.data.id, "icmp_seq": ic.data.seq}


def on_the_wire(pkt: dict) -> dict:
    """A packet as it leaves a switch: without the pipeline's in_port."""
    return {k: copy.deepcopy(v) for k, v in pkt.items() if k != "in_port"}


# -- a network of fake switches -----------------------------------------------

@dataclass
class Delivery:
    switch: str
    port: int
    pkt: dict
    path: tuple


@dataclass
class Trace:
    deliveries: list = field(default_factory=list)
    punts: list = field(default_factory=list)  # (switch, in_port, table_id, pkt)
    hops: list = field(default_factory=list)   # (switch, next switch, pkt) over each link


class FakeNetwork:
    def __init__(self, graph):
        self.graph = graph
        self.switches = {s: FakeSwitch(graph.dpid(s), s) for s in graph.switch_ids()}
        self.by_dpid = {sw.dpid: sw for sw in self.switches.values()}
        self.peer = {}
        for link in graph.topology.links:
            self.peer[(link.a.switch, link.a.port)] = (link.b.switch, link.b.port)
            self.peer[(link.b.switch, link.b.port)] = (link.a.switch, link.a.port)

    def send(self, switch: str, in_port: int, pkt: dict, start_table: int = 0) -> Trace:
        """Inject ``pkt`` at a switch port and follow it across links."""
        trace = Trace()
        work = [(switch, in_port, pkt, (switch,), start_table)]
        hops = 0
        while work:
            name, port, current, path, table = work.pop(0)
            hops += 1
            assert hops < MAX_HOPS, f"forwarding loop: {path}"
            outputs, punts = self.switches[name].process(copy.deepcopy(current), port, table)
            trace.punts += [(name, port, t, p) for t, p in punts]
            for out_port, out_pkt in outputs:
                if (name, out_port) in self.peer:
                    nxt, nxt_port = self.peer[(name, out_port)]
                    trace.hops.append((name, nxt, on_the_wire(out_pkt)))
                    work.append((nxt, nxt_port, out_pkt, path + (nxt,), 0))
                else:
                    out_pkt.pop("in_port", None)
                    trace.deliveries.append(Delivery(name, out_port, out_pkt, path))
        return trace

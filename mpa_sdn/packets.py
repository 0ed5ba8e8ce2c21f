"""Decoding punted frames and building the frames the controller emits.

Built on ``ryu.lib.packet`` (a plain library).  Decoding never raises on bad
input: it returns ``None`` and the caller counts the frame as malformed.
"""

from __future__ import annotations

from dataclasses import dataclass

from ryu.lib.packet import arp, ethernet, icmp, ipv4, packet, udp
from ryu.ofproto import ether, inet

ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
UNSPECIFIED = "0.0.0.0"
MAX_FRAME = 65535


@dataclass(frozen=True)
class ArpInfo:
    opcode: int
    src_mac: str
    src_ip: str
    dst_mac: str
    dst_ip: str


@dataclass(frozen=True)
class Frame:
    eth_src: str
    eth_dst: str
    eth_type: int
    arp: ArpInfo | None = None
    ip_src: str | None = None
    ip_dst: str | None = None
    ip_proto: int | None = None
    icmp_echo: tuple | None = None  # (id, seq, data) of an echo request
    udp: tuple | None = None        # (source port, destination port, payload)


def decode(data: bytes) -> Frame | None:
    if not isinstance(data, (bytes, bytearray)) or not 14 <= len(data) <= MAX_FRAME:
        return None
    try:
        pkt = packet.Packet(bytes(data))
    except Exception:  # ryu's parsers raise anything on truncated input
        return None
    eth = pkt.get_protocol(ethernet.ethernet)
    if eth is None:
        return None
    if eth.ethertype == ether.ETH_TYPE_ARP:
        a = pkt.get_protocol(arp.arp)
        if a is None or a.hwtype != 1 or a.proto != ether.ETH_TYPE_IP:
            return None
        return Frame(eth.src, eth.dst, eth.ethertype,
                     arp=ArpInfo(a.opcode, a.src_mac, a.src_ip, a.dst_mac, a.dst_ip))
    if eth.ethertype == ether.ETH_TYPE_IP:
        ip = pkt.get_protocol(ipv4.ipv4)
        if ip is None:
            return None
        echo = None
        ic = pkt.get_protocol(icmp.icmp)
        if ic is not None and ic.type == icmp.ICMP_ECHO_REQUEST and isinstance(ic.data, icmp.echo):
            echo = (ic.data.id, ic.data.seq, ic.data.data or b"")
        datagram = None
        u = pkt.get_protocol(udp.udp)
        if u is not None and ip.proto == inet.IPPROTO_UDP:
            # From the frame itself: ryu parses some payloads (DHCP) into
            # objects, and Ethernet padding follows short datagrams.
            start = 14 + ip.header_length * 4 + 8
            end = 14 + ip.header_length * 4 + u.total_length
            if u.total_length < 8 or end > min(len(data), 14 + ip.total_length):
                return None  # truncated datagram
            datagram = (u.src_port, u.dst_port, bytes(data[start:end]))
        return Frame(eth.src, eth.dst, eth.ethertype, ip_src=ip.src, ip_dst=ip.dst,
                     ip_proto=ip.proto, icmp_echo=echo, udp=datagram)
    return Frame(eth.src, eth.dst, eth.ethertype)


def _serialize(*protocols) -> bytes:
    pkt = packet.Packet()
    for proto in protocols:
        pkt.add_protocol(proto)
    pkt.serialize()
    return bytes(pkt.data)


def arp_reply(*, sender_mac: str, sender_ip: str, target_mac: str, target_ip: str) -> bytes:
    return _serialize(
        ethernet.ethernet(dst=target_mac, src=sender_mac, ethertype=ether.ETH_TYPE_ARP),
        arp.arp(opcode=arp.ARP_REPLY, src_mac=sender_mac, src_ip=sender_ip,
                dst_mac=target_mac, dst_ip=target_ip))


def arp_request(*, sender_mac: str, sender_ip: str, target_ip: str,
                eth_dst: str = BROADCAST) -> bytes:
    """A who-has; unicast (``eth_dst`` the host's MAC) to poll a known host."""
    return _serialize(
        ethernet.ethernet(dst=eth_dst, src=sender_mac, ethertype=ether.ETH_TYPE_ARP),
        arp.arp(opcode=arp.ARP_REQUEST, src_mac=sender_mac, src_ip=sender_ip,
                dst_mac=ZERO_MAC, dst_ip=target_ip))


def icmp_echo_reply(*, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str,
                    echo: tuple) -> bytes:
    ident, seq, data = echo
    return _serialize(
        ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ether.ETH_TYPE_IP),
        ipv4.ipv4(src=src_ip, dst=dst_ip, proto=inet.IPPROTO_ICMP, ttl=64),
        icmp.icmp(type_=icmp.ICMP_ECHO_REPLY, code=0,
                  data=icmp.echo(id_=ident, seq=seq, data=data)))


def udp_frame(*, src_mac: str, dst_mac: str, src_ip: str, dst_ip: str, src_port: int,
              dst_port: int, payload) -> bytes:
    """An Ethernet/IPv4/UDP frame; ``payload`` is bytes or a ryu packet (DHCP)."""
    return _serialize(
        ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ether.ETH_TYPE_IP),
        ipv4.ipv4(src=src_ip, dst=dst_ip, proto=inet.IPPROTO_UDP, ttl=64),
        udp.udp(src_port=src_port, dst_port=dst_port),
        payload)

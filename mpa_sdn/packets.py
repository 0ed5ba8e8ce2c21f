"""Decoding punted frames and building the frames the controller emits.

Decoding unpacks the headers with ``struct``; building uses ``ryu.lib.packet``
(a plain library).  Decoding never raises on bad input: it returns ``None``
and the caller counts the frame as malformed.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

from ryu.lib.packet import arp, ethernet, icmp, ipv4, packet, udp
from ryu.ofproto import ether, inet

ARP_REQUEST = 1
ARP_REPLY = 2
BROADCAST = "ff:ff:ff:ff:ff:ff"
ZERO_MAC = "00:00:00:00:00:00"
UNSPECIFIED = "0.0.0.0"
MAX_FRAME = 65535
ICMP_ECHO_REQUEST = 8


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


_ETHERNET = struct.Struct("!6s6sH")
_ARP = struct.Struct("!HHBBH6s4s6s4s")
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
_ECHO = struct.Struct("!BBHHH")


def decode(data: bytes) -> Frame | None:
    """The Ethernet, ARP, IPv4, UDP and ICMP echo headers the handlers read,
    unpacked with ``struct``: a packet-in is decoded on every punt, and Ryu's
    packet library (objects for every layer, addresses through netaddr) was
    a tenth of the controller's time at ten thousand MNs.  What it returns
    is what ``ryu.lib.packet`` gives for the same frame (tests/unit/core/
    test_packets.py checks random and mutated frames against it), its
    quirks included: a layer whose bytes are all zeros is not parsed, an
    IPv4 header's length and total length are taken as they stand, and
    Ethernet padding after a datagram is not its payload."""
    if not isinstance(data, (bytes, bytearray)) or not 14 <= len(data) <= MAX_FRAME:
        return None
    data = bytes(data)
    if not data.strip(b"\0"):
        return None   # all padding: Ryu parses nothing in it
    dst, src, eth_type = _ETHERNET.unpack_from(data)
    eth_dst, eth_src = dst.hex(":"), src.hex(":")
    if eth_type == ether.ETH_TYPE_ARP:
        if len(data) < 42 or not data[14:].strip(b"\0"):
            return None
        hwtype, proto, _, _, opcode, sha, spa, tha, tpa = _ARP.unpack_from(data, 14)
        if hwtype != 1 or proto != ether.ETH_TYPE_IP:
            return None
        return Frame(eth_src, eth_dst, eth_type, arp=ArpInfo(
            opcode, sha.hex(":"), _ipv4_text(spa), tha.hex(":"), _ipv4_text(tpa)))
    if eth_type != ether.ETH_TYPE_IP:
        return Frame(eth_src, eth_dst, eth_type)
    if len(data) < 34 or not data[14:].strip(b"\0"):
        return None
    version_ihl, _, total_length, _, _, _, proto, _, ip_src, ip_dst = _IPV4.unpack_from(data, 14)
    if not version_ihl & 0xF:
        return None   # a header of no length, which Ryu drops
    # The IP payload as Ryu cuts it: from the header's length to the total
    # length (either may be wrong in a bad frame; Python's slice copes).
    start = 14 + (version_ihl & 0xF) * 4
    end = 14 + total_length
    echo = datagram = None
    if end > start and data[start:end].strip(b"\0"):
        if proto == inet.IPPROTO_ICMP:
            echo = _echo(data, start, min(end, len(data)))
        elif proto == inet.IPPROTO_UDP and min(end, len(data)) - start >= 8:
            src_port, dst_port, udp_length, _ = _UDP.unpack_from(data, start)
            # From the frame itself: Ethernet padding follows short datagrams.
            if udp_length < 8 or start + udp_length > min(len(data), end):
                return None  # truncated datagram
            datagram = (src_port, dst_port, data[start + 8:start + udp_length])
    return Frame(eth_src, eth_dst, eth_type, ip_src=_ipv4_text(ip_src), ip_dst=_ipv4_text(ip_dst),
                 ip_proto=proto, icmp_echo=echo, udp=datagram)


def _ipv4_text(packed: bytes) -> str:
    return "%d.%d.%d.%d" % tuple(packed)


def _echo(data: bytes, start: int, end: int) -> tuple | None:
    """An echo request's (id, seq, data), or None."""
    if end - start < 8:
        return None   # too short for Ryu's echo (or its ICMP header) too
    type_, _, _, ident, seq = _ECHO.unpack_from(data, start)
    if type_ != ICMP_ECHO_REQUEST:
        return None
    return ident, seq, data[start + 8:end]


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

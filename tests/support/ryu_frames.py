"""Frames decoded by Ryu's packet library: the reference the controller's
own decoder (``mpa_sdn.packets.decode``, headers unpacked with struct) is
checked against."""

from __future__ import annotations

from ryu.lib.packet import arp, ethernet, icmp, ipv4, packet, udp
from ryu.ofproto import ether, inet

from mpa_sdn.packets import MAX_FRAME, ArpInfo, Frame


class RyuRaised(Exception):
    """Ryu's parser raised (not a short buffer, which it takes as the end)."""


def ryu_decode(data: bytes) -> Frame | None:
    """What the controller decoded with Ryu before: the same Frame, or None.
    Raises RyuRaised where one of Ryu's parsers raised on a layer past those
    read here (a DHCP, VXLAN or LLC payload): the controller took those as
    malformed, though nothing it reads was."""
    if not isinstance(data, (bytes, bytearray)) or not 14 <= len(data) <= MAX_FRAME:
        return None
    try:
        pkt = packet.Packet(bytes(data))
    except Exception as error:
        raise RyuRaised(repr(error)) from error
    eth = pkt.get_protocol(ethernet.ethernet)
    if eth is None:
        return None
    if eth.ethertype == ether.ETH_TYPE_ARP:
        a = pkt.get_protocol(arp.arp)
        if a is None or a.hwtype != 1 or a.proto != ether.ETH_TYPE_IP:
            return None
        return Frame(eth.src, eth.dst, eth.ethertype,
                     arp=ArpInfo(a.opcode, a.src_mac, a.src_ip, a.dst_mac, a.dst_ip))
    if eth.ethertype != ether.ETH_TYPE_IP:
        return Frame(eth.src, eth.dst, eth.ethertype)
    ip = pkt.get_protocol(ipv4.ipv4)
    if ip is None:
        return None
    echo = None
    ic = pkt.get_protocol(icmp.icmp)
    # Only the IPv4 header's own ICMP (Ryu also finds one inside IP in IP).
    if ip.proto == inet.IPPROTO_ICMP and ic is not None \
            and ic.type == icmp.ICMP_ECHO_REQUEST and isinstance(ic.data, icmp.echo):
        echo = (ic.data.id, ic.data.seq, ic.data.data or b"")
    datagram = None
    u = pkt.get_protocol(udp.udp)
    if u is not None and ip.proto == inet.IPPROTO_UDP:
        start = 14 + ip.header_length * 4 + 8
        end = 14 + ip.header_length * 4 + u.total_length
        if u.total_length < 8 or end > min(len(data), 14 + ip.total_length):
            return None
        datagram = (u.src_port, u.dst_port, bytes(data[start:end]))
    return Frame(eth.src, eth.dst, eth.ethertype, ip_src=ip.src, ip_dst=ip.dst,
                 ip_proto=ip.proto, icmp_echo=echo, udp=datagram)

"""DHCPv4 (RFC 2131/2132) requests decoded from punted frames, replies built as frames.

The controller is the DHCP server of its networks: a client's BOOTREQUEST reaches it as a
packet-in, and the reply leaves as a packet-out of a complete Ethernet frame.

Ethernet, IPv4, UDP and the BOOTP fixed header are parsed by ``ryu.lib.packet``, which
checks nothing, so every length, checksum and field is validated here.  The options are
walked here too, because ryu's options parser gets them wrong in ways that matter:

* it treats a pad (0) like END, so options after alignment padding are silently lost;
* it never checks the magic cookie, and keeps a truncated option as raw bytes;
* it joins nothing, where RFC 3396 concatenates an option that appears twice.

Other ryu quirks met on the way: ``dhcp.parser`` decodes ``sname``/``file`` as ASCII and
raises ``UnicodeDecodeError`` on any other byte (``Packet`` passes that on, while it
swallows ``struct.error`` and just stops parsing); ``chaddr`` is text only when
``hlen == 6``, otherwise the raw 16 bytes; a UDP payload of all zeros is not parsed at all;
``dhcp(xid=None)`` draws a random xid; ``options.serialize`` raises ``IndexError`` on an
empty list and appends END only when the last item is an ``option`` (raw bytes go out as
they are, which is how the END and padding below are written).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from ryu.lib.packet import dhcp, ethernet, ipv4, packet, packet_utils, udp
from ryu.ofproto import ether, inet

from mpa_protocol.dhcp_options import (  # noqa: F401 (the numbers are part of this module's API)
    ACK, BOOTREPLY, BOOTREQUEST, CLIENT_PORT, DECLINE, DISCOVER, INFORM, MAGIC_COOKIE,
    MIN_BOOTP, NAK, OFFER, OPT_CLIENT_ID, OPT_DNS, OPT_END, OPT_HOSTNAME, OPT_LEASE_TIME,
    OPT_MESSAGE, OPT_MESSAGE_TYPE, OPT_OVERLOAD, OPT_PAD, OPT_PARAMETER_LIST,
    OPT_REBINDING_T2, OPT_RENEWAL_T1, OPT_REQUESTED_IP, OPT_ROUTER, OPT_SERVER_ID,
    OPT_SUBNET_MASK, RELEASE, REQUEST, SERVER_PORT, walk_options)
from mpa_protocol.messages import MAC_RE
from mpa_sdn import packets


BROADCAST_MAC = packets.BROADCAST
LIMITED_BROADCAST = "255.255.255.255"
UNSPECIFIED = packets.UNSPECIFIED
MAX_FRAME = 1600          # an Ethernet MTU and headers; a larger punted frame is refused
INFINITE_LEASE = 0xFFFFFFFF

HTYPE_ETHERNET = 1
FLAG_BROADCAST = 0x8000
_FIXED_LEN = 236          # op .. file, before the magic cookie




@dataclass(frozen=True)
class DhcpRequest:
    message_type: int
    xid: int
    flags_broadcast: bool
    ciaddr: str                     # "0.0.0.0" when unset
    giaddr: str
    chaddr: str                     # lower-case MAC
    client_id: bytes | None         # option 61, raw
    requested_ip: str | None        # option 50
    server_id: str | None           # option 54
    hostname: str | None            # option 12, printable ASCII, at most 63 characters
    parameter_list: tuple[int, ...]  # option 55
    secs: int
    # From the headers of the frame that carried the message:
    eth_src: str
    ip_src: str
    ip_dst: str

    def client_key(self) -> str:
        """The client's identity for leases: option 61 when sent (RFC 2131 §4.2), else chaddr."""
        if self.client_id is not None:
            return self.client_id.hex()
        return "mac:" + self.chaddr


# --- decoding ---------------------------------------------------------------------------

def decode_request(frame: bytes) -> DhcpRequest | None:
    """The client→server BOOTREQUEST in ``frame``, or None for anything else or malformed.

    Never raises.  Refused: not Ethernet/IPv4/UDP 68→67, IP fragments, bad lengths or
    checksums (a UDP checksum of 0 means "none", RFC 768), op/htype/hlen other than
    BOOTREQUEST/Ethernet/6, no magic cookie, options running past the message or without
    END, option 53 missing or outside 1..8, malformed options 50/54/61, option overload
    (52: options in sname/file are not supported), frames over MAX_FRAME bytes.
    """
    if not isinstance(frame, (bytes, bytearray)) or len(frame) > MAX_FRAME:
        return None
    carried = _bootrequest(bytes(frame))
    if carried is None:
        return None
    eth, ip, msg, bootp = carried
    options = _request_options(bootp)
    if options is None:
        return None
    hostname = options.get(OPT_HOSTNAME)
    return DhcpRequest(
        message_type=options[OPT_MESSAGE_TYPE][0], xid=msg.xid,
        flags_broadcast=bool(msg.flags & FLAG_BROADCAST),
        ciaddr=msg.ciaddr, giaddr=msg.giaddr, chaddr=msg.chaddr,
        client_id=options.get(OPT_CLIENT_ID),
        requested_ip=_ip_text(options.get(OPT_REQUESTED_IP)),
        server_id=_ip_text(options.get(OPT_SERVER_ID)),
        hostname=None if hostname is None else _printable(hostname),
        parameter_list=tuple(options.get(OPT_PARAMETER_LIST, b"")),
        secs=msg.secs, eth_src=eth.src, ip_src=ip.src, ip_dst=ip.dst)


def _bootrequest(frame: bytes) -> tuple | None:
    """(Ethernet header, IPv4 header, BOOTP message as ryu parsed it, its bytes)
    for a BOOTREQUEST from an Ethernet client in UDP 68→67 whose lengths and
    checksums hold, unfragmented; None for anything else."""
    try:
        pkt = packet.Packet(frame)
    except Exception:  # dhcp.parser raises UnicodeDecodeError on a non-ASCII sname/file
        return None
    layers = pkt.protocols[:4]
    if [type(p) for p in layers] != [ethernet.ethernet, ipv4.ipv4, udp.udp, dhcp.dhcp]:
        return None
    eth, ip, datagram, msg = layers
    if eth.ethertype != ether.ETH_TYPE_IP or ip.version != 4 or ip.header_length < 5:
        return None
    ip_start, udp_start = 14, 14 + ip.header_length * 4
    if (ip.total_length < udp_start - ip_start + 8 or ip_start + ip.total_length > len(frame)
            or ip.flags & 1 or ip.offset or ip.proto != inet.IPPROTO_UDP
            or packet_utils.checksum(frame[ip_start:udp_start]) != 0):
        return None  # truncated, fragmented, not UDP or a damaged header
    if (datagram.src_port, datagram.dst_port) != (CLIENT_PORT, SERVER_PORT):
        return None
    udp_end = udp_start + datagram.total_length
    if not udp_start + 8 + _FIXED_LEN + 4 <= udp_end <= ip_start + ip.total_length:
        return None
    if datagram.csum and packet_utils.checksum_ip(
            ip, datagram.total_length, frame[udp_start:udp_end]) != 0:
        return None
    if (msg.op, msg.htype, msg.hlen) != (BOOTREQUEST, HTYPE_ETHERNET, 6):
        return None
    return eth, ip, msg, frame[udp_start + 8:udp_end]


def _request_options(bootp: bytes) -> dict[int, bytes] | None:
    """A request's options after the magic cookie, or None if they are
    malformed, overloaded, or lack a valid message type, or options 50, 54 or
    61 are malformed."""
    if bootp[_FIXED_LEN:_FIXED_LEN + 4] != MAGIC_COOKIE:
        return None
    options = walk_options(bootp[_FIXED_LEN + 4:])
    if options is None or OPT_OVERLOAD in options:
        return None
    message_type = options.get(OPT_MESSAGE_TYPE, b"")
    if len(message_type) != 1 or not DISCOVER <= message_type[0] <= INFORM:
        return None
    client_id = options.get(OPT_CLIENT_ID)
    if client_id is not None and len(client_id) < 2:  # RFC 2132 §9.14: type and at least 1 octet
        return None
    requested_ip, server_id = options.get(OPT_REQUESTED_IP), options.get(OPT_SERVER_ID)
    if any(v is not None and len(v) != 4 for v in (requested_ip, server_id)):
        return None
    return options


def _ip_text(raw: bytes | None) -> str | None:
    return None if raw is None else str(ipaddress.IPv4Address(raw))


def _printable(raw: bytes) -> str | None:
    # Lenient: clients NUL-terminate, pad or send UTF-8; keep what is safe to log and show.
    text = "".join(c for c in raw.decode("ascii", "ignore") if c.isprintable()).strip()
    return text[:63] or None


# --- building ---------------------------------------------------------------------------

def reply_destination(request: DhcpRequest, yiaddr: str, message_type: int) -> tuple[str, str]:
    """(eth_dst, ip_dst) of the reply to ``request``: RFC 2131 §4.1, plus RFC 6252 §7.3.3.

    In this order:

    1. ``giaddr`` set: to the relay agent at ``giaddr`` (its MAC is the frame's source);
       the UDP destination port is then SERVER_PORT, see ``build_reply``.
    2. DHCPNAK: broadcast to 255.255.255.255 / ff:ff:ff:ff:ff:ff.
    3. ``ciaddr`` set (RENEWING, INFORM): unicast to ``ciaddr``, MAC of the frame's source.
    4. Broadcast flag set: broadcast, as the client cannot yet receive unicast.
    5. RFC 6252 §7.3.3, proactive DHCP: the client asks a server in the network it is about
       to move to, from its address in its current network (IP source not 0.0.0.0, flag 0).
       Unicast back to that source address and MAC; a broadcast or a unicast to ``yiaddr``
       would stay in the target network and never reach it.
    6. Otherwise unicast to ``yiaddr`` at ``chaddr``, the client accepting IP unicast before
       it has configured the address.  With no ``yiaddr`` to go to, broadcast instead.
    """
    if request.giaddr != UNSPECIFIED:
        return request.eth_src, request.giaddr
    if message_type == NAK:
        return BROADCAST_MAC, LIMITED_BROADCAST
    if request.ciaddr != UNSPECIFIED:
        return request.eth_src, request.ciaddr
    if request.flags_broadcast:
        return BROADCAST_MAC, LIMITED_BROADCAST
    if request.ip_src != UNSPECIFIED:
        return request.eth_src, request.ip_src
    if yiaddr != UNSPECIFIED:
        return request.chaddr, yiaddr
    return BROADCAST_MAC, LIMITED_BROADCAST


def build_reply(request: DhcpRequest, *, message_type: int, server_ip: str, server_mac: str,
                yiaddr: str = UNSPECIFIED, subnet_mask: str | None = None,
                router: str | None = None, dns: tuple[str, ...] = (),
                lease_time: int | None = None, message: str | None = None) -> bytes:
    """The DHCPOFFER/ACK/NAK answering ``request``, as an Ethernet frame.

    Header fields follow RFC 2131 Table 3: xid, flags, giaddr and chaddr are the client's;
    ``ciaddr`` is echoed in an ACK only (0 in OFFER and NAK).  Options: 53, 54 always; 1, 3,
    6 when given; 51 with T1 = lease/2 (58) and T2 = lease·7/8 (59) when ``lease_time`` is
    given (no T1/T2 for an infinite lease); 56 ``message``; 61 echoed (RFC 6842); END, then
    padding to MIN_BOOTP.  Addressing: ``reply_destination``.  Raises ValueError for a reply
    Table 3 forbids: a NAK with an address or configuration, a lease in the ACK to INFORM.
    """
    if message_type not in (OFFER, ACK, NAK):
        raise ValueError(f"a server replies OFFER, ACK or NAK, not {message_type}")
    yiaddr = _ip(yiaddr)
    if message_type == NAK and (yiaddr != UNSPECIFIED or subnet_mask or router or dns
                                or lease_time is not None):
        raise ValueError("a DHCPNAK carries no address and no configuration")
    if request.message_type == INFORM and lease_time is not None:
        raise ValueError("the DHCPACK to a DHCPINFORM carries no lease time")
    options = [(OPT_MESSAGE_TYPE, bytes([message_type])), (OPT_SERVER_ID, _ip_bytes(server_ip))]
    if subnet_mask is not None:
        options.append((OPT_SUBNET_MASK, _ip_bytes(subnet_mask)))
    if router is not None:
        options.append((OPT_ROUTER, _ip_bytes(router)))
    if dns:
        options.append((OPT_DNS, b"".join(_ip_bytes(a) for a in dns)))
    if lease_time is not None:
        if not 0 <= lease_time <= INFINITE_LEASE:
            raise ValueError(f"lease time {lease_time} is not a 32-bit number of seconds")
        options.append((OPT_LEASE_TIME, lease_time.to_bytes(4, "big")))
        if lease_time != INFINITE_LEASE:
            options.append((OPT_RENEWAL_T1, (lease_time // 2).to_bytes(4, "big")))
            options.append((OPT_REBINDING_T2, (lease_time * 7 // 8).to_bytes(4, "big")))
    if message is not None:
        options.append((OPT_MESSAGE, message.encode("ascii", "replace")[:255]))
    if request.client_id is not None:
        options.append((OPT_CLIENT_ID, request.client_id))
    eth_dst, ip_dst = reply_destination(request, yiaddr, message_type)
    # RFC 2131 §4.1: to a relay agent, the reply goes to its server port.
    dst_port = SERVER_PORT if request.giaddr != UNSPECIFIED else CLIENT_PORT
    bootp = dhcp.dhcp(
        op=BOOTREPLY, chaddr=request.chaddr, options=_options(options), htype=HTYPE_ETHERNET,
        xid=request.xid, flags=FLAG_BROADCAST if request.flags_broadcast else 0,
        ciaddr=request.ciaddr if message_type == ACK else UNSPECIFIED,
        yiaddr=yiaddr, giaddr=request.giaddr)
    return packets.udp_frame(src_mac=_mac(server_mac), dst_mac=eth_dst, src_ip=_ip(server_ip),
                             dst_ip=ip_dst, src_port=SERVER_PORT, dst_port=dst_port,
                             payload=bootp)


def build_request(message_type: int, *, chaddr: str, xid: int, eth_src: str | None = None,
                  eth_dst: str = BROADCAST_MAC, ip_src: str = UNSPECIFIED,
                  ip_dst: str = LIMITED_BROADCAST, ciaddr: str = UNSPECIFIED,
                  giaddr: str = UNSPECIFIED, broadcast: bool = False, secs: int = 0,
                  client_id: bytes | None = None, requested_ip: str | None = None,
                  server_id: str | None = None, hostname: str | None = None,
                  parameter_list: tuple[int, ...] = (),
                  extra_options: tuple[tuple[int, bytes], ...] = ()) -> bytes:
    """A client's BOOTREQUEST frame, for tests and for a client (e.g. a proactive MN).

    Options in order: 53, 61, 50, 54, 12, 55, then ``extra_options``; END; padding.
    ``eth_src`` defaults to ``chaddr``.
    """
    if message_type not in (DISCOVER, REQUEST, DECLINE, RELEASE, INFORM):
        raise ValueError(f"a client sends DISCOVER, REQUEST, DECLINE, RELEASE or INFORM, "
                         f"not {message_type}")
    options = [(OPT_MESSAGE_TYPE, bytes([message_type]))]
    if client_id is not None:
        options.append((OPT_CLIENT_ID, client_id))
    if requested_ip is not None:
        options.append((OPT_REQUESTED_IP, _ip_bytes(requested_ip)))
    if server_id is not None:
        options.append((OPT_SERVER_ID, _ip_bytes(server_id)))
    if hostname is not None:
        options.append((OPT_HOSTNAME, hostname.encode("ascii")))
    if parameter_list:
        options.append((OPT_PARAMETER_LIST, bytes(parameter_list)))
    options.extend(extra_options)
    bootp = dhcp.dhcp(
        op=BOOTREQUEST, chaddr=_mac(chaddr), options=_options(options), htype=HTYPE_ETHERNET,
        xid=xid, secs=secs, flags=FLAG_BROADCAST if broadcast else 0,
        ciaddr=_ip(ciaddr), giaddr=_ip(giaddr))
    return packets.udp_frame(src_mac=_mac(eth_src or chaddr), dst_mac=_mac(eth_dst),
                             src_ip=_ip(ip_src), dst_ip=_ip(ip_dst), src_port=CLIENT_PORT,
                             dst_port=SERVER_PORT, payload=bootp)


def _options(pairs: list[tuple[int, bytes]]) -> dhcp.options:
    for code, value in pairs:
        if not 0 < code < OPT_END or len(value) > 255:
            raise ValueError(f"option {code}: code or length ({len(value)}) out of range")
    used = _FIXED_LEN + len(MAGIC_COOKIE) + sum(2 + len(v) for _, v in pairs)
    # END and the padding as one raw item: ryu then adds no END of its own.
    tail = bytes([OPT_END]) + bytes(max(0, MIN_BOOTP - used - 1))
    return dhcp.options(option_list=[dhcp.option(c, bytes(v)) for c, v in pairs] + [tail])


def _ip(text: str) -> str:
    return str(ipaddress.IPv4Address(text))  # ValueError on anything but dotted IPv4


def _ip_bytes(text: str) -> bytes:
    return ipaddress.IPv4Address(text).packed


def _mac(text: str) -> str:
    if not isinstance(text, str) or not MAC_RE.fullmatch(text.lower()):
        raise ValueError(f"{text!r} is not a MAC address like aa:bb:cc:dd:ee:ff")
    return text.lower()

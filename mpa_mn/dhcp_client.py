"""A DHCPv4 client (RFC 2131) on the wire, for the MN's reactive handover.

A network without MPA gives a host its address after it has moved: the
host broadcasts DISCOVER, takes the first usable OFFER, REQUESTs it and is
configured by the ACK (a NAK, or no answer to its REQUESTs, starts it
again).  Messages leave from 0.0.0.0 to 255.255.255.255 as whole Ethernet
frames out of an AF_PACKET socket, and replies are read from the same
socket (bound to IPv4), because the host has no address to receive them on
yet.  The broadcast flag stays clear: the packet socket sees the unicast
reply to ``yiaddr`` too.

Retransmissions follow RFC 2131 §4.1: ``first_wait_s`` (4 s) before the
first, each wait twice the last, up to ``max_wait_s`` (64 s), each
randomised by ±``jitter_s`` (1 s, RFC 2131's; ``mpa-mn reactive`` makes it a
quarter of ``--dhcp-retry``, which is the same at the default 4 s); the
whole acquisition gives up after ``timeout_s``.  A DECLINE (the address is in use: see
:mod:`mpa_mn.dad`) goes to the server that gave the lease.  Renewal is not
done: a handover's run ends long before T1.

Replies are checked in full (Ethernet, IPv4 header and its checksum, UDP and
its checksum, BOOTP, the magic cookie, every option's length), without Ryu,
which the MN does not use.  A frame that is not a reply to this client is
ignored and counted (:attr:`DhcpClient.ignored`): ``malformed`` (UDP to port
68 that does not parse), ``not_ours`` (another transaction or client),
``unusable`` (an OFFER or ACK the client does not take: without what the MN
needs, i.e. server identifier, address, subnet mask, router and, in an ACK,
the lease time; or not the one it waits for, such as an OFFER while it
requests, or an ACK from another server or for another address),
``unexpected`` (a NAK that does not answer its REQUEST: while it discovers,
or from another server) and ``other`` (not a reply to a DHCP client).
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import struct
import time
from dataclasses import dataclass
from typing import Callable

from mpa_mn import link
from mpa_mn.link import LinkError
from mpa_protocol.dhcp_options import (
    ACK, BOOTREPLY, BOOTREQUEST, CLIENT_PORT, DECLINE, DISCOVER, MAGIC_COOKIE, MIN_BOOTP, NAK,
    OFFER, OPT_DNS, OPT_END, OPT_LEASE_TIME, OPT_MESSAGE, OPT_MESSAGE_TYPE, OPT_OVERLOAD,
    OPT_PARAMETER_LIST, OPT_REQUESTED_IP, OPT_ROUTER, OPT_SERVER_ID, OPT_SUBNET_MASK, REQUEST,
    SERVER_PORT, walk_options)

LOG = logging.getLogger("mpa_mn.dhcp_client")

NAMES = {DISCOVER: "discover", OFFER: "offer", REQUEST: "request", DECLINE: "decline",
         ACK: "ack", NAK: "nak"}
_FIXED = struct.Struct("!BBBBIHH4s4s4s4s16s64s128s")   # op .. file: 236 bytes
_IPV4 = struct.Struct("!BBHHHBBH4s4s")
_UDP = struct.Struct("!HHHH")
ETH_HEADER = 14
PARAMETERS = (OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_LEASE_TIME, OPT_SERVER_ID)
BROADCAST_IP = "255.255.255.255"
REQUEST_SENDS = 4         # REQUESTs without an answer before starting again
MALFORMED, OTHER = "malformed", "other"


class DhcpError(LinkError):
    """No lease (``dhcp-timeout``)."""


# -- the wire ---------------------------------------------------------------------

def _checksum(data: bytes) -> int:
    """The Internet checksum (RFC 1071); 0 over data that carries a right one."""
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF


def _pseudo_header(src: bytes, dst: bytes, length: int) -> bytes:
    return src + dst + struct.pack("!BBH", 0, 17, length)


def request_frame(message_type: int, mac: str, xid: int, *, secs: int = 0,
                  requested: str | None = None, server_id: str | None = None) -> bytes:
    """A client's BOOTREQUEST, broadcast from 0.0.0.0, as an Ethernet frame.
    Options: 53, 50 and 54 when given, 55 (not in a DECLINE), END, padding."""
    hw = bytes.fromhex(mac.replace(":", ""))
    options = [(OPT_MESSAGE_TYPE, bytes([message_type]))]
    if requested is not None:
        options.append((OPT_REQUESTED_IP, ipaddress.IPv4Address(requested).packed))
    if server_id is not None:
        options.append((OPT_SERVER_ID, ipaddress.IPv4Address(server_id).packed))
    if message_type != DECLINE:
        options.append((OPT_PARAMETER_LIST, bytes(PARAMETERS)))
    bootp = _FIXED.pack(BOOTREQUEST, 1, 6, 0, xid, min(secs, 0xFFFF), 0, bytes(4), bytes(4),
                        bytes(4), bytes(4), hw, b"", b"") + MAGIC_COOKIE
    bootp += b"".join(bytes([code, len(value)]) + value for code, value in options)
    bootp = (bootp + bytes([OPT_END])).ljust(MIN_BOOTP, b"\0")
    src, dst = bytes(4), ipaddress.IPv4Address(BROADCAST_IP).packed
    length = _UDP.size + len(bootp)
    udp = _UDP.pack(CLIENT_PORT, SERVER_PORT, length, 0) + bootp
    udp = udp[:6] + struct.pack("!H", _checksum(_pseudo_header(src, dst, length) + udp)
                                or 0xFFFF) + udp[8:]
    header = _IPV4.pack(0x45, 0, _IPV4.size + length, 0, 0, 64, 17, 0, src, dst)
    header = header[:10] + struct.pack("!H", _checksum(header)) + header[12:]
    return link.BROADCAST + hw + struct.pack("!H", link.ETH_P_IP) + header + udp


@dataclass(frozen=True)
class Reply:
    """A server's BOOTREPLY, as read."""

    message_type: int
    xid: int
    chaddr: str
    yiaddr: str
    server_id: str | None
    prefix_len: int | None
    router: str | None
    dns: tuple[str, ...]
    lease_time: int | None
    message: str | None


def decode_reply(frame: bytes) -> Reply | str:
    """The BOOTREPLY in ``frame``; else ``OTHER`` (not UDP from port 67 to
    port 68) or ``MALFORMED``.  Never raises."""
    try:
        return _decode(bytes(frame))
    except (struct.error, ValueError, IndexError):
        return MALFORMED


def _decode(frame: bytes) -> Reply | str:
    if len(frame) < ETH_HEADER + _IPV4.size or frame[12:14] != b"\x08\x00":
        return OTHER
    ip = frame[ETH_HEADER:]
    version_ihl, _, total, _, fragment, _, proto, _, src, dst = _IPV4.unpack_from(ip)
    header = (version_ihl & 0x0F) * 4
    if (version_ihl >> 4 != 4 or proto != 17 or fragment & 0x3FFF or header < _IPV4.size
            or len(ip) < header + _UDP.size):
        return OTHER   # not IPv4, not UDP, or a fragment: no whole reply
    sport, dport, length, csum = _UDP.unpack_from(ip, header)
    if (sport, dport) != (SERVER_PORT, CLIENT_PORT):
        return OTHER
    # From here on the frame says it is a reply to a DHCP client.
    if (not header + length <= total <= len(ip) or _checksum(ip[:header])
            or length < _UDP.size + _FIXED.size + len(MAGIC_COOKIE)):
        return MALFORMED
    udp = ip[header:header + length]
    if csum and _checksum(_pseudo_header(src, dst, length) + udp):
        return MALFORMED
    bootp = udp[_UDP.size:]
    op, htype, hlen, _, xid, _, _, _, yiaddr, _, _, chaddr, _, _ = _FIXED.unpack_from(bootp)
    if (op, htype, hlen) != (BOOTREPLY, 1, 6) or \
            bootp[_FIXED.size:_FIXED.size + 4] != MAGIC_COOKIE:
        return MALFORMED
    options = walk_options(bootp[_FIXED.size + 4:])
    if options is None or OPT_OVERLOAD in options:
        return MALFORMED   # options in sname/file are not read
    kind = options.get(OPT_MESSAGE_TYPE, b"")
    if len(kind) != 1 or kind[0] not in (OFFER, ACK, NAK):
        return MALFORMED
    message = options.get(OPT_MESSAGE)
    return Reply(kind[0], xid, ":".join(f"{b:02x}" for b in chaddr[:6]),
                 str(ipaddress.IPv4Address(yiaddr)), _address(options.get(OPT_SERVER_ID)),
                 _prefix_len(options.get(OPT_SUBNET_MASK)),
                 _addresses(options[OPT_ROUTER], 1)[0] if OPT_ROUTER in options else None,
                 _addresses(options.get(OPT_DNS, b""), 0), _number(options.get(OPT_LEASE_TIME)),
                 None if message is None else message.decode("ascii", "replace"))


def _address(raw: bytes | None) -> str | None:
    if raw is None:
        return None
    if len(raw) != 4:
        raise ValueError("an address option is 4 bytes")
    return str(ipaddress.IPv4Address(raw))


def _addresses(raw: bytes, least: int) -> tuple[str, ...]:
    if len(raw) % 4 or len(raw) < 4 * least:
        raise ValueError("an address list is a multiple of 4 bytes")
    return tuple(str(ipaddress.IPv4Address(raw[i:i + 4])) for i in range(0, len(raw), 4))


def _number(raw: bytes | None) -> int | None:
    if raw is None:
        return None
    if len(raw) != 4:
        raise ValueError("a time option is 4 bytes")
    return int.from_bytes(raw, "big")


def _prefix_len(raw: bytes | None) -> int | None:
    """The subnet mask's length; ValueError for a mask that is not contiguous."""
    if raw is None:
        return None
    return ipaddress.IPv4Network(f"0.0.0.0/{_address(raw)}").prefixlen


# -- the client ----------------------------------------------------------------------

@dataclass(frozen=True)
class DhcpSettings:
    first_wait_s: float = 4.0     # RFC 2131 §4.1: before the first retransmission
    max_wait_s: float = 64.0
    jitter_s: float = 1.0
    timeout_s: float = 60.0       # the whole acquisition

    def __post_init__(self):
        if not 0 < self.first_wait_s <= self.max_wait_s or self.timeout_s <= 0:
            raise ValueError("DHCP waits: 0 < first wait <= max wait, and a timeout over 0")
        if not 0 <= self.jitter_s < self.first_wait_s:
            raise ValueError("the DHCP jitter must be under the first wait")


@dataclass(frozen=True)
class Lease:
    """What an ACK gives."""

    address: str
    prefix_len: int
    router: str
    server: str
    lease_time: int
    dns: tuple[str, ...] = ()

    def config(self) -> dict:
        return {"address": self.address, "prefix_len": self.prefix_len, "router": self.router,
                "server": self.server, "lease_time": self.lease_time, "dns": list(self.dns)}


class DhcpClient:
    """One client on one packet socket (``sock``: sends frames, receives IPv4).
    ``clock`` is monotonic; ``entropy`` (n -> n random bytes) draws the
    transaction ids and the retransmissions' jitter."""

    def __init__(self, sock, mac: str, settings: DhcpSettings = DhcpSettings(), *,
                 clock: Callable[[], float] = time.monotonic,
                 entropy: Callable[[int], bytes]):
        self.sock, self.mac, self.settings = sock, mac.lower(), settings
        self.clock, self.entropy = clock, entropy
        self.sent = collections.Counter()       # by message name
        self.received = collections.Counter()   # replies taken, by name
        self.ignored = collections.Counter()    # frames not taken, by why
        self.transactions = 0

    def acquire(self) -> Lease:
        """A lease: DISCOVER, OFFER, REQUEST, ACK (again from the start after a
        NAK, or when no REQUEST is answered)."""
        started = self.clock()
        deadline = started + self.settings.timeout_s
        while self.clock() < deadline:
            xid = int.from_bytes(self.entropy(4), "big")
            self.transactions += 1
            offer = self._exchange(
                DISCOVER, lambda: request_frame(DISCOVER, self.mac, xid,
                                                secs=self._secs(started)),
                lambda r: r.message_type == OFFER and self._offer_usable(r), xid, deadline)
            if offer is None:
                break
            answer = self._exchange(
                REQUEST, lambda: request_frame(REQUEST, self.mac, xid, secs=self._secs(started),
                                               requested=offer.yiaddr,
                                               server_id=offer.server_id),
                lambda r: r.server_id == offer.server_id and (
                    r.message_type == NAK or self._ack_usable(r, offer.yiaddr)),
                xid, deadline, sends=REQUEST_SENDS)
            if answer is not None and answer.message_type == ACK:
                return Lease(answer.yiaddr, answer.prefix_len, answer.router, answer.server_id,
                             answer.lease_time, answer.dns)
            LOG.info("DHCP: %s; starting again", "no answer to REQUEST" if answer is None
                     else f"NAK ({answer.message})")
        raise DhcpError("dhcp-timeout", f"no DHCP lease within {self.settings.timeout_s:g} s "
                        f"({self.sent['discover']} DISCOVER, {self.sent['request']} REQUEST "
                        f"sent)")

    def decline(self, lease: Lease) -> None:
        """The server hears that ``lease``'s address is in use (RFC 2131 §3.1.5)."""
        xid = int.from_bytes(self.entropy(4), "big")
        self._send(request_frame(DECLINE, self.mac, xid, requested=lease.address,
                                 server_id=lease.server), DECLINE)

    def _secs(self, started: float) -> int:
        return int(self.clock() - started)

    def _send(self, frame: bytes, kind: int) -> None:
        try:
            self.sock.send(frame)
        except OSError as exc:
            raise LinkError("link", f"cannot send DHCP {NAMES[kind].upper()}: "
                            f"{exc.strerror or exc}") from None
        self.sent[NAMES[kind]] += 1

    def _exchange(self, kind: int, build: Callable[[], bytes], wanted: Callable[[Reply], bool],
                  xid: int, deadline: float, sends: int | None = None) -> Reply | None:
        """Send ``kind`` (``build()`` each time: ``secs`` moves on) until a reply to
        ``xid`` that is ``wanted`` comes; None once ``sends`` went unanswered
        or the deadline has passed."""
        base, count = self.settings.first_wait_s, 0
        while self.clock() < deadline and (sends is None or count < sends):
            self._send(build(), kind)
            count += 1
            wait = base + link.uniform(self.entropy, -self.settings.jitter_s,
                                       self.settings.jitter_s)
            until = min(self.clock() + wait, deadline)
            reply = link.receive(self.sock, until, self.clock,
                                 lambda data: self._take(data, xid, wanted))
            if reply is not None:
                self.received[NAMES[reply.message_type]] += 1
                return reply
            base = min(2 * base, self.settings.max_wait_s)
        return None

    def _take(self, frame: bytes, xid: int, wanted: Callable[[Reply], bool]) -> Reply | None:
        reply = decode_reply(frame)
        if isinstance(reply, str):
            self.ignored[reply] += 1
            return None
        if reply.xid != xid or reply.chaddr != self.mac:
            self.ignored["not_ours"] += 1
            return None
        if not wanted(reply):
            self.ignored["unusable" if reply.message_type in (OFFER, ACK) else "unexpected"] += 1
            return None
        return reply

    @staticmethod
    def _offer_usable(reply: Reply) -> bool:
        return (reply.server_id is not None and reply.yiaddr != link.UNSPECIFIED
                and reply.prefix_len is not None and reply.router is not None)

    def _ack_usable(self, reply: Reply, requested: str) -> bool:
        return (reply.message_type == ACK and self._offer_usable(reply)
                and reply.yiaddr == requested and reply.lease_time is not None)


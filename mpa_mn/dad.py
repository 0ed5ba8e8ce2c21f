"""IPv4 duplicate address detection (RFC 5227) for an address the MN got by
DHCP after a move: what a network without MPA costs a host before it may
use its address (RFC 6252 Appendix C.5).

Probing (§2.1.1): a random wait of up to ``probe_wait_s``, then
``probe_num`` ARP probes (sender address 0.0.0.0, target the address, from
the MN's MAC), each next one a random ``probe_min_s``..``probe_max_s``
later, then ``announce_wait_s`` more.  From the start of the first wait to
the end of the last, the address is taken when an ARP packet arrives whose
sender address is the address, or an ARP probe for it, from any MAC but
the MN's.  The controller proxy-answers a probe for an address a host it
knows is using: its reply is such a packet, sent with the gateway's MAC.

Announcing (§2.3): ``announce_num`` gratuitous ARPs, ``announce_interval_s``
apart, the first as soon as the address is on the interface.

The defaults are RFC 5227's constants; ``probe_num`` 0 turns DAD off (no
probes, no waits).  The ARP socket, the clock and the randomness are
injected.  Frames that are not ARP as RFC 826 sends it for IPv4 over
Ethernet are ignored and counted (:attr:`Dad.ignored`).  One probing finds
one conflict at most; ``max_conflicts`` is for the caller that declines an
address in use and asks for another: the reactive handover
(:mod:`mpa_mn.reactive`) gives up at that many (RFC 5227 would go on, once a
minute: too slow for a handover).  It is one of these settings so that DAD's
numbers travel together (``mpa-mn reactive``'s options, a scenario's
``reactive.dad``).  Defending the address once in use (§2.4) is left to the
kernel's ARP.
"""

from __future__ import annotations

import collections
import ipaddress
import struct
import time
from dataclasses import dataclass
from typing import Callable

from mpa_mn import link

ARP_REQUEST, ARP_REPLY = 1, 2
_ARP = struct.Struct("!HHBBH6s4s6s4s")


@dataclass(frozen=True)
class DadSettings:
    probe_wait_s: float = 1.0
    probe_num: int = 3
    probe_min_s: float = 1.0
    probe_max_s: float = 2.0
    announce_wait_s: float = 2.0
    announce_num: int = 2
    announce_interval_s: float = 2.0
    max_conflicts: int = 10      # read by the reactive run, not by Dad (see above)

    def __post_init__(self):
        waits = (self.probe_wait_s, self.probe_min_s, self.probe_max_s, self.announce_wait_s,
                 self.announce_interval_s)
        if min(waits) < 0 or self.probe_min_s > self.probe_max_s:
            raise ValueError("DAD waits are not negative, and the least wait between probes "
                             "is at most the most")
        if self.probe_num < 0 or self.announce_num < 1 or self.max_conflicts < 1:
            raise ValueError("DAD sends 0 probes or more and 1 announcement or more, and "
                             "gives up at the first conflict or later")

    @property
    def minimum_s(self) -> float:
        """The least time probing takes: the random waits at their least."""
        if self.probe_num == 0:
            return 0.0
        return (self.probe_num - 1) * self.probe_min_s + self.announce_wait_s


@dataclass(frozen=True)
class Arp:
    opcode: int
    sender_mac: str
    sender_ip: str
    target_ip: str


@dataclass(frozen=True)
class Conflict:
    """Why the address is taken: ``in-use`` (an ARP packet from it) or
    ``probe`` (another host probing for it); who said so; after how many of
    the MN's probes."""

    address: str
    kind: str
    mac: str
    after_probes: int

    def view(self) -> dict:
        return dict(self.__dict__)


def probe_frame(mac: str, address: str) -> bytes:
    """An ARP probe for ``address`` (RFC 5227 §2.1.1)."""
    return link.arp_request(mac, link.UNSPECIFIED, address)


def decode_arp(frame: bytes) -> Arp | None:
    """The ARP packet in ``frame`` (IPv4 over Ethernet, request or reply), or
    None.  Never raises."""
    frame = bytes(frame)
    if len(frame) < 14 + _ARP.size or frame[12:14] != struct.pack("!H", link.ETH_P_ARP):
        return None
    htype, ptype, hlen, plen, opcode, sha, spa, _, tpa = _ARP.unpack_from(frame, 14)
    if (htype, ptype, hlen, plen) != (1, link.ETH_P_IP, 6, 4) or \
            opcode not in (ARP_REQUEST, ARP_REPLY):
        return None
    return Arp(opcode, ":".join(f"{b:02x}" for b in sha), str(ipaddress.IPv4Address(spa)),
               str(ipaddress.IPv4Address(tpa)))


class Dad:
    """Probing and announcing on one ARP socket (``sock``: sends frames,
    receives ARP) for the MN's ``mac``."""

    def __init__(self, sock, mac: str, settings: DadSettings = DadSettings(), *,
                 clock: Callable[[], float] = time.monotonic,
                 entropy: Callable[[int], bytes]):
        self.sock, self.mac, self.settings = sock, mac.lower(), settings
        self.clock, self.entropy = clock, entropy
        self.probes = 0                          # sent, all told
        self.announcements = 0
        self.ignored = collections.Counter()     # frames that were not ARP

    def probe(self, address: str) -> Conflict | None:
        """Whether ``address`` is free: None, or the conflict that says it is not."""
        s = self.settings
        if s.probe_num == 0:
            return None
        sent = 0
        waits = [link.uniform(self.entropy, 0, s.probe_wait_s)]
        waits += [link.uniform(self.entropy, s.probe_min_s, s.probe_max_s)
                  for _ in range(s.probe_num - 1)]
        waits.append(s.announce_wait_s)
        for index, wait in enumerate(waits):
            conflict = link.receive(self.sock, self.clock() + wait, self.clock,
                                    lambda frame: self._conflict(frame, address, sent))
            if conflict is not None:
                return conflict
            if index < s.probe_num:
                self._send(probe_frame(self.mac, address), "probe")
                sent += 1
                self.probes += 1
        return None

    def announce(self, address: str) -> str | None:
        """One announcement of ``address``; None, or why it could not be sent
        (no reason to stop: the MN's next packet tells the network as much)."""
        try:
            self._send(link.gratuitous_arp(self.mac, address), "announcement")
        except link.LinkError as exc:
            return exc.message
        self.announcements += 1
        return None

    def _send(self, frame: bytes, what: str) -> None:
        try:
            self.sock.send(frame)
        except OSError as exc:
            raise link.LinkError("link", f"cannot send an ARP {what}: "
                                 f"{exc.strerror or exc}") from None

    def _conflict(self, frame: bytes, address: str, probes: int) -> Conflict | None:
        arp = decode_arp(frame)
        if arp is None:
            self.ignored["arp_malformed"] += 1
            return None
        if arp.sender_mac == self.mac:
            return None
        if arp.sender_ip == address:
            return Conflict(address, "in-use", arp.sender_mac, probes)
        if (arp.opcode == ARP_REQUEST and arp.sender_ip == link.UNSPECIFIED
                and arp.target_ip == address):
            return Conflict(address, "probe", arp.sender_mac, probes)
        return None

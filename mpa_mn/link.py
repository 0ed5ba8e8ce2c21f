"""The MN's physical link: when its carrier switches, and the gratuitous ARP
it sends once it is on the new link.

The link-layer switch (RFC 6252 §6.3 step 5) is not the MN's doing: in the
lab a driver moves the MN's link, and the MN sees its carrier drop and come
back.  The kernel counts those in ``/sys/class/net/IF/carrier_changes``;
the MN polls it every millisecond, because everything it does after the
switch sits inside the handover's interruption.  sysfs shows the network
namespace it was mounted in: Mininet's hosts mount their own (``mnexec
-n``), but a process moved into a namespace without remounting it reads
another namespace's interfaces, or none.

The gratuitous ARP (an RFC 5227 announcement: sender and target address
both the nCoA, broadcast) goes out of an AF_PACKET socket, not a
subprocess, for the same reason; the socket is opened before the switch and
closed after the handover, as closing one waits for the kernel.  The same
kind of socket carries a reactive handover's DHCP and ARP probes
(:mod:`mpa_mn.dhcp_client`, :mod:`mpa_mn.dad`) and watches what the MN's
old interface receives (:mod:`mpa_mn.standby`); every reader takes its
frames one at a time from :func:`read_frame`, and reading one until a
deadline is :func:`receive`.

While it waits for the switch, the MN sleeps between two looks at the
carrier in :class:`LinkNotices`, which ends a wait as soon as the kernel
notifies any link change in the MN's network namespace (rtnetlink), so
the carrier is read again then rather than up to a poll interval later;
the poll stays, in case a notice is missed.

The sysfs root, the socket factory, the clocks and sleep are injected, so
the tests need neither root nor a link.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import select
import socket
import struct
import time
from dataclasses import dataclass
from typing import Callable, TypeVar

LOG = logging.getLogger("mpa_mn.link")

SYSFS_NET = "/sys/class/net"
RTMGRP_LINK = 1       # rtnetlink's multicast group of link changes
POLL_INTERVAL_S = 0.001
ETH_P_IP = 0x0800
ETH_P_ARP = 0x0806
ETH_MIN_FRAME = 60    # without the FCS; shorter frames are padded with zeros
BROADCAST = b"\xff" * 6
UNSPECIFIED = "0.0.0.0"
PACKET_OUTGOING = 4   # sll_pkttype of a frame the host itself sent
# Big enough for what GRO hands a packet socket on a veth (more than one
# Ethernet frame); a longer one is cut short.
MAX_FRAME = 1 << 17
# Frames read without waiting: what queued up while nobody read, bounded in
# case a socket misbehaves.
DRAIN_MAX = 4096
T = TypeVar("T")


class LinkError(Exception):
    """The link could not be read or used (``link``), or did not switch in time
    (``link-timeout``).  A handover cancelled for a failure before the switch
    raises one with that failure's code."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message


# -- the carrier ----------------------------------------------------------------

class Carrier:
    """An interface's carrier as sysfs shows it.  Each file is opened at its
    first read and kept open until :meth:`close`, so that a poll is two
    ``pread`` calls: sysfs makes an attribute's text afresh for every read at
    offset 0."""

    MAX_TEXT = 64

    def __init__(self, interface: str, root: str = SYSFS_NET):
        self.interface = interface
        self.directory = os.path.join(root, interface)
        self._fds: dict[str, int] = {}
        self._no_operstate = False

    def _read(self, name: str) -> str:
        fd = self._fds.get(name)
        if fd is None:
            fd = self._fds[name] = os.open(os.path.join(self.directory, name), os.O_RDONLY)
        return os.pread(fd, self.MAX_TEXT, 0).decode("ascii").strip()

    def close(self) -> None:
        for fd in self._fds.values():
            os.close(fd)
        self._fds.clear()

    def __enter__(self) -> "Carrier":
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def read(self) -> tuple[int, bool]:
        """(carrier changes so far, whether the carrier is up now)."""
        try:
            changes = int(self._read("carrier_changes"))
        except (OSError, ValueError) as exc:
            raise LinkError("link", f"cannot read the carrier changes of {self.interface}: "
                            f"{getattr(exc, 'strerror', None) or exc}") from None
        try:
            up = self._read("carrier") == "1"
        except OSError:   # EINVAL while the interface is administratively down
            up = False
        return changes, up and self._operational()

    def _operational(self) -> bool:
        """Whether the kernel has made the link usable: the carrier shows at
        once, but the interface sends only once the kernel's link watch has
        set it operational (and started its queue), a moment later; a frame
        sent before is dropped without an error.  Without an operstate file,
        the carrier alone."""
        if self._no_operstate:
            return True
        try:
            return self._read("operstate") in ("up", "unknown")
        except OSError:
            self._no_operstate = True
            return True


class LinkNotices:
    """A wait between two looks at the carrier that ends early at the
    kernel's next notice of a link change (RTM_NEWLINK and RTM_DELLINK on
    rtnetlink's RTMGRP_LINK, in this process's network namespace): the
    carrier's operational state changes with one.  The socket is opened at
    the first wait and kept; without one (no netlink here), a wait is a
    sleep.  A notice is not parsed: any of them means "read the carrier
    again", and what queued meanwhile is read and dropped."""

    def __init__(self, opener: Callable[[], socket.socket] | None = None,
                 sleep: Callable[[float], None] = time.sleep):
        self._opener = opener or _rtnetlink_links
        self._sleep = sleep
        self._sock: socket.socket | None = None
        self._unavailable = False

    def __call__(self, seconds: float) -> None:
        sock = self._socket()
        if sock is None:
            self._sleep(seconds)
            return
        readable, _, _ = select.select([sock], [], [], seconds)
        if readable:
            for _ in range(DRAIN_MAX):
                try:
                    sock.recv(MAX_FRAME)
                except OSError:   # none left; or ENOBUFS, notices lost: a look is due anyway
                    break

    def _socket(self) -> socket.socket | None:
        if self._sock is None and not self._unavailable:
            try:
                self._sock = self._opener()
            except OSError as exc:
                self._unavailable = True
                LOG.debug("no link notices (%s): the carrier is polled only", exc)
        return self._sock

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None


def _rtnetlink_links() -> socket.socket:
    sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW | socket.SOCK_NONBLOCK
                         | socket.SOCK_CLOEXEC, socket.NETLINK_ROUTE)
    try:
        sock.bind((0, RTMGRP_LINK))
    except OSError:
        sock.close()
        raise
    return sock


@dataclass(frozen=True)
class Switched:
    """When the carrier went and came back (wall clock, ns)."""

    down_at: int
    up_at: int


def _watch(carrier: Carrier, timeout_s: float, clock: Callable[[], float],
           wait: Callable[[float], None], seen: Callable[[int, bool], bool]) -> bool:
    """Read the carrier every poll interval until ``seen(changes, up)``; False
    once ``timeout_s`` is over.  ``wait(seconds)`` passes one interval: a sleep,
    or reading something else meanwhile."""
    deadline = clock() + timeout_s
    while True:
        if seen(*carrier.read()):
            return True
        if clock() >= deadline:
            return False
        wait(POLL_INTERVAL_S)


def _never(carrier: Carrier, what: str, timeout_s: float) -> LinkError:
    return LinkError("link-timeout", f"the carrier of {carrier.interface} never {what} "
                     f"within {timeout_s:g} s")


def wait_for_switch(carrier: Carrier, before: tuple[int, bool], timeout_s: float,
                    clock: Callable[[], float] = time.monotonic,
                    wall_ns: Callable[[], int] = time.time_ns,
                    sleep: Callable[[float], None] = time.sleep) -> Switched:
    """Wait until the carrier has dropped and come back since ``before`` (a
    :meth:`Carrier.read` taken before the switch could start)."""
    changes0, up0 = before
    needed = 2 if up0 else 1     # down and up again; or just up, if it was down already
    down_at = None if up0 else wall_ns()

    def back(changes: int, up: bool) -> bool:
        nonlocal down_at
        if down_at is None and (changes > changes0 or not up):
            down_at = wall_ns()
        return changes - changes0 >= needed and up

    if not _watch(carrier, timeout_s, clock, sleep, back):
        raise _never(carrier, "came back" if down_at is not None else "dropped", timeout_s)
    return Switched(down_at, wall_ns())


def wait_for_drop(carrier: Carrier, before: tuple[int, bool], timeout_s: float,
                  clock: Callable[[], float] = time.monotonic,
                  wait: Callable[[float], None] = time.sleep) -> None:
    """Wait until the carrier has dropped since ``before``: it changed (even if
    it came back between two looks), or it is down."""
    changes0, _ = before
    if not _watch(carrier, timeout_s, clock, wait,
                  lambda changes, up: changes > changes0 or not up):
        raise _never(carrier, "dropped", timeout_s)


# -- ARP and packet sockets ------------------------------------------------------------

def arp_request(mac: str, sender: str, target: str) -> bytes:
    """A broadcast ARP request from ``mac`` (sender address ``sender``) for
    ``target``, as one Ethernet frame."""
    hw = bytes.fromhex(mac.replace(":", ""))
    arp = (struct.pack("!HHBBH", 1, ETH_P_IP, 6, 4, 1) + hw
           + ipaddress.IPv4Address(sender).packed + bytes(6)
           + ipaddress.IPv4Address(target).packed)
    return (BROADCAST + hw + struct.pack("!H", ETH_P_ARP) + arp).ljust(ETH_MIN_FRAME, b"\0")


def gratuitous_arp(mac: str, address: str) -> bytes:
    """An ARP announcement of ``address`` at ``mac`` (RFC 5227 §2.3)."""
    return arp_request(mac, address, address)


def packet_socket(interface: str, protocol: int = 0):
    """A packet socket on ``interface`` that sends whole frames and receives
    those of ethertype ``protocol`` (0: none)."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(protocol))
    try:
        sock.bind((interface, protocol))
    except OSError:
        sock.close()
        raise
    return sock


def raw_socket(interface: str):
    """A packet socket that sends frames out of ``interface`` (and receives none)."""
    return packet_socket(interface)


def read_frame(sock) -> tuple[bool, bytes | None]:
    """The next frame on ``sock``, waiting up to the socket's timeout:
    (whether one came, its bytes).  A frame the host sent itself came, but
    its bytes are None: no reader here wants it, and a drain goes on past it.
    A socket that cannot be read raises LinkError ``link``."""
    try:
        frame, address = sock.recvfrom(MAX_FRAME)
    except (socket.timeout, BlockingIOError, InterruptedError):
        return False, None
    except OSError as exc:
        raise LinkError("link", f"cannot read frames: {exc.strerror or exc}") from None
    return True, None if address[2] == PACKET_OUTGOING else frame


def receive(sock, deadline: float, clock: Callable[[], float],
            take: Callable[[bytes], T | None]) -> T | None:
    """Frames the host received on ``sock``, each given to ``take``, until it
    returns something (returned) or ``deadline`` (``clock``'s) has passed
    (None).  Frames the host sent itself are skipped."""
    while True:
        left = deadline - clock()
        if left <= 0:
            return None
        sock.settimeout(left)
        _, frame = read_frame(sock)
        if frame is None:
            continue   # none yet, or the host's own: the loop's head decides whether time is up
        taken = take(frame)
        if taken is not None:
            return taken


def drain(sock) -> int:
    """Frames queued on ``sock`` read and dropped, without waiting: they came
    before the MN was where it is now.  Returns how many."""
    sock.settimeout(0)
    for count in range(DRAIN_MAX):
        try:
            came, _ = read_frame(sock)
        except LinkError:
            return count       # nothing readable: nothing to drop either
        if not came:
            return count       # nothing more queued
    return DRAIN_MAX


def uniform(entropy: Callable[[int], bytes], low: float, high: float) -> float:
    """A random time in [``low``, ``high``) from ``entropy`` (n -> n random
    bytes): RFC 2131 and RFC 5227 spread retransmissions and probes so that
    hosts that started together do not stay in step."""
    return low + (high - low) * int.from_bytes(entropy(4), "big") / 2**32


class Announcement:
    """The gratuitous ARP for ``address``, its packet socket opened ahead: sending
    is then one system call, and closing the socket (which waits for the
    kernel, milliseconds) is left for after the handover.

    Not being able to announce is no reason to stop a handover (the controller
    also learns the MN from its next packet): ``error`` says what went wrong."""

    def __init__(self, interface: str, mac: str, address: str,
                 socket_factory: Callable = raw_socket):
        self.interface, self.address = interface, address
        self.frame = gratuitous_arp(mac, address)
        self.error = None
        try:
            self.sock = socket_factory(interface)
        except OSError as exc:
            self.sock = None
            self._failed(exc)

    def _failed(self, exc: OSError) -> None:
        self.error = (f"cannot send the gratuitous ARP for {self.address} on "
                      f"{self.interface}: {exc.strerror or exc}")

    def send(self) -> bool:
        if self.sock is None:
            return False
        try:
            self.sock.send(self.frame)
        except OSError as exc:
            self._failed(exc)
            return False
        return True

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

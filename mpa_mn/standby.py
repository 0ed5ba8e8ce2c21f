"""Copy-and-forward for an MN with two interfaces (RFC 6252 §7.6.2), the MN's
side.

The MN is active on its old interface (IF1) and has a second one (IF2)
attached in the target network.  Before anything goes wrong it makes IF2
ready: a new MPA-SA naming IF2's MAC, the nCoA from the network's CA on
IF2 with a permanent neighbour entry for the router (one ``ip -batch``
run; the default route stays on IF1, which is still the active
interface), a gratuitous ARP out of IF2 so that the controller learns the
MN's second interface in the network, and a *standby* binding update: the
home address is to be bound to the nCoA if IF1's link is lost suddenly,
and meanwhile the controller copies the MN's downlink at IF1's PoA (so the
home address must be bound to IF1's address already: ``mpa-mn bind``).

If asked to, it then watches IF1 (the packet socket is opened before the
binding update, when the copying starts): it records a digest of each frame
for the home address IF1 receives (the frames the controller copies), the
last :data:`~mpa_sdn.signalling.DELIVERED_MAX` of them, and polls IF1's
carrier every millisecond.  When the carrier drops, what is still queued
on the socket is read, the default route moves to IF2, and ``handover``
phase ``link-lost`` goes to the network with the digests, so that the
controller can tell which of its copies IF1 never received.  Everything that
needs reading, opening or planning is done before the wait, so between
the loss and the signal there is one ``ip`` run and one message.

The host's parts (``ip``, the sysfs root, the packet sockets, the clocks)
are injected, as in :mod:`mpa_mn.handover`.
"""

from __future__ import annotations

import collections
import logging
import socket
import time
from dataclasses import dataclass
from typing import Callable

from mpa_mn import link
from mpa_mn.client import MobileNode
from mpa_mn.link import Carrier, LinkError
from mpa_mn.vif import Ip, VifError
from mpa_sdn import signalling

LOG = logging.getLogger("mpa_mn.standby")

DEFAULT_LOSS_TIMEOUT_S = 30.0
ETH_P_IP = 0x0800
PACKET_OUTGOING = 4          # sll_pkttype of a frame the host itself sent
HOME_OFFSET = 14 + 16        # the IPv4 destination, in an untagged Ethernet frame
# Big enough for what GRO hands a packet socket on a veth; a longer frame is
# cut short and has no digest (frame_digest needs the whole IPv4 packet).
MAX_FRAME = 1 << 17
# Frames read after the loss: with the carrier down nothing new arrives, so
# this only bounds a socket that misbehaves.
DRAIN_MAX = 4096


def sniff_socket(interface: str):
    """A packet socket receiving every IPv4 frame on ``interface``."""
    sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(ETH_P_IP))
    try:
        sock.bind((interface, ETH_P_IP))
    except OSError:
        sock.close()
        raise
    return sock


class Delivered:
    """The digests of the last frames for ``home`` that ``interface`` received,
    oldest first.  The socket's receive timeout is the MN's poll interval: it
    waits for frames, not asleep, between two looks at the carrier."""

    def __init__(self, interface: str, home: str, socket_factory: Callable = sniff_socket):
        self.interface = interface
        self.home = socket.inet_aton(home)
        self.digests = collections.deque(maxlen=signalling.DELIVERED_MAX)
        self.received = 0        # frames for the home address, all told
        try:
            self.sock = socket_factory(interface)
        except OSError as exc:
            raise LinkError("link", f"cannot watch the frames {interface} receives: "
                            f"{exc.strerror or exc}") from None

    def _note(self, frame: bytes, address) -> None:
        if address[2] == PACKET_OUTGOING or frame[HOME_OFFSET:HOME_OFFSET + 4] != self.home:
            return
        digest = signalling.frame_digest(frame)
        if digest is not None:
            self.digests.append(digest)
            self.received += 1

    def _read(self) -> bool:
        """One frame, if one comes within the socket's timeout."""
        try:
            frame, address = self.sock.recvfrom(MAX_FRAME)
        except (socket.timeout, BlockingIOError, InterruptedError):
            return False
        self._note(frame, address)
        return True

    def poll(self, timeout_s: float) -> None:
        """Waits up to ``timeout_s`` for a frame, and notes it."""
        self.sock.settimeout(timeout_s)
        self._read()

    def drain(self) -> None:
        """Notes whatever is queued, without waiting."""
        self.sock.settimeout(0)
        for _ in range(DRAIN_MAX):
            if not self._read():
                return

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


@dataclass(frozen=True)
class StandbyInterface:
    """What making IF2 ready changes on the host, and what the loss of IF1 does."""

    network: str
    interface: str            # IF2, attached in the network
    old_interface: str        # IF1, the active one
    mac: str                  # IF2's
    address: str              # the nCoA
    prefix_len: int
    router: str
    gateway_mac: str

    def commands(self) -> list[str]:
        """The ``ip -batch`` lines that put the nCoA on IF2, default route untouched."""
        dev = f"dev {self.interface}"
        return [f"addr replace {self.address}/{self.prefix_len} {dev}",
                f"neigh replace {self.router} lladdr {self.gateway_mac} {dev} nud permanent"]

    def loss_commands(self) -> list[str]:
        """The ``ip -batch`` lines once IF1 is lost."""
        return [f"route replace default via {self.router} dev {self.interface}"]


def interface_mac(ip: Ip, interface: str, old_interface: str, mac: str | None = None) -> str:
    """IF2's MAC (``mac`` if given), from one look at the host's interfaces,
    which must have both."""
    links = ip.links()
    for name in (interface, old_interface):
        if name not in links:
            raise VifError(f"no interface {name}")
    mac = mac or links[interface].get("address")
    if not mac:
        raise VifError(f"{interface} has no MAC address to pre-authenticate it with")
    return mac.lower()


class Standby:
    """The MN's copy-and-forward run; the host's parts are injected."""

    def __init__(self, node: MobileNode, ip: Ip, *, sysfs: str = link.SYSFS_NET,
                 raw_socket: Callable = link.raw_socket,
                 sniff_socket: Callable = sniff_socket,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns,
                 perf_ns: Callable[[], int] = time.perf_counter_ns):
        self.node, self.ip, self.sysfs = node, ip, sysfs
        self.raw_socket, self.sniff_socket = raw_socket, sniff_socket
        self.clock, self.wall_ns, self.perf_ns = clock, wall_ns, perf_ns

    def _timed(self, timings: dict, name: str, step: Callable, *args, **kw):
        start = self.perf_ns()
        result = step(*args, **kw)
        timings[name] = round((self.perf_ns() - start) / 1e6, 3)
        return result

    def _source(self, plan: StandbyInterface) -> str | None:
        """Where the MN's messages to the network go from: in-band, the nCoA on
        IF2 (IF1's address is no use once IF1 is lost); else the MN's channel."""
        return plan.address if self.node.sends_inband else None

    def run(self, network: str, home: str, emit: Callable[[dict], None], interface: str,
            old_interface: str, mac: str | None = None,
            loss_timeout_s: float | None = None) -> dict:
        """IF2 made ready and the standby binding sent, then ``emit`` the ready
        event; with ``loss_timeout_s``, wait that long for IF1's loss and signal
        it.  A failure after the binding leaves the binding standing by."""
        if interface == old_interface:
            raise VifError(f"the standby interface and the old one are both {interface}")
        carrier = None if loss_timeout_s is None else Carrier(old_interface, self.sysfs)
        if carrier is not None:
            carrier.read()    # a link that cannot be watched fails before anything is asked
        node, timings = self.node, {}
        mac = interface_mac(self.ip, interface, old_interface, mac)
        sa = self._timed(timings, "preauth", node.preauthenticate, network, mac=mac)
        config = self._timed(timings, "configure", node.configure, network)
        plan = StandbyInterface(network, interface, old_interface, mac, config["address"],
                                config["prefix_len"], config["router"], config["gateway_mac"])
        announcement = delivered = None
        try:
            self._timed(timings, "ip", self.ip.batch, plan.commands())
            announcement = link.Announcement(interface, mac, plan.address, self.raw_socket)
            announced = self._timed(timings, "gratuitous_arp", announcement.send)
            if not announced:
                LOG.warning("%s: %s", network, announcement.error)
            # Open before the binding: the controller copies from then on, and
            # the digests must cover what IF1 receives meanwhile.
            if carrier is not None:
                delivered = Delivered(old_interface, home, self.sniff_socket)
            binding = self._timed(timings, "bind", node.bind, network, home, plan.address,
                                  standby=True)
            ready = {"network": network, "sa": sa.sa, "mac": mac, "interface": interface,
                     "old_interface": old_interface, "home_address": home,
                     **{k: config[k] for k in ("address", "prefix_len", "router",
                                               "gateway_mac")},
                     "binding": {k: binding[k] for k in ("care_of", "lifetime", "standby")},
                     "gratuitous_arp": announced,
                     **({} if announced else {"gratuitous_arp_error": announcement.error}),
                     "timings_ms": timings}
            if carrier is None:
                ready["ready_at"] = self.wall_ns()
                emit({"event": "ready", **ready})
                return ready
            before = carrier.read()
            ready["ready_at"] = self.wall_ns()
            emit({"event": "ready", **ready})
            return {**ready, **self._wait_and_signal(plan, carrier, before, delivered,
                                                     loss_timeout_s, timings)}
        finally:
            for opened in (announcement, delivered):
                if opened is not None:
                    opened.close()

    def _wait_and_signal(self, plan: StandbyInterface, carrier: Carrier,
                         before: tuple[int, bool], delivered: Delivered, timeout_s: float,
                         timings: dict) -> dict:
        """The loss seen, what is still queued read, the route moved, link-lost sent."""
        start = self.perf_ns()
        self._wait_for_loss(carrier, before, delivered, timeout_s)
        delivered.drain()
        loss_detected_at = self.wall_ns()
        timings["loss_wait"] = round((self.perf_ns() - start) / 1e6, 3)
        digests = list(delivered.digests)
        route_error = None
        try:
            self._timed(timings, "route", self.ip.batch, plan.loss_commands())
        except VifError as exc:
            # The controller must still hear of the loss: the downlink is what
            # the signal saves, and it does not need IF2's default route.
            route_error = exc
        answer = self._timed(timings, "link_lost", self.node.switch, plan.network,
                             "link-lost", source=self._source(plan), delivered=digests)
        signalled_at = self.wall_ns()
        if route_error is not None:
            raise VifError(f"{route_error}; link-lost was sent all the same "
                           f"(the handover is {answer['phase']})")
        return {"link_lost": {k: v for k, v in answer.items() if k != "network"},
                "delivered": len(digests), "received": delivered.received,
                "loss_detected_at": loss_detected_at, "signalled_at": signalled_at,
                "timings_ms": timings}

    def _wait_for_loss(self, carrier: Carrier, before: tuple[int, bool],
                       delivered: Delivered, timeout_s: float) -> None:
        """Until IF1's carrier drops (it changed, or it is down), noting its frames."""
        changes0, _ = before
        deadline = self.clock() + timeout_s
        while True:
            delivered.poll(link.POLL_INTERVAL_S)
            changes, up = carrier.read()
            if changes > changes0 or not up:
                return
            if self.clock() >= deadline:
                raise LinkError("link-timeout", f"the carrier of {carrier.interface} never "
                                f"dropped within {timeout_s:g} s; the standby binding stays")


def describe(result: dict) -> str:
    """The result as one line for people."""
    text = (f"{result['interface']} standing by with nCoA {result['address']}/"
            f"{result['prefix_len']}, {result['home_address']} bound to it if "
            f"{result['old_interface']} is lost")
    if not result["gratuitous_arp"]:
        text += f" (no gratuitous ARP: {result.get('gratuitous_arp_error')})"
    if "signalled_at" not in result:
        return text
    return (f"{text}; {result['old_interface']} lost, link-lost sent with "
            f"{result['delivered']} digest(s): handover {result['link_lost']['phase']}")

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
last :data:`~mpa_protocol.messages.DELIVERED_MAX` of them, and polls IF1's
carrier every millisecond.  When the carrier drops, what is still queued
on the socket is read, the default route moves to IF2, and ``handover``
phase ``link-lost`` goes to the network with the digests, so that the
controller can tell which of its copies IF1 never received.  Everything that
needs reading, opening, planning or saving is done before the wait (for
``link-lost``: its sequence number taken and saved, its in-band socket
opened), so between the loss and the signal there is one ``ip`` run and one
message.

The host's parts (``ip``, the sysfs root, the packet sockets, the clocks)
are injected, as in :mod:`mpa_mn.handover`.
"""

from __future__ import annotations

import collections
import contextlib
import logging
import socket
from typing import Callable

from mpa_mn import link, vxlan_end
from mpa_mn.handover import Attachment, HostRun, interface_mac
from mpa_mn.link import Carrier, LinkError
from mpa_mn.mobile_node import MnError, MobileNode, Reserved, without_network
from mpa_mn.vif import Ip, VifError
from mpa_protocol import messages

LOG = logging.getLogger("mpa_mn.standby")

DEFAULT_LOSS_TIMEOUT_S = 30.0
HOME_OFFSET = 14 + 16        # the IPv4 destination, in an untagged Ethernet frame


def sniff_socket(interface: str):
    """A packet socket receiving every IPv4 frame on ``interface``."""
    return link.packet_socket(interface, link.ETH_P_IP)


class Delivered:
    """The digests of the last frames for ``home`` that ``interface`` received,
    oldest first.  The socket's receive timeout is the MN's poll interval: it
    waits for frames, not asleep, between two looks at the carrier.

    A frame longer than :data:`~mpa_mn.link.MAX_FRAME` is cut short and has no
    digest (:func:`~mpa_protocol.messages.frame_digest` needs the whole IPv4
    packet).  The socket failing to read is no reason to keep the loss from
    the controller: the kernel reports the link going (``ENETDOWN``) once, to
    the next read, and the frames queued before it can still be read after.
    ``errors`` counts such reads, ``error`` says what the last one was."""

    def __init__(self, interface: str, home: str, socket_factory: Callable = sniff_socket):
        self.interface = interface
        self.home = socket.inet_aton(home)
        self.digests = collections.deque(maxlen=messages.DELIVERED_MAX)
        self.received = 0        # frames for the home address, all told
        self.errors, self.error = 0, None
        self.timeout = None      # the socket's, as last set
        try:
            self.sock = socket_factory(interface)
        except OSError as exc:
            raise LinkError("link", f"cannot watch the frames {interface} receives: "
                            f"{exc.strerror or exc}") from None

    def _note(self, frame: bytes) -> None:
        if frame[HOME_OFFSET:HOME_OFFSET + 4] != self.home:
            return
        digest = messages.frame_digest(frame)
        if digest is not None:
            self.digests.append(digest)
            self.received += 1

    def _set_timeout(self, seconds: float) -> None:
        """Set once per change, not once per poll: each poll is one system call."""
        if seconds != self.timeout:
            self.sock.settimeout(seconds)
            self.timeout = seconds

    def _read(self) -> bool | None:
        """One frame, if one comes within the socket's timeout: True if one
        came, False if none did, None if the socket could not be read."""
        try:
            came, frame = link.read_frame(self.sock)
        except LinkError as exc:
            self.errors += 1
            self.error = f"{self.interface}: {exc.message}"
            if self.errors == 1:   # the count says how many more
                LOG.warning("%s", self.error)
            return None
        if frame is not None:
            self._note(frame)
        return came

    def poll(self, timeout_s: float) -> None:
        """Waits up to ``timeout_s`` for a frame, and notes it.  A read that
        fails ends the wait early: the carrier's next look decides."""
        self._set_timeout(timeout_s)
        self._read()

    def drain(self) -> None:
        """Notes whatever is queued, without waiting; a read that fails twice
        in a row ends it."""
        self._set_timeout(0)
        failed = False
        for _ in range(link.DRAIN_MAX):
            read = self._read()
            if read is False or (read is None and failed):
                return
            failed = read is None

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None


class Standby(HostRun):
    """The MN's copy-and-forward run (see :class:`~mpa_mn.handover.HostRun`;
    ``sniff_socket`` opens what IF1 receives)."""

    def __init__(self, node: MobileNode, ip: Ip, *, sniff_socket: Callable = sniff_socket,
                 **host):
        super().__init__(node, ip, **host)
        self.sniff_socket = sniff_socket

    def _source_route(self, plan: Attachment) -> list[str]:
        """``ip -batch`` lines: what leaves from the nCoA goes by IF2's router
        (a rule into IF2's own table), whatever the default route is; the rule
        is made once, however often the MN stands by."""
        number = vxlan_end.table(plan.interface)
        rules = self.ip.json("rule", "show", "table", str(number)) or []
        return ([f"route replace default via {plan.router} dev {plan.interface} "
                 f"table {number}"]
                + [" ".join(argv) for argv in vxlan_end.rule_commands(rules, number,
                                                                       plan.address)])

    def _source(self, plan: Attachment) -> str | None:
        """Where the MN's messages to the network go from: in-band, the nCoA on
        IF2 (IF1's address is no use once IF1 is lost); else the MN's channel."""
        return plan.address if self.node.sends_inband else None

    def run(self, network: str, home: str, emit: Callable[[dict], None], interface: str,
            old_interface: str, mac: str | None = None,
            loss_timeout_s: float | None = None) -> dict:
        """IF2 (``interface``) made ready and the standby binding sent, then
        ``emit`` the ready event; with ``loss_timeout_s``, wait that long for the
        loss of IF1 (``old_interface``) and signal it.  A failure after the
        binding leaves the binding standing by."""
        # One function on purpose: the ExitStack holds IF1's carrier, IF2's
        # announcement socket, the sniffer and the reserved link-lost from
        # before the binding until after the loss; in parts, each would have
        # to hand them on to the next.
        if interface == old_interface:
            raise MnError("usage", f"{old_interface} is the old interface: give another "
                          "--interface or --old-interface")
        node, timings = self.node, {}
        with contextlib.ExitStack() as opened:
            carrier = None
            if loss_timeout_s is not None:
                carrier = opened.enter_context(Carrier(old_interface, self.sysfs))
                carrier.read()   # a link that cannot be watched fails before anything is asked
            links = self.ip.links()
            mac = interface_mac(links, interface, mac, "pre-authenticate it with")
            if old_interface not in links:
                raise VifError(f"no interface {old_interface}")
            sa = self._timed(timings, "preauth", node.preauthenticate, network, mac=mac)
            # The nCoA goes straight on IF2, not on a vif beside it.
            config = self._timed(timings, "configure", node.configure, network, vif=False)
            # IF1 is still the active interface: the default route stays on it.
            plan = Attachment(network, interface, mac, config["address"], config["prefix_len"],
                              config["router"], config["gateway_mac"])
            self._timed(timings, "ip", self.ip.batch, plan.commands(default_route=False))
            announcement = opened.enter_context(
                contextlib.closing(plan.announcement(self.raw_socket)))
            announced = self._timed(timings, "gratuitous_arp", announcement.send)
            if not announced:
                LOG.warning("%s: %s", network, announcement.error)
            # Open before the binding: the controller copies from then on, and
            # the digests must cover what IF1 receives meanwhile.
            delivered = None if carrier is None else opened.enter_context(
                contextlib.closing(Delivered(old_interface, home, self.sniff_socket)))
            if node.sends_inband and node.binds_at_home(network):
                # Bound at the home domain from the nCoA, in-band: out of IF2
                # by its router, not out of IF1 with an address from elsewhere.
                self._timed(timings, "source_route", self.ip.batch,
                            self._source_route(plan))
            binding = self._timed(timings, "bind", node.bind_standby, network, home,
                                  plan.address, interface)
            ready = {"network": network, "sa": sa.sa, "mac": mac, "interface": interface,
                     "old_interface": old_interface, "home_address": home,
                     **{k: config[k] for k in ("address", "prefix_len", "router",
                                               "gateway_mac")},
                     "binding": {k: binding[k] for k in (
                         "care_of", "lifetime", "standby", "bound_at", "rewrite_at_mn",
                         "correspondents", "rewrite_installed") if k in binding},
                     "gratuitous_arp": announced,
                     **({} if announced else {"gratuitous_arp_error": announcement.error}),
                     "timings_ms": timings}
            if carrier is None:
                ready["ready_at"] = self.wall_ns()
                emit({"event": "ready", **ready})
                return ready
            # link-lost carries the digests, known only after the loss, so it
            # can only be signed then (one HMAC).  Its sequence number is taken
            # and saved now, and its in-band socket opened, so that no state
            # file is written between the loss and the signal.  The number is
            # never reused: a run that times out leaves a gap, as any
            # unanswered message does, and the AR's replay window allows gaps.
            lost = opened.enter_context(
                node.switch_ahead(binding["bound_at"], "link-lost", source=self._source(plan)))
            before = carrier.read()
            ready["ready_at"] = self.wall_ns()
            emit({"event": "ready", **ready})
            return {**ready, **self._wait_and_signal(plan, carrier, before, delivered, lost,
                                                     loss_timeout_s, timings)}

    def _wait_and_signal(self, plan: Attachment, carrier: Carrier, before: tuple[int, bool],
                         delivered: Delivered, lost: Reserved, timeout_s: float,
                         timings: dict) -> dict:
        """The loss seen, what is still queued read, the route moved, link-lost sent."""
        start = self.perf_ns()
        try:
            link.wait_for_drop(carrier, before, timeout_s, self.clock, delivered.poll)
        except LinkError as exc:
            if exc.code != "link-timeout":
                raise
            raise LinkError(exc.code, f"{exc.message}; the standby binding stays") from None
        delivered.drain()
        loss_detected_at = self.wall_ns()
        timings["loss_wait"] = self._ms_since(start)
        digests = list(delivered.digests)
        route_error = None
        try:
            self._timed(timings, "route", self.ip.batch, plan.route_commands())
        except VifError as exc:
            # The controller must still hear of the loss: the downlink is what
            # the signal saves, and it does not need IF2's default route.
            route_error = exc
        answer = self._timed(timings, "link_lost", lost.send, delivered=digests or None)
        signalled_at = self.wall_ns()
        if route_error is not None:
            raise VifError(f"{route_error}; link-lost was sent all the same "
                           f"(the handover is {answer['phase']})")
        return {"link_lost": without_network(answer),
                "delivered": len(digests), "received": delivered.received,
                **({"read_errors": delivered.errors, "read_error": delivered.error}
                   if delivered.errors else {}),
                "loss_detected_at": loss_detected_at, "signalled_at": signalled_at,
                "timings_ms": timings}

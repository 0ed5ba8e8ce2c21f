"""The MN's proactive handover (RFC 6252 §6.3) as one run, and its own part
after the link-layer switch.

Before the switch (:meth:`Handover.prepare`): a new MPA-SA with the target
network (step 1; an SA for a network the MN left is held and cannot
configure, so it is always a fresh one), the nCoA on the network's vif and
the proactive handover tunnel (step 2), the binding update, in-band from
the nCoA through the tunnel (step 3), and ``pre-switch`` (step 4: the AR
buffers for the nCoA).  The link-layer switch (step 5) is not the MN's
doing; it waits for its carrier to drop and come back.

After the switch (:meth:`Handover.attach`, step 6): the nCoA goes on the
physical interface with the network's router as default route and a
permanent neighbour entry for it (its MAC came with the configuration, so
no ARP is needed, RFC 6252 Appendix B), the previous CoA goes, a gratuitous
ARP announces the nCoA, and ``arrived`` goes to the AR in-band from the
nCoA.  All of that sits inside the handover's interruption, so it is
planned before the switch (:func:`plan_attach`, one look at the host's
interfaces, the packet socket opened) and done with one ``ip -batch`` run,
one frame and one datagram.  What takes the kernel longer waits until
``arrived`` is answered: removing the vif (tens of milliseconds; meanwhile
the nCoA is on both interfaces, which is harmless) and closing the packet
socket.

Timings: each step's duration in ms on a monotonic clock, and wall-clock
marks in ns (``time.time_ns``), so a driver can line them up with its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

from mpa_mn import link
from mpa_mn.client import MobileNode
from mpa_mn.link import Carrier, LinkError
from mpa_mn.protocol import ProtocolError
from mpa_mn.vif import Ip, VifError, ipv4_addresses, own_vif, vif_name

LOG = logging.getLogger("mpa_mn.handover")

DEFAULT_LINK_TIMEOUT_S = 30.0


@dataclass(frozen=True)
class Attachment:
    """What attaching to a network changes on the MN's physical interface."""

    network: str
    interface: str
    mac: str
    address: str            # the nCoA
    prefix_len: int
    router: str
    gateway_mac: str
    remove: tuple[str, ...]   # the previous CoA(s), as ADDRESS/LEN
    vif: str | None           # the network's vif, while it exists (removed afterwards)

    def commands(self) -> list[str]:
        """The ``ip -batch`` lines, in order."""
        dev = f"dev {self.interface}"
        return [f"addr replace {self.address}/{self.prefix_len} {dev}",
                *[f"addr del {old} {dev}" for old in self.remove],
                f"route replace default via {self.router} {dev}",
                f"neigh replace {self.router} lladdr {self.gateway_mac} {dev} nud permanent"]

    def announcement(self, socket_factory: Callable = link.raw_socket) -> link.Announcement:
        return link.Announcement(self.interface, self.mac, self.address, socket_factory)


def plan_attach(ip: Ip, network: str, config: dict, interface: str, mac: str | None = None,
                home: str | None = None) -> Attachment:
    """The attachment to ``network`` from one look at the host's interfaces.

    The previous CoA is every other IPv4 address of ``interface`` shorter than
    /32; /32 addresses (the home address) and other interfaces stay as they are."""
    links = ip.links()
    if interface not in links:
        raise VifError(f"no interface {interface}")
    vif = vif_name(network)
    own_vif(vif, links.get(vif))
    new = (config["address"], config["prefix_len"])
    remove = tuple(f"{local}/{length}" for local, length in ipv4_addresses(links[interface])
                   if (local, length) != new and length < 32 and local != home)
    mac = mac or links[interface].get("address")
    if not mac:
        raise VifError(f"{interface} has no MAC address to announce the nCoA from")
    return Attachment(network, interface, mac, config["address"], config["prefix_len"],
                      config["router"], config["gateway_mac"], remove,
                      vif if vif in links else None)


class Handover:
    """The MN's side of a handover; the host's parts (``ip``, the sysfs root,
    the packet socket, the clocks) are injected."""

    def __init__(self, node: MobileNode, ip: Ip, *, sysfs: str = link.SYSFS_NET,
                 raw_socket: Callable = link.raw_socket,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 wall_ns: Callable[[], int] = time.time_ns,
                 perf_ns: Callable[[], int] = time.perf_counter_ns):
        self.node, self.ip, self.sysfs, self.raw_socket = node, ip, sysfs, raw_socket
        self.clock, self.sleep, self.wall_ns, self.perf_ns = clock, sleep, wall_ns, perf_ns

    def _timed(self, timings: dict, name: str, step: Callable, *args, **kw):
        start = self.perf_ns()
        result = step(*args, **kw)
        timings[name] = round((self.perf_ns() - start) / 1e6, 3)
        return result

    # -- before the switch ------------------------------------------------------

    def prepare(self, network: str, home: str, buffer_old: bool = False) -> dict:
        """Steps 1-4: ready for the link-layer switch to ``network``."""
        node, timings = self.node, {}
        sa = self._timed(timings, "preauth", node.preauthenticate, network)
        config = self._timed(timings, "configure", node.configure, network)
        tunnel = self._timed(timings, "tunnel", node.tunnel, network)
        binding = self._timed(timings, "bind", node.bind, network, home, config["address"])
        pre = self._timed(timings, "pre_switch", node.switch, network, "pre-switch",
                          buffer_old)
        return {"network": network, "sa": sa.sa, "home_address": home,
                **{k: config[k] for k in ("address", "prefix_len", "router", "gateway_mac")},
                "tunnel": {k: tunnel[k] for k in ("poa", "lifetime")},
                "binding": {k: binding[k] for k in ("care_of", "lifetime")},
                "pre_switch": _state(pre), "timings_ms": timings}

    def run(self, network: str, home: str, emit: Callable[[dict], None],
            buffer_old: bool = False, interface: str | None = None, mac: str | None = None,
            link_timeout_s: float | None = None) -> dict:
        """Steps 1-4, then ``emit`` the ready event; with ``link_timeout_s``, wait
        that long for ``interface``'s switch and attach (steps 5-6).  Once the AR
        buffers, a failure before the switch (``link-timeout`` among them) is
        raised after ``cancel`` is sent."""
        carrier = None if link_timeout_s is None else Carrier(interface, self.sysfs)
        if carrier is not None:
            carrier.read()    # a link that cannot be watched fails before anything is asked
        ready = self.prepare(network, home, buffer_old)
        if carrier is None:
            ready["ready_at"] = self.wall_ns()
            emit({"event": "ready", **ready})
            return ready
        announcement = None
        try:
            # Everything that needs reading or opening is done now, before the
            # link goes.
            plan = plan_attach(self.ip, network, self.node.config(network), interface, mac,
                               home)
            announcement = plan.announcement(self.raw_socket)
            before = carrier.read()
            ready["ready_at"] = self.wall_ns()
            emit({"event": "ready", **ready})
            start = self.perf_ns()
            switched = link.wait_for_switch(carrier, before, link_timeout_s, self.clock,
                                            self.wall_ns, self.sleep)
        except (LinkError, VifError) as exc:
            if announcement is not None:
                announcement.close()
            raise self._cancelled(network, exc) from None
        ready["timings_ms"]["link_wait"] = round((self.perf_ns() - start) / 1e6, 3)
        attached = self.attach(plan, announcement)
        return {**ready, "link_down_at": switched.down_at, "link_up_at": switched.up_at,
                **attached, "timings_ms": {**ready["timings_ms"], **attached["timings_ms"]}}

    def _cancelled(self, network: str, failure: LinkError | VifError) -> LinkError:
        code, message = ((failure.code, failure.message) if isinstance(failure, LinkError)
                         else ("interface", str(failure)))
        try:
            self.node.switch(network, "cancel")
        except ProtocolError as exc:
            return LinkError(code, f"{message}; cancel failed too ({exc.code}: {exc.message})")
        return LinkError(code, f"{message}; the handover is cancelled")

    # -- after the switch -------------------------------------------------------

    def attach(self, plan: Attachment, announcement: link.Announcement | None = None) -> dict:
        """Step 6 (see the module's docstring); ``arrived`` is retransmitted as any
        in-band message is."""
        announcement = announcement or plan.announcement(self.raw_socket)
        timings = {}
        try:
            self._timed(timings, "ip", self.ip.batch, plan.commands())
            announced = self._timed(timings, "gratuitous_arp", announcement.send)
            attached_at = self.wall_ns()
            arrived = self._timed(timings, "arrived", self.node.switch, plan.network,
                                  "arrived", source=plan.address)
            arrived_at = self.wall_ns()
        finally:
            announcement.close()
        if not announced:
            LOG.warning("%s: %s", plan.network, announcement.error)
        return {"network": plan.network, "interface": plan.interface,
                "address": plan.address, "prefix_len": plan.prefix_len,
                "router": plan.router, "gateway_mac": plan.gateway_mac,
                "removed": list(plan.remove), **self._remove_vif(plan, timings),
                "gratuitous_arp": announced,
                **({} if announced else {"gratuitous_arp_error": announcement.error}),
                "arrived": _state(arrived), "attached_at": attached_at,
                "arrived_at": arrived_at, "timings_ms": timings}

    def _remove_vif(self, plan: Attachment, timings: dict) -> dict:
        """The vif, now that the handover is over; a failure is reported, not
        raised: the MN is attached."""
        if plan.vif is None:
            return {"vif_removed": False}
        try:
            self._timed(timings, "remove_vif", self.ip, "link", "del", "dev", plan.vif)
        except VifError as exc:
            LOG.warning("%s: %s", plan.network, exc)
            return {"vif_removed": False, "vif_error": str(exc)}
        return {"vif_removed": True}


def _state(answer: dict) -> dict:
    """A handover-state answer without its network."""
    return {k: v for k, v in answer.items() if k != "network"}

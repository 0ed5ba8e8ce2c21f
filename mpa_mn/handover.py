"""The MN's proactive handover (RFC 6252 §6.3) as one run, and its own part
after the link-layer switch.

Before the switch (:meth:`Handover.prepare`): a new MPA-SA with the target
network (step 1; an SA for a network the MN left is held and cannot
configure, so it is always a fresh one), the nCoA on the network's vif and
the proactive handover tunnel (step 2), the binding update, in-band from
the nCoA through the tunnel (step 3): at the target's AR when the target
is of the MN's home domain, else at the home domain, under an MPA-SA with
one of its networks, the MN then rewriting for the correspondents the
answer lists (:meth:`MobileNode.bind_care_of`); and ``pre-switch`` (step 4:
the target's AR buffers for the nCoA, under the SA with the target, as
before).  The link-layer switch (step 5) is not the MN's
doing; it waits for its carrier to drop and come back.

After the switch (:meth:`Handover.attach`, step 6): a gratuitous ARP
announces the nCoA at once (the controller learns the MN at its new PoA from
it and delivers the buffer to its home address), then the nCoA goes on the
physical interface with the network's router as default route and a
permanent neighbour entry for it (its MAC came with the configuration, so
no ARP is needed, RFC 6252 Appendix B), the previous CoA goes, and
``arrived`` goes to the AR in-band from the nCoA.  If the tunnel was a
VXLAN one the MN ends (:mod:`mpa_mn.vxlan_end`), the rule steering the nCoA's packets into it goes first, in the same run:
from then on they leave from the physical interface.  All of that sits
inside the handover's interruption, so it is planned before the switch
(:func:`plan_attach`, one look at the host's interfaces and, for a VXLAN
tunnel, at its rules, the packet socket opened, ``arrived``'s sequence
number taken and saved and its UDP socket opened) and done with one
``ip -batch`` run, one frame and one datagram.  What takes the kernel
longer waits until ``arrived`` is answered: removing the vif (tens of
milliseconds; meanwhile the nCoA is on both interfaces, which is
harmless), with a VXLAN tunnel's table, and closing the sockets.

Modes (``mode``): ``buffer`` (the default) is the above; ``bicast`` asks the
controller to bicast instead of buffering (§7.6.1: ``pre-switch`` with that
mode); ``none`` skips step 4 altogether, so nothing holds the traffic that
the tunnel carries towards the old PoA while the link switches, and after
the switch the MN attaches but sends no ``arrived``: there is no handover at
the controller to arrive for.  The controller learns the MN at its new PoA
from its gratuitous ARP, ends the tunnel and moves the binding's reach
there.  What is sent meanwhile is lost: the mode is MPA without its
buffering, for comparison.

The controller's answer to ``arrived`` is its verdict on the handover: one
it switched back (``switched-back``: the MN was late, or seen elsewhere) or no
longer has (``wrong-state``: it was switched back and is over) did not
complete.  The MN is attached in the target network all the same; the run
then fails with :class:`HandoverFailed` (:func:`arrival_checked`), carrying
what was done.

Timings: each step's duration in ms on a monotonic clock, and wall-clock
marks in ns (``time.time_ns``), so a driver can line them up with its own.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, replace
from typing import Callable

from mpa_mn import link, vxlan_end
from mpa_mn.link import Carrier, LinkError
from mpa_mn.mobile_node import MnError, MobileNode, Reserved, without_network
from mpa_mn.protocol import VXLAN, ProtocolError
from mpa_mn.vif import Ip, VifError, ipv4_addresses, vif_name
from mpa_protocol.messages import BICAST, BUFFER, HANDOVER_MODES, SWITCHED_BACK

LOG = logging.getLogger("mpa_mn.handover")

DEFAULT_LINK_TIMEOUT_S = 30.0
NO_PRE_SWITCH = "none"
MODES = (*HANDOVER_MODES, NO_PRE_SWITCH)
# The controller's refusal of an ``arrived`` for a handover it does not have.
NO_HANDOVER = "wrong-state"


class HandoverFailed(Exception):
    """The controller's answer to ``arrived`` says the handover did not
    complete; ``result`` is what the MN did all the same.  Its ``code`` is
    SWITCHED_BACK, the controller's phase of a handover it switched back."""

    def __init__(self, message: str, result: dict):
        super().__init__(message)
        self.code, self.message, self.result = SWITCHED_BACK, message, result


def arrival_checked(result: dict) -> dict:
    """``result`` (an attachment that said ``arrived``), unless the
    controller's answer says the handover was switched back: then
    HandoverFailed, worded the same whichever way the answer says it."""
    if result.get("arrived", {}).get("phase") == SWITCHED_BACK:
        answer = SWITCHED_BACK
    elif "arrived_refused" in result:
        refused = result["arrived_refused"]
        answer = f"{refused['code']}: {refused['message']}"
    else:
        return result
    raise HandoverFailed(f"the controller switched the handover to {result['network']} back "
                         f"(it answered arrived with {answer})", result)


@dataclass(frozen=True)
class Attachment:
    """What attaching to a network changes on one of the MN's interfaces."""

    network: str
    interface: str
    mac: str
    address: str            # the nCoA
    prefix_len: int
    router: str
    gateway_mac: str | None        # None: not known ahead (DHCP), found by ARP
    remove: tuple[str, ...] = ()   # the previous CoA(s), as ADDRESS/LEN
    unsteer: tuple[str, ...] = ()  # ip -batch lines deleting a VXLAN tunnel's rules

    def commands(self, default_route: bool = True) -> list[str]:
        """The ``ip -batch`` lines, in order; without ``default_route`` the
        default route is left where it is (see :meth:`route_commands`)."""
        dev = f"dev {self.interface}"
        neighbour = [] if self.gateway_mac is None else [
            f"neigh replace {self.router} lladdr {self.gateway_mac} {dev} nud permanent"]
        return [*self.unsteer, f"addr replace {self.address}/{self.prefix_len} {dev}",
                *[f"addr del {old} {dev}" for old in self.remove],
                *(self.route_commands() if default_route else []), *neighbour]

    def route_commands(self) -> list[str]:
        """The ``ip -batch`` lines that make the network's router the default route."""
        return [f"route replace default via {self.router} dev {self.interface}"]

    def announcement(self, socket_factory: Callable = link.raw_socket) -> link.Announcement:
        return link.Announcement(self.interface, self.mac, self.address, socket_factory)


def interface_mac(links: dict[str, dict], interface: str, mac: str | None, use: str) -> str:
    """``mac`` if given, else ``interface``'s (``links``: :meth:`Ip.links`);
    ``use`` says what for, should it have none."""
    if interface not in links:
        raise VifError(f"no interface {interface}")
    mac = mac or links[interface].get("address")
    if not mac:
        raise VifError(f"{interface} has no MAC address to {use}")
    return mac.lower()


def plan_attach(ip: Ip, network: str, config: dict, interface: str,
                mac: str | None = None) -> Attachment:
    """The attachment to ``network`` from one look at the host's interfaces.

    The previous CoA is every other IPv4 address of ``interface`` shorter than
    /32; /32 addresses (the home address) and other interfaces stay as they are."""
    links = ip.links()
    mac = interface_mac(links, interface, mac, "announce the nCoA from")
    return replace(attachment(network, config, interface, mac, links[interface]),
                   unsteer=_unsteer(ip, links, network))


def _unsteer(ip: Ip, links: dict[str, dict], network: str) -> tuple[str, ...]:
    """The ``ip -batch`` lines deleting the rules that steer the nCoA into
    ``network``'s VXLAN tunnel; asked only when its vif is a VXLAN device."""
    name = vif_name(network)
    if not vxlan_end.is_vxlan(links.get(name)):
        return ()
    number = vxlan_end.table(name)
    rules = ip.json("rule", "show", "table", str(number))
    return tuple(" ".join(argv) for argv in vxlan_end.rule_commands(rules, number, None))


def attachment(network: str, config: dict, interface: str, mac: str,
               link_now: dict) -> Attachment:
    """The attachment to ``network`` with ``config`` (``address``,
    ``prefix_len``, ``router``, ``gateway_mac`` if known) of ``interface`` as
    ``link_now`` (:meth:`Ip.links`'s view of it) shows it."""
    new = (config["address"], config["prefix_len"])
    remove = tuple(f"{local}/{length}" for local, length in ipv4_addresses(link_now)
                   if (local, length) != new and length < 32)
    return Attachment(network, interface, mac, config["address"], config["prefix_len"],
                      config["router"], config.get("gateway_mac"), remove)


class HostRun:
    """What a run on the MN's host works with: the MN and the host's parts
    (``ip``, the sysfs root, the packet socket, the clocks), injected."""

    def __init__(self, node: MobileNode, ip: Ip, *, sysfs: str = link.SYSFS_NET,
                 raw_socket: Callable = link.raw_socket,
                 clock: Callable[[], float] = time.monotonic,
                 wall_ns: Callable[[], int] = time.time_ns,
                 perf_ns: Callable[[], int] = time.perf_counter_ns):
        self.node, self.ip, self.sysfs, self.raw_socket = node, ip, sysfs, raw_socket
        self.clock, self.wall_ns, self.perf_ns = clock, wall_ns, perf_ns

    def _ms_since(self, start_ns: int) -> float:
        return round((self.perf_ns() - start_ns) / 1e6, 3)

    def _timed(self, timings: dict, name: str, step: Callable, *args, **kw):
        """``step(*args, **kw)``, its duration added to ``timings[name]`` (ms)."""
        start = self.perf_ns()
        result = step(*args, **kw)
        timings[name] = round(timings.get(name, 0.0) + self._ms_since(start), 3)
        return result


class Handover(HostRun):
    """The MN's side of a handover (see :class:`HostRun`; ``sleep`` passes the
    time between two looks at the carrier)."""

    def __init__(self, node: MobileNode, ip: Ip, *,
                 sleep: Callable[[float], None] = time.sleep, **host):
        super().__init__(node, ip, **host)
        self.sleep = sleep

    # -- before the switch ------------------------------------------------------

    def prepare(self, network: str, home: str, buffer_old: bool = False,
                mode: str = BUFFER) -> dict:
        """Steps 1-4 (step 4 as ``mode`` says): ready for the link-layer switch
        to ``network``."""
        ready = self.before_pre_switch(network, home, buffer_old, mode)
        self._pre_switch(ready, buffer_old)
        return ready

    def before_pre_switch(self, network: str, home: str, buffer_old: bool = False,
                          mode: str = BUFFER) -> dict:
        """Steps 1-3; the pre-switch (step 4) is the caller's, or the
        network's when a policy engine decides it (:meth:`switch_told`)."""
        if mode not in MODES:
            raise MnError("usage", f"no handover mode {mode!r}: one of {', '.join(MODES)}")
        if buffer_old and mode != BUFFER:
            raise MnError("usage", "only a buffering handover buffers at the old AR too")
        node, timings = self.node, {}
        sa = self._timed(timings, "preauth", node.preauthenticate, network)
        config = self._timed(timings, "configure", node.configure, network)
        tunnel = self._timed(timings, "tunnel", node.tunnel, network)
        binding = self._timed(timings, "bind", node.bind_care_of, network, home,
                              config["address"], tunnel=tunnel["encapsulation"])
        ready = {"network": network, "mode": mode, "sa": sa.sa, "home_address": home,
                 **{k: config[k] for k in ("address", "prefix_len", "router", "gateway_mac")},
                 "tunnel": {k: v for k, v in tunnel.items() if k not in ("network", "address")},
                 "binding": {k: v for k, v in binding.items()
                             if k not in ("network", "home_address")},
                 "timings_ms": timings}
        return ready

    def _pre_switch(self, ready: dict, buffer_old: bool) -> None:
        """Step 4: from the answer on, the target's AR holds (or drops, when
        bicasting) the nCoA's traffic, so nothing else may follow it before
        the MN is ready to go."""
        mode = ready["mode"]
        if mode == BICAST and self._steered_at_home(ready):
            # The home domain keeps the binding: it sends the other leg, to
            # where the MN is, and must before the nAR drops the target leg
            # (a duplicate meanwhile rather than a loss).
            steered = self._timed(ready["timings_ms"], "bicast", self.node.bind,
                                  ready["binding"]["bound_at"], ready["home_address"],
                                  ready["address"], bicast_to=self.node.address)
            ready["bicast"] = {"at": steered["network"], "to": steered["bicast_to"]}
        if mode != NO_PRE_SWITCH:
            pre = self._timed(ready["timings_ms"], "pre_switch", self.node.switch,
                              ready["network"], "pre-switch", buffer_old,
                              mode=None if mode == BUFFER else mode)
            ready["pre_switch"] = without_network(pre)

    @staticmethod
    def _steered_at_home(ready: dict) -> bool:
        """Whether the home domain, not the nAR, sends a bicast's other leg:
        the tunnel ends at the MN (the nAR's controller does not see it), or
        the binding is kept by a network other than the target's."""
        return (ready["tunnel"].get("encapsulation") == VXLAN
                or ready["binding"].get("bound_at", ready["network"]) != ready["network"])

    def run(self, network: str, home: str, emit: Callable[[dict], None],
            buffer_old: bool = False, interface: str | None = None, mac: str | None = None,
            link_timeout_s: float | None = None, mode: str = BUFFER) -> dict:
        """Steps 1-4, then ``emit`` the ready event; with ``link_timeout_s``, wait
        that long for ``interface``'s switch and attach (steps 5-6).  Once the AR
        buffers (or bicasts), a failure before the switch (``link-timeout``
        among them) is raised after ``cancel`` is sent."""
        if link_timeout_s is None:
            ready = self.prepare(network, home, buffer_old, mode)
            ready["ready_at"] = self.wall_ns()
            emit({"event": "ready", **ready})
            return ready
        with Carrier(interface, self.sysfs) as carrier:
            carrier.read()    # a link that cannot be watched fails before anything is asked
            ready = self.before_pre_switch(network, home, buffer_old, mode)

            def go() -> None:
                self._pre_switch(ready, buffer_old)
                ready["ready_at"] = self.wall_ns()
                emit({"event": "ready", **ready})

            def failed(exc: LinkError | VifError | MnError) -> LinkError:
                # Only a pre-switch that went out has anything to cancel.
                return (self._cancelled(network, exc) if "pre_switch" in ready
                        else self._unswitched(exc))
            attached = self._switch_and_attach(carrier, network, interface, mac,
                                               link_timeout_s, go, failed,
                                               arrive=mode != NO_PRE_SWITCH)
        return arrival_checked({**ready, **attached,
                                "timings_ms": {**ready["timings_ms"], **attached["timings_ms"]}})

    def switch_told(self, network: str, emit: Callable[[dict], None], interface: str,
                    mac: str | None, timeout_s: float, poa: str | None = None) -> dict:
        """Steps 5-6 when the network started the handover (a policy engine's
        pre-switch): the target's AR already buffers, so the MN only gets
        ready, says so (``emit``: the switch event, for whatever moves its
        link), waits for the switch and attaches.  A failure is raised as it
        is: the handover is the network's to cancel."""
        with Carrier(interface, self.sysfs) as carrier:
            carrier.read()
            return self._switch_and_attach(
                carrier, network, interface, mac, timeout_s,
                lambda: emit({"event": "switch", "network": network, "poa": poa,
                              "at": self.wall_ns()}))

    def _switch_and_attach(self, carrier: Carrier, network: str, interface: str,
                           mac: str | None, timeout_s: float, go: Callable[[], None],
                           failed: Callable[[Exception], LinkError] | None = None,
                           arrive: bool = True) -> dict:
        """Steps 5-6: what the attachment needs is read, opened and saved, then
        ``go`` (the last thing before the link may switch), the wait for the
        switch, and the attachment.  A failure up to the switch closes what
        was opened; ``failed`` turns a LinkError, VifError or MnError into
        the error raised."""
        announcement = arrived = None
        try:
            # Everything that needs reading, opening or saving is done now,
            # before ``go``: once the AR buffers, the traffic waits in its
            # buffer until the MN has moved.  ``arrived``'s sequence number
            # comes before pre-switch's; the AA's replay window takes them in
            # either order.
            plan = plan_attach(self.ip, network, self.node.config(network), interface, mac)
            announcement = plan.announcement(self.raw_socket)
            if arrive:
                arrived = self.node.switch_ahead(network, "arrived", source=plan.address)
            before = carrier.read()
            go()
            start = self.perf_ns()
            switched = link.wait_for_switch(carrier, before, timeout_s, self.clock,
                                            self.wall_ns, self.sleep)
        except BaseException as exc:
            for opened in (announcement, arrived):
                if opened is not None:
                    opened.close()
            if failed is not None and isinstance(exc, (LinkError, VifError, MnError)):
                raise failed(exc) from None
            raise
        waited = self._ms_since(start)
        attached = self.attach(plan, announcement, arrived, arrive=arrive)
        return {"link_down_at": switched.down_at, "link_up_at": switched.up_at, **attached,
                "timings_ms": {"link_wait": waited, **attached["timings_ms"]}}

    def _cancelled(self, network: str, failure: LinkError | VifError | MnError) -> LinkError:
        code, message = (("interface", str(failure)) if isinstance(failure, VifError)
                         else (failure.code, failure.message))
        try:
            self.node.switch(network, "cancel")
        except (ProtocolError, MnError) as exc:
            return LinkError(code, f"{message}; cancel failed too ({exc.code}: {exc.message})")
        return LinkError(code, f"{message}; the handover is cancelled")

    @staticmethod
    def _unswitched(failure: LinkError | VifError | MnError) -> LinkError:
        """Without a pre-switch there is nothing to cancel: the tunnel goes on
        carrying the nCoA's traffic to where the MN is."""
        code, message = (("interface", str(failure)) if isinstance(failure, VifError)
                         else (failure.code, failure.message))
        return LinkError(code, f"{message}; the binding stays on the tunnel")

    # -- after the switch -------------------------------------------------------

    def attach(self, plan: Attachment, announcement: link.Announcement | None = None,
               arrived: Reserved | None = None, arrive: bool = True) -> dict:
        """Step 6 (see the module's docstring); ``arrived`` (from
        :meth:`MobileNode.switch_ahead`) is retransmitted as any in-band message
        is.  What is not given is opened or reserved here, before the ``ip`` run.
        Without ``arrive`` (no pre-switch), nothing is signalled."""
        announcement = announcement or plan.announcement(self.raw_socket)
        timings, signalled = {}, {}
        try:
            if arrive:
                arrived = arrived or self.node.switch_ahead(plan.network, "arrived",
                                                            source=plan.address)
            # The announcement first: it is how the controller sees the MN at
            # its new PoA, and the buffer it then delivers goes to the home
            # address, which needs nothing the ip run sets up; waiting for
            # the ip run (a process: milliseconds) kept the buffer waiting too.
            announced = self._timed(timings, "gratuitous_arp", announcement.send)
            self._timed(timings, "ip", self.ip.batch, plan.commands())
            self.node.address = plan.address    # the MN's current address from now on
            attached_at = self.wall_ns()
            if arrive:
                signalled = self._arrived(arrived, timings)
        finally:
            for opened in (announcement, arrived):
                if opened is not None:
                    opened.close()
        if not announced:
            LOG.warning("%s: %s", plan.network, announcement.error)
        return {"network": plan.network, "interface": plan.interface,
                "address": plan.address, "prefix_len": plan.prefix_len,
                "router": plan.router, "gateway_mac": plan.gateway_mac,
                "removed": list(plan.remove), **self._remove_vif(plan.network, timings),
                **self._arrived_home(plan.network, signalled),
                "gratuitous_arp": announced,
                **({} if announced else {"gratuitous_arp_error": announcement.error}),
                **signalled, "attached_at": attached_at, "timings_ms": timings}

    def _arrived(self, arrived: Reserved, timings: dict) -> dict:
        """``arrived`` sent, and the controller's answer: its handover's state,
        or its refusal for a handover it no longer has (then the MN is
        attached all the same, and the caller judges, see arrival_checked)."""
        try:
            answer = self._timed(timings, "arrived", arrived.send)
        except ProtocolError as exc:
            if exc.code != NO_HANDOVER:
                raise
            return {"arrived_refused": {"code": exc.code, "message": exc.message},
                    "arrived_at": self.wall_ns()}
        return {"arrived": without_network(answer), "arrived_at": self.wall_ns()}

    def _arrived_home(self, network: str, signalled: dict) -> dict:
        """In a network of the home domain, once the arrival is done, the
        rewriting left from a binding abroad goes: the home domain's switches
        rewrite for the MN attached there.  Not when the controller switched
        the handover back, or has none: the binding may still be abroad."""
        if signalled.get("arrived", {}).get("phase") == SWITCHED_BACK or \
                "arrived_refused" in signalled:
            return {}
        return self.node.arrived_home(network)

    def _remove_vif(self, network: str, timings: dict) -> dict:
        """The network's vif (and a VXLAN tunnel's end), now that the handover
        is over; a failure is reported, not raised: the MN is attached."""
        try:
            removed = self._timed(timings, "remove_vif", self.node.drop_vif, network)
        except VifError as exc:
            LOG.warning("%s: %s", network, exc)
            return {"vif_removed": False, "vif_error": str(exc)}
        return {"vif_removed": removed}

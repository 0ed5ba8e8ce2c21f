"""A handover without MPA (RFC 6252 Appendix C.5), the MN's side, as the
baseline that MPA's handovers are measured against.

Nothing is prepared before the move.  After it, as a host in a network
without MPA: the link-layer switch (the MN waits for its carrier to drop and
come back), an address by DHCP on the
wire (:mod:`mpa_mn.dhcp_client`), duplicate address detection for it
(:mod:`mpa_mn.dad`; a conflict declines the lease and starts DHCP again
after ``decline_wait_s``), the address on the interface with the router as
default route (the previous CoA removed, the /32 home address kept; the
router's MAC is left to ARP), the first announcement, authentication with
the target network's AA in full (PANA with EAP relayed to the domain's
RADIUS server, as pre-authentication does, for a new MPA-SA), and the
binding update, home address -> the new address.  The interruption runs
from the link going down to the binding's answer.

Which address each step uses.  The MN has no address in the target network
until DHCP and DAD are done, and the controller answers PANA and in-band
signalling only from an address it routes there.  So authentication (PANA,
UDP to the AA, whatever the MN's channel) comes once the address is on the
interface, from it, as PANA for network access does (RFC 5191 §1: after
the PaC is configured with an address); and the binding update always goes
in-band from the new address, as every binding update does (the
controller takes it as proof that the MN holds its care-of there).

The target network must be a candidate of the MN's current one: where its
AA answers is taken from discovery before the move (what the link layer
would tell a host of its authenticator), and no other exchange happens
before the move.

The packet sockets (IPv4 for DHCP, ARP for DAD) and the carrier are opened
before the switch; whatever they queued meanwhile is dropped when the link
comes back.  Clocks, sleep, randomness, the sockets and ``ip`` are
injected, as in :mod:`mpa_mn.handover`.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import secrets
import time
from dataclasses import dataclass
from typing import Callable

from mpa_mn import link
from mpa_mn.dad import Conflict, Dad, DadSettings
from mpa_mn.dhcp_client import DhcpClient, DhcpSettings, Lease
from mpa_mn.handover import HostRun, attachment, interface_mac
from mpa_mn.link import Carrier, LinkError
from mpa_mn.mobile_node import MobileNode
from mpa_mn.vif import Ip

LOG = logging.getLogger("mpa_mn.reactive")


@dataclass(frozen=True)
class ReactiveSettings:
    dhcp: DhcpSettings = DhcpSettings()
    dad: DadSettings = DadSettings()
    decline_wait_s: float = 10.0   # RFC 2131 §3.1 step 5: after a DECLINE

    def __post_init__(self):
        if self.decline_wait_s < 0:
            raise ValueError("the wait after a DECLINE is not negative")


class Reactive(HostRun):
    """The MN's reactive handover (see :class:`~mpa_mn.handover.HostRun`;
    ``packet_socket(interface, ethertype)`` opens the DHCP and ARP sockets,
    ``entropy`` draws DHCP's transaction ids and both protocols' random
    waits, ``sleep`` waits after a DECLINE and between announcements,
    ``link_wait`` between two looks at the carrier; by default ``sleep``)."""

    def __init__(self, node: MobileNode, ip: Ip, *,
                 packet_socket: Callable = link.packet_socket,
                 sleep: Callable[[float], None] = time.sleep,
                 link_wait: Callable[[float], None] | None = None,
                 entropy: Callable[[int], bytes] = secrets.token_bytes, **host):
        super().__init__(node, ip, **host)
        self.packet_socket, self.sleep, self.entropy = packet_socket, sleep, entropy
        self.link_wait = link_wait or sleep

    def run(self, network: str, home: str, emit: Callable[[dict], None], interface: str,
            mac: str | None = None, settings: ReactiveSettings = ReactiveSettings(),
            link_timeout_s: float | None = None) -> dict:
        """With ``link_timeout_s``: ``emit`` the ready event once the carrier is
        watched, and wait that long for the switch; without, the MN is taken to
        be attached to ``network`` already.  Then authenticate, get and check
        an address, attach and bind ``home`` to it."""
        node, timings = self.node, {}
        links = self.ip.links()
        mac = interface_mac(links, interface, mac, "ask for an address with")
        report = {"network": network, "home_address": home, "interface": interface,
                  "mac": mac}
        with contextlib.ExitStack() as opened:
            carrier = None
            if link_timeout_s is not None:
                carrier = opened.enter_context(Carrier(interface, self.sysfs))
                carrier.read()   # a link that cannot be watched fails before anything is asked
            candidate = node.candidate(network)
            sockets = [opened.enter_context(contextlib.closing(self._open(interface, kind)))
                       for kind in (link.ETH_P_IP, link.ETH_P_ARP)]
            dhcp = DhcpClient(sockets[0], mac, settings.dhcp, clock=self.clock,
                              entropy=self.entropy)
            dad = Dad(sockets[1], mac, settings.dad, clock=self.clock, entropy=self.entropy)
            if carrier is not None:
                self._wait_link(carrier, link_timeout_s, emit, report, timings)
            for sock in sockets:
                link.drain(sock)
            lease, conflicts = self._address(dhcp, dad, settings, timings)
            plan = attachment(network, lease.config(), interface, mac, links[interface])
            self._timed(timings, "ip", self.ip.batch, plan.commands())
            self._moved(opened, lease)
            announce_error = self._timed(timings, "announce", dad.announce, lease.address)
            announced = self.clock()
            report["attached_at"] = self.wall_ns()
            sa = self._authenticate(network, candidate, mac, report, timings)
            # At the network's AR, or at the home domain's for a network of
            # another domain (mpa_mn.home_binding): the network's controller
            # may know nothing of the MN's home address.
            binding = self._timed(timings, "bind", node.bind_care_of, network, home,
                                  lease.address)
            report["bound_at"] = self.wall_ns()
            # In a home network its switches rewrite: a rewriting left from abroad goes.
            binding = {**binding, **node.arrived_home(network)}
            announce_error = self._announce_rest(dad, lease.address, announced,
                                                 settings.dad) or announce_error
        if announce_error:
            LOG.warning("%s: %s", network, announce_error)
        return {**report, "sa": sa.sa, **lease.config(), "removed": list(plan.remove),
                "binding": {k: v for k, v in binding.items()
                            if k not in ("network", "home_address")},
                **_exchanges(dhcp, dad, conflicts, settings.dad),
                **({"announce_error": announce_error} if announce_error else {}),
                "ignored": dict(sorted((dhcp.ignored + dad.ignored).items())),
                "timings_ms": timings}

    def _moved(self, opened: contextlib.ExitStack, lease: Lease) -> None:
        """The lease's address is the MN's current one from now on (as after
        an MPA handover's step 6): a binding kept at home discovers from it
        where the MN is.  In-band, what the MN sends for the rest of the run
        goes from it, on one socket (opened once the address is on the
        interface: it cannot be bound before), to the new router; the MN's
        channel before is back when the run ends."""
        node = self.node
        node.address = lease.address
        if node.sends_inband:
            opened.callback(setattr, node, "channel", node.channel)
            node.channel = node.inband(lease.address, lease.config()["router"])
            opened.callback(node.channel.close)
            node.channel.open()

    def _wait_link(self, carrier: Carrier, timeout_s: float, emit: Callable[[dict], None],
                   report: dict, timings: dict) -> None:
        """The ready event once the carrier is watched, then the wait for the
        link-layer switch, its times in ``report``."""
        before = carrier.read()
        report["ready_at"] = self.wall_ns()
        emit({"event": "ready", **report})
        start = self.perf_ns()
        switched = link.wait_for_switch(carrier, before, timeout_s, self.clock,
                                        self.wall_ns, self.link_wait)
        timings["link_wait"] = self._ms_since(start)
        report.update(link_down_at=switched.down_at, link_up_at=switched.up_at)

    def _open(self, interface: str, ethertype: int):
        try:
            return self.packet_socket(interface, ethertype)
        except OSError as exc:
            raise LinkError("link", f"cannot open a packet socket on {interface}: "
                            f"{exc.strerror or exc}") from None

    def _authenticate(self, network: str, candidate: dict, mac: str, report: dict,
                      timings: dict):
        """PANA from the new address (``_moved`` made it the MN's)."""
        sa = self._timed(timings, "auth", self.node.preauthenticate, network, candidate, mac)
        report["authenticated_at"] = self.wall_ns()
        return sa

    def _address(self, dhcp: DhcpClient, dad: Dad, settings: ReactiveSettings,
                 timings: dict) -> tuple[Lease, list[Conflict]]:
        """A lease whose address DAD found free, and the conflicts on the way."""
        conflicts = []
        while True:
            lease = self._timed(timings, "dhcp", dhcp.acquire)
            conflict = self._timed(timings, "dad", dad.probe, lease.address)
            if conflict is None:
                return lease, conflicts
            conflicts.append(conflict)
            dhcp.decline(lease)
            LOG.warning("%s is in use (%s, %s): declined", lease.address, conflict.kind,
                        conflict.mac)
            if len(conflicts) >= settings.dad.max_conflicts:
                raise LinkError("dad-conflict", f"every address DHCP gave was in use "
                                f"({', '.join(c.address for c in conflicts)})")
            self._timed(timings, "decline_wait", self.sleep, settings.decline_wait_s)

    def _announce_rest(self, dad: Dad, address: str, first: float,
                       settings: DadSettings) -> str | None:
        """The announcements after the first, each ``announce_interval_s`` after
        the one before; the last error, if any."""
        error = None
        for index in range(1, settings.announce_num):
            self.sleep(max(0.0, first + index * settings.announce_interval_s - self.clock()))
            error = dad.announce(address) or error
        return error


def _exchanges(dhcp: DhcpClient, dad: Dad, conflicts: list, settings: DadSettings) -> dict:
    """What the DHCP exchange and the address check sent, got and found."""
    return {"dhcp": {"transactions": dhcp.transactions, "sent": dict(dhcp.sent),
                     "received": dict(dhcp.received),
                     "declined": [c.address for c in conflicts]},
            "dad": {"probes": dad.probes, "announcements": dad.announcements,
                    "conflicts": [c.view() for c in conflicts],
                    "settings": dataclasses.asdict(settings),
                    "minimum_ms": round(settings.minimum_s * 1000, 3)}}

"""What Open vSwitch needs at the lab's access routers to end proactive
handover tunnels at an MN in another domain (RFC 6252 §7.4): the commands,
worked out from the topology alone.

OVS's userspace datapath terminates and originates VXLAN itself ("native
tunnelling"):

* a tunnel ends at a bridge's LOCAL port that holds the tunnel's local
  address, and only for frames sent there to the bridge's own MAC.  So an
  access router S with a ``pht_port`` P, the AR of network N, gets N's
  gateway MAC as its bridge MAC (the controller sends tunnel packets for the
  gateway to LOCAL with that MAC), a VXLAN port numbered P whose local
  address is N's gateway, and the gateway as a /32 on S in the root
  namespace (a /32 adds no route to the host);
* an encapsulated packet leaves by the bridge OVS's routing table names for
  its destination.  Every bridge of the lab lives in one ovs-vswitchd, with
  one such table, keyed by destination alone (OVS 3.1's native tunnelling
  ignores pkt_mark).  So each domain D with such ports sends its tunnels to
  the networks of the other domains out of its border switch B: a
  link-local next hop on B (an address of B's own, and a static neighbour
  entry, so OVS never ARPs for it) and a route per prefix.  The packet then
  enters B at its LOCAL port, where D's controller routes it.  A prefix two
  domains would both need routed cannot be served by one table: that is an
  error here, where a real deployment has one OVS, and one table, per AR.

:func:`plan` computes it all; :class:`Plan` turns it into the commands that
set it up and the ones that take the routes away again (the bridges take
their ports and addresses with them when the lab deletes them).  The lab
runs both (mpa_lab/net/lab.py).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

from mpa_protocol.schema import ConfigError
from mpa_sdn import interface_names
from mpa_sdn.domain_view import domain_of_switches
from mpa_sdn.topology import Topology

# Where the lab's next hops are numbered: 169.254.K.0/30 for the K-th, the
# border switch holding .1, the next hop .2.  Link-local: never routed
# anywhere, so it cannot clash with a topology's own prefixes.
NEXT_HOP_BLOCK = ipaddress.IPv4Network("169.254.0.0/16")
# K runs from 1 to this (one /24 of NEXT_HOP_BLOCK each).
MAX_NEXT_HOPS = 254


class TunnellingError(ValueError):
    """The topology asks for tunnel endpoints the lab's one OVS cannot give."""

    def __init__(self, problems: list[str]):
        self.problems = problems
        super().__init__("; ".join(problems))


@dataclass(frozen=True)
class Endpoint:
    """An access router's end of the tunnels to MNs in other domains."""

    switch: str
    port: int                              # the OpenFlow port number (pht_port)
    network: str                           # the network it is the AR of
    address: ipaddress.IPv4Address         # that network's gateway: the tunnels' local end
    mac: str                               # the gateway's MAC, made the bridge's

    @property
    def port_name(self) -> str:
        return interface_names.pht_port_name(self.switch)


@dataclass(frozen=True)
class NextHop:
    """Where one domain's encapsulated packets leave: its border switch,
    through a next hop that exists only in OVS's tables."""

    domain: str
    switch: str                            # the border switch: its LOCAL port takes them
    address: ipaddress.IPv4Interface       # the border switch's own, on the next hop's /30
    gateway: ipaddress.IPv4Address         # the next hop
    mac: str                               # the next hop's (static) MAC
    prefixes: tuple[ipaddress.IPv4Network, ...]   # the destinations routed through it


@dataclass(frozen=True)
class Command:
    argv: tuple[str, ...]
    # ovs-vswitchd learns the kernel's addresses asynchronously: a command
    # that needs one it may not have seen yet is tried again until it does.
    retry: bool = False


# ovs-vswitchd's datapath flows idle out after this long (other_config:
# max-idle, 10 s by default).  Open vSwitch 3.1's revalidators can miss a
# datapath flow when the OpenFlow table changes (coverage counter
# revalidate_missed_dp_flow): at an nAR, a megaflow that punted a leaving
# MN's address as unresolved then outlived the new tunnel's flow for the same
# address, for as long as the MN's retries kept it in use, and the answers to
# the MN never went into the tunnel.  In the lab, the third to fifth of 15
# inter-domain handovers 1 s apart failed so in 3 of 8 runs; with flows
# idling out after 1 s, in 0 of 12 (docs/benchmarks.md, 2026-12-07).
DATAPATH_MAX_IDLE_MS = 1000


@dataclass(frozen=True)
class Plan:
    endpoints: tuple[Endpoint, ...] = ()
    next_hops: tuple[NextHop, ...] = ()

    def setup(self) -> list[Command]:
        """Everything, in order, on bridges that exist and hold none of it."""
        commands = []
        for e in self.endpoints:
            commands += [
                Command(("ovs-vsctl", "--timeout=10", "set", "bridge", e.switch,
                         f"other-config:hwaddr={e.mac}",
                         "--", "add-port", e.switch, e.port_name,
                         "--", "set", "interface", e.port_name, "type=vxlan",
                         f"ofport_request={e.port}", "options:remote_ip=flow",
                         "options:key=flow", f"options:local_ip={e.address}")),
                *_addressed(e.switch, f"{e.address}/32"),
            ]
        for hop in self.next_hops:
            commands += [
                *_addressed(hop.switch, str(hop.address)),
                Command(("ovs-appctl", "tnl/neigh/set", hop.switch, str(hop.gateway), hop.mac),
                        retry=True),
                *(Command(("ovs-appctl", "ovs/route/add", str(prefix), hop.switch,
                           str(hop.gateway)), retry=True) for prefix in hop.prefixes),
            ]
        if self.endpoints:
            commands.append(Command(("ovs-vsctl", "--timeout=10", "set", "Open_vSwitch", ".",
                                     f"other_config:max-idle={DATAPATH_MAX_IDLE_MS}")))
        return commands

    def teardown(self) -> list[Command]:
        """The routes, which outlive the bridges they name; failures (a
        route not there) are harmless, so this also clears an earlier
        lab's leftovers."""
        return [Command(("ovs-appctl", "ovs/route/del", str(prefix)))
                for hop in self.next_hops for prefix in hop.prefixes] + (
            [Command(("ovs-vsctl", "--timeout=10", "remove", "Open_vSwitch", ".",
                      "other_config", "max-idle"))] if self.endpoints else [])

    def addresses(self) -> dict[str, str]:
        """Each address the lab puts in the root namespace -> its bridge."""
        return {**{str(e.address): e.switch for e in self.endpoints},
                **{str(h.address.ip): h.switch for h in self.next_hops}}


def _addressed(switch: str, address: str) -> list[Command]:
    """The bridge's own interface up with ``address``, and quiet on IPv6:
    what the kernel would send there enters the bridge at LOCAL."""
    return [Command(("ip", "addr", "add", address, "dev", switch)),
            Command(("sysctl", "-qw", f"net.ipv6.conf.{switch}.disable_ipv6=1")),
            Command(("ip", "link", "set", switch, "up"))]


def plan(topology: Topology) -> Plan:
    """The endpoints and next hops ``topology``'s pht ports need; a
    TunnellingError lists every reason the lab cannot give them."""
    pht = sorted(sid for sid, s in topology.switches.items() if s.pht_port is not None)
    if not pht:
        return Plan()
    problems: list[str] = []
    endpoints = tuple(_endpoint(topology, sid, problems) for sid in pht)
    try:
        owner = domain_of_switches(topology)
    except ConfigError as exc:
        raise TunnellingError(problems + exc.lines()) from None
    next_hops = _next_hops(topology, owner, {owner[sid] for sid in pht}, problems)
    if problems:
        raise TunnellingError(problems)
    return Plan(tuple(e for e in endpoints if e is not None), next_hops)


def _endpoint(topology: Topology, sid: str, problems: list[str]) -> Endpoint | None:
    switch = topology.switches[sid]
    served = [n for n in topology.networks.values() if n.access_router == sid]
    if len(served) != 1:  # the configuration check refuses it too
        problems.append(f"{sid}'s pht_port needs a switch that is the AR of exactly one "
                        f"network (it is the AR of {len(served)})")
        return None
    trouble = interface_names.problem(interface_names.pht_port_name(sid))
    if trouble:
        problems.append(f"{sid}'s pht_port: {trouble}")
        return None
    network = served[0]
    return Endpoint(sid, switch.pht_port, network.id, network.gateway, network.gateway_mac)


def _next_hops(topology: Topology, owner: dict[str, str], tunnelling: set[str],
               problems: list[str]) -> tuple[NextHop, ...]:
    """Per domain with tunnel endpoints, a next hop on each border switch
    towards the other domains; each prefix routed by one of them alone."""
    borders: dict[tuple[str, str], list[str]] = {}   # (domain, other domain) -> its switches
    for link in topology.links:
        ends = (link.a.switch, link.b.switch)
        for here, there in (ends, ends[::-1]):
            if owner[here] != owner[there]:
                borders.setdefault((owner[here], owner[there]), []).append(here)
    routes: dict[tuple[str, str], list] = {}          # (domain, border switch) -> prefixes
    routed_by: dict[ipaddress.IPv4Network, list[str]] = {}
    for domain in sorted(tunnelling):
        for network in sorted(topology.networks.values(), key=lambda n: n.id):
            if network.domain == domain:
                continue
            switches = borders.get((domain, network.domain))
            if not switches:
                problems.append(f"{domain} has pht ports but no border link to "
                                f"{network.domain}: its tunnels cannot reach {network.id}")
                continue
            routes.setdefault((domain, sorted(switches)[0]), []).append(network.prefix)
            routed_by.setdefault(network.prefix, []).append(domain)
    for prefix, domains in sorted(routed_by.items()):
        if len(domains) > 1:
            problems.append(
                f"{prefix} would need a route for the tunnels of {' and of '.join(domains)}: "
                "every bridge of the lab shares one ovs-vswitchd and its one routing table, "
                "keyed by destination alone (a real deployment has one OVS, and one table, "
                "per AR); give pht ports to fewer domains")
    if len(routes) > MAX_NEXT_HOPS:
        problems.append(f"{len(routes)} border switches would need a next hop; the lab "
                        f"numbers at most {MAX_NEXT_HOPS}")
        return ()
    taken = _macs(topology)
    hops = []
    for k, ((domain, switch), prefixes) in enumerate(sorted(routes.items()), start=1):
        subnet = ipaddress.IPv4Network(
            (int(NEXT_HOP_BLOCK.network_address) + (k << 8), 30))
        own, gateway = list(subnet.hosts())
        mac = f"02:a9:fe:{k:02x}:00:02"
        if mac in taken:
            problems.append(f"the next hop of {switch} would have the MAC {mac}, which is "
                            f"{taken[mac]}'s")
        hops.append(NextHop(domain, switch, ipaddress.IPv4Interface(f"{own}/30"), gateway, mac,
                            tuple(sorted(set(prefixes)))))
    return tuple(hops)


def _macs(topology: Topology) -> dict[str, str]:
    """The MACs the topology gives: each -> whose it is."""
    macs = {n.gateway_mac.lower(): f"{n.id}'s gateway" for n in topology.networks.values()}
    for hosts in (topology.correspondents, topology.mobile_nodes):
        macs.update({h.mac.lower(): h.id for h in hosts.values()})
    return macs

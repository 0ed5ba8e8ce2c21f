"""The proactive handover tunnel, PHT (RFC 6252 §6.3 step 2, §7.4): the
MN's request and release, its MPLS labels and flows, the tunnel following
the MN, and its end (its lifetime, a release, its lease's or MPA-SA's end,
the MN's arrival in its network).

A tunnel carries an nCoA between its network's access router (nAR) and the
MN's current point of attachment, before the MN moves.  Traffic addressed to
the nCoA that reaches the nAR goes to the MN where it is; traffic the MN
sends from the nCoA enters the nAR as if the MN were already there, so the
nAR's routing and ingress filtering see what they would see after the move.

Encapsulation: one MPLS label per direction along the graph's switch path
from the nAR to the PoA's switch (a label-switched path).  OVS pushes and
pops MPLS on the userspace datapath, the header costs 4 bytes (no MTU
worries on the lab's veths), the label is exact-matched in INGRESS of every
switch on the path, and nothing else in the pipeline sends MPLS, so the
labels need no coordination with the rest.  Labels are per tunnel, allocated
by the controller from 16 up (0-15 are reserved).

Where the nAR is the PoA's own switch, no label is needed: the flows there
deliver straight to the MN's port.

Where the nAR's controller does not control the MN's PoA (the MN is in
another administrative domain), no label-switched path can be built.  The
tunnel is then the RFC's own: an IP tunnel whose outer addresses are the
MN's current address (oCoA, "outer") and the nAR's (its gateway), whose
inner address is the nCoA (§7.4).  VXLAN, because Open vSwitch terminates it
natively on the userspace datapath (the AR's ``pht_port``) and the MN's
Linux kernel does too.  The key (VNI) is the tunnel's first label, so the
allocation above keeps keys unique; traffic out of the tunnel is accepted
only with its key, from its outer address and from its nCoA.
"""

from __future__ import annotations

import collections
import heapq
import logging
from dataclasses import dataclass, replace

from ryu.ofproto import ether

from mpa_protocol.messages import VXLAN_PORT
from mpa_sdn import openflow as of
from mpa_sdn.forwarding import Host, last_hop_actions
from mpa_sdn.mobility.flowsync import RECEIVE
from mpa_sdn.mobility.records import TUNNEL_KIND, Refused
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import PRIO_TUNNEL, Feature, Table, address_cookie
from mpa_sdn.topology import PoA

LOG = logging.getLogger("mpa_sdn.mobility")

# The nAR sends a packet into the tunnel, and routes what comes out of it,
# often by the port it came in on (an AR with one uplink).  OpenFlow never
# outputs a packet to its own in_port, so the in_port is set to the bridge's
# LOCAL port first, which no flow of ours outputs to.  OpenFlow 1.3 cannot
# write in_port; OVS's Nicira register load can (its FAQ's hairpin recipe).
HAIRPIN = (of.reg_load("in_port_nxm", 16, 0xFFFE),)  # OFPP_LOCAL, in 16 bits
FIRST_LABEL = 16
LAST_LABEL = (1 << 20) - 1
MPLS, VXLAN = "mpls", "vxlan"


@dataclass(frozen=True)
class Tunnel:
    """A proactive handover tunnel: ``address`` (the nCoA, in ``network``)
    delivered to ``mac`` at ``poa``."""

    address: str
    network: str
    identity: str
    mac: str
    poa: PoA | None          # None: a VXLAN tunnel to an MN in another domain
    down_label: int          # nAR -> PoA (VXLAN: the key)
    up_label: int            # PoA -> nAR
    expires: float           # wall clock
    outer: str | None = None  # VXLAN: the MN's current address, the tunnel's far end

    @property
    def cookie(self) -> int:
        return address_cookie(Feature.TUNNEL, self.address)

    @property
    def key(self) -> int:
        return self.down_label

    @property
    def encapsulation(self) -> str:
        """VXLAN to an MN that is in another domain (at its outer address), else MPLS."""
        return MPLS if self.outer is None else VXLAN


def poa_id(tunnel: Tunnel) -> str | None:
    return None if tunnel.poa is None else tunnel.poa.id


def path(graph: NeighbourhoodGraph, tunnel: Tunnel) -> list[str]:
    """The switches from the nAR to the PoA's switch, both included."""
    return graph.switch_path(graph.network(tunnel.network).access_router, tunnel.poa.switch)


def egress_actions(graph: NeighbourhoodGraph, tunnel: Tunnel) -> list:
    """The last hop to the MN at the tunnel's PoA: from its current router's
    MAC, as every packet it gets there comes (no TTL: the tunnel's entry
    counted the hop)."""
    return last_hop_actions(Host(tunnel.address, tunnel.mac, tunnel.poa),
                            graph.network(tunnel.poa.network), forwarded=False)


def into(graph: NeighbourhoodGraph, tunnel: Tunnel, rewrite: list = ()) -> list:
    """The nAR's actions that send a packet for the nCoA down the tunnel
    (after ``rewrite``): TTL - 1 there, as the routed hop it stands for."""
    hops = path(graph, tunnel)
    if len(hops) == 1:
        return [*rewrite, of.dec_ttl(), *egress_actions(graph, tunnel)]
    return [*rewrite, of.dec_ttl(), *of.push_mpls(tunnel.down_label), *HAIRPIN,
            of.output(graph.port_to(hops[0], hops[1]))]


def up_from_poa(graph: NeighbourhoodGraph, tunnel: Tunnel, rewrite: list = ()) -> list:
    """The PoA switch's instructions for a packet the MN sends from the nCoA
    (after ``rewrite``): up the tunnel, or straight to ROUTE when the PoA's
    switch is the nAR."""
    hops = path(graph, tunnel)
    if len(hops) == 1:
        return of.apply(*rewrite) + of.goto(Table.ROUTE) if rewrite else of.goto(Table.ROUTE)
    return of.apply(*rewrite, *of.push_mpls(tunnel.up_label),
                    of.output(graph.port_to(hops[-1], hops[-2])))


def vxlan_flows(graph: NeighbourhoodGraph, tunnel: Tunnel) -> dict[str, list]:
    """An MN-terminated tunnel's flows, all at the nAR: into the VXLAN port
    towards the MN's outer address, and out of it, routed as if the MN were
    in the network (only its key, from its outer address, from the nCoA)."""
    nar = graph.network(tunnel.network).access_router
    port = graph.topology.switches[nar].pht_port
    return {nar: [
        of.flow_add(Table.ROUTE, PRIO_TUNNEL,
                    of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=tunnel.address),
                    of.apply(of.dec_ttl(), *vxlan_into(graph, tunnel)), tunnel.cookie),
        of.flow_add(Table.INGRESS, PRIO_TUNNEL,
                    of.match(in_port=port, tunnel_id=tunnel.key, tun_ipv4_src=tunnel.outer,
                             eth_type=ether.ETH_TYPE_IP, ipv4_src=tunnel.address),
                    of.goto(Table.ROUTE), tunnel.cookie)]}


def vxlan_into(graph: NeighbourhoodGraph, tunnel: Tunnel) -> list:
    """The nAR's actions that send a packet into an MN-terminated tunnel: the
    inner frame from the router to the MN's MAC, the key, the outer address."""
    network = graph.network(tunnel.network)
    port = graph.topology.switches[network.access_router].pht_port
    return [of.set_field(eth_src=network.gateway_mac), of.set_field(eth_dst=tunnel.mac),
            of.set_field(tunnel_id=tunnel.key), of.set_field(tun_ipv4_dst=tunnel.outer),
            of.output(port)]


def answer(graph: NeighbourhoodGraph, tunnel: Tunnel) -> dict:
    """What the MN is told of its tunnel (the ``tunnel`` message's fields)."""
    if tunnel.encapsulation == MPLS:
        return {"address": tunnel.address, "poa": tunnel.poa.id}
    network = graph.network(tunnel.network)
    return {"address": tunnel.address, "encapsulation": VXLAN, "key": tunnel.key,
            "endpoint": str(network.gateway), "outer": tunnel.outer, "udp_port": VXLAN_PORT,
            "router_mac": network.gateway_mac}


def flows(graph: NeighbourhoodGraph, tunnel: Tunnel) -> dict[str, list]:
    """The tunnel's flows, by switch."""
    if tunnel.encapsulation == VXLAN:
        return vxlan_flows(graph, tunnel)
    tag = tunnel.cookie
    hops = path(graph, tunnel)
    by_switch: dict[str, list] = {s: [] for s in hops}
    nar, poa_switch = hops[0], hops[-1]
    by_switch[nar].append(of.flow_add(
        Table.ROUTE, PRIO_TUNNEL, of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=tunnel.address),
        of.apply(*into(graph, tunnel)), tag))
    by_switch[poa_switch].append(of.flow_add(
        Table.INGRESS, PRIO_TUNNEL,
        of.match(in_port=tunnel.poa.port, eth_type=ether.ETH_TYPE_IP, eth_src=tunnel.mac,
                 ipv4_src=tunnel.address),
        up_from_poa(graph, tunnel), tag))
    for index in range(1, len(hops)):
        here, before = hops[index], hops[index - 1]
        after = hops[index + 1] if index + 1 < len(hops) else None
        # Down: label in from the switch before, out to the next or the MN.
        down = of.match(in_port=graph.port_to(here, before), eth_type=ether.ETH_TYPE_MPLS,
                        mpls_label=tunnel.down_label)
        actions = ([of.output(graph.port_to(here, after))] if after else
                   [of.pop_mpls(), *egress_actions(graph, tunnel)])
        by_switch[here].append(of.flow_add(Table.INGRESS, PRIO_TUNNEL, down, of.apply(*actions),
                                           tag))
    for index in range(len(hops) - 2, -1, -1):
        here, before = hops[index], hops[index + 1]
        up = of.match(in_port=graph.port_to(here, before), eth_type=ether.ETH_TYPE_MPLS,
                      mpls_label=tunnel.up_label)
        if index > 0:
            instructions = of.apply(of.output(graph.port_to(here, hops[index - 1])))
        else:  # the nAR: out of the tunnel, routed as if sent in its network
            instructions = of.apply(of.pop_mpls(), *HAIRPIN) + of.goto(Table.ROUTE)
        by_switch[here].append(of.flow_add(Table.INGRESS, PRIO_TUNNEL, up, instructions, tag))
    return by_switch


class Labels:
    """The labels tunnels use, and the lowest free ones, with no walk over
    every tunnel: below ``_top`` a label is used or on the freed heap (some
    there stale, used again since); from ``_top`` up, they are taken in turn."""

    def __init__(self):
        self._used: collections.Counter = collections.Counter()
        self._freed: list[int] = []
        self._top = FIRST_LABEL

    def take(self, tunnel: Tunnel) -> None:
        self._used.update((tunnel.down_label, tunnel.up_label))

    def release(self, tunnel: Tunnel) -> None:
        for label in (tunnel.down_label, tunnel.up_label):
            self._used[label] -= 1
            if self._used[label] <= 0:
                del self._used[label]
                if label < self._top:
                    heapq.heappush(self._freed, label)

    def lowest_two(self) -> tuple[int, int]:
        """The two lowest labels no tunnel uses (still free until one takes them)."""
        down = self._lowest()
        self._used[down] += 1   # so that it is not the up label too
        try:
            up = self._lowest()
        finally:
            self._used[down] -= 1
        for label in (down, up):
            heapq.heappush(self._freed, label)
        return down, up

    def _lowest(self) -> int:
        while self._freed:
            label = heapq.heappop(self._freed)
            if not self._used[label]:
                return label
        while self._used[self._top]:
            self._top += 1
        if self._top > LAST_LABEL:
            raise StopIteration("no MPLS label left")
        self._top += 1
        return self._top - 1


class TunnelFlows:
    """The tunnels' flows, for the make-before-break engine."""

    feature = Feature.TUNNEL

    def __init__(self, graph: NeighbourhoodGraph, tunnels: dict[str, Tunnel]):
        self.graph, self.tunnels = graph, tunnels

    def subjects(self):
        return self.tunnels.keys()

    def flows(self, address: str) -> dict[str, list]:
        tunnel = self.tunnels.get(address)
        return flows(self.graph, tunnel) if tunnel is not None else {}

    def stage(self, mod) -> str:
        return RECEIVE   # a tunnel only receives: a binding or a buffer steers into it


class Tunnelling:
    """The tunnel's requests, releases and ends, and the tunnel following
    the MN (a part of :class:`~mpa_sdn.mobility.Mobility`, on its state)."""

    def tunnel_request(self, sa, lease, origin_mac: str | None, lifetime: int | None,
                       wall: float, outer: str | None = None,
                       origin_ip: str | None = None) -> dict:
        """``origin_mac``, ``origin_ip``: the in-band request's source (None
        over REST); ``outer``: the address the MN says it has where it is."""
        poa = self.where.get(sa.mn_mac)
        # A request in-band from another domain's network: the MN has left the
        # PoA it was last seen at, which an access point's port never says.
        # (Over REST, ``outer`` is only its word: refused below as ever.)
        abroad = (poa is not None and origin_ip is not None
                  and self._foreign_network(origin_ip) is not None)
        if abroad:
            poa = None
        if lease is None:
            raise Refused("wrong-state", f"no nCoA in {sa.network}: ask for a configuration first")
        if poa is None and (outer is not None or origin_ip is not None):
            # Not attached at a PoA of ours: perhaps in another domain.
            outer = self._foreign_outer(sa, outer, origin_ip)
        elif origin_mac is not None and origin_mac != sa.mn_mac:
            raise Refused("binding-refused", "the request did not come from the SA's MAC")
        elif poa is None:
            raise Refused("wrong-state", "the MN is not attached anywhere the controller knows")
        elif poa.network == sa.network:
            raise Refused("wrong-state", f"the MN is already attached to {sa.network}")
        else:
            outer = None
        old = self.tunnels.get(lease.address)
        mine = self._tunnels_of.count(sa.identity)
        if old is None and mine >= self.settings.max_tunnels_per_mn:
            self.counters["tunnel_refused_limit"] += 1
            raise Refused("tunnel-limit", f"the MN holds {mine} tunnels, the most it may")
        if old is None and len(self.tunnels) >= self.settings.max_tunnels:
            self.counters["tunnel_refused_limit"] += 1
            raise Refused("tunnel-limit", "the controller holds as many tunnels as it may")
        longest = self.policy_of(sa.network).tunnel_lifetime_s
        life = min(lifetime or longest, longest)
        expires = min(wall + life, sa.expires, lease.expires)
        if old is not None:
            tunnel = replace(old, poa=poa, mac=sa.mn_mac, expires=expires, outer=outer)
            self.counters["tunnel_refreshed"] += 1
        else:
            down, up = self._labels()
            tunnel = Tunnel(lease.address, sa.network, sa.identity, sa.mn_mac, poa, down, up,
                            expires, outer)
            self.counters["tunnel_created"] += 1
            self.counters[f"tunnel_created_{tunnel.encapsulation}"] += 1
            LOG.info("identity=%s mac=%s tunnel for %s from the AR of network=%s to %s "
                     "(%s %d/%d)", sa.identity, sa.mn_mac, lease.address, sa.network,
                     f"poa={poa.id}" if outer is None else f"the MN at outer={outer}",
                     "labels" if outer is None else "key", down, up)
        if abroad:
            # Where it was is forgotten; its hosts there are polled
            # (Router.left_behind_by_tunnels).
            self.counters["tunnel_mn_seen_abroad"] += 1
            self.where.pop(sa.mn_mac, None)
        self.tunnels[tunnel.address] = tunnel
        self.tunnelled.append(tunnel.address)   # Router.left_behind_by_tunnels
        self._save_tunnel(tunnel)
        self._sync()
        return {**answer(self.graph, tunnel), "lifetime": max(0, int(tunnel.expires - wall))}

    def take_tunnelled(self) -> list[str]:
        """The addresses tunnels were made or refreshed for since the last call."""
        taken, self.tunnelled = self.tunnelled, []
        return taken

    def _foreign_outer(self, sa, outer: str | None, origin_ip: str | None) -> str:
        """The outer address of an MN-terminated tunnel (RFC 6252 §7.4) for an
        MN this controller does not see at any PoA: an address in another
        domain's network, the one the in-band request came from.  The MN's
        MAC proves nothing here: routers between the domains replace it."""
        if outer is None:
            outer = origin_ip
        elif origin_ip is not None and origin_ip != outer:
            self.counters["tunnel_refused_outer"] += 1
            raise Refused("binding-refused", f"the request came from {origin_ip}, "
                                             f"not from its outer address {outer}")
        there = self.graph.network_of_address(outer)
        if there is None or self.graph.topology.serves(there):
            self.counters["tunnel_refused_outer"] += 1
            raise Refused("wrong-state", "the MN is not attached anywhere the controller knows"
                          + ("" if there is None else f" (its outer address {outer} is in "
                             f"{there.id}, where it is not attached)"))
        nar = self.graph.network(sa.network).access_router
        if self.graph.topology.switches[nar].pht_port is None:
            self.counters["tunnel_refused_no_port"] += 1
            raise Refused("wrong-state", f"the AR of {sa.network} ({nar}) has no tunnel port "
                                         f"for MNs in other domains (pht_port)")
        return outer

    def _labels(self) -> tuple[int, int]:
        return self._label_pool.lowest_two()

    def tunnel_release(self, sa, lease) -> None:
        tunnel = self.tunnels.get(lease.address) if lease else None
        if tunnel is None or tunnel.identity != sa.identity:
            self.counters["tunnel_release_nothing"] += 1
            return
        if self._busy(tunnel.address):
            raise Refused("wrong-state", "a handover through this tunnel is in progress")
        self._drop_tunnel(tunnel, "released")
        self._sync()

    def _drop_tunnel(self, tunnel: Tunnel, why: str) -> None:
        """The tunnel ends (``why``: expired, released, arrived, lease_released,
        sa_expired, ...); the bindings through it follow the MN."""
        with self._because(reason=why.replace("_", "-")):
            del self.tunnels[tunnel.address]
        self.store.delete(TUNNEL_KIND, tunnel.address)
        self.counters[f"tunnel_{why}"] += 1
        LOG.info("identity=%s mac=%s network=%s tunnel for %s %s", tunnel.identity, tunnel.mac,
                 tunnel.network, tunnel.address, why)
        self._fall_back(tunnel.address, f"tunnel-{why}".replace("_", "-"))

    def lease_ended(self, address: str, why: str) -> None:
        """The CA's lease of ``address`` ended (``why``: released, expired,
        declined).  The address goes back to the pool: a tunnel still
        carrying it would take its next holder's traffic to this MN."""
        tunnel = self.tunnels.get(address)
        self._end_tunnels([tunnel] if tunnel is not None else [], f"lease_{why}")

    def sa_ended(self, identity: str, network: str) -> None:
        """``identity``'s MPA-SA with ``network`` expired (its lifetime or
        its hold is over): the tunnels it was granted end with it.  An SA
        replaced by a new pre-authentication is not this: the MN asks
        again under the new one, and its tunnel carries on meanwhile."""
        self._end_tunnels([self.tunnels[a] for a in self._tunnels_of.get(identity)
                           if self.tunnels[a].network == network], "sa_expired")

    def _end_tunnels(self, tunnels: list, why: str) -> None:
        for tunnel in tunnels:
            if self._busy(tunnel.address):
                # A handover through it is under way: it ends with the
                # handover (an arrival drops it, a switch-back leaves it to
                # tick, as expired), never under the handover's feet.
                ended = replace(tunnel, expires=0.0)
                self.tunnels[tunnel.address] = ended
                self._save_tunnel(ended)
                self.counters["tunnel_end_deferred"] += 1
            else:
                self._drop_tunnel(tunnel, why)
        if tunnels:
            self._sync()

    def _follow(self, mac: str, poa: PoA) -> None:
        """The MN moved: its tunnels end where it is now, or end (it is in
        their network)."""
        changed = False
        for tunnel in [self.tunnels[a] for a in self._tunnels_of_mac.get(mac)]:
            if poa.network == tunnel.network and not self._busy(tunnel.address):
                self._drop_tunnel(tunnel, "arrived")
                changed = True
            elif tunnel.poa != poa and poa.network != tunnel.network:
                # Into this controller's network: an MN-terminated tunnel
                # becomes a label-switched path to where the MN is now.
                self.tunnels[tunnel.address] = replace(tunnel, poa=poa, outer=None)
                self._save_tunnel(self.tunnels[tunnel.address])
                changed = True
        bound = self._bound_mac.count(mac) > 0
        if changed or bound:
            self._sync()

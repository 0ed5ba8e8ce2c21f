"""Proactive handover tunnels (RFC 6252 §6.3 step 2, §7.4): the flows.

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
"""

from __future__ import annotations

import collections
import heapq
from dataclasses import dataclass

from ryu.ofproto import ether

from mpa_sdn import openflow as of
from mpa_sdn.forwarding import Host, last_hop_actions
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import PRIO_TUNNEL, Feature, Table, address_cookie
from mpa_sdn.topology import PoA

# The nAR sends a packet into the tunnel, and routes what comes out of it,
# often by the port it came in on (an AR with one uplink).  OpenFlow never
# outputs a packet to its own in_port, so the in_port is set to the bridge's
# LOCAL port first, which no flow of ours outputs to.  OpenFlow 1.3 cannot
# write in_port; OVS's Nicira register load can (its FAQ's hairpin recipe).
HAIRPIN = (of.reg_load("in_port_nxm", 16, 0xFFFE),)  # OFPP_LOCAL, in 16 bits
FIRST_LABEL = 16
LAST_LABEL = (1 << 20) - 1


@dataclass(frozen=True)
class Tunnel:
    """A proactive handover tunnel: ``address`` (the nCoA, in ``network``)
    delivered to ``mac`` at ``poa``."""

    address: str
    network: str
    identity: str
    mac: str
    poa: PoA
    down_label: int          # nAR -> PoA
    up_label: int            # PoA -> nAR
    expires: float           # wall clock

    @property
    def cookie(self) -> int:
        return address_cookie(Feature.TUNNEL, self.address)


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


def flows(graph: NeighbourhoodGraph, tunnel: Tunnel) -> dict[str, list]:
    """The tunnel's flows, by switch."""
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

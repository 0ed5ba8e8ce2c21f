"""The lab's mobility management protocol: home address -> care-of address.

MPA works with any mobility protocol (RFC 6252 §5); the controller needs one
that keeps unmodified applications' sessions across a change of address.
Here the network does it: correspondents talk to the MN's home address, the
MN's own sockets only ever see its home address, and the switches rewrite in
between:

* where a correspondent's traffic enters (its PoA switch, INGRESS):
  destination home -> care-of, so the packet is routed to the care-of
  address's network like any other;
* at the last hop back to the correspondent (ROUTE): source care-of -> home;
* where the MN's traffic to a correspondent enters (its PoA switch):
  source home -> care-of, so the care-of network's AR sees a source it
  routes (ingress filtering holds), through the tunnel if the care-of is an
  nCoA the MN holds before moving;
* at the last hop to the MN (its PoA switch, or the nAR before it moves, in
  front of the tunnel): destination care-of -> home.

OVS recomputes the IPv4 and TCP/UDP checksums of a rewritten address.

Bicasting (RFC 6252 §7.6.1, C.1): a binding may have a second :class:`Leg`,
the MN's previous care-of at its previous PoA.  The correspondent's edge
then sends each packet twice, once to each care-of, straight out of the
port towards each care-of's access router (an action list cannot go to the
route table twice), and the old PoA restores the home address as for any
care-of.

The protocol sits behind :class:`BindingProtocol`: the controller asks it for
flows given a binding and where the care-of reaches the MN.  Another
protocol (a SIP re-INVITE to the correspondent, or Mobile IPv4 with a real
home agent) would implement the same two methods.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ryu.ofproto import ether

from mpa_sdn import openflow as of
from mpa_sdn.mobility import tunnels
from mpa_sdn.forwarding import Host, last_hop_actions
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import (PRIO_BINDING, PRIO_BINDING_IN, Feature, Table, address_cookie,
                             feature_of)
from mpa_sdn.topology import PoA


@dataclass(frozen=True)
class Binding:
    home: str
    care_of: str
    network: str             # the care-of address's network
    identity: str
    mac: str
    expires: float           # wall clock

    @property
    def cookie(self) -> int:
        return address_cookie(Feature.BINDING, self.home)


@dataclass(frozen=True)
class Leg:
    """A bicast's second destination: ``address`` (the MN's previous
    care-of), delivered at ``poa``."""

    address: str
    poa: PoA


@dataclass(frozen=True)
class Reach:
    """How the care-of address reaches the MN now: ``poa`` where the MN is,
    and ``tunnel`` when the care-of is an nCoA carried there by a tunnel
    (None: the MN is attached to the care-of's own network)."""

    poa: PoA
    tunnel: tunnels.Tunnel | None = None


class BindingProtocol(Protocol):
    def flows(self, binding: Binding, reach: Reach | None,
              leg: Leg | None = None) -> dict[str, list]:
        """The binding's flows by switch (``reach`` None: the MN is nowhere
        we know; correspondents' traffic still goes towards the care-of),
        bicasting to ``leg`` too if given."""

    def deliver_actions(self, binding: Binding, frame_src: str, frame_dst: str,
                        care_ofs: frozenset = frozenset()) -> list:
        """Rewrites for a packet the controller delivers to the MN itself
        (buffered during a handover), addressed to the care-of or to one of
        ``care_ofs`` (the MN's previous care-of, buffered at the old AR)."""

    def steers(self, mod) -> bool:
        """Whether the flow sends traffic a new way (it goes in only once
        every flow that receives that traffic is confirmed)."""


class EdgeRewrite:
    """The lab's protocol: the rewrites described above."""

    def __init__(self, graph: NeighbourhoodGraph, correspondents: list[Host]):
        self.graph = graph
        self.correspondents = correspondents
        self._addresses = {c.address for c in correspondents}

    def _toward(self, switch: str, address: str) -> list | None:
        """Out of ``switch`` towards ``address``'s access router (None: it is
        that router; the route table would have to decide)."""
        network = self.graph.network_of_address(address)
        port = None if network is None else self.graph.next_hop_port(
            switch, network.access_router)
        return None if port is None else [of.set_field(ipv4_dst=address), of.output(port)]

    def flows(self, binding: Binding, reach: Reach | None,
              leg: Leg | None = None) -> dict[str, list]:
        tag = binding.cookie
        by_switch: dict[str, list] = {}

        def add(switch, flow):
            by_switch.setdefault(switch, []).append(flow)
        for cn in self.correspondents:
            cn_network = self.graph.network(cn.poa.network)
            both = leg and self._toward(cn.poa.switch, leg.address)
            both = both and both + (self._toward(cn.poa.switch, binding.care_of) or [])
            entry = of.match(in_port=cn.poa.port, eth_type=ether.ETH_TYPE_IP, eth_src=cn.mac,
                             ipv4_src=cn.address, ipv4_dst=binding.home)
            if both and len(both) == 4:
                add(cn.poa.switch, of.flow_add(Table.INGRESS, PRIO_BINDING_IN, entry,
                                               of.apply(*both), tag))
                mn = Host(leg.address, binding.mac, leg.poa)
                add(leg.poa.switch, of.flow_add(
                    Table.ROUTE, PRIO_BINDING,
                    of.match(eth_type=ether.ETH_TYPE_IP, ipv4_src=cn.address,
                             ipv4_dst=leg.address),
                    of.apply(of.set_field(ipv4_dst=binding.home),
                             *last_hop_actions(mn, self.graph.network(leg.poa.network))), tag))
            else:
                add(cn.poa.switch, of.flow_add(
                    Table.INGRESS, PRIO_BINDING_IN, entry,
                    of.apply(of.set_field(ipv4_dst=binding.care_of)) + of.goto(Table.ROUTE),
                    tag))
            add(cn.poa.switch, of.flow_add(
                Table.ROUTE, PRIO_BINDING,
                of.match(eth_type=ether.ETH_TYPE_IP, ipv4_src=binding.care_of,
                         ipv4_dst=cn.address),
                of.apply(of.set_field(ipv4_src=binding.home),
                         *last_hop_actions(cn, cn_network)), tag))
            if reach is None:
                continue
            poa, tunnel = reach.poa, reach.tunnel
            uplink = of.match(in_port=poa.port, eth_type=ether.ETH_TYPE_IP, eth_src=binding.mac,
                              ipv4_src=binding.home, ipv4_dst=cn.address)
            to_care_of = of.set_field(ipv4_src=binding.care_of)
            downlink = of.match(eth_type=ether.ETH_TYPE_IP, ipv4_src=cn.address,
                                ipv4_dst=binding.care_of)
            to_home = of.set_field(ipv4_dst=binding.home)
            if tunnel is None:
                add(poa.switch, of.flow_add(Table.INGRESS, PRIO_BINDING_IN, uplink,
                                            of.apply(to_care_of) + of.goto(Table.ROUTE), tag))
                mn = Host(binding.care_of, binding.mac, poa)
                add(poa.switch, of.flow_add(
                    Table.ROUTE, PRIO_BINDING, downlink,
                    of.apply(to_home, *last_hop_actions(mn, self.graph.network(poa.network))),
                    tag))
            else:
                add(poa.switch, of.flow_add(Table.INGRESS, PRIO_BINDING_IN, uplink,
                                            tunnels.up_from_poa(self.graph, tunnel, [to_care_of]),
                                            tag))
                nar = self.graph.network(tunnel.network).access_router
                add(nar, of.flow_add(Table.ROUTE, PRIO_BINDING, downlink,
                                     of.apply(*tunnels.into(self.graph, tunnel, [to_home])), tag))
        return by_switch

    def steers(self, mod) -> bool:
        # The edges' rewrites pick the address a packet travels to (or
        # comes from); the routes' rewrites only restore the home address.
        return mod.table_id == Table.INGRESS and feature_of(mod.cookie) == Feature.BINDING

    def deliver_actions(self, binding: Binding, frame_src: str, frame_dst: str,
                        care_ofs: frozenset = frozenset()) -> list:
        if frame_src in self._addresses and (frame_dst == binding.care_of or frame_dst in care_ofs):
            return [of.set_field(ipv4_dst=binding.home)]
        return []

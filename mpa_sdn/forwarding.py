"""Base connectivity: the flows that make the controller the lab's router.

Pure functions from the neighbourhood graph (and the known hosts) to flow-mods
for one switch.  The same functions give the flows to install when a switch
connects and the reference a reconnecting switch is reconciled against.

Every switch forwards on the IPv4 destination.  Traffic for a network goes
to its access router (AR), as in any routed network: the AR holds the host
routes (/32) of the network's known hosts, and so does every switch on the
way from the AR to the host's PoA; no other switch needs them, so learning a
host touches only that path.  The packet is rewritten once, at the last hop
(source MAC := the network's gateway, destination MAC := the host, TTL - 1):
hosts only ever see the gateway's MAC, whatever network the peer is in.

TTL: OVS does not report packets whose TTL runs out, so they vanish without
an ICMP time-exceeded (traceroute shows no hops).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

from ryu.ofproto import ether, inet
from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_protocol import pana
from mpa_protocol.messages import VXLAN_PORT
from mpa_sdn import dhcp
from mpa_sdn import openflow as of
from mpa_sdn.domain_view import is_foreign_switch
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.packets import ARP_REPLY, ARP_REQUEST
from mpa_sdn.tables import (
    EXACT_MASK, PRIO_ARP_OTHER, PRIO_ARP_RESPONDER, PRIO_CLASSIFY, PRIO_DHCP,
    PRIO_GATEWAY_PUNT, PRIO_HOST, PRIO_MISS, PRIO_NETWORK, PRIO_REJECT, PRIO_SIGNALLING,
    PRIO_TUNNEL_END, PRIO_UNKNOWN_SOURCE, Feature, Table, cookie, host_cookie)
from mpa_sdn.topology import Network, PoA


@dataclass(frozen=True)
class Host:
    """A host the controller routes to: learned, or a correspondent from the file."""

    address: str
    mac: str
    poa: PoA
    static: bool = False


def pipeline_flows(graph: NeighbourhoodGraph, switch: str) -> list:
    """Table-miss drops and the port classification of INGRESS."""
    pipe = cookie(Feature.PIPELINE)
    flows = [of.flow_add(t, PRIO_MISS, of.match(), [], pipe) for t in Table]
    flows.append(of.flow_add(Table.INGRESS, PRIO_CLASSIFY,
                             of.match(in_port=ofp.OFPP_CONTROLLER, eth_type=ether.ETH_TYPE_IP),
                             of.goto(Table.ROUTE), pipe))
    for port in sorted(graph.trunk_ports(switch)):
        flows.append(of.flow_add(Table.INGRESS, PRIO_CLASSIFY,
                                 of.match(in_port=port, eth_type=ether.ETH_TYPE_IP),
                                 of.goto(Table.ROUTE), pipe))
    for poa in graph.poas_on(switch):
        flows.append(of.flow_add(Table.INGRESS, PRIO_CLASSIFY,
                                 of.match(in_port=poa.port, eth_type=ether.ETH_TYPE_ARP),
                                 of.goto(Table.ARP), pipe))
        flows.append(of.flow_add(Table.INGRESS, PRIO_UNKNOWN_SOURCE,
                                 of.match(in_port=poa.port, eth_type=ether.ETH_TYPE_IP),
                                 of.apply(of.to_controller()), pipe))
    # Every other ARP packet at a PoA (replies, probes, requests for hosts)
    # is the controller's to answer or learn from.
    flows.append(of.flow_add(Table.ARP, PRIO_ARP_OTHER, of.match(eth_type=ether.ETH_TYPE_ARP),
                             of.apply(of.to_controller()), pipe))
    return flows + tunnel_port_flows(graph, switch)


# VXLAN (UDP 4789) from or to one tunnel endpoint, the key of the match given.
_VXLAN = dict(eth_type=ether.ETH_TYPE_IP, ip_proto=inet.IPPROTO_UDP, udp_dst=VXLAN_PORT)


def tunnel_end_networks(graph: NeighbourhoodGraph) -> list[Network]:
    """The networks this controller serves whose AR ends VXLAN tunnels."""
    return [n for n in graph.networks() if graph.topology.serves(n)
            and graph.topology.switches[n.access_router].pht_port is not None]


def tunnel_port_flows(graph: NeighbourhoodGraph, switch: str) -> list:
    """Where Open vSwitch ends and starts MN-terminated tunnels (RFC 6252
    §7.4, mpa_sdn.mobility.tunnels).  OVS pops VXLAN only from a packet sent
    to the bridge's own (LOCAL) port, which holds the nAR's address and its
    gateway's MAC; and it sends what it encapsulates in at the LOCAL port of
    the bridge its routing table names: the nAR, or the domain's border
    switch (docs/inter-domain.md).  Only the nAR's own address, from LOCAL,
    is routed: the host behind the LOCAL port sends nothing else in."""
    pipe = cookie(Feature.PIPELINE)
    networks = tunnel_end_networks(graph)
    border = any(is_foreign_switch(n) for n in graph.trunk_ports(switch).values())
    flows = []
    for network in networks:
        # Above the gateway's punt on every switch of the domain: VXLAN to a
        # gateway goes on to its AR, and into OVS's tunnel port there.
        here = network.access_router == switch
        actions = ([of.set_field(eth_dst=network.gateway_mac), of.output(ofp.OFPP_LOCAL)]
                   if here else [of.output(graph.next_hop_port(switch, network.access_router))])
        gateway = str(network.gateway)
        flows.append(of.flow_add(Table.ROUTE, PRIO_TUNNEL_END,
                                 of.match(**_VXLAN, ipv4_dst=gateway), of.apply(*actions), pipe))
        if here or border:
            flows.append(of.flow_add(Table.INGRESS, PRIO_CLASSIFY,
                                     of.match(in_port=ofp.OFPP_LOCAL, **_VXLAN, ipv4_src=gateway),
                                     of.goto(Table.ROUTE), pipe))
    return flows


def arp_responder_flows(graph: NeighbourhoodGraph, switch: str) -> list:
    """Answer "who has <gateway>?" in the switch, at the network's own PoAs.

    The request is turned into the reply in place: swap the Ethernet and ARP
    addresses with Nicira register moves, fill in the gateway's, and send it
    back out of the port it came in on.
    """
    flows = []
    for poa in graph.poas_on(switch):
        network = graph.network(poa.network)
        gw_mac, gw_ip = network.gateway_mac, str(network.gateway)
        flows.append(of.flow_add(
            Table.ARP, PRIO_ARP_RESPONDER,
            of.match(in_port=poa.port, eth_type=ether.ETH_TYPE_ARP,
                     arp_op=ARP_REQUEST, arp_tpa=gw_ip),
            # The register moves use Nicira field names: OVS reports them back
            # that way, and reconciliation compares wire encodings.
            of.apply(
                of.reg_move("eth_src_nxm", "eth_dst_nxm", 48),
                of.set_field(eth_src=gw_mac),
                of.set_field(arp_op=ARP_REPLY),
                of.reg_move("arp_sha_nxm", "arp_tha_nxm", 48),
                of.reg_move("arp_spa_nxm", "arp_tpa_nxm", 32),
                of.set_field(arp_sha=gw_mac),
                of.set_field(arp_spa=gw_ip),
                of.output(ofp.OFPP_IN_PORT)),
            cookie(Feature.ARP_RESPONDER, graph.network_index(network.id))))
    return flows


@functools.lru_cache(maxsize=4096)
def _network_matches(network: Network) -> tuple:
    """The gateway and prefix matches of a network, built once.

    Building a Ryu match costs tens of microseconds and every switch holds
    the same two per network, so the objects are shared between flow-mods
    (serialising one only writes back its own length).
    """
    gateway = of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=str(network.gateway))
    prefix = of.match(eth_type=ether.ETH_TYPE_IP,
                      ipv4_dst=(str(network.prefix.network_address), str(network.prefix.netmask)))
    return gateway, prefix


def network_route_flows(graph: NeighbourhoodGraph, switch: str) -> list:
    """Per network: punt its gateway address, route its prefix to its AR.

    At the AR itself a destination without a host route is unresolved: it
    goes to the controller, which resolves it with ARP.
    """
    flows = []
    for network in graph.networks():
        tag = cookie(Feature.NETWORK_ROUTE, graph.network_index(network.id))
        gateway_match, prefix_match = _network_matches(network)
        if graph.topology.serves(network):
            # Another domain's gateway answers for itself, in its domain.
            flows.append(of.flow_add(Table.ROUTE, PRIO_GATEWAY_PUNT, gateway_match,
                                     of.apply(of.to_controller()), tag))
        port = graph.next_hop_port(switch, network.access_router)
        action = of.to_controller() if port is None else of.output(port)
        flows.append(of.flow_add(Table.ROUTE, PRIO_NETWORK, prefix_match, of.apply(action), tag))
    return flows


def host_path(graph: NeighbourhoodGraph, host: Host) -> list[str]:
    """The switches that hold the host's route, from its network's AR to its PoA.

    It is the way from the PoA to the AR, reversed: the very switches the
    network route climbs towards the AR.  So a switch on the path that lacks
    the host's route (while one is being installed or removed) sends the
    packet back where it came from, which OpenFlow drops, instead of around
    a loop that another tree's tie-break could have made.
    """
    return list(reversed(graph.switch_path(host.poa.switch,
                                           graph.network(host.poa.network).access_router)))


def _route_match(host: Host):
    return of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=host.address)


def last_hop_actions(host: Host, network: Network, forwarded: bool = True) -> list:
    """What the last switch does to a packet for the host (also used for packet-outs)."""
    actions = [of.set_field(eth_src=network.gateway_mac), of.set_field(eth_dst=host.mac)]
    if forwarded:
        actions.append(of.dec_ttl())
    return actions + [of.output(host.poa.port)]


def source_check_match(host: Host):
    return of.match(in_port=host.poa.port, eth_type=ether.ETH_TYPE_IP,
                    eth_src=host.mac, ipv4_src=host.address)


def host_flows(graph: NeighbourhoodGraph, host: Host, idle_timeout: int) -> dict[str, list]:
    """The host's flows, by switch: routes along its path, the source check at its PoA."""
    network = graph.network(host.poa.network)
    tag = host_cookie(host.address)
    match = _route_match(host)  # one match object shared by every switch's flow-mod
    flows: dict[str, list] = {}
    path = host_path(graph, host)
    for switch, following in zip(path, path[1:] + [None]):
        if following is None:
            actions = last_hop_actions(host, network)
        else:
            actions = [of.output(graph.port_to(switch, following))]
        flows[switch] = [of.flow_add(Table.ROUTE, PRIO_HOST, match, of.apply(*actions), tag)]
    timeout = 0 if host.static else idle_timeout
    flows[host.poa.switch].append(of.flow_add(
        Table.INGRESS, PRIO_HOST, source_check_match(host), of.goto(Table.ROUTE), tag,
        idle_timeout=timeout, notify_removal=not host.static))
    return flows


def host_route_delete(host: Host):
    return of.flow_delete_strict(Table.ROUTE, PRIO_HOST, _route_match(host),
                                 host_cookie(host.address), EXACT_MASK)


def source_check_delete(host: Host):
    return of.flow_delete_strict(Table.INGRESS, PRIO_HOST, source_check_match(host),
                                 host_cookie(host.address), EXACT_MASK)


def reject_flows(port: int, mac: str, address: str, hold_s: int) -> list:
    """Drop a source the controller refused, IPv4 and ARP, for a while,
    instead of punting it packet after packet."""
    tag = cookie(Feature.REJECT)
    return [
        of.flow_add(Table.INGRESS, PRIO_REJECT,
                    of.match(in_port=port, eth_type=ether.ETH_TYPE_IP, eth_src=mac,
                             ipv4_src=address), [], tag, hard_timeout=hold_s),
        of.flow_add(Table.INGRESS, PRIO_REJECT,
                    of.match(in_port=port, eth_type=ether.ETH_TYPE_ARP, eth_src=mac,
                             arp_spa=address), [], tag, hard_timeout=hold_s),
    ]




def signalling_flows(graph: NeighbourhoodGraph, switch: str, signalling_port: int) -> list:
    """The AA's and CA's punts: DHCP at every PoA, in-band signalling to
    every served network's gateway."""
    flows = []
    dhcp_cookie = cookie(Feature.DHCP)
    for poa in graph.poas_on(switch):
        flows.append(of.flow_add(
            Table.INGRESS, PRIO_DHCP,
            of.match(in_port=poa.port, eth_type=ether.ETH_TYPE_IP, ip_proto=inet.IPPROTO_UDP,
                     udp_dst=dhcp.SERVER_PORT),
            of.apply(of.to_controller()), dhcp_cookie))
    for network in graph.networks():
        if network.pool is None:
            continue
        # The AA's two ports at the gateway: PANA (pre-authentication, RFC
        # 5191) and the MPA signalling after it.
        for port in (signalling_port, pana.PANA_PORT):
            flows.append(of.flow_add(
                Table.ROUTE, PRIO_SIGNALLING,
                of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=str(network.gateway),
                         ip_proto=inet.IPPROTO_UDP, udp_dst=port),
                of.apply(of.to_controller()),
                cookie(Feature.SIGNALLING, graph.network_index(network.id))))
    return flows


def static_flows(graph: NeighbourhoodGraph, switch: str) -> list:
    """Everything a switch holds that does not depend on learned hosts."""
    return (pipeline_flows(graph, switch) + arp_responder_flows(graph, switch)
            + network_route_flows(graph, switch)
            + signalling_flows(graph, switch, graph.topology.mpa.signalling_port))


class StaticShape:
    """What :func:`static_flow_count` needs of the whole topology, worked out
    once: the per-network flows every switch holds alike, and the networks
    whose AR ends VXLAN tunnels (by AR)."""

    def __init__(self, graph: NeighbourhoodGraph):
        networks = graph.networks()
        topology = graph.topology
        # network_route_flows: a prefix route each, a gateway punt each served;
        # signalling_flows: two punts (signalling, PANA) per network with a pool.
        self.per_switch = (len(networks) + sum(1 for n in networks if topology.serves(n))
                           + 2 * sum(1 for n in networks if n.pool is not None))
        ends = tunnel_end_networks(graph)
        self.tunnel_ends = len(ends)
        self.ends_at: dict[str, int] = {}
        for network in ends:
            self.ends_at[network.access_router] = self.ends_at.get(network.access_router, 0) + 1


def static_flow_count(graph: NeighbourhoodGraph, switch: str,
                      shape: StaticShape | None = None) -> int:
    """len(static_flows(graph, switch)) without building a flow-mod: the
    operator's views count every switch's flows, and building them all is
    quadratic in switches (each holds two flows per network)."""
    shape = shape or StaticShape(graph)
    trunks = graph.trunk_ports(switch)
    poas = len(graph.poas_on(switch))
    # pipeline_flows: a miss per table, the controller's and each trunk's
    # classification, two per PoA, the ARP punt; arp_responder_flows and the
    # DHCP punts of signalling_flows: one per PoA each.
    count = len(Table) + 2 + len(trunks) + 4 * poas + shape.per_switch
    # tunnel_port_flows: a route per tunnel end, and its LOCAL classification
    # at its own AR, or at every end on a border switch.
    border = any(is_foreign_switch(n) for n in trunks.values())
    return count + shape.tunnel_ends + (shape.tunnel_ends if border
                                        else shape.ends_at.get(switch, 0))


def correspondent_hosts(graph: NeighbourhoodGraph) -> list[Host]:
    return [Host(str(cn.address), cn.mac, graph.poa(cn.poa), static=True)
            for cn in sorted(graph.topology.correspondents.values(), key=lambda c: c.id)]

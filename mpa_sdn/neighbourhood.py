"""The CTN neighbourhood graph: the one source for flows and for the lab.

Two networkx graphs are built from a :class:`Topology`:

* the *switch graph* (undirected; switches joined by links, each edge knows
  the port at both ends), which gives switch paths and next hops;
* the *network graph* (directed; networks joined by neighbour relations),
  which answers discovery (RFC 6252 section 7.1): the candidate target
  networks of a network, with the addresses of their AA, CA and AR.

Forwarding is hop by hop, so next hops must agree with each other: towards a
given switch they are read from one breadth-first tree rooted there, built
with neighbours in sorted order.  Every switch's next hop towards ``d`` is
its parent in ``d``'s tree, so packets never loop and ties break the same way
on every run.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass

import networkx as nx

from mpa_protocol.messages import SIGNALLING_PORT
from mpa_sdn.topology import ROLE_ACCESS, Network, PoA, Topology


@dataclass(frozen=True)
class Candidate:
    """A candidate target network as discovery reports it."""

    network: str
    domain: str
    served_by: str
    prefix: str
    # The controller plays the CTN's Authentication Agent, Configuration
    # Agent and Access Router; all three answer at the network's gateway.
    aa_address: str
    ca_address: str
    ar_address: str
    ar_switch: str | None   # None: another domain's, not public
    ar_dpid: int | None
    gateway_mac: str
    poas: tuple[str, ...]
    l2_handover_ms: float | None
    signalling_port: int = SIGNALLING_PORT   # in-band signalling: UDP to the AA's address

    def as_dict(self) -> dict:
        return {
            "network": self.network, "domain": self.domain, "served_by": self.served_by,
            "prefix": self.prefix,
            "aa": {"address": self.aa_address, "port": self.signalling_port},
            "ca": {"address": self.ca_address, "port": self.signalling_port},
            "ar": {"address": self.ar_address, "switch": self.ar_switch,
                   "dpid": self.ar_dpid, "gateway_mac": self.gateway_mac},
            "poas": list(self.poas),
            "l2_handover_ms": self.l2_handover_ms,
        }


class NeighbourhoodGraph:
    def __init__(self, topology: Topology):
        self.topology = topology
        self.switch_graph = nx.Graph()
        for switch in sorted(topology.switches.values(), key=lambda s: s.id):
            self.switch_graph.add_node(switch.id, dpid=switch.dpid)
        for link in sorted(topology.links, key=lambda l: (str(l.a), str(l.b))):
            a, b = link.a, link.b
            if self.switch_graph.has_edge(a.switch, b.switch):
                continue  # a parallel link: the first one (sorted) carries traffic
            self.switch_graph.add_edge(a.switch, b.switch, ports={a.switch: a.port, b.switch: b.port})
        self.network_graph = nx.DiGraph()
        for network in sorted(topology.networks.values(), key=lambda n: n.id):
            self.network_graph.add_node(network.id, role=network.role)
        for rel in topology.neighbours:
            self.network_graph.add_edge(rel.source, rel.target, l2_handover_ms=rel.l2_handover_ms)
        # Another domain's stand-in switch (mpa_sdn.domain_view) has a negative
        # dpid: no switch that connects is ever taken for it.
        self._dpid_to_switch = {s.dpid: s.id for s in topology.switches.values() if s.dpid >= 0}
        self._poas_by_switch: dict[str, list[PoA]] = {}
        for poa in sorted(topology.poas.values(), key=lambda p: (p.switch, p.port)):
            self._poas_by_switch.setdefault(poa.switch, []).append(poa)
        prefixes = sorted(((n.prefix, n) for n in topology.networks.values()),
                          key=lambda item: item[0].prefixlen, reverse=True)
        # Longest prefix first: (netmask, {network address: network}) per length.
        self._by_length: list[tuple[int, dict]] = []
        for prefix, network in prefixes:
            if not self._by_length or self._by_length[-1][0] != int(prefix.netmask):
                self._by_length.append((int(prefix.netmask), {}))
            self._by_length[-1][1].setdefault(int(prefix.network_address), network)
        self._trees: dict[str, dict[str, str]] = {}
        self._network_index = {nid: i + 1 for i, nid in enumerate(sorted(topology.networks))}
        self._candidates: dict[tuple[str, str], Candidate] = {}

    # -- switches ----------------------------------------------------------

    def switch_ids(self) -> list[str]:
        return sorted(self.switch_graph.nodes)

    def dpid(self, switch: str) -> int:
        return self.topology.switches[switch].dpid

    def public_switch(self, switch: str) -> dict:
        """A switch as the API names it: id and dpid, both None for another
        domain's stand-in (mpa_sdn.domain_view), whose switches are not public."""
        if self.topology.switches[switch].dpid < 0:
            return {"switch": None, "dpid": None}
        return {"switch": switch, "dpid": self.dpid(switch)}

    def switch_of_dpid(self, dpid: int) -> str | None:
        return self._dpid_to_switch.get(dpid)

    def switch_islands(self) -> list[set[str]]:
        return sorted((set(c) for c in nx.connected_components(self.switch_graph)),
                      key=lambda c: sorted(c))

    def trunk_ports(self, switch: str) -> dict[int, str]:
        """Ports of ``switch`` that lead to another switch, with that switch."""
        return {data["ports"][switch]: other
                for other, data in self.switch_graph[switch].items()}

    def poas_on(self, switch: str) -> list[PoA]:
        return list(self._poas_by_switch.get(switch, ()))

    def _tree(self, root: str) -> dict[str, str]:
        """Parent pointers of the sorted breadth-first tree rooted at ``root``."""
        tree = self._trees.get(root)
        if tree is None:
            tree, frontier = {root: root}, [root]
            while frontier:
                following = []
                for node in frontier:
                    for other in sorted(self.switch_graph[node]):
                        if other not in tree:
                            tree[other] = node
                            following.append(other)
                frontier = following
            self._trees[root] = tree
        return tree

    def next_hop(self, switch: str, destination: str) -> str | None:
        """The neighbour of ``switch`` on the way to ``destination``."""
        if switch == destination:
            return None
        parent = self._tree(destination).get(switch)
        if parent is None:
            raise ValueError(f"no path from {switch} to {destination}")
        return parent

    def next_hop_port(self, switch: str, destination: str) -> int | None:
        hop = self.next_hop(switch, destination)
        if hop is None:
            return None
        return self.switch_graph[switch][hop]["ports"][switch]

    def port_to(self, switch: str, neighbour: str) -> int:
        """The port of ``switch`` on its link to the adjacent ``neighbour``."""
        return self.switch_graph[switch][neighbour]["ports"][switch]

    def switch_path(self, source: str, destination: str) -> list[str]:
        path = [source]
        while path[-1] != destination:
            path.append(self.next_hop(path[-1], destination))
        return path

    # -- networks ----------------------------------------------------------

    def network(self, network_id: str) -> Network:
        return self.topology.networks[network_id]

    def networks(self) -> list[Network]:
        return [self.topology.networks[n] for n in sorted(self.topology.networks)]

    def network_of_address(self, address) -> Network | None:
        value = int(ipaddress.IPv4Address(address))
        for mask, networks in self._by_length:
            network = networks.get(value & mask)
            if network is not None:
                return network
        return None

    def poa(self, poa_id: str) -> PoA:
        return self.topology.poas[poa_id]

    def neighbours(self, network_id: str) -> list[str]:
        return sorted(self.network_graph.successors(network_id))

    def network_index(self, network_id: str) -> int:
        """A small stable number for a network (cookie subjects)."""
        return self._network_index[network_id]

    def candidates(self, network_id: str) -> list[Candidate]:
        """Discovery: the CTNs an MN in ``network_id`` may move to."""
        result = []
        for target in self.neighbours(network_id):
            key = (network_id, target)
            if key not in self._candidates:
                self._candidates[key] = self._candidate(network_id, target)
            result.append(self._candidates[key])
        return result

    def _candidate(self, source: str, target: str) -> Candidate:
        network = self.topology.networks[target]
        gateway = str(network.gateway)
        ar = self.public_switch(network.access_router)
        return Candidate(
            network=target, domain=network.domain, served_by=network.served_by,
            prefix=str(network.prefix), aa_address=gateway, ca_address=gateway,
            ar_address=gateway, ar_switch=ar["switch"], ar_dpid=ar["dpid"],
            gateway_mac=network.gateway_mac,
            poas=tuple(p.id for p in network.poas),
            l2_handover_ms=self.network_graph.edges[source, target]["l2_handover_ms"],
            signalling_port=self.topology.mpa.signalling_port)

    def access_networks(self) -> list[Network]:
        return [n for n in self.networks() if n.role == ROLE_ACCESS]

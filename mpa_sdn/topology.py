"""The topology as frozen, typed data.

A topology file (YAML, see docs/topology.md) is parsed and validated once by
:mod:`mpa_sdn.config` into these objects; everything else reads them and
never the raw file.  Identifiers (domain, switch, network, PoA, host ids) are
the keys used in the file, so error messages and REST answers speak the
user's names.
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

IPv4Address = ipaddress.IPv4Address
IPv4Network = ipaddress.IPv4Network

ROLE_ACCESS = "access"            # a network MNs attach to: a candidate target network
ROLE_CORRESPONDENT = "correspondent"  # the CN side: fixed hosts, never a handover target
ROLES = (ROLE_ACCESS, ROLE_CORRESPONDENT)


@dataclass(frozen=True)
class ControllerSettings:
    openflow_host: str = "0.0.0.0"
    openflow_port: int = 6653
    rest_host: str = "127.0.0.1"
    rest_port: int = 8080
    # A learned host that sends nothing for this long is asked, with a
    # unicast ARP request, whether it is still there; one that does not answer
    # within host_probe_s is forgotten and its flows go.
    host_idle_timeout_s: int = 300
    host_probe_s: float = 3.0
    max_hosts: int = 10000
    # Unknown destinations are resolved with an ARP request from the gateway;
    # at most one request per address in this interval.
    arp_resolve_interval_s: float = 1.0
    # Packets for an address being resolved wait for its ARP reply: at most
    # this many per address, for this many addresses, for this long.
    pending_per_address: int = 8
    pending_addresses: int = 1024
    pending_lifetime_s: float = 2.0
    # A source the controller refuses (foreign address, full host table,
    # a correspondent's address) is dropped in the switch for this long
    # instead of being punted packet after packet.
    reject_hold_s: int = 10
    packet_in_queue: int = 1000


@dataclass(frozen=True)
class Domain:
    id: str
    name: str


@dataclass(frozen=True)
class Switch:
    id: str
    dpid: int


@dataclass(frozen=True)
class Port:
    switch: str
    port: int

    def __str__(self) -> str:
        return f"{self.switch}:{self.port}"


@dataclass(frozen=True)
class Link:
    a: Port
    b: Port


@dataclass(frozen=True)
class PoA:
    """A point of attachment: one switch port where a host's link lands."""

    id: str
    network: str
    switch: str
    port: int


@dataclass(frozen=True)
class AddressPool:
    first: IPv4Address
    last: IPv4Address

    def __contains__(self, address: IPv4Address) -> bool:
        return self.first <= address <= self.last

    def __len__(self) -> int:
        return int(self.last) - int(self.first) + 1

    def __str__(self) -> str:
        return f"{self.first}-{self.last}"


@dataclass(frozen=True)
class Network:
    id: str
    role: str
    domain: str           # the administrative domain that owns the network
    served_by: str        # the domain whose AA and CA serve it
    prefix: IPv4Network
    gateway: IPv4Address
    gateway_mac: str
    access_router: str    # switch id of the network's AR
    poas: tuple[PoA, ...]
    pool: AddressPool | None


@dataclass(frozen=True)
class Neighbour:
    """An MN in ``source`` may move to ``target`` (a directed relation)."""

    source: str
    target: str
    l2_handover_ms: float | None = None


@dataclass(frozen=True)
class Correspondent:
    """A fixed host (the CN side) with a static address."""

    id: str
    poa: str
    address: IPv4Address
    mac: str


@dataclass(frozen=True)
class MobileNode:
    id: str
    mac: str
    attach: str                  # the PoA where the lab first attaches it
    identity: str | None = None  # NAI, used by the authentication agent


def _frozen(mapping: Mapping) -> Mapping:
    return MappingProxyType(dict(mapping))


@dataclass(frozen=True)
class Topology:
    controller: ControllerSettings
    domains: Mapping[str, Domain]
    switches: Mapping[str, Switch]
    links: tuple[Link, ...]
    networks: Mapping[str, Network]
    neighbours: tuple[Neighbour, ...]
    correspondents: Mapping[str, Correspondent]
    mobile_nodes: Mapping[str, MobileNode]
    poas: Mapping[str, PoA] = field(default_factory=dict)

    def __post_init__(self):
        for name in ("domains", "switches", "networks", "correspondents", "mobile_nodes"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        poas = {p.id: p for n in self.networks.values() for p in n.poas}
        object.__setattr__(self, "poas", _frozen(poas))

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

from mpa_protocol.messages import SIGNALLING_PORT

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
    # RADIUS answers waiting for the worker (apps/radius_socket.py); beyond,
    # one is dropped (counter radius_queue_full) and its request sent again.
    radius_queue: int = 256
    # The cyclic garbage collector (apps/heap.py): the worker collects the
    # young generations after this many events and freezes what survives; a
    # full collection, which walks the whole heap (0.6 to 1.4 s at 10,000 MNs), runs
    # this often if not 0; by default never: the controller makes no cycles
    # (tests/unit/shell/test_mn_scale.py), so it would find none.
    gc_every_events: int = 50
    gc_full_every_s: float = 0.0
    # The state file (mpa_sdn/store.py): the records events change are
    # written in one transaction after their flows and answers have gone,
    # once the worker has no event waiting, or sooner when this many records
    # or this much time have piled up unwritten behind a busy worker.  Its WAL
    # is checkpointed this often, by a thread of its own.  A write of 500
    # records took about 9 ms of the worker (encoding them most of it).
    state_write_records: int = 200
    state_write_delay_s: float = 0.1
    state_checkpoint_s: float = 2.0
    # The REST listener's bounds (docs/api.md, "Limits").  A connection past
    # a bound is refused at once, never queued; each refusal is counted.
    rest_max_connections: int = 1024      # open connections in all ...
    rest_connections_per_source: int = 128  # ... and from one address
    rest_header_timeout_s: float = 10.0   # the request line and headers arrive within this
    rest_body_timeout_s: float = 10.0     # the whole body arrives within this after the headers
    rest_idle_timeout_s: float = 60.0     # a kept-alive connection with no request is closed
    rest_max_streams: int = 256           # event streams open in all ...
    rest_streams_per_token: int = 16      # ... and per bearer token
    rest_max_waiting: int = 256           # MN messages (not held questions) waiting for the core
    rest_max_held: int = 1024             # instructions questions held in all ...
    rest_held_per_source: int = 64        # ... and from one address
    # Files only the controller process reads, at start-up (apps.tls and
    # mpa_protocol.api_tokens read them; config checks their form and resolves
    # them against the topology file's directory).
    rest_tls_cert: str | None = None      # with rest_tls_key: the REST API serves HTTPS
    rest_tls_key: str | None = None
    openflow_tls_cert: str | None = None  # with the key and the CA: OpenFlow over TLS only,
    openflow_tls_key: str | None = None   # switches must show a certificate the CA signed
    openflow_tls_ca: str | None = None
    api_tokens: str | None = None         # the API tokens file; none: no token is valid

    @property
    def rest_tls(self) -> bool:
        return self.rest_tls_cert is not None

    @property
    def openflow_tls(self) -> bool:
        return self.openflow_tls_cert is not None


@dataclass(frozen=True)
class MpaSettings:
    """The Authentication Agent's and Configuration Agent's knobs (``mpa:``)."""

    # In-band signalling: UDP to a network's gateway address on this port.
    signalling_port: int = SIGNALLING_PORT
    max_message_bytes: int = 1400
    # SQLite file holding SAs, leases and MN state across restarts.
    state_db: str = "/var/lib/mpa-sdn/state.db"
    # Authentication (AA).
    # PANA (RFC 5191) sessions in progress, between the PCI and the final
    # PAN: each lives this long at most (EAP-TLS through RADIUS takes
    # several round trips), this many in all and from one source address.
    pana_session_s: float = 30.0
    max_pana_sessions: int = 4096
    pana_sessions_per_source: int = 8
    pana_max_bytes: int = 4096        # a PANA message (EAP-TLS fragments ride in them)
    # RADIUS (RFC 5080 §2.2.1): the first wait, the longest, retransmissions
    # and time on one server before failing over; requests outstanding per
    # domain; how long a server that never answered is skipped.
    radius_initial_rt_s: float = 2.0
    radius_max_rt_s: float = 16.0
    radius_max_count: int = 3
    radius_max_duration_s: float = 10.0
    radius_max_outstanding: int = 256
    radius_dead_time_s: float = 60.0
    sa_lifetime_s: int = 3600         # an MPA-SA's lifetime from authentication
    sa_hold_s: int = 600              # held after the MN leaves (RFC 6252 C.2)
    held_per_mn: int = 2              # instructions questions held per MN; a newer one
                                      # answers the oldest at once
    replay_window: int = 64           # sequence numbers accepted out of order
    retransmit_s: float = 30.0        # a repeated message gets its cached answer this long
    failures_per_identity: int = 5    # failed attempts allowed per identity ...
    failures_per_source: int = 20     # ... and per source address ...
    failure_window_s: float = 60.0    # ... within this window,
    lockout_s: float = 60.0           # after which it waits this long.
    # Configuration (CA).
    lease_time_s: int = 3600
    offer_hold_s: float = 30.0        # a DHCP offer reserves its address this long
    dad_probes: int = 2               # ARP probes per address (RFC 5227 sends 3)
    dad_interval_s: float = 0.1       # between probes
    dad_wait_s: float = 0.2           # after the last probe, for an answer
    dad_reserve: int = 4              # addresses per network kept probed and free
    dad_valid_s: float = 60.0         # a probe result is trusted this long
    # Probes sent per tick at most: a wave of leases refilling every reserve
    # at once is spread over ticks, not one long stall of the worker.
    dad_probes_per_tick: int = 32
    # ... and packet-outs: a probe goes out of every PoA of its network (51
    # at 10,000 MNs in the scale benchmark), about 14 µs each; one probe a
    # tick goes whatever its network's size.
    dad_packet_outs_per_tick: int = 512
    # Proactive handover (RFC 6252 §6.3 steps 2-6).
    tunnel_lifetime_s: int = 120      # a proactive handover tunnel's longest life
    max_tunnels_per_mn: int = 4       # tunnels to different CTNs at once (§7.2, C.4)
    max_tunnels: int = 4096           # tunnels in all
    binding_lifetime_s: int = 3600    # a binding's longest life; renewed by each update
    switch_deadline_s: float = 5.0    # pre-switching without arrival: switch back
    buffer_packets: int = 4096        # per MN: the buffer's bounds ...
    buffer_bytes: int = 4 * 1024 * 1024
    buffer_time_s: float = 10.0       # ... and the longest a packet waits in it
    flush_rate_pps: int = 20000       # buffered packets go to the MN at this pace ...
    flush_batch: int = 16             # ... this many at a time
    # Copy-and-forward (§7.6.2) and bicasting (§7.6.1, C.1).
    copy_packets: int = 4096          # copies kept per standby MN ...
    copy_time_s: float = 2.0          # ... for at most this long
    copy_wait_s: float = 0.2          # after a sudden loss: for the MN's delivered digests
    copy_guard_s: float = 0.05        # without them: copies this long before the loss go too
    bicast_period_s: float = 2.0      # a bicast handover sends to both networks this long


@dataclass(frozen=True)
class DomainController:
    """Where a domain's own controller listens, for ``--domain`` (docs/inter-domain.md)."""

    openflow_port: int | None = None
    rest_port: int | None = None
    state_db: str | None = None


@dataclass(frozen=True)
class Domain:
    id: str
    name: str
    # The domain's RADIUS servers (mpa_sdn.config_radius); None: its AA
    # authenticates no one.
    radius: object | None = None
    controller: DomainController = field(default_factory=DomainController)


@dataclass(frozen=True)
class Switch:
    id: str
    dpid: int
    # The administrative domain whose controller it connects to (None: the
    # file does not say; Topology.switch_domain infers it from its networks).
    domain: str | None = None
    # The OpenFlow port number of the switch's VXLAN port, where proactive
    # handover tunnels that end at an MN in another domain are terminated
    # (RFC 6252 §7.4).  Only an access router has one; None: no such tunnels.
    pht_port: int | None = None


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
    dns: tuple[IPv4Address, ...] = ()   # handed out by the CA
    lease_time_s: int | None = None     # None: the mpa section's lease_time_s


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
    # The MN's own credentials file (its identity and EAP method per domain),
    # for the lab's mpa-mn runs; the controller never reads it.
    credentials: str | None = None
    # Its home address: correspondents talk to it whatever network it is in;
    # the controller keeps the binding to its care-of address (None: no binding).
    home_address: ipaddress.IPv4Address | None = None


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
    mpa: MpaSettings = field(default_factory=MpaSettings)
    poas: Mapping[str, PoA] = field(default_factory=dict)
    # The one domain a controller serves (``--domain``; mpa_sdn.domain_view):
    # None, the single-controller mode, serves every domain.
    domain: str | None = None

    def __post_init__(self):
        for name in ("domains", "switches", "networks", "correspondents", "mobile_nodes"):
            object.__setattr__(self, name, _frozen(getattr(self, name)))
        poas = {p.id: p for n in self.networks.values() for p in n.poas}
        object.__setattr__(self, "poas", _frozen(poas))

    def serves(self, network: Network) -> bool:
        """Whether this controller is the network's AA, CA and AR (another
        domain's network is only routed to, and discovered)."""
        return self.domain is None or network.domain == self.domain

    def switch_domain(self, switch_id: str) -> str | None:
        """The switch's domain: as the file says, else the one domain of the
        networks whose AR or PoAs it holds (None: no such network, or several)."""
        given = self.switches[switch_id].domain
        if given is not None:
            return given
        owners = {n.domain for n in self.networks.values()
                  if n.access_router == switch_id or any(p.switch == switch_id for p in n.poas)}
        return owners.pop() if len(owners) == 1 else None

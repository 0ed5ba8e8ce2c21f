"""The core's parts, built in one place, each given what it needs.

Every part gets its collaborators as constructor arguments; none is wired
by assignment afterwards.  A part that must tell others of a change emits
to the one event log (:class:`~mpa_sdn.events.EventLog`), and the parts
that react to it follow that kind of event: the table of who follows what
is :func:`_reactions`, here, where a reader finds every link at once.

The one cycle: the policy engine's actions answer the MN through the
signalling service (its signing and holding), and the service hands them the
MN's ``instructions`` question.  The service makes its actions with itself,
from the recipe given here (``make_actions``); what the actions use of it is
:class:`~mpa_sdn.actions.Signalling`.
"""

from __future__ import annotations

import collections
import functools
import os
from dataclasses import dataclass

from mpa_sdn import forwarding
from mpa_sdn.aaa import DomainsAaa
from mpa_sdn.actions import Actions
from mpa_sdn.config_radius import retransmit_settings
from mpa_sdn.events import EventLog
from mpa_sdn.indexing import HostTable
from mpa_sdn.metrics import Metrics
from mpa_sdn.mobility import COMPLETED, Mobility
from mpa_sdn.mpa_sa import EXPIRED
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.netpolicy import Policies
from mpa_sdn.routing import Router, address_user, mac_attached
from mpa_sdn.service import MpaService
from mpa_sdn.store import MemoryStore
from mpa_sdn.topology import Topology

LEASE_ENDS = ("released", "expired", "declined")   # what the CA says of a lease that ends


@dataclass(frozen=True)
class Scraped:
    """What a scrape reads (mpa_sdn/metrics.py)."""

    counters: collections.Counter
    switches: dict
    graph: NeighbourhoodGraph
    mobility: Mobility


@dataclass(frozen=True)
class Core:
    """The parts, built and linked; the controller dispatches events to them."""

    topology: Topology
    graph: NeighbourhoodGraph
    counters: collections.Counter
    events: EventLog           # what happened, for policy engines and the parts themselves
    policies: Policies         # each network's handover policy
    hosts: HostTable           # address -> the host learned there (the router keeps it)
    switches: dict             # dpid -> the connected switch's state (the controller keeps it)
    mobility: Mobility         # RFC 6252 §6.3 steps 2-6
    mpa: MpaService            # the AA and CA behind both signalling channels
    actions: Actions           # a policy engine's requests and the MN's instructions
    router: Router             # hosts, ARP, held packets
    metrics: Metrics


def assemble(topology: Topology, counters: collections.Counter | None = None, *,
             radius_servers: dict | None = None, store=None, entropy=os.urandom,
             wall_offset: float = 0.0, first_event_id: int = 1) -> Core:
    """Build every part of the core for ``topology`` (see Controller for the arguments)."""
    graph = NeighbourhoodGraph(topology)
    counters = counters if counters is not None else collections.Counter()
    store = store if store is not None else MemoryStore()
    events = EventLog(wall_offset, first_id=first_event_id)
    policies = Policies(topology.networks, topology.mpa, store, events)
    hosts: HostTable = HostTable()
    correspondents = forwarding.correspondent_hosts(graph)
    for host in correspondents:
        hosts[host.address] = host
    switches: dict = {}
    mobility = Mobility(graph, topology.mpa, counters, correspondents, hosts,
                        switches.__contains__, store, policy_of=policies.of, events=events)

    def make_actions(signalling) -> Actions:
        return Actions(signalling, mobility, graph, policies, events, store, counters)

    mpa = MpaService(topology, graph, domains_aaa(topology, radius_servers, counters, entropy),
                     store, counters, entropy, wall_offset,
                     functools.partial(address_user, hosts),
                     functools.partial(mac_attached, hosts),
                     mobility=mobility, policy_of=policies.of, events=events,
                     make_actions=make_actions)
    router = Router(graph, topology.controller, counters, hosts, switches, mpa, mobility)
    metrics = Metrics(Scraped(counters, switches, graph, mobility))
    core = Core(topology, graph, counters, events, policies, hosts, switches, mobility, mpa,
                mpa.actions, router, metrics)
    _reactions(core)
    return core


def domains_aaa(topology: Topology, radius_servers: dict | None, counters,
                entropy) -> DomainsAaa:
    """The AA's RADIUS clients, one per domain with servers."""
    return DomainsAaa(radius_servers or {}, retransmit_settings(topology.mpa), counters, entropy,
                      lambda: int.from_bytes(entropy(4), "big") / 2**32,
                      lambda domain: nas_identifier(topology, domain))


def nas_identifier(topology: Topology, domain: str) -> str:
    """What the AA calls itself to the domain's RADIUS server (NAS-Identifier)."""
    radius = topology.domains[domain].radius
    return (radius.nas_identifier if radius is not None and radius.nas_identifier
            else f"mpa-sdn-{domain}")


def _reactions(core: Core) -> None:
    """Who follows which event, in the order they react."""
    mobility, events = core.mobility, core.events

    def sa(event, now):        # an MPA-SA that expired takes its tunnels and bindings along
        if event["data"]["state"] == EXPIRED:
            mobility.sa_ended(event["identity"], event["network"])

    def lease(event, now):     # so does a lease that ended
        if event["data"]["state"] in LEASE_ENDS:
            mobility.lease_ended(event["data"]["address"], event["data"]["state"])

    def handover(event, now):  # a handover that ended: its latencies, its pre-switch action
        view = event["data"]
        if view["phase"] == COMPLETED:
            core.metrics.handover_ended(view)
            core.actions.handover_ended(view, now)

    def preauthentication(event, now):   # Tauth, by result
        core.metrics.preauthentication_ended(event["data"])

    events.follow("preauthentication", preauthentication)
    events.follow("sa", sa)
    events.follow("lease", lease)
    events.follow("handover", handover)

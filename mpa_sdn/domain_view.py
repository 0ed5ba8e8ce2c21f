"""One controller per administrative domain: what it knows of the topology.

RFC 6252 exists for handover between domains that share no trust (§1, §5):
each domain trusts the MN, not the other domain.  A controller started with
``--domain ID`` therefore serves that domain alone: its switches, its
networks (their AA, CA and AR), its RADIUS servers, its state file.  Of
another domain it knows only what that domain makes public about its
networks for discovery (§7.1) and routing: prefix, gateway (where its AA,
CA and AR answer) and the gateway's MAC.  Not its switches, its PoAs, its
pool, its RADIUS servers, its MNs or its correspondents.

The view is an ordinary :class:`Topology`, so routing, discovery and the
steps of the handover need no second code path:

* each other domain becomes one switch, ``@ID``, that never connects (it
  has a dpid no switch can have).  The border links, between a switch of
  this domain and one of another, end at that switch, so next hops towards
  another domain's networks lead out of the border ports;
* another domain's network keeps its prefix and gateway, has that switch as
  its access router, and no PoA or pool: nothing of it is served here
  (:meth:`Topology.serves`).

Traffic between domains is routed by destination, like any other: a packet
for another domain's prefix leaves by the border port, and what comes in at
a border port is routed as from any trunk.
"""

from __future__ import annotations

import dataclasses

from mpa_protocol.schema import ConfigError
from mpa_sdn.topology import Link, Network, Port, Switch, Topology

FOREIGN_PREFIX = "@"


def foreign_switch(domain: str) -> str:
    """The one switch standing for all of another domain's network."""
    return FOREIGN_PREFIX + domain


def is_foreign_switch(switch_id: str) -> bool:
    return switch_id.startswith(FOREIGN_PREFIX)


def domain_of_switches(topology: Topology) -> dict[str, str]:
    """Every switch's domain; a ConfigError names those whose domain is
    neither given nor implied by the networks on them."""
    domains, unknown = {}, []
    for sid in sorted(topology.switches):
        domain = topology.switch_domain(sid)
        if domain is None:
            unknown.append(sid)
        else:
            domains[sid] = domain
    if unknown:
        raise ConfigError([(f"switches.{sid}.domain",
                            "is needed to serve one domain: the switch is no network's AR "
                            "and holds no PoA, or holds those of several domains")
                           for sid in unknown])
    return domains


def border_links(topology: Topology) -> list[tuple[Link, str, str]]:
    """(link, one end's domain, the other's) for each link between two domains."""
    domains = domain_of_switches(topology)
    return [(link, domains[link.a.switch], domains[link.b.switch]) for link in topology.links
            if domains[link.a.switch] != domains[link.b.switch]]


def serve_domain(topology: Topology, domain: str) -> Topology:
    """What the controller of ``domain`` knows (see the module's doc)."""
    if domain not in topology.domains:
        raise ConfigError([("--domain", f"{domain!r} is not a domain of the topology "
                                        f"(it has {', '.join(sorted(topology.domains))})")])
    owner = domain_of_switches(topology)
    own = {sid for sid, d in owner.items() if d == domain}
    switches = {sid: topology.switches[sid] for sid in sorted(own)}
    links, neighbours_of = [], set()
    for link in topology.links:
        a_own, b_own = link.a.switch in own, link.b.switch in own
        if a_own and b_own:
            links.append(link)
        elif a_own or b_own:
            here, there = (link.a, link.b) if a_own else (link.b, link.a)
            other = owner[there.switch]
            neighbours_of.add(other)
            links.append(Link(here, Port(foreign_switch(other), there.port)))
    for index, other in enumerate(sorted(neighbours_of), start=1):
        # Negative: no OpenFlow switch has that dpid, so none is ever taken for it.
        switches[foreign_switch(other)] = Switch(foreign_switch(other), -index, other)
    networks, errors = {}, []
    for nid, network in sorted(topology.networks.items()):
        if network.domain == domain:
            if network.served_by != domain:
                errors.append((f"networks.{nid}.served_by",
                               f"is {network.served_by}: a controller serving {domain} alone "
                               "cannot be its AA and CA"))
            networks[nid] = network
        elif network.domain in neighbours_of:
            networks[nid] = public_part(network)
        else:
            errors.append((f"networks.{nid}", f"belongs to {network.domain}, which no border "
                                              f"link joins to {domain}: it cannot be routed"))
    if errors:
        raise ConfigError(errors)
    correspondents = {cid: c for cid, c in topology.correspondents.items()
                      if topology.poas[c.poa].network in networks
                      and networks[topology.poas[c.poa].network].domain == domain}
    mobile_nodes = {mid: mn for mid, mn in topology.mobile_nodes.items()
                    if home_domain(mn.identity) == domain}
    own_controller = topology.domains[domain].controller
    controller = dataclasses.replace(topology.controller, **{
        key: value for key, value in (("openflow_port", own_controller.openflow_port),
                                      ("rest_port", own_controller.rest_port))
        if value is not None})
    mpa = (topology.mpa if own_controller.state_db is None
           else dataclasses.replace(topology.mpa, state_db=own_controller.state_db))
    return dataclasses.replace(
        topology, controller=controller, mpa=mpa, domains={domain: topology.domains[domain]},
        switches=switches, links=tuple(links), networks=networks,
        correspondents=correspondents, mobile_nodes=mobile_nodes, domain=domain)


def public_part(network: Network) -> Network:
    """Another domain's network as its neighbours know it: where it is
    (prefix), where its AA, CA and AR answer (the gateway), nothing inside."""
    return dataclasses.replace(network, access_router=foreign_switch(network.domain), poas=(),
                               pool=None, dns=(), lease_time_s=None)


def home_domain(identity: str | None) -> str | None:
    """The domain that anchors an MN's home address: its identity's realm
    (``user@realm``, RFC 7542), the domain that authenticates it at home."""
    if identity is None or "@" not in identity:
        return None
    return identity.rsplit("@", 1)[1]

"""The binding update (RFC 6252 §6.3 step 3): the MN binds its home
address to a care-of address (an nCoA through its tunnel before it moves,
or where it is attached), a standby binding names its second interface
(§7.6.2), and a binding whose care-of loses its way to the MN falls back or
ends (:meth:`BindingUpdates._fall_back`).

The lab's mobility management protocol: home address -> care-of address.

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

import ipaddress
import logging
from dataclasses import dataclass, replace
from typing import Callable, Protocol

from ryu.ofproto import ether

from mpa_protocol.messages import MAX_CORRESPONDENTS
from mpa_sdn import openflow as of
from mpa_sdn.mobility import tunnels
from mpa_sdn.forwarding import Host, last_hop_actions
from mpa_sdn.indexing import hosts_of_mac
from mpa_sdn.mobility.flowsync import RECEIVE, STEER
from mpa_sdn.mobility.records import ACTIVE, STANDBY_KIND, Refused
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import (PRIO_BINDING, PRIO_BINDING_IN, Feature, Table, address_cookie,
                             feature_of)
from mpa_sdn.topology import PoA

LOG = logging.getLogger("mpa_sdn.mobility")


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
class Standby:
    """Where ``home`` goes when its current care-of's link is lost."""

    home: str
    care_of: str             # the prepared interface's address (an nCoA)
    network: str             # the care-of's network
    identity: str
    mac: str                 # the prepared interface's MAC
    expires: float           # wall clock


@dataclass(frozen=True)
class Leg:
    """A bicast's second destination: ``address`` (the MN's previous
    care-of), delivered at ``poa``."""

    address: str
    poa: PoA | None     # None: in another domain, where the MN restores its home address


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
                if leg.poa is not None:   # abroad, the MN restores the home address
                    add(leg.poa.switch, self._leg_restore(binding, cn, leg))
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

    def _leg_restore(self, binding: Binding, cn: Host, leg: Leg):
        """At a bicast leg's PoA: the home address restored for the MN there."""
        mn = Host(leg.address, binding.mac, leg.poa)
        return of.flow_add(
            Table.ROUTE, PRIO_BINDING,
            of.match(eth_type=ether.ETH_TYPE_IP, ipv4_src=cn.address, ipv4_dst=leg.address),
            of.apply(of.set_field(ipv4_dst=binding.home),
                     *last_hop_actions(mn, self.graph.network(leg.poa.network))),
            binding.cookie)

    def steers(self, mod) -> bool:
        # The edges' rewrites pick the address a packet travels to (or
        # comes from); the routes' rewrites only restore the home address.
        return mod.table_id == Table.INGRESS and feature_of(mod.cookie) == Feature.BINDING

    def deliver_actions(self, binding: Binding, frame_src: str, frame_dst: str,
                        care_ofs: frozenset = frozenset()) -> list:
        if frame_src in self._addresses and (frame_dst == binding.care_of or frame_dst in care_ofs):
            return [of.set_field(ipv4_dst=binding.home)]
        return []


class BindingFlows:
    """The bindings' flows, for the make-before-break engine: the binding
    protocol's, to the care-of where it ``reach``es the MN, bicasting to a
    ``leg`` if there is one, with what ``refine`` adds (copy-and-forward's
    copies)."""

    feature = Feature.BINDING

    def __init__(self, protocol: BindingProtocol, bindings: dict[str, Binding],
                 reach: Callable[[Binding], Reach | None], leg: Callable[[str], Leg | None],
                 refine: Callable[[str, Reach | None, dict], dict],
                 pending: dict[str, Binding]):
        self.protocol, self.bindings, self.pending = protocol, bindings, pending
        self.reach, self.leg, self.refine = reach, leg, refine

    def subjects(self):
        return self.bindings.keys() | self.pending.keys()

    def flows(self, address: str) -> dict[str, list]:
        binding = self.bindings.get(address)
        flows = {}
        if binding is not None:
            reach = self.reach(binding)
            flows = self.refine(address, reach,
                                self.protocol.flows(binding, reach, self.leg(address)))
        coming = self.pending.get(address)
        if coming is not None:
            # The way back from the care-of the MN is about to rewrite for:
            # what it sends from there reaches the correspondents as from home.
            for switch, mods in self.protocol.flows(coming, None).items():
                back = [m for m in mods if not self.protocol.steers(m)]
                if back:
                    flows[switch] = flows.get(switch, []) + back
        return flows

    def stage(self, mod) -> str:
        return STEER if self.protocol.steers(mod) else RECEIVE


class BindingUpdates:
    """Binding updates, standby ones too, and the fallback when a care-of
    loses its way to the MN (a part of :class:`~mpa_sdn.mobility.Mobility`,
    on its state)."""

    def binding_update(self, sa, home_address: str | None, msg, source: str | None, lease,
                       wall: float, held=None) -> dict:
        """``home_address``: the identity's, from the topology; ``source``: the
        in-band sender's address (None over REST); ``held``: for a standby,
        the lease of the care-of if the same identity holds it (its other
        interface, under its SA with the care-of's network)."""
        home, care_of = msg["home_address"], msg["care_of"]
        if home_address is None or home != home_address:
            self.counters["binding_refused_home"] += 1
            raise Refused("binding-refused", f"{home} is not this MN's home address")
        if source is not None and source != care_of:
            self.counters["binding_refused_source"] += 1
            raise Refused("binding-refused", "a binding update comes from its care-of address")
        attached, held = self._attached(sa, care_of, held if msg.get("standby") else None)
        tunnelled = (lease is not None and lease.address == care_of
                     and self.tunnels.get(care_of) is not None
                     and self.tunnels[care_of].identity == sa.identity)
        foreign = self._foreign_network(care_of)
        # No switch of ours sees the inner packets between the care-of and
        # the MN: in another domain, or inside a tunnel that ends at the MN.
        at_mn = foreign is not None or (tunnelled and not attached and
                                        self.tunnels[care_of].encapsulation == tunnels.VXLAN)
        abroad = self._rewrites_at_mn() if at_mn else {}
        if not (attached or tunnelled or foreign):
            self.counters["binding_refused_care_of"] += 1
            raise Refused("binding-refused", f"the MN does not hold {care_of} in {sa.network} "
                                             "(attached there, or through a tunnel)")
        life = msg.get("lifetime")
        life = self.settings.binding_lifetime_s if life is None else min(
            life, self.settings.binding_lifetime_s)
        if msg.get("standby"):
            if msg.get("bicast"):
                raise Refused("wrong-state", "a standby binding is not bicast")
            return self._standby(sa, home, care_of, attached, life, wall, foreign, abroad, held)
        if msg.get("bicast"):
            return self._steer_bicast(sa, home, care_of, at_mn, life, wall, abroad,
                                      msg.get("bicast_to"))
        self._end_steered_bicast(home)
        if life == 0:
            self.pending.pop(home, None)
            if home in self.bindings:
                self._delete_binding(home, "binding_deleted")
                self._drop_standby(home, "ended_unbound")   # nothing left to move
                self._sync()
            return {"home_address": home, "care_of": care_of, "lifetime": 0}
        binding = Binding(home, care_of, foreign.id if foreign else sa.network, sa.identity,
                          sa.mn_mac, min(wall + life, sa.expires))
        old = self.bindings.get(home)
        if at_mn and not msg.get("rewriting") and (old is None or old.care_of != care_of):
            return self._await_rewriting(binding, abroad, wall)
        self.pending.pop(home, None)
        self._bind(binding, old, f"in {foreign.id}, domain {foreign.domain}" if foreign else
                   "through the tunnel" if tunnelled and not attached else "attached")
        return {"home_address": home, "care_of": care_of,
                "lifetime": max(0, int(binding.expires - wall)), **abroad}

    def _attached(self, sa, care_of: str, held) -> tuple[bool, object]:
        """Whether the MN is attached at ``care_of``: with ``sa``'s MAC in its
        network, or (``held``, a standby's lease of the same identity) as its
        other interface, bound as a standby under its SA with its home
        domain, which keeps the binding (mpa_mn.standby); and ``held`` if
        that is how."""
        host = self.hosts.get(care_of)
        if host is None:
            return False, None
        if host.mac == sa.mn_mac and host.poa.network == sa.network:
            return True, None
        if held is not None and (host.mac, host.poa.network) == (held.mac, held.network):
            return True, held
        return False, None

    def _await_rewriting(self, binding: Binding, abroad: dict, wall: float) -> dict:
        """Make before break, with the MN as one of the switches: the
        correspondents' traffic turns towards a care-of the MN must rewrite
        for only once it does.  Until the MN says so (the update again, with
        ``rewriting``), the binding stays where it is; only the way back
        from the new care-of is put in, so what the MN sends from there as
        soon as it rewrites reaches the correspondents as from home.  The MN
        has ``retransmit_s`` to say so (an answer is repeated that long);
        then the way back goes."""
        self.pending[binding.home] = replace(
            binding, expires=min(binding.expires, wall + self.settings.retransmit_s))
        self.counters["binding_pending_rewriting"] += 1
        LOG.info("identity=%s mac=%s binding %s -> %s waits for the MN to rewrite for it",
                 binding.identity, binding.mac, binding.home, binding.care_of)
        self._sync()
        return {"home_address": binding.home, "care_of": binding.care_of,
                "lifetime": max(0, int(binding.expires - wall)), **abroad, "pending": True}

    def _bind(self, binding: Binding, old: Binding | None, how: str) -> None:
        home, care_of = binding.home, binding.care_of
        self.bindings[home] = binding
        self._save_binding(binding)
        self.counters["binding_updated"] += 1
        if self._foreign_network(care_of) is not None:
            self.counters["binding_updated_abroad"] += 1
        standby = self.standbys.get(home)
        if standby is not None and (old is None or old.care_of != care_of):
            # The MN moved its binding itself (its interfaces both up: no
            # loss to prevent): nothing to stand by for any more.
            self._drop_standby(home, "ended_rebound")
        if old is None or old.care_of != care_of:
            LOG.info("identity=%s mac=%s network=%s binding %s -> %s (%s)", binding.identity,
                     binding.mac, binding.network, home, care_of, how)
        self._sync()

    def _foreign_network(self, care_of: str):
        """The other domain's network ``care_of`` is in (None: one of ours, or
        no network anyone told us of)."""
        network = self.graph.network_of_address(care_of)
        if network is None or self.graph.topology.serves(network):
            return None
        return network

    def _rewrites_at_mn(self) -> dict:
        """What a binding-ack adds when the MN must restore its home address
        itself: for a care-of in another domain's network, or one of ours
        reached through a tunnel that ends at the MN (it is in another domain).

        The home domain keeps the binding of an MN whose care-of is in
        another domain (an nCoA that domain's CA gave it, reached through
        that domain's MN-terminated tunnel, or its address after the move).
        This controller cannot see that the MN holds the address: the other
        domain's proof stays there.  The update is the MN's, under its SA
        with its home domain; in-band it came from the care-of, through the
        tunnel, and the answer goes back there, so an MN that does not hold
        the care-of never learns it was accepted.  The home domain rewrites
        where the correspondents' traffic enters and leaves (the binding's
        flows with no reach); the MN does the rest (``rewrite_at_mn``)."""
        correspondents = sorted({c.address for c in self.correspondents},
                                key=ipaddress.IPv4Address)
        if len(correspondents) > MAX_CORRESPONDENTS:
            self.counters["binding_refused_care_of"] += 1
            raise Refused("wrong-state", f"{len(correspondents)} correspondents: more than a "
                                         f"binding-ack can list ({MAX_CORRESPONDENTS})")
        return {"rewrite_at_mn": True, "correspondents": correspondents}

    def _standby(self, sa, home: str, care_of: str, attached: bool, life: int,
                 wall: float, foreign=None, abroad: dict | None = None, held=None) -> dict:
        """A standby binding update (§7.6.2): ``care_of`` is the MN's
        prepared second interface, attached in ``sa.network`` (or, ``held``,
        in the network of its own SA, the MN binding at home), or (``foreign``)
        in another domain's network, where the home domain cannot see it and
        trusts its own authenticated MN as for any binding abroad; ``home``
        stays where it is, and its PoA copies what it delivers.  Abroad the
        answer carries the rewriting the MN does once the binding moves
        (``abroad``): it installs it for its second interface beforehand, so
        that nothing is left to do between the loss and the traffic."""
        answer = {"home_address": home, "care_of": care_of, "standby": True}
        if life == 0:
            self._drop_standby(home, "released")
            self._sync()
            return {**answer, "lifetime": 0}
        if not attached and foreign is None:
            self.counters["binding_refused_care_of"] += 1
            raise Refused("binding-refused", f"a standby care-of is an interface attached to "
                                             f"{sa.network}, and {care_of} is not")
        current = self.bindings.get(home)
        reach = self.reach(current) if current is not None else None
        if current is None or current.identity != sa.identity or reach is None or reach.tunnel:
            raise Refused("wrong-state", f"{home} is not bound to a care-of attached where "
                                         "the controller can copy its traffic")
        if current.care_of == care_of:
            raise Refused("wrong-state", f"{home} is already bound to {care_of}")
        handover = self.handovers.get(sa.identity)
        if handover is not None and handover.phase in ACTIVE:
            raise Refused("wrong-state", "a handover is in progress")
        # ``held``: the care-of is the MN's other interface in one of our
        # networks, under its SA there.  Abroad, a MAC is none of ours to
        # know: the care-of's host is never learned here, and the buffer
        # delivers by route, not by MAC.
        network = foreign.id if foreign else held.network if held else sa.network
        mac = held.mac if held else sa.mn_mac
        standby = Standby(home, care_of, network, sa.identity, mac,
                          min(wall + life, sa.expires, current.expires))
        if self.standbys.get(home) != standby:
            LOG.info("identity=%s mac=%s network=%s standby %s -> %s%s; copying at poa=%s",
                     sa.identity, sa.mn_mac, network, home, care_of,
                     f" in domain {foreign.domain}" if foreign else "", reach.poa.id)
        self.standbys[home] = standby
        self._save_standby(standby)
        self.counters["standby_armed"] += 1
        if foreign is not None:
            self.counters["standby_armed_abroad"] += 1
        self._sync()
        return {**answer, "lifetime": max(0, int(standby.expires - wall)), **(abroad or {})}

    def _drop_standby(self, home: str, why: str) -> None:
        if (standby := self.standbys.pop(home, None)) is not None:
            self.store.delete(STANDBY_KIND, home)
            self.counters[f"standby_{why}"] += 1
            LOG.info("identity=%s mac=%s network=%s standby for %s %s", standby.identity,
                     standby.mac, standby.network, home, why)

    def _fall_back(self, care_of: str, cause: str) -> None:
        """``care_of`` lost its way to the MN (its tunnel ended: ``cause``):
        each binding to it that reaches the MN no other way moves to the
        MN's address at the PoA it is attached to now, or ends.

        A binding never points into a black hole: with the tunnel gone the
        nCoA's AR would resolve it by ARP in a network the MN is not in,
        and hold, then drop, every packet for the home address.  The MN's
        address where it is is the one care-of the controller has seen it
        use (a learned host with its MAC at its PoA), so packets for the
        home address reach it there, and its own packets from the home
        address go out from it.  The binding's previous care-of is not
        kept (and is often that same address); the home address is never
        routed (docs/topology.md), so there is no home network to fall
        back to.  With the MN nowhere the controller knows, the binding
        ends: correspondents' packets then stop at their edge, where no
        route takes them, rather than at an AR that holds them for a host
        that is not there."""
        for home in sorted(self._bound_at.get(care_of)):
            binding = self.bindings[home]
            if self.reach(binding) is not None:
                continue   # attached at the care-of (an arrival): it reaches the MN there
            here = self.where.get(binding.mac)
            mine = sorted((h.address for h in hosts_of_mac(self.hosts, binding.mac)
                           if h.poa == here), key=ipaddress.IPv4Address)
            why = {"previous_care_of": care_of, "cause": cause}
            if mine:
                moved = replace(binding, care_of=mine[0], network=here.network)
                with self._because(reason="fell-back", **why):
                    self.bindings[home] = moved
                self._save_binding(moved)
                self.counters["binding_fell_back"] += 1
                LOG.warning("identity=%s mac=%s network=%s binding %s -> %s at poa=%s: %s "
                            "(%s) has no way to the MN", binding.identity, binding.mac,
                            here.network, home, moved.care_of, here.id, care_of, cause)
                continue
            with self._because(reason="no-route", **why):
                self._delete_binding(home, "binding_ended_no_route")
            self._drop_standby(home, "ended_unbound")
            LOG.warning("identity=%s mac=%s network=%s binding of %s ended: %s (%s) has no "
                        "way to the MN, and the MN is nowhere the controller knows",
                        binding.identity, binding.mac, binding.network, home, care_of, cause)

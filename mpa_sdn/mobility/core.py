"""Proactive handover: tunnels, bindings and the handover's phases (RFC 6252
§6.3 steps 2-6, §7.4-§7.6, Appendix C.1 and C.4).

The state is declarative: tunnels, bindings and the buffering punts of
handovers in progress.  Each of them (a subject, named by its flows' cookie)
has its flows, and together they are every flow this module wants on every
switch (:meth:`Mobility.desired`).  A change marks the subjects it touches;
:meth:`Mobility._sync` builds only their flows again (:mod:`mpa_sdn.mobility.flowsync`)
and sends the difference: the new flows first, each switch's followed by a
barrier, and the flows that go only once every barrier has been answered
(make-before-break).  Deletes are strict, by
table, priority, match and this module's cookie (feature and subject), never
by a broad match.  A reconnecting switch is reconciled against the same
``desired`` view, so a tunnel or a binding never leaks and never goes
missing.

A handover (one per MN at a time) goes through these phases:

``pre-switching`` (step 4)
    The MN said it is about to switch.  The nCoA's access router (nAR) sends
    packets for the nCoA to the controller (a punt above the tunnel, which
    stays underneath), and the controller buffers them.  With ``buffer_old``
    the old care-of address's AR buffers too (§7.6.1).
``switching`` (steps 5-6)
    The MN showed up in the target network: its gratuitous ARP or any packet
    at a PoA there, its ``arrived`` signal, or (one MN expected) the PoA's
    port coming up.  The direct flows (the host's routes, its binding at the
    new PoA) go in, and every switch on the way confirms with a barrier.
``flushing``
    The buffer goes to the MN in order from its new PoA, paced
    (``mpa.flush_rate_pps``), old AR's packets first (they are older).
    Packets still punted meanwhile join the queue's tail.  Once it is
    empty, each punted packet is relayed as it comes, and the punts go the
    moment the controller has handled every packet-in it was given after
    relaying one (:meth:`Mobility.caught_up`), or after ``QUIET_S`` without
    any.  That is when the fewest punted packets can still be on their way
    to the controller: each of those would reach the MN after the first
    packet that takes the direct path (OVS cannot hold packets, so no
    OpenFlow change can make this window empty; it is as short as the
    controller's round trip, and counted as ``buffer_late_delivered``).
``draining``
    The punts go, with a barrier.  Packets punted before the switch applied
    that are delivered at once.
``completed``
    The barrier came back.  The tunnel is gone (the MN is in its network);
    the old network's SA is held by the AA, its lease kept for its time.

``switched-back`` replaces ``switching`` when the MN does not arrive within
``mpa.switch_deadline_s``, shows up in another network (its old one), or
cancels: the buffer goes to wherever the MN is, the punts go, and the tunnel
and the target's SA and lease are kept (until their own lifetimes), so the
MN can try again.  A binding through the tunnel stays on it: the tunnel
still takes the home address's traffic to the MN where it is.

A binding never points at a care-of address with no way to the MN.  When a
tunnel ends (its lifetime, a release, its lease's or SA's end, the MN's
arrival in its network), each binding through it that reaches the MN no
other way falls back to the MN's address where it is attached now, or ends
when the MN is nowhere the controller knows (:meth:`Mobility._fall_back`):
``binding_fell_back``, ``binding_ended_no_route`` and a ``binding`` event
with the reason.
"""

from __future__ import annotations

import collections
import contextlib
import ipaddress
import itertools
import logging
from dataclasses import dataclass, replace
from typing import Callable

from ryu.ofproto import ether

from mpa_sdn import openflow as of
from mpa_sdn.mobility import tunnels as tn
from mpa_sdn.mobility.bindings import Binding, BindingProtocol, EdgeRewrite, Leg, Reach
from mpa_sdn.mobility.copy_forward import CopyRing, Standby, with_copy
from mpa_sdn.mobility.buffer import PacketBuffer
from mpa_sdn.mobility.flowsync import DesiredFlows, order_of
from mpa_sdn.forwarding import Host, host_path, last_hop_actions
from mpa_sdn.mobility.records import (  # noqa: F401  (the phases and modes are mobility's words)
    ACTIVE, BICAST, BUFFER, BUFFERING, COMPLETED, COPY, DRAINING, FLUSHING, PRE_SWITCHING,
    SETTLE_S, SWITCHED_BACK, SWITCHING, CurrentHandovers, Handover)
from mpa_sdn.indexing import Index, Watched, hosts_of_mac
from mpa_sdn.netpolicy import NetworkPolicy, Policies
from mpa_sdn.openflow import Send
from mpa_sdn.tables import PRIO_BUFFER, Feature, Table, address_cookie, feature_of, subject_of
from mpa_sdn.topology import PoA

LOG = logging.getLogger("mpa_sdn.mobility")
TUNNEL_KIND, BINDING_KIND, STANDBY_KIND = "tunnel", "binding", "standby"
LINGER_S = 1.0          # a completed handover still delivers late punts this long
HISTORY = 256           # finished handovers kept for the views and benchmarks
QUIET_S = 0.05          # an emptied buffer's punts go after this long without a packet



@dataclass(frozen=True)
class Bicast:
    """A bicast handover's second leg: ``home``'s traffic also goes to
    ``address``, the MN's care-of at ``poa`` before it moved, while it is
    seen there, until ``until`` (monotonic; RFC 6252 §7.6.1, C.1)."""

    home: str
    address: str
    mac: str
    poa: PoA
    until: float | None = None   # None: the MN has not arrived yet


class Refused(Exception):
    """A mobility message refused: ``code`` is a signalling error code."""

    def __init__(self, code: str, message: str):
        super().__init__(message)
        self.code, self.message = code, message


class Mobility:
    def __init__(self, graph, settings, counters: collections.Counter, correspondents: list[Host],
                 hosts: dict, connected: Callable[[int], bool], store,
                 protocol: BindingProtocol | None = None):
        self.graph = graph
        self.settings = settings
        self.counters = counters
        self.hosts = hosts                 # the controller's host table (read only)
        self.connected = connected
        self.store = store
        self.protocol = protocol or EdgeRewrite(graph, correspondents)
        # Each change of these marks the flows' subjects it touches (_dirty)
        # and keeps the indexes below; _sync builds only those subjects' flows.
        self._dirty: set[int] = set()                 # cookies whose flows may have changed
        self.tunnels: dict[str, tn.Tunnel] = Watched(self._tunnel_changed)
        self.bindings: dict[str, Binding] = Watched(self._binding_changed)
        self.handovers: dict[str, Handover] = Watched(self._handover_set)  # identity ->
        # home -> its standby care-of (§7.6.2)
        self.standbys: dict[str, Standby] = Watched(self._standby_changed)
        self._rings: dict[str, tuple[str, CopyRing]] = {}  # home -> (copying switch, copies)
        self.bicasts: dict[str, Bicast] = Watched(self._bicast_changed)  # home -> second leg
        self.on_ended: Callable[[dict, float], None] | None = None  # (its view, now)
        # Each network's policy (mpa_sdn/netpolicy.py); the controller shares its own.
        self.policy_of: Callable[[str], NetworkPolicy] = Policies(
            graph.topology.networks, settings).of
        self.settled: dict[str, tuple[str, float]] = {}  # identity -> (network, arrived at)
        self.on_change: Callable[[str, dict], None] | None = None  # (event type, fields)
        self._why: dict = {}   # why the tunnel or binding changing now changes (its event's)
        self.history: collections.deque = collections.deque(maxlen=HISTORY)
        self.where: dict[str, PoA] = {}               # MAC -> the PoA it was last learned at
        # address -> the handover buffering it
        self._buffering: dict[str, Handover] = Watched(self._buffering_changed)
        self._flows = DesiredFlows()
        self._installed = self._flows.installed       # switch -> {FlowKey: (record, mod)}
        self._tunnels_of_mac, self._tunnels_of = Index(), Index()   # -> addresses
        self._bound_at, self._bindings_of = Index(), Index()        # care-of, identity -> homes
        self._bound_mac = Index()                                   # MAC -> homes
        self._standbys_of, self._legs_at = Index(), Index()         # identity, leg -> homes
        self._label_pool = tn.Labels()
        self._current = CurrentHandovers()
        # tag -> (dpids awaited, later stages of adds, deletes)
        self._deferred: dict[str, tuple[set, list, list]] = {}
        # (when, tag, deletes): the deletes of a confirmed change, settling
        self._breaks: collections.deque = collections.deque()   # [when, tag, deletes]
        self._breaks_of: dict[str, list] = {}         # tag -> its entries in _breaks
        self._ids = itertools.count(1)
        self._tags = itertools.count(1)
        self._out: list = []
        self._load()

    # -- persistence --------------------------------------------------------------

    def _load(self) -> None:
        def tunnel(body):
            t = tn.Tunnel(**{**body, "poa": self.graph.poa(body["poa"])})
            self.graph.network(t.network)
            return t

        def binding(body):
            b = Binding(**body)
            ipaddress.IPv4Address(b.home), ipaddress.IPv4Address(b.care_of)
            return b

        def standby(body):
            s = Standby(**body)
            ipaddress.IPv4Address(s.home), ipaddress.IPv4Address(s.care_of)
            self.graph.network(s.network)
            return s
        self.tunnels.update({t.address: t for t in self._records(TUNNEL_KIND, tunnel)})
        self.bindings.update({b.home: b for b in self._records(BINDING_KIND, binding)})
        self.standbys.update({s.home: s for s in self._records(STANDBY_KIND, standby)})
        self._copy_points()
        self._refresh()  # what a reconnecting switch is reconciled to

    def _records(self, kind: str, build: Callable) -> list:
        """The stored records of ``kind`` that ``build`` makes sense of; any
        other is counted and dropped, not fatal."""
        out = []
        for key, body in self.store.load(kind).items():
            try:
                out.append(build(body))
            except Exception:  # noqa: BLE001  (a bad record is anything build raises)
                self.counters[f"{kind}_record_invalid"] += 1
                self.store.delete(kind, key)
        return out

    def _save_tunnel(self, t: tn.Tunnel) -> None:
        self.store.put(TUNNEL_KIND, t.address, {**t.__dict__, "poa": t.poa.id})

    def _save_binding(self, b: Binding) -> None:
        self.store.put(BINDING_KIND, b.home, dict(b.__dict__))

    def _drop_standby(self, home: str, why: str) -> None:
        if (standby := self.standbys.pop(home, None)) is not None:
            self.store.delete(STANDBY_KIND, home)
            self.counters[f"standby_{why}"] += 1
            LOG.info("identity=%s mac=%s network=%s standby for %s %s", standby.identity,
                     standby.mac, standby.network, home, why)

    # -- desired flows --------------------------------------------------------------

    def reach(self, binding: Binding) -> Reach | None:
        host = self.hosts.get(binding.care_of)
        if host is not None and host.mac == binding.mac:
            return Reach(host.poa)
        tunnel = self.tunnels.get(binding.care_of)
        if tunnel is not None:
            return Reach(tunnel.poa, tunnel)
        return None

    def desired(self) -> dict[str, dict]:
        """Every flow this module wants, built from the whole state: what
        ``_installed`` holds after a ``_sync``, built again from scratch."""
        flows: dict[str, list] = collections.defaultdict(list)
        subjects = [address_cookie(Feature.TUNNEL, a) for a in sorted(self.tunnels)]
        subjects += [address_cookie(Feature.BINDING, h) for h in sorted(self.bindings)]
        subjects += [address_cookie(Feature.BUFFER, a) for a in sorted(self._buffering)]
        for cookie in subjects:
            for switch, mods in self._subject_flows(cookie).items():
                flows[switch] += mods
        out = {}
        for switch, mods in flows.items():
            table = {}
            for mod in mods:
                record = of.record_of(mod)
                table[record.key] = (record, mod)
            if table:
                out[switch] = table
        return out

    def _subject_flows(self, cookie: int) -> dict[str, list]:
        """The flows of one tunnel, binding or buffer (the cookie says which)."""
        address = str(ipaddress.IPv4Address(subject_of(cookie) & 0xFFFFFFFF))
        feature = feature_of(cookie)
        if feature == Feature.TUNNEL:
            tunnel = self.tunnels.get(address)
            return tn.flows(self.graph, tunnel) if tunnel is not None else {}
        if feature == Feature.BINDING:
            binding = self.bindings.get(address)
            if binding is None:
                return {}
            reach = self.reach(binding)
            by_switch = self.protocol.flows(binding, reach, self._leg(address))
            if address in self.standbys and reach is not None and reach.tunnel is None:
                # Copy-and-forward: what the active care-of's PoA delivers
                # to the MN, it copies to the controller too.
                by_switch[reach.poa.switch] = [with_copy(mod, reach.poa.port) or mod
                                               for mod in by_switch.get(reach.poa.switch, [])]
            return by_switch
        handover = self._buffering.get(address)
        if handover is None or handover.phase not in BUFFERING:
            return {}
        network = self.graph.network_of_address(address)
        return {network.access_router: [buffer_flow(address, punt=handover.mode != BICAST)]}

    def _refresh(self) -> list[tuple]:
        """Build the changed subjects' flows again, in the whole state's
        order; returns the changes (DesiredFlows.update)."""
        dirty, self._dirty = self._dirty, set()
        changes = []
        for cookie in sorted(dirty, key=order_of):
            changes += self._flows.update(cookie, self._subject_flows(cookie))
        return changes

    # -- what a change touches ---------------------------------------------------------

    @staticmethod
    def _reindex(key: str, old, new, **indexes: Index) -> None:
        """``key``'s entry changed from ``old`` to ``new``: each index by
        the field it is named after follows."""
        for name, index in indexes.items():
            if old is not None:
                index.discard(getattr(old, name), key)
            if new is not None:
                index.add(getattr(new, name), key)

    def _tunnel_changed(self, address: str, old, new) -> None:
        self._reindex(address, old, new, mac=self._tunnels_of_mac, identity=self._tunnels_of)
        if old is not None:
            self._label_pool.release(old)
        if new is not None:
            self._label_pool.take(new)
        self._dirty.add(address_cookie(Feature.TUNNEL, address))
        self._care_of_changed(address)   # a binding through it reaches the MN another way
        if old is None or new is None or old.poa != new.poa:   # not each refresh
            t = new or old
            self._told("tunnel", {"identity": t.identity, "network": t.network,
                                  "address": address, "poa": t.poa.id, "up": new is not None,
                                  **self._why})

    def _binding_changed(self, home: str, old, new) -> None:
        self._reindex(home, old, new, care_of=self._bound_at, identity=self._bindings_of,
                      mac=self._bound_mac)
        self._dirty.add(address_cookie(Feature.BINDING, home))
        if old is None or new is None or old.care_of != new.care_of:
            b = new or old
            self._told("binding", {"identity": b.identity, "network": b.network,
                                   "home_address": home,
                                   "care_of": new.care_of if new is not None else None,
                                   **self._why})

    def _standby_changed(self, home: str, old, new) -> None:
        self._reindex(home, old, new, identity=self._standbys_of)
        self._dirty.add(address_cookie(Feature.BINDING, home))

    def _bicast_changed(self, home: str, old, new) -> None:
        self._reindex(home, old, new, address=self._legs_at)
        self._dirty.add(address_cookie(Feature.BINDING, home))

    def _handover_set(self, identity: str, old: Handover | None, new: Handover | None) -> None:
        self._current.replaced(old, new)
        if new is not None and new is not old:
            self._told("handover", new.view())

    def _handover_changed(self, handover: Handover, name: str, old) -> None:
        if name == "phase" and (old in BUFFERING) != (handover.phase in BUFFERING):
            for address in handover.buffered_addresses():   # its punts come or go
                self._dirty.add(address_cookie(Feature.BUFFER, address))
        self._current.changed(handover, name)
        if name == "phase" and handover.phase != COMPLETED:  # completion: _complete tells
            self._told("handover", handover.view())

    def _told(self, kind: str, fields: dict) -> None:
        if self.on_change is not None:
            self.on_change(kind, fields)

    @contextlib.contextmanager
    def _because(self, **why):
        """The events of the changes made inside say ``why``."""
        before, self._why = self._why, why
        try:
            yield
        finally:
            self._why = before

    @staticmethod
    def _first(table: dict, keys, wanted: Callable = lambda value: True):
        """The first value of ``table`` among ``keys`` (an index's) that is
        ``wanted``, in the table's own order."""
        keys = list(keys)
        if len(keys) > 1:   # rare: one MN with two of a kind
            keys = [k for k in table if k in set(keys)]
        return next((table[k] for k in keys if wanted(table[k])), None)

    def _buffering_changed(self, address: str, old, new) -> None:
        self._dirty.add(address_cookie(Feature.BUFFER, address))

    def _care_of_changed(self, address: str) -> None:
        """What reaches ``address`` changed (a host, a tunnel): the bindings
        to it, and the bicasts with a leg there."""
        for home in self._bound_at.get(address) + self._legs_at.get(address):
            self._dirty.add(address_cookie(Feature.BINDING, home))

    def _copy_points(self) -> None:
        """A copy ring for each standby home at its active care-of's PoA
        switch (a new one if that moved), kept through its copy-and-forward
        handover, and none for anyone else."""
        for home, (_, ring) in list(self._rings.items()):
            owner = ring.owner   # kept while its handover is (late copies still come)
            if home not in self.standbys and (
                    owner is None or self.handovers.get(owner.identity) is not owner):
                del self._rings[home]
        for home, standby in self.standbys.items():
            binding = self.bindings.get(home)
            reach = self.reach(binding) if binding else None
            if reach is None or reach.tunnel is not None:
                self._rings.pop(home, None)
            elif self._rings.get(home, (None,))[0] != reach.poa.switch:
                s = self.settings
                self._rings[home] = (reach.poa.switch,
                                     CopyRing(s.copy_packets, s.copy_time_s, self.counters))

    def _leg(self, home: str) -> Leg | None:
        """A bicast's second leg, while the MN is still seen at its old PoA."""
        bicast = self.bicasts.get(home)
        host = self.hosts.get(bicast.address) if bicast else None
        if host is None or host.mac != bicast.mac or host.poa != bicast.poa:
            return None
        return Leg(bicast.address, bicast.poa)

    def flows_for(self, switch: str) -> list:
        return [mod for _, mod in self._installed.get(switch, {}).values()]

    def flow_count(self, switch: str) -> int:
        return len(self._installed.get(switch, {}))

    def _sync(self, confirm: str | None = None, also: tuple = ()) -> None:
        """Send what changed.  ``confirm``: tag the barriers of every switch
        that gets adds, and of ``also`` (switches whose flows others changed),
        so the caller hears when all of them hold their new flows.

        Stages, each after the barriers of the one before: the flows that
        receive traffic, then the flows that steer traffic to them (an
        edge's rewrite to a new care-of would otherwise send packets where
        nothing takes them yet), then the flows that drop what used to go
        on (a bicast's target leg at the nAR: until the edge sends the
        other leg, the tunnel is the MN's only way), then the deletes."""
        if self.standbys or self._rings:   # copy-and-forward's rings follow their PoAs
            self._copy_points()
        receive: dict[str, list] = {}
        steer: dict[str, list] = {}
        withdraw: dict[str, list] = {}
        deletes_by: dict[str, list] = {}
        for switch, _, before, after in self._refresh():
            if after is None:
                deletes_by.setdefault(switch, []).append(delete_of(before[1]))
            elif before is None or before[0] != after[0]:
                mod = after[1]
                stage = (withdraw if _drops(mod) else steer if self.protocol.steers(mod)
                         else receive)
                stage.setdefault(switch, []).append(mod)
        live = self.connected
        for switch in also:  # a barrier only, with the first stage
            receive.setdefault(switch, [])
        sends = []
        for stage in (receive, steer, withdraw):
            batch = [Send(self.graph.dpid(s), mods, barrier=True)
                     for s, mods in sorted(stage.items()) if live(self.graph.dpid(s))]
            if batch:
                sends.append(batch)
        deletes = [Send(self.graph.dpid(s), msgs, barrier=True)
                   for s, msgs in sorted(deletes_by.items()) if live(self.graph.dpid(s))]
        tag = confirm or (f"mobility:{next(self._tags)}"
                          if sends and (deletes or len(sends) > 1) else None)
        if not sends:
            if confirm is not None and deletes:
                for send in deletes:
                    send.confirm = confirm
                self._deferred.setdefault(confirm, (set(), [], []))[0].update(
                    s.dpid for s in deletes)
            self._out += deletes
            return
        if tag is None:
            self._out += sends[0]
            return
        for batch in sends:
            for send in batch:
                send.confirm = tag
        held = self._deferred.get(tag)
        if held is None:
            self._deferred[tag] = ({s.dpid for s in sends[0]}, sends[1:], deletes)
            self._out += sends[0]
        else:
            # More for a tag still awaited: its first stage joins now.
            held[0].update(s.dpid for s in sends[0])
            self._out += sends[0]
            held[1].extend(sends[1:])
            held[2].extend(deletes)

    def drain(self) -> list:
        out, self._out = self._out, []
        return out

    # -- messages -----------------------------------------------------------------

    def tunnel_request(self, sa, lease, origin_mac: str | None, lifetime: int | None,
                       wall: float) -> dict:
        poa = self.where.get(sa.mn_mac)
        if lease is None:
            raise Refused("wrong-state", f"no nCoA in {sa.network}: ask for a configuration first")
        if origin_mac is not None and origin_mac != sa.mn_mac:
            raise Refused("binding-refused", "the request did not come from the SA's MAC")
        if poa is None:
            raise Refused("wrong-state", "the MN is not attached anywhere the controller knows")
        if poa.network == sa.network:
            raise Refused("wrong-state", f"the MN is already attached to {sa.network}")
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
            tunnel = replace(old, poa=poa, mac=sa.mn_mac, expires=expires)
            self.counters["tunnel_refreshed"] += 1
        else:
            down, up = self._labels()
            tunnel = tn.Tunnel(lease.address, sa.network, sa.identity, sa.mn_mac, poa, down, up,
                               expires)
            self.counters["tunnel_created"] += 1
            LOG.info("identity=%s mac=%s tunnel for %s from the AR of network=%s to poa=%s "
                     "(labels %d/%d)", sa.identity, sa.mn_mac, lease.address, sa.network,
                     poa.id, down, up)
        self.tunnels[tunnel.address] = tunnel
        self._save_tunnel(tunnel)
        self._sync()
        return {"address": tunnel.address, "poa": poa.id,
                "lifetime": max(0, int(tunnel.expires - wall))}

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

    def _drop_tunnel(self, tunnel: tn.Tunnel, why: str) -> None:
        """The tunnel ends (``why``: expired, released, arrived, lease_released,
        sa_expired, ...); the bindings through it follow the MN."""
        with self._because(reason=why.replace("_", "-")):
            del self.tunnels[tunnel.address]
        self.store.delete(TUNNEL_KIND, tunnel.address)
        self.counters[f"tunnel_{why}"] += 1
        LOG.info("identity=%s mac=%s network=%s tunnel for %s %s", tunnel.identity, tunnel.mac,
                 tunnel.network, tunnel.address, why)
        self._fall_back(tunnel.address, f"tunnel-{why}".replace("_", "-"))

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
                del self.bindings[home]
            self.store.delete(BINDING_KIND, home)
            self.counters["binding_ended_no_route"] += 1
            self._drop_standby(home, "ended_unbound")
            LOG.warning("identity=%s mac=%s network=%s binding of %s ended: %s (%s) has no "
                        "way to the MN, and the MN is nowhere the controller knows",
                        binding.identity, binding.mac, binding.network, home, care_of, cause)

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

    def binding_update(self, sa, home_address: str | None, msg, source: str | None, lease,
                       wall: float) -> dict:
        """``home_address``: the identity's, from the topology; ``source``: the
        in-band sender's address (None over REST)."""
        home, care_of = msg["home_address"], msg["care_of"]
        if home_address is None or home != home_address:
            self.counters["binding_refused_home"] += 1
            raise Refused("binding-refused", f"{home} is not this MN's home address")
        if source is not None and source != care_of:
            self.counters["binding_refused_source"] += 1
            raise Refused("binding-refused", "a binding update comes from its care-of address")
        host = self.hosts.get(care_of)
        attached = host is not None and host.mac == sa.mn_mac and host.poa.network == sa.network
        tunnelled = (lease is not None and lease.address == care_of
                     and self.tunnels.get(care_of) is not None
                     and self.tunnels[care_of].identity == sa.identity)
        if not (attached or tunnelled):
            self.counters["binding_refused_care_of"] += 1
            raise Refused("binding-refused", f"the MN does not hold {care_of} in {sa.network} "
                                             "(attached there, or through a tunnel)")
        life = msg.get("lifetime")
        life = self.settings.binding_lifetime_s if life is None else min(
            life, self.settings.binding_lifetime_s)
        if msg.get("standby"):
            return self._standby(sa, home, care_of, attached, life, wall)
        if life == 0:
            old = self.bindings.pop(home, None)
            if old is not None:
                self.store.delete(BINDING_KIND, home)
                self.counters["binding_deleted"] += 1
                self._drop_standby(home, "ended_unbound")   # nothing left to move
                self._sync()
            return {"home_address": home, "care_of": care_of, "lifetime": 0}
        binding = Binding(home, care_of, sa.network, sa.identity, sa.mn_mac,
                          min(wall + life, sa.expires))
        old = self.bindings.get(home)
        self.bindings[home] = binding
        self._save_binding(binding)
        self.counters["binding_updated"] += 1
        standby = self.standbys.get(home)
        if standby is not None and (old is None or old.care_of != care_of):
            # The MN moved its binding itself (its interfaces both up: no
            # loss to prevent): nothing to stand by for any more.
            self._drop_standby(home, "ended_rebound")
        if old is None or old.care_of != care_of:
            LOG.info("identity=%s mac=%s network=%s binding %s -> %s (%s)", sa.identity,
                     sa.mn_mac, sa.network, home, care_of,
                     "through the tunnel" if tunnelled and not attached else "attached")
        self._sync()
        return {"home_address": home, "care_of": care_of,
                "lifetime": max(0, int(binding.expires - wall))}

    def _standby(self, sa, home: str, care_of: str, attached: bool, life: int,
                 wall: float) -> dict:
        """A standby binding update (§7.6.2): ``care_of`` is the MN's
        prepared second interface, attached in ``sa.network``; ``home``
        stays where it is, and its PoA copies what it delivers."""
        answer = {"home_address": home, "care_of": care_of, "standby": True}
        if life == 0:
            self._drop_standby(home, "released")
            self._sync()
            return {**answer, "lifetime": 0}
        if not attached:
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
        standby = Standby(home, care_of, sa.network, sa.identity, sa.mn_mac,
                          min(wall + life, sa.expires, current.expires))
        if self.standbys.get(home) != standby:
            LOG.info("identity=%s mac=%s network=%s standby %s -> %s; copying at poa=%s",
                     sa.identity, sa.mn_mac, sa.network, home, care_of, reach.poa.id)
        self.standbys[home] = standby
        self.store.put(STANDBY_KIND, home, dict(standby.__dict__))
        self.counters["standby_armed"] += 1
        self._sync()
        return {**answer, "lifetime": max(0, int(standby.expires - wall))}

    def handover(self, sa, lease, phase: str, buffer_old: bool, now: float,
                 mode: str = BUFFER, delivered: list | None = None) -> dict:
        current = self.handovers.get(sa.identity)
        if phase == "link-lost":
            return self._link_lost_signal(sa, current, delivered, now)
        if phase == "pre-switch":
            if current is not None and current.phase in ACTIVE:
                if current.network != sa.network:
                    raise Refused("wrong-state", f"a handover to {current.network} is in progress")
                return self._state(current)   # said again: nothing changes
            tunnel = self.tunnels.get(lease.address) if lease else None
            if tunnel is None or tunnel.identity != sa.identity:
                raise Refused("wrong-state", f"no tunnel to {sa.network}: request one first")
            if self._standbys_of.count(sa.identity):
                raise Refused("wrong-state", "a standby interface is armed: bind to it, or "
                                             "release the standby first")
            self._check_dwell(sa.identity, now)
            return self._state(self._pre_switch(sa, tunnel, buffer_old, mode, now))
        if current is None or current.network != sa.network:
            if phase == "cancel":
                return {"phase": "none"}
            raise Refused("wrong-state", f"no handover to {sa.network}")
        if phase == "cancel":
            if current.phase == PRE_SWITCHING:
                self._switch_back(current, "cancelled", now)
            return self._state(current)
        # arrived: the MN says it is there; the data plane decides where.
        self.counters["handover_arrived_signal"] += 1
        host = self.hosts.get(current.address)
        if (current.phase == PRE_SWITCHING and host is not None and host.mac == sa.mn_mac
                and host.poa.network == sa.network):
            self._arrive(current, host.poa, "signal", now)
        return self._state(current)

    def _check_dwell(self, identity: str, now: float) -> None:
        """Against ping-pong: out of a network only after its ``dwell_s`` there."""
        settled = self.settled.get(identity)
        if settled is None:
            return
        network, since = settled
        dwell = self.policy_of(network).dwell_s
        if dwell and now - since < dwell:
            self.counters["handover_refused_too_soon"] += 1
            raise Refused("too-soon", f"the MN arrived in {network} {now - since:.1f} s ago; "
                          f"its dwell time is {dwell:g} s")

    def binding_of(self, identity: str) -> Binding | None:
        return self._first(self.bindings, self._bindings_of.get(identity))

    def _state(self, handover: Handover) -> dict:
        return {"phase": SWITCHED_BACK if handover.back else handover.phase,
                "buffered": handover.buffer.buffered}

    def _link_lost_signal(self, sa, current: Handover | None, delivered: list | None,
                          now: float) -> dict:
        """The MN says, through its standby interface, that its active one
        is gone, and which frames that one received last."""
        self.counters["handover_link_lost_said"] += 1
        if current is None or current.mode != COPY or current.network != sa.network:
            standby = self._first(self.standbys, self._standbys_of.get(sa.identity),
                                  lambda s: s.network == sa.network and s.home in self.bindings)
            if standby is None:
                raise Refused("wrong-state", f"no standby interface in {sa.network}")
            current = self._link_lost(standby, "signal", now)
        if current.delivered is None and not current.copies_placed:
            current.delivered = list(delivered or [])
            if current.phase == FLUSHING:
                current.next_flush = now
        return self._state(current)

    def _link_lost(self, standby: Standby, how: str, now: float,
                   old_poa: PoA | None = None) -> Handover:
        """The active interface's link is gone: the binding moves to the
        standby care-of now, and the target's AR buffers for it until the
        copies the MN may have missed have gone there first."""
        home = standby.home
        old = self.bindings[home]
        reach = self.reach(old)
        old_poa = old_poa or (reach.poa if reach else None)
        self._drop_standby(home, "used")
        binding = Binding(home, standby.care_of, standby.network, standby.identity,
                          standby.mac, standby.expires)
        self.bindings[home] = binding
        self._save_binding(binding)
        self.counters[f"handover_link_lost_{how}"] += 1
        s = self.settings
        host = self.hosts.get(standby.care_of)
        poa = host.poa if host is not None and host.mac == standby.mac else None
        ring = self._rings.get(home)
        handover = Handover(
            next(self._ids), standby.identity, standby.mac, standby.network, standby.care_of,
            home, old_poa, old.care_of, False,
            self._new_buffer(standby.network),
            now, now + s.switch_deadline_s, phase=SWITCHING, arrival=f"link-lost-{how}",
            arrived_at=now, flush_to=poa, mode=COPY,
            copies=ring[1] if ring else CopyRing(1, 1.0, self.counters),
            watcher=self._handover_changed)
        handover.copies.owner = handover
        self.handovers[standby.identity] = handover
        self._buffering[standby.care_of] = handover
        LOG.warning("identity=%s mac=%s handover=%d to network=%s the link of %s is lost (%s); "
                    "%s now -> %s at poa=%s with %d copies to sort", standby.identity,
                    standby.mac, handover.id, standby.network, old.care_of, how, home,
                    standby.care_of, poa.id if poa else None, len(handover.copies))
        self._switch_flows(handover, poa, now)
        return handover

    def _pre_switch(self, sa, tunnel: tn.Tunnel, buffer_old: bool, mode: str,
                    now: float) -> Handover:
        binding = self._first(self.bindings, self._bindings_of.get(sa.identity))
        old_address = None
        if binding is not None and binding.care_of != tunnel.address:
            old_address = binding.care_of
        here = self.where.get(sa.mn_mac)
        if mode == BICAST:
            # The second leg: the address the MN has at its PoA now.
            mine = next((h for h in hosts_of_mac(self.hosts, sa.mn_mac) if h.poa == here), None)
            if binding is None or mine is None:
                raise Refused("wrong-state", "bicasting needs a binding and an address where "
                                             "the MN is attached")
            self.bicasts[binding.home] = Bicast(binding.home, mine.address, sa.mn_mac, here)
            buffer_old = False
        s = self.settings
        handover = Handover(
            next(self._ids), sa.identity, sa.mn_mac, sa.network, tunnel.address,
            binding.home if binding else None, here, old_address,
            buffer_old and old_address is not None,
            self._new_buffer(sa.network),
            now, now + s.switch_deadline_s, mode=mode, watcher=self._handover_changed)
        self.handovers[sa.identity] = handover
        for address in handover.buffered_addresses():
            self._buffering[address] = handover
        self.counters["handover_pre_switch"] += 1
        LOG.info("identity=%s mac=%s handover=%d to network=%s pre-switching, %s %s",
                 sa.identity, sa.mn_mac, handover.id, sa.network,
                 "bicasting; the nAR drops" if mode == BICAST else "buffering",
                 ", ".join(handover.buffered_addresses()))
        # The answer waits for the punts' barriers: the MN leaves when it
        # hears it, and every packet the AR sent into the tunnel before its
        # punt went in is then already at the MN.
        tag = f"pre-switch:{handover.id}"
        self._sync(confirm=tag)
        if tag not in self._deferred:
            # No switch to wait for (the nAR is not connected): nothing goes
            # through it, so nothing can still enter the tunnel.
            handover.answer_ready = True
        return handover

    def answer_gate(self, identity: str) -> str | None:
        """The tag an answer about ``identity``'s handover waits for, if any.

        OVS answers a barrier once its flow table changed, but its datapath
        cache follows a moment later (the revalidators), so a packet or two
        may still enter the tunnel.  The answer waits for proof that the
        punt works (a punted packet), or SETTLE_S when there is no traffic
        to prove it with."""
        handover = self.handovers.get(identity)
        if handover is None or handover.phase != PRE_SWITCHING or handover.answer_ready:
            return None
        return f"pre-switch:{handover.id}"

    def awaiting(self, tag: str) -> bool:
        if tag in self._deferred:
            return True
        kind, _, ident = tag.partition(":")
        if kind != "pre-switch":
            return False
        handover = self._by_id(ident)
        return handover is not None and handover.phase == PRE_SWITCHING and not handover.answer_ready

    def _by_id(self, ident: str) -> Handover | None:
        return self._current.by_id(int(ident)) if ident.isdigit() else None

    def _answer_check(self, handover: Handover, now: float) -> None:
        confirmed = handover.punt_confirmed_at
        if confirmed is not None and not handover.answer_ready and (
                handover.last_punt is not None or now >= confirmed + SETTLE_S):
            handover.answer_ready = True
            LOG.debug("identity=%s mac=%s handover=%d the punt %s", handover.identity,
                      handover.mac, handover.id,
                      "took a packet" if handover.last_punt is not None else "settled")

    # -- the data plane -------------------------------------------------------------

    def takes(self, address: str) -> Handover | None:
        return self._buffering.get(address)

    def copied(self, dpid: int, frame, data: bytes, now: float) -> bool:
        """A copy of what a standby MN's active interface was sent (or, after
        its loss, of what went there before the switch applied): kept, or
        forwarded at once once the copies are sorted.  False: not a copy."""
        ring = self._rings.get(frame.ip_dst)
        if ring is None or self.graph.dpid(ring[0]) != dpid:
            return False
        ring[1].add(data, now)
        handover = ring[1].owner
        if handover is not None and handover.copies_placed:
            # Sorted already: it missed the MN, and anything newer went to
            # the new care-of; it goes now.
            self.counters["copy_late_delivered"] += 1
            self._deliver(handover, frame.ip_src, frame.ip_dst, data)
        return True

    def packet_in(self, handover: Handover, frame, data: bytes, now: float) -> None:
        """A punted packet for an address being buffered: queued, or (once
        the buffer is empty) delivered at once."""
        handover.last_punt = now
        self._answer_check(handover, now)
        if handover.phase in BUFFERING and not handover.relaying:
            handover.buffer.add(frame.ip_src, frame.ip_dst, data, now)
            return
        if handover.phase == FLUSHING:
            self.counters["buffer_relayed"] += 1
            self._current.relay_due(handover)
        else:
            self.counters["buffer_late_delivered"] += 1
        self._deliver(handover, frame.ip_src, frame.ip_dst, data)

    def caught_up(self, now: float) -> None:
        """The controller has handled every packet-in it has been given: a
        relaying handover's punts go now, right behind the packet it relayed
        last."""
        for handover in self._current.take_relay_due():
            if handover.phase == FLUSHING and handover.relaying:
                self._drain(handover, now)

    def expecting(self, poa: PoA) -> Handover | None:
        """The one MN pre-switching to ``poa``'s network, if exactly one is."""
        waiting = self._current.pre_switching("network", poa.network)
        return waiting[0] if len(waiting) == 1 else None

    def host_seen(self, mac: str, address: str, poa: PoA, how: str, now: float) -> None:
        """The controller learned (or relearned) a host: where its MN is."""
        moved = self.where.get(mac) != poa
        self.where[mac] = poa
        self._care_of_changed(address)   # the host table changed there
        handover = self._first(self.handovers, [
            h.identity for h in self._current.pre_switching("mac", mac)])
        if handover is not None:
            if poa.network == handover.network and address == handover.address:
                self._arrive(handover, poa, how, now)
                return
            if poa.network != handover.network and moved:
                # Back at its old PoA, or somewhere else: not where it said.
                self._switch_back(handover, "returned" if poa == handover.old_poa
                                  else "elsewhere", now, poa)
                return
        if moved:
            self._follow(mac, poa)

    def _follow(self, mac: str, poa: PoA) -> None:
        """The MN moved: its tunnels end where it is now, or end (it is in
        their network)."""
        changed = False
        for tunnel in [self.tunnels[a] for a in self._tunnels_of_mac.get(mac)]:
            if poa.network == tunnel.network and not self._busy(tunnel.address):
                self._drop_tunnel(tunnel, "arrived")
                changed = True
            elif tunnel.poa != poa and poa.network != tunnel.network:
                self.tunnels[tunnel.address] = replace(tunnel, poa=poa)
                self._save_tunnel(self.tunnels[tunnel.address])
                changed = True
        bound = self._bound_mac.count(mac) > 0
        if changed or bound:
            self._sync()

    def host_gone(self, mac: str, address: str, poa: PoA, now: float) -> None:
        self._care_of_changed(address)   # the host table changed there
        if self.where.get(mac) == poa and not any(
                h.poa == poa for h in hosts_of_mac(self.hosts, mac)):
            del self.where[mac]
        def bound() -> list[str]:
            return [h for h in self._bound_at.get(address) if self.bindings[h].mac == mac]
        lost = bound()
        for standby in [self.standbys[h] for h in sorted(lost) if h in self.standbys]:
            self._link_lost(standby, "port", now, poa)   # §7.6.2: a sudden loss
        if bound() or any(self.bicasts[h].mac == mac for h in self._legs_at.get(address)):
            self._sync()

    def _arrive(self, handover: Handover, poa: PoA, how: str, now: float) -> None:
        handover.phase, handover.arrival, handover.arrived_at = SWITCHING, how, now
        handover.flush_to = poa
        bicast = self.bicasts.get(handover.home) if handover.mode == BICAST else None
        if bicast is not None:
            self.bicasts[handover.home] = replace(
                bicast, until=now + self.settings.bicast_period_s)
        self.counters[f"handover_arrival_{how}"] += 1
        LOG.info("identity=%s mac=%s handover=%d to network=%s arrived at poa=%s (%s)",
                 handover.identity, handover.mac, handover.id, handover.network, poa.id, how)
        tunnel = self.tunnels.get(handover.address)
        if tunnel is not None:
            self._drop_tunnel(tunnel, "arrived")
        self._switch_flows(handover, poa, now)
        if handover.phase == SWITCHING:
            # The first batch goes now, while the switches take the new
            # flows: a packet-out at the new PoA needs none of them, and the
            # MN takes it at its home address before its nCoA is even on
            # its interface.  Nothing newer can overtake it: the punts stay
            # until the flows are confirmed and the buffer is empty.
            self._deliver_batch(handover, now)

    def _switch_flows(self, handover: Handover, poa: PoA | None, now: float) -> None:
        """The host's routes (just sent by the controller) and this module's
        flows for the MN at ``poa``: every switch on the new way, and the
        nAR, confirms before the flush."""
        path = host_path(self.graph, Host(handover.address, handover.mac, poa)) if poa else []
        nar = self.graph.network(handover.network).access_router
        tag = f"handover:{handover.id}"
        self._sync(confirm=tag, also=tuple(sorted(set(path) | {nar})))
        if tag not in self._deferred:  # no switch to wait for
            self._confirmed(handover, now)

    def _new_buffer(self, network: str) -> PacketBuffer:
        """The buffer of a handover to ``network``, with that network's bounds."""
        p = self.policy_of(network)
        return PacketBuffer(p.buffer_packets, p.buffer_bytes, p.buffer_time_s, self.counters)

    def _busy(self, address: str) -> bool:
        """A handover in progress is about ``address``."""
        handover = self._buffering.get(address)
        return handover is not None and handover.phase in ACTIVE

    def _switch_back(self, handover: Handover, why: str, now: float,
                     poa: PoA | None = None) -> None:
        # The binding stays where the MN bound it, on the tunnel (RFC 6252
        # §6.3 step 3 binds through it before the move): the MN did not
        # move, the tunnel still carries the home address's traffic to it
        # (and follows it, _follow), and a pre-switch again (the MN's, or a
        # policy engine's) needs the binding there to buffer for it.  It
        # falls back when the tunnel ends (_fall_back).
        handover.back, handover.reason = True, why
        handover.flush_to = poa or self.where.get(handover.mac) or handover.old_poa
        self.counters[f"handover_switch_back_{why}"] += 1
        LOG.warning("identity=%s mac=%s handover=%d to network=%s switching back (%s), "
                    "delivering %d buffered packets at poa=%s", handover.identity, handover.mac,
                    handover.id, handover.network, why, len(handover.buffer),
                    handover.flush_to.id if handover.flush_to else None)
        if handover.mode == BICAST and self.bicasts.pop(handover.home, None) is not None:
            self._sync()   # the MN stays where it was: one leg is enough
        if poa is not None:
            self._follow(handover.mac, poa)
        handover.phase, handover.arrived_at = SWITCHING, now
        self._confirmed(handover, now)

    def flows_confirmed(self, dpid: int, tag: str, now: float) -> None:
        held = self._deferred.get(tag)
        LOG.debug("dpid=%016x switch=%s confirmed %s; awaiting %s", dpid,
                  self.graph.switch_of_dpid(dpid), tag,
                  held and (",".join(f"{d:016x}" for d in sorted(held[0])) or "no switch"))
        if held is None:
            return
        held[0].discard(dpid)
        if held[0]:
            return
        awaited, later, deletes = held
        while later:
            batch = [s for s in map(self._still_wanted, later.pop(0))
                     if s is not None and self.connected(s.dpid)]
            if batch:
                awaited.update(s.dpid for s in batch)
                self._out += batch
                return
        del self._deferred[tag]
        if deletes:
            # A barrier's answer means the flow table changed; the datapath's
            # cache follows within SETTLE_S, and until then packets may still
            # go the old way, needing the old flows at the far end.
            entry = [now + SETTLE_S, tag, deletes]
            self._breaks.append(entry)
            self._breaks_of.setdefault(tag, []).append(entry)
        kind, _, ident = tag.partition(":")
        handover = self._by_id(ident)
        if handover is None:
            return
        if kind == "pre-switch":
            handover.punt_confirmed_at = now
            self._answer_check(handover, now)
        elif kind == "handover" and handover.phase == SWITCHING:
            self._confirmed(handover, now)
        elif kind == "drain" and handover.phase == DRAINING:
            self._complete(handover, now)

    def switch_gone(self, dpid: int, now: float) -> None:
        """A switch disconnected: its barriers will never be answered."""
        for tag in list(self._deferred):
            self.flows_confirmed(dpid, tag, now)
        for handover in [h for h in self._current.live() if h.phase == PRE_SWITCHING]:
            # Nothing goes through a gone AR: nothing to wait for.
            nar = self.graph.network(handover.network).access_router
            if self.graph.dpid(nar) == dpid:
                handover.answer_ready = True

    def _release_breaks(self, now: float | None = None, early: Handover | None = None) -> None:
        """Send the settled deletes; with ``early``, also those of its
        arrival that sit over its drained addresses at the nAR, settled or
        not.  A delete of a flow wanted again meanwhile (a flip back within
        SETTLE_S) is dropped: it would remove the new one."""
        breaks = self._breaks   # oldest first: the settled ones lead
        while now is not None and breaks and breaks[0][0] <= now:
            _, owner, deletes = entry = breaks.popleft()
            self._forget_break(entry)
            for send in deletes:
                self._send_deletes(send.dpid, send.messages)
        if early is None:
            return
        nar = self.graph.dpid(self.graph.network(early.network).access_router)
        drained = set(early.buffered_addresses())
        for entry in list(self._breaks_of.get(f"handover:{early.id}", ())):
            kept = []
            for send in entry[2]:
                go = [m for m in send.messages
                      if send.dpid == nar and m.match.get("ipv4_dst") in drained]
                stay = [m for m in send.messages if m not in go]
                self._send_deletes(send.dpid, go)
                if stay:
                    kept.append(Send(send.dpid, stay, barrier=True))
            entry[2] = kept
            if not kept:
                breaks.remove(entry)
                self._forget_break(entry)

    def _forget_break(self, entry: list) -> None:
        entries = self._breaks_of[entry[1]]
        entries.remove(entry)
        if not entries:
            del self._breaks_of[entry[1]]

    def _still_wanted(self, send: Send) -> Send | None:
        """A held stage's flows less those changed or unwanted since it was
        held (a cancel, a second binding update): the change that did that
        sent what is wanted now, and the old flow must not land after it.
        A stage kept only for its barriers stays as it is."""
        if not send.messages:
            return send
        wanted = self._installed.get(self.graph.switch_of_dpid(send.dpid), {})
        keep = [m for m in send.messages
                if (entry := wanted.get(of.key_of(m))) is not None
                and entry[0] == of.record_of(m)]
        if len(keep) == len(send.messages):
            return send
        self.counters["mobility_stage_superseded"] += len(send.messages) - len(keep)
        return Send(send.dpid, keep, barrier=True, confirm=send.confirm) if keep else None

    def _send_deletes(self, dpid: int, deletes: list) -> None:
        """Strict deletes, less those of flows wanted again meanwhile."""
        wanted = self._installed.get(self.graph.switch_of_dpid(dpid), {})
        go = [m for m in deletes if of.key_of(m) not in wanted]
        if go and self.connected(dpid):
            self._out.append(Send(dpid, go, barrier=True))

    def _confirmed(self, handover: Handover, now: float) -> None:
        handover.confirmed_at = now
        handover.phase = FLUSHING
        # The pace holds across an early batch (see _arrive); an empty
        # buffer has nothing to pace.
        handover.next_flush = max(now, handover.next_flush)
        self.counters["handover_flows_confirmed"] += 1
        if now >= handover.next_flush or not handover.buffer:
            self._flush(handover, now)

    def _place_copies(self, handover: Handover, now: float) -> bool:
        """Copy-and-forward: put the copies the MN may have missed in front
        of the buffer (they are older), once the MN has said what it got, or
        ``copy_wait_s`` after the loss without its word.  False: not yet."""
        s = self.settings
        if handover.delivered is None and now < handover.arrived_at + s.copy_wait_s:
            handover.next_flush = handover.arrived_at + s.copy_wait_s
            return False
        copies, how = handover.copies.undelivered(handover.delivered,
                                                  handover.arrived_at - s.copy_guard_s)
        handover.copies_placed, handover.copies_how = True, how
        handover.buffer.prepend([(None, handover.home, c.data, c.at) for c in copies])
        self.counters[f"copy_sorted_by_{how.replace('-', '_')}"] += 1
        self.counters["copy_forwarded"] += len(copies)
        self.counters["copy_skipped"] += len(handover.copies) - len(copies)
        LOG.info("identity=%s mac=%s handover=%d forwards %d of %d copies (%s)",
                 handover.identity, handover.mac, handover.id, len(copies),
                 len(handover.copies), how)
        return True

    def _flush(self, handover: Handover, now: float) -> None:
        s = self.settings
        if handover.mode == COPY and not handover.copies_placed and not self._place_copies(
                handover, now):
            return
        self._deliver_batch(handover, now)
        if not handover.buffer:
            # Empty: with traffic still coming, relay it until the controller
            # has caught up right behind a relayed packet (caught_up), or
            # nothing came for QUIET_S.
            if handover.last_punt is None or now - handover.last_punt >= QUIET_S:
                self._drain(handover, now)
            else:
                handover.relaying = True
                handover.quiet_until = handover.last_punt + QUIET_S

    def _deliver_batch(self, handover: Handover, now: float) -> None:
        """The oldest ``flush_batch`` buffered packets to the MN, and when the
        next batch may go."""
        s = self.settings
        for item in handover.buffer.take(s.flush_batch, now):
            self._deliver(handover, item.src, item.address, item.data)
        handover.next_flush = now + s.flush_batch / s.flush_rate_pps

    def _drain(self, handover: Handover, now: float) -> None:
        """Stop punting.  What was punted before the switch applied that is
        delivered as it comes (see packet_in)."""
        handover.phase = DRAINING
        # The arrival's deletes over the drained address at the nAR (the
        # tunnel's, which outrank the new route there) go now if still
        # settling: once the punt is gone, the route must take the packets.
        # The rest settle their full time (after a sudden loss, the old
        # care-of's copying flow catches what an edge's cache still sends
        # the old way).
        self._release_breaks(early=handover)
        tag = f"drain:{handover.id}"
        self._sync(confirm=tag)
        if tag not in self._deferred:
            self._complete(handover, now)

    def _deliver(self, handover: Handover, src: str | None, dst: str, data: bytes) -> None:
        poa = handover.flush_to
        if poa is None or not self.connected(self.graph.dpid(poa.switch)):
            self.counters["buffer_dropped_no_destination"] += 1
            return
        binding = self.bindings.get(handover.home) if handover.home else None
        rewrite = self.protocol.deliver_actions(binding, src, dst, frozenset(
            handover.buffered_addresses())) if binding and src else []
        host = Host(dst, handover.mac, poa)
        actions = rewrite + last_hop_actions(host, self.graph.network(poa.network))
        self._out.append(Send(self.graph.dpid(poa.switch), [of.packet_out(data, actions)]))

    def _complete(self, handover: Handover, now: float) -> None:
        handover.phase = COMPLETED
        handover.ended_at = now
        self.counters["handover_switched_back" if handover.back else "handover_completed"] += 1
        LOG.info("identity=%s mac=%s handover=%d to network=%s %s: %s", handover.identity,
                 handover.mac, handover.id, handover.network,
                 "switched back" if handover.back else "completed", handover.view())
        view = handover.view()
        self.history.append(view)
        if not handover.back:
            self.settled[handover.identity] = (handover.network, now)
        self._told("handover", view)
        if self.on_ended is not None:
            self.on_ended(view, now)

    # -- time -------------------------------------------------------------------------

    def step(self, now: float) -> None:
        """Flush what is due, switch back what missed its deadline, forget
        handovers that lingered, send the deletes whose new flows settled."""
        ended = [b for b in self.bicasts.values() if b.until is not None and now >= b.until]
        for bicast in ended:   # here, where next_due says it is due, not at the next tick
            del self.bicasts[bicast.home]
            self.counters["bicast_ended"] += 1
        if ended:
            self._sync()
        self._release_breaks(now)
        for handover in self._current.live():
            if handover.phase in BUFFERING:
                handover.buffer.expire(now)   # pre-switching may outlast buffer_time_s
            if handover.phase == FLUSHING and handover.relaying:
                if now >= handover.quiet_until:
                    self._drain(handover, now)
            elif handover.phase == FLUSHING and now >= handover.next_flush:
                self._flush(handover, now)
            elif handover.phase == PRE_SWITCHING and now >= handover.deadline:
                self._switch_back(handover, "deadline", now)
            elif handover.phase == PRE_SWITCHING:
                self._answer_check(handover, now)
        lingering = self._current.lingering
        while lingering and (lingering[0].ended_at is None
                             or now - lingering[0].ended_at > LINGER_S):
            handover = lingering.popleft()
            if handover.phase != COMPLETED:
                continue
            # Its addresses go back to the data plane's ordinary handling,
            # also when a newer handover of the MN has replaced it meanwhile.
            for address in handover.buffered_addresses():
                if self._buffering.get(address) is handover:
                    del self._buffering[address]
            if self.handovers.get(handover.identity) is not handover:
                continue   # no longer the identity's current handover
            del self.handovers[handover.identity]
            if handover.copies is not None:
                self._copy_points()   # its ring goes: its copying flow is long gone

    def tick(self, now: float, wall: float) -> None:
        changed = False
        for tunnel in [t for t in self.tunnels.values() if t.expires <= wall]:
            if not self._busy(tunnel.address):
                self._drop_tunnel(tunnel, "expired")
                changed = True
        for binding in [b for b in self.bindings.values() if b.expires <= wall]:
            del self.bindings[binding.home]
            self.store.delete(BINDING_KIND, binding.home)
            self.counters["binding_expired"] += 1
            changed = True
        for standby in [s for s in self.standbys.values()
                        if s.expires <= wall or s.home not in self.bindings]:
            self._drop_standby(standby.home, "expired")
            changed = True
        if changed:
            self._sync()

    def next_due(self) -> float | None:
        """When step next has work: a flushing handover's next batch or
        quiet end, a pre-switching one's deadline or settled punt, a
        settled delete, a bicast's end."""
        due = [self._current.next_due(), self._breaks[0][0] if self._breaks else None]
        due += [b.until for b in self.bicasts.values()]
        due = [when for when in due if when is not None]
        return min(due) if due else None

    # -- views ------------------------------------------------------------------------

    def views(self, wall: float, homes: dict[str, str]) -> list[dict]:
        """Per MN (``homes``: identity -> home address) and per identity with state."""
        identities = set(homes) | {t.identity for t in self.tunnels.values()} | {
            b.identity for b in self.bindings.values()} | set(self.handovers)
        recent = collections.defaultdict(list)
        for h in self.history:
            recent[h["identity"]].append(h)
        return [self.view_of(identity, wall, homes.get(identity), recent[identity])
                for identity in sorted(identities)]

    def view_of(self, identity: str, wall: float, home: str | None,
                recent: list[dict] | None = None) -> dict:
        """One MN's binding, tunnels, handover in progress, standby and last
        handovers (``recent``: its finished ones, if the caller has them)."""
        if recent is None:
            recent = [h for h in self.history if h["identity"] == identity]
        binding = self.binding_of(identity)
        standby = self._first(self.standbys, self._standbys_of.get(identity))
        handover = self.handovers.get(identity)
        reach = self.reach(binding) if binding else None
        return {
            "identity": identity, "home_address": home,
            "binding": None if binding is None else {
                "care_of": binding.care_of, "network": binding.network,
                "reach": None if reach is None else
                {"poa": reach.poa.id, "tunnel": reach.tunnel is not None},
                "expires_in": max(0, round(binding.expires - wall))},
            "tunnels": [{"address": t.address, "network": t.network, "poa": t.poa.id,
                         "labels": [t.down_label, t.up_label],
                         "expires_in": max(0, round(t.expires - wall))}
                        for t in (self.tunnels[a]
                                  for a in sorted(self._tunnels_of.get(identity)))],
            "handover": None if handover is None or handover.ended_at is not None
            else handover.view(),
            "standby": None if standby is None else {
                "care_of": standby.care_of, "network": standby.network,
                "copies": len(self._rings[standby.home][1])
                if standby.home in self._rings else 0,
                "expires_in": max(0, round(standby.expires - wall))},
            "last_handovers": recent[-5:],
        }


def buffer_flow(address: str, punt: bool = True):
    """The nAR's flow over ``address`` while a handover buffers it: a punt;
    or (a bicast's target leg before the MN arrives) a drop, rather than
    the tunnel, whose end already gets the old leg."""
    return of.flow_add(Table.ROUTE, PRIO_BUFFER,
                       of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=address),
                       of.apply(of.to_controller()) if punt else [],
                       address_cookie(Feature.BUFFER, address))


def _drops(mod) -> bool:
    """A buffering flow that drops (``buffer_flow(punt=False)``)."""
    return feature_of(mod.cookie) == Feature.BUFFER and not mod.instructions


def delete_of(mod):
    """The strict delete of exactly this flow, scoped by its cookie."""
    return of.flow_delete_strict(mod.table_id, mod.priority, mod.match, mod.cookie,
                                 (1 << 64) - 1)

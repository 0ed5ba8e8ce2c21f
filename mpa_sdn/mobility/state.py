"""Mobility's state: the tables of tunnels, bindings, standbys, bicasts and
handovers (RFC 6252 §6.3 steps 3-6), their indexes, the events their
changes make, and their records in the state file.

Every table is :class:`~mpa_sdn.indexing.Watched`: each change of an entry
keeps the indexes by the fields named below, marks the flow subjects it
touches for the make-before-break engine (:mod:`mpa_sdn.mobility.flowsync`),
and tells the event log when what an operator sees changed (a tunnel up or
down, a binding's care-of, a handover's phase), with the reason the change
was made for (:meth:`MobilityState._because`).

Persistence: tunnels, bindings and standbys are written through on every
change, one record per entry under the kinds ``tunnel`` (keyed by the nCoA),
``binding`` and ``standby`` (keyed by the home address), each the entry's
fields as JSON (a tunnel's PoA by its id).  A record that no longer makes
sense (an unknown PoA or network, a bad address) is counted
(``<kind>_record_invalid``) and dropped at load, not fatal.  Handovers are
not kept: a restarted controller has no buffer to flush.
"""

from __future__ import annotations

import collections
import contextlib
import heapq
import ipaddress
import logging
from typing import Callable

from mpa_sdn.indexing import Index, Watched
from mpa_sdn.mobility import tunnels as tn
from mpa_sdn.mobility.bindings import Binding, Reach, Standby
from mpa_sdn.mobility.copy_forward import Bicast, CopyRing
from mpa_sdn.mobility.records import (ACTIVE, BINDING_KIND, BUFFERING, COMPLETED, STANDBY_KIND,
                                      TUNNEL_KIND, CurrentHandovers, Handover)
from mpa_sdn.netpolicy import NetworkPolicy, Policies
from mpa_sdn.tables import Feature
from mpa_sdn.topology import PoA

LOG = logging.getLogger("mpa_sdn.mobility")
HISTORY = 256           # finished handovers kept for the views and benchmarks


class MobilityState:
    """The tables and their indexes (a part of :class:`~mpa_sdn.mobility.Mobility`)."""

    def __init__(self, graph, settings, counters: collections.Counter, hosts: dict, store,
                 policy_of: Callable[[str], NetworkPolicy] | None = None):
        self.graph = graph
        self.settings = settings
        self.counters = counters
        self.hosts = hosts                 # the controller's host table (read only)
        self.store = store
        # Each change of these marks the flows' subjects it touches (_flowsync.mark)
        # and keeps the indexes below.
        self.tunnels: dict[str, tn.Tunnel] = Watched(self._tunnel_changed)
        self.bindings: dict[str, Binding] = Watched(self._binding_changed)
        self.handovers: dict[str, Handover] = Watched(self._handover_set)  # identity ->
        # home -> its standby care-of (§7.6.2)
        self.standbys: dict[str, Standby] = Watched(self._standby_changed)
        self._rings: dict[str, tuple[str, CopyRing]] = {}  # home -> (copying switch, copies)
        self.bicasts: dict[str, Bicast] = Watched(self._bicast_changed)  # home -> second leg
        # home -> the binding it will have once the MN rewrites for its care-of
        # (bindings.py, _rewrites_at_mn): only the way back is in place meanwhile.
        self.pending: dict[str, Binding] = Watched(self._pending_changed)
        # Each network's policy (mpa_sdn/netpolicy.py); the controller shares its own.
        self.policy_of: Callable[[str], NetworkPolicy] = policy_of or Policies(
            graph.topology.networks, settings).of
        self.settled: dict[str, tuple[str, float]] = {}  # identity -> (network, arrived at)
        # The event log changes are told to (tunnel, binding, handover); set
        # once the stored state is loaded: what a restart restores is no news.
        self.events = None
        self._why: dict = {}   # why the tunnel or binding changing now changes (its event's)
        self.history: collections.deque = collections.deque(maxlen=HISTORY)
        self.where: dict[str, PoA] = {}               # MAC -> the PoA it was last learned at
        # address -> the handover buffering it
        self._buffering: dict[str, Handover] = Watched(self._buffering_changed)
        self._tunnels_of_mac, self._tunnels_of = Index(), Index()   # -> addresses
        self._bound_at, self._bindings_of = Index(), Index()        # care-of, identity -> homes
        self._bound_mac = Index()                                   # MAC -> homes
        self.tunnelled: list[str] = []   # tunnels' addresses, made since the router last looked
        self._standbys_of, self._legs_at = Index(), Index()         # identity, leg -> homes
        self._label_pool = tn.Labels()
        self._current = CurrentHandovers()
        # Per table, a heap of (expires, key) for every entry set, stale ones
        # too: the tick takes the entries whose time is over from here
        # instead of walking every MN's tunnels, bindings and standbys.
        self._ends: dict[str, list] = {"tunnels": [], "bindings": [], "pending": [],
                                       "standbys": []}

    # -- persistence --------------------------------------------------------------

    def _load(self) -> None:
        def tunnel(body):
            poa = body["poa"]
            t = tn.Tunnel(**{**body, "poa": None if poa is None else self.graph.poa(poa)})
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
        self._flowsync.refresh()  # what a reconnecting switch is reconciled to

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
        body = {**t.__dict__, "poa": tn.poa_id(t)}
        if t.outer is None:
            # An MPLS tunnel is written as before there were two kinds.
            del body["outer"]
        self.store.put(TUNNEL_KIND, t.address, body)

    def _save_binding(self, b: Binding) -> None:
        self.store.put(BINDING_KIND, b.home, dict(b.__dict__))

    def _delete_binding(self, home: str, counter: str) -> None:
        """The binding of ``home`` ends, in memory and in the store (``counter``: why)."""
        del self.bindings[home]
        self.store.delete(BINDING_KIND, home)
        self.counters[counter] += 1

    def _save_standby(self, s: Standby) -> None:
        self.store.put(STANDBY_KIND, s.home, dict(s.__dict__))

    # -- lookups ------------------------------------------------------------------

    def reach(self, binding: Binding) -> Reach | None:
        host = self.hosts.get(binding.care_of)
        if host is not None and host.mac == binding.mac:
            return Reach(host.poa)
        tunnel = self.tunnels.get(binding.care_of)
        if tunnel is not None and tunnel.poa is not None:
            # An MN-terminated tunnel reaches no PoA of ours: a binding to its
            # nCoA is the MN's home domain's (docs/inter-domain.md).
            return Reach(tunnel.poa, tunnel)
        return None

    def binding_of(self, identity: str) -> Binding | None:
        return self._first(self.bindings, self._bindings_of.get(identity))

    def _busy(self, address: str) -> bool:
        """A handover in progress is about ``address``."""
        handover = self._buffering.get(address)
        return handover is not None and handover.phase in ACTIVE

    def _by_id(self, ident: str) -> Handover | None:
        return self._current.by_id(int(ident)) if ident.isdigit() else None

    @staticmethod
    def _first(table: dict, keys, wanted: Callable = lambda value: True):
        """The first value of ``table`` among ``keys`` (an index's) that is
        ``wanted``, in the table's own order."""
        keys = list(keys)
        if len(keys) > 1:   # rare: one MN with two of a kind
            keys = [k for k in table if k in set(keys)]
        return next((table[k] for k in keys if wanted(table[k])), None)

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

    def _ends_at(self, table: str, key: str, when: float) -> None:
        """The entry ``key`` of ``table`` is looked at again at ``when``."""
        heap = self._ends[table]
        heapq.heappush(heap, (when, key))
        entries = getattr(self, table)
        if len(heap) > 2 * len(entries) + 64:
            # Mostly stale (entries changed again before their end): rebuilt
            # from the table, so the heap stays within twice its entries.
            heap[:] = [(e.expires, k) for k, e in entries.items()]
            if table == "standbys":
                heap += [(float("-inf"), k) for k in entries if k not in self.bindings]
            heapq.heapify(heap)

    def ended(self, table: str, wall: float) -> list:
        """The entries of ``table`` (tunnels, bindings, pending, standbys) whose
        time is over at ``wall``, each once; a standby also once its binding
        is gone.  From the heap, not a walk: an entry looked at is taken off
        it, so the caller puts back (``_ends_at``) one it keeps."""
        heap, entries, out = self._ends[table], getattr(self, table), {}
        while heap and heap[0][0] <= wall:
            _, key = heapq.heappop(heap)
            entry = entries.get(key)
            if entry is not None and (entry.expires <= wall or (
                    table == "standbys" and key not in self.bindings)):
                out[key] = entry
        return list(out.values())

    def _tunnel_changed(self, address: str, old, new) -> None:
        if new is not None and (old is None or old.expires != new.expires):
            self._ends_at("tunnels", address, new.expires)
        self._reindex(address, old, new, mac=self._tunnels_of_mac, identity=self._tunnels_of)
        if old is not None:
            self._label_pool.release(old)
        if new is not None:
            self._label_pool.take(new)
        self._flowsync.mark(Feature.TUNNEL, address)
        self._care_of_changed(address)   # a binding through it reaches the MN another way
        if old is None or new is None or old.poa != new.poa:   # not each refresh
            t = new or old
            self._told("tunnel", {"identity": t.identity, "network": t.network,
                                  "address": address, "poa": tn.poa_id(t), "up": new is not None,
                                  "encapsulation": t.encapsulation, **self._why})

    def _pending_changed(self, home: str, old, new) -> None:
        if new is not None and (old is None or old.expires != new.expires):
            self._ends_at("pending", home, new.expires)
        self._flowsync.mark(Feature.BINDING, home)

    def _binding_changed(self, home: str, old, new) -> None:
        if new is not None and (old is None or old.expires != new.expires):
            self._ends_at("bindings", home, new.expires)
        elif home in self.standbys:
            self._ends_at("standbys", home, float("-inf"))   # a standby needs its binding
        self._reindex(home, old, new, care_of=self._bound_at, identity=self._bindings_of,
                      mac=self._bound_mac)
        self._flowsync.mark(Feature.BINDING, home)
        if old is None or new is None or old.care_of != new.care_of:
            b = new or old
            self._told("binding", {"identity": b.identity, "network": b.network,
                                   "home_address": home,
                                   "care_of": new.care_of if new is not None else None,
                                   **self._why})

    def _standby_changed(self, home: str, old, new) -> None:
        if new is not None and (old is None or old.expires != new.expires):
            self._ends_at("standbys", home, new.expires)
        self._reindex(home, old, new, identity=self._standbys_of)
        self._flowsync.mark(Feature.BINDING, home)

    def _bicast_changed(self, home: str, old, new) -> None:
        self._reindex(home, old, new, address=self._legs_at)
        self._flowsync.mark(Feature.BINDING, home)

    def _handover_set(self, identity: str, old: Handover | None, new: Handover | None) -> None:
        self._current.replaced(old, new)
        if new is not None and new is not old:
            self._told("handover", new.view())

    def _handover_changed(self, handover: Handover, name: str, old) -> None:
        if name == "phase" and (old in BUFFERING) != (handover.phase in BUFFERING):
            for address in handover.buffered_addresses():   # its punts come or go
                self._flowsync.mark(Feature.BUFFER, address)
        self._current.changed(handover, name)
        if name == "phase" and handover.phase != COMPLETED:  # completion: _complete tells
            self._told("handover", handover.view())

    def _buffering_changed(self, address: str, old, new) -> None:
        self._flowsync.mark(Feature.BUFFER, address)

    def _care_of_changed(self, address: str) -> None:
        """What reaches ``address`` changed (a host, a tunnel): the bindings
        to it, and the bicasts with a leg there."""
        for home in self._bound_at.get(address) + self._legs_at.get(address):
            self._flowsync.mark(Feature.BINDING, home)

    def _told(self, kind: str, fields: dict) -> None:
        if self.events is not None:
            self.events.emit(kind, identity=fields.get("identity"),
                             network=fields.get("network"), data=fields)

    @contextlib.contextmanager
    def _because(self, **why):
        """The events of the changes made inside say ``why``."""
        before, self._why = self._why, why
        try:
            yield
        finally:
            self._why = before

"""The Configuration Agent (CA): address pools, leases and proactive DAD.

Each access network's pool hands out addresses (an MN's nCoA, or a DHCP
client's address) as leases bound to a client: an MN's identity and MAC for
MPA pre-configuration, the DHCP client identifier (or MAC) otherwise.  A
client that comes back gets its lease, or its last address if still free;
an MN that pre-configured with MPA and later speaks DHCP on the target
network (same MAC, RFC 6252 §7.3.3) finds the same lease.

Duplicate address detection is proactive (RFC 6252 Appendix A): the CA keeps
a small reserve of addresses per network that it has probed with ARP probes
(RFC 5227: sender address 0.0.0.0, sent by packet-out at every PoA of the
network) and that nobody answered for, and offers only those.  So a request
takes an address already checked and never waits for the probes, unless the
reserve ran dry.  An address somebody uses (an ARP answer or any packet from
it) is skipped for a while and probed again later.
"""

from __future__ import annotations

import heapq
import ipaddress
import logging

from mpa_sdn.netpolicy import Policies
from mpa_sdn.pool import Lease, Pool, Probe, mpa_client  # noqa: F401  (Lease, mpa_client: the CA's)

LOG = logging.getLogger("mpa_sdn.ca")
KIND = "lease"
LAST_KIND = "last-address"
OFFERED = "offered"
BOUND = "bound"
CONFLICT_HOLD_S = 300.0   # an address found in use is not probed again before this
MAX_LAST_ADDRESSES = 100_000
EXTRA_PROBES = 16         # addresses probed for clients beyond the reserve, per network


class ConfigurationAgent:
    def __init__(self, topology, store, settings, counters, used_by, network_of,
                 policy_of=None, on_change=None):
        self.topology = topology
        self.store = store
        self.settings = settings
        self.counters = counters
        self.used_by = used_by  # address -> the MAC of the learned host using it, or None
        # Each network's policy (the controller's, shared) and who hears of each
        # lease's change: (lease, what) -> None, leased, bound, released, expired, ...
        self.policy_of = policy_of or Policies(topology.networks, settings).of
        self.on_change = on_change
        self.network_of = network_of  # address -> the Network whose prefix holds it, or None
        self.pools = {n.id: Pool(n) for n in topology.networks.values()
                      if n.pool is not None}
        self.last_address: dict[tuple[str, str], str] = {}  # (network, client) -> address
        self._next_probe: float | None = None
        self._probes_changed = True   # _next_probe is to be worked out again
        # DAD works only on the pools that need it (a tick used to walk every
        # pool, ten times a second): those something changed in (``_touched``),
        # those whose own next change is due (``_due``, a heap of (time,
        # network) whose entries ``_due_at`` confirms), and those whose PoAs
        # were not ready for probes when last looked at (``_unready``).
        self._order = {network: i for i, network in enumerate(self.pools)}
        self._touched: set[str] = set(self.pools)
        self._due: list[tuple[float, str]] = []
        self._due_at: dict[str, float] = {}
        self._unready: set[str] = set()
        self._load()

    # -- persistence ------------------------------------------------------------

    def _load(self) -> None:
        for key, record in self.store.load(KIND).items():
            try:
                lease = Lease(**record)
                pool = self.pools[lease.network]
                address = ipaddress.IPv4Address(lease.address)
                if not pool.first <= int(address) <= pool.last or key != self._key(lease):
                    raise ValueError("address outside the pool or key mismatch")
                if lease.state not in (OFFERED, BOUND) or lease.address in pool.leases:
                    raise ValueError("bad state or a second lease of the address")
            except (TypeError, ValueError, KeyError) as exc:
                self.counters["lease_record_invalid"] += 1
                LOG.error("state file: lease record %r is unusable (%s); dropping it", key, exc)
                self.store.delete(KIND, key)
                continue
            pool.add(lease)
        for key, record in self.store.load(LAST_KIND).items():
            network, client, address = record.get("network"), record.get("client"), \
                record.get("address")
            if network in self.pools and isinstance(client, str) and isinstance(address, str):
                self.last_address[(network, client)] = address
            else:
                self.store.delete(LAST_KIND, key)
        count = sum(len(p.leases) for p in self.pools.values())
        if count:
            LOG.info("restored %d leases", count)

    @staticmethod
    def _key(lease: Lease) -> str:
        return f"{lease.network}|{lease.address}"

    def _save(self, lease: Lease) -> None:
        self.store.put(KIND, self._key(lease), lease.to_record())

    def _remember_last(self, lease: Lease) -> None:
        """A client's last bound address, so it gets it back; the least
        recently bound client is forgotten when the table is full."""
        key = (lease.network, lease.client)
        self.last_address.pop(key, None)  # re-inserted: the newest
        while len(self.last_address) >= MAX_LAST_ADDRESSES:
            network, client = next(iter(self.last_address))
            del self.last_address[(network, client)]
            self.store.delete(LAST_KIND, f"{network}|{client}")
            self.counters["last_address_forgotten"] += 1
        self.last_address[key] = lease.address
        self.store.put(LAST_KIND, f"{lease.network}|{lease.client}",
                       {"network": lease.network, "client": lease.client,
                        "address": lease.address})

    # -- queries ----------------------------------------------------------------

    def lease_for(self, network: str, client: str, mac: str | None = None) -> Lease | None:
        pool = self.pools.get(network)
        if pool is None:
            return None
        address = pool.by_client.get(client)
        if address is not None:
            return pool.leases[address]
        return pool.lease_of_mac(mac) if mac else None

    def _pool_of(self, address: str) -> Pool | None:
        network = self.network_of(address)
        pool = self.pools.get(network.id) if network is not None else None
        return pool if pool is not None and self._in_pool(pool, address) else None

    def lease_at(self, address: str) -> Lease | None:
        pool = self._pool_of(address)
        return pool.leases.get(address) if pool is not None else None

    def views(self, now: float, network: str | None = None) -> list[dict]:
        return [lease.view(now) for nid in sorted(self.pools)
                if network in (None, nid)
                for lease in sorted(self.pools[nid].leases.values(), key=lambda l: l.address)]

    def leases_of(self, identity: str) -> list[Lease]:
        """An MN's leases, in the order of :meth:`views`."""
        return [lease for nid in sorted(self.pools)
                for lease in sorted(self.pools[nid].leases_of_identity(identity),
                                    key=lambda l: l.address)]

    def pool_view(self, network: str, now: float) -> dict:
        pool = self.pools[network]
        return {"size": pool.last - pool.first + 1, "leased": len(pool.leases),
                "verified_free": sorted(pool.verified), "probing": sorted(pool.probing),
                "in_use_elsewhere": sorted(a for a, until in pool.conflicts.items() if until > now)}

    # -- allocation -------------------------------------------------------------

    def _usable(self, pool: Pool, address: str, now: float, mac: str | None = None) -> bool:
        """Free to lease: nobody's lease, not found in use, and no host we know
        uses it, unless that host is the client itself (``mac``)."""
        if address in pool.leases:
            return False
        user = self.used_by(address)
        if mac is not None and user == mac:
            return True  # the client itself: its own use is no conflict
        return user is None and pool.conflicts.get(address, 0) <= now

    def _own_or_fresh(self, pool: Pool, address: str, now: float, mac: str) -> bool:
        """Leasable at once: probed lately, or in use by the client itself
        (which the probes would only find)."""
        return self._fresh(pool, address, now) or self.used_by(address) == mac

    def allocate(self, network: str, client: str, mac: str, now: float, *, state: str = BOUND,
                 identity: str | None = None, hostname: str | None = None,
                 requested: str | None = None, by_mac: bool = False) -> Lease | str | None:
        """A lease for the client: its own, renewed; else a probed free address.

        ``by_mac``: a lease of the same MAC counts as the client's own (the
        caller has decided the sender may have it).  ``requested`` (DHCP
        option 50) is honoured only if already probed: a client must not
        make the CA probe addresses of its choosing.  Returns the lease; or
        the address being probed for it (the caller waits for :meth:`tick`
        to report it); or None when the pool is full.
        """
        pool = self.pools[network]
        lease = self.lease_for(network, client, mac if by_mac else None)
        if lease is not None:
            return self._bind(pool, lease, state, now, hostname)
        if requested and self._in_pool(pool, requested) and \
                self._usable(pool, requested, now, mac) and \
                self._own_or_fresh(pool, requested, now, mac):
            return self._new_lease(pool, requested, client, mac, state, now, identity, hostname)
        last = self.last_address.get((network, client))
        if last and self._in_pool(pool, last) and self._usable(pool, last, now, mac):
            if self._own_or_fresh(pool, last, now, mac):
                return self._new_lease(pool, last, client, mac, state, now, identity, hostname)
            if last in pool.probing or self._may_probe(pool):
                self._start_probe(pool, last, now)
                return last
        for address in sorted(pool.verified, key=lambda a: int(ipaddress.IPv4Address(a))):
            if self._usable(pool, address, now) and self._fresh(pool, address, now):
                return self._new_lease(pool, address, client, mac, state, now, identity, hostname)
        if pool.probing:
            # Probes are under way (the reserve refilling): wait for those.
            return min(pool.probing, key=lambda a: int(ipaddress.IPv4Address(a)))
        address = next(self._candidates(pool, now), None)
        if address is None:
            self.counters["pool_exhausted"] += 1
            return None
        self._start_probe(pool, address, now)
        return address

    def _may_probe(self, pool: Pool) -> bool:
        return len(pool.probing) < self.settings.dad_reserve + EXTRA_PROBES

    def _in_pool(self, pool: Pool, address: str) -> bool:
        try:
            return pool.first <= int(ipaddress.IPv4Address(address)) <= pool.last
        except ValueError:
            return False

    def _fresh(self, pool: Pool, address: str, now: float) -> bool:
        at = pool.verified.get(address)
        return at is not None and now - at <= self.settings.dad_valid_s

    def _bind(self, pool: Pool, lease: Lease, state: str, now: float,
              hostname: str | None) -> Lease:
        """The client's own lease again: bound leases are renewed, offers never
        shorten them (an MN's MPA lease picked up by its DHCP client is this case)."""
        self._touch(pool)
        if state == BOUND:
            newly = lease.state != BOUND
            if newly:
                self._remember_last(lease)
            lease.state = BOUND
            if newly:
                self._tell(lease, BOUND)
            lease.expires = now + self._lease_time(pool, BOUND)
            pool.expires_at(lease)
        elif lease.state == OFFERED:
            lease.expires = now + self._lease_time(pool, OFFERED)
            pool.expires_at(lease)
        lease.hostname = hostname or lease.hostname
        self._save(lease)
        self.counters["lease_renewed"] += 1
        return lease

    def _lease_time(self, pool: Pool, state: str) -> float:
        if state == OFFERED:
            return self.settings.offer_hold_s
        return self.policy_of(pool.network.id).lease_time_s

    def _new_lease(self, pool, address, client, mac, state, now, identity, hostname) -> Lease:
        lease = Lease(network=pool.network.id, address=address, client=client, mac=mac,
                      state=state, expires=now + self._lease_time(pool, state),
                      identity=identity, hostname=hostname)
        pool.add(lease)
        pool.verified.pop(address, None)
        self._touch(pool)
        self._save(lease)
        if state == BOUND:
            self._remember_last(lease)
        self.counters["lease_created"] += 1
        LOG.info("network=%s leased %s to identity=%s mac=%s client=%s (%s)", pool.network.id,
                 address, identity, mac, client, state)
        self._tell(lease, state)
        return lease

    def release(self, network: str, client: str, now: float) -> Lease | None:
        """End the client's own lease (found by client, never by MAC)."""
        lease = self.lease_for(network, client)
        if lease is None:
            return None
        pool = self.pools[network]
        self._remove(pool, lease, "released")
        if lease.state == BOUND and self.used_by(lease.address) == lease.mac:
            # Its holder, there using it, gave it back: as good as probed, so
            # the same client asking again gets it at once without DAD.  A
            # lease its holder never used (an nCoA still remote) was never
            # seen in the network: it is probed like any other address.
            pool.verified[lease.address] = now
        self._touch(pool)
        return lease

    def _remove(self, pool: Pool, lease: Lease, why: str) -> None:
        pool.remove(lease)
        self._touch(pool)
        self.store.delete(KIND, self._key(lease))
        if lease.state == BOUND:
            self._remember_last(lease)
        self.counters[f"lease_{why}"] += 1
        LOG.info("network=%s lease of %s to identity=%s mac=%s client=%s %s", pool.network.id,
                 lease.address, lease.identity, lease.mac, lease.client, why)
        self._tell(lease, why)

    def _tell(self, lease: Lease, what: str) -> None:
        if self.on_change is not None:
            self.on_change(lease, what)

    def declined(self, network: str, address: str, now: float) -> None:
        """A DHCP client found the address in use (DHCPDECLINE)."""
        pool = self.pools[network]
        lease = pool.leases.get(address)
        if lease is not None:
            self._remove(pool, lease, "declined")
        self._conflict(pool, address, now)

    # -- proactive DAD ----------------------------------------------------------

    def seen_in_use(self, address: str, now: float) -> None:
        """Somebody answered for, or sent from, ``address``: unless it is
        leased (its holder, or someone the core refuses), not free."""
        pool = self._pool_of(address)
        if pool is not None and address not in pool.leases:
            self._conflict(pool, address, now)

    def _conflict(self, pool: Pool, address: str, now: float) -> None:
        self._probes_changed = True
        self._touch(pool)
        if pool.conflicts.get(address, 0) <= now:
            self.counters["dad_conflict"] += 1
            LOG.info("network=%s %s is in use by a host the CA did not give it to; skipped",
                     pool.network.id, address)
        pool.conflict(address, now + CONFLICT_HOLD_S)
        pool.verified.pop(address, None)
        pool.probing.pop(address, None)

    def _candidates(self, pool: Pool, now: float):
        """Addresses to probe next, lowest first; one walk serves a whole tick."""
        if len(pool.leases) >= pool.last - pool.first + 1:
            return
        for address in pool.addresses():
            if address not in pool.verified and address not in pool.probing \
                    and self._usable(pool, address, now):
                yield address

    def _start_probe(self, pool: Pool, address: str, now: float) -> None:
        if address not in pool.probing:
            pool.verified.pop(address, None)
            pool.probing[address] = Probe(address, next_at=now)
            self.counters["dad_started"] += 1
            self._probes_changed = True
            self._touch(pool)

    def _touch(self, pool: Pool) -> None:
        """Something changed in the pool: the next tick works on it."""
        self._touched.add(pool.network.id)

    def tick(self, now: float, ready=lambda network: True) -> list[tuple[str, str]]:
        """Advance DAD: returns the probes to send, as (network, address).

        ``ready(network)``: whether the network's PoAs can carry probes and
        bring back the answers now; until then nothing is probed there, since
        a probe that never left would prove nothing.  Only the pools that need
        it are worked on (see ``_touched``); the others cost nothing.
        """
        probes = []
        self._probes_changed = True
        work, self._touched = self._touched, set()
        now_ready = {n for n in self._unready if ready(n)}
        self._unready -= now_ready
        work |= now_ready
        due = self._due
        while due and due[0][0] <= now:
            at, network = heapq.heappop(due)
            if self._due_at.get(network) == at:
                del self._due_at[network]
                work.add(network)
        # Probes, and packet-outs, this tick may still send.
        budget = [self.settings.dad_probes_per_tick, self.settings.dad_packet_outs_per_tick]
        for network in sorted(work, key=self._order.__getitem__):
            pool = self.pools[network]
            self._work(pool, now, network in now_ready or ready(network), probes, budget)
            self._schedule(pool)
        self.counters["dad_pools_worked"] += len(work)
        return probes

    def _schedule(self, pool: Pool) -> None:
        at = pool.next_change(self.settings.dad_valid_s)
        network = pool.network.id
        if at is not None and self._due_at.get(network) != at:
            self._due_at[network] = at
            heapq.heappush(self._due, (at, network))
        elif at is None:
            self._due_at.pop(network, None)

    def _work(self, pool: Pool, now: float, ready: bool, probes: list, budget: list) -> None:
        """One pool's DAD: conflicts and leases that ended, then (if its PoAs
        are ready) stale results out, the reserve refilled, probes sent while
        ``budget`` (the tick's probes and packet-outs left: a probe goes out of
        every PoA of the network) lasts; the first probe of a tick goes
        whatever its cost.  A probe past it stays due, and its pool is worked
        again at the next tick."""
        pool.end_conflicts(now)
        for lease in pool.expired(now):
            self._remove(pool, lease, "expired")
        self._touched.discard(pool.network.id)   # the removals above are this work's
        if not ready:
            if pool.probing:
                self.counters["dad_interrupted"] += len(pool.probing)
                pool.probing.clear()
            self._unready.add(pool.network.id)
            return
        for address in [a for a, at in pool.verified.items()
                        if now - at > self.settings.dad_valid_s
                        or not self._usable(pool, a, now)]:
            del pool.verified[address]
        candidates = self._candidates(pool, now)
        while len(pool.verified) + len(pool.probing) < self.settings.dad_reserve:
            address = next(candidates, None)
            if address is None:
                break   # nothing to probe: a lease or conflict that ends touches the pool
            self._start_probe(pool, address, now)
        self._touched.discard(pool.network.id)   # its own new probes are sent just below
        for address, probe in list(pool.probing.items()):
            if not self._usable(pool, address, now):
                del pool.probing[address]
            elif probe.sent < self.settings.dad_probes:
                if probe.next_at <= now and not self._affordable(pool, budget):
                    self.counters["dad_probes_deferred"] += 1
                elif probe.next_at <= now:
                    budget[0] -= 1
                    budget[1] -= len(pool.network.poas)
                    probes.append((pool.network.id, address))
                    probe.sent += 1
                    probe.next_at = now + (self.settings.dad_interval_s
                                           if probe.sent < self.settings.dad_probes
                                           else self.settings.dad_wait_s)
            elif probe.next_at <= now:
                del pool.probing[address]
                pool.verified[address] = now
                self.counters["dad_verified"] += 1

    def _affordable(self, pool: Pool, budget: list) -> bool:
        """Whether the tick may still send one of the pool's probes."""
        if budget[0] <= 0:
            return False
        unspent = budget[1] == self.settings.dad_packet_outs_per_tick
        return unspent or budget[1] >= len(pool.network.poas)

    def next_deadline(self) -> float | None:
        """When the next probe is due, so the caller can tick in time."""
        if self._probes_changed:   # probes change only in tick and when one starts or ends
            self._probes_changed = False
            times = [p.next_at for pool in self.pools.values() for p in pool.probing.values()]
            self._next_probe = min(times) if times else None
        return self._next_probe

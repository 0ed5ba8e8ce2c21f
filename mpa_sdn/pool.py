"""An access network's address pool: its leases, indexed, and what proactive
DAD knows of each address (probed free, being probed, found in use), with
the times at which each of those changes by itself.  The Configuration
Agent (:mod:`mpa_sdn.ca`) decides; a pool only keeps."""

from __future__ import annotations

import heapq
from dataclasses import dataclass

from mpa_sdn.indexing import Index


@dataclass
class Lease:
    network: str
    address: str
    client: str            # "mpa:<identity>|<mac>" or a DHCP client key
    mac: str
    state: str             # offered or bound
    expires: float         # wall clock
    identity: str | None = None
    hostname: str | None = None

    def to_record(self) -> dict:
        return dict(self.__dict__)

    def view(self, now: float) -> dict:
        return {"network": self.network, "address": self.address, "client": self.client,
                "mac": self.mac, "identity": self.identity, "state": self.state,
                "expires_in": max(0, round(self.expires - now))}


def mpa_client(identity: str, mac: str) -> str:
    return f"mpa:{identity}|{mac}"


@dataclass
class Probe:
    address: str
    sent: int = 0
    next_at: float = 0.0


class Pool:
    """One network's addresses and what the CA knows of each."""

    def __init__(self, network):
        self.network = network
        self.first, self.last = int(network.pool.first), int(network.pool.last)
        self.leases: dict[str, Lease] = {}      # address -> lease
        self.by_client: dict[str, str] = {}     # client -> address
        self._by_mac = Index()                  # MAC -> addresses, in lease order
        self._by_identity = Index()             # an MN's identity -> its addresses
        self._expiry: list[tuple[float, str]] = []  # a heap; stale entries too
        self.verified: dict[str, float] = {}    # address -> when probes found it free
        self.probing: dict[str, Probe] = {}
        self.conflicts: dict[str, float] = {}   # address -> until when it is skipped
        self._conflict_ends: list[tuple[float, str]] = []  # a heap; stale entries too

    def addresses(self):
        """Every address of the pool, lowest first, as text: formatted here
        rather than through ipaddress, five times slower, since a refill walks
        past every leased address (4,000 a tick at 10,000 MNs)."""
        for value in range(self.first, self.last + 1):
            yield f"{value >> 24}.{value >> 16 & 255}.{value >> 8 & 255}.{value & 255}"

    def add(self, lease: Lease) -> None:
        self.leases[lease.address] = lease
        self.by_client[lease.client] = lease.address
        self._by_mac.add(lease.mac, lease.address)
        if lease.identity is not None:
            self._by_identity.add(lease.identity, lease.address)
        self.expires_at(lease)

    def remove(self, lease: Lease) -> None:
        del self.leases[lease.address]
        self.by_client.pop(lease.client, None)
        self._by_mac.discard(lease.mac, lease.address)
        if lease.identity is not None:
            self._by_identity.discard(lease.identity, lease.address)

    def expires_at(self, lease: Lease) -> None:
        """The lease's expiry is set or moved: it is looked at then."""
        heapq.heappush(self._expiry, (lease.expires, lease.address))

    def expired(self, now: float) -> list[Lease]:
        out: dict[str, Lease] = {}
        while self._expiry and self._expiry[0][0] <= now:
            _, address = heapq.heappop(self._expiry)
            lease = self.leases.get(address)
            if lease is not None and lease.expires <= now:
                out[address] = lease
        return list(out.values())

    def conflict(self, address: str, until: float) -> None:
        self.conflicts[address] = until
        heapq.heappush(self._conflict_ends, (until, address))

    def end_conflicts(self, now: float) -> None:
        ends = self._conflict_ends
        while ends and ends[0][0] <= now:
            _, address = heapq.heappop(ends)
            if self.conflicts.get(address, now + 1) <= now:
                del self.conflicts[address]

    def next_change(self, valid_s: float) -> float | None:
        """When the pool next changes by itself: a lease or a conflict ends, a
        probe is due, a verified address goes stale (after ``valid_s``)."""
        times = [min(p.next_at for p in self.probing.values())] if self.probing else []
        if self._expiry:
            times.append(self._expiry[0][0])
        if self._conflict_ends:
            times.append(self._conflict_ends[0][0])
        if self.verified:
            # Stale once strictly older than valid_s: looked at just after.
            times.append(min(self.verified.values()) + valid_s + 1e-3)
        return min(times) if times else None

    def leases_of_mac(self, mac: str) -> list[Lease]:
        return [self.leases[a] for a in self._by_mac.get(mac)]

    def leases_of_identity(self, identity: str) -> list[Lease]:
        return [self.leases[a] for a in self._by_identity.get(identity)]

    def lease_of_mac(self, mac: str) -> Lease | None:
        leases = self.leases_of_mac(mac)
        return leases[0] if leases else None

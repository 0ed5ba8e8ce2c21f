"""The core's indexes answer as a scan of everything would: learned hosts
by MAC and PoA, leases by MAC and by expiry, networks by address."""

from __future__ import annotations

import ipaddress
import random

from mpa_sdn.ca import mpa_client
from mpa_sdn.forwarding import Host
from mpa_sdn.indexing import HostTable
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from support.service_rig import Rig


def test_the_host_table_indexes_follow_every_change(topology):
    poas = list(topology.poas.values())
    macs = [f"02:00:00:00:02:{n:02x}" for n in range(4)]
    rng, hosts = random.Random(7), HostTable()
    for _ in range(500):
        # As the controller does: an address changes hands only once forgotten.
        address = f"10.1.1.{rng.randrange(10, 30)}"
        if address in hosts and rng.random() < 0.3:
            del hosts[address]
        else:
            mac = hosts[address].mac if address in hosts else rng.choice(macs)
            hosts[address] = Host(address, mac, rng.choice(poas))
        for mac in macs:
            assert list(hosts.of_mac(mac)) == [h for h in hosts.values() if h.mac == mac]
        for poa in poas:
            assert sorted(h.address for h in hosts.at_poa(poa)) == sorted(
                h.address for h in hosts.values() if h.poa == poa)


def test_a_renewed_lease_expires_at_its_new_time_and_not_before():
    rig = Rig()
    ca, now = rig.service.ca, rig.now
    rig.settle_dad()
    client, mac = mpa_client("mn1@domain-a", "02:00:00:00:01:01"), "02:00:00:00:01:01"
    lease = ca.allocate("net-b1", client, mac, now)
    first = lease.expires
    assert ca.allocate("net-b1", client, mac, first - 1) is lease     # renewed
    assert lease.expires > first
    ca.tick(first + 1)
    assert ca.lease_for("net-b1", client) is lease
    assert ca.pools["net-b1"].lease_of_mac(mac) is lease
    ca.tick(lease.expires)
    assert ca.lease_for("net-b1", client) is None
    assert ca.pools["net-b1"].lease_of_mac(mac) is None
    assert rig.counters["lease_expired"] == 1


def test_an_address_finds_its_network_as_a_scan_of_the_prefixes_does(topology):
    graph = NeighbourhoodGraph(topology)
    rng = random.Random(3)
    for _ in range(2000):
        address = ipaddress.IPv4Address(rng.choice([0x0A000000, 0x0A010100, 0x0A010200,
                                                    0x0A020100, 0x0AFF0000])
                                        + rng.randrange(512))
        expected = next((n for n in sorted(topology.networks.values(),
                                           key=lambda n: -n.prefix.prefixlen)
                         if address in n.prefix), None)
        assert graph.network_of_address(str(address)) is expected

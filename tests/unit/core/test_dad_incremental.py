"""DAD works only on the pools that need it: a tick with every reserve
full and nothing due looks at no pool; a change in one pool, or a probe
result going stale, brings that pool alone back; a pool whose PoAs were not
ready is looked at again once they are.  The reserves it keeps are those a
walk over every pool kept."""

from __future__ import annotations

from mpa_sdn.ca import mpa_client
from support.service_rig import Rig

MAC = "02:00:00:00:01:01"


class Asked:
    """A ``ready`` that says yes (or no for ``unready``), noting what it was asked."""

    def __init__(self, unready=()):
        self.networks: list[str] = []
        self.unready = set(unready)

    def __call__(self, network: str) -> bool:
        self.networks.append(network)
        return network not in self.unready


def settled(rig, ready=lambda network: True):
    ca = rig.service.ca
    for _ in range(10):
        ca.tick(rig.now, ready)
        rig.now += 0.1
    return ca


def test_a_tick_with_every_reserve_full_looks_at_no_pool():
    rig = Rig()
    ca = settled(rig)
    reserve = rig.topology.mpa.dad_reserve
    assert all(len(p.verified) == reserve and not p.probing for p in ca.pools.values())
    asked, worked = Asked(), rig.counters["dad_pools_worked"]
    assert ca.tick(rig.now, asked) == []
    assert asked.networks == [] and rig.counters["dad_pools_worked"] == worked


def test_a_lease_taken_in_one_pool_refills_that_pool_alone():
    rig = Rig()
    ca = settled(rig)
    ca.allocate("net-b1", mpa_client("mn1@domain-a", MAC), MAC, rig.now)
    asked = Asked()
    probes = ca.tick(rig.now, asked)
    assert asked.networks == ["net-b1"]
    assert [network for network, _ in probes] == ["net-b1"]
    settled(rig)
    assert len(ca.pools["net-b1"].verified) == rig.topology.mpa.dad_reserve


def test_a_stale_result_brings_its_pool_back_when_it_goes_stale():
    rig = Rig()
    ca = settled(rig)
    valid = rig.topology.mpa.dad_valid_s
    asked = Asked()
    ca.tick(rig.now + valid / 2, asked)
    assert asked.networks == []
    ca.tick(rig.now + valid + 1, asked)     # every reserve probed at once, all stale now
    assert sorted(set(asked.networks)) == sorted(ca.pools)
    assert all(len(p.probing) == rig.topology.mpa.dad_reserve for p in ca.pools.values())


def test_a_pool_whose_poas_were_not_ready_is_probed_once_they_are():
    rig = Rig()
    ca = rig.service.ca
    waiting = Asked(unready={"net-b1"})
    for _ in range(10):
        ca.tick(rig.now, waiting)
        rig.now += 0.1
    assert not ca.pools["net-b1"].verified and not ca.pools["net-b1"].probing
    asked = Asked()
    ca.tick(rig.now, asked)
    assert asked.networks == ["net-b1"]     # the one not ready before, alone
    settled(rig)
    assert len(ca.pools["net-b1"].verified) == rig.topology.mpa.dad_reserve


def test_leases_and_conflicts_end_on_time_without_a_walk():
    rig = Rig()
    ca = settled(rig)
    client = mpa_client("mn1@domain-a", MAC)
    lease = ca.allocate("net-b1", client, MAC, rig.now)
    ca.seen_in_use("10.2.1.150", rig.now)
    ca.tick(rig.now)
    assert "10.2.1.150" in ca.pools["net-b1"].conflicts
    ca.tick(lease.expires)
    assert ca.lease_for("net-b1", client) is None
    ca.tick(lease.expires + 3600)
    assert "10.2.1.150" not in ca.pools["net-b1"].conflicts


def test_no_tick_sends_more_probes_than_its_bound_and_every_reserve_fills_all_the_same():
    from support.handover_rig import variant
    rig = Rig(topology=variant(dad_probes_per_tick=3))
    ca = rig.service.ca
    sent = []
    for _ in range(200):
        probes = ca.tick(rig.now)
        assert len(probes) <= 3
        sent.append(len(probes))
        rig.now += 0.1
    _every_reserve_filled(rig, sent)


def test_a_pool_walks_its_addresses_lowest_first_as_ipaddress_writes_them():
    import ipaddress
    rig = Rig()
    for pool in rig.service.ca.pools.values():
        assert list(pool.addresses()) == [str(ipaddress.IPv4Address(v))
                                          for v in range(pool.first, pool.last + 1)]


def test_no_tick_sends_more_packet_outs_than_its_bound_and_every_reserve_fills_all_the_same():
    """A probe goes out of every PoA of its network: the tick's bound counts
    those packet-outs (one probe a tick goes whatever its network's size)."""
    from support.handover_rig import variant
    rig = Rig(topology=variant(dad_packet_outs_per_tick=3))
    ca = rig.service.ca
    poas = {n: len(p.network.poas) for n, p in ca.pools.items()}
    assert max(poas.values()) > 1
    sent = []
    for _ in range(400):
        probes = ca.tick(rig.now)
        cost = sum(poas[network] for network, _ in probes)
        assert cost <= 3 or len(probes) == 1
        sent.append(len(probes))
        rig.now += 0.1
    _every_reserve_filled(rig, sent)


def _every_reserve_filled(rig, sent: list[int]) -> None:
    """Every pool's reserve is full, with every probe it took sent once (some
    deferred to a later tick)."""
    ca, reserve = rig.service.ca, rig.topology.mpa.dad_reserve
    assert all(len(p.verified) == reserve and not p.probing for p in ca.pools.values())
    assert sum(sent) == len(ca.pools) * reserve * rig.topology.mpa.dad_probes
    assert rig.counters["dad_probes_deferred"] > 0

"""Moves between PoAs on different switches of one network."""

import itertools

import pytest

from mpa_sdn.config import load_topology_text
from mpa_sdn.tables import host_cookie
from support.network_rig import Rig

# net-x has a PoA on its AR (ar:3) and one on an AP switch behind it (ap:2).
TOPOLOGY = """
version: 1
domains: {d: {}}
switches: {core: {dpid: 1}, ar: {dpid: 2}, ap: {dpid: 3}, cn-ar: {dpid: 4}}
links: [[core:1, ar:1], [ar:2, ap:1], [core:2, cn-ar:1]]
networks:
  net-cn: {role: correspondent, domain: d, prefix: 10.0.0.0/24, gateway: 10.0.0.1,
           access_router: cn-ar, poas: {cn-port: "cn-ar:2"}}
  net-x: {domain: d, prefix: 10.1.0.0/24, gateway: 10.1.0.1, access_router: ar,
          pool: 10.1.0.100-10.1.0.199, poas: {p-ar: "ar:3", p-ap: "ap:2"}}
correspondents: {cn1: {poa: cn-port, address: 10.0.0.10, mac: "02:00:00:00:0c:01"}}
"""
MN_IP = "10.1.0.150"


@pytest.fixture
def rig():
    rig = Rig(load_topology_text(TOPOLOGY))
    rig.connect_all()
    rig.add_host("mn", "02:00:00:00:01:01", MN_IP, "p-ar")
    rig.ping("mn", "10.0.0.10")
    return rig


def holders(rig):
    return sorted(name for name, sw in rig.net.switches.items()
                  if any(e.cookie == host_cookie(MN_IP) for e in sw.entries))


def test_move_down_to_the_ap_and_back_leaves_no_stale_route(rig):
    assert holders(rig) == ["ar"]
    rig.move("mn", "p-ap")
    rig.ping("mn", "10.0.0.10")
    assert holders(rig) == ["ap", "ar"]
    [pkt] = rig.ping("cn1", MN_IP).to("mn")
    assert pkt["eth_dst"] == "02:00:00:00:01:01"

    # Back up without the port going down first (a gratuitous ARP would do
    # the same): the AP loses its route, the AR's is overwritten in place.
    rig.hosts["mn"].switch, rig.hosts["mn"].port = "ar", 3
    rig.ping("mn", "10.0.0.10")
    assert holders(rig) == ["ar"]
    assert rig.core.hosts[MN_IP].poa.id == "p-ar"
    assert len(rig.ping("cn1", MN_IP).to("mn")) == 1
    ap_source_checks = [e for e in rig.net.switches["ap"].entries if "ipv4_src" in e.match]
    assert ap_source_checks == []


# A cycle where the AR's tree and the PoA's tree disagree: the way from the
# AR (s2) down to the PoA switch (b) is not the way back up.
CYCLIC = """
version: 1
domains: {d: {}}
switches: {ar: {dpid: 1}, ap: {dpid: 2}, s1: {dpid: 3}, s2: {dpid: 4}, x: {dpid: 5}, b: {dpid: 6},
           cn-ar: {dpid: 7}}
links: [[ap:1, b:1], [ap:2, s1:1], [ap:3, x:1], [ar:1, s1:2], [ar:2, s2:1], [ar:3, x:2],
        [b:2, x:3], [s1:3, s2:2], [ar:4, cn-ar:1]]
networks:
  net-cn: {role: correspondent, domain: d, prefix: 10.0.0.0/24, gateway: 10.0.0.1,
           access_router: cn-ar, poas: {cn-port: "cn-ar:2"}}
  net-x: {domain: d, prefix: 10.1.0.0/24, gateway: 10.1.0.1, access_router: s2,
          pool: 10.1.0.100-10.1.0.199, poas: {p-b: "b:9"}}
correspondents: {cn1: {poa: cn-port, address: 10.0.0.10, mac: "02:00:00:00:0c:01"}}
"""


def test_a_half_removed_host_route_never_loops():
    def learned():
        rig = Rig(load_topology_text(CYCLIC))
        rig.connect_all()
        rig.add_host("mn", "02:00:00:00:01:01", "10.1.0.150", "p-b")
        rig.ping("mn", "10.0.0.10")
        return rig
    rig = learned()
    path = rig.graph.switch_path("b", "s2")
    assert holders_of(rig, "10.1.0.150") == sorted(path), "the route climbs the AR's own tree"
    assert len(rig.ping("cn1", "10.1.0.150").to("mn")) == 1
    # The host leaves; each switch's delete lands on its own, in every order.
    for order in itertools.permutations(range(len(path))):
        rig = learned()
        del rig.hosts["mn"]
        sends = rig.core.port_status(rig.graph.dpid("b"), 9, True, rig.now)
        assert len(sends) == len(path)
        for index in order:
            rig.run([sends[index]])
            rig.ping("cn1", "10.1.0.150")   # FakeNetwork.send fails the test on a loop
        assert holders_of(rig, "10.1.0.150") == []


def holders_of(rig, address):
    return sorted(name for name, sw in rig.net.switches.items()
                  if any(e.cookie == host_cookie(address) for e in sw.entries))

"""Moves between PoAs on different switches of one network."""

import pytest

from mpa_sdn.config import load_topology_text
from mpa_sdn.tables import host_cookie
from rig import Rig

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

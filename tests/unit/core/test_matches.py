"""Matches built the quick way are the ones Ryu builds: the same fields and
the same bytes on the wire, however often they are serialized."""

from __future__ import annotations

import pytest
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import forwarding, matches
from mpa_sdn.forwarding import Host
from mpa_sdn.neighbourhood import NeighbourhoodGraph

CASES = [
    {},
    {"in_port": 3, "eth_type": 0x0800, "eth_src": "02:00:00:00:01:01", "ipv4_src": "10.1.1.5",
     "ipv4_dst": "10.0.0.10"},
    {"eth_type": 0x0800, "ipv4_dst": ("10.1.1.0", "255.255.255.0")},   # masked: Ryu's way
    {"eth_type": 0x0806, "arp_op": 1, "arp_tpa": "10.1.1.1", "in_port": 2},
    {"in_port": 1, "eth_type": 0x8847, "mpls_label": 16},
    {"eth_src": "02:00:00:00:0A:01", "eth_type": 0x0800},              # not in user form
    {"eth_type": 0x0800, "ipv4_dst": 0x0A010105},                       # an address as a number
    {"in_port": 4, "eth_type": 0x0800, "ip_proto": 17, "udp_dst": 67},
]


def wire(match, offset=0) -> bytes:
    buf = bytearray(offset)
    size = match.serialize(buf, offset)
    return bytes(buf[offset:offset + size])


@pytest.mark.parametrize("fields", CASES)
def test_a_match_is_the_one_ryu_builds(fields):
    quick, ryu = matches.build(**fields), parser.OFPMatch(**fields)
    assert quick._fields2 == ryu._fields2
    assert wire(quick) == wire(ryu) == wire(quick, 8) == wire(quick)
    assert matches.build(**fields) is quick


def test_every_flow_of_a_topology_matches_as_ryu_would(topology):
    graph = NeighbourhoodGraph(topology)
    mods = [m for s in graph.switch_ids() for m in forwarding.static_flows(graph, s)]
    for poa in topology.poas.values():
        host = Host("10.1.1.77", "02:00:00:00:07:07", poa)
        mods += [m for ms in forwarding.host_flows(graph, host, 300).values() for m in ms]
    for mod in mods:
        ryu = parser.OFPMatch(**dict(mod.match.items()))
        assert mod.match._fields2 == ryu._fields2
        assert wire(mod.match) == wire(ryu)

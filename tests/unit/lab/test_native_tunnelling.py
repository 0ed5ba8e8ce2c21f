"""What the lab asks of Open vSwitch for tunnels that end at an MN in another
domain (mpa_lab/net/native_tunnelling.py): worked out from the topology."""

import ipaddress

import pytest

from support.domain_rig import add_third_domain, inter_domain_raw
from support.paths import ROOT
from mpa_lab.net.native_tunnelling import DATAPATH_MAX_IDLE_MS, TunnellingError, plan
from mpa_sdn.interface_names import pht_port_name
from mpa_sdn.config import load_topology, parse_topology
from mpa_sdn.interface_names import MAX_NAME_BYTES

INTER_DOMAIN = ROOT / "topologies" / "inter_domain.yaml"


def variant(change) -> object:
    """inter_domain.yaml as ``change(raw)`` leaves it."""
    raw = inter_domain_raw()
    change(raw)
    return parse_topology(raw)


def commands(topology) -> list[str]:
    return [" ".join(c.argv) for c in plan(topology).setup()]


def routes(topology) -> dict[str, tuple[str, str]]:
    """prefix -> (bridge, next hop), from the route commands."""
    return {c.argv[2]: (c.argv[3], c.argv[4]) for c in plan(topology).setup()
            if c.argv[:2] == ("ovs-appctl", "ovs/route/add")}


def test_each_access_router_with_a_pht_port_ends_tunnels_at_its_gateway():
    topology = load_topology(str(INTER_DOMAIN))
    endpoints = {e.switch: e for e in plan(topology).endpoints}
    assert sorted(endpoints) == ["ar-a1", "ar-a2", "ar-b1"]
    b1 = topology.networks["net-b1"]
    ar_b1 = endpoints["ar-b1"]
    assert (ar_b1.port, ar_b1.network, ar_b1.address, ar_b1.mac) == (
        100, "net-b1", b1.gateway, b1.gateway_mac)
    done = commands(topology)
    # The bridge takes the gateway's MAC (OVS pops a tunnel only for frames
    # to the bridge's own), the VXLAN port its number and the gateway as its
    # local end, and the bridge's interface the gateway's address, /32.
    assert (f"ovs-vsctl --timeout=10 set bridge ar-b1 other-config:hwaddr={b1.gateway_mac} "
            "-- add-port ar-b1 ar-b1-pht -- set interface ar-b1-pht type=vxlan "
            "ofport_request=100 options:remote_ip=flow options:key=flow "
            "options:local_ip=10.2.1.1") in done
    assert done.index("ip addr add 10.2.1.1/32 dev ar-b1") < done.index("ip link set ar-b1 up")


def test_each_domain_routes_its_tunnels_to_the_other_domains_out_of_its_border_switch():
    topology = load_topology(str(INTER_DOMAIN))
    hops = {h.domain: h for h in plan(topology).next_hops}
    assert sorted(hops) == ["domain-a", "domain-b"]
    assert (hops["domain-a"].switch, hops["domain-b"].switch) == ("core-a", "core-b")
    a, b = hops["domain-a"], hops["domain-b"]
    assert routes(topology) == {
        "10.2.1.0/24": ("core-a", str(a.gateway)),
        **{prefix: ("core-b", str(b.gateway))
           for prefix in ("10.0.0.0/24", "10.1.1.0/24", "10.1.2.0/24")}}
    for hop in (a, b):
        # A link-local /30 of its own, the border switch on one end, the next
        # hop (whose MAC is static: OVS never ARPs for it) on the other.
        assert hop.address.network.prefixlen == 30 and hop.address.ip.is_link_local
        assert hop.gateway in hop.address.network and hop.gateway != hop.address.ip
        first = int(hop.mac.split(":")[0], 16)
        assert first & 0b10 and not first & 0b1, "locally administered, unicast"
    assert a.address.network != b.address.network and a.mac != b.mac
    done = commands(topology)
    neighbour = f"ovs-appctl tnl/neigh/set core-b {b.gateway} {b.mac}"
    assert done.index(f"ip addr add {b.address} dev core-b") < done.index(neighbour) < \
        done.index(f"ovs-appctl ovs/route/add 10.1.1.0/24 core-b {b.gateway}")


def test_only_the_commands_ovs_vswitchd_must_learn_for_are_retried():
    retried = {c.argv[1] for c in plan(load_topology(str(INTER_DOMAIN))).setup() if c.retry}
    assert retried == {"tnl/neigh/set", "ovs/route/add"}


def test_stopping_removes_every_route_starting_added():
    tunnelling = plan(load_topology(str(INTER_DOMAIN)))
    added = {c.argv[2] for c in tunnelling.setup() if c.argv[1:2] == ("ovs/route/add",)}
    removed = [c.argv for c in tunnelling.teardown() if c.argv[1:2] == ("ovs/route/del",)]
    assert sorted(r[2] for r in removed) == sorted(added) and len(removed) == len(added)


def test_datapath_flows_idle_out_sooner_while_the_lab_tunnels_and_as_before_after():
    """A datapath flow Open vSwitch's revalidators missed must not outlive a
    tunnel's new flows for long (native_tunnelling.DATAPATH_MAX_IDLE_MS)."""
    tunnelling = plan(load_topology(str(INTER_DOMAIN)))
    [shorter] = [c.argv for c in tunnelling.setup() if "Open_vSwitch" in c.argv]
    assert shorter[-1] == f"other_config:max-idle={DATAPATH_MAX_IDLE_MS}" == \
        "other_config:max-idle=1000"
    [restored] = [c.argv for c in tunnelling.teardown() if "Open_vSwitch" in c.argv]
    assert restored[-2:] == ("other_config", "max-idle") and restored[2] == "remove"
    # After the routes that need the lab's addresses, last of all.
    assert tunnelling.setup()[-1].argv == shorter


def test_a_domain_without_pht_ports_gets_no_next_hop_and_routes_nothing():
    topology = variant(lambda raw: raw["switches"]["ar-b1"].pop("pht_port"))
    assert [h.domain for h in plan(topology).next_hops] == ["domain-a"]
    assert list(routes(topology)) == ["10.2.1.0/24"]
    assert "ar-b1" not in {e.switch for e in plan(topology).endpoints}


def test_a_topology_without_pht_ports_needs_nothing():
    topology = load_topology(str(ROOT / "topologies" / "two_domains.yaml"))
    assert plan(topology).setup() == plan(topology).teardown() == []


def test_a_prefix_two_domains_would_both_route_is_refused_with_the_reason():
    # Three domains with pht ports, each linked to the two others: each
    # routes the others' prefixes, so every prefix is wanted twice in OVS's
    # one table.
    topology = variant(lambda raw: add_third_domain(raw, pht=True))
    with pytest.raises(TunnellingError) as refused:
        plan(topology)
    problems = refused.value.problems
    assert any(p.startswith("10.2.1.0/24 would need a route for the tunnels of domain-a and "
                            "of domain-c") for p in problems), problems
    assert "one routing table, keyed by destination alone" in str(refused.value)


def test_a_third_domain_without_pht_ports_is_routed_by_one_of_the_others():
    topology = variant(lambda raw: (add_third_domain(raw, pht=False),
                                    raw["switches"]["ar-b1"].pop("pht_port")))
    # domain-a's tunnels alone: to each other domain out of its border
    # switch towards it (both core-a here), through one next hop.
    hop = plan(topology).next_hops[0]
    assert routes(topology) == {prefix: ("core-a", str(hop.gateway))
                                for prefix in ("10.2.1.0/24", "10.3.1.0/24")}
    assert [h.domain for h in plan(topology).next_hops] == ["domain-a"]


def test_tunnels_to_a_domain_behind_another_are_refused():
    # domain-c hangs off domain-b: domain-a's tunnels to net-c1 would need
    # a transit domain, which its controller does not route to either.
    def change(raw):
        add_third_domain(raw, pht=False, linked_to=("core-b",))
        raw["switches"]["ar-b1"].pop("pht_port")
    with pytest.raises(TunnellingError, match="domain-a has pht ports but no border link to "
                                              "domain-c: its tunnels cannot reach net-c1"):
        plan(variant(change))


def test_every_tunnel_port_name_fits_linux():
    for endpoint in plan(load_topology(str(INTER_DOMAIN))).endpoints:
        assert endpoint.port_name == pht_port_name(endpoint.switch)
        assert len(endpoint.port_name.encode()) <= MAX_NAME_BYTES


def test_addresses_name_the_bridge_each_goes_on():
    tunnelling = plan(load_topology(str(INTER_DOMAIN)))
    addresses = tunnelling.addresses()
    assert addresses["10.2.1.1"] == "ar-b1" and addresses["10.1.1.1"] == "ar-a1"
    borders = {a: s for a, s in addresses.items() if ipaddress.ip_address(a).is_link_local}
    assert sorted(borders.values()) == ["core-a", "core-b"]

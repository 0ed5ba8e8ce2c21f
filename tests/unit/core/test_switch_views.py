"""The switches' view costs what it shows: counts without building flows,
per switch from that switch's own hosts."""

import pytest

from support.paths import DEFAULT_TOPOLOGY, ROOT
from support.network_rig import Rig
from mpa_sdn import forwarding
from mpa_sdn.config import load_topology, parse_topology
from mpa_sdn.controller import Controller
from mpa_sdn.domain_view import serve_domain
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_lab.topogen import generate

INTER_DOMAIN = f"{ROOT}/topologies/inter_domain.yaml"


def _topologies():
    inter = load_topology(INTER_DOMAIN)
    yield "two_domains", load_topology(DEFAULT_TOPOLOGY)
    yield "inter_domain", inter
    for domain in sorted(inter.domains):
        yield f"inter_domain as {domain}", serve_domain(inter, domain)
    yield "generated", parse_topology(generate(3, 4, 2, neighbours="ring"))


@pytest.mark.parametrize("name,topology", list(_topologies()), ids=lambda v: v
                         if isinstance(v, str) else "")
def test_static_flow_count_is_the_number_of_static_flows_on_every_switch(name, topology):
    graph = NeighbourhoodGraph(topology)
    shape = forwarding.StaticShape(graph)
    for switch in graph.switch_ids():
        assert forwarding.static_flow_count(graph, switch, shape) == \
            len(forwarding.static_flows(graph, switch)), (name, switch)


def test_the_switch_summary_builds_no_flow(monkeypatch):
    topology = load_topology(DEFAULT_TOPOLOGY)
    rig = Rig(topology)
    rig.connect_all()
    rig.add_host("h1", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.ping("h1", "10.0.0.10")
    expected = {row["id"]: len(rig.core.desired_flows(row["dpid"]))
                for row in rig.core.switch_summary(rig.now)}

    def refuse(*args, **kwargs):
        raise AssertionError("the view built flow-mods")
    for name in ("static_flows", "host_flows", "pipeline_flows", "network_route_flows"):
        monkeypatch.setattr(forwarding, name, refuse)
    fresh = Controller(topology)     # nothing counted yet: the first view is the costly one
    assert all(r["expected_flows"] > 0 for r in fresh.switch_summary(0.0))
    assert {r["id"]: r["expected_flows"] for r in rig.core.switch_summary(rig.now)} == expected


def test_a_switchs_host_counts_follow_learning_moving_and_forgetting():
    rig = Rig(load_topology(DEFAULT_TOPOLOGY))
    rig.connect_all()
    rig.add_host("h1", "02:00:00:00:00:a1", "10.1.1.150", "ap-a1-1")
    rig.add_host("h2", "02:00:00:00:00:a2", "10.1.1.151", "ap-a1-1")
    rig.ping("h1", "10.0.0.10")
    rig.ping("h2", "10.0.0.10")
    rig.move("h2", "ap-a1-2")
    rig.ping("h2", "10.0.0.10")
    rig.core.forget_host("10.1.1.150", "idle", rig.now)
    router = rig.core.router
    for switch in rig.graph.switch_ids():
        routes = sum(switch in path for path in router._host_paths.values())
        checks = sum(h.poa.switch == switch for h in rig.core.hosts.values())
        assert router.flow_count(switch) == \
            forwarding.static_flow_count(rig.graph, switch) + routes + checks, switch
        assert len(router.flows_for(switch)) == routes + checks, switch


def test_a_long_switch_list_is_encoded_in_pieces_letting_the_worker_in_between():
    from support.apitest import request, tokens
    from mpa_sdn.facade import Facade
    from rest_api.app import LIST_CHUNK, RestApi
    from rest_api.problems import json_response
    topology = parse_topology(generate(2, LIST_CHUNK, 1, neighbours="ring"))
    core = Controller(topology)
    pauses = []
    api = RestApi(Facade(core, clock=lambda: 0.0), core.counters, tokens=tokens(),
                  pause=lambda: pauses.append(1))
    response, rows = request(api, "/mpa/v1/switches")
    assert response.status_int == 200 and len(rows) == len(topology.switches)
    assert len(pauses) == -(-len(rows) // LIST_CHUNK) - 1
    # Byte for byte what one encoding of the whole list gives.
    assert response.body == json_response(200, core.switch_summary(0.0)).body

"""The read-only REST API, in-process (no sockets)."""

import pytest

from support.apitest import request as call, tokens
from mpa_sdn.controller import Controller
from mpa_sdn.facade import Facade
from rest_api.app import RestApi
from support.network_rig import Rig


@pytest.fixture
def api(topology):
    return RestApi(Facade(Controller(topology), clock=lambda: 100.0), tokens=tokens())


def test_networks_lists_every_network(api, topology):
    response, body = call(api, "/mpa/v1/networks")
    assert response.status_int == 200
    assert response.content_type == "application/json"
    assert [n["id"] for n in body] == sorted(topology.networks)
    a1 = next(n for n in body if n["id"] == "net-a1")
    assert a1["prefix"] == "10.1.1.0/24"
    assert a1["gateway"]["address"] == "10.1.1.1"
    assert a1["access_router"] == {"switch": "ar-a1", "dpid": 0x11}
    assert [p["id"] for p in a1["poas"]] == ["ap-a1-1", "ap-a1-2"]
    assert a1["pool"] == {"first": "10.1.1.100", "last": "10.1.1.199", "size": 100}
    assert a1["neighbours"] == ["net-a2", "net-b1"]


def test_one_network(api):
    response, body = call(api, "/mpa/v1/networks/net-cn")
    assert response.status_int == 200
    assert body["role"] == "correspondent" and body["pool"] is None


def test_neighbours_are_the_candidates_with_agents(api):
    response, body = call(api, "/mpa/v1/networks/net-a2/neighbours")
    assert response.status_int == 200
    assert [c["network"] for c in body] == ["net-a1", "net-b1"]
    b1 = body[1]
    assert b1["domain"] == "domain-b"
    assert b1["aa"]["address"] == b1["ca"]["address"] == b1["ar"]["address"] == "10.2.1.1"
    assert b1["ar"]["switch"] == "ar-b1"
    assert b1["l2_handover_ms"] == 200.0


def test_switches_before_any_connects(api, topology):
    response, body = call(api, "/mpa/v1/switches")
    assert response.status_int == 200
    assert [s["id"] for s in body] == sorted(topology.switches)
    assert not any(s["connected"] for s in body)
    core = next(s for s in body if s["id"] == "core")
    assert core["trunk_ports"] == {"1": "cn-ar", "2": "ar-a1", "3": "ar-a2", "4": "ar-b1"}
    assert core["expected_flows"] > 0


@pytest.mark.parametrize("path", ["/mpa/v1/networks/net-zz", "/mpa/v1/networks/net-zz/neighbours"])
def test_unknown_network_is_404_with_a_json_message(api, path):
    response, body = call(api, path)
    assert response.status_int == 404
    assert response.content_type == "application/problem+json"
    assert body["type"] == "urn:mpa-sdn:problem:not-found"
    assert body["detail"] == "unknown network 'net-zz'" and body["instance"] == path


@pytest.mark.parametrize("path", ["/mpa/v1/nothing", "/", "/mpa/v1/networks/1bad", "/mpa/v1/networks/a/b/c"])
def test_unknown_path_is_404(api, path):
    response, body = call(api, path)
    assert response.status_int == 404
    assert body["type"] == "urn:mpa-sdn:problem:not-found"


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH"])
def test_wrong_method_is_405_with_allow(api, method):
    response, body = call(api, "/mpa/v1/networks/net-a1", method=method)
    assert response.status_int == 405
    assert response.headers["Allow"] == "GET, HEAD"
    assert body["type"] == "urn:mpa-sdn:problem:method-not-allowed"
    assert body["allowed"] == ["GET", "HEAD"]


def test_switches_after_connect_show_reconciliation(topology):
    rig = Rig(topology, now=90.0)
    rig.connect_all()
    api = RestApi(Facade(rig.core, clock=lambda: 100.0), tokens=tokens())
    response, body = call(api, "/mpa/v1/switches")
    ar = next(s for s in body if s["id"] == "ar-a1")
    assert ar["connected"] and ar["reconciled"] and ar["connected_for_s"] == 10.0
    assert ar["last_reconcile"] == {"deleted": 0, "added": ar["expected_flows"], "kept": 0}
    assert ar["openflow_errors"] == 0


def test_counters(topology):
    rig = Rig(topology)
    rig.connect_all()
    api = RestApi(Facade(rig.core, clock=lambda: 0.0), tokens=tokens())
    response, body = call(api, "/mpa/v1/counters")
    assert response.status_int == 200
    assert body["switch_connected"] == len(topology.switches)
    assert list(body) == sorted(body)


def test_errors_are_counted(api):
    call(api, "/mpa/v1/networks/net-zz")
    call(api, "/mpa/v1/networks", method="DELETE")
    call(api, "/mpa/v1/networks")
    assert api.counters == {"rest_not_found": 1, "rest_method_not_allowed": 1, "rest_ok": 1}


def test_trailing_slash_is_accepted(api):
    assert call(api, "/mpa/v1/networks/")[0].status_int == 200

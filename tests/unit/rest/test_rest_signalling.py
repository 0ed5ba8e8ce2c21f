"""The REST signalling channel, in-process: the MN's messages POSTed as JSON."""

import json

import pytest
from webob import Request

from mpa_mn import protocol
from mpa_sdn.controller import Controller
from mpa_sdn.facade import Facade
from mpa_sdn.store import MemoryStore
from support.aaa import FakeRadius, radius_servers
from support.service_rig import IDENTITY, MN_MAC, counter_entropy, preauth_with, reconcile_all
from support.apitest import request as get, tokens
from rest_api.app import RestApi


class Clock:
    """The test's time, and the world around the controller (its RADIUS servers)."""

    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.fixture
def setup(topology):
    clock = Clock()
    core = Controller(topology, radius_servers=radius_servers(topology),
                      store=MemoryStore(), entropy=counter_entropy(b"rest"))
    clock.radius = FakeRadius(topology)   # each domain's RADIUS server
    return RestApi(Facade(core, clock), core.counters, tokens=tokens()), core, clock


def post(api, path, body: bytes, content_type="application/json"):
    request = Request.blank(path, method="POST", body=body, content_type=content_type,
                            remote_addr="172.31.0.2")
    response = request.get_response(api)
    return response, json.loads(response.body) if response.body else None


def preauth(core, clock):
    """By PANA (UDP 716, not REST): the MPA-SA the REST channel then uses."""
    return preauth_with(core.mpa, clock.radius, clock.now)


def settle_dad(core, clock):
    """Switches are not connected here: DAD waits for them, as it should."""
    reconcile_all(core, clock.now)
    for _ in range(10):
        core.mpa_tick(clock.now)
        clock.now += 0.1


def test_the_whole_exchange_over_rest(setup):
    api, core, clock = setup
    state = preauth(core, clock)
    data, seq = protocol.request(state, "config-request")
    response, body = post(api, "/mpa/v1/networks/net-b1/config", data)
    # No switch has connected, so no address could be probed yet.
    assert response.status_int == 503 and body["code"] == "address-pending"
    assert response.headers["Retry-After"] == "1"
    settle_dad(core, clock)
    response, body = post(api, "/mpa/v1/networks/net-b1/config", data)  # the same bytes again
    assert response.status_int == 200
    config = protocol.check_answer(state, response.body, seq, "config")
    assert config["address"] == "10.2.1.100"
    leases = get(api, "/mpa/v1/networks/net-b1/leases")[1]
    assert [(l["address"], l["mac"], l["identity"]) for l in leases] == \
        [("10.2.1.100", MN_MAC, IDENTITY)]
    sas = get(api, "/mpa/v1/sas")[1]
    assert [(s["network"], s["state"]) for s in sas] == [("net-b1", "pre-authenticated")]


def test_discover_by_current_address(setup):
    api, _, _ = setup
    response, body = post(api, "/mpa/v1/discover", protocol.discover(address="10.1.1.199"))
    assert response.status_int == 200 and body["network"] == "net-a1"
    assert [c["network"] for c in body["candidates"]] == ["net-a2", "net-b1"]
    assert body["candidates"][1]["aa"] == {"address": "10.2.1.1", "port": 7664}


@pytest.mark.parametrize("path, body, content_type, status, code", [
    ("/mpa/v1/networks/net-b1/config", b"{", "application/json", 400, "malformed"),
    ("/mpa/v1/networks/net-b1/config", b'{"v":1}', "text/plain", 415, "malformed"),
    ("/mpa/v1/networks/net-b1/config", b"x" * 5000, "application/json", 413, "oversized"),
    ("/mpa/v1/networks/net-b1/config", protocol.discover(network="net-b1"), "application/json",
     400, "unknown-type"),
    ("/mpa/v1/networks/nowhere/config", b"{}", "application/json", 404, "unknown-network"),
])
def test_bad_requests_get_a_clear_error_and_change_nothing(setup, path, body, content_type,
                                                           status, code):
    api, core, clock = setup
    preauth(core, clock)   # something to lose: an MPA-SA
    before = ({k: v.to_record() for k, v in core.mpa.aa.sas.items()},
              set(core.mpa.paa.sessions), core.mpa.lease_views(0))
    response, answer = post(api, path, body, content_type)
    assert response.status_int == status and answer["code"] == code
    assert answer["type"] == "error" and answer["message"]
    assert before == ({k: v.to_record() for k, v in core.mpa.aa.sas.items()},
                      set(core.mpa.paa.sessions), core.mpa.lease_views(0))


def test_a_message_for_another_network_than_the_path(setup):
    api, core, clock = setup
    data, _ = protocol.request(preauth(core, clock), "config-request")
    response, answer = post(api, "/mpa/v1/networks/net-a2/config", data)
    assert response.status_int == 409 and answer["code"] == "wrong-network"
    [sa] = core.mpa.aa.sas.values()
    assert sa.mn_mac is None, "the refused message bound nothing"


def test_signalling_endpoints_take_post_only(setup):
    api, _, _ = setup
    response = Request.blank("/mpa/v1/networks/net-b1/config").get_response(api)
    assert response.status_int == 405 and "POST" in response.headers["Allow"]


def test_pool_view_of_a_network_without_a_pool_is_404(setup):
    api, _, _ = setup
    response, problem = get(api, "/mpa/v1/networks/net-cn/pool")
    assert response.status_int == 404 and problem["type"] == "urn:mpa-sdn:problem:not-found"

"""Requests the northbound API refuses: each gets its status and problem type
and changes nothing; Idempotency-Key; the tokens file and roles.

The state refused requests must leave alone is real: mn1 (support/handover_rig.py's
rig) holds an MPA-SA, its nCoA, the tunnel and the binding in net-b1, and an
SA with net-a2 without a tunnel. Every response is checked against the
OpenAPI document as well (tests/apitest.py).
"""

from __future__ import annotations

import os
import stat
from urllib.parse import unquote

import pytest
import yaml

from support.apitest import TOKENS, request, rig_api
from support.service_rig import IDENTITY
from mpa_protocol import api_tokens
from mpa_sdn.facade import Busy, Facade
from rest_api import idempotency
from rest_api.app import MAX_BODY_BYTES, RestApi
from support.handover_rig import authenticated, bound, make_rig

MN = f"/mpa/v1/mobile-nodes/{IDENTITY}"
LEASES = "/mpa/v1/networks/net-b1/leases"
PREPARE, PRE_SWITCH, CANCEL = f"{MN}/prepare", f"{MN}/pre-switch", f"{MN}/cancel"
POLICY = "/mpa/v1/networks/net-a1/policy"
PROBLEM = "urn:mpa-sdn:problem:"
REALM = 'Bearer realm="mpa-sdn"'
# A representative operation of each kind: (method, path, a body it takes, the role it needs).
OPERATIONS = {
    "listLeases": ("GET", LEASES, None, api_tokens.READER),
    "prepareCandidates": ("POST", PREPARE, {"candidates": ["net-a2"]}, api_tokens.POLICY_ENGINE),
    "startPreSwitch": ("POST", PRE_SWITCH, {"network": "net-b1"}, api_tokens.POLICY_ENGINE),
    "updateNetworkPolicy": ("PATCH", POLICY, {"max_candidates": 2}, api_tokens.ADMIN),
}
WITH_BODY = [op for op, (_, _, body, _) in OPERATIONS.items() if body is not None]


@pytest.fixture
def setup(topology):
    """(rig, api): mn1 bound through its tunnel to its nCoA in net-b1, and an
    SA with net-a2 that has no tunnel."""
    rig = make_rig(topology)
    bound(rig)
    authenticated(rig, "net-a2", "domain-a")
    return rig, rig_api(rig)


def snapshot(core, now: float) -> dict:
    """Everything a request could change, as the facade shows it, and the
    state store's contents; no counters."""
    facade = Facade(core, clock=lambda: now)
    networks = [n["id"] for n in facade.networks()]
    store = core.mpa.store
    return {
        "sas": facade.sas(),
        "leases": {n: facade.leases(n) for n in networks},
        "pools": {n: facade.pool(n) for n in networks if n in core.mpa.ca.pools},
        "mobile nodes": facade.mobile_nodes(),
        "mobile node": facade.mobile_node(IDENTITY),
        "handovers": facade.handovers(),
        "actions": facade.actions(),
        "policies": {n: facade.policy(n) for n in networks},
        "events": core.events.last_id,
        "store": {kind: store.load(kind) for kind in sorted(store._records)
                  if store.load(kind)},
    }


def state(rig) -> dict:
    """The core's state and every switch's flows."""
    return {"core": snapshot(rig.core, rig.now),
            "flows": {name: switch.records() for name, switch in rig.net.switches.items()}}


def refused(setup, path, method="GET", role=api_tokens.READER, body=None, status=None,
            problem=None, **kw):
    """The request's problem, once shown to change nothing and to be counted."""
    rig, api = setup
    before, counters = state(rig), dict(api.counters)
    response, answer = request(api, path, method, role, body, **kw)
    assert (response.status_int, answer["type"]) == (status, PROBLEM + problem), answer
    assert response.content_type == "application/problem+json"
    assert answer["status"] == status and answer["instance"] == unquote(path.split("?")[0])
    assert state(rig) == before
    counted = f"rest_{problem.replace('-', '_')}"
    assert api.counters.get(counted, 0) == counters.get(counted, 0) + 1
    assert api.counters.get("rest_ok") == counters.get("rest_ok")
    return response, answer


# -- who may ------------------------------------------------------------------------------

@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_no_token_is_401_with_a_bearer_challenge(setup, name):
    method, path, body, _ = OPERATIONS[name]
    response, _ = refused(setup, path, method, None, body, 401, "unauthorized")
    assert response.headers["WWW-Authenticate"] == REALM
    assert setup[1].counters["rest_auth_missing"] == 1


@pytest.mark.parametrize("name", sorted(OPERATIONS))
def test_an_unknown_token_is_401_invalid_token(setup, name):
    method, path, body, _ = OPERATIONS[name]
    response, _ = refused(setup, path, method, None, body, 401, "unauthorized",
                          headers={"Authorization": "Bearer not-a-token-of-this-controller"})
    assert response.headers["WWW-Authenticate"] == REALM + ', error="invalid_token"'
    assert setup[1].counters["rest_auth_invalid"] == 1


@pytest.mark.parametrize("authorization", [
    "Bearer " + TOKENS[api_tokens.ADMIN][:-1],               # a prefix
    "Bearer " + TOKENS[api_tokens.ADMIN][1:],                # a suffix
    "Bearer " + TOKENS[api_tokens.ADMIN].upper(),            # another case
    "Bearer " + TOKENS[api_tokens.ADMIN] + "0",              # longer
    "Basic " + TOKENS[api_tokens.ADMIN],                     # another scheme
    "Bearer",
    "Bearer " + "x" * 5000,
    TOKENS[api_tokens.ADMIN],
])
def test_only_the_exact_token_is_accepted(setup, authorization):
    response, _ = refused(setup, LEASES, role=None, status=401, problem="unauthorized",
                          headers={"Authorization": authorization})
    assert 'error="invalid_token"' in response.headers["WWW-Authenticate"]


@pytest.mark.parametrize("name, role", [
    ("prepareCandidates", api_tokens.READER),
    ("startPreSwitch", api_tokens.READER),
    ("updateNetworkPolicy", api_tokens.READER),
    ("updateNetworkPolicy", api_tokens.POLICY_ENGINE),
])
def test_a_role_below_the_operations_is_403(setup, name, role):
    method, path, body, needed = OPERATIONS[name]
    _, problem = refused(setup, path, method, role, body, 403, "forbidden")
    assert needed in problem["detail"] and role in problem["detail"]
    assert setup[1].counters["rest_auth_forbidden"] == 1


def test_roles_are_ordered(setup):
    rig, api = setup
    for role in (api_tokens.READER, api_tokens.POLICY_ENGINE, api_tokens.ADMIN):
        assert request(api, LEASES, role=role)[0].status_int == 200
    for role in (api_tokens.POLICY_ENGINE, api_tokens.ADMIN):
        response, action = request(api, PREPARE, "POST", role, {"candidates": ["net-a2"]})
        assert response.status_int == 202 and action["requested_by"] == f"test-{role}"
    answer = request(api, POLICY, "PATCH", api_tokens.ADMIN, {"max_candidates": 3})[0]
    assert answer.status_int == 200
    admin = api_tokens.Principal("root", api_tokens.ADMIN)
    assert all(admin.may(role) for role in api_tokens.ROLES)
    assert not api_tokens.Principal("grafana", api_tokens.READER).may(api_tokens.POLICY_ENGINE)
    assert not api_tokens.Principal("engine", api_tokens.POLICY_ENGINE).may(api_tokens.ADMIN)


# -- bodies --------------------------------------------------------------------------------

@pytest.mark.parametrize("name", WITH_BODY)
@pytest.mark.parametrize("raw", [
    b'{"network": "net-b1"',                    # cut short
    b'["net-b1"]',                              # an array
    b'"net-b1"',
    b"null",
    b"",
    b'{"network": "net-b1", "network": "net-a2"}',   # a key twice
    b'{"dwell_s": NaN}',
    b'{"network": "\xff"}',                     # not UTF-8
    b"[" * 2000 + b"]" * 2000,
])
def test_a_body_that_is_not_one_json_object_is_malformed(setup, name, raw):
    method, path, _, role = OPERATIONS[name]
    refused(setup, path, method, role, raw=raw, status=400, problem="malformed-json")


# (operation, body, the JSON pointers of the errors)
INVALID = [
    # missing, wrong types
    ("prepareCandidates", {}, ["/"]),
    ("prepareCandidates", {"candidates": "net-a2"}, ["/candidates"]),
    ("prepareCandidates", {"candidates": [5]}, ["/candidates/0"]),
    ("startPreSwitch", {"mode": "buffer"}, ["/"]),
    ("startPreSwitch", {"network": 5}, ["/network"]),
    ("startPreSwitch", {"network": "net-b1", "buffer_old": "yes"}, ["/buffer_old"]),
    ("updateNetworkPolicy", {"max_candidates": "2"}, ["/max_candidates"]),
    ("updateNetworkPolicy", {"max_candidates": True}, ["/max_candidates"]),
    ("updateNetworkPolicy", {"max_candidates": 2.5}, ["/max_candidates"]),
    ("updateNetworkPolicy", {"dwell_s": "1"}, ["/dwell_s"]),
    # beyond the bounds
    ("prepareCandidates", {"candidates": []}, ["/candidates"]),
    ("prepareCandidates", {"candidates": [f"net-{i}" for i in range(17)]}, ["/candidates"]),
    ("prepareCandidates", {"candidates": ["net-a2", "net-a2"]}, ["/candidates"]),
    ("prepareCandidates", {"candidates": ["1bad"]}, ["/candidates/0"]),
    ("startPreSwitch", {"network": "n" * 33}, ["/network"]),
    ("startPreSwitch", {"network": "net-b1", "mode": "teleport"}, ["/mode"]),
    ("startPreSwitch", {"network": "net-b1", "poa": "p" * 33}, ["/poa"]),
    # The document's patterns are ECMA-262's: "$" is the end, not a final newline too.
    ("startPreSwitch", {"network": "net-b1\n"}, ["/network"]),
    ("startPreSwitch", {"network": "net-b1", "poa": "ap-b1-1\n"}, ["/poa"]),
    ("prepareCandidates", {"candidates": ["net-a2", "net-b1\n"]}, ["/candidates/1"]),
    ("updateNetworkPolicy", {}, ["/"]),
    ("updateNetworkPolicy", {"max_candidates": 0}, ["/max_candidates"]),
    ("updateNetworkPolicy", {"max_candidates": 17}, ["/max_candidates"]),
    ("updateNetworkPolicy", {"lease_time_s": 59}, ["/lease_time_s"]),
    ("updateNetworkPolicy", {"buffer_time_s": 0}, ["/buffer_time_s"]),
    ("updateNetworkPolicy", {"buffer_bytes": 2**32 + 1}, ["/buffer_bytes"]),
    ("updateNetworkPolicy", {"dwell_s": 3600.5, "sa_hold_s": -1}, ["/dwell_s", "/sa_hold_s"]),
]


@pytest.mark.parametrize("name, body, pointers", INVALID)
def test_a_body_against_the_schema_is_invalid(setup, name, body, pointers):
    method, path, _, role = OPERATIONS[name]
    _, problem = refused(setup, path, method, role, body, 400, "invalid-request")
    assert [e["pointer"] for e in problem["errors"]] == pointers


@pytest.mark.parametrize("name, body, unknown", [
    ("prepareCandidates", {"candidates": ["net-a2"], "candidate": "net-b1"}, "'candidate'"),
    ("startPreSwitch", {"network": "net-b1", "buffer": True, "at": 1}, "'at', 'buffer'"),
    ("updateNetworkPolicy", {"max_candidate": 2}, "'max_candidate'"),
])
def test_unknown_fields_are_named_at_the_object_that_has_them(setup, name, body, unknown):
    method, path, _, role = OPERATIONS[name]
    _, problem = refused(setup, path, method, role, body, 400, "invalid-request")
    assert problem["errors"] == [{"pointer": "/", "detail": f"unknown field(s): {unknown}"}]


@pytest.mark.parametrize("name", WITH_BODY)
def test_an_oversized_body_is_413_whether_or_not_its_length_is_given(setup, name):
    method, path, _, role = OPERATIONS[name]
    big = b'{"network": "' + b"n" * MAX_BODY_BYTES + b'"}'
    refused(setup, path, method, role, raw=big, status=413, problem="payload-too-large")
    # Chunked: no Content-Length, the body read up to one byte past the bound.
    refused(setup, path, method, role, raw=big, status=413, problem="payload-too-large",
            environ={"CONTENT_LENGTH": None, "wsgi.input_terminated": True})
    # A Content-Length that says so is refused before the body is read.
    refused(setup, path, method, role, raw=b"{}", status=413, problem="payload-too-large",
            environ={"CONTENT_LENGTH": str(MAX_BODY_BYTES + 1)})


@pytest.mark.parametrize("name", WITH_BODY)
def test_a_body_at_the_bound_is_read(setup, name):
    """The bound itself is allowed: the request gets as far as its schema."""
    method, path, _, role = OPERATIONS[name]
    padded = b'{"x": "' + b"n" * (MAX_BODY_BYTES - 10) + b'"}'
    assert len(padded) == MAX_BODY_BYTES - 1
    refused(setup, path, method, role, raw=padded + b" ", status=400, problem="invalid-request")


@pytest.mark.parametrize("name", WITH_BODY)
@pytest.mark.parametrize("content_type", [
    "text/plain", "application/x-www-form-urlencoded", "application/json-seq", None])
def test_a_body_that_is_not_application_json_is_415(setup, name, content_type):
    method, path, body, role = OPERATIONS[name]
    environ = {"CONTENT_TYPE": None} if content_type is None else {}
    refused(setup, path, method, role, body, 415, "unsupported-media-type",
            content_type=content_type or "application/json", environ=environ)


def test_a_json_content_type_with_parameters_is_json(setup):
    _, api = setup
    response, _ = request(api, POLICY, "PATCH", api_tokens.ADMIN, {"max_candidates": 3},
                          content_type="application/json; charset=utf-8")
    assert response.status_int == 200


# -- what the path and query name -----------------------------------------------------------

@pytest.mark.parametrize("method, path, body, role", [
    ("POST", "/mpa/v1/mobile-nodes/nobody@domain-a/prepare", {"candidates": ["net-a2"]},
     api_tokens.POLICY_ENGINE),
    ("POST", "/mpa/v1/mobile-nodes/nobody@domain-a/pre-switch", {"network": "net-b1"},
     api_tokens.POLICY_ENGINE),
    ("POST", "/mpa/v1/mobile-nodes/no-at-sign/prepare", {"candidates": ["net-a2"]},
     api_tokens.POLICY_ENGINE),
    ("GET", "/mpa/v1/mobile-nodes/nobody@domain-a", None, api_tokens.READER),
    ("GET", "/mpa/v1/networks/net-zz/leases", None, api_tokens.READER),
    ("GET", "/mpa/v1/networks/1bad/leases", None, api_tokens.READER),
    ("GET", "/mpa/v1/networks/" + "n" * 33 + "/leases", None, api_tokens.READER),
    ("GET", "/mpa/v1/networks/net-cn/pool", None, api_tokens.READER),
    ("PATCH", "/mpa/v1/networks/net-zz/policy", {"max_candidates": 2}, api_tokens.ADMIN),
    ("GET", "/mpa/v1/actions/999", None, api_tokens.READER),
    ("GET", "/mpa/v1/actions/0", None, api_tokens.READER),
    ("GET", "/mpa/v1/actions/-1", None, api_tokens.READER),
    ("GET", "/mpa/v1/actions/1x", None, api_tokens.READER),
    ("GET", "/mpa/v1/actions/" + "9" * 17, None, api_tokens.READER),
    ("GET", "/mpa/v1/actions/%C2%B2", None, api_tokens.READER),     # "²" is a digit to str.isdigit
    ("GET", "/mpa/v1/actions/%D9%A1", None, api_tokens.READER),     # an Arabic-Indic 1
    ("GET", "/mpa/v1/nothing", None, api_tokens.READER),
])
def test_what_names_nothing_is_404(setup, method, path, body, role):
    refused(setup, path, method, role, body, 404, "not-found")


def test_a_non_ascii_digit_does_not_name_an_existing_action(setup):
    rig, api = setup
    response, action = request(api, PREPARE, "POST", api_tokens.POLICY_ENGINE,
                               {"candidates": ["net-a2"]})
    assert action["id"] == 1
    refused(setup, "/mpa/v1/actions/%D9%A1", status=404, problem="not-found")
    assert request(api, "/mpa/v1/actions/1")[1] == action


@pytest.mark.parametrize("method, path, role, allowed", [
    ("DELETE", PREPARE, api_tokens.POLICY_ENGINE, ["POST"]),
    ("GET", PREPARE, api_tokens.READER, ["POST"]),
    ("PUT", POLICY, api_tokens.ADMIN, ["GET", "HEAD", "PATCH"]),
    ("POST", LEASES, api_tokens.ADMIN, ["GET", "HEAD"]),
    ("DELETE", "/mpa/v1/actions/1", api_tokens.ADMIN, ["GET", "HEAD"]),
])
def test_a_method_the_resource_does_not_take_is_405_with_allow(setup, method, path, role,
                                                               allowed):
    response, problem = refused(setup, path, method, role, None, 405, "method-not-allowed")
    assert response.headers["Allow"] == ", ".join(allowed)
    assert problem["allowed"] == allowed


@pytest.mark.parametrize("method, path, body, role, pointers", [
    ("POST", PREPARE + "?dry_run=1", {"candidates": ["net-a2"]}, api_tokens.POLICY_ENGINE,
     ["dry_run"]),
    ("PATCH", POLICY + "?force=yes", {"max_candidates": 2}, api_tokens.ADMIN, ["force"]),
    ("GET", "/mpa/v1/actions?state=finished", None, api_tokens.READER, ["state"]),
    ("GET", "/mpa/v1/actions?identity=nobody", None, api_tokens.READER, ["identity"]),
    ("GET", "/mpa/v1/actions?identity=a@b&identity=c@d", None, api_tokens.READER, ["identity"]),
    ("GET", "/mpa/v1/events?limit=%C2%B2", None, api_tokens.READER, ["limit"]),
    ("GET", "/mpa/v1/events?after=%C2%B2", None, api_tokens.READER, ["after"]),
    ("GET", "/mpa/v1/events?limit=1&page=2", None, api_tokens.READER, ["page"]),
    ("GET", f"/mpa/v1/actions?identity={IDENTITY}%0A", None, api_tokens.READER, ["identity"]),
    # U+FEFF is white space to ECMA-262's \s (not to Python's).
    ("GET", "/mpa/v1/actions?identity=mn1%EF%BB%BF@domain-a", None, api_tokens.READER,
     ["identity"]),
])
def test_an_unknown_or_bad_query_parameter_is_400(setup, method, path, body, role, pointers):
    _, problem = refused(setup, path, method, role, body, 400, "invalid-request")
    assert [e["pointer"] for e in problem["errors"]] == pointers


@pytest.mark.parametrize("char", ["%1C", "%1F", "%C2%85"])
def test_a_query_value_the_documents_pattern_allows_is_taken(setup, char):
    """ECMA-262's \\s is not Python's: U+001C to U+001F and U+0085 are no white
    space to it, so IdentityString's [^@\\s/] takes them."""
    _, api = setup
    response, actions = request(api, f"/mpa/v1/actions?identity=mn1{char}@domain-a")
    assert (response.status_int, actions) == (200, [])


@pytest.mark.parametrize("path, name", [
    (f"{MN}%0A", "identity"),
    (f"{MN}%0A/prepare", "identity"),
    ("/mpa/v1/networks/net-b1%0A/leases", "network id"),
    ("/mpa/v1/networks/net-b1%0A/config", "network id"),     # the MN's signalling too
])
def test_a_path_segment_with_a_final_newline_names_nothing(setup, path, name):
    """WSGI decodes the path before it is routed: the segment's pattern refuses
    the newline, and the core is never asked."""
    method = "POST" if path.endswith(("prepare", "config")) else "GET"
    body = {"candidates": ["net-a2"]} if path.endswith("prepare") else (
        {"v": 1, "type": "config-request"} if path.endswith("config") else None)
    role = api_tokens.POLICY_ENGINE if method == "POST" else api_tokens.READER
    value = unquote(path).split("/")[4]
    _, problem = refused(setup, path, method, role, body, 404, "not-found")
    assert problem["detail"] == f"no {name} {value!r}"


def test_an_unknown_query_parameter_of_a_plain_get_is_400(setup):
    rig, api = setup
    before, mismatches = state(rig), []
    response, problem = request(api, LEASES + "?page=2", mismatches=mismatches)
    assert (response.status_int, problem["type"]) == (400, PROBLEM + "invalid-request")
    assert [e["pointer"] for e in problem["errors"]] == ["page"]
    response, problem = request(api, LEASES, body={"x": 1}, mismatches=mismatches)
    assert (response.status_int, problem["type"]) == (400, PROBLEM + "invalid-request")
    assert state(rig) == before
    assert mismatches == []          # 400 is documented for every operation


# -- what the MN's state does not allow ---------------------------------------------------

def test_a_pre_switch_without_a_tunnel_is_409_wrong_state(setup):
    _, problem = refused(setup, PRE_SWITCH, "POST", api_tokens.POLICY_ENGINE, {"network": "net-a2"},
                         409, "wrong-state")
    assert "no tunnel to net-a2" in problem["detail"]


@pytest.mark.parametrize("path, body, detail", [
    (PREPARE, {"candidates": ["net-a1"]}, "not candidates of net-a1: net-a1"),   # its own
    (PREPARE, {"candidates": ["net-a2", "net-cn"]}, "net-cn has no AA or CA"),
    (PREPARE, {"candidates": ["net-zz"]}, "no network 'net-zz'"),
    (PRE_SWITCH, {"network": "net-b1", "poa": "ap-a1-1"}, "ap-a1-1 is no PoA of net-b1"),
    (PRE_SWITCH, {"network": "net-cn"}, "net-cn has no AA or CA"),
    (CANCEL, {"network": "net-zz"}, "no network 'net-zz'"),
])
def test_a_request_the_network_cannot_carry_out_is_422(setup, path, body, detail):
    _, problem = refused(setup, path, "POST", api_tokens.POLICY_ENGINE, body, 422, "unprocessable")
    assert problem["detail"] == detail


def test_a_correspondent_networks_policy_cannot_change(setup):
    refused(setup, "/mpa/v1/networks/net-cn/policy", "PATCH", api_tokens.ADMIN, {"dwell_s": 1},
            422, "unprocessable")


def test_more_candidates_than_the_networks_policy_allows_is_422(setup):
    rig, api = setup
    body = {"candidates": ["net-a2", "net-b1"]}
    response, policy = request(api, POLICY, "PATCH", api_tokens.ADMIN, {"max_candidates": 1})
    assert policy["max_candidates"] == 1 and policy["changed"] == ["max_candidates"]
    _, problem = refused(setup, PREPARE, "POST", api_tokens.POLICY_ENGINE, body, 422,
                         "unprocessable")
    assert "at most 1 candidates from net-a1" in problem["detail"]
    request(api, POLICY, "PATCH", api_tokens.ADMIN, {"max_candidates": None})     # the default, 4
    assert request(api, PREPARE, "POST", api_tokens.POLICY_ENGINE, body)[0].status_int == 202


def test_a_core_that_does_not_answer_in_time_is_503_and_nothing_is_done(setup):
    rig, _ = setup
    api = RestApi(Facade(rig.core, lambda: rig.now, exchange=lambda *a, **k: None),
                  rig.core.counters, tokens=setup[1].tokens)
    response, _ = refused((rig, api), PRE_SWITCH, "POST", api_tokens.POLICY_ENGINE,
                          {"network": "net-b1"}, 503, "unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "may still be carried out" in _["detail"], "it was queued: it may yet happen"


def busy_exchange(*args, **kwargs):
    raise Busy("the controller is too busy to take it now; nothing was done")


def test_an_action_refused_before_it_was_queued_says_nothing_was_done(setup):
    rig, _ = setup
    api = RestApi(Facade(rig.core, lambda: rig.now, exchange=busy_exchange),
                  rig.core.counters, tokens=setup[1].tokens)
    response, problem = refused((rig, api), PRE_SWITCH, "POST", api_tokens.POLICY_ENGINE,
                                {"network": "net-b1"}, 503, "unavailable")
    assert response.headers["Retry-After"] == "1"
    assert "nothing was done" in problem["detail"]
    assert "may still" not in problem["detail"]


def test_an_mn_message_refused_before_it_was_queued_is_busy_and_retryable(setup):
    rig, _ = setup
    api = RestApi(Facade(rig.core, lambda: rig.now, exchange=busy_exchange),
                  rig.core.counters, tokens=setup[1].tokens)
    response, answer = request(api, "/mpa/v1/networks/net-a1/instructions", "POST", None,
                               raw=b"{}", headers={"Content-Type": "application/json"})
    assert response.status_int == 503 and response.headers["Retry-After"] == "1"
    assert (answer["type"], answer["code"]) == ("error", "busy")
    assert "nothing was done" in answer["message"]


# -- Idempotency-Key ----------------------------------------------------------------------------

def post(api, path, body, key, role=api_tokens.POLICY_ENGINE):
    return request(api, path, "POST", role, body, headers={"Idempotency-Key": key})


def test_a_repeated_request_gets_the_first_answer_and_changes_nothing(setup):
    rig, api = setup
    first, action = post(api, PRE_SWITCH, {"network": "net-b1"}, "k-1")
    assert first.status_int == 202 and idempotency.REPLAYED not in first.headers
    before = state(rig)
    again, replayed = post(api, PRE_SWITCH, {"network": "net-b1"}, "k-1")
    assert again.status_int == 202 and again.headers[idempotency.REPLAYED] == "true"
    assert replayed == action and again.body == first.body
    assert again.headers["Location"] == first.headers["Location"]
    assert first.headers["Location"].endswith(f"/mpa/v1/actions/{action['id']}")
    assert state(rig) == before
    assert [a["id"] for a in request(api, "/mpa/v1/actions")[1]] == [action["id"]]
    # The body's spelling does not matter, its content does.
    again, _ = request(api, PRE_SWITCH, "POST", api_tokens.POLICY_ENGINE,
                       raw=b'{ "network" :"net-b1" }', headers={"Idempotency-Key": "k-1"})
    assert again.headers[idempotency.REPLAYED] == "true"
    assert state(rig) == before


def test_the_same_key_with_another_body_is_422_and_changes_nothing(setup):
    rig, api = setup
    assert post(api, PREPARE, {"candidates": ["net-a2"]}, "k-2")[0].status_int == 202
    _, problem = refused(setup, PREPARE, "POST", api_tokens.POLICY_ENGINE,
                         {"candidates": ["net-b1"]}, 422, "idempotency-key-reused",
                         headers={"Idempotency-Key": "k-2"})
    assert len(request(api, "/mpa/v1/actions")[1]) == 1


def test_a_key_is_the_callers_and_the_paths(setup):
    """The same key from another token, or on another path, is another request."""
    _, api = setup
    first = post(api, PREPARE, {"candidates": ["net-a2"]}, "k-3")[1]
    other_caller = post(api, PREPARE, {"candidates": ["net-a2"]}, "k-3", api_tokens.ADMIN)[1]
    other_path = post(api, PRE_SWITCH, {"network": "net-b1"}, "k-3")[1]
    assert len({first["id"], other_caller["id"], other_path["id"]}) == 3


@pytest.mark.parametrize("key", ["", "a b", "tab\there", "bell\x07", "del\x7f", "k" * 65,
                                 "caf\u00e9", "k-1\n"])
def test_a_key_outside_the_documents_pattern_is_400(setup, key):
    _, problem = refused(setup, PREPARE, "POST", api_tokens.POLICY_ENGINE,
                         {"candidates": ["net-a2"]}, 400, "invalid-request",
                         headers={"Idempotency-Key": key})
    assert {e["pointer"] for e in problem["errors"]} == {"Idempotency-Key"}


def test_a_key_of_64_printable_characters_is_taken(setup):
    _, api = setup
    key = "".join(chr(c) for c in range(0x21, 0x21 + 64))
    assert post(api, PREPARE, {"candidates": ["net-a2"]}, key)[0].status_int == 202
    assert post(api, PREPARE, {"candidates": ["net-a2"]}, key)[0].headers[
        idempotency.REPLAYED] == "true"


def test_a_refused_request_is_not_remembered(setup):
    rig, api = setup
    cancel = {"network": "net-b1"}
    refused(setup, CANCEL, "POST", api_tokens.POLICY_ENGINE, cancel, 409, "wrong-state",
            headers={"Idempotency-Key": "k-4"})
    assert post(api, PRE_SWITCH, {"network": "net-b1"}, "k-5")[0].status_int == 202
    response, action = post(api, CANCEL, cancel, "k-4")
    assert response.status_int == 202 and idempotency.REPLAYED not in response.headers
    assert action["result"]["phase"] == "switched-back"


def test_keys_outlive_a_restart_of_the_api_and_expire_after_a_day(setup):
    rig, api = setup
    _, action = post(api, PREPARE, {"candidates": ["net-a2"]}, "k-6")
    restarted = rig_api(rig)                       # a new RestApi over the same store
    response, replayed = post(restarted, PREPARE, {"candidates": ["net-a2"]}, "k-6")
    assert response.headers[idempotency.REPLAYED] == "true" and replayed == action
    assert len(request(restarted, "/mpa/v1/actions")[1]) == 1
    rig.now += idempotency.TTL_S
    response, again = post(restarted, PREPARE, {"candidates": ["net-a2"]}, "k-6")
    assert idempotency.REPLAYED not in response.headers and again["id"] != action["id"]
    # Loading forgets what is too old: the store keeps only the new record.
    assert len(rig.core.mpa.store.load(idempotency.KIND)) == 1


def test_beyond_its_bound_the_oldest_key_is_forgotten_and_counted(setup, monkeypatch):
    rig, api = setup
    monkeypatch.setattr(idempotency, "MAX_RECORDS", 2)
    first = [post(api, PREPARE, {"candidates": ["net-a2"]}, key)[1] for key in ("a", "b", "c")]
    assert api.counters[idempotency.FORGOTTEN] == 1
    assert len(rig.core.mpa.store.load(idempotency.KIND)) == 2
    replayed = post(api, PREPARE, {"candidates": ["net-a2"]}, "c")[1]
    assert replayed == first[2]
    response, again = post(api, PREPARE, {"candidates": ["net-a2"]}, "a")   # done again
    assert idempotency.REPLAYED not in response.headers and again["id"] != first[0]["id"]


# -- the tokens file -----------------------------------------------------------------------------

DIGEST = api_tokens.digest("a-token")


def entry(name="grafana", role=api_tokens.READER, sha256=DIGEST, **extra):
    return {"name": name, "role": role, "sha256": sha256, **extra}


def problems_of(document) -> list[str]:
    with pytest.raises(api_tokens.TokenFileError) as refused_:
        api_tokens.parse(document, "t.yaml")
    assert str(refused_.value) == "\n".join(refused_.value.problems)
    return refused_.value.problems


def test_a_tokens_file_with_errors_lists_every_problem():
    assert problems_of({"version": 2, "tokens": [
        entry(colour="red"),
        entry(name="grafana", sha256=api_tokens.digest("b")),     # the same name again
        entry(name="engine", role="root", sha256=api_tokens.digest("c")),
        entry(name="admin", sha256=DIGEST.upper()),
        entry(name="short", sha256=DIGEST[:-1]),
        entry(name="again", sha256=DIGEST),                   # the same token again
        entry(name="-dash", sha256=api_tokens.digest("d")),
        "grafana",
    ], "secret": "x"}) == [
        "t.yaml: unknown keys secret",
        "t.yaml: version: must be 1",
        "t.yaml: tokens[0]: unknown keys colour",
        "t.yaml: tokens[1].name: 'grafana' is used twice",
        "t.yaml: tokens[2].role: one of reader, policy-engine, admin",
        "t.yaml: tokens[3].sha256: 64 lowercase hex digits (the token's SHA-256, not the token)",
        "t.yaml: tokens[4].sha256: 64 lowercase hex digits (the token's SHA-256, not the token)",
        "t.yaml: tokens[5].sha256: the same token is listed twice",
        "t.yaml: tokens[6].name: 1-64 characters of A-Z a-z 0-9 . _ @ -, starting with a "
        "letter or digit",
        "t.yaml: tokens[7]: must be a mapping with name, role and sha256",
    ]


@pytest.mark.parametrize("document, problem", [
    ({"version": 1, "tokens": [entry(name=["a", "b"])]}, "tokens[0].name: 1-64 characters"),
    ({"version": 1, "tokens": [entry(sha256={"hex": DIGEST})]}, "tokens[0].sha256: 64 "),
    ({"version": 1, "tokens": [], 7: "x", "z": 1}, "unknown keys 7, z"),
    ({"version": 1, "tokens": [{**entry(), 1: 2, "b": 3}]}, "tokens[0]: unknown keys 1, b"),
    ({"version": 1, "tokens": "grafana"}, "tokens: must be a list"),
    (["grafana"], "must be a mapping with 'version' and 'tokens'"),
])
def test_a_tokens_file_of_any_shape_is_refused_with_its_problem(document, problem):
    """YAML can give lists, mappings and numbers anywhere: each is a problem, not a crash."""
    assert any(problem in p for p in problems_of(document))


def write(path, document, mode=0o600) -> None:
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(document, f)
    os.chmod(path, mode)


def test_a_tokens_file_others_may_read_is_refused(tmp_path):
    path = str(tmp_path / "tokens.yaml")
    write(path, {"version": 1, "tokens": [entry()]}, 0o644)
    with pytest.raises(api_tokens.TokenFileError, match="readable by others"):
        api_tokens.load_tokens(path)
    os.chmod(path, 0o640)
    with pytest.raises(api_tokens.TokenFileError, match="readable by others"):
        api_tokens.load_tokens(path)
    os.chmod(path, 0o600)
    assert api_tokens.load_tokens(path).identify("a-token") == \
        api_tokens.Principal("grafana", "reader")


def test_a_tokens_file_that_cannot_be_read_or_parsed_says_so(tmp_path):
    with pytest.raises(api_tokens.TokenFileError, match="cannot read"):
        api_tokens.load_tokens(str(tmp_path / "missing.yaml"))
    path = tmp_path / "bad.yaml"
    path.write_text("version: [1\n")
    path.chmod(0o600)
    with pytest.raises(api_tokens.TokenFileError, match="not YAML"):
        api_tokens.load_tokens(str(path))


def test_add_token_creates_the_file_private_and_appends(tmp_path):
    path = str(tmp_path / "tokens.yaml")
    first = api_tokens.add_token(path, "grafana", api_tokens.READER)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    second = api_tokens.add_token(path, "engine", api_tokens.POLICY_ENGINE)
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    with open(path, encoding="utf-8") as f:
        text = f.read()
    assert first not in text and second not in text           # digests only
    assert [t["name"] for t in yaml.safe_load(text)["tokens"]] == ["grafana", "engine"]
    tokens = api_tokens.load_tokens(path)
    assert tokens.identify(first) == api_tokens.Principal("grafana", api_tokens.READER)
    assert tokens.identify(second) == api_tokens.Principal("engine", api_tokens.POLICY_ENGINE)
    assert first != second and len(first) >= 43


def test_add_token_refuses_a_name_twice_or_a_bad_role_and_leaves_the_file(tmp_path):
    path = str(tmp_path / "tokens.yaml")
    api_tokens.add_token(path, "grafana", api_tokens.READER)
    with open(path, "rb") as f:
        kept = f.read()
    with pytest.raises(api_tokens.TokenFileError, match="used twice"):
        api_tokens.add_token(path, "grafana", api_tokens.ADMIN)
    with pytest.raises(api_tokens.TokenFileError, match="role"):
        api_tokens.add_token(path, "root", "superuser")
    with open(path, "rb") as f:
        assert f.read() == kept
    os.chmod(path, 0o644)
    with pytest.raises(api_tokens.TokenFileError, match="readable by others"):
        api_tokens.add_token(path, "engine", api_tokens.POLICY_ENGINE)


def test_identify_takes_only_the_exact_token_and_gives_its_role():
    tokens = api_tokens.Tokens([
        ("grafana", api_tokens.READER, api_tokens.digest("reader-secret")),
        ("engine", api_tokens.POLICY_ENGINE, api_tokens.digest("engine-secret")),
        ("root", api_tokens.ADMIN, api_tokens.digest("admin-secret"))])
    assert tokens.identify("reader-secret") == api_tokens.Principal("grafana", api_tokens.READER)
    assert tokens.identify("engine-secret") == \
        api_tokens.Principal("engine", api_tokens.POLICY_ENGINE)
    assert tokens.identify("admin-secret") == api_tokens.Principal("root", api_tokens.ADMIN)
    for guess in ("admin-secre", "dmin-secret", "ADMIN-SECRET", "Admin-secret",
                  "admin-secret ", "admin-secret\n", "", "x" * 10_000, "\udcff"):
        assert tokens.identify(guess) is None, guess
    assert api_tokens.Tokens().identify("admin-secret") is None


@pytest.mark.parametrize("path, status, problem", [
    ("/mpa/v1/%FF", 404, "not-found"),
    ("/mpa/v1/networks/%FF/pool", 404, "not-found"),
    ("/mpa/v1/networks?x=%FF", 400, "invalid-request"),
    ("/mpa/v1/mobile-nodes?identity=%C3", 400, "invalid-request")])
def test_a_path_or_query_that_is_no_utf8_is_refused_not_a_500(setup, path, status, problem):
    rig, api = setup
    before, counters = state(rig), dict(api.counters)
    response, answer = request(api, path)
    assert (response.status_int, answer["type"]) == (status, PROBLEM + problem), answer
    assert answer["instance"] == path.split("?")[0], "as sent: it is no text"
    assert state(rig) == before
    counted = f"rest_{problem.replace('-', '_')}"
    assert api.counters.get(counted, 0) == counters.get(counted, 0) + 1
    assert api.counters.get("rest_internal_error", 0) == 0


def test_a_tokens_file_too_large_to_read_whole_is_refused_not_cut(tmp_path):
    # Cut at the bound, the file below would still parse, without "late".
    path = tmp_path / "tokens.yaml"
    line = "- {name: %s, role: reader, sha256: %s}\n"
    path.write_text("version: 1\ntokens:\n" + line % ("early", api_tokens.digest("a-token"))
                    + "#" * (1 << 20) + "\n" + line % ("late", api_tokens.digest("b-token")))
    path.chmod(0o600)
    with pytest.raises(api_tokens.TokenFileError, match="larger than"):
        api_tokens.load_tokens(str(path))

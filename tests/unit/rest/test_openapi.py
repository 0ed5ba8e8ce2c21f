"""The northbound API and its OpenAPI document say the same thing.

The document is valid OpenAPI 3.1; its operations are the server's routes,
each with the statuses it can answer; its problem types are the server's.
A scenario on fake switches (mn1 with MPA-SAs, nCoAs, tunnels and a binding,
three handovers driven by a policy engine, the MN's own messages over REST)
calls every operation through tests/apitest.py, which checks each response
against the document, and ends by showing that every operation answered
with its success status. The event stream is checked frame by frame.
"""

from __future__ import annotations

import collections
import copy
import json
import re
from dataclasses import dataclass, field

import pytest
import yaml
from jsonschema import FormatChecker
from openapi_spec_validator import validate
from openapi_spec_validator.validation.exceptions import OpenAPIValidationError

from support import openapi_check
from support.apitest import request, rig_api
from mpa_mn import protocol
from support.service_rig import IDENTITY, MN_MAC, counter_entropy, preauth_with
from mpa_protocol import messages, api_tokens
from mpa_sdn import dhcp
from mpa_sdn.controller import Controller
from mpa_sdn.facade import Facade
from mpa_sdn.store import MemoryStore
from rest_api import app, problems, spec
from rest_api.app import HANDLERS, SIGNAL_OPERATIONS, RestApi
from support.network_rig import Rig
from support.handover_rig import (HOME, NCOA, arrive, authenticated, bound, later, make_rig,
                                  tunnelled, CN_IP, MN_IP, WALL_OFFSET, settle_dad)

A2_NCOA = "10.1.2.100"     # the first address of net-a2's pool: mn1's nCoA there
METHODS = ("get", "put", "post", "delete", "patch", "head", "options", "trace")
ACTIONS = ("prepareCandidates", "startPreSwitch", "cancelHandover", "completeHandover",
           "releaseCandidate")
MN = f"/mpa/v1/mobile-nodes/{IDENTITY}"
EVENT = spec.validator({"$ref": "#/components/schemas/Event"}, FormatChecker())


def operation_ids() -> set[str]:
    return {op["operationId"] for op in spec.operations().values()}


def documents(op: dict, status: int) -> bool:
    return openapi_check.documented(op, status) is not None


# -- the document itself ---------------------------------------------------------------------

def test_the_document_is_valid_openapi_3_1():
    document = spec.document()
    assert document["openapi"].startswith("3.1.")
    validate(document)


def test_the_validator_does_refuse_a_broken_document():
    broken = copy.deepcopy(spec.document())
    broken["paths"]["/mpa/v1/sas"]["get"]["responses"]["200"] = {"content": {}}  # no description
    with pytest.raises(OpenAPIValidationError):
        validate(broken)


def test_every_operation_has_a_unique_operation_id_and_a_known_method():
    for template, item in spec.document()["paths"].items():
        assert set(item) <= {"parameters", "summary", "description", *METHODS}, template
        # The server routes only these; anything else would be documented and never served.
        assert set(item) & set(METHODS) <= {"get", "post", "put", "patch", "delete"}, template
    ids = [op.get("operationId") for op in spec.operations().values()]
    assert None not in ids
    assert len(ids) == len(set(ids))


def test_routes_and_operations_are_the_same_set():
    assert operation_ids() == set(HANDLERS)
    routes = {(r.method, r.template): r.operation for r in app.routes()}
    assert routes == {key: op["operationId"] for key, op in spec.operations().items()}
    for op_id, (_, handler) in HANDLERS.items():
        # The MN's messages share one handler, the channel's; every other operation has its own.
        assert (handler is None) == (op_id in SIGNAL_OPERATIONS), op_id


def test_roles_are_those_the_document_describes():
    document = spec.document()
    for (method, _), op in spec.operations().items():
        role = HANDLERS[op["operationId"]][0]
        security = op.get("security", document["security"])
        assert (role is None) == (security == []), op["operationId"]
        if role is None:
            continue
        if method == "GET":
            assert role == api_tokens.READER, op["operationId"]
        elif "policy engine" in op["tags"]:
            assert role == api_tokens.POLICY_ENGINE, op["operationId"]
        else:
            assert (op["operationId"], role) == ("updateNetworkPolicy", api_tokens.ADMIN)


def test_operations_document_the_refusals_they_can_give():
    document = spec.document()
    for (method, _), op in spec.operations().items():
        name = op["operationId"]
        needs_token = op.get("security", document["security"]) != []
        if needs_token and name not in SIGNAL_OPERATIONS:
            assert documents(op, 401) and documents(op, 403), name
            unauthorized = spec._resolve(op["responses"]["401"])
            assert "WWW-Authenticate" in unauthorized["headers"], name
        if "requestBody" in op:
            assert all(documents(op, s) for s in (400, 413, 415)), name
        if any(p["in"] == "path" for p in op["parameters"]):
            assert documents(op, 404), name
        if any(p["in"] in ("query", "header") for p in op["parameters"]):
            assert documents(op, 400), name
        if method == "POST" and name in ACTIONS:
            assert all(documents(op, s) for s in (202, 409, 422, 503)), name


def test_the_problem_table_is_the_servers():
    description = spec.document()["info"]["description"]
    rows = re.findall(r"^\| `urn:mpa-sdn:problem:([a-z-]+)` \| (\d{3}) \|", description,
                      re.MULTILINE)
    assert len({name for name, _ in rows}) == len(rows)
    assert dict((name, int(status)) for name, status in rows) == {
        name: status for name, (status, _) in problems.TYPES.items()}


def test_the_document_is_served_without_a_token_as_the_yaml_says(topology):
    api = RestApi(Facade(Controller(topology), clock=lambda: 0.0))   # no tokens at all
    response, served = request(api, "/mpa/v1/openapi.json", role=None)
    assert response.status_int == 200 and response.content_type == "application/json"
    with open(spec.PATH, encoding="utf-8") as f:
        assert served == yaml.safe_load(f)


# -- every operation, on real state ------------------------------------------------------------

@dataclass
class World:
    rig: object
    api: object
    answers: dict = field(default_factory=lambda: collections.defaultdict(list))
    mismatches: list = field(default_factory=list)      # (method, path, what is wrong)
    seen: set = field(default_factory=set)              # openapi_check.SEEN of the scenario

    def call(self, path, method="GET", role=api_tokens.READER, body=None, status=None, **kw):
        response, parsed = request(self.api, path, method, role, body,
                                   mismatches=self.mismatches, **kw)
        op = openapi_check.operation_of(method, path)
        self.answers[op["operationId"] if op else None].append((response, parsed))
        if status is not None:
            assert response.status_int == status, (method, path, parsed)
        return response, parsed

    def act(self, kind, body, status=202, **kw):
        return self.call(f"{MN}/{kind}", "POST", api_tokens.POLICY_ENGINE, body, status, **kw)[1]

    def signal(self, path, data: bytes, status=200):
        return self.call(path, "POST", None, raw=data, status=status)[1]

    def last(self, op_id, status=200):
        """The body of the last answer of ``op_id`` with ``status``."""
        return [b for r, b in self.answers[op_id] if r.status_int == status][-1]


def refusals(world: World, kind: str, valid: dict, unprocessable: dict,
             conflict: dict | None = None) -> None:
    """The action's documented refusals: ``valid`` refused for its form or
    its caller; ``conflict`` (409), if given, and ``unprocessable`` (422) by the core."""
    path = f"{MN}/{kind}"
    world.call(path, "POST", api_tokens.POLICY_ENGINE, {**valid, "extra": 1}, 400)
    world.call(path, "POST", None, valid, 401)
    world.call(path, "POST", api_tokens.READER, valid, 403)
    world.call("/mpa/v1/mobile-nodes/nobody@domain-a/" + kind, "POST", api_tokens.POLICY_ENGINE,
               valid, 404)
    world.call(path, "POST", api_tokens.POLICY_ENGINE, raw=b" " * 5000, status=413)
    world.call(path, "POST", api_tokens.POLICY_ENGINE, valid, 415, content_type="text/plain")
    if conflict is not None:
        world.act(kind, conflict, 409)
    world.act(kind, unprocessable, 422)


def mn_over_rest(world: World, network: str, domain: str):
    """mn1 pre-authenticates with ``network`` by PANA (routed to its AA, as
    an MN that then signals over REST would): its SA state."""
    return preauth_with(world.rig.core.mpa, world.rig.radius, world.rig.now, network, domain,
                        entropy=counter_entropy(b"mn-rest"))


def say(world: World, state, kind, status=200, **fields) -> dict:
    """One of mn1's messages under ``state``, POSTed to its endpoint."""
    endpoint = next(e for e, kinds in messages.SIGNAL_ENDPOINTS.items() if kind in kinds)
    data, _ = protocol.request(state, kind, **fields)
    return world.signal(f"/mpa/v1/networks/{state.network}/{endpoint}", data, status)


def scenario(world: World) -> None:
    rig = world.rig
    world.call("/mpa/v1/openapi.json", role=None, status=200)
    # mn1 has not been seen anywhere: there is nothing to prepare from.
    world.act("prepare", {"candidates": ["net-b1"]}, 409)
    rig.add_host("mn1", MN_MAC, MN_IP, "ap-a1-1")
    assert len(rig.ping("mn1", CN_IP).to("cn1")) == 1

    # An SA with net-a1 that is held once mn1 leaves, and resumed when it is back.
    a1 = authenticated(rig, "net-a1", "domain-a")
    a1.bind_mac()
    rig.arp_request("mn1", MN_IP)
    rig.move("mn1", "ap-a1-2")
    later(rig, 6)
    rig.move("mn1", "ap-a1-1")
    rig.arp_request("mn1", MN_IP)
    [held] = world.call("/mpa/v1/sas", status=200)[1]
    assert (held["network"], held["state"], held["held_for"]) == ("net-a1", "held", 600)
    assert say(world, a1.state, "resume")["state"] == "authorized"
    assert say(world, a1.state, "release", scope="lease")["type"] == "released"

    # In-band: the SA with net-b1, the nCoA, the tunnel, the binding through it.
    mn = bound(rig)

    # Over REST: net-a2's candidates, SA, nCoA and tunnel; the binding again; instructions.
    assert world.signal("/mpa/v1/discover", protocol.discover(address=MN_IP))["network"] == \
        "net-a1"
    a2 = mn_over_rest(world, "net-a2", "domain-a")
    assert say(world, a2, "config-request")["address"] == A2_NCOA
    assert say(world, a2, "tunnel-request")["address"] == A2_NCOA
    assert say(world, mn.state, "binding-update", home_address=HOME,
               care_of=NCOA)["care_of"] == NCOA
    assert say(world, mn.state, "instructions")["pending"] == []
    world.call("/mpa/v1/mobile-nodes", status=200)      # two tunnels: read now

    # prepare: the MN is told, reports, and the action is done.
    refusals(world, "prepare", {"candidates": ["net-b1"]}, {"candidates": ["net-cn"]})  # 409 above
    prepare = world.act("prepare", {"candidates": ["net-a2", "net-b1"]})
    [instruction] = say(world, mn.state, "instructions")["pending"]
    assert instruction == {"id": prepare["id"], "do": "prepare", "networks": ["net-a2", "net-b1"]}
    say(world, mn.state, "instructions", reports=[{"id": prepare["id"], "ok": True}])

    # A pre-switch cancelled by the policy engine ...
    world.act("pre-switch", {"network": "net-b1", "mode": "buffer"})
    refusals(world, "pre-switch", {"network": "net-b1"}, {"network": "net-b1", "poa": "ap-a1-1"},
             conflict={"network": "net-a2"})   # a handover to net-b1 is in progress
    world.act("cancel", {"network": "net-b1"})
    refusals(world, "cancel", {"network": "net-b1"}, {"network": "net-zz"},
             conflict={"network": "net-b1"})   # switched back already
    # ... one the MN cancels itself ...
    world.act("pre-switch", {"network": "net-b1"})
    assert say(world, mn.state, "handover", phase="cancel")["phase"] == "switched-back"
    # ... and one that completes: the policy engine says mn1 arrived once it is seen there.
    world.act("pre-switch", {"network": "net-b1"})
    refusals(world, "complete", {"network": "net-b1"}, {"network": "net-cn"},
             conflict={"network": "net-b1"})   # mn1 is not seen in net-b1 yet
    arrive(rig)
    assert world.act("complete", {"network": "net-b1"})["state"] == "done"

    refusals(world, "release", {"network": "net-a2"}, {"network": "net-zz", "scope": "lease"},
             conflict={"network": "net-b1"})   # mn1's binding is there
    world.act("release", {"network": "net-a2", "scope": "all"})

    # Every read, on that state.
    world.call("/mpa/v1/networks", status=200)
    world.call("/mpa/v1/networks/net-b1", status=200)
    world.call("/mpa/v1/networks/net-zz", status=404)
    world.call("/mpa/v1/networks/net-b1/neighbours", status=200)
    world.call("/mpa/v1/networks/net-b1/leases", status=200)
    world.call("/mpa/v1/networks/net-b1/pool", status=200)
    world.call("/mpa/v1/networks/net-b1/policy", status=200)
    world.call("/mpa/v1/networks/net-a1/policy", "PATCH", api_tokens.ADMIN,
               {"max_candidates": 2, "dwell_s": 0.5}, 200)
    world.call("/mpa/v1/networks/net-a1/policy", "PATCH", api_tokens.ADMIN, {"dwell_s": None}, 200)
    world.call("/mpa/v1/networks/net-cn/policy", "PATCH", api_tokens.ADMIN, {"dwell_s": 1}, 422)
    world.call("/mpa/v1/sas", status=200)
    world.call("/mpa/v1/mobile-nodes", status=200)
    world.call(MN, status=200)
    world.call("/mpa/v1/actions", status=200)
    world.call(f"/mpa/v1/actions?identity={IDENTITY}&state=done", status=200)
    world.call("/mpa/v1/actions?state=finished", status=400)
    world.call(f"/mpa/v1/actions/{prepare['id']}", status=200)
    world.call("/mpa/v1/handovers", status=200)
    world.call("/mpa/v1/switches", status=200)
    world.call("/mpa/v1/counters", status=200)
    world.call("/metrics", status=200)
    response, _ = world.call("/mpa/v1/events?after=0&limit=5", status=200)
    world.answers["events"] = read_events(response)


@pytest.fixture(scope="module")
def world(topology) -> World:
    rig = Rig(topology, store=MemoryStore(), entropy=counter_entropy(b"core"),
              wall_offset=WALL_OFFSET)
    rig.connect_all()
    world = World(rig, rig_api(rig))
    openapi_check.SEEN.clear()
    scenario(world)
    world.seen = set(openapi_check.SEEN)
    return world


def test_the_reads_show_the_state_the_scenario_made(world):
    leases = world.last("listLeases")
    assert [(l["address"], l["identity"], l["state"]) for l in leases] == \
        [(NCOA, IDENTITY, "bound")]
    pool = world.last("getPool")
    assert pool["leased"] == 1 and NCOA not in pool["verified_free"]
    sas = {s["network"]: s["state"] for s in world.last("listSas")}
    # net-a1's is held (mn1 left for net-b1); net-a2's was released.
    assert sas == {"net-a1": "held", "net-b1": "authorized"}
    [prepared] = world.answers["listMobileNodes"][0][1]
    assert [(t["network"], t["address"], t["poa"]) for t in prepared["tunnels"]] == [
        ("net-a2", A2_NCOA, "ap-a1-1"), ("net-b1", NCOA, "ap-a1-1")]
    assert prepared["binding"]["reach"] == {"poa": "ap-a1-1", "tunnel": True}
    [summary] = world.last("listMobileNodes")
    assert summary["binding"]["care_of"] == NCOA and summary["binding"]["network"] == "net-b1"
    assert summary["binding"]["reach"] == {"poa": "ap-b1-1", "tunnel": False}
    assert [h["phase"] for h in summary["last_handovers"]] == ["completed"] * 3
    handovers = world.last("listHandovers")
    assert [h["switched_back"] for h in handovers] == [True, True, False]
    assert world.last("getNetworkPolicy")["network"] == "net-b1"
    first, second = world.answers["updateNetworkPolicy"][:2]
    assert (first[1]["max_candidates"], first[1]["dwell_s"], first[1]["changed"]) == (
        2, 0.5, ["dwell_s", "max_candidates"])
    assert (second[1]["dwell_s"], second[1]["changed"]) == (0.0, ["max_candidates"])
    assert world.last("getCounters")["action_done"] >= 2
    assert world.last("getNetwork")["id"] == "net-b1"
    assert [c["network"] for c in world.last("listNeighbours")] == ["net-a1", "net-a2"]
    mn = world.last("getMobileNode")
    assert mn["attached"] == [{"mac": MN_MAC, "address": NCOA, "network": "net-b1",
                               "poa": "ap-b1-1"}]
    assert [(s["network"], s["state"]) for s in mn["sas"]] == [
        ("net-a1", "held"), ("net-b1", "authorized")]
    assert [l["address"] for l in mn["leases"]] == [NCOA]
    # What mn1 has yet to report on: the cancel's "stay" and the release's "forget".
    assert [i["do"] for i in mn["instructions"]] == ["stay", "forget"]
    assert len(mn["actions"]) == 7 and mn["tunnels"] == []


def test_the_actions_follow_what_happened(world):
    actions = world.answers["listActions"][0][1]
    assert [(a["action"], a["state"]) for a in actions] == [
        ("prepare", "done"),
        ("pre-switch", "failed"), ("cancel", "pending"),
        ("pre-switch", "failed"),
        ("pre-switch", "done"), ("complete", "done"),
        ("release", "pending")]
    assert [a["error"]["code"] for a in actions if a["state"] == "failed"] == \
        ["switched-back"] * 2
    prepare = world.last("getAction")
    assert prepare["result"]["prepared"]["net-b1"] == {
        "sa": "pre-authenticated", "address": NCOA, "tunnel": "ap-a1-1"}
    done = world.answers["listActions"][1][1]
    assert [a["action"] for a in done] == ["prepare", "pre-switch", "complete"]
    release = actions[-1]
    assert release["result"]["released"] == {"tunnel": True, "lease": A2_NCOA, "sa": True}
    assert release["instruction"] == {"id": release["id"], "do": "forget",
                                      "network": "net-a2", "scope": "all"}


def test_the_event_stream_of_the_scenario(world):
    events = world.answers["events"]
    assert [e["id"] for e in events] == [1, 2, 3, 4, 5]
    # The switches connected first, each its own event.
    assert [e["type"] for e in events] == ["switch"] * 5
    assert len({e["dpid"] for e in events}) == 5 and all(e["data"]["connected"] for e in events)


def test_the_metrics_are_prometheus_text(world):
    [(response, _)] = world.answers["getMetrics"]
    assert response.content_type == "text/plain"
    samples = dict(line.rsplit(" ", 1) for line in response.text.splitlines()
                   if line and not line.startswith("#"))
    assert float(samples['mpa_handovers_total{result="completed"}']) == 1
    assert float(samples['mpa_handovers_total{result="switched_back"}']) == 2


def test_every_response_fits_the_document(world):
    assert world.mismatches == []


# -- the event stream --------------------------------------------------------------------------

def frames(response, limit: int = 1000) -> list[str]:
    """The stream's frames (comments too), up to the first keep-alive: what
    the in-process stream holds now (its wait never blocks)."""
    out = []
    for chunk in response.app_iter:
        text = chunk.decode()
        assert text.endswith("\n\n"), text
        out.append(text)
        if text == ": keep-alive\n\n" or len(out) >= limit:
            break
    response.app_iter.close()
    return out


def parse(frame: str) -> dict:
    """One event frame: id, event and data lines; data is the document's Event."""
    lines = frame[:-2].split("\n")
    assert [line.split(": ", 1)[0] for line in lines] == ["id", "event", "data"], frame
    values = [line.split(": ", 1)[1] for line in lines]
    event = json.loads(values[2])
    errors = [e.message for e in EVENT.iter_errors(event)]
    assert not errors, (event, errors)
    assert (values[0], values[1]) == (str(event["id"]), event["type"])
    return event


def read_events(response) -> list[dict]:
    """The events of a stream opened with ``?limit=``: it ends after them."""
    assert response.status_int == 200
    assert response.content_type == "text/event-stream"
    assert response.headers["Cache-Control"] == "no-cache"
    got = frames(response)
    assert got[0] == ": mpa-sdn events\n\n"
    assert ": keep-alive\n\n" not in got, "the stream ran out before its limit"
    return [parse(f) for f in got[1:]]


@pytest.fixture
def followed(topology):
    """mn1 with an SA, nCoA, tunnel and binding in net-b1; the policy of two networks changed."""
    rig = make_rig(topology)
    api = rig_api(rig)
    bound(rig)
    for network, value in (("net-a1", 2), ("net-a2", 3)):
        request(api, f"/mpa/v1/networks/{network}/policy", "PATCH", api_tokens.ADMIN,
                {"max_candidates": value})
    return rig, api


def stream(api, query="", headers=None):
    response, _ = request(api, "/mpa/v1/events" + query, headers=headers)
    return response


def test_events_are_numbered_frames_of_the_documents_event(followed):
    rig, api = followed
    last = rig.core.events.last_id
    events = read_events(stream(api, f"?after=0&limit={last}"))
    assert [e["id"] for e in events] == list(range(1, last + 1))
    types = {e["type"] for e in events}
    assert {"sa", "lease", "tunnel", "binding", "policy"} <= types
    assert events[-1]["type"] == "policy" and events[-1]["data"]["max_candidates"] == 3


def test_last_event_id_resumes_after_that_event(followed):
    rig, api = followed
    last = rig.core.events.last_id
    everything = read_events(stream(api, f"?after=0&limit={last}"))
    resumed = read_events(stream(api, "?limit=3", {"Last-Event-ID": "4"}))
    assert resumed == everything[4:7]
    assert read_events(stream(api, "?after=4&limit=3")) == everything[4:7]
    # The header wins over the query, as a reconnecting browser sends both.
    assert read_events(stream(api, "?after=1&limit=1", {"Last-Event-ID": "6"})) == \
        everything[6:7]


def test_without_a_cursor_only_new_events_come(followed):
    rig, api = followed
    response = stream(api, "?limit=1")
    request(api, "/mpa/v1/networks/net-b1/policy", "PATCH", api_tokens.ADMIN, {"dwell_s": 2})
    [event] = read_events(response)
    assert event["id"] == rig.core.events.last_id
    assert (event["type"], event["network"], event["data"]["dwell_s"]) == ("policy", "net-b1", 2)
    assert frames(stream(api)) == [": mpa-sdn events\n\n", ": keep-alive\n\n"]


def test_identity_and_types_filter(followed):
    rig, api = followed
    last = rig.core.events.last_id
    everything = read_events(stream(api, f"?after=0&limit={last}"))
    policies = [e for e in everything if e["type"] == "policy"]
    assert read_events(stream(api, f"?after=0&types=policy&limit={len(policies)}")) == policies
    tunnels_and_policies = [e for e in everything if e["type"] in ("tunnel", "policy")]
    assert read_events(stream(api, f"?after=0&types=tunnel,policy"
                                   f"&limit={len(tunnels_and_policies)}")) == tunnels_and_policies
    mine = [e for e in everything if e.get("identity") == IDENTITY]
    assert mine and len(mine) < len(everything)
    assert read_events(stream(api, f"?after=0&identity={IDENTITY}&limit={len(mine)}")) == mine
    # Nobody's: nothing at all, however long one reads.
    got = frames(stream(api, "?after=0&identity=nobody@domain-b&limit=1"))
    assert got == [": mpa-sdn events\n\n", ": keep-alive\n\n"]


def test_an_id_older_than_the_kept_events_gets_a_reset_first(followed):
    rig, api = followed
    events = rig.core.events
    events.ring = collections.deque(events.ring, maxlen=4)       # keep only the last 4
    last = events.last_id
    kept = [e["id"] for e in events.ring]
    assert kept == list(range(last - 3, last + 1))
    reset, *rest = read_events(stream(api, "?limit=4", {"Last-Event-ID": "2"}))
    assert (reset["type"], reset["id"], reset["data"]) == ("reset", last - 4, {"after": 2})
    assert [e["id"] for e in rest] == kept
    # From within the ring: no reset.
    assert [e["id"] for e in read_events(stream(api, "?limit=2", {
        "Last-Event-ID": str(last - 2)}))] == [last - 1, last]


@pytest.mark.parametrize("query, headers, pointer", [
    ("?after=999", None, "after"),                      # no such event yet
    ("", {"Last-Event-ID": "999"}, "after"),
    ("", {"Last-Event-ID": "x1"}, "Last-Event-ID"),
    ("?limit=0", None, "limit"),
    ("?types=Policy", None, "types"),
    ("?types=handover%0A", None, "types"),             # ECMA-262's $: no final newline
    ("", {"Last-Event-ID": "5\n"}, "Last-Event-ID"),
    ("?from=1", None, "from"),
])
def test_a_stream_that_cannot_be_is_refused(followed, query, headers, pointer):
    _, api = followed
    response, problem = request(api, "/mpa/v1/events" + query, headers=headers)
    assert response.status_int == 400
    assert problem["type"] == "urn:mpa-sdn:problem:invalid-request"
    assert [e["pointer"] for e in problem["errors"]] == [pointer]


# -- last: what the scenario reached -------------------------------------------------------------

def test_every_operation_answered_with_its_success_status(world):
    """Every operation of the document, its success status at least; each action
    every refusal it documents too (openapi_check.SEEN of the scenario)."""
    succeeded = {op for op, status in world.seen if 200 <= status < 300}
    assert succeeded == operation_ids()
    for op_id in ACTIONS:
        op = next(o for o in spec.operations().values() if o["operationId"] == op_id)
        documented = {int(s) for s in op["responses"] if s.startswith("4")}
        assert {s for o, s in world.seen if o == op_id} >= documented | {202}, op_id


# -- what the core does behind the API ------------------------------------------------------------

def test_an_ncoa_the_mn_released_carries_its_next_holders_traffic_to_them(topology):
    rig = make_rig(topology)
    api = rig_api(rig)
    mn = tunnelled(rig)
    data, _ = protocol.request(mn.state, "release", scope="lease")
    assert request(api, "/mpa/v1/networks/net-b1/release", "POST", None,
                   raw=data)[1]["type"] == "released"
    settle_dad(rig)
    mac = "02:00:00:00:dc:01"

    def ask(kind, **fields):
        frame = dhcp.build_request(kind, chaddr=mac, xid=1, **fields)
        return rig.core.mpa.dhcp(dhcp.decode_request(frame), "net-b1", False, rig.now)
    offer = ask(dhcp.DISCOVER)
    assert ask(dhcp.REQUEST, requested_ip=offer.address,
               server_id="10.2.1.1").message_type == dhcp.ACK
    rig.add_host("laptop", mac, offer.address, "ap-b1-2")
    rig.arp_request("laptop", offer.address)
    reached = rig.ping("cn1", offer.address)
    assert (len(reached.to("laptop")), len(reached.to("mn1"))) == (1, 0)


# -- what a policy change does -------------------------------------------------------------------

def test_a_changed_lease_time_is_what_a_dhcp_client_is_told(topology):
    rig = make_rig(topology)
    settle_dad(rig)
    api = rig_api(rig)
    _, policy = request(api, "/mpa/v1/networks/net-b1/policy", "PATCH", api_tokens.ADMIN,
                               {"lease_time_s": 600})
    assert policy["lease_time_s"] == 600

    def ask(kind, **fields):
        frame = dhcp.build_request(kind, chaddr="02:00:00:00:dc:01", xid=1, **fields)
        return rig.core.mpa.dhcp(dhcp.decode_request(frame), "net-b1", False, rig.now)
    offer = ask(dhcp.DISCOVER)
    ack = ask(dhcp.REQUEST, requested_ip=offer.address, server_id="10.2.1.1")
    [lease] = request(api, "/mpa/v1/networks/net-b1/leases")[1]
    assert (lease["address"], lease["expires_in"]) == (ack.address, 600)
    assert (offer.lease_time, ack.lease_time) == (600, 600)


def test_a_cursor_of_an_earlier_process_gets_one_reset_then_new_events(topology):
    """After a restart the ids go on above the old ones: a client resuming
    with an id of the earlier process is told to read the state again, once,
    and then follows the new process's events (a reset is not counted in
    ``limit``)."""
    old = make_rig(topology)
    bound(old)
    seen = old.core.events.last_id
    rig = make_rig(topology, first_event_id=seen + 1000)
    api = rig_api(rig)
    first_new = rig.core.events.ring[0]["id"]
    assert first_new == seen + 1000
    events = read_events(stream(api, f"?limit={len(rig.core.events.ring)}",
                                {"Last-Event-ID": str(seen)}))
    reset, *rest = events
    assert (reset["type"], reset["id"], reset["data"]) == ("reset", first_new - 1,
                                                          {"after": seen})
    assert [e["id"] for e in rest] == [e["id"] for e in rig.core.events.ring]


def test_a_reset_with_nothing_held_is_sent_once(topology):
    rig = make_rig(topology, first_event_id=5000)
    rig.core.events.ring.clear()
    api = rig_api(rig)
    got = frames(stream(api, "", {"Last-Event-ID": "10"}))
    assert got[-1] == ": keep-alive\n\n", "the stream waits after its one reset"
    [reset] = [parse(f) for f in got[1:-1]]
    assert (reset["type"], reset["id"]) == ("reset", rig.core.events.last_id)

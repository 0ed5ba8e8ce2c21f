"""A policy engine's actions through the core on fake switches, and the MN's
instructions asked for in-band with the real codec (mpa_sdn/actions.py).

mn1 starts at ap-a1-1 in net-a1, as in support/handover_rig.py; the engine
acts through ``Controller.act`` (what the REST layer's facade calls)."""

from __future__ import annotations

import pytest

from support.service_rig import IDENTITY, MN_MAC
from mpa_mn import protocol
from mpa_protocol import messages
from mpa_protocol.messages import MAX_WAIT_S
from mpa_sdn import actions as actions_module
from mpa_sdn.actions import INSTRUCTION_TIMEOUT_S
from mpa_sdn.controller import Controller
from mpa_sdn.events import rfc3339
from mpa_sdn.facade import Facade
from mpa_sdn.service import REST, Answer, Origin
from support.handover_rig import (HOME, MN_IP, NCOA, arrive, authenticated, bound, datagrams,
                                  later, make_rig, pings, prepared, tunnelled, variant)
from mpa_sdn.mobility import QUIET_S, SETTLE_S

ENGINE = Origin(REST, "engine", None)


@pytest.fixture
def rig(topology):
    return make_rig(topology)


def act(rig, kind: str, identity: str = IDENTITY, **params):
    """(status, body) of the engine's request; the rest is run on the switches."""
    sends = rig.core.act(kind, identity, params, "engine", ENGINE, rig.now)
    answers = [s for s in sends if isinstance(s, Answer) and s.origin is ENGINE]
    outcome = rig.run([s for s in sends if not (isinstance(s, Answer) and s.origin is ENGINE)])
    [answer] = answers
    return answer.status, answer.fields, outcome


def ask(mn, wait: int = 0, reports=None) -> list | None:
    """The MN's instructions question, in-band; None when no answer came (held)."""
    data, seq = protocol.request(mn.state, "instructions",
                                 **({"wait": wait} if wait else {}),
                                 **({"reports": reports} if reports else {}))
    answers = datagrams(mn.send(data), "mn1")
    if not answers:
        return None
    [answer] = answers
    return protocol.check_answer(mn.state, answer["payload"], seq, "instruction-list")["pending"]


def events(rig, kind: str) -> list[dict]:
    return [e for e in rig.core.events.ring if e["type"] == kind]


def test_prepare_is_delivered_reported_and_done(rig):
    mn = prepared(rig)      # the MN's question goes with its SA with net-b1
    status, action, _ = act(rig, "prepare", candidates=["net-b1"])
    assert status == 202 and action["state"] == "pending"
    assert action["params"] == {"candidates": ["net-b1"], "from": "net-a1"}
    [instruction] = ask(mn)
    assert instruction == {"id": action["id"], "do": "prepare", "networks": ["net-b1"]}
    assert rig.core.actions.get(action["id"]).state == "delivered"
    assert ask(mn) == [instruction], "pending until reported"
    mn.ask("tunnel-request", "tunnel")
    assert ask(mn, reports=[{"id": action["id"], "ok": True}]) == []
    done = rig.core.actions.get(action["id"]).view()
    assert done["state"] == "done"
    assert done["result"]["prepared"] == {"net-b1": {"sa": "pre-authenticated",
                                                     "address": NCOA, "tunnel": "ap-a1-1"}}
    assert [e["data"]["state"] for e in events(rig, "action")] == ["pending", "delivered", "done"]


def test_an_answer_holds_only_the_instructions_that_fit_one_datagram():
    rig = make_rig(variant(max_message_bytes=300))
    mn = authenticated(rig)
    ids = [act(rig, "prepare", candidates=["net-a2", "net-b1"])[1]["id"] for _ in range(4)]
    seen, reports = [], []
    while len(seen) < len(ids):
        data, seq = protocol.request(mn.state, "instructions", **(
            {"reports": reports} if reports else {}))
        [answer] = datagrams(mn.send(data), "mn1")
        assert len(answer["payload"]) <= 300
        pending = protocol.check_answer(mn.state, answer["payload"], seq,
                                        "instruction-list")["pending"]
        assert 1 <= len(pending) < len(ids), "some, never all four at once"
        seen += [i["id"] for i in pending]
        reports = [{"id": i["id"], "ok": True} for i in pending]
    assert seen == ids


def test_a_failed_report_fails_the_action(rig):
    mn = authenticated(rig)
    _, action, _ = act(rig, "prepare", candidates=["net-b1"])
    ask(mn, reports=[{"id": action["id"], "ok": False, "code": "no-answer",
                      "detail": "the AA did not answer"}])
    failed = rig.core.actions.get(action["id"])
    assert failed.state == "failed"
    assert failed.error == {"code": "no-answer", "detail": "the AA did not answer"}


@pytest.mark.parametrize("params, problem", [
    ({"candidates": ["net-cn"]}, "unprocessable"),        # a correspondent: no AA
    ({"candidates": ["net-zz"]}, "unprocessable"),
    ({"candidates": ["net-a1"]}, "unprocessable"),        # where it is: no neighbour of itself
])
def test_prepare_refusals_change_nothing(rig, params, problem):
    before = rig.core.actions.views()
    status, body, _ = act(rig, "prepare", **params)
    assert (status, body["problem"]) == (409, problem)
    assert rig.core.actions.views() == before and rig.core.mpa.store.load("action") == {}


def test_prepare_is_bounded_by_the_networks_policy(rig):
    rig.core.policies.update("net-a1", {"max_candidates": 1})
    status, body, _ = act(rig, "prepare", candidates=["net-a2", "net-b1"])
    assert (status, body["problem"]) == (409, "unprocessable")
    assert "max_candidates" in body["detail"]


def test_an_unknown_mn_is_not_found(rig):
    status, body, _ = act(rig, "prepare", identity="nobody@nowhere", candidates=["net-b1"])
    assert (status, body["problem"]) == (409, "not-found")


def test_pre_switch_without_a_tunnel_is_wrong_state(rig):
    prepared(rig)
    status, body, _ = act(rig, "pre-switch", network="net-b1")
    assert (status, body["problem"]) == (409, "wrong-state")
    assert rig.core.mobility.handovers.get(IDENTITY) is None


def test_pre_switch_buffers_tells_the_mn_and_ends_done(rig):
    mn = bound(rig)
    status, action, _ = act(rig, "pre-switch", network="net-b1", poa="ap-b1-1")
    assert status == 202 and action["handover"] == 1
    assert rig.core.mobility.handovers[IDENTITY].phase == "pre-switching"
    # Told to switch only once the AR holds the traffic: no traffic to prove
    # the punt works, so the answer waits SETTLE_S.
    data, seq = protocol.request(mn.state, "instructions")
    assert datagrams(mn.send(data), "mn1") == []
    [answer] = datagrams(later(rig, SETTLE_S), "mn1")
    [switch] = protocol.check_answer(mn.state, answer["payload"], seq,
                                     "instruction-list")["pending"]
    assert switch == {"id": action["id"], "do": "switch", "network": "net-b1",
                      "poa": "ap-b1-1"}
    echoes = pings(rig, "cn1", HOME, [1, 2])
    assert echoes.to("mn1") == [], "buffered while the MN switches"
    arrive(rig)
    later(rig, QUIET_S)
    done = rig.core.actions.get(action["id"]).view()
    assert done["state"] == "done", done
    assert done["result"]["handover"]["phase"] == "completed"
    assert done["result"]["handover"]["buffer"]["flushed"] == 2


def test_complete_is_done_at_once_and_counted_as_done(rig):
    bound(rig)
    act(rig, "pre-switch", network="net-b1")
    arrive(rig)
    status, complete, _ = act(rig, "complete", network="net-b1")
    assert status == 202 and complete["state"] == "done"
    done = rig.core.actions.views(state="done")
    assert complete in done and rig.core.counters["action_done"] == len(done)
    assert rig.core.mpa.store.load("action")[str(complete["id"])]["state"] == "done"


def test_events_of_a_relaying_handover_bear_the_time_the_controller_caught_up(
        rig, monkeypatch):
    """The shell tells the core it caught up once its queue of packet-ins is
    empty, later than the last packet-in: the handover drains then."""
    bound(rig)
    _, pre, _ = act(rig, "pre-switch", network="net-b1")
    later(rig, SETTLE_S)
    pings(rig, "cn1", HOME, [1, 2], quiet=False)
    arrive(rig)
    caught_up = rig.core.packet_ins_handled
    monkeypatch.setattr(rig.core, "packet_ins_handled", lambda now: [])
    rig.ping("cn1", HOME, seq=3)            # relayed to mn1; the punt stays for now
    rig.now += 0.25
    rig.run(caught_up(rig.now))
    [draining] = [e for e in events(rig, "handover") if e["data"]["phase"] == "draining"]
    assert draining["time"] == rfc3339(rig.core.mpa.wall(rig.now))
    done = rig.core.actions.get(pre["id"])
    assert done.state == "done" and done.updated_at == rig.core.mpa.wall(rig.now)


def test_cancel_switches_back_and_tells_the_mn_to_stay(rig):
    mn = bound(rig)
    _, pre, _ = act(rig, "pre-switch", network="net-b1")
    status, cancel, _ = act(rig, "cancel", network="net-b1")
    assert status == 202 and cancel["result"]["phase"] == "switched-back"
    failed = rig.core.actions.get(pre["id"]).view()
    assert failed["state"] == "failed" and failed["error"]["code"] == "switched-back"
    assert ask(mn) == [{"id": cancel["id"], "do": "stay", "network": "net-b1"}]
    status, body, _ = act(rig, "cancel", network="net-b1")
    assert (status, body["problem"]) == (409, "wrong-state")


def test_release_frees_the_candidate_and_tells_the_mn_to_forget(rig):
    tunnelled(rig)
    home_mn = authenticated(rig, "net-a2", "domain-a")
    status, release, _ = act(rig, "release", network="net-b1")
    assert status == 202
    assert release["result"]["released"] == {"tunnel": True, "lease": NCOA, "sa": True}
    assert rig.core.counters["config_released"] == 1, "the MN's own release's steps"
    assert NCOA not in rig.core.mobility.tunnels
    assert ("mn1@domain-a", "net-b1") not in rig.core.mpa.aa.by_identity_network
    assert ask(home_mn) == [{"id": release["id"], "do": "forget", "network": "net-b1",
                             "scope": "all"}]


def test_release_of_the_bindings_network_is_refused(rig):
    bound(rig)
    status, body, _ = act(rig, "release", network="net-b1")
    assert (status, body["problem"]) == (409, "wrong-state")
    assert NCOA in rig.core.mobility.tunnels


def test_a_held_question_is_answered_when_an_instruction_comes(rig):
    mn = authenticated(rig)
    data, seq = protocol.request(mn.state, "instructions", wait=10)
    assert datagrams(mn.send(data), "mn1") == [], "held: nothing pending"
    status, action, outcome = act(rig, "prepare", candidates=["net-b1"])
    [answer] = datagrams(outcome, "mn1")
    [instruction] = protocol.check_answer(mn.state, answer["payload"], seq,
                                          "instruction-list")["pending"]
    assert instruction["id"] == action["id"]


def test_a_held_question_asked_again_over_rest_is_answered_on_both_channels(rig):
    mn = authenticated(rig)
    data, _ = protocol.request(mn.state, "instructions", wait=10)
    assert datagrams(mn.send(data), "mn1") == []
    rest = Origin(REST, "10.1.1.5", None)
    assert rig.core.signal(data, rest, ("instructions",), rig.now) == [], "still held"
    sends = rig.core.act("prepare", IDENTITY, {"candidates": ["net-b1"]}, "engine", ENGINE,
                         rig.now)
    [over_rest] = [s for s in sends if isinstance(s, Answer) and s.origin == rest]
    [in_band] = datagrams(rig.run([s for s in sends if not isinstance(s, Answer)]), "mn1")
    assert in_band["payload"] == over_rest.body
    assert over_rest.fields["pending"][0]["do"] == "prepare"


def test_a_held_question_asked_again_past_the_bound_is_told_busy_over_rest_at_once(rig):
    from mpa_sdn.service import MAX_WAITING_ORIGINS
    mn = authenticated(rig)
    data, _ = protocol.request(mn.state, "instructions", wait=10)
    assert datagrams(mn.send(data), "mn1") == []
    for i in range(MAX_WAITING_ORIGINS - 1):
        assert rig.core.signal(data, Origin(REST, f"10.1.1.{i}", None), ("instructions",),
                               rig.now) == [], "held: one more place to answer"
    late = Origin(REST, "10.1.1.99", None)
    [refusal] = rig.core.signal(data, late, ("instructions",), rig.now)
    assert refusal.origin is late and refusal.status == 503
    assert (refusal.fields["code"], refusal.fields["retry_after"]) == ("busy", 1)
    assert rig.core.counters["signal_retransmission_refused"] == 1
    assert datagrams(mn.send(data), "mn1") == [], "in-band: silence, as for any copy"
    assert len(rig.core.actions.waiting[IDENTITY]) == 1, "nothing changed"


def test_a_held_question_ends_empty_at_its_wait(rig):
    mn = authenticated(rig)
    data, seq = protocol.request(mn.state, "instructions", wait=2)
    assert datagrams(mn.send(data), "mn1") == []
    assert datagrams(later(rig, 1.0), "mn1") == []
    [answer] = datagrams(later(rig, 1.5), "mn1")
    assert protocol.check_answer(mn.state, answer["payload"], seq,
                                 "instruction-list")["pending"] == []


def test_an_mn_holds_at_most_held_per_mn_questions_the_oldest_answered_first(rig):
    mn = authenticated(rig)
    limit = rig.core.topology.mpa.held_per_mn
    asked = [protocol.request(mn.state, "instructions", wait=20) for _ in range(limit + 3)]
    for i, (data, _) in enumerate(asked):
        answers = datagrams(mn.send(data), "mn1")
        if i < limit:
            assert answers == [], "held while the MN has room"
            continue
        # Each newer question answers the oldest still held, at once and empty.
        [answer] = answers
        oldest_seq = asked[i - limit][1]
        assert protocol.check_answer(mn.state, answer["payload"], oldest_seq,
                                     "instruction-list")["pending"] == []
    assert len(rig.core.actions.waiting[IDENTITY]) == limit
    assert rig.core.counters["instructions_superseded"] == 3
    # The newest are the ones an instruction reaches.
    _, action, outcome = act(rig, "prepare", candidates=["net-b1"])
    answers = datagrams(outcome, "mn1")
    assert len(answers) == limit
    for answer, (_, seq) in zip(answers, asked[-limit:]):
        [instruction] = protocol.check_answer(mn.state, answer["payload"], seq,
                                              "instruction-list")["pending"]
        assert instruction["id"] == action["id"]


def test_a_question_may_not_ask_to_be_held_longer_than_max_wait(rig):
    state = authenticated(rig).state
    message = {"v": 1, "type": "instructions", "network": state.network, "sa": state.sa,
               "seq": protocol.reserve(state), "wait": MAX_WAIT_S + 1}   # build() refuses it
    data = messages.encode(messages.sign(message, state.keys.for_purpose("signalling")))
    [refusal] = rig.core.signal(data, Origin(REST, "10.1.1.5", None), ("instructions",),
                                rig.now)
    assert (refusal.status, refusal.fields["code"]) == (400, "malformed")


def test_an_instruction_nobody_reports_on_fails(rig):
    authenticated(rig)
    _, action, _ = act(rig, "prepare", candidates=["net-b1"])
    later(rig, INSTRUCTION_TIMEOUT_S + 1)
    failed = rig.core.actions.get(action["id"])
    assert failed.state == "failed" and failed.error["code"] == "not-fetched"


def test_only_the_oldest_finished_actions_are_dropped(rig, monkeypatch):
    monkeypatch.setattr(actions_module, "KEEP_FINISHED", 2)
    mn = authenticated(rig)
    ids = [act(rig, "prepare", candidates=["net-b1"])[1]["id"] for _ in range(4)]
    ask(mn, reports=[{"id": i, "ok": True} for i in ids[1:]])   # done in this order
    assert [a["id"] for a in rig.core.actions.views()] == ids[0:1] + ids[2:]
    assert sorted(rig.core.mpa.store.load("action")) == sorted(str(i) for i in
                                                                ids[0:1] + ids[2:])
    assert ask(mn) == [{"id": ids[0], "do": "prepare", "networks": ["net-b1"]}]


def test_a_pending_instruction_outlives_a_restart_and_its_timeout_still_holds(rig, topology):
    authenticated(rig)
    _, action, _ = act(rig, "prepare", candidates=["net-b1"])
    core = Controller(topology, store=rig.core.mpa.store, wall_offset=rig.core.mpa.wall_offset)
    assert core.actions.instructions_of(IDENTITY) == [
        {"id": action["id"], "do": "prepare", "networks": ["net-b1"]}]
    core.mpa_tick(rig.now + INSTRUCTION_TIMEOUT_S + 1)
    failed = core.actions.get(action["id"])
    assert failed.state == "failed" and failed.error["code"] == "not-fetched"
    assert core.actions.instructions_of(IDENTITY) == []


def test_one_mns_view_is_what_the_lists_say_of_it(rig):
    bound(rig)
    authenticated(rig, "net-a2", "domain-a").bind_mac()   # its MAC, as the MN names it
    aa = rig.core.mpa.aa
    aa.end(aa.sas[aa.by_identity_network[(IDENTITY, "net-b1")]])  # its nCoA's lease stays
    facade = Facade(rig.core, lambda: rig.now)
    view = facade.mobile_node(IDENTITY)
    mine = lambda rows: [r for r in rows if r["identity"] == IDENTITY]   # noqa: E731
    [listed] = mine(facade.mobile_nodes())
    assert {k: view[k] for k in listed} == listed and listed["binding"] is not None
    assert [sa["network"] for sa in view["sas"]] == ["net-a2"]
    assert view["sas"] == mine(facade.sas())
    assert view["leases"] == mine(facade.leases("net-a2") + facade.leases("net-b1"))
    assert [lease["address"] for lease in view["leases"]] == [NCOA]
    assert view["attached"] == [{"mac": MN_MAC, "address": MN_IP, "network": "net-a1",
                                 "poa": "ap-a1-1"}]


def test_dwell_time_refuses_a_handover_out_too_soon(rig):
    mn = bound(rig)
    rig.core.policies.update("net-b1", {"dwell_s": 30})
    mn.handover("pre-switch")
    arrive(rig)
    later(rig, QUIET_S)
    assert rig.core.mobility.settled[IDENTITY][0] == "net-b1"
    back = authenticated(rig, "net-a2", "domain-a")
    back.configure()
    back.ask("tunnel-request", "tunnel")
    status, body, _ = act(rig, "pre-switch", network="net-a2")
    assert (status, body["problem"]) == (409, "too-soon")
    assert back.refusal("handover", phase="pre-switch") == "too-soon"
    later(rig, 30)
    status, _, _ = act(rig, "pre-switch", network="net-a2")
    assert status == 202


def test_policy_bounds_apply_to_what_starts_after(rig):
    rig.core.policies.update("net-b1", {"tunnel_lifetime_s": 7, "buffer_packets": 1})
    mn = prepared(rig)
    assert mn.ask("tunnel-request", "tunnel")["lifetime"] == 7
    mn.bind()
    mn.handover("pre-switch")
    assert rig.core.mobility.handovers[IDENTITY].buffer.max_packets == 1


def test_actions_and_policies_outlive_a_restart(rig, topology):
    bound(rig)
    rig.core.policies.update("net-b1", {"dwell_s": 5})
    _, pre, _ = act(rig, "pre-switch", network="net-b1")
    _, prepare, _ = act(rig, "prepare", candidates=["net-a2"])
    store = rig.core.mpa.store
    core = Controller(topology, store=store)
    assert core.policies.of("net-b1").dwell_s == 5
    assert core.actions.get(prepare["id"]).state == "pending"
    restarted = core.actions.get(pre["id"])
    assert restarted.state == "failed" and restarted.error["code"] == "restarted"
    [event] = [e for e in core.events.ring if e["type"] == "action"]
    assert event["data"] == restarted.view()
    assert event["time"] == rfc3339(restarted.updated_at), "not the time the host booted"
    assert core.actions._next == prepare["id"] + 1

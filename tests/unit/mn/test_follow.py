"""``mpa-mn follow``'s loop (mpa_mn/follow.py): each instruction carried out
once, reported in the next question, the network followed after a switch.
The MN's steps are stand-ins that record what they were asked (the real
steps have their own tests, tests/unit/mn/test_handover.py), except in the last
test: the whole command against the real core, where an engine acts."""

from __future__ import annotations

import json

import pytest

from mpa_mn import cli
from mpa_mn.follow import MAX_QUESTION_FAILURES, Follower
from mpa_mn.link import LinkError
from mpa_mn.mobile_node import MnError
from mpa_mn.protocol import ProtocolError
from support.service_rig import IDENTITY
from mpa_sdn.service import REST, Origin
from mpa_protocol.pana import PANA_PORT
from support.mn_fakes import MN_ADDRESS, RestLayer
from support.mn_world import HOME, NCOA, HandoverCli



class Node:
    """Answers each question with the next scripted list; records the questions."""

    def __init__(self, script):
        self.script = list(script)
        self.questions = []
        self.dropped = []
        self.mac = "02:00:00:00:01:01"

    def instructions(self, network, wait, reports):
        self.questions.append((network, wait, list(reports)))
        answer = self.script.pop(0) if self.script else []
        if isinstance(answer, Exception):
            raise answer
        return answer

    def forget(self, network, scope):
        self.dropped.append((network, scope))


class Steps:
    def __init__(self, fail_prepare=None, fail_switch=None, arrived=None):
        self.calls = []
        self.fail_prepare, self.fail_switch = fail_prepare, fail_switch
        self.arrived = arrived or {"phase": "completed"}   # the controller's answer

    def before_pre_switch(self, network, home):
        self.calls.append(("prepare", network, home))
        if self.fail_prepare:
            raise self.fail_prepare
        return {"address": "10.2.1.100", "timings_ms": {}}

    def switch_told(self, network, emit, interface, mac, timeout_s, poa):
        self.calls.append(("switch", network, poa, interface))
        if self.fail_switch:
            raise self.fail_switch
        emit({"event": "switch", "network": network, "poa": poa})
        return {"network": network, "address": "10.2.1.100", "arrived": self.arrived,
                "timings_ms": {}}


def follower(node, steps, events, **kw):
    return Follower(node, steps, "10.255.0.1", "eth0", events.append,
                    wait_s=5, sleep=lambda s: None, **kw)


def test_prepare_then_switch_each_reported_in_the_next_question():
    node = Node([[{"id": 1, "do": "prepare", "networks": ["net-b1"]}],
                 [{"id": 2, "do": "switch", "network": "net-b1", "poa": "ap-b1-1"}]])
    steps, events, moved = Steps(), [], []
    result = follower(node, steps, events, moved=moved.append).run("net-a1", count=2)
    assert steps.calls == [("prepare", "net-b1", "10.255.0.1"),
                           ("switch", "net-b1", "ap-b1-1", "eth0")]
    assert node.questions == [("net-a1", 5, []), ("net-a1", 5, [{"id": 1, "ok": True}]),
                              ("net-b1", 0, [{"id": 2, "ok": True}])]
    assert moved == ["10.2.1.100"]
    assert result["network"] == "net-b1" and result["handled"] == 2
    assert [e["event"] for e in events] == ["instruction", "prepared", "reported", "instruction",
                                            "switch", "attached", "reported"]


def test_a_failed_step_is_reported_with_its_code():
    node = Node([[{"id": 3, "do": "switch", "network": "net-b1", "poa": None}]])
    steps = Steps(fail_switch=LinkError("link-timeout", "eth0: no switch within 30 s"))
    follower(node, steps, []).run("net-a1", count=1)
    assert node.questions[-1][2] == [{"id": 3, "ok": False, "code": "link-timeout",
                                      "detail": "eth0: no switch within 30 s"}]


def test_a_switch_the_controller_switched_back_is_reported_failed_and_followed():
    """The MN attached in the target network, and the controller's answer to
    arrived says the handover was switched back: the instruction failed, as
    mpa-mn handover does, and the questions go to where the MN is."""
    node = Node([[{"id": 4, "do": "switch", "network": "net-b1", "poa": "ap-b1-1"}]])
    steps, moved = Steps(arrived={"phase": "switched-back", "buffered": 0}), []
    result = follower(node, steps, [], moved=moved.append).run("net-a1", count=1)
    assert node.questions[-1] == ("net-b1", 0, [{
        "id": 4, "ok": False, "code": "switched-back",
        "detail": "the controller switched the handover to net-b1 back (it answered arrived "
                  "with switched-back)"}])
    assert moved == ["10.2.1.100"] and result["network"] == "net-b1"


def test_an_instruction_seen_again_is_not_done_twice():
    prepare = {"id": 1, "do": "prepare", "networks": ["net-b1"]}
    node = Node([[prepare], [prepare], [{"id": 2, "do": "stay", "network": "net-b1"}]])
    steps = Steps()
    follower(node, steps, []).run("net-a1", count=2)
    assert [c[0] for c in steps.calls] == ["prepare"]
    assert node.questions[2][2] == [{"id": 1, "ok": True}], "reported again, not redone"


def test_forget_drops_the_networks_state_and_unknown_instructions_fail():
    node = Node([[{"id": 4, "do": "forget", "network": "net-b1", "scope": "all"},
                  {"id": 5, "do": "dance"}]])
    follower(node, Steps(), []).run("net-a1", count=2)
    assert node.dropped == [("net-b1", "all")]
    assert node.questions[-1][2] == [{"id": 4, "ok": True},
                                     {"id": 5, "ok": False, "code": "unknown-instruction",
                                      "detail": "no instruction 'dance'"}]


def test_questions_that_fail_are_retried_then_given_up():
    node = Node([ProtocolError("no-answer", "no answer")] * 2 +
                [[{"id": 1, "do": "stay", "network": "net-b1"}]])
    events = []
    follower(node, Steps(), events).run("net-a1", count=1)
    assert [e["event"] for e in events][:2] == ["question-failed", "question-failed"]
    node = Node([ProtocolError("no-answer", "no answer")] * MAX_QUESTION_FAILURES)
    with pytest.raises(ProtocolError):
        follower(node, Steps(), []).run("net-a1", count=1)


def test_usage_errors_of_a_step_are_reported_not_raised():
    node = Node([[{"id": 6, "do": "prepare", "networks": ["net-b1"]}]])
    steps = Steps(fail_prepare=MnError("not-pre-authenticated", "no MPA-SA"))
    result = follower(node, steps, []).run("net-a1", count=1)
    assert result["reports"] == [{"id": 6, "ok": False, "code": "not-pre-authenticated",
                                  "detail": "no MPA-SA"}]


def test_it_stops_after_its_duration_and_no_question_waits_past_it():
    clock = iter([0.0, 0.0, 1.0, 2.0, 3.0]).__next__
    node = Node([])
    Follower(node, Steps(), "10.255.0.1", "eth0", lambda e: None, wait_s=5,
             clock=clock, sleep=lambda s: None).run("net-a1", duration_s=2.5)
    assert [wait for _, wait, _ in node.questions] == [2, 1, 0]


# -- the whole command against the real core ----------------------------------------------

def engine(world):
    """A policy engine acting on mn1 through the core: ``act(kind, **params)``
    starts an action and gives its id."""
    origin = Origin(REST, "engine", None)

    def act(kind, **params):
        sends = world.core.act(kind, IDENTITY, params, "engine", origin, world.now)
        [answer] = [s for s in sends if getattr(s, "origin", None) is origin]
        world.run(sends)
        return answer.fields["id"]
    return act


def test_mpa_mn_follow_carries_out_a_policy_engine_s_handover(world, tmp_path,
                                                               credentials_file):
    """``mpa-mn follow`` (polling over REST) in a host whose link a radio
    switches, against the real core where an engine acts: prepare, then
    pre-switch once the preparation is done; the switch instruction comes,
    the MN switches and arrives, both actions end done."""
    run = HandoverCli(world, tmp_path, credentials_file(), down_at=None)
    assert run("preauth", "net-a1")[0] == 0      # an SA to ask its questions with
    act = engine(world)
    prepare = act("prepare", candidates=["net-b1"])
    actions = []
    link = run.link

    def sleep(seconds):      # the engine and the radio, between the MN's polls
        link.sleep(seconds)
        if not actions and world.core.actions.get(prepare).state == "done":
            actions.append(act("pre-switch", network="net-b1", poa="ap-b1-1"))
            link.down_at = link.sleeps + 3    # the radio moves once told to
    run.system["sleep"] = sleep
    rc, out, err = run("follow", "--home", HOME, "--network", "net-a1", "--wait", "0",
                       "--poll", "0.1", "--count", "2", json_out=False, options=["--json"])
    assert rc == 0, err
    lines = out.splitlines()
    events = [json.loads(line) for line in lines[:lines.index("{")]]
    document = json.loads("\n".join(lines[lines.index("{"):]))
    assert [e["event"] for e in events] == ["instruction", "prepared", "reported",
                                            "instruction", "switch", "attached", "reported"]
    assert document["network"] == "net-b1" and document["handled"] == 2
    assert [r["ok"] for r in document["reports"]] == [True, True]
    assert [world.core.actions.get(a).state for a in (prepare, *actions)] == ["done", "done"]
    assert world.core.hosts[NCOA].poa.id == "ap-b1-1" and world.handover().phase == "completed"


@pytest.mark.parametrize("argv", [["follow", "--wait", "31"], ["follow", "--wait", "-1"],
                                  ["follow", "--poll", "0"], ["follow", "--count", "0"],
                                  ["follow", "--for", "soon"], ["follow", "--network", "9net"],
                                  ["follow", "net-b1"]])
def test_cli_follow_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: mpa-mn" in capsys.readouterr().err


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_after_following_a_switch_the_mn_prepares_from_where_it_is(world, tmp_path,
                                                                   credentials_file, channel):
    """Once attached in net-b1 the MN's current address is the nCoA: a prepare
    back to net-a1 discovers from there (in-band through net-b1's router) and
    asks for the tunnel with the nCoA as its outer address."""
    run = HandoverCli(world, tmp_path, credentials_file(), channel=channel, down_at=None)
    run.system["opener"] = opener = RestLayer(world)
    assert run("preauth", "net-a1")[0] == 0
    act = engine(world)
    actions = [act("prepare", candidates=["net-b1"])]
    link = run.link

    def sleep(seconds):      # the engine and the radio, between the MN's polls
        link.sleep(seconds)
        states = [world.core.actions.get(a).state for a in actions]
        if states == ["done"]:
            actions.append(act("pre-switch", network="net-b1", poa="ap-b1-1"))
            link.down_at = link.sleeps + 3
        elif states == ["done", "done"]:
            actions.append(act("prepare", candidates=["net-a1"]))
    run.system["sleep"] = sleep
    rc, out, err = run("follow", "--home", HOME, "--network", "net-a1", "--wait", "0",
                       "--poll", "0.1", "--count", "3", json_out=False, options=["--json"])
    assert rc == 0, err
    lines = out.splitlines()
    document = json.loads("\n".join(lines[lines.index("{"):]))
    assert [r["ok"] for r in document["reports"]] == [True, True, True], document
    sent = ([data for _, data in opener.requests] if channel == "rest"
            else [data for data, (_, port) in run.world.sent if port != PANA_PORT])
    outers = [json.loads(data)["outer"] for data in sent
              if json.loads(data)["type"] == "tunnel-request"]
    assert outers == [MN_ADDRESS, NCOA]

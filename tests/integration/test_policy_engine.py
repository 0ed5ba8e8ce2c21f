"""A policy engine drives the demo MN's handover on the real thing: OVS,
Mininet, the controller process, ``mpa-mn follow`` in the MN's host.

The engine (tests/support/policy_engine.py) knows the API only through
``/mpa/v1/openapi.json``: it asks the network to prepare mn1's candidate,
then to pre-switch; the MN's client gets its instructions by asking its
network (held questions over REST), carries them out and reports, and says
``switch`` when the target's AR buffers, at which point the lab (playing
the radio) moves its link.  A UDP stream to the home address runs through
all of it and must arrive whole.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time

import pytest

from support.lab_rig import REST_PORT, management_fixtures, wait_for
from support.policy_engine import ApiError, PolicyEngine
from mpa_lab.experiment.handover_driver import HandoverDriver, Lines
from mpa_lab.experiment.preconfigure import mpa_mn_command
from mpa_lab.traffic.streams import UdpStream

pytestmark = pytest.mark.integration

MN, CN = "mn1", "cn1"
TARGET_POA = "ap-b1-1"           # net-a1 -> net-b1: another domain's AA
RATE_PPS = 200
ACTION_TIMEOUT_S = 30.0

controller, lab = management_fixtures("controller-policy")


@pytest.fixture(scope="module")
def driver(lab, controller, tmp_path_factory):
    return HandoverDriver(lab, REST_PORT, str(tmp_path_factory.mktemp("mn-state")), "rest",
                          mobile_nodes=controller.mobile_nodes)


@pytest.fixture(scope="module")
def bound(lab, driver):
    result = driver.bind_home(MN, CN)
    assert result.ok, result
    return driver


class Follower:
    """``mpa-mn follow`` in the MN's host; its JSON events read as they come."""

    def __init__(self, lab, driver, network: str):
        command = mpa_mn_command(lab, MN, REST_PORT, driver.state_path(MN), "rest", "follow",
                                 "--home", driver.home_address(MN), "--network", network,
                                 "--wait", "5")
        self.stderr = tempfile.TemporaryFile()
        self.process = lab.host(MN).popen(command, stdout=subprocess.PIPE, stderr=self.stderr)
        self.lines = Lines(self.process.stdout)
        self.seen: list[dict] = []

    def next_event(self, kind: str, timeout_s: float) -> dict:
        deadline = time.monotonic() + timeout_s
        while (line := self.lines.line(deadline)) is not None:
            try:
                event = json.loads(line)
            except ValueError:
                continue
            self.seen.append(event)
            if event.get("event") == kind:
                return event
        self.stderr.seek(0)
        raise AssertionError(f"no {kind} event from mpa-mn follow; seen {self.seen}; "
                             f"stderr {self.stderr.read()[-800:]!r}")

    def stop(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(5)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self.process.stdout.close()
        self.stderr.close()


def finished(engine: PolicyEngine, action_id: int) -> dict:
    def over():
        _, action = engine.call("getAction", action_id=action_id)
        return action if action["state"] in ("done", "failed") else None
    return wait_for(over, ACTION_TIMEOUT_S, f"action {action_id} to end", interval_s=0.1)


def test_a_policy_engine_drives_a_whole_handover(bound, lab, controller, tmp_path):
    engine = PolicyEngine(controller.base_url, controller.tokens["policy-engine"])
    identity = lab.topology.mobile_nodes[MN].identity
    home = bound.home_address(MN)
    here = lab.location[MN]
    target = lab.graph.poa(TARGET_POA)
    _, nodes = engine.call("listMobileNodes")
    assert identity in [n["identity"] for n in nodes]
    before = controller.metrics()
    follower = Follower(lab, bound, here.network)
    try:
        with UdpStream(lab, CN, MN, home, 5011, RATE_PPS, tmp_path / "arrivals.log") as stream:
            # Steps 1-3 by the MN, asked by the engine.
            status, prepare = engine.call("prepareCandidates", identity=identity,
                                          body={"candidates": [target.network]})
            # The follower holds an instructions question open, so the action may be
            # handed to it within the same exchange that answers this call.
            assert status == 202 and prepare["state"] in ("pending", "delivered")
            assert prepare["instruction"]["do"] == "prepare"
            prepared = finished(engine, prepare["id"])
            assert prepared["state"] == "done", prepared
            assert prepared["result"]["prepared"][target.network]["tunnel"] == here.id
            _, node = engine.call("getMobileNode", identity=identity)
            assert node["binding"]["network"] == target.network
            assert node["binding"]["reach"] == {"poa": here.id, "tunnel": True}
            # Step 4 by the network, then 5-6: the MN is told to switch.
            status, pre = engine.call("startPreSwitch", identity=identity,
                                      body={"network": target.network, "poa": target.id})
            assert status == 202 and pre["handover"] is not None
            told = follower.next_event("switch", ACTION_TIMEOUT_S)
            assert (told["network"], told["poa"]) == (target.network, target.id)
            lab.move(MN, target.id, readdress=False)     # the radio
            switched = finished(engine, pre["id"])
            follower.next_event("reported", ACTION_TIMEOUT_S)
        assert switched["state"] == "done", switched
        assert switched["result"]["handover"]["phase"] == "completed"
        assert switched["result"]["handover"]["to_poa"] == target.id
        _, node = engine.call("getMobileNode", identity=identity)
        assert node["binding"]["reach"] == {"poa": target.id, "tunnel": False}
        assert node["handover"] is None and node["instructions"] == []
    finally:
        follower.stop()
    report = stream.analysis([])
    assert (report["lost"], report["duplicated"]) == (0, 0), \
        {k: report[k] for k in ("expected", "received", "lost", "duplicated")}
    after = controller.metrics()
    key = 'mpa_handovers_total{result="completed"}'
    assert after[key] - before.get(key, 0) == 1
    assert after['mpa_events_total{event="action_done"}'] - before.get(
        'mpa_events_total{event="action_done"}', 0) == 2


def test_the_engine_cannot_act_without_its_role_and_changes_nothing(bound, controller):
    reader = PolicyEngine(controller.base_url, controller.tokens["reader"])
    identity = bound.lab.topology.mobile_nodes[MN].identity
    _, before = reader.call("getMobileNode", identity=identity)
    with pytest.raises(ApiError) as refused:
        reader.call("prepareCandidates", identity=identity, body={"candidates": ["net-a1"]})
    assert refused.value.status == 403
    assert refused.value.problem["type"] == "urn:mpa-sdn:problem:forbidden"
    nobody = PolicyEngine(controller.base_url, "not-a-token")
    with pytest.raises(ApiError) as unknown:
        nobody.call("listActions")
    assert unknown.value.status == 401
    _, after = reader.call("getMobileNode", identity=identity)
    assert after["actions"] == before["actions"]

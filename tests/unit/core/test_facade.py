"""The facade's two ways in: reads from the read model, every write through the
worker's door (``exchange``); and the event log the core's parts tell each other by."""

import pytest

from mpa_sdn.controller import Controller
from mpa_sdn.events import EventLog, rfc3339
from mpa_sdn.facade import Busy, Facade, Unavailable, run_here

NETWORK = "net-a1"
WALL_OFFSET = 1_000_000.0


@pytest.fixture
def core(topology):
    return Controller(topology, wall_offset=WALL_OFFSET)


def test_a_policy_change_goes_through_the_worker_like_every_other_write(core):
    calls = []
    here = run_here(lambda: 100.0)

    def exchange(make_origin, call, *args, **kwargs):
        calls.append(call)
        return here(make_origin, call)

    facade = Facade(core, lambda: 100.0, exchange)
    policy = facade.update_policy(NETWORK, {"max_candidates": 2}, "admin")
    assert len(calls) == 1
    assert policy["max_candidates"] == 2 and policy["changed"] == ["max_candidates"]
    assert facade.policy(NETWORK) == policy
    assert core.counters["policy_updated"] == 1


def test_a_policy_change_the_worker_did_not_get_to_is_unavailable_and_not_made_here(core):
    facade = Facade(core, lambda: 100.0, exchange=lambda *a, **k: None)
    before = facade.policy(NETWORK)
    with pytest.raises(Unavailable) as caught:
        facade.update_policy(NETWORK, {"max_candidates": 2}, "admin")
    assert not isinstance(caught.value, Busy), "it was queued: it may yet happen"
    assert facade.policy(NETWORK) == before, "the REST thread wrote nothing itself"
    assert core.events.last_id == 0 and core.counters["policy_updated"] == 0


def test_a_policy_change_refused_before_it_was_queued_is_busy_and_changes_nothing(core):
    def busy(*args, **kwargs):
        raise Busy("the controller is too busy to take it now; nothing was done")

    facade = Facade(core, lambda: 100.0, exchange=busy)
    before = facade.policy(NETWORK)
    with pytest.raises(Busy):
        facade.update_policy(NETWORK, {"dwell_s": 5.0}, "admin")
    assert facade.policy(NETWORK) == before and core.events.last_id == 0


def test_a_policy_event_carries_the_time_the_core_made_the_change(core):
    facade = Facade(core, lambda: 100.0)
    facade.update_policy(NETWORK, {"dwell_s": 5.0}, "admin")
    [event] = facade.events_after(0)[0]
    assert event["type"] == "policy" and event["network"] == NETWORK
    assert event["time"] == rfc3339(WALL_OFFSET + 100.0)


def test_a_policy_field_no_policy_has_is_refused_counted_and_changes_nothing(core):
    facade = Facade(core, lambda: 100.0)
    before = facade.policy(NETWORK)
    with pytest.raises(ValueError, match="no policy field 'colour'"):
        facade.update_policy(NETWORK, {"colour": "blue"}, "admin")
    assert facade.policy(NETWORK) == before and core.events.last_id == 0
    assert core.counters["policy_refused_unknown_field"] == 1


def test_reads_change_no_state(core):
    facade = Facade(core, lambda: 100.0)
    counters = dict(core.counters)
    reads = [facade.networks(), facade.network(NETWORK), facade.neighbours(NETWORK),
             facade.switches(), facade.counters(), facade.sas(), facade.mobile_nodes(),
             facade.handovers(), facade.leases(NETWORK), facade.pool(NETWORK),
             facade.actions(), facade.policy(NETWORK), facade.events_after(0)]
    assert reads[1]["id"] == NETWORK and reads[-1] == ([], False)
    assert dict(core.counters) == counters and core.events.last_id == 0


def test_followers_react_after_the_event_is_logged_and_in_the_order_they_followed():
    log = EventLog()
    seen = []
    log.follow("sa", lambda event, now: seen.append(("first", event["id"], now)))
    log.follow("sa", lambda event, now: (seen.append(("second", event["id"], now)),
                                         log.emit("tunnel", data={})))
    log.follow("tunnel", lambda event, now: seen.append(("tunnel", event["id"], now)))
    log.at(7.0)
    log.emit("sa", data={})
    assert seen == [("first", 1, 7.0), ("second", 1, 7.0), ("tunnel", 2, 7.0)]
    assert [e["type"] for e in log.after(0)[0]] == ["sa", "tunnel"]


def test_no_kind_of_event_is_followed_that_no_part_emits():
    with pytest.raises(AssertionError):
        EventLog().follow("no-such-kind", lambda event, now: None)

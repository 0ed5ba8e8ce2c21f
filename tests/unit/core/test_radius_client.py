"""The AA's outstanding RADIUS requests: Identifiers per server,
retransmission with the same Identifier and Request Authenticator, the
RFC 5080 §2.2.1 timers, failover to the next server, a dead server skipped
and tried again after its dead time, the bound on outstanding requests and
late answers, each counted."""

from __future__ import annotations

import collections
import itertools
import random

import pytest

from mpa_sdn.radius import RadiusError
from mpa_sdn.radius_client import RadiusClient, RadiusServer, RetransmitSettings
from support import radius_answers

PRIMARY = RadiusServer("10.0.0.1", 1812, b"one")
SECONDARY = RadiusServer("10.0.0.2", 1812, b"two")
EAP = b"\x02\x01\x00\x09\x01mn1@a"


def entropy():
    counter = itertools.count()
    return lambda n: bytes([next(counter) % 256]) * n


def client(servers=(PRIMARY, SECONDARY), jitter=0.0, uniform=lambda: 0.5, **settings):
    counters = collections.Counter()
    rc = RadiusClient(list(servers), RetransmitSettings(jitter=jitter, **settings), counters,
                      entropy(), uniform, nas_identifier="aa.a.example")
    return rc, counters


def send(rc, key="s1", now=0.0):
    return rc.send(key, now, eap=EAP, user_name="mn1@a", calling_station_id="02-00-00-00-00-01")


def challenge_for(datagram, server: RadiusServer) -> bytes:
    """The server's Access-Challenge to ``datagram``."""
    request = datagram.data
    return radius_answers.answer(11, [(79, b"\x01\x02\x00\x04")], identifier=request[1],
                                 secret=server.secret, request_auth=request[4:20])


def run_until_sent(rc, start, limit=200.0):
    """Ticks at every due time from ``start``; (time, tick) of each tick that did something."""
    now, ticks = start, []
    while rc.due(now) is not None and now < limit:
        now += rc.due(now)
        tick = rc.tick(now)
        ticks.append((now, tick))
    return ticks


def test_a_retransmission_is_the_same_datagram_identifier_and_authenticator():
    rc, counters = client()
    first = send(rc)
    assert rc.due(0.0) == 2.0
    assert rc.tick(1.9).send == []
    again = rc.tick(2.0).send
    assert again == [first]
    assert counters["radius_retransmissions"] == 1


def test_timeouts_double_up_to_the_maximum_and_stop_at_the_count():
    rc, _ = client(servers=(PRIMARY,), max_count=5, max_rt_s=8.0, max_duration_s=100.0)
    send(rc)
    ticks = run_until_sent(rc, 0.0)
    assert [t for t, tick in ticks if tick.send] == [2.0, 6.0, 14.0, 22.0, 30.0]
    assert ticks[-1][0] == 38.0 and ticks[-1][1].failed[0].key == "s1"


def test_the_jitter_moves_each_timeout_within_its_bound():
    rc, _ = client(servers=(PRIMARY,), jitter=0.1, uniform=lambda: 1.0, max_count=2)
    send(rc)
    assert rc.due(0.0) == pytest.approx(2.2)
    rc.tick(2.2)
    assert rc.due(2.2) == pytest.approx(2 * 2.2 + 0.22)
    rc2, _ = client(servers=(PRIMARY,), jitter=0.1, uniform=lambda: 0.0)
    send(rc2)
    assert rc2.due(0.0) == pytest.approx(1.8)


def test_the_maximum_duration_ends_the_tries_on_a_server():
    rc, _ = client(servers=(PRIMARY,), max_count=10, max_duration_s=5.0)
    send(rc)
    ticks = run_until_sent(rc, 0.0)
    assert [t for t, _ in ticks] == [2.0, 5.0]
    assert ticks[-1][1].failed and not ticks[-1][1].send


def test_exhausted_retransmissions_fail_over_with_a_new_identifier_and_authenticator():
    rc, counters = client(max_count=1)
    first = send(rc)
    rc.tick(2.0)
    moved = rc.tick(6.0).send
    assert [(d.address, d.port) for d in moved] == [("10.0.0.2", 1812)]
    assert moved[0].data[4:20] != first.data[4:20]
    assert counters["radius_failovers"] == 1 and counters["radius_server_marked_dead"] == 1
    done = rc.answer(challenge_for(moved[0], SECONDARY), ("10.0.0.2", 1812))
    assert done.key == "s1" and done.server == SECONDARY and done.answer.kind == "challenge"


def test_a_dead_server_is_skipped_then_tried_again_after_its_dead_time():
    rc, counters = client(max_count=0, dead_time_s=60.0)
    send(rc, "s1", 0.0)
    rc.tick(2.0)                                   # primary marked dead at 2.0
    assert send(rc, "s2", 10.0).address == "10.0.0.2"
    assert send(rc, "s3", 62.0).address == "10.0.0.1"
    assert counters["radius_server_marked_dead"] == 1


def test_a_late_answer_from_a_dead_server_does_not_bring_it_back():
    rc, _ = client(max_count=0)
    late = send(rc, "s1", 0.0)
    rc.tick(2.0)                                   # s1 moved to the secondary
    with pytest.raises(RadiusError) as e:
        rc.answer(challenge_for(late, PRIMARY), ("10.0.0.1", 1812))
    assert e.value.reason == "late"
    assert send(rc, "s2", 3.0).address == "10.0.0.2"


def test_a_matched_answer_from_a_dead_server_brings_it_back():
    rc, counters = client(max_count=0)
    send(rc, "s1", 0.0)
    rc.tick(2.0)
    rc.tick(4.0)                                   # both dead now
    tried = send(rc, "s2", 10.0)
    assert tried.address == "10.0.0.1" and counters["radius_all_servers_dead"] == 1
    rc.answer(challenge_for(tried, PRIMARY), ("10.0.0.1", 1812))
    assert send(rc, "s3", 11.0).address == "10.0.0.1"
    assert counters["radius_all_servers_dead"] == 1


def test_when_every_server_failed_the_request_fails_and_is_counted():
    rc, counters = client(max_count=0)
    send(rc)
    rc.tick(2.0)
    tick = rc.tick(4.0)
    assert [f.reason for f in tick.failed] == ["no-answer"] and rc.outstanding == 0
    assert counters["radius_requests_failed"] == 1 and rc.due(4.0) is None


def test_when_every_server_is_dead_the_first_to_revive_is_tried_anyway():
    rc, counters = client(max_count=0, dead_time_s=60.0)
    send(rc)
    rc.tick(2.0)
    rc.tick(4.0)                                   # both dead: primary until 62, secondary 64
    assert send(rc, "s2", 10.0).address == "10.0.0.1"
    assert counters["radius_all_servers_dead"] == 1


def test_outstanding_requests_are_bounded_and_overflow_is_refused_and_counted():
    rc, counters = client(max_outstanding=2)
    send(rc, "s1")
    send(rc, "s2")
    with pytest.raises(RadiusError) as e:
        send(rc, "s3")
    assert e.value.reason == "overflow" and counters["radius_outstanding_overflow"] == 1
    assert rc.outstanding == 2


def test_a_request_that_cannot_be_encoded_is_refused_counted_and_not_kept():
    rc, counters = client()
    with pytest.raises(RadiusError) as e:
        rc.send("s1", 0.0, eap=EAP, user_name="x" * 300, calling_station_id="m")
    assert e.value.reason == "malformed" and counters["radius_request_malformed"] == 1
    assert rc.outstanding == 0 and rc.due(0.0) is None


def test_a_new_round_for_the_same_key_supersedes_the_outstanding_one():
    rc, counters = client(max_outstanding=1)
    old = send(rc, "s1")
    new = send(rc, "s1", 1.0)
    assert new.data[1] != old.data[1] and rc.outstanding == 1
    assert counters["radius_requests_superseded"] == 1


def test_identifiers_are_unique_per_server_among_outstanding_requests():
    rc, _ = client(servers=(PRIMARY,), max_outstanding=256)
    ids = {send(rc, f"s{i}").data[1] for i in range(256)}
    assert len(ids) == 256
    rc.cancel("s5")
    assert send(rc, "again").data[1] == 5


def test_a_late_or_duplicate_answer_is_refused_and_counted():
    rc, counters = client()
    datagram = send(rc)
    data = challenge_for(datagram, PRIMARY)
    assert rc.answer(data, ("10.0.0.1", 1812)).key == "s1"
    with pytest.raises(RadiusError) as e:
        rc.answer(data, ("10.0.0.1", 1812))
    assert e.value.reason == "late" and counters["radius_refused_late"] == 1


def test_a_refused_answer_leaves_the_request_outstanding():
    rc, counters = client()
    datagram = send(rc)
    forged = challenge_for(datagram, RadiusServer("10.0.0.1", 1812, b"wrong"))
    with pytest.raises(RadiusError) as e:
        rc.answer(forged, ("10.0.0.1", 1812))
    assert e.value.reason == "bad-authenticator" and counters["radius_refused_bad_authenticator"] == 1
    assert rc.outstanding == 1
    assert rc.answer(challenge_for(datagram, PRIMARY), ("10.0.0.1", 1812)).key == "s1"


@pytest.mark.parametrize("data, source, reason", [
    (b"\x0b", ("10.0.0.1", 1812), "malformed"),
    (b"\x0b\x00" + bytes(18), ("10.9.9.9", 1812), "unknown-server"),
])
def test_answers_from_nowhere_or_of_nothing_are_refused(data, source, reason):
    rc, counters = client()
    send(rc)
    with pytest.raises(RadiusError) as e:
        rc.answer(data, source)
    assert e.value.reason == reason
    assert counters[f"radius_refused_{reason.replace('-', '_')}"] == 1
    assert rc.outstanding == 1


@pytest.mark.parametrize("settings, named", [
    (dict(initial_rt_s=20.0, max_rt_s=10.0), "max_rt_s"), (dict(initial_rt_s=0.0), "initial_rt_s"),
    (dict(jitter=1.0), "jitter"), (dict(max_outstanding=0), "max_outstanding"),
    (dict(max_count=-1, dead_time_s=-1.0), "max_count, dead_time_s")])
def test_settings_out_of_range_are_refused_by_name(settings, named):
    with pytest.raises(ValueError, match=named):
        RetransmitSettings(**settings)


def user_name_of(datagram) -> str:
    at, data = 20, datagram.data
    while data[at] != 1:
        at += data[at + 1]
    return data[at + 2:at + data[at + 1]].decode()


def test_random_rounds_keep_every_bound_and_match_answers_only_to_their_own_request():
    """Sends, cancels, ticks and answers (current and stale) at random: the
    bound holds, outstanding requests never share a server's Identifier, an
    answer to a request's current datagram completes that request and no
    other, a stale one completes nothing, and every request is accounted for."""
    rng = random.Random(5080)
    rc, counters = client(max_outstanding=8, max_count=2, dead_time_s=5.0, jitter=0.1,
                          uniform=rng.random)
    servers = {(s.address, s.port): s for s in (PRIMARY, SECONDARY)}
    current, stale, now = {}, [], 0.0
    ended = collections.Counter()
    for _ in range(3000):
        now += rng.choice([0.0, 0.1, 0.5, 2.0, 8.0])
        op = rng.randrange(7) % 5
        key = f"k{rng.randrange(12)}"
        if op == 0:
            try:
                datagram = rc.send(key, now, eap=EAP, user_name=key, calling_station_id="m")
            except RadiusError as e:
                assert e.reason == "overflow" and len(current) == 8 and key not in current
                continue
            if key in current:
                stale.append(current[key])
                ended["superseded"] += 1
            current[key] = datagram
        elif op == 1 and key in current:
            rc.cancel(key)
            stale.append(current.pop(key))
            ended["cancelled"] += 1
        elif op == 2:
            tick = rc.tick(now)
            for failed in tick.failed:
                stale.append(current.pop(failed.key))
                ended["failed"] += 1
            for datagram in tick.send:
                name = user_name_of(datagram)
                if datagram != current[name]:
                    stale.append(current[name])      # failed over: a new datagram
                current[name] = datagram
        elif op == 3 and current:
            name = sorted(current)[rng.randrange(len(current))]
            datagram = current.pop(name)
            server = servers[(datagram.address, datagram.port)]
            done = rc.answer(challenge_for(datagram, server), (datagram.address, datagram.port))
            assert done.key == name
            stale.append(datagram)
            ended["completed"] += 1
        elif op == 4 and stale:
            datagram = stale[rng.randrange(len(stale))]
            server = servers[(datagram.address, datagram.port)]
            with pytest.raises(RadiusError):
                rc.answer(challenge_for(datagram, server), (datagram.address, datagram.port))
        assert rc.outstanding == len(current) <= 8
        in_use = [(d.address, d.data[1]) for d in current.values()]
        assert len(in_use) == len(set(in_use))
    assert counters["radius_requests_sent"] == len(current) + sum(ended.values())
    assert counters["radius_requests_failed"] == ended["failed"] > 0
    assert counters["radius_failovers"] > 0 and counters["radius_outstanding_overflow"] > 0


def test_every_domains_next_due_follows_each_change_and_is_not_asked_of_each_client_again():
    """The worker asks after every event; the domains' clients are asked only
    after a request, an answer, a tick or a forget changed something."""
    from mpa_sdn.aaa import DomainsAaa
    aaa = DomainsAaa({"a": [PRIMARY], "b": [SECONDARY]}, RetransmitSettings(jitter=0.0),
                     collections.Counter(), entropy(), lambda: 0.5, lambda d: f"aa.{d}")
    asked = []
    for rc in aaa.clients.values():
        rc.next_deadline = lambda ask=rc.next_deadline: asked.append(1) or ask()

    def request(key, domain, now):
        [datagram], why = aaa.request(domain, key, EAP, user_name="mn1@a", state=None,
                                      calling_station="02-00-00-00-00-01",
                                      called_station="aa", now=now)
        return datagram
    assert aaa.next_due() is None
    first = request("s1", "a", 0.0)
    assert aaa.next_due() == 2.0
    request("s2", "b", 1.0)
    assert aaa.next_due() == 2.0
    calls = len(asked)
    for _ in range(5):
        assert aaa.next_due() == 2.0
    assert len(asked) == calls, "nothing changed: no client asked"
    aaa.tick(2.0)                        # s1 sent again, due at 2 + 4
    assert aaa.next_due() == 3.0         # s2's first timeout
    aaa.forget("s2")
    assert aaa.next_due() == 6.0
    assert aaa.answer(challenge_for(first, PRIMARY), (PRIMARY.address, PRIMARY.port))
    assert aaa.next_due() is None

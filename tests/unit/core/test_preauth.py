"""Pre-authentication with the AA: mutual proof, SA states, refusals."""

import pytest

from mpa_mn import protocol
from mpa_protocol import messages
from mpa_sdn.mpa_sa import AUTHORIZED, EXPIRED, HELD, PRE_AUTHENTICATED
from mpa_sdn.service import INBAND
from support.service_rig import IDENTITY, MN_MAC, PSK_A, PSK_B, Rig, counter_entropy


def test_mn_and_aa_derive_the_same_keys_without_sending_one():
    rig = Rig()
    state = rig.preauth()
    sa = rig.service.aa.sas[state.sa]
    assert sa.keys.as_hex() == state.keys.as_hex()
    assert sa.state == PRE_AUTHENTICATED and sa.network == "net-b1"
    # The three derived keys are distinct from each other.
    assert len(set(state.keys.as_hex().values())) == 3


def test_keys_differ_per_network_and_per_run():
    rig = Rig()
    b1 = rig.preauth("net-b1", PSK_B, "domain-b")
    a2 = rig.preauth("net-a2", PSK_A, "domain-a")
    assert b1.keys.mn_ca != a2.keys.mn_ca
    again = rig.preauth("net-b1", PSK_B, "domain-b")
    assert again.keys.mn_ca != b1.keys.mn_ca
    assert len(rig.service.aa.sas) == 2  # the second SA for net-b1 replaced the first


def test_each_domain_uses_only_its_own_store():
    rig = Rig()
    # domain-a's key does not authenticate with domain-b's network.
    with pytest.raises(protocol.ProtocolError) as err:
        rig.preauth("net-b1", PSK_A, "domain-b")
    assert err.value.code == "authentication-failed"


def test_unknown_identity_and_wrong_key_look_the_same():
    rig = Rig()
    answers = []
    for identity, psk in (("nobody@domain-b", PSK_B), (IDENTITY, b"x" * 32)):
        run = protocol.PreAuthentication(identity, psk, "net-b1", MN_MAC,
                                         entropy=counter_entropy(identity.encode()))
        challenge = rig.one(run.init(), "net-b1")
        assert challenge.status == 200  # a challenge, known identity or not
        answer = rig.one(run.response(challenge.body), "net-b1")
        answers.append((answer.status, answer.fields["code"], answer.fields["message"]))
    assert answers[0] == answers[1] == (403, "authentication-failed", "authentication failed")
    assert rig.service.aa.sas == {}


def test_a_forged_aa_is_detected_by_the_mn():
    rig = Rig()
    run = protocol.PreAuthentication(IDENTITY, PSK_B, "net-b1", MN_MAC)
    challenge = rig.one(run.init(), "net-b1")
    success = rig.one(run.response(challenge.body), "net-b1")
    forged = dict(success.fields, proof="00" * 32)
    with pytest.raises(protocol.ProtocolError) as err:
        run.finish(messages.encode(forged), "domain-b")
    assert err.value.code == "aa-not-authenticated"


def test_failures_are_rate_limited_per_identity():
    rig = Rig()
    limit = rig.topology.mpa.failures_per_identity
    for i in range(limit):
        with pytest.raises(protocol.ProtocolError):
            rig.preauth("net-b1", b"w" * 32, "domain-b", source=f"10.1.1.{i + 2}")
    with pytest.raises(protocol.ProtocolError) as err:
        rig.preauth("net-b1", PSK_B, "domain-b", source="10.1.1.50")
    assert err.value.code == "rate-limited"
    assert err.value.answer["retry_after"] >= 1
    rig.now += rig.topology.mpa.lockout_s + 1
    assert rig.preauth("net-b1", PSK_B, "domain-b").network == "net-b1"


def test_failures_are_rate_limited_per_source():
    rig = Rig()
    for i in range(rig.topology.mpa.failures_per_source):
        with pytest.raises(protocol.ProtocolError):
            rig.preauth("net-b1", b"w" * 32, "domain-b", identity=f"u{i}@domain-b")
    with pytest.raises(protocol.ProtocolError) as err:
        rig.preauth("net-b1", PSK_B, "domain-b")
    assert err.value.code == "rate-limited"


def test_retransmitted_init_and_response_get_the_same_answers():
    rig = Rig()
    run = protocol.PreAuthentication(IDENTITY, PSK_B, "net-b1", MN_MAC)
    first = rig.one(run.init(), "net-b1")
    assert rig.one(run.init(), "net-b1").fields == first.fields
    response = run.response(first.body)
    success = rig.one(response, "net-b1")
    assert rig.one(response, "net-b1").fields == success.fields
    assert len(rig.service.aa.sas) == 1 and rig.counters["sa_created"] == 1


def test_in_band_junk_gets_silence_and_rest_gets_an_error():
    rig = Rig()
    for junk in (b"", b"{", b"[]", b'{"v":1,"type":"nope"}', b"x" * 5000,
                 b'{"v":2,"type":"discover"}'):
        assert rig.send(junk, "net-b1", channel=INBAND, mac=MN_MAC) == []
        answer = rig.one(junk, "net-b1")
        assert answer.status in (400, 413) and answer.fields["type"] == "error"
    assert rig.service.aa.sas == {} and rig.service.aa.sessions == {}


def test_a_message_for_another_network_is_refused():
    rig = Rig()
    run = protocol.PreAuthentication(IDENTITY, PSK_B, "net-b1", MN_MAC)
    answer = rig.one(run.init(), "net-a2")
    assert (answer.status, answer.fields["code"]) == (409, "wrong-network")
    assert rig.one(run.init(), "net-cn").fields["code"] in ("wrong-network",)
    cn = protocol.PreAuthentication(IDENTITY, PSK_B, "net-cn", MN_MAC)
    assert rig.one(cn.init(), "net-cn").fields["code"] == "not-served"


def test_in_band_mac_must_match_the_sender():
    rig = Rig()
    run = protocol.PreAuthentication(IDENTITY, PSK_B, "net-b1", MN_MAC)
    assert rig.send(run.init(), "net-b1", channel=INBAND, mac="02:00:00:00:09:09") == []
    assert rig.counters["signal_refused_malformed"] == 1
    assert rig.service.aa.sessions == {}


def test_states_follow_attachment_and_hold():
    rig = Rig()
    b1 = rig.preauth("net-b1", PSK_B, "domain-b")
    a2 = rig.preauth("net-a2", PSK_A, "domain-a")
    sas = rig.service.aa.sas
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    assert (sas[b1.sa].state, sas[a2.sa].state) == (AUTHORIZED, PRE_AUTHENTICATED)
    rig.seen(MN_MAC, "10.1.2.100", "net-a2")
    assert (sas[b1.sa].state, sas[a2.sa].state) == (HELD, AUTHORIZED)
    # Back in net-b1: still held until the MN proves possession of the SA.
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    assert sas[b1.sa].state == HELD
    data, seq = protocol.request(b1, "resume")
    answer = rig.one(data, "net-b1")
    assert protocol.check_answer(b1, answer.body, seq, "resumed")["state"] == AUTHORIZED
    assert sas[b1.sa].state == AUTHORIZED


def test_a_held_sa_expires_after_the_hold_time_and_is_then_removed():
    rig = Rig()
    b1 = rig.preauth("net-b1", PSK_B, "domain-b")
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    rig.seen(MN_MAC, "10.1.1.100", "net-a1")
    rig.now += rig.topology.mpa.sa_hold_s + 1
    rig.service.tick(rig.now)
    assert rig.service.aa.sas[b1.sa].state == EXPIRED
    data, seq = protocol.request(b1, "resume")
    assert rig.one(data, "net-b1").fields["code"] == "sa-expired"
    rig.now += 301
    rig.service.tick(rig.now)
    assert b1.sa not in rig.service.aa.sas
    assert rig.one(protocol.request(b1, "resume")[0], "net-b1").fields["code"] == "unknown-sa"


def test_in_band_discovery_fits_one_datagram():
    import dataclasses
    rig = Rig()
    small = dataclasses.replace(rig.topology.mpa, max_message_bytes=500)
    rig = Rig(topology=dataclasses.replace(rig.topology, mpa=small))
    data = protocol.discover()
    inband = rig.one(data, "net-a1", channel=INBAND, mac=MN_MAC)
    assert len(inband.body) <= 500 and inband.fields["truncated"] is True
    assert [c["network"] for c in inband.fields["candidates"]] == ["net-a2"]
    full = rig.one(data, "net-a1")   # REST has them all
    assert [c["network"] for c in full.fields["candidates"]] == ["net-a2", "net-b1"]
    assert "truncated" not in full.fields


def test_the_failure_limiter_keeps_within_its_bound():
    from mpa_sdn.failure_limiter import FailureLimiter
    limiter = FailureLimiter(limit=5, window_s=60, lockout_s=60, max_keys=3)
    for i in range(10):
        limiter.failed(f"10.9.9.{i}", 100.0)
    assert len(limiter._failures) == 3 and limiter.evicted == 7


def test_an_authorized_sa_is_held_when_its_mn_leaves_for_anywhere():
    rig = Rig()
    b1 = rig.preauth("net-b1", PSK_B, "domain-b")
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    rig.left("02:00:00:00:09:09", "net-b1")   # someone else
    assert rig.service.aa.sas[b1.sa].state == AUTHORIZED
    rig.left(MN_MAC, "net-b1")
    rig.now += 1
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")   # at another PoA of net-b1: it did not leave
    rig.service.tick(rig.now + 10)
    assert rig.service.aa.sas[b1.sa].state == AUTHORIZED
    rig.left(MN_MAC, "net-b1")
    rig.service.tick(rig.now + 1)
    assert rig.service.aa.sas[b1.sa].state == AUTHORIZED   # not yet: it may come back
    rig.service.tick(rig.now + 10)
    assert rig.service.aa.sas[b1.sa].state == HELD

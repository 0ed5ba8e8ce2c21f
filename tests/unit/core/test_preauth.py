"""Pre-authentication with the AA by PANA and the domain's RADIUS server:
keys made at both ends and never sent, SA states, refusals and their limits."""

import dataclasses

import pytest

from mpa_mn import protocol
from mpa_mn.credentials import EAP_TTLS_PAP
from mpa_mn.eap_peer import EapPeer
from mpa_mn.pana_client import PanaClient
from mpa_protocol import pana
from mpa_protocol.pana import PanaMessage
from mpa_sdn.mpa_sa import AUTHORIZED, EXPIRED, HELD, PRE_AUTHENTICATED
from mpa_sdn.service import INBAND
from mpa_sdn.pana_agent import PanaReply
from support.aaa import drive, pkis, preauthenticate
from support.service_rig import IDENTITY, MN_MAC, Rig, counter_entropy


def test_mn_and_aa_derive_the_same_keys_without_sending_one():
    rig = Rig()
    state = rig.preauth()
    sa = rig.service.aa.sas[state.sa]
    assert sa.keys.as_hex() == state.keys.as_hex()
    assert sa.state == PRE_AUTHENTICATED and sa.network == "net-b1"
    # The three derived keys are distinct from each other.
    assert len(set(state.keys.as_hex().values())) == 3
    # No key, MSK or PANA_AUTH_KEY crossed to the MN: only RADIUS carried the MSK.
    sent = b"".join(rig.radius.answers)
    assert all(bytes.fromhex(k) not in sent for k in state.keys.as_hex().values())


def test_keys_differ_per_network_and_per_run():
    rig = Rig()
    b1 = rig.preauth("net-b1", "domain-b")
    a2 = rig.preauth("net-a2", "domain-a")
    assert b1.keys.mn_ca != a2.keys.mn_ca
    again = rig.preauth("net-b1", "domain-b")
    assert again.keys.mn_ca != b1.keys.mn_ca
    assert len(rig.service.aa.sas) == 2  # the second SA for net-b1 replaced the first
    assert rig.counters["sa_replaced"] == 1


def test_each_domain_asks_only_its_own_radius_servers():
    rig = Rig()
    # domain-a's servers answer nothing: net-b1 (domain-b) does not need them.
    rig.radius.down |= {(s.address, s.port)
                        for s in rig.topology.domains["domain-a"].radius.servers}
    state = rig.preauth("net-b1", "domain-b")
    assert state.network == "net-b1"
    assert rig.counters["radius_retransmissions"] == 0 and rig.counters["radius_requests_sent"] > 0


def ttls_client(rig, identity, password_file, entropy_seed):
    credentials = dataclasses.replace(pkis()["domain-b"].credentials(identity, EAP_TTLS_PAP),
                                      password_file=str(password_file))
    return PanaClient(EapPeer(credentials.identity, credentials.eap_method()), True,
                      entropy=counter_entropy(entropy_seed))


def test_unknown_identity_and_wrong_password_look_the_same(tmp_path):
    rig = Rig()
    wrong = tmp_path / "wrong"
    wrong.write_text("not the password\n")
    right = pkis()["domain-b"].password_file
    results = []
    for identity, password_file in (("nobody@domain-b", right), (IDENTITY, wrong)):
        client = ttls_client(rig, identity, password_file, identity.encode())
        drive(client, lambda data: rig.pana(data, "net-b1"), rig.radius_answer, rig.radius)
        results.append(client.result)
    assert results == ["authentication-rejected"] * 2
    assert rig.counters["pana_authentication_rejected"] == 2
    assert rig.service.aa.sas == {}


def test_a_forged_aa_is_detected_by_the_mn():
    """A final PAR whose AUTH is not under the MSK's key: no SA at the MN."""
    rig = Rig()

    def forging(answer, source):   # the final PAR follows the Access-Accept
        out = rig.radius_answer(answer, source)
        return [dataclasses.replace(r, data=r.data[:-1] + bytes([r.data[-1] ^ 1]))
                if isinstance(r, PanaReply) and PanaMessage.decode(r.data, 4096).has(pana.FLAG_C)
                else r for r in out]
    with pytest.raises(protocol.ProtocolError) as err:
        preauthenticate(lambda data: rig.pana(data, "net-b1"), forging, rig.radius, "net-b1",
                        "domain-b")
    assert err.value.code == "aa-not-authenticated"
    # The AA made the SA with its final PAR; no PAN comes, the MN never uses
    # it: when the session ends, the SA goes too.
    [sa] = rig.service.aa.sas.values()
    rig.now += rig.topology.mpa.pana_session_s + 1
    rig.service.tick(rig.now)
    assert rig.service.aa.sas == {} and rig.counters["sa_abandoned"] == 1
    assert rig.counters["pana_sessions_established"] == 0


def test_failures_are_rate_limited_per_identity():
    rig = Rig()
    rig.radius.revoked.add(IDENTITY)
    limit = rig.topology.mpa.failures_per_identity
    for i in range(limit):
        with pytest.raises(protocol.ProtocolError) as err:
            rig.preauth("net-b1", "domain-b", source=f"10.1.1.{i + 2}")
        assert err.value.code == "authentication-rejected"
    rig.radius.revoked.clear()
    with pytest.raises(protocol.ProtocolError) as err:
        rig.preauth("net-b1", "domain-b", source="10.1.1.50")
    assert err.value.code == "authorization-rejected"
    assert rig.counters["pana_rate_limited"] == 1
    rig.now += rig.topology.mpa.lockout_s + 1
    assert rig.preauth("net-b1", "domain-b").network == "net-b1"


def test_failures_are_rate_limited_per_source(tmp_path):
    rig = Rig()
    for i in range(rig.topology.mpa.failures_per_source):
        client = ttls_client(rig, f"u{i}@domain-b", pkis()["domain-b"].password_file,
                             b"u%d" % i)
        drive(client, lambda data: rig.pana(data, "net-b1"), rig.radius_answer, rig.radius)
        assert client.result == "authentication-rejected"
    # The next PCI from that address is dropped before it costs a session.
    client = PanaClient(EapPeer(IDENTITY, pkis()["domain-b"].credentials(IDENTITY)
                                .eap_method()), True)
    assert rig.pana(client.initiation(), "net-b1") == []
    assert rig.counters["pana_dropped_rate_limited"] == 1
    assert rig.service.paa.sessions == {}
    assert rig.preauth(source="10.1.1.77").network == "net-b1"   # anyone else gets in


def test_in_band_junk_gets_silence_and_rest_gets_an_error():
    rig = Rig()
    for junk in (b"", b"{", b"[]", b'{"v":1,"type":"nope"}', b"x" * 5000,
                 b'{"v":2,"type":"discover"}'):
        assert rig.send(junk, "net-b1", channel=INBAND, mac=MN_MAC) == []
        answer = rig.one(junk, "net-b1")
        assert answer.status in (400, 413) and answer.fields["type"] == "error"
        assert rig.pana(junk, "net-b1") == []
    assert rig.service.aa.sas == {} and rig.service.paa.sessions == {}


def test_a_session_message_to_another_network_is_dropped():
    rig = Rig()
    client = PanaClient(EapPeer(IDENTITY, pkis()["domain-b"].credentials(IDENTITY)
                                .eap_method()), True)
    [par] = rig.pana(client.initiation(), "net-b1")
    pan = client.receive(par.data)
    assert rig.pana(pan, "net-a2") == []
    assert rig.counters["pana_dropped_wrong_peer"] == 1
    [session] = rig.service.paa.sessions.values()
    assert session.phase == "starting" and session.identity is None
    assert rig.pana(client.initiation(), "net-cn") == []
    assert rig.counters["pana_dropped_not_served"] == 1


def test_the_mac_a_pana_exchange_came_from_proves_the_mns_claim():
    """In-band on a link of ours, the frame's source MAC is recorded; the
    first signed message naming it binds it as proven, any other as claimed."""
    rig = Rig()
    seen = rig.preauth(seen_mac=MN_MAC)
    rig.bind(seen)
    routed = rig.preauth("net-a2", "domain-a")
    rig.bind(routed)
    sas = rig.service.aa.sas
    assert (sas[seen.sa].mn_mac, sas[seen.sa].proven) == (MN_MAC, True)
    assert (sas[routed.sa].mn_mac, sas[routed.sa].proven) == (MN_MAC, False)


def test_states_follow_attachment_and_hold():
    rig = Rig()
    b1 = rig.preauth("net-b1", "domain-b")
    a2 = rig.preauth("net-a2", "domain-a")
    rig.bind(b1)
    rig.bind(a2)
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


def test_an_sa_without_a_mac_is_not_authorized_by_an_arrival():
    """Until its first signed message the SA has no MAC: a host seen with
    the MN's MAC authorizes nothing."""
    rig = Rig()
    b1 = rig.preauth()
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    assert rig.service.aa.sas[b1.sa].state == PRE_AUTHENTICATED
    rig.bind(b1)   # attached there: authorized at its binding
    assert rig.service.aa.sas[b1.sa].state == AUTHORIZED


def test_a_held_sa_expires_after_the_hold_time_and_is_then_removed():
    rig = Rig()
    b1 = rig.preauth("net-b1", "domain-b")
    rig.bind(b1)
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
    b1 = rig.preauth("net-b1", "domain-b")
    rig.bind(b1)
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


def test_an_sa_is_usable_before_its_final_pan_and_kept_if_that_pan_is_lost():
    """The MN's next request may come before its PAN[C] (REST is quicker
    than a datagram through the switches), or the PAN may be lost: the SA
    made with the final PAR serves, and an SA in use outlives its session."""
    rig = Rig()
    rig.settle_dad()

    def losing_the_final_pan(data):
        if PanaMessage.decode(data, 4096).has(pana.FLAG_C):
            return []
        return rig.pana(data, "net-b1")
    state = preauthenticate(losing_the_final_pan, rig.radius_answer, rig.radius, "net-b1",
                            "domain-b")
    assert rig.configure(state)["address"] == "10.2.1.100"
    rig.now += rig.topology.mpa.pana_session_s + 1
    rig.service.tick(rig.now)
    assert list(rig.service.aa.sas) == [state.sa] and rig.counters["sa_abandoned"] == 0
    assert rig.counters["pana_sessions_established"] == 0

"""Hostile senders: what the AA and CA refuse, and that refusing changes nothing."""

import collections

import pytest

from mpa_mn import protocol
from mpa_sdn import dhcp, signalling
from mpa_sdn.aa import SESSIONS_PER_SOURCE
from mpa_sdn.service import INBAND
from mpa_sdn.store import MemoryStore
from mpa_rig import EVE, IDENTITY, MN_MAC, PSK_B, PSK_EVE, Rig

EVE_MAC = "02:00:00:00:0e:0e"


def configure(rig, state):
    data, seq = protocol.request(state, "config-request")
    answers = rig.send(data, state.network) or rig.settle_dad()
    return protocol.check_answer(state, answers[0].body, seq, "config")


def test_another_subscriber_cannot_claim_an_mns_mac_or_its_lease():
    rig = Rig()
    rig.settle_dad()
    victim = configure(rig, rig.preauth())
    # Over REST nobody sees the MAC: Eve names the victim's.
    with pytest.raises(protocol.ProtocolError) as err:
        rig.preauth(identity=EVE, psk=PSK_EVE, mac=MN_MAC)
    assert err.value.code == "mac-in-use"
    # With her own MAC she gets her own lease, and cannot release the victim's.
    eve = rig.preauth(identity=EVE, psk=PSK_EVE, mac=EVE_MAC)
    assert configure(rig, eve)["address"] != victim["address"]
    data, seq = protocol.request(eve, "release")
    rig.one(data, "net-b1")
    leases = {l["identity"]: l["address"] for l in rig.service.lease_views(rig.now)}
    assert leases == {IDENTITY: victim["address"]}


def test_a_dhcp_client_borrowing_an_mns_mac_does_not_get_its_lease():
    rig = Rig()
    rig.settle_dad()
    victim = configure(rig, rig.preauth())
    discover = dhcp.decode_request(dhcp.build_request(dhcp.DISCOVER, chaddr=MN_MAC, xid=1))
    offer = rig.service.dhcp(discover, "net-b1", False, rig.now, learned=False)
    assert offer.address != victim["address"]
    # The MN itself, learned at its PoA, renews the lease it pre-configured.
    renew = dhcp.decode_request(dhcp.build_request(
        dhcp.REQUEST, chaddr=MN_MAC, xid=2, ciaddr=victim["address"],
        ip_src=victim["address"], ip_dst="10.2.1.1"))
    ack = rig.service.dhcp(renew, "net-b1", False, rig.now, learned=True)
    assert (ack.message_type, ack.address) == (dhcp.ACK, victim["address"])


@pytest.mark.parametrize("body", [
    b'{"v":1,"type":"auth-init","network":"net-b1","identity":"\\ud800@x",'
    b'"mn_mac":"02:00:00:00:01:01","nonce":"' + b"00" * 32 + b'"}',
    b'{"v":1,"type":"discover","\\u0007":1}',
    b'{"v":1,"type":"\\u0000\\ud800"}',
])
def test_hostile_text_gets_a_clear_error_not_a_crash(body):
    rig = Rig()
    answer = rig.one(body, "net-b1")
    assert answer.status == 400 and answer.fields["type"] == "error"
    assert rig.counters["signal_internal_error"] == 0
    assert rig.service.aa.sessions == {}
    signalling.encode(answer.fields).decode("ascii")  # what we echo is plain text


def test_an_answer_dad_held_back_commits_without_rewinding_the_window():
    rig = Rig()
    state = rig.preauth()
    data, seq = protocol.request(state, "config-request")
    assert rig.send(data, "net-b1") == []            # waits for DAD
    state.next_seq = 2**32 - 1
    resume, _ = protocol.request(state, "resume")
    assert rig.one(resume, "net-b1").fields["code"] == "wrong-state"
    [late] = rig.settle_dad()                          # the held-back answer goes out
    assert protocol.check_answer(state, late.body, seq, "config")["address"] == "10.2.1.100"
    sa = rig.service.aa.sas[state.sa]
    assert sa.high == 2**32 - 1 and sa.seen == 0
    assert rig.store.load("sa")[state.sa] == sa.to_record()


def test_one_source_cannot_take_every_pre_authentication_slot():
    rig = Rig()
    for i in range(SESSIONS_PER_SOURCE):
        run = protocol.PreAuthentication(f"u{i}@domain-b", PSK_B, "net-b1", MN_MAC)
        assert rig.one(run.init(), "net-b1", source="10.9.9.9").status == 200
    run = protocol.PreAuthentication("late@domain-b", PSK_B, "net-b1", MN_MAC)
    assert rig.one(run.init(), "net-b1", source="10.9.9.9").fields["code"] == "busy"
    assert rig.preauth().network == "net-b1"             # anyone else still gets in


def test_a_dhcp_client_cannot_choose_what_the_ca_probes():
    rig = Rig()
    rig.settle_dad()
    probing = set(rig.service.ca.pools["net-b1"].probing)
    for i in range(50):
        discover = dhcp.decode_request(dhcp.build_request(
            dhcp.DISCOVER, chaddr="02:00:00:00:77:01", xid=i, requested_ip=f"10.2.1.{150 + i}"))
        rig.service.dhcp(discover, "net-b1", False, rig.now)
    assert set(rig.service.ca.pools["net-b1"].probing) == probing
    assert len(rig.service.ca.last_address) == 0, "offers are not remembered"


def test_a_revoked_identity_loses_its_sa_at_restart():
    store = MemoryStore()
    rig = Rig(store=store)
    rig.preauth()
    rig.preauth(identity=EVE, psk=PSK_EVE, mac=EVE_MAC)
    from mpa_rig import Keys
    rig.service = None
    from mpa_sdn.service import MpaService
    counters = collections.Counter()
    service = MpaService(rig.topology, rig.graph,
                         {"domain-b": Keys("domain-b", {EVE: PSK_EVE})}, store, counters,
                         lambda n: b"\0" * n, 0.0, lambda a: None)
    assert [sa.identity for sa in service.aa.sas.values()] == [EVE]
    assert counters["sa_revoked"] == 1


def test_in_band_copies_of_a_waiting_request_are_answered_a_bounded_number_of_times():
    rig = Rig()
    state = rig.preauth()
    data, _ = protocol.request(state, "config-request")
    for port in range(20):
        rig.send(data, "net-b1", channel=INBAND, mac=MN_MAC, source=f"10.1.1.{port + 2}")
    assert len(rig.settle_dad()) == 4


def test_completed_pre_authentications_do_not_count_against_their_source():
    rig = Rig()
    for _ in range(3 * SESSIONS_PER_SOURCE):
        assert rig.preauth().network == "net-b1"

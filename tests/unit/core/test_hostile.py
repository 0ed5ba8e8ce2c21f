"""Hostile senders: what the AA and CA refuse, and that refusing changes nothing."""


import pytest

from mpa_mn import protocol
from mpa_mn.pana_client import PanaClient
from mpa_protocol import messages
from mpa_sdn import dhcp
from mpa_sdn.service import INBAND
from mpa_sdn.store import MemoryStore
from mpa_sdn.topology import MpaSettings
from support.aaa import peer
from support.service_rig import EVE, IDENTITY, MN_MAC, Rig

EVE_MAC = "02:00:00:00:0e:0e"


def test_another_subscriber_cannot_claim_an_mns_mac_or_its_lease():
    rig = Rig()
    rig.settle_dad()
    victim = rig.configure(rig.preauth())
    # Routed to the AA nobody sees the MAC: Eve's first signed message names the victim's.
    with pytest.raises(protocol.ProtocolError) as err:
        rig.configure(rig.preauth(identity=EVE, mac=MN_MAC))
    assert err.value.code == "mac-in-use"
    # With her own MAC she gets her own lease, and cannot release the victim's.
    eve = rig.preauth(identity=EVE, mac=EVE_MAC)
    assert rig.configure(eve)["address"] != victim["address"]
    data, seq = protocol.request(eve, "release")
    rig.one(data, "net-b1")
    leases = {l["identity"]: l["address"] for l in rig.service.lease_views(rig.now)}
    assert leases == {IDENTITY: victim["address"]}


def test_a_dhcp_client_borrowing_an_mns_mac_does_not_get_its_lease():
    rig = Rig()
    rig.settle_dad()
    victim = rig.configure(rig.preauth())
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
    b'{"v":1,"type":"config-request","network":"net-b1","sa":"\\ud800@x","seq":1,'
    b'"mn_mac":"02:00:00:00:01:01","mac":"' + b"00" * 32 + b'"}',
    b'{"v":1,"type":"discover","\\u0007":1}',
    b'{"v":1,"type":"\\u0000\\ud800"}',
])
def test_hostile_text_gets_a_clear_error_not_a_crash(body):
    rig = Rig()
    answer = rig.one(body, "net-b1")
    assert answer.status == 400 and answer.fields["type"] == "error"
    assert rig.counters["signal_internal_error"] == 0
    assert rig.service.aa.sas == {} and rig.service.paa.sessions == {}
    messages.encode(answer.fields).decode("ascii")  # what we echo is plain text


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
    for port in range(MpaSettings().pana_sessions_per_source):
        pci = PanaClient(peer("domain-b"), True).initiation()
        assert len(rig.pana(pci, "net-b1", source="10.9.9.9", port=50000 + port)) == 1
    pci = PanaClient(peer("domain-b"), True).initiation()
    assert rig.pana(pci, "net-b1", source="10.9.9.9", port=50999) == []
    assert rig.counters["pana_dropped_busy_source"] == 1
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


def test_a_revoked_certificate_gets_no_new_sa_and_the_old_one_stays_until_it_lapses():
    """Revocation is the domain's RADIUS server's: the next pre-authentication
    is rejected; the SA made before lives out its Session-Lifetime."""
    rig = Rig()
    old = rig.preauth(identity=EVE, mac=EVE_MAC)
    rig.radius.revoked.add(EVE)
    with pytest.raises(protocol.ProtocolError) as err:
        rig.preauth(identity=EVE, mac=EVE_MAC)
    assert err.value.code == "authentication-rejected"
    assert [sa.id for sa in rig.service.aa.sas.values()] == [old.sa]
    rig.now += old.lifetime + 1
    rig.service.tick(rig.now)
    assert rig.service.aa.sas[old.sa].state == "expired"


def test_in_band_copies_of_a_waiting_request_are_answered_a_bounded_number_of_times():
    rig = Rig()
    state = rig.preauth()
    data, _ = protocol.request(state, "config-request")
    for port in range(20):
        rig.send(data, "net-b1", channel=INBAND, mac=MN_MAC, source=f"10.1.1.{port + 2}")
    assert len(rig.settle_dad()) == 4


def test_completed_pre_authentications_do_not_count_against_their_source():
    rig = Rig()
    for _ in range(3 * MpaSettings().pana_sessions_per_source):
        assert rig.preauth().network == "net-b1"


def test_a_proven_claim_of_a_mac_beats_a_claimed_one_and_takes_nothing_from_it():
    rig = Rig()
    rig.settle_dad()
    eve = rig.preauth(identity=EVE, mac=MN_MAC)     # routed to the AA: her word only
    rig.configure(eve)
    # The MN's own PANA exchange, seen from its MAC on a link of ours, wins at
    # its binding; Eve's SA and lease go.
    mn = rig.preauth(seen_mac=MN_MAC)
    rig.bind(mn)
    assert set(rig.service.aa.sas) == {mn.sa}
    assert rig.service.aa.sas[mn.sa].proven
    assert rig.service.lease_views(rig.now) == []
    assert rig.counters["sa_false_mac_claim"] == 1
    # Once proven, the MAC is the MN's: another claim is refused.
    with pytest.raises(protocol.ProtocolError) as err:
        rig.configure(rig.preauth(identity=EVE, mac=MN_MAC))
    assert err.value.code == "mac-in-use"


def test_two_claims_of_one_mac_leave_it_bound_to_one_sa():
    rig = Rig()
    rig.settle_dad()
    mine, eves = rig.preauth(), rig.preauth(identity=EVE, mac=MN_MAC)
    rig.configure(mine)
    with pytest.raises(protocol.ProtocolError) as err:
        rig.configure(eves)
    assert err.value.code == "mac-in-use"
    bound = [sa.identity for sa in rig.service.aa.sas.values() if sa.mn_mac == MN_MAC]
    assert bound == [IDENTITY]


def test_a_clients_own_arp_does_not_keep_it_from_its_address():
    rig = Rig()
    rig.settle_dad()
    mac = "02:00:00:00:dc:02"

    def ask(kind, learned=False, **fields):
        frame = dhcp.build_request(kind, chaddr=mac, xid=1, **fields)
        return rig.service.dhcp(dhcp.decode_request(frame), "net-b1", False, rig.now,
                                learned=learned)
    offer = ask(dhcp.DISCOVER)
    address = ask(dhcp.REQUEST, requested_ip=offer.address, server_id="10.2.1.1").address
    rig.users[address] = mac
    ask(dhcp.RELEASE, learned=True, ciaddr=address, ip_src=address, ip_dst="10.2.1.1")
    rig.service.address_used(address, rig.now)   # it still answers ARP for it
    assert ask(dhcp.DISCOVER).address == address


def test_a_held_sa_gets_no_proactive_dhcp():
    rig = Rig()
    rig.settle_dad()
    rig.bind(rig.preauth())
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    rig.seen(MN_MAC, "10.1.1.50", "net-a1")                  # held in net-b1 now
    discover = dhcp.decode_request(dhcp.build_request(
        dhcp.DISCOVER, chaddr=MN_MAC, xid=3, ip_src="10.1.1.50", ip_dst="10.2.1.1"))
    assert rig.service.dhcp(discover, "net-b1", True, rig.now) is None
    assert rig.counters["dhcp_proactive_refused"] == 1


def test_the_leave_grace_holds_only_an_mn_no_longer_there():
    rig = Rig()
    state = rig.preauth()
    rig.bind(state)
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    rig.service.host_left(MN_MAC, "net-b1", rig.now)   # an old address of it went; it stays
    rig.service.tick(rig.now + 10)
    assert rig.service.aa.sas[state.sa].state == "authorized"


def test_after_a_restart_an_authorized_mn_not_seen_again_is_held():
    store = MemoryStore()
    rig = Rig(store=store)
    state = rig.preauth()
    rig.bind(state)
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    rig.restart()
    rig.location.clear()                      # the new controller knows no host yet
    rig.service.tick(rig.now)
    rig.service.tick(rig.now + 30)
    assert rig.service.aa.sas[state.sa].state == "authorized"   # within the start-up grace
    rig.service.tick(rig.now + 61)
    assert rig.service.aa.sas[state.sa].state == "held"

"""Pre-configuration with the CA: nCoAs, proactive DAD, replay protection,
persistence across restarts."""

import json
import os
import sqlite3
import stat

import pytest

from mpa_mn import protocol
from mpa_protocol import messages
from mpa_sdn.store import SqliteStore
from support.service_rig import TOPOLOGY, MN_MAC, Rig


def test_config_waits_for_dad_only_when_the_reserve_is_empty():
    rig = Rig()
    state = rig.preauth()
    data, seq = protocol.request(state, "config-request")
    assert rig.send(data, "net-b1") == []           # nothing probed yet: it waits
    answers = rig.settle_dad()
    config = protocol.check_answer(state, answers[0].body, seq, "config")
    assert config["address"] == "10.2.1.100"
    # The reserve is now full of probed addresses: the next MN gets one at once.
    other = rig.preauth("net-a2", "domain-a")
    rig.settle_dad()
    data, seq = protocol.request(other, "config-request")
    [answer] = rig.send(data, "net-a2")
    assert protocol.check_answer(other, answer.body, seq, "config")["address"] == "10.1.2.100"


def test_the_configuration_carries_what_the_mn_needs_after_moving():
    rig = Rig()
    rig.settle_dad()
    config = rig.configure(rig.preauth())
    assert config["prefix_len"] == 24 and config["router"] == "10.2.1.1"
    assert config["gateway_mac"] == rig.topology.networks["net-b1"].gateway_mac
    assert config["lease_time"] == rig.topology.mpa.lease_time_s


def test_two_ctns_in_two_domains_give_two_ncoas():
    rig = Rig()
    rig.settle_dad()
    b1 = rig.configure(rig.preauth("net-b1", "domain-b"))
    a2 = rig.configure(rig.preauth("net-a2", "domain-a"))
    assert (b1["address"], a2["address"]) == ("10.2.1.100", "10.1.2.100")


def test_a_squatter_found_by_the_probes_is_skipped():
    rig = Rig()
    rig.service.tick(rig.now)  # the first probes go out ...
    rig.service.address_used("10.2.1.100", rig.now)  # ... one answers
    rig.settle_dad()
    assert rig.configure(rig.preauth())["address"] == "10.2.1.101"
    assert rig.counters["dad_conflict"] == 1
    wall = rig.service.wall(rig.now)
    assert rig.service.ca.pool_view("net-b1", wall)["in_use_elsewhere"] == ["10.2.1.100"]


def test_addresses_of_learned_hosts_are_never_offered():
    rig = Rig(in_use={"10.2.1.100", "10.2.1.101"})
    rig.settle_dad()
    assert rig.configure(rig.preauth())["address"] == "10.2.1.102"


def test_the_same_client_gets_its_address_back():
    rig = Rig()
    rig.settle_dad()
    state = rig.preauth()
    first = rig.configure(state)
    assert rig.configure(state)["address"] == first["address"]       # renewal
    data, seq = protocol.request(state, "release")
    protocol.check_answer(state, rig.one(data, "net-b1").body, seq, "released")
    assert rig.service.ca.views(0) == []
    # Never used in the network (the MN was elsewhere): probed again first.
    assert "10.2.1.100" not in rig.service.ca.pools["net-b1"].verified
    other = rig.preauth("net-b1", "domain-b")  # a new SA, the same MN
    assert rig.configure(other)["address"] == first["address"]
    # Used there by the MN itself, then given back: it comes back at once.
    rig.users[first["address"]] = MN_MAC
    data, seq = protocol.request(other, "release")
    rig.one(data, "net-b1")
    data, seq = protocol.request(other, "config-request")
    [answer] = rig.send(data, "net-b1")
    assert protocol.check_answer(other, answer.body, seq, "config")["address"] == \
        first["address"]


def snapshot(rig):
    sas = {k: v.to_record() for k, v in rig.service.aa.sas.items()}
    return sas, rig.service.ca.views(0)


@pytest.mark.parametrize("attack", ["wrong key", "tampered", "replayed", "other sa",
                                    "outside window", "other network"])
def test_forged_and_replayed_messages_change_nothing(attack):
    rig = Rig()
    rig.settle_dad()
    state = rig.preauth()
    first_data, first_seq = protocol.request(state, "config-request")
    rig.one(first_data, "net-b1")
    protocol.request(state, "release")  # the MN moved on to seq 3
    newer_data, _ = protocol.request(state, "config-request")
    rig.one(newer_data, "net-b1")
    before = snapshot(rig)
    if attack == "wrong key":
        fields = messages.build("release", network="net-b1", sa=state.sa, seq=10, mn_mac=MN_MAC)
        data = messages.encode(messages.sign(fields, b"k" * 32))
        code = "bad-mac"
    elif attack == "tampered":
        data, _ = protocol.request(state, "release")
        data = data.replace(b'"release"', b'"release","scope":"all"')
        code = "bad-mac"
    elif attack == "replayed":
        # Too late to be a retransmission: a replay.
        rig.now += rig.topology.mpa.retransmit_s + 1
        data, code = first_data, "replay"
    elif attack == "other sa":
        other = rig.preauth("net-a2", "domain-a")
        data, _ = protocol.request(other, "release")
        data = data.replace(other.sa.encode(), state.sa.encode()).replace(b"net-a2", b"net-b1")
        code = "bad-mac"
        before = snapshot(rig)
    elif attack == "outside window":
        state.next_seq = 3 + rig.topology.mpa.replay_window + 5
        data, _ = protocol.request(state, "config-request")
        rig.one(data, "net-b1")
        before = snapshot(rig)
        data, code = first_data, "outside-window"
    else:
        data, _ = protocol.request(state, "release")
        code = "wrong-network"
        answer = rig.one(data, "net-a2")
        assert answer.fields["code"] == code and answer.status == 409
        assert snapshot(rig) == before
        return
    answer = rig.one(data, "net-b1")
    assert answer.fields["type"] == "error" and answer.fields["code"] == code
    assert answer.status in (403, 409)
    assert snapshot(rig) == before


def test_a_retransmission_gets_the_same_answer_and_changes_nothing_twice():
    rig = Rig()
    rig.settle_dad()
    state = rig.preauth()
    data, seq = protocol.request(state, "release", scope="lease")
    rig.configure(state)
    data, seq = protocol.request(state, "release")
    first = rig.one(data, "net-b1")
    again = rig.one(data, "net-b1")
    assert again.fields == first.fields
    assert rig.counters["lease_released"] == 1
    assert rig.counters["signal_retransmission"] == 1


def test_sequence_numbers_may_arrive_out_of_order_within_the_window():
    rig = Rig()
    rig.settle_dad()
    state = rig.preauth()
    early = protocol.request(state, "config-request")
    late = protocol.request(state, "config-request")
    assert rig.one(late[0], "net-b1").status == 200
    assert rig.one(early[0], "net-b1").status == 200
    # Either repeated soon is a retransmission: the same answer; later, a replay.
    assert rig.one(early[0], "net-b1").fields == rig.one(early[0], "net-b1").fields
    assert rig.one(late[0], "net-b1").status == 200
    rig.now += rig.topology.mpa.retransmit_s + 1
    assert rig.one(late[0], "net-b1").fields["code"] == "replay"


def test_pool_exhaustion_is_a_clear_error():
    from mpa_sdn.config import load_topology_text
    text = open(TOPOLOGY).read().replace(
        "pool: 10.2.1.100-10.2.1.199", "pool: 10.2.1.100-10.2.1.100")
    rig = Rig(topology=load_topology_text(text), in_use={"10.2.1.100"})
    rig.settle_dad()
    state = rig.preauth()
    data, seq = protocol.request(state, "config-request")
    answer = rig.one(data, "net-b1")
    assert (answer.status, answer.fields["code"]) == (503, "pool-exhausted")


def test_a_restart_keeps_every_sa_and_lease(tmp_path):
    path = str(tmp_path / "state" / "mpa.db")
    rig = Rig(store=SqliteStore(path))
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    rig.settle_dad()
    b1 = rig.preauth("net-b1", "domain-b")
    a2 = rig.preauth("net-a2", "domain-a")
    b1_config, a2_config = rig.configure(b1), rig.configure(a2)
    rig.seen(MN_MAC, b1_config["address"], "net-b1")
    before = snapshot(rig)
    last = protocol.request(b1, "config-request")
    last_answer = rig.one(last[0], "net-b1")

    rig.store.close()
    rig.store = SqliteStore(path)
    rig.restart()
    assert snapshot(rig)[1] == before[1]
    assert set(rig.service.aa.sas) == {b1.sa, a2.sa}
    assert rig.service.aa.sas[b1.sa].state == "authorized"
    # The replay state survived too, and the keys: the MN goes on where it was.
    assert rig.one(last[0], "net-b1").fields == last_answer.fields
    assert rig.counters["signal_retransmission"] == 1
    assert rig.configure(b1)["address"] == b1_config["address"]
    assert rig.configure(a2)["address"] == a2_config["address"]


def test_a_restart_drops_records_it_cannot_use(tmp_path):
    path = str(tmp_path / "mpa.db")
    store = SqliteStore(path)
    store.put("sa", "abc", {"id": "abc", "bogus": 1})
    store.put("lease", "net-b1|10.9.9.9", {"network": "net-b1", "address": "10.9.9.9"})
    rig = Rig(store=store)
    assert rig.service.aa.sas == {} and rig.service.ca.views(0) == []
    assert rig.counters["sa_record_invalid"] == 1 and rig.counters["lease_record_invalid"] == 1
    assert store.load("sa") == {} and store.load("lease") == {}


def test_the_mac_is_checked_before_anything_that_tells_about_the_sa():
    rig = Rig()
    state = rig.preauth()
    fields = messages.build("release", network="net-a2", sa=state.sa, seq=1, mn_mac=MN_MAC)
    forged = messages.encode(messages.sign(fields, b"k" * 32))
    answer = rig.one(forged, "net-a2")
    assert answer.fields["code"] == "bad-mac"   # not wrong-network: nothing learned
    from mpa_sdn.service import INBAND
    assert rig.send(forged, "net-a2", channel=INBAND, mac=MN_MAC) == []


def test_an_mn_lease_is_released_by_dhcp_only_from_the_learned_host():
    from mpa_sdn import dhcp
    rig = Rig()
    rig.settle_dad()
    state = rig.preauth()
    address = rig.configure(state)["address"]
    frame = dhcp.build_request(dhcp.RELEASE, chaddr=MN_MAC, xid=9, ciaddr=address,
                               ip_src=address, ip_dst="10.2.1.1", eth_dst="02:00:00:00:00:01")
    request = dhcp.decode_request(frame)
    assert rig.service.dhcp(request, "net-b1", False, rig.now, learned=False) is None
    assert [l["address"] for l in rig.service.lease_views(rig.now)] == [address]
    assert rig.counters["dhcp_release_refused"] == 1
    rig.service.dhcp(request, "net-b1", False, rig.now, learned=True)
    assert rig.service.lease_views(rig.now) == []


def test_a_dhcp_client_gets_its_address_back_while_we_still_know_its_host():
    from mpa_sdn import dhcp
    rig = Rig()
    rig.settle_dad()
    mac = "02:00:00:00:dc:01"

    def ask(kind, **fields):
        frame = dhcp.build_request(kind, chaddr=mac, xid=1, **fields)
        return rig.service.dhcp(dhcp.decode_request(frame), "net-b1", False, rig.now,
                                learned=bool(fields.get("ciaddr")))
    offer = ask(dhcp.DISCOVER)
    ack = ask(dhcp.REQUEST, requested_ip=offer.address, server_id="10.2.1.1")
    assert ack.message_type == dhcp.ACK
    rig.users[ack.address] = mac      # the controller learned the client there
    ask(dhcp.RELEASE, ciaddr=ack.address, ip_src=ack.address, ip_dst="10.2.1.1")
    assert rig.service.lease_views(rig.now) == []
    rig.now += 120                    # the release's probe result has gone stale
    rig.settle_dad()
    assert ask(dhcp.DISCOVER).address == ack.address


def leases_in_the_file(path: str) -> int:
    """Lease records in the database file itself, its write-ahead log ignored."""
    db = sqlite3.connect(f"file:{path}?immutable=1", uri=True)
    try:
        return db.execute("SELECT COUNT(*) FROM records WHERE kind = 'lease'").fetchone()[0]
    except sqlite3.OperationalError:   # not even the table is in the file yet
        return 0
    finally:
        db.close()


def test_the_state_file_is_checkpointed_by_its_checkpointer_neither_requests_nor_ticks(
        tmp_path):
    path = str(tmp_path / "mpa.db")
    store = SqliteStore(path)
    assert store._db.execute("PRAGMA wal_autocheckpoint").fetchone() == (0,)
    rig = Rig(store=store)
    rig.settle_dad()
    rig.configure(rig.preauth())
    assert os.path.getsize(path + "-wal") > 0
    assert leases_in_the_file(path) == 0  # requests wrote the WAL only
    rig.service.tick(rig.now + 10)       # nor does the worker's timer checkpoint
    assert leases_in_the_file(path) == 0
    store.checkpoint()                   # the shell's checkpointer (apps/checkpoint.py)
    assert leases_in_the_file(path) == 1
    store.close()
    assert SqliteStore(path).load("lease")


def test_the_sa_record_keeps_only_the_answers_a_restart_needs(tmp_path):
    from mpa_sdn.mpa_sa import PERSISTED_ANSWERS, RECENT_ANSWERS
    path = str(tmp_path / "mpa.db")
    rig = Rig(store=SqliteStore(path))
    rig.settle_dad()
    state = rig.preauth()
    requests = [protocol.request(state, "config-request") for _ in range(RECENT_ANSWERS)]
    answers = [rig.one(data, "net-b1").fields for data, _ in requests]
    [record] = rig.store.load("sa").values()
    assert [r["seq"] for r in record["recent"]] == \
        [seq for _, seq in requests[-PERSISTED_ANSWERS:]]
    rig.store.close()
    rig.store = SqliteStore(path)
    rig.restart()
    # The MN's latest requests, sent again, get their answers; an older one is a replay.
    for (data, _), answer in list(zip(requests, answers))[-PERSISTED_ANSWERS:]:
        assert rig.one(data, "net-b1").fields == answer
    assert rig.one(requests[0][0], "net-b1").fields["code"] == "replay"


def test_an_sa_keeps_its_answers_as_text_and_reads_a_record_that_kept_their_dicts():
    """Kept answers are their JSON text (a dict each was about 3 KiB per MN
    at 10,000 MNs); a state file written before holds the dicts, and a
    retransmission after a restart on it still gets its answer."""
    from mpa_protocol.keys import SaKeys
    from mpa_sdn.mpa_sa import NEW, RETRANSMISSION, SecurityAssociation
    sa = SecurityAssociation("sa1", "mn1@a", "domain-b", "net-b1", None,
                             SaKeys(b"\x01" * 32, b"\x02" * 32, b"\x03" * 32),
                             "pre-authenticated", 0.0, 3600.0, "10.1.1.50")
    answer = {"v": 1, "type": "config", "seq": 1, "address": "10.2.1.100", "mac": "ab" * 32}
    sa.accept(1, "cd" * 32, answer, 10.0, 64)
    assert [type(part) for part in sa.recent[0]] == [int, str, str, float]
    assert sa.window_verdict(1, "cd" * 32, 11.0, 64, 30.0) == (RETRANSMISSION, answer)
    record = json.loads(json.dumps(sa.to_record()))
    assert record["recent"] == [{"seq": 1, "digest": "cd" * 32, "at": 10.0,
                                 "answer": json.dumps(answer, sort_keys=True,
                                                      separators=(",", ":"))}]
    older = {**record, "recent": [{**record["recent"][0], "answer": answer}]}
    for kept in (record, older):
        again = SecurityAssociation.from_record(kept)
        assert again.window_verdict(1, "cd" * 32, 11.0, 64, 30.0) == (RETRANSMISSION, answer)
        assert again.window_verdict(2, "ef" * 32, 11.0, 64, 30.0) == (NEW, None)
    with pytest.raises(ValueError):
        SecurityAssociation.from_record({**record, "recent": [{**record["recent"][0],
                                                              "answer": 7}]})

"""The MN's PANA client (PaC) against the real PAA and an in-process AAA."""

import random
import socket

import pytest

from mpa_mn import pana_client
from mpa_mn.pana_client import PanaClient
from mpa_mn.protocol import ProtocolError
from mpa_protocol import pana
from mpa_protocol.pana import PanaMessage
from mpa_sdn.pana_agent import PanaReply
from support.aaa import drive, peer
from support.service_rig import IDENTITY, Rig

MAX = 65535


def run_session(rig, client, network="net-b1", seen=None):
    """Every message both ways: (what the MN sent, what the AA sent)."""
    mn_sent, aa_sent = [], []

    def kept(out):
        aa_sent.extend(o.data for o in out if isinstance(o, PanaReply))
        return out

    def to_aa(data):
        mn_sent.append(data)
        return kept(rig.pana(data, network, mac=seen))
    drive(client, to_aa, lambda answer, source: kept(rig.radius_answer(answer, source)),
          rig.radius)
    return mn_sent, aa_sent


@pytest.mark.parametrize("pre", [True, False])
def test_the_e_flag_is_on_every_message_of_a_pre_authentication_and_mirrored(pre):
    rig = Rig()
    client = PanaClient(peer("domain-b"), pre)
    mn_sent, aa_sent = run_session(rig, client)
    assert client.result == "success"
    flags = [PanaMessage.decode(m, MAX).has(pana.FLAG_E) for m in mn_sent + aa_sent]
    # PCI, the start pair, three EAP-TLS rounds, the final pair.
    assert flags == [pre] * len(flags) and len(flags) == 11


def test_both_ends_name_and_key_the_sa_alike():
    rig = Rig()
    client = PanaClient(peer("domain-b"), True)
    run_session(rig, client)
    sa_id, sa_keys = client.established.sa(IDENTITY, "net-b1")
    sa = rig.service.aa.sas[sa_id]
    assert sa.keys.as_hex() == sa_keys.as_hex() and sa.identity == IDENTITY
    assert sa.pana["session"] == client.established.session_id
    assert bytes.fromhex(sa.pana["auth_key"]) == client.established.auth_key


def test_a_request_seen_again_gets_the_same_answer_and_changes_nothing():
    rig = Rig()
    client = PanaClient(peer("domain-b"), True)
    [first] = rig.pana(client.initiation(), "net-b1")
    answer = client.receive(first.data)
    assert client.receive(first.data) == answer
    assert client.counters["retransmitted_request"] == 1


def test_a_request_of_another_session_or_out_of_order_is_dropped():
    rig = Rig()
    client = PanaClient(peer("domain-b"), True)
    [first] = rig.pana(client.initiation(), "net-b1")
    client.receive(first.data)
    start = PanaMessage.decode(first.data, MAX)
    other = PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_E, start.session_id + 1,
                        start.seq + 1, [pana.eap_payload(b"\x01\x02\x00\x05\x01")])
    assert client.receive(other.encode()) is None
    skipped = PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_E, start.session_id,
                          start.seq + 5, [pana.eap_payload(b"\x01\x02\x00\x05\x01")])
    assert client.receive(skipped.encode()) is None
    assert client.receive(b"junk") is None
    assert client.counters == {"dropped_other_session": 1, "dropped_out_of_order": 1,
                               "dropped_malformed_short": 1}
    assert not client.done


def test_an_aa_offering_no_known_algorithm_is_refused():
    client = PanaClient(peer("domain-b"), True)
    offer = PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_S | pana.FLAG_E, 7, 1,
                        [pana.prf_algorithm(99), pana.integrity_algorithm(98),
                         pana.eap_payload(b"\x01\x01\x00\x05\x01")])
    with pytest.raises(ProtocolError) as err:
        client.receive(offer.encode())
    assert err.value.code == "pana-algorithms"


def test_a_rejection_is_answered_and_ends_the_session_on_both_sides():
    rig = Rig()
    rig.radius.revoked.add(IDENTITY)
    client = PanaClient(peer("domain-b"), True)
    run_session(rig, client)
    assert client.result == "authentication-rejected" and client.established is None
    assert rig.service.paa.sessions == {} and rig.service.aa.sas == {}
    assert rig.counters["pana_authentication_rejected"] == 1


class Silent:
    """A socket nobody answers: time passes on ``clock`` at each wait."""

    def __init__(self, clock):
        self.clock, self.sent, self.timeout = clock, [], None

    def __call__(self, local):
        return self

    def sendto(self, data, address):
        self.sent.append((data, address, self.clock.now))

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        self.clock.now += self.timeout
        raise socket.timeout()

    def close(self):
        pass


class Clock:
    now = 0.0

    def __call__(self):
        return self.now


def test_the_pci_is_sent_again_on_rfc_5191_timers_until_the_session_times_out():
    clock = Clock()
    silent = Silent(clock)
    client = PanaClient(peer("domain-b"), True)
    with pytest.raises(ProtocolError) as err:
        pana_client.run(client, "10.2.1.1", timeout=10.0, socket_factory=silent, clock=clock,
                        rng=random.Random(5191))
    assert err.value.code == "no-answer" and "10.2.1.1:716" in err.value.message
    times = [t for _, _, t in silent.sent]
    assert {d for d, _, _ in silent.sent} == {client.initiation()}
    # About 1, 2 and 4 s apart (RFC 3315's doubling, jitter of a tenth), within 10 s.
    gaps = [b - a for a, b in zip(times, times[1:])]
    assert len(times) == 4 and all(0.9 ** (i + 1) * 2 ** i <= g <= 1.1 ** (i + 1) * 2 ** i
                                   for i, g in enumerate(gaps)), gaps
    assert clock.now == pytest.approx(10.0)


def test_ping_and_termination_on_the_session_the_sa_came_from(tmp_path, credentials_file):
    from support.mn_fakes import Cli
    rig = Rig()
    rig.settle_dad()
    run = Cli(rig, tmp_path, credentials_file(), "inband")
    rc, doc, err = run("up", "net-b1")
    assert rc == 0, err
    [sa] = rig.service.aa.sas.values()
    rc, doc, err = run("ping", "net-b1")
    assert rc == 0 and doc["results"][0]["ping"] == "answered", err
    assert rig.counters["pana_ping_answered"] == 1 and sa.state == "pre-authenticated"
    rc, out, err = run("terminate", "net-b1", json_out=False)
    assert rc == 0, err
    assert "terminated: the MPA-SA and the nCoA are gone" in out
    assert rig.service.aa.sas == {} and rig.counters["pana_terminated"] == 1
    assert rig.service.lease_views(rig.now) == []
    rc, out, _ = run("status", json_out=False)
    assert out == "no MPA-SAs\n"


def test_a_ping_whose_answer_never_comes_is_no_answer():
    rig = Rig()
    client = PanaClient(peer("domain-b"), True)
    run_session(rig, client)
    record = client.established.record("10.2.1.1", 7)
    clock = Clock()
    with pytest.raises(ProtocolError) as err:
        pana_client.request_on_session(record, pana_client.PING, 7, timeout=5.0,
                                       socket_factory=Silent(clock), clock=clock,
                                       rng=random.Random(1))
    assert err.value.code == "no-answer"


@pytest.mark.parametrize("network,pre", [("net-b1", True), ("net-a1", False)])
def test_the_mn_sets_the_e_flag_only_for_a_network_it_is_not_in(network, pre):
    from support.mn_world import Core, node
    world = Core()
    world.attach("ap-a1-1")
    mn, _ = node(world)
    mn.preauthenticate(network)
    [ended] = [e for e in world.core.events.ring if e["type"] == "preauthentication"]
    assert (ended["network"], ended["data"]["pre_authentication"]) == (network, pre)
    assert ended["data"]["result"] == "established"

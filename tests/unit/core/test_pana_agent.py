"""The AA's PANA Authentication Agent (mpa_sdn/pana_agent.py) through the
service, with the real PANA, EAP and RADIUS codecs: the MN's PaC on one side,
each domain's FakeRadius on the other.  Every refusal is dropped, counted by
reason and changes nothing."""

from __future__ import annotations

import dataclasses
import hashlib
import hmac
import struct

import pytest

from mpa_mn import protocol
from mpa_mn.credentials import EAP_TLS, EAP_TTLS_PAP
from mpa_mn.eap_peer import EapPeer
from mpa_mn.pana_client import PanaClient
from mpa_protocol import pana, pana_security
from mpa_protocol.pana import PanaMessage
from mpa_sdn.config_radius import RadiusServerEntry
from mpa_sdn.pana_agent import PanaReply
from mpa_sdn.radius_client import Datagram
from mpa_sdn.store import MemoryStore
from support import aaa
from support.aaa import drive, peer
from support.pana_samples import BAD
from support.service_rig import IDENTITY, MN_MAC, PANA_SOURCE_PORT, Rig, counter_entropy

SOURCE = "10.1.1.199"


def client(identity=IDENTITY, method=EAP_TLS, pre=True, seed=b"pac") -> PanaClient:
    return PanaClient(peer("domain-b", identity, method), pre, entropy=counter_entropy(seed))


class Wire:
    """What crossed between the PaC, the AA and RADIUS in one session."""

    def __init__(self, rig: Rig, network="net-b1", source=SOURCE, port=PANA_SOURCE_PORT):
        self.rig, self.network, self.source, self.port = rig, network, source, port
        self.to_pac: list[bytes] = []
        self.to_aa: list[bytes] = []
        self.radius: list[Datagram] = []

    def _seen(self, out: list) -> list:
        self.to_pac += [r.data for r in out if isinstance(r, PanaReply)]
        self.radius += [d for d in out if isinstance(d, Datagram)]
        return out

    def aa(self, data: bytes) -> list:
        self.to_aa.append(data)
        return self._seen(self.rig.pana(data, self.network, self.source, port=self.port))

    def answer(self, data: bytes, server) -> list:
        return self._seen(self.rig.radius_answer(data, server))

    def tick(self, seconds: float) -> list:
        self.rig.now += seconds
        return self._seen(self.rig.service.preauth.tick(self.rig.service.wall(self.rig.now)))

    def run(self, pac: PanaClient) -> PanaClient:
        drive(pac, self.aa, self.answer, self.rig.radius)
        return pac

    def run_with_time(self, pac: PanaClient, step=0.5, limit=400) -> PanaClient:
        """As ``run``, but when nothing is in flight time passes (retransmissions)."""
        pending = list(self.aa(pac.initiation()))
        for _ in range(limit):
            if pac.done:
                return pac
            if not pending:
                pending = self.tick(step)
                continue
            out = pending.pop(0)
            if isinstance(out, Datagram):
                answer = self.rig.radius.handle(out)
                if answer is not None:
                    pending += self.answer(answer, (out.address, out.port))
            elif (answer := pac.receive(out.data)) is not None:
                pending += self.aa(answer)
        raise AssertionError("the PANA session did not end")


def decoded(data: bytes) -> PanaMessage:
    return PanaMessage.decode(data, 65535)


def state_of(rig: Rig) -> tuple:
    """All a dropped message must leave as it was."""
    paa = rig.service.paa
    def fields(session):   # its timer as the object it is: a restarted one is a change
        return {**{k: v for k, v in vars(session).items() if k != "retransmission"},
                "timer": id(session.retransmission)}
    return ({sid: fields(s) for sid, s in paa.sessions.items()},
            dict(paa._per_source), {k: v.to_record() for k, v in rig.service.aa.sas.items()})


# -- whole sessions ------------------------------------------------------------------------

@pytest.mark.parametrize("method", [EAP_TLS, EAP_TTLS_PAP])
def test_a_whole_session_makes_the_mpa_sa_both_ends_name_and_key_alike(method):
    rig = Rig()
    wire = Wire(rig)
    pac = wire.run(client(method=method))
    assert pac.result == "success"
    sa_id, sa_keys = pac.established.sa(IDENTITY, "net-b1")
    sa = rig.service.aa.sas[sa_id]
    assert sa.keys.as_hex() == sa_keys.as_hex() and sa.mn_mac is None
    assert (sa.identity, sa.domain, sa.source) == (IDENTITY, "domain-b", SOURCE)
    assert sa.pana["session"] == pac.established.session_id
    assert rig.service.paa.sessions == {}
    counters = rig.counters
    assert (counters["pana_sessions_started"], counters["pana_sessions_established"],
            counters["sa_created"]) == (1, 1, 1)
    assert counters["pana_eap_relayed"] == len(wire.radius) > 2
    # The final PAR carries the Session-Lifetime the SA got, under AUTH.
    final = decoded(wire.to_pac[-1])
    assert final.has(pana.FLAG_C) and final.result_code == pana.PANA_SUCCESS
    assert final.session_lifetime == rig.topology.mpa.sa_lifetime_s
    assert pana_security.verify_auth(wire.to_pac[-1], pac.established.auth_key,
                                     pac.established.integrity)


@pytest.mark.parametrize("pre", [True, False])
def test_the_e_flag_is_the_mns_and_mirrored_in_every_par(pre):
    rig = Rig()
    wire = Wire(rig)
    assert wire.run(client(pre=pre)).result == "success"
    assert {bool(decoded(d).flags & pana.FLAG_E) for d in wire.to_pac} == {pre}
    assert {bool(decoded(d).flags & pana.FLAG_E) for d in wire.to_aa} == {pre}


def test_a_pan_whose_e_flag_differs_from_the_session_is_dropped():
    rig = Rig()
    pac = client()
    [par] = rig.pana(pac.initiation(), "net-b1")
    pan = decoded(pac.receive(par.data))
    flipped = dataclasses.replace(pan, flags=pan.flags & ~pana.FLAG_E).encode()
    before = state_of(rig)
    assert rig.pana(flipped, "net-b1") == []
    assert rig.counters["pana_dropped_e_flag"] == 1 and state_of(rig) == before


# -- retransmissions ---------------------------------------------------------------------------

def test_a_retransmitted_pci_gets_the_same_first_par_and_no_second_session():
    rig = Rig()
    pci = client().initiation()
    [first] = rig.pana(pci, "net-b1")
    [again] = rig.pana(pci, "net-b1")
    assert again.data == first.data
    assert rig.counters["pana_pci_retransmission"] == 1
    assert len(rig.service.paa.sessions) == 1 and rig.counters["pana_sessions_started"] == 1


def test_an_unanswered_par_is_sent_again_and_the_pacs_two_answers_relay_once():
    rig = Rig()
    wire, pac = Wire(rig), client()
    [par] = wire.aa(pac.initiation())
    assert wire.tick(0.5) == []                       # RFC 5191 §9: not yet
    [again] = wire.tick(1.0)
    assert again.data == par.data and rig.counters["pana_retransmitted"] == 1
    pan = pac.receive(par.data)
    assert pac.receive(again.data) == pan             # the PaC answers the copy alike
    assert len(wire.aa(pan)) == 1                     # the Access-Request
    assert wire.aa(pan) == []                         # the second PAN is no news
    assert rig.counters["pana_answer_unexpected"] == 1
    assert rig.counters["pana_eap_relayed"] == 1 and len(wire.radius) == 1


def test_a_par_never_answered_closes_the_session_when_its_retransmissions_run_out():
    mpa = dataclasses.replace(Rig().topology.mpa, pana_session_s=3600)
    rig = Rig(topology=dataclasses.replace(Rig().topology, mpa=mpa))
    wire = Wire(rig)
    wire.aa(client().initiation())
    sent = 1
    while rig.service.paa.sessions:
        due = rig.service.paa.next_due()
        sent += len(wire.tick(due - rig.service.wall(rig.now)))
        assert sent < 20
    assert sent == 1 + 10                             # REQ_MRC retransmissions
    assert (rig.counters["pana_retransmissions_exhausted"],
            rig.counters["pana_sessions_unanswered"]) == (1, 1)
    assert rig.service.paa._per_source == {}


def test_a_session_whose_pac_went_silent_expires_with_its_lifetime():
    """Mid-EAP, the PaC stops answering: the PAR is sent again on its timer
    until the session's lifetime (pana_session_s) ends it."""
    rig = Rig()
    wire, pac = Wire(rig), client()
    [par] = wire.aa(pac.initiation())
    [request] = wire.aa(pac.receive(par.data))
    [tls_start] = wire.answer(rig.radius.handle(request), (request.address, request.port))
    assert rig.service.paa.sessions
    for _ in range(int(rig.topology.mpa.pana_session_s) + 1):
        wire.tick(1.0)
    assert rig.service.paa.sessions == {} and rig.service.paa._per_source == {}
    assert wire.to_pac.count(tls_start.data) > 2
    assert (rig.counters["pana_session_expired"],
            rig.counters["pana_retransmissions_exhausted"]) == (1, 0)


def test_a_session_expires_even_while_its_par_is_retransmitted():
    mpa = dataclasses.replace(Rig().topology.mpa, pana_session_s=3)
    rig = Rig(topology=dataclasses.replace(Rig().topology, mpa=mpa))
    wire = Wire(rig)
    wire.aa(client().initiation())
    for _ in range(8):
        wire.tick(0.5)
    assert rig.service.paa.sessions == {} and rig.service.paa._per_source == {}
    assert (rig.counters["pana_session_expired"], rig.counters["pana_sessions_expired"]) == (1, 1)


# -- bounds --------------------------------------------------------------------------------------

def with_mpa(**changes) -> Rig:
    topology = Rig().topology
    return Rig(topology=dataclasses.replace(topology,
                                            mpa=dataclasses.replace(topology.mpa, **changes)))


def test_max_pana_sessions_bounds_the_sessions_in_progress():
    rig = with_mpa(max_pana_sessions=2)
    for i in range(2):
        assert len(rig.pana(client(seed=b"%d" % i).initiation(), "net-b1",
                            source=f"10.1.1.{10 + i}")) == 1
    assert rig.pana(client(seed=b"x").initiation(), "net-b1", source="10.1.1.30") == []
    assert rig.counters["pana_dropped_busy"] == 1 and len(rig.service.paa.sessions) == 2
    # Once the others expired, there is room again.
    rig.now += rig.topology.mpa.pana_session_s + 1
    assert len(rig.pana(client(seed=b"y").initiation(), "net-b1", source="10.1.1.30")) == 1


def test_pana_sessions_per_source_bounds_one_address():
    rig = with_mpa(pana_sessions_per_source=2)
    for port in (1000, 1001):
        assert len(rig.pana(client().initiation(), "net-b1", port=port)) == 1
    assert rig.pana(client().initiation(), "net-b1", port=1002) == []
    assert rig.counters["pana_dropped_busy_source"] == 1
    assert len(rig.pana(client().initiation(), "net-b1", source="10.1.1.77")) == 1


def test_a_message_beyond_pana_max_bytes_is_dropped_unread():
    rig = with_mpa(pana_max_bytes=1024)
    big = PanaMessage(pana.PCI, pana.FLAG_E, 0, 0, (pana.Avp(77, b"x" * 1100),)).encode()
    assert rig.pana(big, "net-b1") == []
    assert rig.counters["pana_dropped_malformed_oversized"] == 1
    assert rig.service.paa.sessions == {}


# -- what is dropped -----------------------------------------------------------------------------

def reason_of(case: str) -> str:
    return next(r for r in sorted(pana.REASONS, key=len, reverse=True) if case.startswith(r))


@pytest.mark.parametrize("case", sorted(BAD))
def test_malformed_pana_is_dropped_and_counted_by_reason(case):
    rig = Rig()
    pac = client()
    [par] = rig.pana(pac.initiation(), "net-b1")      # a session to leave alone
    before = state_of(rig)
    assert rig.pana(BAD[case], "net-b1") == []
    reason = reason_of(case).replace("-", "_")
    assert rig.counters[f"pana_dropped_malformed_{reason}"] == 1
    assert state_of(rig) == before


def test_every_reason_the_codec_gives_reaches_the_agents_counters():
    assert {reason_of(case) for case in BAD} == set(pana.REASONS) - {"algorithm"}


def test_a_message_for_no_open_session_is_dropped():
    rig = Rig()
    for message in (PanaMessage(pana.AUTH, 0, 0x1234, 7),
                    PanaMessage(pana.AUTH, pana.FLAG_R, 0x1234, 7),
                    PanaMessage(pana.NOTIFICATION, pana.FLAG_R | pana.FLAG_P, 0x1234, 7)):
        assert rig.pana(message.encode(), "net-b1") == []
    assert rig.counters["pana_dropped_unknown_session"] == 3


def test_another_pacs_message_for_a_session_is_dropped():
    rig = Rig()
    pac = client()
    [par] = rig.pana(pac.initiation(), "net-b1")
    pan = pac.receive(par.data)
    before = state_of(rig)
    assert rig.pana(pan, "net-b1", source="10.1.1.66") == []
    assert rig.pana(pan, "net-b1", port=PANA_SOURCE_PORT + 1) == []
    assert rig.counters["pana_dropped_wrong_peer"] == 2 and state_of(rig) == before
    assert len(rig.pana(pan, "net-b1")) == 1          # the PaC itself goes on


def test_a_final_pan_with_a_bad_auth_is_dropped_and_the_good_one_still_counts():
    rig = Rig()
    wire, pac = Wire(rig), client()
    held = []

    def aa(data):
        if decoded(data).has(pana.FLAG_C) and not held:
            held.append(data)
            forged = data[:-1] + bytes([data[-1] ^ 1])
            assert rig.pana(forged, "net-b1") == []
            return []
        return wire.aa(data)
    drive(pac, aa, wire.answer, rig.radius)
    # The SA exists since the final PAR; the forged PAN ends nothing.
    assert rig.counters["pana_dropped_bad_auth"] == 1 and len(rig.service.aa.sas) == 1
    assert len(rig.service.paa.sessions) == 1
    wire.aa(held[0])
    assert len(rig.service.aa.sas) == 1 and rig.service.paa.sessions == {}
    assert rig.counters["pana_sessions_established"] == 1


# -- rejections and limits -----------------------------------------------------------------------

def final_result(wire: Wire) -> int:
    final = decoded(wire.to_pac[-1])
    assert final.has(pana.FLAG_C)
    return final.result_code


def test_a_wrong_password_gives_a_final_par_authentication_rejected(tmp_path):
    rig = Rig()
    wrong = tmp_path / "password"
    wrong.write_text("wrong\n")
    credentials = dataclasses.replace(
        aaa.pkis()["domain-b"].credentials(IDENTITY, EAP_TTLS_PAP), password_file=str(wrong))
    pac = PanaClient(EapPeer(IDENTITY, credentials.eap_method()), True)
    wire = Wire(rig)
    assert wire.run(pac).result == "authentication-rejected"
    assert final_result(wire) == pana.PANA_AUTHENTICATION_REJECTED
    assert rig.counters["pana_authentication_rejected"] == 1
    assert rig.counters["pana_sessions_rejected"] == 1 and rig.service.paa.sessions == {}
    assert rig.service.aa.sas == {}


def test_a_revoked_certificate_is_rejected_and_counts_against_identity_and_source():
    rig = Rig()
    rig.radius.revoked.add(IDENTITY)
    limit = rig.topology.mpa.failures_per_identity
    for i in range(limit):
        wire = Wire(rig, source=f"10.1.1.{20 + i}")
        assert wire.run(client(seed=b"%d" % i)).result == "authentication-rejected"
        assert final_result(wire) == pana.PANA_AUTHENTICATION_REJECTED
    rig.radius.revoked.clear()
    wire = Wire(rig, source="10.1.1.90")
    assert wire.run(client(seed=b"late")).result == "authorization-rejected"
    assert final_result(wire) == pana.PANA_AUTHORIZATION_REJECTED
    assert rig.counters["pana_rate_limited"] == 1
    assert not wire.radius[1:], "a rate-limited identity costs the RADIUS server nothing"


# -- RADIUS servers down, failover, refused answers ----------------------------------------------

def test_a_domain_whose_server_is_down_gets_retransmissions_then_authorization_rejected():
    rig = Rig()
    rig.radius.down = set(rig.radius.domain_of)
    wire = Wire(rig)
    pac = wire.run_with_time(client())
    assert pac.result == "authorization-rejected"
    assert final_result(wire) == pana.PANA_AUTHORIZATION_REJECTED
    # Sent again (bounded by radius_max_count and radius_max_duration_s), the same bytes.
    retransmissions = rig.counters["radius_retransmissions"]
    assert 1 <= retransmissions <= rig.topology.mpa.radius_max_count
    assert len(wire.radius) == 1 + retransmissions
    assert len({d.data for d in wire.radius}) == 1, "the same datagram again"
    assert rig.counters["radius_requests_failed"] == 1
    assert rig.counters["pana_aaa_unreachable"] == 1 and rig.service.aa.sas == {}
    # An unreachable server is no user's failure: nothing against the identity.
    assert rig.service.aa.identity_limit.retry_after(IDENTITY, rig.service.wall(rig.now)) == 0


def test_a_second_server_of_the_domain_takes_over_from_one_that_is_down():
    topology = Rig().topology
    domain = topology.domains["domain-b"]
    second = RadiusServerEntry("127.0.0.1", 18199, "/unused")
    domains = dict(topology.domains)
    domains["domain-b"] = dataclasses.replace(domain, radius=dataclasses.replace(
        domain.radius, servers=domain.radius.servers + (second,)))
    rig = Rig(topology=dataclasses.replace(topology, domains=domains))
    first = domain.radius.servers[0]
    rig.radius.down = {(first.address, first.port)}
    wire = Wire(rig)
    assert wire.run_with_time(client()).result == "success"
    assert {(d.address, d.port) for d in wire.radius} == {(first.address, first.port),
                                                          (second.address, second.port)}
    assert rig.counters["radius_failovers"] >= 1 and len(rig.service.aa.sas) == 1


def resign(answer: bytes, request_auth: bytes, secret: bytes, strip_ma: bool) -> bytes:
    """``answer`` with its Message-Authenticator taken out (``strip_ma``) or
    made under ``secret``, and its Response Authenticator under ``secret``."""
    code, identifier, _ = struct.unpack("!BBH", answer[:4])
    attrs, body, i = [], answer[20:], 0
    while i < len(body):
        attrs.append((body[i], body[i + 2:i + body[i + 1]]))
        i += body[i + 1]
    kept = [(c, v) for c, v in attrs if not (strip_ma and c == aaa.MESSAGE_AUTHENTICATOR)]

    def encode(pairs):
        return b"".join(struct.pack("!BB", c, len(v) + 2) + v for c, v in pairs)
    header = struct.pack("!BBH", code, identifier, 20 + len(encode(kept)))
    if not strip_ma:
        zeroed = [(c, bytes(16) if c == aaa.MESSAGE_AUTHENTICATOR else v) for c, v in kept]
        mac = hmac.new(secret, header + request_auth + encode(zeroed), hashlib.md5).digest()
        kept = [(c, mac if c == aaa.MESSAGE_AUTHENTICATOR else v) for c, v in kept]
    body = encode(kept)
    return header + hashlib.md5(header + request_auth + body + secret).digest() + body


@pytest.mark.parametrize("strip_ma, secret, reason", [
    (True, aaa.SECRET, "no-message-authenticator"),
    (False, b"another-domains-shared-secret", "bad-authenticator"),
])
def test_a_radius_answer_that_does_not_authenticate_is_refused_and_changes_nothing(
        strip_ma, secret, reason):
    rig = Rig()
    wire, pac = Wire(rig), client()
    [par] = wire.aa(pac.initiation())
    [request] = wire.aa(pac.receive(par.data))
    genuine = rig.radius.handle(request)
    forged = resign(genuine, request.data[4:20], secret, strip_ma)
    before = state_of(rig)
    assert rig.radius_answer(forged, (request.address, request.port)) == []
    assert rig.counters[f"radius_refused_{reason.replace('-', '_')}"] == 1
    assert state_of(rig) == before
    # The genuine answer, still awaited, goes on.
    [next_par] = rig.radius_answer(genuine, (request.address, request.port))
    assert decoded(next_par.data).eap_payload is not None


def test_a_radius_answer_from_no_server_of_ours_is_dropped():
    rig = Rig()
    assert rig.radius_answer(b"\x02\x01\x00\x14" + bytes(16), ("192.0.2.9", 1812)) == []
    assert rig.counters["radius_from_unknown_server"] == 1


# -- the MAC binding ---------------------------------------------------------------------------

def test_the_first_signed_message_binds_the_mac_and_a_later_other_mac_is_refused():
    rig = Rig()
    state = rig.preauth()
    rig.bind(state)
    sa = rig.service.aa.sas[state.sa]
    assert sa.mn_mac == MN_MAC and rig.counters["sa_mac_bound"] == 1
    other = dataclasses.replace(state, mn_mac="02:00:00:00:07:07")
    data, _ = protocol.request(other, "instructions")
    assert rig.one(data, "net-b1").fields["code"] == "mac-mismatch"
    assert rig.counters["signal_mac_mismatch"] == 1
    assert sa.mn_mac == MN_MAC and rig.service.aa.by_mac == {MN_MAC: {sa.id}}


# -- Ping and Termination on an established SA --------------------------------------------------

def established(rig: Rig, **kw):
    state = rig.preauth(**kw)
    return state, state.pana


def request(record: dict, kind: int, seq: int, key=None, avps=()) -> bytes:
    flags = pana.FLAG_R | (pana.FLAG_P if kind == pana.NOTIFICATION else 0)
    message = PanaMessage(kind, flags, record["session"], seq, tuple(avps))
    return pana_security.sign(message, key or bytes.fromhex(record["auth_key"]),
                              record["integrity"])


def ping(rig: Rig, record: dict, seq: int, **kw) -> list:
    return rig.pana(request(record, pana.NOTIFICATION, seq, **kw), "net-b1")


def test_a_ping_is_answered_under_pana_auth_key_and_a_copy_answered_again():
    rig = Rig()
    _, record = established(rig)
    [answer] = ping(rig, record, 100)
    pna = decoded(answer.data)
    assert (pna.msg_type, pna.is_request, pna.has(pana.FLAG_P), pna.seq) == (
        pana.NOTIFICATION, False, True, 100)
    assert pana_security.verify_auth(answer.data, bytes.fromhex(record["auth_key"]),
                                     record["integrity"])
    [again] = ping(rig, record, 100)
    assert again.data == answer.data
    assert (rig.counters["pana_ping_answered"],
            rig.counters["pana_request_retransmission"]) == (1, 1)


def test_a_ping_with_a_bad_auth_or_replayed_is_dropped():
    rig = Rig()
    state, record = established(rig)
    assert ping(rig, record, 5, key=b"k" * 32) == []
    assert rig.counters["pana_dropped_bad_auth"] == 1
    assert len(ping(rig, record, 6)) == 1
    assert ping(rig, record, 5) == []                 # older than the last: a replay
    assert rig.counters["pana_dropped_replay"] == 1
    assert rig.service.aa.sas[state.sa].pana["pac_seq"] == 6
    unsigned = PanaMessage(pana.NOTIFICATION, pana.FLAG_R | pana.FLAG_P,
                           record["session"], 7).encode()
    assert rig.pana(unsigned, "net-b1") == []
    assert rig.counters["pana_dropped_bad_auth"] == 2


def test_termination_ends_the_sa_and_its_lease():
    rig = Rig()
    rig.settle_dad()
    state, record = established(rig)
    rig.configure(state)
    assert len(rig.service.lease_views(rig.now)) == 1
    ptr = request(record, pana.TERMINATION, 9,
                  avps=(pana.termination_cause(pana.TERMINATION_LOGOUT),))
    [pta] = rig.pana(ptr, "net-b1")
    answer = decoded(pta.data)
    assert (answer.msg_type, answer.is_request, answer.seq) == (pana.TERMINATION, False, 9)
    assert rig.service.aa.sas == {} and rig.service.lease_views(rig.now) == []
    assert rig.counters["pana_terminated"] == 1
    # The session is gone with its SA, but a copy of the PTR (its PTA lost)
    # gets the same PTA while a session could last; then nothing.
    [again] = rig.pana(ptr, "net-b1")
    assert again.data == pta.data and rig.counters["pana_request_retransmission"] == 1
    rig.now += rig.topology.mpa.pana_session_s + 1
    assert rig.pana(ptr, "net-b1") == []
    assert rig.counters["pana_dropped_unknown_session"] == 1
    assert rig.counters["pana_terminated"] == 1


def test_an_auth_request_on_an_established_session_is_dropped():
    rig = Rig()
    state, record = established(rig)
    par = request(record, pana.AUTH, 3)
    assert rig.pana(par, "net-b1") == []
    assert rig.counters["pana_dropped_unexpected"] == 1
    assert state.sa in rig.service.aa.sas


def test_an_sas_pana_state_survives_a_restart_and_still_answers_ping():
    store = MemoryStore()
    rig = Rig(store=store)
    state, record = established(rig)
    [before] = ping(rig, record, 40)
    rig.restart()
    assert rig.service.aa.by_session(record["session"]).id == state.sa
    [again] = ping(rig, record, 40)                   # the answer kept across the restart
    assert again.data == before.data
    assert len(ping(rig, record, 41)) == 1
    assert ping(rig, record, 39) == [] and rig.counters["pana_dropped_replay"] == 1


def test_a_session_waiting_for_a_slow_radius_server_still_ends_with_its_lifetime():
    """pana_session_s bounds a session whatever phase it is in: one waiting
    for an answer RADIUS retransmits over minutes is closed at its end."""
    rig = with_mpa(radius_initial_rt_s=60, radius_max_rt_s=600, radius_max_duration_s=600)
    rig.radius.down = set(rig.radius.domain_of)
    wire, pac = Wire(rig), client()
    [par] = wire.aa(pac.initiation())
    [request] = wire.aa(pac.receive(par.data))        # no PAR outstanding now
    for _ in range(int(rig.topology.mpa.pana_session_s) + 1):
        wire.tick(1.0)
    assert rig.service.paa.sessions == {}
    assert rig.counters["pana_session_expired"] == 1
    assert rig.service.preauth.aaa.next_due() is None, "its RADIUS request was cancelled"


def test_an_expired_sa_answers_no_ping():
    """Its Session-Lifetime is over: the PANA session is too (RFC 5191 §4.4),
    though the AA keeps the SA a while to tell the MN it expired."""
    rig = Rig()
    state, record = established(rig)
    rig.now += state.lifetime + 1
    rig.service.tick(rig.now)
    assert rig.service.aa.sas[state.sa].state == "expired"
    assert ping(rig, record, 50) == []
    assert rig.counters["pana_dropped_expired_session"] == 1
    assert rig.counters["pana_ping_answered"] == 0

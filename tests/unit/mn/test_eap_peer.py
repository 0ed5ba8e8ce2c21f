"""The MN's EAP peer against the test authenticator: EAP-TLS and EAP-TTLS/PAP
to success with the same keys on both sides, each way to fail with its
reason and without keys, the Nak, fragmentation both ways, and the bounds."""

from __future__ import annotations

import hashlib
import hmac
import random
from pathlib import Path

import pytest

from mpa_mn.eap_peer import EapPeer, EapTls, EapTtlsPap
from mpa_protocol import eap
from mpa_protocol.eap import EapError, EapPacket
from support.eap_server import EapServer, converse
from support.pki import Pki

NAI = "mn1@domain-a.example"
SERVER_NAME = "radius.domain-a.example"
PASSWORD = "correct horse battery staple"


class Domain:
    """A domain's CA, its authentication server's certificate, MNs'
    certificates (one revoked) and another CA the domain does not trust."""

    def __init__(self, directory: Path):
        self.pki = Pki(directory / "domain-a", "domain-a-ca")
        self.server = self.pki.issue(SERVER_NAME, dns_names=(SERVER_NAME,))
        self.mn = self.pki.issue(NAI)
        self.revoked = self.pki.issue("mn2@domain-a.example")
        self.pki.revoke(self.revoked)
        self.other = Pki(directory / "other", "other-ca")
        self.foreign = self.other.issue(NAI)
        self.impostor = self.other.issue(SERVER_NAME, dns_names=(SERVER_NAME,))

    def large(self, common_name: str):
        """A certificate larger than one default fragment: it names 40 hosts."""
        return self.pki.issue(common_name, dns_names=tuple(
            f"host-{i}.{SERVER_NAME}" for i in range(40)) + (SERVER_NAME,),
            stem=f"large-{common_name}")

    def tls_server(self, issued=None, **kwargs) -> EapServer:
        issued = issued or self.server
        kwargs.setdefault("revoked_serials", self.pki.revoked)
        return EapServer(issued.cert, issued.key, self.pki.ca, **kwargs)

    def ttls_server(self, **kwargs) -> EapServer:
        return self.tls_server(methods=(eap.TTLS,), users={"alice": PASSWORD}, **kwargs)

    def tls_peer(self, issued=None, *, identity=NAI, ca=None, server_name=SERVER_NAME, **kwargs):
        issued = issued or self.mn
        return EapPeer(identity, EapTls(issued.cert, issued.key, ca or self.pki.ca,
                                        server_name=server_name), **kwargs)

    def ttls_peer(self, password=PASSWORD, **kwargs):
        return EapPeer(NAI, EapTtlsPap("alice", password, self.pki.ca,
                                       anonymous_identity="anonymous@domain-a.example",
                                       server_name=SERVER_NAME), **kwargs)


@pytest.fixture(scope="module")
def domain(tmp_path_factory):
    return Domain(tmp_path_factory.mktemp("eap"))


def assert_failed(peer, server, peer_reason, server_reason):
    assert (peer.result, peer.reason) == ("failure", peer_reason)
    assert (server.result, server.reason) == ("failure", server_reason)
    assert peer.msk is None and peer.emsk is None and server.msk is None


def tls12_prf(digest, secret: bytes, label: bytes, seed: bytes, length: int) -> bytes:
    """TLS 1.2's PRF (RFC 5246 §5): P_hash(secret, label + seed)."""
    out, a = b"", label + seed
    while len(out) < length:
        a = hmac.new(secret, a, digest).digest()
        out += hmac.new(secret, a + label + seed, digest).digest()
    return out[:length]


# --- success -----------------------------------------------------------------

def test_eap_tls_succeeds_with_the_same_msk_and_emsk_on_both_sides(domain):
    peer, server = domain.tls_peer(), domain.tls_server()
    converse(peer, server)
    assert (peer.result, peer.reason, server.result) == ("success", None, "success")
    assert len(peer.msk) == len(peer.emsk) == 64 and peer.msk != peer.emsk
    assert (peer.msk, peer.emsk) == (server.msk, server.emsk)
    assert server.identity == NAI


@pytest.mark.parametrize("method, label", [(eap.TLS, b"client EAP encryption"),
                                           (eap.TTLS, b"ttls keying material")])
def test_the_keys_are_the_tls_prf_of_the_master_secret_and_randoms(domain, method, label):
    # RFC 5216 §2.3 and RFC 5281 §8: MSK || EMSK = TLS-PRF-128(master secret,
    # label, client.random || server.random), computed here from the
    # connection's secrets without the exporter the peer uses.
    if method == eap.TLS:
        peer, server = domain.tls_peer(), domain.tls_server()
    else:
        peer, server = domain.ttls_peer(), domain.ttls_server()
    converse(peer, server)
    connection = server.tls.connection
    assert connection.get_protocol_version_name() == "TLSv1.2"
    # TLS 1.2's PRF hashes with the cipher suite's hash, SHA-256 unless the
    # suite says SHA-384 (RFC 5288 §3, RFC 5289 §3).
    digest = hashlib.sha384 if connection.get_cipher_name().endswith("SHA384") else hashlib.sha256
    keys = tls12_prf(digest, connection.master_key(), label,
                     connection.client_random() + connection.server_random(), 128)
    assert peer.msk + peer.emsk == keys


def test_eap_ttls_pap_succeeds_with_the_anonymous_identity_outside(domain):
    peer, server = domain.ttls_peer(), domain.ttls_server()
    requests, responses = converse(peer, server)
    assert (peer.result, server.result) == ("success", "success")
    assert peer.msk == server.msk and peer.emsk == server.emsk
    assert server.identity == "anonymous@domain-a.example" and server.user == "alice"
    # The password never crosses in the clear.
    assert not any(PASSWORD.encode() in r for r in responses)


def test_certificate_chains_larger_than_a_fragment_go_both_ways(domain):
    peer = domain.tls_peer(domain.large(NAI))
    server = domain.tls_server(domain.large(SERVER_NAME))
    requests, responses = converse(peer, server)
    assert (peer.result, server.result) == ("success", "success") and peer.msk == server.msk

    def flags(packets, code):
        decoded = [eap.decode(p) for p in packets]
        return [eap.decode_tls(p).flags for p in decoded if p.type == eap.TLS and p.code == code]
    assert eap.FLAG_L | eap.FLAG_M in flags(requests, eap.REQUEST)
    assert eap.FLAG_L | eap.FLAG_M in flags(responses, eap.RESPONSE)
    assert all(len(p) <= 1010 for p in requests + responses)
    assert server.link.fragments_received > 3 and peer._link.fragments_received > 3


@pytest.mark.parametrize("fragment_size", [64, 300])
def test_small_fragments_on_both_sides_still_succeed(domain, fragment_size):
    peer = domain.tls_peer(fragment_size=fragment_size, max_round_trips=200)
    server = domain.tls_server(fragment_size=fragment_size)
    converse(peer, server)
    assert (peer.result, server.result) == ("success", "success") and peer.msk == server.msk


# --- failures ------------------------------------------------------------------

def test_a_wrong_password_fails(domain):
    peer, server = domain.ttls_peer(password="wrong"), domain.ttls_server()
    converse(peer, server)
    assert_failed(peer, server, "eap_failure", "pap_wrong_password")


def test_an_unknown_user_fails(domain):
    peer = EapPeer(NAI, EapTtlsPap("mallory", PASSWORD, domain.pki.ca))
    server = domain.ttls_server()
    converse(peer, server)
    assert_failed(peer, server, "eap_failure", "pap_unknown_user")


def test_a_revoked_client_certificate_fails(domain):
    peer = domain.tls_peer(domain.revoked, identity="mn2@domain-a.example")
    server = domain.tls_server()
    converse(peer, server)
    assert_failed(peer, server, "tls_alert_received", "client_certificate_revoked")
    assert "alert" in peer.detail


def test_a_client_certificate_from_a_foreign_ca_fails(domain):
    peer, server = domain.tls_peer(domain.foreign), domain.tls_server()
    converse(peer, server)
    assert_failed(peer, server, "tls_alert_received", "client_certificate_untrusted")


def test_a_client_certificate_of_another_identity_fails(domain):
    peer, server = domain.tls_peer(identity="mn9@domain-a.example"), domain.tls_server()
    converse(peer, server)
    assert_failed(peer, server, "tls_alert_received", "client_identity_mismatch")


def test_a_server_the_peer_does_not_trust_fails(domain):
    peer = domain.tls_peer(ca=domain.other.ca)
    server = domain.tls_server()
    converse(peer, server)
    assert_failed(peer, server, "server_certificate_untrusted", "tls_alert_received")
    # Which depends on whether the server sends its CA along (OpenSSL builds
    # the chain from its store): either way the chain ends outside our CA.
    assert peer.detail in ("self-signed certificate in chain",
                           "unable to get local issuer certificate")


def test_an_impostor_server_with_the_right_name_but_another_ca_fails(domain):
    peer = domain.ttls_peer()
    server = EapServer(domain.impostor.cert, domain.impostor.key, domain.other.ca,
                       methods=(eap.TTLS,), users={"alice": PASSWORD})
    converse(peer, server)
    assert_failed(peer, server, "server_certificate_untrusted", "tls_alert_received")
    # Which depends on whether the server sends its CA along (OpenSSL builds
    # the chain from its store): either way the chain ends outside our CA.
    assert peer.detail in ("self-signed certificate in chain",
                           "unable to get local issuer certificate")
    assert server.user is None       # the password never went out


def test_a_server_certificate_for_another_name_fails(domain):
    peer = domain.tls_peer(server_name="radius.domain-b.example")
    server = domain.tls_server()
    converse(peer, server)
    assert_failed(peer, server, "server_name_mismatch", "tls_alert_received")


# --- Nak -----------------------------------------------------------------------

def test_the_peer_naks_a_method_it_is_not_configured_for(domain):
    peer = domain.tls_peer()
    server = domain.tls_server(methods=(eap.TTLS, eap.TLS))
    requests, responses = converse(peer, server)
    nak = eap.decode(responses[1])
    assert (nak.type, nak.data) == (eap.NAK, bytes([eap.TLS]))
    assert (peer.result, server.result, server.method) == ("success", "success", eap.TLS)
    assert peer.msk == server.msk and peer.counters["naks_sent"] == 1


def test_a_nak_the_server_cannot_follow_ends_in_failure(domain):
    peer, server = domain.tls_peer(), domain.ttls_server()
    converse(peer, server)
    assert_failed(peer, server, "eap_failure", "no_common_method")


# --- bounds ----------------------------------------------------------------------

def test_the_round_trip_bound_ends_the_conversation(domain):
    peer, server = domain.tls_peer(max_round_trips=3), domain.tls_server()
    with pytest.raises(EapError) as raised:
        converse(peer, server)
    assert raised.value.reason == "too_many_round_trips"
    assert (peer.result, peer.reason, peer.msk) == ("failure", "too_many_round_trips", None)
    assert peer.round_trips == 4


def test_the_default_round_trip_bound_stops_a_conversation_in_tiny_fragments(domain):
    # 64-octet fragments need over 50 Requests: 50 is the default bound.
    peer = domain.tls_peer()
    server = domain.tls_server(fragment_size=16)
    with pytest.raises(EapError, match="too_many_round_trips"):
        converse(peer, server)
    assert peer.round_trips == 51 and peer.result == "failure"


def test_the_peer_bounds_the_size_of_a_message_it_reassembles(domain):
    peer = domain.tls_peer(max_message=500)
    server = domain.tls_server(fragment_size=200)
    with pytest.raises(EapError, match="tls_too_long"):
        converse(peer, server)
    assert (peer.result, peer.reason, peer.msk) == ("failure", "tls_too_long", None)


def test_the_peer_bounds_the_fragments_of_a_message(domain):
    peer = domain.tls_peer(max_fragments=4)
    server = domain.tls_server(fragment_size=100)
    with pytest.raises(EapError, match="tls_too_many_fragments"):
        converse(peer, server)
    assert peer.reason == "tls_too_many_fragments"


# --- what a peer must not be fooled by ----------------------------------------

def started(domain, peer=None):
    """A peer past Identity and the first TLS flight, and the server's next Request."""
    peer = peer or domain.tls_peer()
    server = domain.tls_server()
    request = server.start()
    for _ in range(3):       # Identity, Start, the server's flight
        request = server.handle(peer.handle(request))
    return peer, server, request


def test_garbage_tls_records_mid_conversation_fail_cleanly(domain):
    peer, server, request = started(domain)
    identifier = eap.decode(request).identifier
    # Instead of the server's Finished, a whole message of garbage.
    garbage = random.Random(1).randbytes(300)
    bad = eap.tls_packet(eap.REQUEST, identifier + 1, eap.TLS, eap.TlsFrame(0, garbage))
    response = peer.handle(bad.encode())
    assert (peer.result, peer.reason, peer.msk) == ("failure", "tls_error", None)
    # The alert goes out in a Response; a later Success changes nothing.
    assert eap.decode(response).code == eap.RESPONSE
    assert peer.handle(EapPacket(eap.SUCCESS, identifier + 1).encode()) is None
    assert (peer.result, peer.msk) == ("failure", None)


def test_garbage_framing_mid_conversation_fails_cleanly(domain):
    peer, server, request = started(domain)
    bad = EapPacket(eap.REQUEST, 200, eap.TLS, b"\x1f\x00").encode()
    with pytest.raises(EapError, match="tls_reserved_flags"):
        peer.handle(bad)
    assert (peer.result, peer.reason, peer.msk) == ("failure", "tls_reserved_flags", None)
    with pytest.raises(EapError, match="finished"):
        peer.handle(request)


def test_undecodable_packets_are_refused_and_change_nothing(domain):
    peer, server, request = started(domain)
    before = peer.round_trips
    for junk in (b"", b"\x01\x02\x00\x09abc", b"\x02\x01\x00\x05\x01"):
        with pytest.raises(EapError):
            peer.handle(junk)
    assert peer.result is None and peer.round_trips == before
    assert peer.counters["discarded_short"] == 1 and peer.counters["discarded_response"] == 1
    converse_from(peer, server, request)
    assert (peer.result, server.result) == ("success", "success") and peer.msk == server.msk


def converse_from(peer, server, request):
    while (response := peer.handle(request)) is not None:
        request = server.handle(response)


def test_a_success_before_the_method_ended_is_a_failure(domain):
    peer = domain.tls_peer()
    peer.handle(EapPacket(eap.REQUEST, 1, eap.IDENTITY).encode())
    assert peer.handle(EapPacket(eap.SUCCESS, 1).encode()) is None
    assert (peer.result, peer.reason, peer.msk) == ("failure", "early_success", None)


def test_a_method_that_does_not_start_with_start_fails(domain):
    peer = domain.tls_peer()
    with pytest.raises(EapError, match="tls_no_start"):
        peer.handle(EapPacket(eap.REQUEST, 1, eap.TLS, b"\x00hello").encode())
    assert peer.reason == "tls_no_start"


def test_a_second_start_mid_method_fails(domain):
    peer, server, request = started(domain)
    with pytest.raises(EapError, match="tls_unexpected_start"):
        peer.handle(EapPacket(eap.REQUEST, 99, eap.TLS, b"\x20").encode())


def test_a_retransmitted_request_gets_the_same_response_without_a_round_trip(domain):
    peer, server = domain.tls_peer(), domain.tls_server()
    request = server.handle(peer.handle(server.start()))     # the Start
    first = peer.handle(request)
    assert peer.handle(request) == first
    assert peer.round_trips == 2 and peer.counters["duplicate_requests"] == 1
    converse_from(peer, server, server.handle(first))
    assert peer.result == "success"


def test_a_notification_is_acknowledged(domain):
    peer = domain.tls_peer()
    response = peer.handle(EapPacket(eap.REQUEST, 4, eap.NOTIFICATION, b"hello").encode())
    assert eap.decode(response) == EapPacket(eap.RESPONSE, 4, eap.NOTIFICATION)


def test_identity_is_the_nai_for_tls_and_the_anonymous_one_for_ttls(domain):
    identity = EapPacket(eap.REQUEST, 1, eap.IDENTITY).encode()
    assert eap.identity_of(domain.tls_peer().handle(identity)) == NAI
    assert eap.identity_of(domain.ttls_peer().handle(identity)) == "anonymous@domain-a.example"


def test_a_failure_ends_the_conversation_and_later_requests_are_refused(domain):
    peer = domain.tls_peer()
    assert peer.handle(EapPacket(eap.FAILURE, 1).encode()) is None
    assert (peer.result, peer.reason) == ("failure", "eap_failure")
    with pytest.raises(EapError, match="finished"):
        peer.handle(EapPacket(eap.REQUEST, 2, eap.IDENTITY).encode())


def test_no_secret_in_reprs_or_errors(domain):
    method = EapTtlsPap("alice", PASSWORD, domain.pki.ca)
    peer = EapPeer(NAI, method)
    assert PASSWORD not in repr(method) and PASSWORD not in repr(peer)
    assert "key" not in repr(EapTls(domain.mn.cert, domain.mn.key, domain.pki.ca))
    peer, server = domain.ttls_peer(), domain.ttls_server()
    converse(peer, server)
    for text in (repr(peer), str(peer.counters), repr(server.tls)):
        assert peer.msk.hex() not in text and PASSWORD not in text


def test_an_identity_an_aa_would_refuse_is_refused_at_once(domain):
    with pytest.raises(EapError, match="bad_identity"):
        domain.tls_peer(identity="mn\n1")
    with pytest.raises(EapError, match="bad_identity"):
        domain.tls_peer(identity="a" * 254)


def test_a_length_on_an_unfragmented_message_is_taken(domain):
    # FreeRADIUS sets L on every first fragment, the only one included.
    peer, server = domain.tls_peer(), domain.tls_server()
    request = server.handle(peer.handle(server.start()))     # the Start
    response = peer.handle(request)
    flight = eap.decode(server.handle(response))
    frame = eap.decode_tls(flight)
    with_length = eap.TlsFrame(eap.FLAG_L, frame.data, len(frame.data))
    request = eap.tls_packet(eap.REQUEST, flight.identifier, eap.TLS, with_length).encode()
    converse_from(peer, server, request)
    assert (peer.result, server.result) == ("success", "success") and peer.msk == server.msk


def test_a_conversation_with_one_request_mutated_ends_cleanly(domain):
    # Whatever one Request turns into, the peer answers, refuses it with
    # EapError, or fails; it never raises anything else, and it never
    # succeeds with keys other than the server's.
    rng = random.Random(5281)
    outcomes = set()
    for trial in range(40):
        peer, server = domain.tls_peer(), domain.tls_server(fragment_size=300)
        request, target = server.start(), rng.randrange(1, 8)
        for step in range(60):
            if step == target:
                data = bytearray(request)
                for _ in range(rng.randrange(1, 4)):
                    data[rng.randrange(len(data))] = rng.randrange(256)
                request = bytes(data)
            try:
                response = peer.handle(request)
            except EapError as error:
                outcomes.add(error.reason)
                break
            if response is None:
                break
            try:
                request = server.handle(response)
            except EapError as error:
                outcomes.add(f"server {error.reason}")
                break
        if peer.result == "success":
            assert peer.msk == server.msk
        else:
            assert peer.msk is None
        outcomes.add(f"peer {peer.result} {peer.reason}")
    assert "peer failure tls_error" in outcomes and len(outcomes) > 5


def test_a_ttls_peer_answers_a_newer_version_with_version_0(domain):
    # RFC 5281 §9.2.2: the server's Start offers its highest version, the
    # peer answers with the one it speaks, here 0, the only one there is.
    peer = domain.ttls_peer()
    response = eap.decode(peer.handle(EapPacket(eap.REQUEST, 2, eap.TTLS, b"\x21").encode()))
    frame = eap.decode_tls(response)
    assert frame.version == 0 and frame.data.startswith(b"\x16\x03")    # a ClientHello


@pytest.mark.parametrize("method", ["tls", "ttls"])
def test_a_finished_conversation_leaves_no_cycle_for_the_collector(domain, method):
    """The certificate checks reach their connection by a weak reference:
    the connection holds the check, and a check holding the connection was
    a cycle per conversation (with its TLS state) that only the garbage
    collector freed; ten thousand of them at once in the scale benchmark."""
    import gc
    from mpa_mn.eap_peer import MemoryTls
    peer, server = (domain.tls_peer(), domain.tls_server()) if method == "tls" else \
        (domain.ttls_peer(), domain.ttls_server())
    gc.collect()
    gc.disable()
    gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        converse(peer, server)
        assert (peer.result, server.result) == ("success", "success")
        del peer, server
        gc.collect()
        left = [o for o in gc.garbage if isinstance(o, MemoryTls)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
        gc.enable()
    assert left == []

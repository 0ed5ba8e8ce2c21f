"""RADIUS for EAP (RFC 3579): the Access-Requests the AA sends, the answers
it takes and every answer it refuses, and the MS-MPPE keys' decryption.

Answers are built by ``support.radius_answers`` with struct, hashlib and
hmac, not with pyrad, so the codec is checked against an encoding written
apart from it; one Access-Accept
is the bytes FreeRADIUS 3.2.1 sent, with the MSK eapol_test derived.
"""

from __future__ import annotations

import hashlib
import hmac
import random
import struct

import pytest

from mpa_sdn import radius
from mpa_sdn.radius import RadiusError
from support import radius_answers
from support.radius_answers import encrypt_mppe

SECRET = b"s3cret"
REQUEST_AUTH = bytes(range(16))
EAP_IDENTITY = b"\x02\x07\x00\x11\x01mn1@a.example"   # EAP-Response/Identity


def eap_request(identifier: int, size: int) -> bytes:
    """An EAP-Request of ``size`` octets (type 13, EAP-TLS)."""
    return struct.pack("!BBHB", 1, identifier, size, 13) + bytes(i % 251 for i in range(size - 5))


def answer(code: int, attrs: list, *, identifier: int = 7, secret: bytes = SECRET, **more) -> bytes:
    return radius_answers.answer(code, attrs, identifier=identifier, secret=secret,
                                 request_auth=REQUEST_AUTH, **more)


RECV_KEY, SEND_KEY = bytes(range(32)), bytes(range(100, 132))


def accept_attrs(recv=RECV_KEY, send=SEND_KEY) -> list:
    return [(79, b"\x03\x07\x00\x04"),
            ((311, 17), encrypt_mppe(recv, SECRET, REQUEST_AUTH, b"\x80\x01")),
            ((311, 16), encrypt_mppe(send, SECRET, REQUEST_AUTH, b"\x80\x02"))]


def parse(data: bytes, identifier: int = 7) -> radius.Answer:
    return radius.parse_answer(data, identifier=identifier, request_authenticator=REQUEST_AUTH,
                               secret=SECRET)


def attributes_of(data: bytes) -> list[tuple[int, bytes]]:
    return radius_answers.attributes(data[20:])


# -- requests ---------------------------------------------------------------
def request(eap=EAP_IDENTITY, **more) -> bytes:
    return radius.access_request(identifier=7, authenticator=REQUEST_AUTH, secret=SECRET, eap=eap,
                                 user_name="mn1@a.example", calling_station_id="02-00-00-00-00-01",
                                 nas_identifier="aa.a.example", **more)


def test_an_access_request_carries_the_identity_the_mac_the_nas_and_the_eap_message():
    data = request(state=b"round-2")
    assert data[:2] == b"\x01\x07" and data[4:20] == REQUEST_AUTH
    assert struct.unpack("!H", data[2:4])[0] == len(data)
    attrs = dict(attributes_of(data))
    assert attrs[1] == b"mn1@a.example"
    assert attrs[31] == b"02-00-00-00-00-01"
    assert attrs[32] == b"aa.a.example"
    assert attrs[24] == b"round-2"
    assert attrs[79] == EAP_IDENTITY


def test_an_access_request_without_state_sends_none():
    assert 24 not in dict(attributes_of(request()))


def test_a_long_eap_message_is_split_into_attributes_of_253_octets_in_order():
    eap = eap_request(3, 600)
    chunks = [v for c, v in attributes_of(request(eap=eap)) if c == 79]
    assert [len(c) for c in chunks] == [253, 253, 94]
    assert b"".join(chunks) == eap


@pytest.mark.parametrize("build", [request, lambda: radius.status_server(
    identifier=7, authenticator=REQUEST_AUTH, secret=SECRET, nas_identifier="aa")])
def test_every_request_has_a_message_authenticator_over_the_whole_packet(build):
    data = build()
    attrs = attributes_of(data)
    mac = [v for c, v in attrs if c == 80]
    assert len(mac) == 1
    zeroed = data.replace(mac[0], bytes(16))
    assert hmac.new(SECRET, zeroed, hashlib.md5).digest() == mac[0]


@pytest.mark.parametrize("field", [dict(user_name="x" * 254), dict(framed_mtu=2 ** 32),
                                   dict(calling_station_id="m" * 300)])
def test_a_value_that_does_not_fit_its_attribute_is_refused(field):
    arguments = dict(identifier=7, authenticator=REQUEST_AUTH, secret=SECRET, eap=EAP_IDENTITY,
                     user_name="mn1@a.example", calling_station_id="02-00-00-00-00-01",
                     nas_identifier="aa.a.example") | field
    with pytest.raises(RadiusError) as e:
        radius.access_request(**arguments)
    assert e.value.reason == "malformed"


def test_an_empty_eap_message_is_refused():
    with pytest.raises(RadiusError) as e:
        request(eap=b"")
    assert e.value.reason == "malformed"


# -- answers ----------------------------------------------------------------
def test_a_challenge_gives_the_eap_reassembled_the_state_and_the_session_timeout():
    eap = eap_request(8, 700)
    attrs = [(79, eap[i:i + 253]) for i in range(0, 700, 253)] + [
        (24, b"state-1"), (27, struct.pack("!I", 30))]
    got = parse(answer(11, attrs))
    assert (got.kind, got.eap, got.state, got.session_timeout) == ("challenge", eap, b"state-1", 30)
    assert got.msk is None


def test_an_accept_gives_the_msk_as_recv_key_then_send_key():
    got = parse(answer(2, accept_attrs() + [(18, b"welcome")]))
    assert got.kind == "accept" and got.msk == RECV_KEY + SEND_KEY
    assert got.reply_message == "welcome"


def test_a_reject_needs_no_eap_message():
    assert parse(answer(3, [])).kind == "reject"


# What FreeRADIUS 3.2.1 sent for an EAP-TLS success (secret "s3cret"), and
# the MSK eapol_test (wpa_supplicant 2.10) derived from the TLS handshake.
FREERADIUS_REQUEST_AUTH = bytes.fromhex("08901d62471ea2f9bb30862621135cca")
FREERADIUS_ACCEPT = bytes.fromhex(
    "020400af968df918e8448ffbd8715161dfdb69d61a3a000001371134b48b93af23dfc78b7bf27582"
    "a6f665531ac8c8cec02b1be4d35cb5eb750bb8e5fd685093755ab24924e3bafee1bf71afc0641a3a"
    "000001371034bd27c6c7b0adbddfbc64a88282faa45b23594ca7311dd04524aa53a605349d28810c"
    "0c928e4411655aed98f19ff1eaf8606e4f060355000450128a381c3df96005ff8221c98cddb80135"
    "010f6d6e3140612e6578616d706c65")
EAPOL_TEST_MSK = bytes.fromhex(
    "9f46b8d8b98e279c49a4aaeeb43f5109951086169f2efaf46709896792f8220d"
    "387c37cf63c1ab762027bc5a632f81c0410687753dd910b5cc86202bbfa429e7")


def test_freeradius_s_accept_gives_the_msk_the_peer_derived():
    got = radius.parse_answer(FREERADIUS_ACCEPT, identifier=4,
                              request_authenticator=FREERADIUS_REQUEST_AUTH, secret=b"s3cret")
    assert got.kind == "accept" and got.eap == b"\x03\x55\x00\x04"
    assert got.msk == EAPOL_TEST_MSK


@pytest.mark.parametrize("key", [b"", b"k", bytes(15), bytes(range(32)), bytes(range(200))])
def test_mppe_key_decrypts_what_rfc_2548_encrypts(key):
    value = encrypt_mppe(key, SECRET, REQUEST_AUTH, b"\x9a\x5c")
    assert radius.mppe_key(value, SECRET, REQUEST_AUTH) == key


@pytest.mark.parametrize("value", [b"", b"\x80", b"\x00\x01" + bytes(16), b"\x80\x01" + bytes(15),
                                   b"\x80\x01"])
def test_mppe_key_refuses_a_value_no_server_sends(value):
    with pytest.raises(RadiusError) as e:
        radius.mppe_key(value, SECRET, REQUEST_AUTH)
    assert e.value.reason == "bad-keys"


def test_mppe_key_refuses_a_length_beyond_what_was_sent():
    value = encrypt_mppe(bytes(15), SECRET, REQUEST_AUTH, b"\x80\x01")
    plain_first = bytes([200])       # claims 200 octets in one block
    pad = hashlib.md5(SECRET + REQUEST_AUTH + b"\x80\x01").digest()
    forged = value[:2] + bytes([plain_first[0] ^ pad[0]]) + value[3:]
    with pytest.raises(RadiusError) as e:
        radius.mppe_key(forged, SECRET, REQUEST_AUTH)
    assert e.value.reason == "bad-keys"


def _with_header(data: bytes, **fields) -> bytes:
    code, identifier, length = struct.unpack("!BBH", data[:4])
    values = dict(code=code, identifier=identifier, length=length) | fields
    return struct.pack("!BBH", values["code"], values["identifier"], values["length"]) + data[4:]


REFUSED = {
    "bad-authenticator": lambda: answer(11, [(79, eap_request(1, 6))], secret=b"other"),
    "no-message-authenticator": lambda: answer(11, [(79, eap_request(1, 6))],
                                               message_authenticator=False),
    "bad-message-authenticator": lambda: answer(11, [(79, eap_request(1, 6))],
                                                ma_secret=b"other"),
    "unexpected-code": lambda: answer(5, [(79, eap_request(1, 6))]),
    "wrong-identifier": lambda: answer(11, [(79, eap_request(1, 6))], identifier=8),
    "malformed": lambda: answer(11, [(79, eap_request(1, 6))])[:19],
    "no-eap-message": lambda: answer(11, [(24, b"s")]),
    "malformed-eap": lambda: answer(11, [(79, b"\x01\x02\x00\x09\x0d")]),
    "no-keys": lambda: answer(2, accept_attrs()[:2]),
    "bad-keys": lambda: answer(2, [(79, b"\x03\x07\x00\x04"), ((311, 17), b"\x80\x01" + bytes(32)),
                                   ((311, 16), b"\x00\x01" + bytes(32))]),
}


@pytest.mark.parametrize("reason", sorted(REFUSED))
def test_every_refused_answer_names_its_reason(reason):
    with pytest.raises(RadiusError) as e:
        parse(REFUSED[reason]())
    assert e.value.reason == reason


def test_a_length_field_beyond_the_datagram_is_malformed():
    data = answer(11, [(79, eap_request(1, 6))])
    with pytest.raises(RadiusError) as e:
        parse(_with_header(data, length=len(data) + 1))
    assert e.value.reason == "malformed"


def test_octets_past_the_length_field_are_padding():
    data = answer(11, [(79, eap_request(1, 6))])
    assert parse(data + b"junk").kind == "challenge"


def test_an_attribute_of_length_one_is_malformed():
    body = b"\x50\x01"
    data = struct.pack("!BBH", 11, 7, 22) + bytes(16) + body
    with pytest.raises(RadiusError) as e:
        parse(data)
    assert e.value.reason == "malformed"


def test_no_bytes_raise_anything_but_a_radius_error():
    """Random datagrams, and valid answers with octets flipped, cut, or
    repeated: each is parsed or refused with a reason, never an exception."""
    rng = random.Random(3579)
    eap = eap_request(2, 300)
    valid = [answer(11, [(79, eap[:253]), (79, eap[253:]), (24, b"st"), (27, b"\x00\x00\x00\x1e")]),
             answer(2, accept_attrs()), answer(3, [(18, b"no")])]
    samples = [bytes(rng.randrange(256) for _ in range(rng.randrange(0, 120))) for _ in range(500)]
    for _ in range(1500):
        data = bytearray(rng.choice(valid))
        for _ in range(rng.randrange(1, 4)):
            at = rng.randrange(len(data))
            op = rng.randrange(3)
            if op == 0:
                data[at] = rng.randrange(256)
            elif op == 1:
                del data[at:at + rng.randrange(1, 8)]
            else:
                data[at:at] = data[at:at + rng.randrange(1, 8)]
        if bytes(data) not in valid:
            samples.append(bytes(data))
    outcomes, forged = {}, []
    for data in samples:
        try:
            parse(data)
            # Only octets past the Length field (padding) may have changed.
            if data[:struct.unpack("!H", data[2:4])[0]] not in valid:
                forged.append(data)
        except RadiusError as e:
            outcomes[e.reason] = outcomes.get(e.reason, 0) + 1
    # Mutated answers fail their authenticators, whatever else is wrong.
    assert forged == []
    assert {"malformed", "bad-authenticator"} <= set(outcomes)

"""The EAP codec and the EAP-TLS/TTLS framing: round trips, every reason a
packet is refused for, fragmentation and reassembly with their bounds, and
that no input whatever makes decoding raise anything but EapError."""

from __future__ import annotations

import random
import re
import struct
from pathlib import Path

import pytest

from mpa_protocol import eap
from mpa_protocol.eap import EapError, EapPacket, TlsFrame


def reason_of(call, *args, **kwargs) -> str:
    with pytest.raises(EapError) as raised:
        call(*args, **kwargs)
    return raised.value.reason


# --- packets -----------------------------------------------------------------

@pytest.mark.parametrize("packet", [
    EapPacket(eap.REQUEST, 0, eap.IDENTITY),
    EapPacket(eap.RESPONSE, 255, eap.IDENTITY, b"mn1@domain-a.example"),
    EapPacket(eap.REQUEST, 7, eap.NOTIFICATION, b"maintenance at noon"),
    EapPacket(eap.RESPONSE, 7, eap.NOTIFICATION),
    EapPacket(eap.RESPONSE, 8, eap.NAK, bytes([eap.TTLS])),
    EapPacket(eap.REQUEST, 9, eap.TLS, b"\x20"),
    EapPacket(eap.RESPONSE, 9, eap.TTLS, b"\x00" + b"x" * 1000),
    EapPacket(eap.SUCCESS, 10),
    EapPacket(eap.FAILURE, 11),
])
def test_packets_survive_a_round_trip(packet):
    assert eap.decode(packet.encode()) == packet


def test_the_wire_format_is_rfc_3748s():
    assert EapPacket(eap.RESPONSE, 3, eap.IDENTITY, b"ab").encode() == b"\x02\x03\x00\x07\x01ab"
    assert EapPacket(eap.SUCCESS, 4).encode() == b"\x03\x04\x00\x04"


@pytest.mark.parametrize("data, reason", [
    ("not bytes", "not_bytes"),
    (b"\x01\x01\x00", "short"),
    (b"", "short"),
    (b"\x01\x01\x00\x06\x01", "length_mismatch"),          # says 6, is 5
    (b"\x01\x01\x00\x05\x01\x00", "length_mismatch"),      # says 5, is 6
    (b"\x03\x01\x00\x05\x01", "bad_length"),               # Success with data
    (b"\x04\x01\x00\x05\x01", "bad_length"),
    (b"\x05\x01\x00\x04", "bad_code"),
    (b"\x00\x01\x00\x04", "bad_code"),
    (b"\x01\x01\x00\x04", "no_type"),
    (b"\x02\x01\x00\x05\x00", "bad_type"),
    (b"\x02\x01\x00\x05\x03", "bad_nak"),                  # proposes nothing
    (b"\x01\x01\x00\x06\x03\x0d", "bad_nak"),              # a Nak Request
])
def test_each_malformed_packet_is_refused_with_its_reason(data, reason):
    assert reason_of(eap.decode, data) == reason


@pytest.mark.parametrize("packet, reason", [
    (EapPacket(eap.SUCCESS, 1, eap.IDENTITY), "bad_packet"),
    (EapPacket(eap.REQUEST, 1), "bad_packet"),
    (EapPacket(9, 1, eap.IDENTITY), "bad_packet"),
    (EapPacket(eap.REQUEST, 1, eap.TLS, b"x" * 65531), "too_long"),
])
def test_packets_that_cannot_be_encoded_are_refused(packet, reason):
    assert reason_of(packet.encode) == reason


def test_the_largest_packet_is_encoded():
    assert len(EapPacket(eap.REQUEST, 1, eap.TLS, b"x" * 65530).encode()) == 65535


def test_identity_of_a_response_identity():
    packet = EapPacket(eap.RESPONSE, 1, eap.IDENTITY, "mn-ü@domain-a.example".encode())
    assert eap.identity_of(packet.encode()) == "mn-ü@domain-a.example"
    assert eap.identity_of(packet) == "mn-ü@domain-a.example"


@pytest.mark.parametrize("packet, reason", [
    (EapPacket(eap.REQUEST, 1, eap.IDENTITY, b"x"), "not_identity"),
    (EapPacket(eap.RESPONSE, 1, eap.TLS, b"\x00"), "not_identity"),
    (EapPacket(eap.SUCCESS, 1), "not_identity"),
    (EapPacket(eap.RESPONSE, 1, eap.IDENTITY, b""), "bad_identity"),
    (EapPacket(eap.RESPONSE, 1, eap.IDENTITY, b"a" * 254), "bad_identity"),
    (EapPacket(eap.RESPONSE, 1, eap.IDENTITY, b"\xff\xfe"), "bad_identity"),
    (EapPacket(eap.RESPONSE, 1, eap.IDENTITY, b"mn\x00@x"), "bad_identity"),
    (EapPacket(eap.RESPONSE, 1, eap.IDENTITY, b"mn\n"), "bad_identity"),
])
def test_identity_of_refuses_what_is_no_usable_nai(packet, reason):
    assert reason_of(eap.identity_of, packet) == reason


def test_an_identity_of_253_octets_is_taken():
    assert eap.identity_of(EapPacket(eap.RESPONSE, 1, eap.IDENTITY, b"a" * 253)) == "a" * 253


def test_success_and_failure_are_told_apart():
    assert eap.is_success(b"\x03\x01\x00\x04") and not eap.is_failure(b"\x03\x01\x00\x04")
    assert eap.is_failure(b"\x04\x01\x00\x04") and not eap.is_success(b"\x04\x01\x00\x04")
    request = EapPacket(eap.REQUEST, 1, eap.IDENTITY)
    assert not eap.is_success(request) and not eap.is_failure(request)
    assert reason_of(eap.is_success, b"\x03") == "short"


def test_a_nak_proposes_the_methods_or_none():
    assert eap.nak(5, (eap.TLS,)).encode() == b"\x02\x05\x00\x06\x03\x0d"
    assert eap.nak(5, ()).data == b"\x00"


def test_reprs_show_sizes_not_contents():
    packet = EapPacket(eap.RESPONSE, 1, eap.TTLS, b"\x00secret-ciphertext")
    frame = TlsFrame(eap.FLAG_L | eap.FLAG_M, b"secret", 99)
    avp = eap.Avp(eap.AVP_USER_PASSWORD, b"hunter2")
    for text in (repr(packet), repr(frame), repr(avp)):
        assert "secret" not in text and "hunter2" not in text


# --- EAP-TLS frames ------------------------------------------------------------

def tls(data: bytes, eap_type: int = eap.TLS, code: int = eap.REQUEST) -> EapPacket:
    return EapPacket(code, 1, eap_type, data)


def test_frames_survive_a_round_trip_with_their_flags():
    for eap_type in (eap.TLS, eap.TTLS):
        for frame in (TlsFrame(eap.FLAG_S), TlsFrame(0, b"hello"),
                      TlsFrame(eap.FLAG_L | eap.FLAG_M, b"abc", 10), TlsFrame(eap.FLAG_M, b"d")):
            assert eap.decode_tls(eap.tls_packet(eap.REQUEST, 1, eap_type, frame)) == frame


def test_the_start_and_length_flags_are_rfc_5216s():
    assert TlsFrame(eap.FLAG_S).encode(eap.TLS) == b"\x20"
    frame = TlsFrame(eap.FLAG_L | eap.FLAG_M, b"ab", 300)
    assert frame.encode(eap.TLS) == b"\xc0\x00\x00\x01\x2cab"


def test_ttls_carries_its_version_in_the_flags():
    frame = eap.decode_tls(tls(b"\x21", eap.TTLS))
    assert frame.start and frame.version == 1
    assert TlsFrame(eap.FLAG_S, version=1).encode(eap.TTLS) == b"\x21"
    assert TlsFrame(eap.FLAG_S, version=1).encode(eap.TLS) == b"\x20"


def test_an_empty_frame_is_an_ack_and_nothing_else_is():
    assert TlsFrame().is_ack
    assert not TlsFrame(eap.FLAG_S).is_ack and not TlsFrame(0, b"x").is_ack


@pytest.mark.parametrize("packet, reason", [
    (EapPacket(eap.REQUEST, 1, eap.IDENTITY, b"\x00"), "not_tls"),
    (EapPacket(eap.SUCCESS, 1), "not_tls"),
    (tls(b""), "tls_no_flags"),
    (tls(b"\x01"), "tls_reserved_flags"),      # EAP-TLS reserves the low bits
    (tls(b"\x08", eap.TTLS), "tls_reserved_flags"),
    (tls(b"\x80\x00\x00"), "tls_short"),
    (tls(b"\x80\x00\x00\x00\x02abc"), "tls_length_short"),
])
def test_each_malformed_frame_is_refused_with_its_reason(packet, reason):
    assert reason_of(eap.decode_tls, packet) == reason


def test_a_single_fragment_message_has_no_flags():
    assert eap.fragments(b"x" * 1000) == [TlsFrame(0, b"x" * 1000)]
    assert eap.fragments(b"") == [TlsFrame()]


def test_fragments_say_the_total_first_and_more_on_all_but_the_last():
    frames = eap.fragments(bytes(range(250)), 100)
    assert [len(f.data) for f in frames] == [100, 100, 50]
    assert frames[0].flags == eap.FLAG_L | eap.FLAG_M and frames[0].message_length == 250
    assert frames[1].flags == eap.FLAG_M and frames[2].flags == 0
    assert b"".join(f.data for f in frames) == bytes(range(250))


def test_a_default_fragment_keeps_the_eap_packet_near_a_thousand_octets():
    frame = eap.fragments(b"x" * 5000)[0]
    assert len(eap.tls_packet(eap.REQUEST, 1, eap.TLS, frame).encode()) == 1010


def test_reassembly_gives_back_what_was_fragmented():
    rng = random.Random(5216)
    for _ in range(200):
        message = rng.randbytes(rng.randrange(0, 3000))
        size = rng.randrange(1, 1200)
        reassembly = eap.Reassembly(max_fragments=4000)
        results = [reassembly.add(f) for f in eap.fragments(message, size)]
        assert results[:-1] == [None] * (len(results) - 1)
        assert results[-1] == message and not reassembly.pending


def test_frames_through_their_encoding_reassemble_too():
    reassembly = eap.Reassembly()
    out = None
    for frame in eap.fragments(b"abcdefghij" * 30, 64):
        wire = eap.tls_packet(eap.RESPONSE, 1, eap.TTLS, frame).encode()
        out = reassembly.add(eap.decode_tls(eap.decode(wire)))
    assert out == b"abcdefghij" * 30


def feed(reassembly: eap.Reassembly, *frames: TlsFrame):
    for frame in frames:
        reassembly.add(frame)


@pytest.mark.parametrize("frames, reason", [
    ([TlsFrame(eap.FLAG_L | eap.FLAG_M, b"ab", 100_000)], "tls_too_long"),
    ([TlsFrame(0, b"x" * 65537)], "tls_too_long"),
    ([TlsFrame(eap.FLAG_M, b"ab")], "tls_no_length"),
    ([TlsFrame(eap.FLAG_L | eap.FLAG_M, b"ab", 10),
      TlsFrame(eap.FLAG_L | eap.FLAG_M, b"cd", 11)], "tls_length_changed"),
    ([TlsFrame(eap.FLAG_L | eap.FLAG_M, b"ab", 3), TlsFrame(0, b"cd")], "tls_overrun"),
    ([TlsFrame(eap.FLAG_L | eap.FLAG_M, b"ab", 5), TlsFrame(0, b"cd")], "tls_underrun"),
])
def test_each_bad_fragment_sequence_is_refused_with_its_reason(frames, reason):
    assert reason_of(feed, eap.Reassembly(), *frames) == reason


def test_the_total_size_bound_is_configurable():
    frames = eap.fragments(b"x" * 300, 100)
    assert reason_of(feed, eap.Reassembly(max_message=299), *frames) == "tls_too_long"
    reassembly = eap.Reassembly(max_message=300)
    assert [reassembly.add(f) for f in frames][-1] == b"x" * 300


def test_the_fragment_count_is_bounded():
    frames = eap.fragments(b"x" * 10, 1)
    assert reason_of(feed, eap.Reassembly(max_fragments=9), *frames) == "tls_too_many_fragments"
    reassembly = eap.Reassembly(max_fragments=10)
    assert [reassembly.add(f) for f in frames][-1] == b"x" * 10


def exchange(first: eap.TlsLink, second: eap.TlsLink, message: bytes):
    """``first`` sends ``message`` to ``second``, which answers ``reply``:
    the frames each sent and what each received whole."""
    got = {"first": [], "second": []}

    def second_process(data):
        got["second"].append(data)
        return b"reply" * 300

    def first_process(data):
        got["first"].append(data)
        return b""

    sent = [first.send(message)]
    frame = second.answer(sent[0], second_process)
    while True:
        sent.append(frame)
        frame = first.answer(frame, first_process)
        if got["first"]:
            return got, sent
        sent.append(frame)
        frame = second.answer(frame, second_process)


def test_links_exchange_fragmented_messages_both_ways_with_acks():
    first, second = eap.TlsLink(fragment_size=100), eap.TlsLink(fragment_size=64)
    got, sent = exchange(first, second, bytes(range(256)) * 2)
    assert got == {"second": [bytes(range(256)) * 2], "first": [b"reply" * 300]}
    # 512 octets in 6 fragments of 100, each but the last ACKed; 1,500 in
    # 24 of 64, likewise; then the first side's empty answer (not in ``sent``).
    assert second.fragments_received == 6 and first.fragments_received == 24
    assert first.fragments_sent == 6 + 1 and second.fragments_sent == 24
    assert sum(1 for f in sent if f.is_ack) == 5 + 23


def test_a_link_sending_fragments_takes_only_acks():
    link = eap.TlsLink(fragment_size=10)
    link.send(b"x" * 30)
    assert link.sending
    assert reason_of(link.answer, TlsFrame(0, b"data"), lambda m: b"") == "tls_expected_ack"
    assert link.answer(TlsFrame(), lambda m: b"").data == b"x" * 10


# --- TTLS AVPs ---------------------------------------------------------------

def test_avps_survive_a_round_trip_with_padding_and_vendor():
    avps = [eap.Avp(1, b"alice"), eap.Avp(2, b"x" * 16), eap.Avp(79, b"abc", False, 311)]
    data = eap.encode_avps(avps)
    assert len(data) % 4 == 0
    assert eap.decode_avps(data) == avps


def test_an_avp_is_rfc_5281s_diameter_format():
    assert eap.Avp(1, b"bob").encode() == b"\x00\x00\x00\x01\x40\x00\x00\x0bbob\x00"


@pytest.mark.parametrize("password, padded", [("", 16), ("a", 16), ("x" * 16, 16), ("x" * 17, 32)])
def test_the_pap_password_is_padded_to_sixteen_octets(password, padded):
    name, secret = eap.decode_avps(eap.pap_avps("alice", password))
    assert (name.code, name.data, name.mandatory) == (eap.AVP_USER_NAME, b"alice", True)
    assert secret.code == eap.AVP_USER_PASSWORD and secret.mandatory
    assert len(secret.data) == padded and secret.data.rstrip(b"\0") == password.encode()


@pytest.mark.parametrize("data, reason", [
    (b"\x00\x00\x00\x01\x40\x00", "avp_short"),
    (b"\x00\x00\x00\x01\x40\x00\x00\x07", "avp_length"),       # below its header
    (b"\x00\x00\x00\x01\x40\x00\x00\x20abc", "avp_length"),    # past the data
    (b"\x00\x00\x00\x01\xc0\x00\x00\x09a\x00\x00\x00", "avp_length"),  # V without room
    (eap.Avp(1, b"").encode() * 33, "avp_too_many"),
])
def test_each_malformed_avp_is_refused_with_its_reason(data, reason):
    assert reason_of(eap.decode_avps, data) == reason


# --- whatever comes in, only EapError comes out -------------------------------

def mutations(rng: random.Random, seeds: list[bytes]):
    for _ in range(4000):
        data = bytearray(rng.choice(seeds))
        for _ in range(rng.randrange(1, 4)):
            action = rng.randrange(4)
            if action == 0 and data:
                data[rng.randrange(len(data))] = rng.randrange(256)
            elif action == 1:
                data[rng.randrange(len(data) + 1):] = b""
            elif action == 2:
                data += rng.randbytes(rng.randrange(1, 20))
            elif len(data) >= 4:       # a Length that agrees, so deeper checks run
                struct.pack_into("!H", data, 2, len(data) & 0xFFFF)
        yield bytes(data)
    for _ in range(2000):
        yield rng.randbytes(rng.randrange(0, 40))


def test_random_and_mutated_input_raises_only_eap_error():
    rng = random.Random(3748)
    frames = eap.fragments(b"z" * 40, 16)
    seeds = [p.encode() for p in (
        EapPacket(eap.RESPONSE, 1, eap.IDENTITY, b"mn1@domain-a.example"),
        EapPacket(eap.RESPONSE, 2, eap.NAK, b"\x0d\x15"), EapPacket(eap.SUCCESS, 3),
        EapPacket(eap.RESPONSE, 4, eap.TTLS,
                  eap.TlsFrame(0, eap.pap_avps("a", "b")).encode(eap.TTLS)),
        *(eap.tls_packet(eap.REQUEST, 5, eap.TLS, f) for f in frames))]
    outcomes = {"decoded": 0, "refused": 0}
    for data in mutations(rng, seeds):
        reassembly = eap.Reassembly(max_message=100, max_fragments=4)
        try:
            packet = eap.decode(data)
            outcomes["decoded"] += 1
            for check in (eap.identity_of, eap.decode_tls, eap.is_success):
                try:
                    result = check(packet)
                    if check is eap.decode_tls:
                        reassembly.add(result)
                        eap.decode_avps(result.data)
                except EapError:
                    pass
        except EapError as error:
            outcomes["refused"] += 1
            assert error.reason and " " not in error.reason
    # Both sides of the codec were exercised, not only its first check.
    assert outcomes["decoded"] > 500 and outcomes["refused"] > 500


def test_a_refused_fragment_leaves_the_reassembly_as_it_was():
    reassembly = eap.Reassembly(max_message=100)
    first, *rest = eap.fragments(b"x" * 90, 40)
    reassembly.add(first)
    for bad in (TlsFrame(0, b"y" * 10), TlsFrame(eap.FLAG_M, b"y" * 80),
                TlsFrame(eap.FLAG_L | eap.FLAG_M, b"y", 91)):
        assert reason_of(reassembly.add, bad) in ("tls_underrun", "tls_too_long",
                                                   "tls_length_changed")
    assert [reassembly.add(f) for f in rest][-1] == b"x" * 90


def test_every_reason_the_codec_raises_is_tested_here():
    # A new reason without a test of its own fails here.
    source = Path(eap.__file__).read_text()
    reasons = set(re.findall(r'EapError\("([a-z_]+)"', source))
    tested = Path(__file__).read_text()
    assert len(reasons) > 25
    assert not {r for r in reasons if f'"{r}"' not in tested}

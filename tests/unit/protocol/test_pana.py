"""PANA's codec, keys and timers (mpa_protocol/pana*.py): what both the
Authentication Agent and the MN rely on, checked against RFC 5191's layout,
IKEv2's prf+ computed here independently, and RFC 3315's timer."""

from __future__ import annotations

import hashlib
import hmac
import random

import pytest

from mpa_protocol import pana
from mpa_protocol import pana_security as security
from mpa_protocol import pana_timers as timers
from mpa_protocol.pana import PanaError, PanaMessage
from support.pana_samples import BAD, BOUND
EAP_IDENTITY_REQUEST = bytes.fromhex("0101000501")


def par_start() -> PanaMessage:
    return PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_S | pana.FLAG_E, 0x11223344, 7, (
        pana.eap_payload(EAP_IDENTITY_REQUEST),
        pana.prf_algorithm(pana.PRF_HMAC_SHA2_256), pana.prf_algorithm(pana.PRF_HMAC_SHA1),
        pana.integrity_algorithm(pana.AUTH_HMAC_SHA2_256_128),
        pana.integrity_algorithm(pana.AUTH_HMAC_SHA1_160)))


def pan_start() -> PanaMessage:
    return PanaMessage(pana.AUTH, pana.FLAG_S | pana.FLAG_E, 0x11223344, 7, (
        pana.prf_algorithm(pana.PRF_HMAC_SHA2_256),
        pana.integrity_algorithm(pana.AUTH_HMAC_SHA2_256_128)))


def par_complete() -> PanaMessage:
    return PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_C, 0x11223344, 9, (
        pana.eap_payload(bytes.fromhex("03020004")), pana.result_code(pana.PANA_SUCCESS),
        pana.key_id(-2), pana.session_lifetime(3600)))


EXAMPLES = [
    PanaMessage(pana.PCI, 0, 0, 0),
    PanaMessage(pana.PCI, pana.FLAG_E, 0, 0, (pana.Avp(77, b"ext"), pana.Avp(3, b"v", 9))),
    par_start(), pan_start(), par_complete(),
    PanaMessage(pana.AUTH, 0, 1, 2, (pana.nonce(b"n" * 20), pana.eap_payload(b"\x02\x01\x00\x04"))),
    PanaMessage(pana.TERMINATION, pana.FLAG_R, 1, 3, (pana.termination_cause(pana.TERMINATION_LOGOUT),)),
    PanaMessage(pana.TERMINATION, 0, 1, 3),
    PanaMessage(pana.NOTIFICATION, pana.FLAG_R | pana.FLAG_P, 1, 4),
    PanaMessage(pana.NOTIFICATION, pana.FLAG_A, 1, 5, (pana.Avp(pana.AVP_AUTH, b"a" * 16),)),
]


@pytest.mark.parametrize("message", EXAMPLES, ids=lambda m: m.name)
def test_every_message_kind_survives_a_round_trip(message):
    data = message.encode()
    assert len(data) % 4 == 0
    assert PanaMessage.decode(data, BOUND) == message


def test_a_par_is_laid_out_as_rfc_5191_draws_it():
    message = PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_S | pana.FLAG_E, 0x01020304, 0x0A0B0C0D, (
        pana.eap_payload(EAP_IDENTITY_REQUEST), pana.prf_algorithm(5),
        pana.Avp(0x0102, b"\xAA", 0x00001234)))
    expected = (
        # Reserved, Message Length | Flags (R S E), Message Type | Session Id | Sequence Number
        "0000" "003c" "c200" "0002" "01020304" "0a0b0c0d"
        # EAP-Payload: code 2, no flags, AVP Length 5 (the value only), Reserved, value, 3 pad bytes
        "0002" "0000" "0005" "0000" "0101000501" "000000"
        # PRF-Algorithm: code 6, length 4, PRF_HMAC_SHA2_256
        "0006" "0000" "0004" "0000" "00000005"
        # a vendor's AVP: V flag, a 12-byte header with the Vendor-Id
        "0102" "8000" "0001" "0000" "00001234" "aa000000")
    assert message.encode().hex() == expected
    assert message.name == "PAR[S,E]"


def test_the_typed_accessors_read_the_avps():
    start, final = par_start(), par_complete()
    assert start.eap_payload == EAP_IDENTITY_REQUEST
    assert start.prf_algorithms == [pana.PRF_HMAC_SHA2_256, pana.PRF_HMAC_SHA1]
    assert start.integrity_algorithms == [pana.AUTH_HMAC_SHA2_256_128, pana.AUTH_HMAC_SHA1_160]
    assert start.result_code is None and start.nonce is None and start.key_id is None
    assert (final.result_code, final.key_id, final.session_lifetime) == (pana.PANA_SUCCESS, -2, 3600)
    assert final.has(pana.FLAG_C) and final.is_request and not final.has(pana.FLAG_S)
    assert EXAMPLES[6].termination_cause == pana.TERMINATION_LOGOUT


@pytest.mark.parametrize("case", sorted(BAD))
def test_every_broken_rule_has_its_reason(case):
    expected = case if case in pana.REASONS else next(r for r in pana.REASONS if case.startswith(r))
    with pytest.raises(PanaError) as raised:
        PanaMessage.decode(BAD[case], BOUND)
    assert raised.value.reason == expected
    assert str(raised.value)


def test_every_reason_a_decode_can_give_is_tested():
    covered = {next(r for r in sorted(pana.REASONS, key=len, reverse=True) if c.startswith(r))
               for c in BAD}
    assert covered == set(pana.REASONS) - {"algorithm"}


def test_a_message_that_breaks_a_rule_cannot_be_built_either():
    with pytest.raises(PanaError) as raised:
        PanaMessage(pana.TERMINATION, pana.FLAG_R, 1, 1)
    assert raised.value.reason == "avp-missing"
    with pytest.raises(PanaError):
        pana.key_id(2**31)


def _random_message(rng: random.Random) -> PanaMessage:
    msg_type = rng.choice([pana.AUTH, pana.TERMINATION, pana.NOTIFICATION])
    request = rng.random() < 0.5
    flags = (pana.FLAG_R if request else 0) | (pana.FLAG_E if rng.random() < 0.3 else 0)
    avps = [pana.Avp(rng.randrange(10, 0xFFFF), rng.randbytes(rng.randrange(0, 40)))
            for _ in range(rng.randrange(0, 4))]
    if msg_type == pana.AUTH:
        flags |= rng.choice([0, pana.FLAG_S, pana.FLAG_C])
        avps.append(pana.nonce(rng.randbytes(rng.randrange(8, 64))))
        avps.append(pana.eap_payload(rng.randbytes(rng.randrange(4, 60))))
    if msg_type == pana.TERMINATION and request:
        avps.append(pana.termination_cause(rng.choice([1, 4, 8])))
    if rng.random() < 0.5:
        avps.append(pana.Avp(pana.AVP_AUTH, rng.randbytes(16)))
    return PanaMessage(msg_type, flags, rng.getrandbits(32), rng.getrandbits(32), tuple(avps))


@pytest.mark.parametrize("seed", range(4))
def test_random_messages_round_trip_and_no_bytes_raise_anything_but_pana_error(seed):
    rng = random.Random(seed)
    for _ in range(400):
        message = _random_message(rng)
        data = message.encode()
        assert PanaMessage.decode(data, BOUND) == message
        mutated = bytearray(data)
        for _ in range(rng.randrange(1, 4)):
            mutated[rng.randrange(len(mutated))] = rng.randrange(256)
        cut = bytes(mutated[:rng.randrange(len(mutated) + 1)])
        for candidate in (bytes(mutated), cut, rng.randbytes(rng.randrange(0, 80))):
            try:
                decoded = PanaMessage.decode(candidate, BOUND)
            except PanaError as error:
                assert error.reason in pana.REASONS
            else:
                assert decoded.encode() == candidate


def test_prf_plus_is_ikev2s_t1_t2_chain():
    key, seed = b"K" * 32, b"seed bytes"
    t1 = hmac.new(key, seed + b"\x01", hashlib.sha256).digest()
    t2 = hmac.new(key, t1 + seed + b"\x02", hashlib.sha256).digest()
    assert security.prf_plus(pana.PRF_HMAC_SHA2_256, key, seed, 40) == (t1 + t2)[:40]
    s1 = hmac.new(key, seed + b"\x01", hashlib.sha1).digest()
    s2 = hmac.new(key, s1 + seed + b"\x02", hashlib.sha1).digest()
    assert security.prf_plus(pana.PRF_HMAC_SHA1, key, seed, 32) == (s1 + s2)[:32]


def test_the_auth_key_is_prf_plus_over_the_rfc_seed_as_long_as_the_integrity_key():
    msk = bytes(range(64))
    i_par, i_pan = par_start().encode(), pan_start().encode()
    pac_nonce, paa_nonce = b"p" * 20, b"a" * 20
    seed = b"IETF PANA" + i_par + i_pan + pac_nonce + paa_nonce + b"\x00\x00\x00\x07"
    t1 = hmac.new(msk, seed + b"\x01", hashlib.sha256).digest()
    key = security.pana_auth_key(msk, i_par, i_pan, pac_nonce, paa_nonce, 7,
                                 pana.PRF_HMAC_SHA2_256, integrity=pana.AUTH_HMAC_SHA2_256_128)
    assert key == t1
    sha1_key = security.pana_auth_key(msk, i_par, i_pan, pac_nonce, paa_nonce, 7,
                                      pana.PRF_HMAC_SHA1, integrity=pana.AUTH_HMAC_SHA1_160)
    assert sha1_key == hmac.new(msk, seed + b"\x01", hashlib.sha1).digest()
    with pytest.raises(PanaError) as raised:
        security.pana_auth_key(msk, i_par, i_pan, pac_nonce, paa_nonce, 7, 99,
                               integrity=pana.AUTH_HMAC_SHA1_160)
    assert raised.value.reason == "algorithm"


@pytest.mark.parametrize("integrity, size", [(pana.AUTH_HMAC_SHA2_256_128, 16),
                                             (pana.AUTH_HMAC_SHA1_160, 20)])
def test_auth_covers_every_byte_of_the_message(integrity, size):
    key = b"k" * security.integrity_of(integrity).key_bytes
    data = security.sign(par_complete(), key, integrity)
    signed = PanaMessage.decode(data, BOUND)
    assert signed.avps[:-1] == par_complete().avps and len(signed.auth) == size
    zeroed = data[:-size] + bytes(size)
    digest = "sha256" if size == 16 else "sha1"
    assert signed.auth == hmac.new(key, zeroed, digest).digest()[:size]
    assert security.verify_auth(data, key, integrity)
    assert not security.verify_auth(data, b"x" + key[1:], integrity)
    for index in range(len(data)):
        changed = bytearray(data)
        changed[index] ^= 0x01
        assert not security.verify_auth(bytes(changed), key, integrity), index


def test_an_unsigned_or_wrongly_sized_auth_does_not_verify():
    key = b"k" * 32
    assert not security.verify_auth(par_complete().encode(), key, pana.AUTH_HMAC_SHA2_256_128)
    sha1_signed = security.sign(par_complete(), b"k" * 20, pana.AUTH_HMAC_SHA1_160)
    assert not security.verify_auth(sha1_signed, key, pana.AUTH_HMAC_SHA2_256_128)
    assert not security.verify_auth(b"junk", key, pana.AUTH_HMAC_SHA2_256_128)
    with pytest.raises(PanaError):
        security.sign(PanaMessage.decode(sha1_signed, BOUND), key, pana.AUTH_HMAC_SHA1_160)


class Fixed:
    """A random source that always gives the same RAND."""
    def __init__(self, value):
        self.value = value

    def uniform(self, low, high):
        return self.value


def _retransmit_times(params, rng, until):
    timer = timers.Retransmission(params, 0.0, rng)
    times = []
    while True:
        due = timer.next_due(0.0)
        if due is None or due > until:
            return times, timer
        assert timer.poll(due - 1e-9) == timers.WAIT
        outcome = timer.poll(due)
        if outcome == timers.EXPIRED:
            return times, timer
        times.append(round(due, 6))


def test_requests_double_their_wait_up_to_mrt_and_stop_after_mrc_retransmissions():
    times, timer = _retransmit_times(timers.REQ_TIMERS, Fixed(0.0), 10_000)
    gaps = [b - a for a, b in zip([0.0] + times, times)]
    assert gaps == [1, 2, 4, 8, 16, 30, 30, 30, 30, 30]
    assert timer.expired and timer.attempts == 1 + timers.REQ_MRC
    assert timer.poll(10_000) == timers.EXPIRED and timer.next_due(10_000) is None


def test_a_pci_is_retransmitted_until_answered_every_mrt_at_most():
    times, timer = _retransmit_times(timers.PCI_TIMERS, Fixed(0.0), 3_000)
    gaps = [b - a for a, b in zip([0.0] + times, times)]
    assert gaps[:8] == [1, 2, 4, 8, 16, 32, 64, 120] and set(gaps[8:]) == {120}
    assert not timer.expired


def test_rand_stays_within_a_tenth_either_way():
    for seed in range(20):
        times, _ = _retransmit_times(timers.REQ_TIMERS, random.Random(seed), 10_000)
        assert 0.9 <= times[0] <= 1.1
        gaps = [b - a for a, b in zip(times, times[1:])]
        assert all(gap <= 33 for gap in gaps) and len(times) == timers.REQ_MRC


def test_mrd_ends_the_exchange_on_time_whatever_the_count():
    params = timers.RetransmissionParameters(irt=1, mrt=0, mrc=0, mrd=10)
    times, timer = _retransmit_times(params, Fixed(0.1), 1_000)
    # 1.1, then 2*1.1 + 0.11 later, then 2*2.31 + 0.231 later; the next would
    # fall past MRD, so the exchange fails at 10 s.
    assert times == [1.1, 3.41, 8.261] and timer.expired
    assert timer.attempts == 4 and timer.next_due(9.0) is None


def test_sequence_numbers_start_at_random_wrap_and_pair_answers():
    assert pana.initial_seq(random.Random(3).getrandbits) == random.Random(3).getrandbits(32)
    assert pana.next_seq(0xFFFFFFFF) == 0
    request = par_complete()
    answer = PanaMessage(pana.AUTH, pana.FLAG_C, request.session_id, request.seq)
    assert pana.answers(answer, request)
    assert not pana.answers(PanaMessage(pana.AUTH, pana.FLAG_C, request.session_id,
                                        pana.next_seq(request.seq)), request)

"""The PANA security association's key and the AUTH AVP (RFC 5191 §5.3-§5.4).

PANA_AUTH_KEY = prf+(MSK, "IETF PANA" | I_PAR | I_PAN | PaC_nonce | PAA_nonce | Key_ID)

- prf+ is IKEv2's (RFC 7296 §2.13): T1 | T2 | ..., T1 = prf(K, S | 0x01),
  Tn = prf(K, Tn-1 | S | n), over the PRF-Algorithm both ends agreed on;
- I_PAR and I_PAN are the initial PANA-Auth-Request and -Answer, the ones with
  the S flag, whole, as they were sent (retransmissions are the same bytes);
- PaC_nonce and PAA_nonce are the values of the Nonce AVPs in the first
  PANA-Auth-Answer and -Request after the S-flagged pair (in a
  re-authentication, the first pair), Key_ID the value of the Key-Id AVP
  (4 bytes, an Integer32);
- the key is as long as the Integrity-Algorithm's key: 20 bytes for
  AUTH_HMAC_SHA1_160, 32 for AUTH_HMAC_SHA2_256_128 (RFC 4868 §2.1.1).

The AUTH AVP's value is the integrity algorithm over the whole message, header
included, with that value's bytes zero; HMAC-SHA-256-128 keeps the first 16
bytes of HMAC-SHA-256.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from dataclasses import dataclass

from mpa_protocol import pana

AUTH_KEY_LABEL = b"IETF PANA"


@dataclass(frozen=True)
class Integrity:
    digest: str
    key_bytes: int
    auth_bytes: int   # the AUTH AVP's value: the MAC, truncated


PRFS = {pana.PRF_HMAC_SHA1: "sha1", pana.PRF_HMAC_SHA2_256: "sha256"}
INTEGRITIES = {
    pana.AUTH_HMAC_SHA1_160: Integrity("sha1", 20, 20),
    pana.AUTH_HMAC_SHA2_256_128: Integrity("sha256", 32, 16),
}
# prf+ counts its blocks in one byte (RFC 7296 §2.13).
MAX_PRF_BLOCKS = 255


def _prf_digest(prf: int) -> str:
    try:
        return PRFS[prf]
    except KeyError:
        raise pana.PanaError("algorithm", f"PRF algorithm {prf} is not supported") from None


def integrity_of(algorithm: int) -> Integrity:
    try:
        return INTEGRITIES[algorithm]
    except KeyError:
        raise pana.PanaError("algorithm",
                             f"integrity algorithm {algorithm} is not supported") from None


def prf_plus(prf: int, key: bytes, seed: bytes, length: int) -> bytes:
    """The first ``length`` bytes of prf+(key, seed)."""
    digest = _prf_digest(prf)
    block = hashlib.new(digest).digest_size
    if not 0 <= length <= MAX_PRF_BLOCKS * block:
        raise pana.PanaError("algorithm", f"prf+ gives at most {MAX_PRF_BLOCKS * block} bytes")
    out, previous, counter = bytearray(), b"", 1
    while len(out) < length:
        previous = hmac.new(key, previous + seed + bytes([counter]), digest).digest()
        out += previous
        counter += 1
    return bytes(out[:length])


def pana_auth_key(msk: bytes, i_par: bytes, i_pan: bytes, pac_nonce: bytes,
                  paa_nonce: bytes, key_id: int, prf: int, *, integrity: int) -> bytes:
    """PANA_AUTH_KEY as RFC 5191 §5.3 defines it.  ``i_par`` and ``i_pan`` are
    the bytes of the S-flagged PAR and PAN; ``integrity`` sets the length."""
    seed = (AUTH_KEY_LABEL + bytes(i_par) + bytes(i_pan) + bytes(pac_nonce)
            + bytes(paa_nonce) + struct.pack("!i", key_id))
    return prf_plus(prf, bytes(msk), seed, integrity_of(integrity).key_bytes)


def _mac(key: bytes, data: bytes, spec: Integrity) -> bytes:
    return hmac.new(key, data, spec.digest).digest()[:spec.auth_bytes]


def sign(message: pana.PanaMessage, key: bytes, integrity: int) -> bytes:
    """The message's bytes with an AUTH AVP appended last and filled in.
    The message must not already carry one."""
    if message.auth is not None:
        raise pana.PanaError("avp-count", f"{message.name} already carries AUTH")
    spec = integrity_of(integrity)
    placeholder = pana.Avp(pana.AVP_AUTH, b"\xff" * spec.auth_bytes)
    unsigned = pana.PanaMessage(message.msg_type, message.flags, message.session_id,
                                message.seq, message.avps + (placeholder,))
    data = bytearray(unsigned.encode())
    start = len(data) - spec.auth_bytes   # the MAC sizes are whole words: no padding
    data[start:] = bytes(spec.auth_bytes)
    data[start:] = _mac(key, bytes(data), spec)
    return bytes(data)


def verify_auth(data: bytes, key: bytes, integrity: int) -> bool:
    """Whether ``data`` is a well-formed PANA message whose AUTH AVP is right
    under ``key``.  Any malformed message, a missing AUTH or one of the wrong
    size is False; the comparison takes the same time wherever it differs."""
    spec = integrity_of(integrity)
    try:
        message = pana.PanaMessage.decode(data, pana.MAX_MESSAGE_BYTES)
    except pana.PanaError:
        return False
    received = message.auth
    if received is None or len(received) != spec.auth_bytes:
        return False
    zeroed = bytes(data[:len(data) - spec.auth_bytes]) + bytes(spec.auth_bytes)
    return hmac.compare_digest(_mac(key, zeroed, spec), received)

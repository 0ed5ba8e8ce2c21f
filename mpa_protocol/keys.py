"""The MPA key hierarchy and message authentication.

Pre-authentication proves possession of the MN's long-term pre-shared key
(PSK) on both sides without sending it: each side sends a nonce, and each
proves the PSK with an HMAC over the whole exchange (the transcript).  From
the PSK and both nonces HKDF-SHA256 (RFC 5869) derives the MPA-SA's root key,
and from that the keys the MN uses afterwards, each bound by its own label
to the MN's identity, the network and both nonces:

    auth        proofs of the exchange itself (never used again)
    mpa-sa      the SA's root key; every key below comes from it
    mn-ca       messages to the Configuration Agent (configuration, release)
    mn-ar       the MN's traffic with the access router (proactive tunnel)
    signalling  handover signalling (binding update, resume after a hold)

The MN derives exactly the same keys, so both ends authenticate every later
message with HMAC-SHA256 under the key its purpose names.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

NONCE_BYTES = 32
KEY_BYTES = 32
PURPOSES = ("mn-ca", "mn-ar", "signalling")


def field(value: bytes | str) -> bytes:
    """Length-prefixed, so that no two different field lists give the same bytes."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    return len(data).to_bytes(2, "big") + data


def _info(label: str, identity: str, network: str, nonce_mn: bytes, nonce_aa: bytes) -> bytes:
    return b"mpa-sdn v1" + b"".join(field(f) for f in (label, identity, network,
                                                         nonce_mn, nonce_aa))


def hkdf(key: bytes, salt: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def verify(key: bytes, data: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(mac(key, data), tag)


@dataclass(frozen=True, repr=False)
class Exchange:
    """What both sides of one pre-authentication know: the keys follow from it."""

    identity: str
    network: str
    nonce_mn: bytes
    nonce_aa: bytes

    def _derive(self, key: bytes, label: str) -> bytes:
        return hkdf(key, self.nonce_mn + self.nonce_aa,
                    _info(label, self.identity, self.network, self.nonce_mn, self.nonce_aa))

    def auth_key(self, psk: bytes) -> bytes:
        return self._derive(psk, "auth")

    def sa_key(self, psk: bytes) -> bytes:
        return self._derive(psk, "mpa-sa")

    def keys(self, psk: bytes) -> "SaKeys":
        root = self.sa_key(psk)
        return SaKeys(**{p.replace("-", "_"): self._derive(root, p) for p in PURPOSES})

    def __repr__(self) -> str:
        return f"Exchange({self.identity!r}, {self.network!r})"


@dataclass(frozen=True, repr=False)
class SaKeys:
    """The keys derived from one MPA-SA, by purpose."""

    mn_ca: bytes
    mn_ar: bytes
    signalling: bytes

    def for_purpose(self, purpose: str) -> bytes:
        return getattr(self, purpose.replace("-", "_"))

    def as_hex(self) -> dict:
        return {p: self.for_purpose(p).hex() for p in PURPOSES}

    @classmethod
    def from_hex(cls, data: dict) -> "SaKeys":
        return cls(**{p.replace("-", "_"): bytes.fromhex(data[p]) for p in PURPOSES})

    def __repr__(self) -> str:
        return "SaKeys(<hidden>)"


def proof(auth_key: bytes, role: str, transcript: bytes) -> bytes:
    """An HMAC proving the PSK; ``role`` ("mn" or "aa") keeps the two proofs apart."""
    return mac(auth_key, field(role) + transcript)

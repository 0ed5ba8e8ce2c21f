"""The MPA key hierarchy and message authentication.

Pre-authentication is PANA (RFC 5191, with RFC 5873's pre-authentication)
carrying EAP to the domain's AAA server: a successful EAP method gives the MN
and the AA the same Master Session Key (MSK), never sent between them.  PANA
keys its own messages from the MSK (PANA_AUTH_KEY, :mod:`mpa_protocol.pana`);
the MPA-SA's keys come from the MSK too, each by its own label, as RFC 5295
derives usage-specific keys: HKDF-SHA256 (RFC 5869) with both PANA nonces as
salt, and the identity, the network, the PANA session and the Key-Id bound
into every label's info, so no two SAs, networks or purposes share a key.

    mpa-sa      the SA's root key; every key below comes from it
    sa-id       the SA's name, which both ends compute (nothing to send)
    mn-ca       messages to the Configuration Agent (configuration, release)
    mn-ar       the MN's traffic with the access router (proactive tunnel)
    signalling  handover signalling (binding update, resume after a hold)

Both ends derive exactly the same keys, so both authenticate every later
message with HMAC-SHA256 under the key its purpose names.
"""

from __future__ import annotations

import hashlib
import hmac
from dataclasses import dataclass

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_BYTES = 32
MIN_MSK_BYTES = 64     # RFC 3748 §7.10: an MSK is at least 64 octets
SA_ID_BYTES = 16
PURPOSES = ("mn-ca", "mn-ar", "signalling")


def field(value: bytes | str) -> bytes:
    """Length-prefixed, so that no two different field lists give the same bytes."""
    data = value.encode() if isinstance(value, str) else bytes(value)
    return len(data).to_bytes(2, "big") + data


def _info(label: str, binding: "SaBinding") -> bytes:
    return b"mpa-sdn v2" + b"".join(field(f) for f in (
        label, binding.identity, binding.network, binding.session_id.to_bytes(4, "big"),
        binding.key_id.to_bytes(4, "big"), binding.pac_nonce, binding.paa_nonce))


def hkdf(key: bytes, salt: bytes, info: bytes, length: int = KEY_BYTES) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=length, salt=salt, info=info).derive(key)


def mac(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def verify(key: bytes, data: bytes, tag: bytes) -> bool:
    return hmac.compare_digest(mac(key, data), tag)


@dataclass(frozen=True, repr=False)
class SaBinding:
    """What both ends of one PANA pre-authentication know besides the MSK:
    the MPA-SA's name and keys follow from the two together."""

    identity: str        # the NAI the EAP method authenticated
    network: str         # the network whose AA it authenticated with
    session_id: int      # the PANA session's identifier
    key_id: int          # the PANA Key-Id of the MSK
    pac_nonce: bytes
    paa_nonce: bytes

    def _derive(self, key: bytes, label: str, length: int = KEY_BYTES) -> bytes:
        return hkdf(key, self.pac_nonce + self.paa_nonce, _info(label, self), length)

    def sa(self, msk: bytes) -> tuple[str, "SaKeys"]:
        """The MPA-SA's id (32 hex digits) and its keys, from the MSK."""
        if len(msk) < MIN_MSK_BYTES:
            raise ValueError(f"an MSK has at least {MIN_MSK_BYTES} bytes")
        root = self._derive(msk, "mpa-sa")
        keys = SaKeys(**{p.replace("-", "_"): self._derive(root, p) for p in PURPOSES})
        return self._derive(root, "sa-id", SA_ID_BYTES).hex(), keys

    def __repr__(self) -> str:
        return f"SaBinding({self.identity!r}, {self.network!r}, {self.session_id})"


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

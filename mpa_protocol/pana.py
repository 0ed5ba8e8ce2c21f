"""PANA's messages (RFC 5191 §6-§8) with RFC 5873's pre-authentication flag.

Both ends use this codec: the Authentication Agent in the controller (the
PAA) and the mobile node (the PaC).  A message is a 16-byte header and a
list of AVPs; :meth:`PanaMessage.decode` either returns a message that obeys
every rule below or raises :class:`PanaError`, whose ``reason`` is a short
name for a counter.  Nothing else escapes it, whatever the bytes.

What decoding holds a message to:
- the header: Reserved zero, Message Length equal to the datagram's length
  and within the caller's bound, no unassigned flag bit, a known type;
- the flags each type may carry (§6.2): R never on a PCI, S and C only on
  PANA-Auth, A and P only on PANA-Notification and not both, I only on a
  PANA-Auth-Request; a PCI's Session Identifier and Sequence Number are zero
  (§7.1); E may be on any message, which ones carry it during a
  pre-authentication being the state machines' rule (RFC 5873);
- each AVP (§6.3): an 8-byte header (12 with the V flag and a Vendor-Id),
  Reserved and the unassigned AVP flags zero, AVP Length counting the value
  only, the value padded with zero bytes to 4 bytes, the fixed-size values
  the right size;
- the AVPs of each message as §7 lists them: how many of each (an AVP of
  RFC 5191 that a message's grammar does not name is refused, an AVP of
  another code or a vendor's is kept, the grammar's ``*[ AVP ]``), the
  required ones present (a PTR's Termination-Cause), AUTH last.

The key derivation and the AUTH AVP are in ``pana_security.py``, the
retransmission timers in ``pana_timers.py``.
"""

from __future__ import annotations

import functools
import struct
from dataclasses import dataclass
from typing import Iterable

PANA_PORT = 716  # UDP, RFC 5191 §6.1 (IANA "pana")

# Message Type (§7; IANA PANA Parameters, "Message Types").
PCI = 1     # PANA-Client-Initiation
AUTH = 2    # PANA-Auth-Request / -Answer (PAR / PAN)
TERMINATION = 3   # PTR / PTA
NOTIFICATION = 4  # PNR / PNA
MESSAGE_TYPES = {PCI: "PANA-Client-Initiation", AUTH: "PANA-Auth",
                 TERMINATION: "PANA-Termination", NOTIFICATION: "PANA-Notification"}

# Flags (§6.2; bit 0 is the most significant).  E is RFC 5873's, bit 6.
FLAG_R = 0x8000  # Request
FLAG_S = 0x4000  # Start
FLAG_C = 0x2000  # Complete
FLAG_A = 0x1000  # re-Authentication
FLAG_P = 0x0800  # Ping
FLAG_I = 0x0400  # IP Reconfiguration
FLAG_E = 0x0200  # prE-authentication (RFC 5873)
FLAGS_ASSIGNED = FLAG_R | FLAG_S | FLAG_C | FLAG_A | FLAG_P | FLAG_I | FLAG_E
FLAG_NAMES = (("R", FLAG_R), ("S", FLAG_S), ("C", FLAG_C), ("A", FLAG_A),
              ("P", FLAG_P), ("I", FLAG_I), ("E", FLAG_E))

# AVP Codes (§8; IANA "AVP Codes").
AVP_AUTH = 1
AVP_EAP_PAYLOAD = 2
AVP_INTEGRITY_ALGORITHM = 3
AVP_KEY_ID = 4
AVP_NONCE = 5
AVP_PRF_ALGORITHM = 6
AVP_RESULT_CODE = 7
AVP_SESSION_LIFETIME = 8
AVP_TERMINATION_CAUSE = 9
AVP_NAMES = {AVP_AUTH: "AUTH", AVP_EAP_PAYLOAD: "EAP-Payload",
             AVP_INTEGRITY_ALGORITHM: "Integrity-Algorithm", AVP_KEY_ID: "Key-Id",
             AVP_NONCE: "Nonce", AVP_PRF_ALGORITHM: "PRF-Algorithm",
             AVP_RESULT_CODE: "Result-Code", AVP_SESSION_LIFETIME: "Session-Lifetime",
             AVP_TERMINATION_CAUSE: "Termination-Cause"}
AVP_FLAG_V = 0x8000  # Vendor: a Vendor-Id follows the header

# Result-Code values (§8.7).
PANA_SUCCESS = 0
PANA_AUTHENTICATION_REJECTED = 1
PANA_AUTHORIZATION_REJECTED = 2
# Termination-Cause values (§8.9, Diameter's numbers).
TERMINATION_LOGOUT = 1
TERMINATION_ADMINISTRATIVE = 4
TERMINATION_SESSION_TIMEOUT = 8

# PRF-Algorithm and Integrity-Algorithm values are IKEv2 transform ids
# (RFC 7296 §3.3.2, IANA "IKEv2 Parameters"); RFC 5191 §5.4 makes the SHA-1
# pair mandatory to implement.
PRF_HMAC_SHA1 = 2
PRF_HMAC_SHA2_256 = 5
AUTH_HMAC_SHA1_160 = 7
AUTH_HMAC_SHA2_256_128 = 12

HEADER_BYTES = 16
AVP_HEADER_BYTES = 8
VENDOR_AVP_HEADER_BYTES = 12
MAX_MESSAGE_BYTES = 0xFFFF   # Message Length is 16 bits
NONCE_MIN_BYTES, NONCE_MAX_BYTES = 8, 256   # §8.5
_HEADER = struct.Struct("!HHHHII")
_AVP = struct.Struct("!HHHH")
_U32 = struct.Struct("!I")
_I32 = struct.Struct("!i")

# Decode failures, each a counter's name; "algorithm" is an algorithm this
# side does not implement (pana_security.py).
REASONS = ("short", "oversized", "length", "reserved", "unknown-type", "flags",
           "session", "avp-length", "padding", "avp-value", "avp-count",
           "avp-not-allowed", "avp-missing", "auth-position", "algorithm")

# How many of each RFC 5191 AVP a message may carry, as §7's grammars say:
# (least, most), most None for "any number".  A code not in a message's table
# is one of RFC 5191's the grammar does not name there.
_ONE = (0, 1)
_GRAMMAR = {
    (PCI, False): {},
    (AUTH, True): {AVP_EAP_PAYLOAD: _ONE, AVP_PRF_ALGORITHM: (0, None),
                   AVP_INTEGRITY_ALGORITHM: (0, None), AVP_NONCE: _ONE,
                   AVP_RESULT_CODE: _ONE, AVP_SESSION_LIFETIME: _ONE,
                   AVP_KEY_ID: _ONE, AVP_AUTH: _ONE},
    (AUTH, False): {AVP_NONCE: _ONE, AVP_PRF_ALGORITHM: _ONE,
                    AVP_INTEGRITY_ALGORITHM: _ONE, AVP_EAP_PAYLOAD: _ONE,
                    AVP_KEY_ID: _ONE, AVP_AUTH: _ONE},
    (TERMINATION, True): {AVP_TERMINATION_CAUSE: (1, 1), AVP_AUTH: _ONE},
    (TERMINATION, False): {AVP_AUTH: _ONE},
    (NOTIFICATION, True): {AVP_AUTH: _ONE},
    (NOTIFICATION, False): {AVP_AUTH: _ONE},
}
_FIXED_VALUE_BYTES = {AVP_INTEGRITY_ALGORITHM: 4, AVP_KEY_ID: 4, AVP_PRF_ALGORITHM: 4,
                      AVP_RESULT_CODE: 4, AVP_SESSION_LIFETIME: 4,
                      AVP_TERMINATION_CAUSE: 4}


class PanaError(ValueError):
    """A message that breaks RFC 5191: ``reason`` (one of :data:`REASONS`)
    for a counter, the text for a log line."""

    def __init__(self, reason: str, message: str):
        super().__init__(message)
        self.reason = reason


def _padding(length: int) -> int:
    return -length % 4


@dataclass(frozen=True)
class Avp:
    """One AVP: its code, its value (unpadded) and, for a vendor's AVP, the
    Vendor-Id (0: an IETF AVP, no V flag)."""

    code: int
    value: bytes
    vendor_id: int = 0

    def __post_init__(self):
        if not 0 <= self.code <= 0xFFFF:
            raise PanaError("avp-value", f"AVP code {self.code} is not 16 bits")
        if not 0 <= self.vendor_id <= 0xFFFFFFFF:
            raise PanaError("avp-value", f"Vendor-Id {self.vendor_id} is not 32 bits")
        if len(self.value) > 0xFFFF:
            raise PanaError("avp-length", f"an AVP value of {len(self.value)} bytes")
        if self.vendor_id == 0:
            _check_value(self.code, bytes(self.value))
        object.__setattr__(self, "value", bytes(self.value))

    @property
    def name(self) -> str:
        if self.vendor_id:
            return f"vendor {self.vendor_id} AVP {self.code}"
        return AVP_NAMES.get(self.code, f"AVP {self.code}")

    def encode(self) -> bytes:
        flags = AVP_FLAG_V if self.vendor_id else 0
        head = _AVP.pack(self.code, flags, len(self.value), 0)
        if self.vendor_id:
            head += _U32.pack(self.vendor_id)
        return head + self.value + bytes(_padding(len(self.value)))


def _check_value(code: int, value: bytes) -> None:
    size = _FIXED_VALUE_BYTES.get(code)
    if size is not None and len(value) != size:
        raise PanaError("avp-value", f"{AVP_NAMES[code]} holds {len(value)} bytes, not {size}")
    if code == AVP_NONCE and not NONCE_MIN_BYTES <= len(value) <= NONCE_MAX_BYTES:
        raise PanaError("avp-value", f"a Nonce of {len(value)} bytes "
                                     f"(RFC 5191: {NONCE_MIN_BYTES} to {NONCE_MAX_BYTES})")
    if code in (AVP_EAP_PAYLOAD, AVP_AUTH) and not value:
        raise PanaError("avp-value", f"an empty {AVP_NAMES[code]}")


def unsigned32(code: int, number: int) -> Avp:
    if not 0 <= number <= 0xFFFFFFFF:
        raise PanaError("avp-value", f"{AVP_NAMES.get(code, code)} {number} is not Unsigned32")
    return Avp(code, _U32.pack(number))


def key_id(number: int) -> Avp:
    """Key-Id is an Integer32 (§8.4)."""
    if not -2**31 <= number < 2**31:
        raise PanaError("avp-value", f"Key-Id {number} is not Integer32")
    return Avp(AVP_KEY_ID, _I32.pack(number))


# The AVPs a state machine builds, each from its value.
eap_payload = functools.partial(Avp, AVP_EAP_PAYLOAD)
nonce = functools.partial(Avp, AVP_NONCE)
result_code = functools.partial(unsigned32, AVP_RESULT_CODE)
session_lifetime = functools.partial(unsigned32, AVP_SESSION_LIFETIME)
termination_cause = functools.partial(unsigned32, AVP_TERMINATION_CAUSE)
prf_algorithm = functools.partial(unsigned32, AVP_PRF_ALGORITHM)
integrity_algorithm = functools.partial(unsigned32, AVP_INTEGRITY_ALGORITHM)


def _single(code: int, number: struct.Struct | None = None) -> property:
    """The value of the message's one AVP ``code`` (decoding allows no
    second), as bytes or, given its ``struct``, a number; None if absent."""
    def read(message: "PanaMessage"):
        raw = message._one(code)
        return raw if raw is None or number is None else number.unpack(raw)[0]
    return property(read, doc=f"The {AVP_NAMES[code]} AVP's value, or None.")


@dataclass(frozen=True)
class PanaMessage:
    """One PANA message.  Building one checks the same rules decoding does,
    so a message that exists can be sent."""

    msg_type: int
    flags: int
    session_id: int
    seq: int
    avps: tuple[Avp, ...] = ()

    def __post_init__(self):
        object.__setattr__(self, "avps", tuple(self.avps))
        _check_header(self.msg_type, self.flags, self.session_id, self.seq)
        _check_avps(self)

    # -- flags ---------------------------------------------------------------
    @property
    def is_request(self) -> bool:
        return bool(self.flags & FLAG_R)

    def has(self, flag: int) -> bool:
        return bool(self.flags & flag)

    @property
    def name(self) -> str:
        """The RFC's abbreviation and flags, e.g. ``PAR[S,E]``, for logs."""
        abbrev = {PCI: "PCI", AUTH: "PA", TERMINATION: "PT", NOTIFICATION: "PN"}[self.msg_type]
        if self.msg_type != PCI:
            abbrev += "R" if self.is_request else ("N" if self.msg_type == AUTH else "A")
        shown = [n for n, bit in FLAG_NAMES if bit != FLAG_R and self.flags & bit]
        return abbrev + (f"[{','.join(shown)}]" if shown else "")

    # -- typed AVPs ----------------------------------------------------------
    def find(self, code: int) -> list[Avp]:
        return [a for a in self.avps if a.code == code and a.vendor_id == 0]

    def _one(self, code: int) -> bytes | None:
        found = self.find(code)
        return found[0].value if found else None

    eap_payload = _single(AVP_EAP_PAYLOAD)
    nonce = _single(AVP_NONCE)
    auth = _single(AVP_AUTH)
    key_id = _single(AVP_KEY_ID, _I32)           # an Integer32 (§8.4)
    result_code = _single(AVP_RESULT_CODE, _U32)
    session_lifetime = _single(AVP_SESSION_LIFETIME, _U32)
    termination_cause = _single(AVP_TERMINATION_CAUSE, _U32)

    @property
    def prf_algorithms(self) -> list[int]:
        return [_U32.unpack(a.value)[0] for a in self.find(AVP_PRF_ALGORITHM)]

    @property
    def integrity_algorithms(self) -> list[int]:
        return [_U32.unpack(a.value)[0] for a in self.find(AVP_INTEGRITY_ALGORITHM)]

    # -- wire ----------------------------------------------------------------
    def encode(self) -> bytes:
        body = b"".join(a.encode() for a in self.avps)
        length = HEADER_BYTES + len(body)
        if length > MAX_MESSAGE_BYTES:
            raise PanaError("oversized", f"a message of {length} bytes")
        return _HEADER.pack(0, length, self.flags, self.msg_type,
                            self.session_id, self.seq) + body

    @classmethod
    def decode(cls, data: bytes, max_bytes: int) -> "PanaMessage":
        """Parse one datagram of at most ``max_bytes`` bytes (the caller's
        configured bound) or raise :class:`PanaError`."""
        data = bytes(data)
        if len(data) > max_bytes:
            raise PanaError("oversized", f"{len(data)} bytes, over the bound of {max_bytes}")
        if len(data) < HEADER_BYTES:
            raise PanaError("short", f"{len(data)} bytes, shorter than the 16-byte header")
        reserved, length, flags, msg_type, session_id, seq = _HEADER.unpack_from(data)
        if length != len(data):
            raise PanaError("length", f"Message Length {length} in a datagram of {len(data)} bytes")
        if reserved:
            raise PanaError("reserved", f"header Reserved field is {reserved:#06x}")
        return cls(msg_type, flags, session_id, seq, tuple(_decode_avps(data)))


def _check_header(msg_type: int, flags: int, session_id: int, seq: int) -> None:
    if not 0 <= flags <= 0xFFFF or flags & ~FLAGS_ASSIGNED:
        raise PanaError("reserved", f"unassigned flag bits {flags & ~FLAGS_ASSIGNED:#06x}")
    if msg_type not in MESSAGE_TYPES:
        raise PanaError("unknown-type", f"Message Type {msg_type}")
    for name, value in (("Session Identifier", session_id), ("Sequence Number", seq)):
        if not 0 <= value <= 0xFFFFFFFF:
            raise PanaError("session", f"{name} {value} is not 32 bits")
    allowed = FLAG_R | FLAG_E
    if msg_type == PCI:
        allowed = FLAG_E
    elif msg_type == AUTH:
        allowed |= FLAG_S | FLAG_C | (FLAG_I if flags & FLAG_R else 0)
    elif msg_type == NOTIFICATION:
        allowed |= FLAG_A | FLAG_P
    if flags & ~allowed:
        shown = ",".join(n for n, bit in FLAG_NAMES if flags & ~allowed & bit)
        raise PanaError("flags", f"flag {shown} on a {MESSAGE_TYPES[msg_type]} "
                                 f"{'request' if flags & FLAG_R else 'message'}")
    if flags & FLAG_A and flags & FLAG_P:
        raise PanaError("flags", "both A and P on a PANA-Notification")
    if msg_type == PCI and (session_id or seq):
        raise PanaError("session", "a PCI's Session Identifier and Sequence Number are zero")


def _decode_avps(data: bytes) -> Iterable[Avp]:
    offset = HEADER_BYTES
    while offset < len(data):
        if offset + AVP_HEADER_BYTES > len(data):
            raise PanaError("avp-length", f"an AVP header cut at byte {len(data)}")
        code, flags, length, reserved = _AVP.unpack_from(data, offset)
        if reserved or flags & ~AVP_FLAG_V:
            raise PanaError("reserved", f"AVP {code}: Reserved {reserved:#06x}, flags {flags:#06x}")
        offset += AVP_HEADER_BYTES
        vendor_id = 0
        if flags & AVP_FLAG_V:
            if offset + 4 > len(data):
                raise PanaError("avp-length", f"AVP {code}: the Vendor-Id is cut")
            vendor_id = _U32.unpack_from(data, offset)[0]
            offset += 4
            if vendor_id == 0:
                raise PanaError("avp-value", f"AVP {code}: V flag with Vendor-Id 0")
        end = offset + length
        if end > len(data):
            raise PanaError("avp-length", f"AVP {code}: {length} bytes, {len(data) - offset} left")
        padded = end + _padding(length)
        if padded > len(data) or any(data[end:padded]):
            raise PanaError("padding", f"AVP {code}: its padding is missing or not zero")
        yield Avp(code, data[offset:end], vendor_id)
        offset = padded


def _check_avps(msg: PanaMessage) -> None:
    grammar = _GRAMMAR[(msg.msg_type, msg.is_request and msg.msg_type != PCI)]
    what = msg.name
    counts: dict[int, int] = {}
    for avp in msg.avps:
        if avp.vendor_id == 0 and avp.code in AVP_NAMES:
            if avp.code not in grammar:
                raise PanaError("avp-not-allowed", f"{avp.name} in a {what}")
            counts[avp.code] = counts.get(avp.code, 0) + 1
    for code, (least, most) in grammar.items():
        seen = counts.get(code, 0)
        if seen < least:
            raise PanaError("avp-missing", f"a {what} without {AVP_NAMES[code]}")
        if most is not None and seen > most:
            raise PanaError("avp-count", f"{seen} {AVP_NAMES[code]} AVPs in a {what}")
    # AUTH closes the message (§7's grammars: `0*1 < AUTH >` last), so what
    # it covers is everything before its value.
    if counts.get(AVP_AUTH) and not (msg.avps[-1].code == AVP_AUTH
                                     and msg.avps[-1].vendor_id == 0):
        raise PanaError("auth-position", f"AUTH is not the last AVP of a {what}")


# Sequence numbers (RFC 5191 §5.2): each side starts at a random number,
# adds one per new request (wrapping at 2**32) and answers with the
# request's number.
def initial_seq(randbits=None) -> int:
    """A random initial Sequence Number; ``randbits`` (e.g. a seeded
    ``random.Random().getrandbits``) is injectable, ``secrets`` by default."""
    if randbits is None:
        import secrets
        randbits = secrets.randbits
    return randbits(32) & 0xFFFFFFFF


def next_seq(seq: int) -> int:
    return (seq + 1) & 0xFFFFFFFF


def answers(answer: PanaMessage, request: PanaMessage) -> bool:
    """Whether ``answer`` is the answer to ``request``: same type, session
    and Sequence Number, an answer to a request."""
    return (request.is_request and not answer.is_request
            and answer.msg_type == request.msg_type != PCI
            and answer.session_id == request.session_id and answer.seq == request.seq)

"""EAP (RFC 3748) packets and the EAP-TLS / EAP-TTLS record framing.

Shared by the MN's peer and the controller's Authentication Agent, which
relays EAP without running a method: it needs the identity, and whether a
packet is a Success or a Failure, and nothing else.

Decoding is strict and raises only ``EapError(reason, message)``: the reason
is short and machine-readable (a counter's name), the message is for a log
line and never carries the packet's secrets (no TLS payload, no password).

The EAP-TLS framing (RFC 5216 §3.1-3.2; EAP-TTLS adds version bits in the
flags, RFC 5281 §9.2) is here because both ends fragment and reassemble the
same way: ``TlsLink`` is one side's half of that exchange, bounds included.
"""

from __future__ import annotations

import struct
from dataclasses import dataclass

# Codes (RFC 3748 §4)
REQUEST, RESPONSE, SUCCESS, FAILURE = 1, 2, 3, 4
CODE_NAMES = {REQUEST: "Request", RESPONSE: "Response", SUCCESS: "Success", FAILURE: "Failure"}

# Types (RFC 3748 §5; RFC 5216; RFC 5281)
IDENTITY, NOTIFICATION, NAK = 1, 2, 3
TLS, TTLS = 13, 21
EXPANDED, EXPERIMENTAL = 254, 255

HEADER = struct.Struct("!BBH")

# An NAI is at most 253 octets (RFC 7542 §2.2: it must fit a RADIUS attribute).
MAX_IDENTITY = 253

# EAP-TLS flags (RFC 5216 §3.1): Length included, More fragments, Start.
FLAG_L, FLAG_M, FLAG_S = 0x80, 0x40, 0x20
# EAP-TTLS's low three bits are its version (RFC 5281 §9.1); EAP-TLS
# reserves them, and so do both the two bits between.
TTLS_VERSION_MASK = 0x07
TTLS_VERSION = 0

# Each fragment's TLS payload. With the 10 octets of EAP and EAP-TLS headers
# an EAP packet stays at 1,010 octets, so a PANA or RADIUS message that
# carries it stays near 1,100 octets, below any path MTU.
DEFAULT_FRAGMENT_SIZE = 1000
# A TLS message (one flight) reassembled from fragments: a certificate chain
# of a few certificates is well under this; anything bigger is refused.
DEFAULT_MAX_MESSAGE = 64 * 1024
# Fragments of one message: 64 KiB in default-sized fragments is 66.
DEFAULT_MAX_FRAGMENTS = 128


class EapError(Exception):
    """Bad EAP input or a failed method. ``reason`` is a counter's name."""

    def __init__(self, reason: str, message: str):
        super().__init__(f"{reason}: {message}")
        self.reason = reason
        self.message = message


@dataclass(frozen=True)
class EapPacket:
    code: int
    identifier: int
    type: int | None = None      # Requests and Responses only
    data: bytes = b""            # the Type-Data

    def encode(self) -> bytes:
        if self.code in (SUCCESS, FAILURE):
            if self.type is not None or self.data:
                raise EapError("bad_packet", "Success and Failure carry no data")
            return HEADER.pack(self.code, self.identifier, 4)
        if self.code not in (REQUEST, RESPONSE) or self.type is None:
            raise EapError("bad_packet", f"code {self.code} with type {self.type}")
        length = 5 + len(self.data)
        if length > 0xFFFF:
            raise EapError("too_long", f"{length} octets do not fit EAP's Length")
        return HEADER.pack(self.code, self.identifier, length) + bytes([self.type]) + self.data

    def __repr__(self) -> str:
        # The Type-Data of a TLS method is ciphertext, of TTLS/PAP a password
        # once decrypted: a repr shows sizes, never contents.
        kind = CODE_NAMES.get(self.code, str(self.code))
        return (f"EapPacket({kind}, id={self.identifier}, type={self.type}, "
                f"{len(self.data)} octets)")


def decode(data: bytes) -> EapPacket:
    """The EAP packet in ``data``, which must be exactly one packet."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise EapError("not_bytes", f"{type(data).__name__} is not bytes")
    data = bytes(data)
    if len(data) < HEADER.size:
        raise EapError("short", f"{len(data)} octets, an EAP header is 4")
    code, identifier, length = HEADER.unpack_from(data)
    if length != len(data):
        raise EapError("length_mismatch", f"Length says {length}, {len(data)} octets came")
    if code in (SUCCESS, FAILURE):
        if length != 4:
            raise EapError("bad_length", f"{CODE_NAMES[code]} of {length} octets, must be 4")
        return EapPacket(code, identifier)
    if code not in (REQUEST, RESPONSE):
        raise EapError("bad_code", f"code {code}")
    if length < 5:
        raise EapError("no_type", f"{CODE_NAMES[code]} without a Type")
    eap_type = data[4]
    if eap_type == 0:
        raise EapError("bad_type", "Type 0 is reserved")
    if eap_type == NAK and (code != RESPONSE or length < 6):
        raise EapError("bad_nak", "a Nak is a Response proposing at least one Type")
    return EapPacket(code, identifier, eap_type, data[5:])


def identity_of(packet: EapPacket | bytes) -> str:
    """The NAI of an EAP-Response/Identity: printable UTF-8, 1 to 253 octets."""
    if not isinstance(packet, EapPacket):
        packet = decode(packet)
    if packet.code != RESPONSE or packet.type != IDENTITY:
        raise EapError("not_identity", f"{packet!r} is no Response/Identity")
    if not packet.data:
        raise EapError("bad_identity", "empty identity")
    if len(packet.data) > MAX_IDENTITY:
        raise EapError("bad_identity",
                       f"identity of {len(packet.data)} octets, at most {MAX_IDENTITY}")
    try:
        text = packet.data.decode("utf-8")
    except UnicodeDecodeError:
        raise EapError("bad_identity", "identity is not UTF-8") from None
    if not text.isprintable():
        raise EapError("bad_identity", "identity has unprintable characters")
    return text


def _decoded(packet: EapPacket | bytes) -> EapPacket:
    return packet if isinstance(packet, EapPacket) else decode(packet)


def is_success(packet: EapPacket | bytes) -> bool:
    return _decoded(packet).code == SUCCESS


def is_failure(packet: EapPacket | bytes) -> bool:
    return _decoded(packet).code == FAILURE


def nak(identifier: int, proposed: tuple[int, ...]) -> EapPacket:
    """A legacy Nak (RFC 3748 §5.3.1) proposing ``proposed`` (0: none acceptable)."""
    return EapPacket(RESPONSE, identifier, NAK, bytes(proposed or (0,)))


# --- EAP-TLS / EAP-TTLS framing ---------------------------------------------

@dataclass(frozen=True)
class TlsFrame:
    """An EAP-TLS or EAP-TTLS Type-Data: flags, TLS Message Length, a fragment."""
    flags: int = 0
    data: bytes = b""
    message_length: int | None = None    # present when L is set
    version: int = 0                      # EAP-TTLS only

    @property
    def more(self) -> bool:
        return bool(self.flags & FLAG_M)

    @property
    def start(self) -> bool:
        return bool(self.flags & FLAG_S)

    @property
    def is_ack(self) -> bool:
        """An empty frame: the ACK of a fragment (RFC 5216 §2.1.5)."""
        return not self.data and not self.flags & (FLAG_L | FLAG_M | FLAG_S)

    def encode(self, eap_type: int) -> bytes:
        flags = self.flags & (FLAG_L | FLAG_M | FLAG_S)
        if eap_type == TTLS:
            flags |= self.version & TTLS_VERSION_MASK
        head = bytes([flags])
        if flags & FLAG_L:
            head += struct.pack("!I", self.message_length)
        return head + self.data

    def __repr__(self) -> str:
        names = "".join(name for flag, name in ((FLAG_L, "L"), (FLAG_M, "M"), (FLAG_S, "S"))
                        if self.flags & flag)
        return f"TlsFrame({names or '-'}, {len(self.data)} octets, length={self.message_length})"


def decode_tls(packet: EapPacket) -> TlsFrame:
    """The EAP-TLS or EAP-TTLS frame in ``packet``'s Type-Data."""
    if packet.type not in (TLS, TTLS) or packet.code not in (REQUEST, RESPONSE):
        raise EapError("not_tls", f"{packet!r} is no EAP-TLS or EAP-TTLS packet")
    data = packet.data
    if not data:
        raise EapError("tls_no_flags", "EAP-TLS Type-Data without its Flags octet")
    flags = data[0]
    reserved = 0x18 if packet.type == TTLS else 0x1F
    if flags & reserved:
        raise EapError("tls_reserved_flags", f"reserved flag bits set: {flags:#04x}")
    version = flags & TTLS_VERSION_MASK if packet.type == TTLS else 0
    if flags & FLAG_L:
        if len(data) < 5:
            raise EapError("tls_short", "L set but no TLS Message Length")
        (length,) = struct.unpack_from("!I", data, 1)
        fragment = data[5:]
        if length < len(fragment):
            raise EapError("tls_length_short",
                           f"TLS Message Length {length} below the fragment's {len(fragment)}")
        return TlsFrame(flags, fragment, length, version)
    return TlsFrame(flags, data[1:], None, version)


def tls_packet(code: int, identifier: int, eap_type: int, frame: TlsFrame) -> EapPacket:
    return EapPacket(code, identifier, eap_type, frame.encode(eap_type))


def fragments(message: bytes, size: int = DEFAULT_FRAGMENT_SIZE, *,
              version: int = 0) -> list[TlsFrame]:
    """``message`` as the frames that carry it: the first one says the total
    (L) when there are several, every one but the last says more follow (M)."""
    if size < 1:
        raise ValueError("fragment size must be at least 1")
    if len(message) <= size:
        return [TlsFrame(0, message, None, version)]
    pieces = [message[i:i + size] for i in range(0, len(message), size)]
    frames = [TlsFrame(FLAG_M, piece, None, version) for piece in pieces]
    frames[0] = TlsFrame(FLAG_L | FLAG_M, pieces[0], len(message), version)
    frames[-1] = TlsFrame(0, pieces[-1], None, version)
    return frames


class Reassembly:
    """One TLS message put back together from its fragments, bounded in size
    and in the number of fragments."""

    def __init__(self, max_message: int = DEFAULT_MAX_MESSAGE,
                 max_fragments: int = DEFAULT_MAX_FRAGMENTS):
        self.max_message = max_message
        self.max_fragments = max_fragments
        self._parts: list[bytes] = []
        self._size = 0
        self._expected: int | None = None

    @property
    def pending(self) -> bool:
        return bool(self._parts)

    def add(self, frame: TlsFrame) -> bytes | None:
        """The whole message once ``frame`` completes it, else None. A frame
        refused leaves the fragments before it as they were."""
        expected = self._expected
        if frame.message_length is not None:
            if frame.message_length > self.max_message:
                raise EapError("tls_too_long", f"a TLS message of {frame.message_length} "
                               f"octets, at most {self.max_message}")
            if self._parts and frame.message_length != expected:
                raise EapError("tls_length_changed", "TLS Message Length changed between fragments")
            expected = frame.message_length
        elif frame.more and not self._parts:
            raise EapError("tls_no_length", "first fragment without a TLS Message Length")
        if len(self._parts) + 1 > self.max_fragments:
            raise EapError("tls_too_many_fragments", f"more than {self.max_fragments} fragments")
        size = self._size + len(frame.data)
        if size > self.max_message:
            raise EapError("tls_too_long", f"more than {self.max_message} octets of TLS message")
        if expected is not None and size > expected:
            raise EapError("tls_overrun", f"{size} octets, TLS Message Length {expected}")
        if not frame.more and expected is not None and size != expected:
            raise EapError("tls_underrun", f"{size} octets, TLS Message Length {expected}")
        if frame.more:
            self._parts.append(frame.data)
            self._size, self._expected = size, expected
            return None
        message = b"".join([*self._parts, frame.data])
        self._parts, self._size, self._expected = [], 0, None
        return message


class TlsLink:
    """One side's half of the EAP-TLS record exchange (RFC 5216 §2.1.5):
    a message to send goes out a fragment per round, each answered by an
    ACK; fragments coming in are each answered by an ACK until the last.

    ``answer(frame, process)`` is the whole rule: it takes the frame just
    received and returns the frame to send, calling ``process`` with each
    complete incoming message to get the message to send back.
    """

    def __init__(self, *, fragment_size: int = DEFAULT_FRAGMENT_SIZE,
                 max_message: int = DEFAULT_MAX_MESSAGE,
                 max_fragments: int = DEFAULT_MAX_FRAGMENTS, version: int = 0):
        if fragment_size < 1:
            raise ValueError("fragment_size must be at least 1")
        self.fragment_size = fragment_size
        self.version = version
        self.incoming = Reassembly(max_message, max_fragments)
        self._outgoing: list[TlsFrame] = []
        self.fragments_sent = 0
        self.fragments_received = 0

    @property
    def sending(self) -> bool:
        return bool(self._outgoing)

    def ack(self) -> TlsFrame:
        return TlsFrame(0, b"", None, self.version)

    def send(self, message: bytes) -> TlsFrame:
        """The first frame of ``message``; the rest go out as ACKs come."""
        self._outgoing = fragments(message, self.fragment_size, version=self.version)
        return self._next()

    def _next(self) -> TlsFrame:
        self.fragments_sent += 1
        return self._outgoing.pop(0)

    def answer(self, frame: TlsFrame, process) -> TlsFrame:
        if self._outgoing:
            if not frame.is_ack:
                raise EapError("tls_expected_ack", f"{frame!r} while sending fragments")
            return self._next()
        self.fragments_received += 1
        message = self.incoming.add(frame)
        if message is None:
            return self.ack()
        return self.send(process(message))


# --- EAP-TTLS AVPs (RFC 5281 §10) -------------------------------------------

AVP_USER_NAME, AVP_USER_PASSWORD = 1, 2
AVP_FLAG_V, AVP_FLAG_M = 0x80, 0x40
AVP_HEADER = struct.Struct("!IB3s")


@dataclass(frozen=True)
class Avp:
    code: int
    data: bytes
    mandatory: bool = True
    vendor: int | None = None

    def encode(self) -> bytes:
        header = 8 + (4 if self.vendor is not None else 0)
        length = header + len(self.data)
        flags = ((AVP_FLAG_M if self.mandatory else 0)
                 | (AVP_FLAG_V if self.vendor is not None else 0))
        out = AVP_HEADER.pack(self.code, flags, length.to_bytes(3, "big"))
        if self.vendor is not None:
            out += struct.pack("!I", self.vendor)
        # Each AVP starts on a four-octet boundary; the padding is not counted
        # in its length (RFC 5281 §10.2).
        return out + self.data + b"\0" * (-length % 4)

    def __repr__(self) -> str:
        return f"Avp({self.code}, {len(self.data)} octets, mandatory={self.mandatory})"


def encode_avps(avps) -> bytes:
    return b"".join(avp.encode() for avp in avps)


def decode_avps(data: bytes, max_avps: int = 32) -> list[Avp]:
    """The AVPs in a phase-2 message."""
    avps, offset = [], 0
    while offset < len(data):
        if len(avps) >= max_avps:
            raise EapError("avp_too_many", f"more than {max_avps} AVPs")
        if len(data) - offset < AVP_HEADER.size:
            raise EapError("avp_short", "an AVP header cut short")
        code, flags, raw_length = AVP_HEADER.unpack_from(data, offset)
        length = int.from_bytes(raw_length, "big")
        header = 12 if flags & AVP_FLAG_V else 8
        if length < header or offset + length > len(data):
            raise EapError("avp_length", f"AVP {code} of length {length}")
        vendor = struct.unpack_from("!I", data, offset + 8)[0] if flags & AVP_FLAG_V else None
        avps.append(Avp(code, data[offset + header:offset + length],
                        bool(flags & AVP_FLAG_M), vendor))
        offset += length + (-length % 4)
    return avps


def pap_avps(username: str, password: str) -> bytes:
    """User-Name and User-Password AVPs for EAP-TTLS/PAP (RFC 5281 §11.2.5):
    the password padded with nulls to a multiple of 16 octets so that its
    length does not show."""
    secret = password.encode("utf-8")
    secret += b"\0" * (-len(secret) % 16 or (16 if not secret else 0))
    return encode_avps([Avp(AVP_USER_NAME, username.encode("utf-8")),
                        Avp(AVP_USER_PASSWORD, secret)])

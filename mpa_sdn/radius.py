"""RADIUS for EAP (RFC 3579): the Authentication Agent's Access-Requests and
the answers of its domain's RADIUS server, on pyrad.

Pure: no sockets, no clock, no randomness of its own.  The Identifier and
Request Authenticator come from the caller (``RadiusClient`` in
``radius_client.py`` allocates them and retransmits).

Requests carry a Message-Authenticator always (RFC 3579 §3.2 requires it
with EAP-Message), and answers are refused without a valid one: a server
answering without it is what the BlastRADIUS attack (CVE-2024-3596) forges.
Every refusal is a ``RadiusError`` with a short reason that names a counter;
no other exception leaves ``parse_answer`` whatever the bytes.

pyrad encodes and decodes the attributes and computes the
Message-Authenticator; what it lacks is written here: the MS-MPPE keys'
decryption (RFC 2548 §2.4.2, ``mppe_key``; pyrad's salt decryption checks
neither the salt's high bit nor the key length against what was sent) and
the ordered checks that name why an answer was refused.
"""

from __future__ import annotations

import functools
import hashlib
import hmac
import importlib.resources
import io
import struct
from dataclasses import dataclass

from pyrad import dictionary, packet

ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT = 1, 2, 3
STATUS_SERVER, ACCESS_CHALLENGE = 12, 11
KINDS = {ACCESS_ACCEPT: "accept", ACCESS_REJECT: "reject", ACCESS_CHALLENGE: "challenge"}
HEADER_BYTES = 20
MAX_PACKET_BYTES = 4096          # RFC 2865 §3
MAX_ATTRIBUTE_VALUE = 253        # RFC 3579 §3.1: EAP split over attributes of this size
AUTHENTICATOR_BYTES = 16
MESSAGE_AUTHENTICATOR = 80
EAP_MESSAGE = 79
MPPE_KEY_BYTES = 32              # each of Send and Recv: the MSK is 64 octets
SERVICE_TYPE_AUTHENTICATE_ONLY = 8


class RadiusError(Exception):
    """A request that cannot be built or an answer that is refused.

    ``reason`` is short and machine-readable: it names the counter
    (``radius_refused_<reason>``) the refusal is counted in.
    """

    def __init__(self, reason: str, detail: str = ""):
        super().__init__(f"{reason}: {detail}" if detail else reason)
        self.reason = reason
        self.detail = detail


@dataclass(frozen=True)
class Answer:
    """An Access-Challenge, Access-Accept or Access-Reject that passed every check."""
    kind: str                       # "challenge", "accept" or "reject"
    identifier: int
    eap: bytes | None               # the EAP packet, reassembled
    state: bytes | None             # to be echoed in the next request
    session_timeout: int | None     # seconds
    msk: bytes | None = None        # on accept: MS-MPPE-Recv-Key || MS-MPPE-Send-Key
    reply_message: str | None = None
    # The identity the server authenticated, when it says (RFC 2865 §5.1: an
    # Access-Accept may carry the User-Name to use); undecodable: "".
    user_name: str | None = None


@functools.cache
def attribute_dictionary() -> dictionary.Dictionary:
    """The attributes this module knows (package data, read once)."""
    text = importlib.resources.files("mpa_sdn").joinpath("radius.dictionary").read_text()
    return dictionary.Dictionary(io.StringIO(text))


def eap_attributes(eap: bytes) -> list[bytes]:
    """``eap`` cut into EAP-Message values of at most 253 octets (RFC 3579 §3.1)."""
    if not eap:
        raise RadiusError("malformed", "empty EAP message")
    return [eap[i:i + MAX_ATTRIBUTE_VALUE] for i in range(0, len(eap), MAX_ATTRIBUTE_VALUE)]


def _encode(code: int, identifier: int, authenticator: bytes, secret: bytes,
            attributes: list[tuple[str, object]]) -> bytes:
    if not 0 <= identifier <= 255 or len(authenticator) != AUTHENTICATOR_BYTES:
        raise RadiusError("malformed", "identifier or authenticator out of range")
    request = packet.AuthPacket(code=code, id=identifier, secret=secret,
                                authenticator=authenticator, dict=attribute_dictionary())
    # Message-Authenticator first: it is computed over the whole packet when
    # encoded, with the Request Authenticator given above.
    request.add_message_authenticator()
    try:
        for name, value in attributes:
            request.AddAttribute(name, value)
        data = request.RequestPacket()
    except (ValueError, TypeError, struct.error) as e:
        # A value that does not fit its attribute (over 253 octets, an
        # integer out of range): the caller's input, refused like an answer.
        raise RadiusError("malformed", str(e)) from None
    if len(data) > MAX_PACKET_BYTES:
        raise RadiusError("too-long", f"{len(data)} octets")
    return data


def access_request(*, identifier: int, authenticator: bytes, secret: bytes, eap: bytes,
                   user_name: str, calling_station_id: str, nas_identifier: str,
                   state: bytes | None = None, nas_ip_address: str | None = None,
                   called_station_id: str | None = None, framed_mtu: int | None = None,
                   service_type: int | None = SERVICE_TYPE_AUTHENTICATE_ONLY) -> bytes:
    """The Access-Request carrying one EAP round from the MN (RFC 3579 §3)."""
    attributes: list[tuple[str, object]] = [("User-Name", user_name),
                                            ("NAS-Identifier", nas_identifier),
                                            ("Calling-Station-Id", calling_station_id)]
    if nas_ip_address is not None:
        attributes.append(("NAS-IP-Address", nas_ip_address))
    if called_station_id is not None:
        attributes.append(("Called-Station-Id", called_station_id))
    if service_type is not None:
        attributes.append(("Service-Type", service_type))
    if framed_mtu is not None:
        # RFC 3579 §2.4: the server sizes its EAP fragments to it.
        attributes.append(("Framed-MTU", framed_mtu))
    if state is not None:
        attributes.append(("State", state))
    attributes += [("EAP-Message", chunk) for chunk in eap_attributes(eap)]
    return _encode(ACCESS_REQUEST, identifier, authenticator, secret, attributes)


def status_server(*, identifier: int, authenticator: bytes, secret: bytes,
                  nas_identifier: str) -> bytes:
    """A Status-Server (RFC 5997): is the server there?  Answered by Access-Accept."""
    return _encode(STATUS_SERVER, identifier, authenticator, secret,
                   [("NAS-Identifier", nas_identifier)])


def mppe_key(value: bytes, secret: bytes, request_authenticator: bytes) -> bytes:
    """Decrypt an MS-MPPE-Send-Key or -Recv-Key (RFC 2548 §2.4.2, §2.4.3).

    ``value`` is the salt (2 octets, high bit set) and the ciphertext, in
    16-octet blocks: b(1) = MD5(secret + Request Authenticator + salt),
    b(i) = MD5(secret + c(i-1)), p(i) = c(i) xor b(i); the plaintext is
    the key's length, the key and padding.
    """
    salt, cipher = value[:2], value[2:]
    if len(salt) < 2 or not salt[0] & 0x80:
        raise RadiusError("bad-keys", "salt missing or its high bit clear")
    if not cipher or len(cipher) % 16:
        raise RadiusError("bad-keys", f"ciphertext of {len(cipher)} octets")
    plain, previous = bytearray(), request_authenticator + salt
    for i in range(0, len(cipher), 16):
        block = cipher[i:i + 16]
        pad = hashlib.md5(secret + previous).digest()
        plain += bytes(c ^ p for c, p in zip(block, pad))
        previous = block
    length = plain[0]
    if length + 1 > len(plain):
        raise RadiusError("bad-keys",
                          f"key length {length} beyond the {len(plain) - 1} octets sent")
    return bytes(plain[1:1 + length])


def _decode(data: bytes) -> packet.Packet:
    if len(data) < HEADER_BYTES:
        raise RadiusError("malformed", f"{len(data)} octets")
    length = struct.unpack("!H", data[2:4])[0]
    if not HEADER_BYTES <= length <= min(len(data), MAX_PACKET_BYTES):
        raise RadiusError("malformed", f"length field {length} for {len(data)} octets")
    try:
        return packet.Packet(packet=data[:length], dict=attribute_dictionary())
    except (packet.PacketError, ValueError, KeyError, IndexError, struct.error) as e:
        raise RadiusError("malformed", str(e)) from None


def _raw(answer: packet.Packet, code) -> list[bytes]:
    """An attribute's values as sent, by code (an int, or (vendor, code))."""
    values = dict.get(answer, code, [])
    if not isinstance(values, list) or not all(isinstance(v, bytes) for v in values):
        raise RadiusError("malformed", f"attribute {code}")
    return values


def _integer(answer: packet.Packet, code: int) -> int | None:
    values = _raw(answer, code)
    if not values:
        return None
    if len(values[0]) != 4:
        raise RadiusError("malformed", f"attribute {code} of {len(values[0])} octets")
    return struct.unpack("!I", values[0])[0]


def _check_authenticators(data: bytes, answer: packet.Packet, identifier: int,
                          request_authenticator: bytes, secret: bytes, request_code: int) -> None:
    if answer.id != identifier:
        raise RadiusError("wrong-identifier", f"{answer.id} for {identifier}")
    expected = hashlib.md5(data[:4] + request_authenticator + data[HEADER_BYTES:] + secret).digest()
    if not hmac.compare_digest(expected, data[4:HEADER_BYTES]):
        raise RadiusError("bad-authenticator")
    # The Message-Authenticator is computed differently for other codes.
    if answer.code not in KINDS or (request_code == STATUS_SERVER and answer.code != ACCESS_ACCEPT):
        raise RadiusError("unexpected-code", str(answer.code))
    values = _raw(answer, MESSAGE_AUTHENTICATOR)
    if not values:
        raise RadiusError("no-message-authenticator")
    if len(values) != 1 or len(values[0]) != AUTHENTICATOR_BYTES:
        raise RadiusError("bad-message-authenticator", "not exactly one of 16 octets")
    if not answer.verify_message_authenticator(secret=secret,
                                               original_authenticator=request_authenticator,
                                               original_code=request_code):
        raise RadiusError("bad-message-authenticator")


def _eap(answer: packet.Packet) -> bytes | None:
    chunks = _raw(answer, EAP_MESSAGE)
    if not chunks:
        return None
    eap = b"".join(chunks)
    # The EAP header's length must cover exactly what was reassembled.
    if len(eap) < 4 or struct.unpack("!H", eap[2:4])[0] != len(eap):
        raise RadiusError("malformed-eap", f"{len(eap)} octets")
    return eap


def _msk(answer: packet.Packet, secret: bytes, request_authenticator: bytes) -> bytes:
    send = _raw(answer, (311, 16))
    recv = _raw(answer, (311, 17))
    if len(send) != 1 or len(recv) != 1:
        raise RadiusError("no-keys", f"{len(recv)} Recv-Key and {len(send)} Send-Key")
    keys = [mppe_key(v[0], secret, request_authenticator) for v in (recv, send)]
    if any(len(k) != MPPE_KEY_BYTES for k in keys):
        raise RadiusError("bad-keys", f"keys of {[len(k) for k in keys]} octets")
    # RFC 5216 §2.3 as RADIUS carries it: the MSK's first 32 octets are the
    # Recv-Key, the next 32 the Send-Key (checked against eapol_test's MSK
    # by tests/integration/test_radius_server.py).
    return keys[0] + keys[1]


def parse_answer(data: bytes, *, identifier: int, request_authenticator: bytes, secret: bytes,
                 request_code: int = ACCESS_REQUEST) -> Answer:
    """Check an answer to the request sent with ``identifier`` and
    ``request_authenticator``, and return what it says.

    Raises ``RadiusError`` for anything refused, and only that.
    """
    answer = _decode(data)
    data = data[:struct.unpack("!H", data[2:4])[0]]
    _check_authenticators(data, answer, identifier, request_authenticator, secret, request_code)
    kind = KINDS[answer.code]
    eap = _eap(answer)
    if request_code == ACCESS_REQUEST and eap is None and kind != "reject":
        # RFC 3579 §2.6.3 (Challenge) and §3.1 (Accept carries EAP-Success).
        raise RadiusError("no-eap-message", kind)
    states = _raw(answer, 24)
    msk = None
    if kind == "accept" and request_code == ACCESS_REQUEST:
        msk = _msk(answer, secret, request_authenticator)
    reply = _raw(answer, 18)
    names = _raw(answer, 1)
    return Answer(kind=kind, identifier=answer.id, eap=eap, state=states[0] if states else None,
                  session_timeout=_integer(answer, 27), msk=msk,
                  reply_message=b"".join(reply).decode("utf-8", "replace") if reply else None,
                  user_name=_text(names[0]) if names else None)


def _text(value: bytes) -> str:
    try:
        return value.decode("utf-8")
    except UnicodeDecodeError:
        return ""

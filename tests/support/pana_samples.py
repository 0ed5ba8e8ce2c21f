"""PANA messages that break one rule of RFC 5191 each, named by the
PanaError reason the codec gives (a name that starts with one): for the
codec's tests and for the PAA's, which must drop and count each."""

from __future__ import annotations

import struct

from mpa_protocol import pana

BOUND = 4096   # the PAA's default mpa.pana_max_bytes


def _header(msg_type=pana.AUTH, flags=pana.FLAG_R, session=1, seq=1, body=b"", length=None,
            reserved=0) -> bytes:
    size = 16 + len(body) if length is None else length
    return struct.pack("!HHHHII", reserved, size, flags, msg_type, session, seq) + body


def _avp(code, value, flags=0, reserved=0, length=None, pad=None) -> bytes:
    size = len(value) if length is None else length
    padding = bytes(-len(value) % 4) if pad is None else pad
    return struct.pack("!HHHH", code, flags, size, reserved) + value + padding


U32 = struct.pack("!I", 1)
BAD = {
    "short": b"\x00" * 15,
    "oversized": _header(body=b"\0" * (BOUND - 12)),
    "length": _header(length=20),
    "reserved": _header(reserved=1),
    "reserved-flag": _header(flags=pana.FLAG_R | 0x0100),
    "reserved-avp": _header(body=_avp(77, U32, reserved=1)),
    "reserved-avp-flag": _header(body=_avp(77, U32, flags=0x4000)),
    "unknown-type": _header(msg_type=5),
    "unknown-type-zero": _header(msg_type=0),
    "flags-pci-request": _header(msg_type=pana.PCI, flags=pana.FLAG_R, session=0, seq=0),
    "flags-s-on-ptr": _header(msg_type=pana.TERMINATION, flags=pana.FLAG_R | pana.FLAG_S,
                              body=_avp(9, U32)),
    "flags-i-on-pan": _header(flags=pana.FLAG_I),
    "flags-a-and-p": _header(msg_type=pana.NOTIFICATION, flags=pana.FLAG_R | pana.FLAG_A | pana.FLAG_P),
    "session": _header(msg_type=pana.PCI, flags=0, session=0, seq=5),
    "avp-length": _header(body=_avp(2, b"abcd", length=40)),
    "avp-length-header": _header(body=b"\0\x02\0\0"),
    "avp-length-vendor": _header(body=struct.pack("!HHHH", 77, 0x8000, 0, 0)),
    "padding": _header(body=_avp(2, b"abc", pad=b"\1")),
    "padding-missing": _header(body=_avp(2, b"abc", pad=b"")),
    "avp-value": _header(body=_avp(7, b"\0\0\0\0\0")),
    "avp-value-nonce": _header(flags=0, body=_avp(5, b"1234")),
    "avp-value-vendor-zero": _header(body=struct.pack("!HHHHI", 77, 0x8000, 0, 0, 0)),
    "avp-count": _header(body=_avp(2, b"abcd") + _avp(2, b"abcd")),
    "avp-count-pan-prf": _header(flags=0, body=_avp(6, U32) + _avp(6, U32)),
    "avp-not-allowed": _header(body=_avp(9, U32)),
    "avp-not-allowed-pci": _header(msg_type=pana.PCI, flags=0, session=0, seq=0, body=_avp(2, b"abcd")),
    "avp-missing": _header(msg_type=pana.TERMINATION),
    "auth-position": _header(body=_avp(1, b"x" * 16) + _avp(2, b"abcd")),
}

"""RADIUS answers as a server builds them (RFC 2865 §3, RFC 3579 §3.2,
RFC 2548 §2.4.2), written with struct, hashlib and hmac and not with pyrad,
so that ``mpa_sdn.radius`` is checked against an encoding made apart from it."""

from __future__ import annotations

import hashlib
import hmac
import struct


def attribute(code, value: bytes) -> bytes:
    """One attribute; ``code`` is an int or (vendor, code) for a Vendor-Specific one."""
    if isinstance(code, tuple):
        vendor, code = code
        inner = struct.pack("!BB", code, len(value) + 2) + value
        return struct.pack("!BBI", 26, len(inner) + 6, vendor) + inner
    return struct.pack("!BB", code, len(value) + 2) + value


def answer(code: int, attrs: list, *, identifier: int, secret: bytes, request_auth: bytes,
           message_authenticator: bool = True, ma_secret: bytes | None = None) -> bytes:
    """An answer to the request with ``identifier`` and ``request_auth``; its
    Message-Authenticator (last) keyed with ``ma_secret`` if given."""
    body = b"".join(attribute(c, v) for c, v in attrs)
    if message_authenticator:
        body += attribute(80, bytes(16))
    header = struct.pack("!BBH", code, identifier, 20 + len(body))
    if message_authenticator:
        mac = hmac.new(ma_secret or secret, header + request_auth + body, hashlib.md5).digest()
        body = body[:-16] + mac
    response_auth = hashlib.md5(header + request_auth + body + secret).digest()
    return header + response_auth + body


def encrypt_mppe(key: bytes, secret: bytes, request_auth: bytes, salt: bytes) -> bytes:
    """An MS-MPPE-Send-Key or -Recv-Key value: RFC 2548 §2.4.2, encrypting."""
    plain = bytes([len(key)]) + key
    plain += bytes(-len(plain) % 16)
    out, previous = b"", request_auth + salt
    for i in range(0, len(plain), 16):
        pad = hashlib.md5(secret + previous).digest()
        block = bytes(a ^ b for a, b in zip(plain[i:i + 16], pad))
        out, previous = out + block, block
    return salt + out


def attributes(body: bytes) -> list[tuple[int, bytes]]:
    """A packet's attributes after its header (``body``: the bytes past the
    first 20), as (code, value), in order."""
    found, at = [], 0
    while at < len(body):
        code, length = body[at], body[at + 1]
        found.append((code, body[at + 2:at + length]))
        at += length
    return found

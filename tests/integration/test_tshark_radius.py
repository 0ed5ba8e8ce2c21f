"""The capture helper's RADIUS side (tests/support/tshark.py), for the RADIUS
client's tests: what tshark 4.0 says about RADIUS authenticators when it
knows the shared secret."""

from __future__ import annotations

import hashlib
import hmac
import struct

import pytest

from support import tshark

# tshark is a system package: with the lab's, in make test, never skipped.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("tshark_installed")]

SECRET = b"s3cret"
NAS, SERVER = "10.0.0.2", "10.0.0.1"
REQUEST_AUTHENTICATOR = bytes(range(16))


def access_request() -> bytes:
    attrs = bytes([1, 7]) + b"alice" + bytes([80, 18]) + bytes(16)
    packet = struct.pack("!BBH", 1, 7, 20 + len(attrs)) + REQUEST_AUTHENTICATOR + attrs
    return packet[:-16] + hmac.new(SECRET, packet, hashlib.md5).digest()


def access_accept(secret: bytes) -> bytes:
    """An Access-Accept whose Response Authenticator and Message-Authenticator
    are computed with ``secret`` (RFC 2865 §3, RFC 3579 §3.2)."""
    header = struct.pack("!BBH", 2, 7, 20 + 18)
    zeroed = bytes([80, 18]) + bytes(16)
    attrs = bytes([80, 18]) + hmac.new(secret, header + REQUEST_AUTHENTICATOR + zeroed,
                                       hashlib.md5).digest()
    return header + hashlib.md5(header + REQUEST_AUTHENTICATOR + attrs + secret).digest() + attrs


def test_the_response_authenticator_is_judged_and_message_authenticator_is_not(tmp_path):
    frames = [tshark.udp_frame(access_request(), NAS, SERVER, 40001, 1812),
              tshark.udp_frame(access_accept(SECRET), SERVER, NAS, 1812, 40001),
              tshark.udp_frame(access_accept(b"wrong"), SERVER, NAS, 1812, 40001)]
    pcap = tshark.write_pcap(tmp_path / "radius.pcap", frames)
    packets = tshark.dissect(pcap, "radius", prefs={"radius.shared_secret": SECRET.decode(),
                                                    **tshark.RADIUS_PREFS_VALIDATE})
    assert all(p.present and not p.malformed for p in packets)
    verdicts = [tshark.radius_verdicts(p) for p in packets]
    assert [v["authenticator"] for v in verdicts] == [None, True, False]
    # Wireshark 4.0 does not check Message-Authenticator: the RADIUS tests
    # have to compute it themselves.
    assert [v["message_authenticator"] for v in verdicts] == [None, None, None]
    assert packets[0].first("radius.code") == "1" and packets[1].first("radius.code") == "2"

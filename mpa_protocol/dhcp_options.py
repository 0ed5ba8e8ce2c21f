"""DHCP's numbers (RFC 2131, 2132) and its options read from a message's
option area: shared by the controller's server (mpa_sdn/dhcp.py) and the
MN's client (mpa_mn), which must not load Ryu, so nothing here does."""

from __future__ import annotations

DISCOVER, OFFER, REQUEST, DECLINE, ACK, NAK, RELEASE, INFORM = 1, 2, 3, 4, 5, 6, 7, 8
SERVER_PORT, CLIENT_PORT = 67, 68
BOOTREQUEST, BOOTREPLY = 1, 2
MAGIC_COOKIE = bytes((99, 130, 83, 99))
MIN_BOOTP = 300           # RFC 1542 §2.1: the minimal BOOTP message relays and clients expect

OPT_PAD, OPT_END = 0, 255
OPT_SUBNET_MASK, OPT_ROUTER, OPT_DNS, OPT_HOSTNAME = 1, 3, 6, 12
OPT_REQUESTED_IP, OPT_LEASE_TIME, OPT_OVERLOAD, OPT_MESSAGE_TYPE = 50, 51, 52, 53
OPT_SERVER_ID, OPT_PARAMETER_LIST, OPT_MESSAGE = 54, 55, 56
OPT_RENEWAL_T1, OPT_REBINDING_T2, OPT_CLIENT_ID = 58, 59, 61


def walk_options(buf: bytes) -> dict[int, bytes] | None:
    """Option code -> value up to END; None if an option overruns ``buf`` or
    END is missing.  Pads are skipped and a repeated code is concatenated
    (RFC 3396)."""
    found: dict[int, bytes] = {}
    i = 0
    while i < len(buf):
        code = buf[i]
        if code == OPT_PAD:
            i += 1
            continue
        if code == OPT_END:
            return found
        if i + 2 > len(buf) or i + 2 + buf[i + 1] > len(buf):
            return None
        found[code] = found.get(code, b"") + buf[i + 2:i + 2 + buf[i + 1]]
        i += 2 + buf[i + 1]
    return None

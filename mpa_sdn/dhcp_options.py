"""DHCP options (RFC 2132) read from a message's option area: shared by the
controller's server (mpa_sdn/dhcp.py) and the MN's client (mpa_mn), which
must not load Ryu, so nothing here does."""

from __future__ import annotations

OPT_PAD, OPT_END = 0, 255


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

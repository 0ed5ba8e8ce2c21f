"""OpenFlow matches built once, shared, and serialized once.

Ryu's ``OFPMatch(**fields)`` converts every value three times on the way in
(through netaddr for addresses) and again on every serialization: some 80
µs to build and 25 µs to serialize a five-field match, most of a flow-mod's
cost.  The core builds the same matches again and again (a host's route on
each switch of its path, a tunnel's and a buffer's punt for one nCoA, a
binding's rewrites when the MN arrives), and nothing changes a match once it
is built.  So :func:`build` keeps the last matches it built and hands out the
same object; a match whose values are already in the form Ryu would turn
them into skips the conversions; and a match keeps its wire form after its
first serialization.
"""

from __future__ import annotations

import functools
import ipaddress
import re

from ryu.lib.pack_utils import msg_pack_into
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import flow_templates

CACHED = 4096
_ADDRESSES = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa"})
_MACS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha"})
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")


class Match(parser.OFPMatch):
    """An OFPMatch never changed once built: its wire form is worked out once."""

    def serialize(self, buf, offset):
        wire = self.__dict__.get("_wire")
        if wire is None:
            scratch = bytearray()
            size = super().serialize(scratch, 0)
            wire = self._wire = bytes(scratch[:size])
        msg_pack_into("!%ds" % len(wire), buf, offset, wire)
        return len(wire)


def wire(match) -> bytes:
    """A match's ofp_match bytes (padded to 8)."""
    known = match.__dict__.get("_wire")
    if known is not None:
        return known
    scratch = bytearray()
    size = match.serialize(scratch, 0)
    return bytes(scratch[:size])


def build(**fields) -> parser.OFPMatch:
    try:
        return _build(tuple(fields.items()))
    except TypeError:   # a value that cannot be a key
        return parser.OFPMatch(**fields)


@functools.lru_cache(maxsize=CACHED)
def _build(fields: tuple) -> Match:
    if all(_in_user_form(name, value) for name, value in fields):
        # In the order Ryu sorts them in (by OXM field number).
        built = Match(_ordered_fields=sorted(fields, key=lambda f: ofp.oxm_from_user_header(f[0])))
        built._wire = flow_templates.match_wire(fields)
    else:
        built = Match(**dict(fields))
    # Its OpenFlow 1.0-style Flow (some forty fields, read only when a match
    # composed with that old API is serialized) was a third of the memory
    # of every flow mobility keeps; ours are composed from keywords.
    built._flow = None
    return built


def _in_user_form(name: str, value) -> bool:
    """Whether Ryu's conversions would give ``value`` back unchanged."""
    if name in _ADDRESSES:
        try:
            return isinstance(value, str) and str(ipaddress.IPv4Address(value)) == value
        except ValueError:
            return False
    if name in _MACS:
        return isinstance(value, str) and _MAC.fullmatch(value) is not None
    return type(value) is int and name in ("in_port", "eth_type", "ip_proto", "udp_src",
                                           "udp_dst", "tcp_src", "tcp_dst", "mpls_label",
                                           "arp_op")

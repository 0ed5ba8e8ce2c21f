"""OpenFlow matches built once, shared, and packed once.

Ryu's ``OFPMatch(**fields)`` converts every value three times on the way in
(through netaddr for addresses) and again on every serialization: some 80
µs to build and 25 µs to serialize a five-field match, most of a flow-mod's
cost.  The core builds the same matches again and again (a host's route on
each switch of its path, a tunnel's and a buffer's punt for one nCoA, a
binding's rewrites when the MN arrives), and nothing changes a match once it
is built.  So :func:`build` keeps the last matches it built and hands out the
same object, and a match whose values are already in the form Ryu would
turn them into is a :class:`Match`: its fields as given, in Ryu's order, and
its bytes packed from templates (:mod:`mpa_sdn.flow_templates`), with no Ryu
object made at all.  Any other goes through Ryu's conversions.
"""

from __future__ import annotations

import functools
import re

from ryu.lib.pack_utils import msg_pack_into
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import flow_templates

CACHED = 4096
_ADDRESSES = frozenset({"ipv4_src", "ipv4_dst", "arp_spa", "arp_tpa", "tun_ipv4_src",
                        "tun_ipv4_dst"})
_MACS = frozenset({"eth_src", "eth_dst", "arp_sha", "arp_tha"})
_INTEGERS = frozenset({"in_port", "eth_type", "ip_proto", "udp_src", "udp_dst", "tcp_src",
                       "tcp_dst", "mpls_label", "arp_op", "tunnel_id"})
_MAC = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
# As Ryu writes an address back: no leading zeros.
_OCTET = r"(?:25[0-5]|2[0-4]\d|1\d\d|[1-9]?\d)"
_IPV4 = re.compile(rf"{_OCTET}(?:\.{_OCTET}){{3}}")


class Match:
    """A match in Ryu's user form, read as Ryu's OFPMatch is read (``get``,
    ``items``, ``[name]``), and serialized as its bytes."""

    __slots__ = ("_fields2", "_wire")

    def __init__(self, fields: tuple):
        # In the order Ryu sorts them in (by OXM field number).
        self._fields2, self._wire = flow_templates.packed_match(fields)

    def get(self, name, default=None):
        for key, value in self._fields2:
            if key == name:
                return value
        return default

    def __getitem__(self, name):
        for key, value in self._fields2:
            if key == name:
                return value
        raise KeyError(name)

    def __contains__(self, name) -> bool:
        return any(key == name for key, _ in self._fields2)

    def items(self):
        return list(self._fields2)

    def serialize(self, buf, offset) -> int:
        msg_pack_into("!%ds" % len(self._wire), buf, offset, self._wire)
        return len(self._wire)

    def __eq__(self, other):
        return isinstance(other, Match) and other._wire == self._wire

    def __hash__(self):
        return hash(self._wire)

    def __repr__(self):
        return f"Match({dict(self._fields2)})"


def wire(match) -> bytes:
    """A match's ofp_match bytes (padded to 8)."""
    known = getattr(match, "_wire", None)
    if known is not None:
        return known
    scratch = bytearray()
    size = match.serialize(scratch, 0)
    return bytes(scratch[:size])


def build(**fields):
    try:
        return _build(tuple(fields.items()))
    except TypeError:   # a value that cannot be a key
        return parser.OFPMatch(**fields)


@functools.lru_cache(maxsize=CACHED)
def _build(fields: tuple):
    if all(_in_user_form(name, value) for name, value in fields):
        return Match(fields)
    built = parser.OFPMatch(**dict(fields))
    # Its OpenFlow 1.0-style Flow (some forty fields, read only when a match
    # composed with that old API is serialized) is not needed: ours are
    # composed from keywords.
    built._flow = None
    return built


def _in_user_form(name: str, value) -> bool:
    """Whether Ryu's conversions would give ``value`` back unchanged."""
    if name in _ADDRESSES:
        return type(value) is str and _IPV4.fullmatch(value) is not None
    if name in _MACS:
        return type(value) is str and _MAC.fullmatch(value) is not None
    return type(value) is int and name in _INTEGERS

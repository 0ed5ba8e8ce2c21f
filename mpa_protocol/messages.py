"""The MPA signalling codec: one message format for both channels.

A message is one JSON object, UTF-8, at most ``max_message_bytes`` long: the
body of a REST request or answer, or the payload of one UDP datagram to a
network's gateway (see docs/signalling.md).  Every message names its version
``v`` and its ``type``; each type has a fixed set of fields, all required
unless listed as optional, and nothing else.  Decoding either returns a
:class:`Message` whose fields have the right types and shapes, or raises
:class:`SignallingError` with a code from :data:`ERRORS`: the handler never
sees a half-valid message.

Messages after pre-authentication carry the MPA-SA's id ``sa``, a sequence
number ``seq`` and ``mac``: HMAC-SHA256, under the key of the message's
purpose, over the message's canonical form (every field but ``mac``, keys
sorted, no whitespace, ASCII only; see :func:`canonical`).
"""

from __future__ import annotations

import hashlib
import ipaddress
import json
import re
from dataclasses import dataclass
from typing import Any, Callable

from mpa_protocol import keys

VERSION = 1
SIGNALLING_PORT = 7664  # the default UDP port of the in-band channel (mpa.signalling_port)
# The REST channel: the MN's message kinds each endpoint under
# /mpa/v1/networks/{id}/ takes (discover has /mpa/v1/discover).
SIGNAL_ENDPOINTS = {
    "config": ("config-request",),
    "release": ("release",),
    "resume": ("resume",),
    "tunnel": ("tunnel-request", "tunnel-release"),
    "binding": ("binding-update",),
    "handover": ("handover",),
    "instructions": ("instructions",),
}
MAX_SEQ = 2**32 - 1
# What an MN (or its policy engine) says about a handover (RFC 6252 §6.3):
# step 4 begins, step 5 is done (it is attached to the target), or it is off;
# or (§7.6.2) its active interface was lost while another one stood by.
HANDOVER_PHASES = ("pre-switch", "arrived", "cancel", "link-lost")
# How the target gets the MN's traffic while it switches (§7.6.1): the ARs
# buffer it, or the correspondents' edges send it to both networks.
BUFFER, BICAST = "buffer", "bicast"
HANDOVER_MODES = (BUFFER, BICAST)
# The phase a handover-state answer reports (the controller's side of steps 4
# to 6): pre-switching until the MN is seen in the target, switching, flushing
# the buffer to it, draining late packets, completed; or switched-back, when
# the MN was late or turned up elsewhere (docs/signalling.md).
PRE_SWITCHING, SWITCHING, FLUSHING, DRAINING = "pre-switching", "switching", "flushing", "draining"
COMPLETED, SWITCHED_BACK = "completed", "switched-back"
HANDOVER_STATES = (PRE_SWITCHING, SWITCHING, FLUSHING, DRAINING, COMPLETED, SWITCHED_BACK)
# link-lost: the last frames the lost interface received, as digests.
DELIVERED_MAX = 16
DIGEST_BYTES = 8
MAX_REPORTS = 8      # instructions: reports on earlier instructions, per message
MAX_WAIT_S = 30      # instructions: the longest a question may ask to be held

# Error codes, with the HTTP status the REST channel answers them with.
ERRORS = {
    "malformed": 400,            # not JSON, wrong fields or field types
    "oversized": 413,
    "unsupported-version": 400,
    "unknown-type": 400,
    "unknown-network": 404,
    "wrong-network": 409,        # meant for another network than the one it reached
    "not-served": 404,           # the network has no AA/CA (a correspondent network)
    "unknown-sa": 403,
    "bad-mac": 403,
    "sa-expired": 403,
    "wrong-state": 409,          # not allowed in the SA's current state
    "mac-in-use": 409,           # the MN's MAC has another identity's MPA-SA here
    "mac-mismatch": 409,         # the MPA-SA is bound to another MAC than the message names
    "replay": 409,               # a sequence number already used
    "outside-window": 409,       # a sequence number older than the replay window
    "busy": 503,                 # too many requests waiting
    "pool-exhausted": 503,
    "address-pending": 503,      # duplicate address detection still running
    "tunnel-limit": 409,         # the MN holds as many tunnels as it may
    "binding-refused": 403,      # not this MN's home address, or a care-of it does not hold
    "too-soon": 409,             # a handover out of a network the MN reached < its dwell_s ago
    "internal-error": 500,       # a bug in the controller; see its log
}

# The project's identifiers, MACs and NAIs, checked the same way everywhere
# (topology and credentials files, messages, the command lines).
ID_PATTERN = r"[A-Za-z][A-Za-z0-9_.-]{0,31}"
ID_RE = re.compile(ID_PATTERN)
MAC_RE = re.compile(r"[0-9a-f]{2}(:[0-9a-f]{2}){5}")
_HEX = re.compile(r"[0-9a-f]+")
_NAI = re.compile(r"[^@\s]{1,200}@[^@\s]{1,200}")


class SignallingError(Exception):
    """A message was refused; ``code`` is one of :data:`ERRORS`."""

    def __init__(self, code: str, message: str, **extra):
        assert code in ERRORS, code
        super().__init__(message)
        self.code = code
        self.message = message
        self.extra = extra

    @property
    def http_status(self) -> int:
        return ERRORS[self.code]


# -- field shapes --------------------------------------------------------------

def _hex(nbytes: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and len(v) == 2 * nbytes and bool(_HEX.fullmatch(v))


def _int(lo: int, hi: int) -> Callable[[Any], bool]:
    return lambda v: type(v) is int and lo <= v <= hi


def ipv4_ok(v: Any) -> bool:
    """An IPv4 address, written as it prints (no leading zeros, no spaces)."""
    try:
        return isinstance(v, str) and str(ipaddress.IPv4Address(v)) == v
    except ValueError:
        return False


def _text(limit: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and 0 < len(v) <= limit and v.isprintable()


def _list_of(check, limit: int) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, list) and len(v) <= limit and all(check(x) for x in v)


def _one_of(*values) -> Callable[[Any], bool]:
    return lambda v: isinstance(v, str) and v in values


def network_ok(v: Any) -> bool:
    """A network's id (or a PoA's): the topology's ids."""
    return isinstance(v, str) and bool(ID_RE.fullmatch(v))


def nai_ok(v: Any) -> bool:
    # Printable and encodable: the identity goes into key derivation as UTF-8.
    if not (isinstance(v, str) and len(v) <= 253 and v.isprintable() and _NAI.fullmatch(v)):
        return False
    try:
        v.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from \ud800-style escapes
        return False
    return True


_mac = lambda v: isinstance(v, str) and bool(MAC_RE.fullmatch(v))  # noqa: E731
_tag = _hex(32)
_sa_id = _hex(16)
_seq = _int(1, MAX_SEQ)
_seconds = _int(0, 2**31 - 1)
_true = lambda v: v is True  # noqa: E731
_anything = lambda v: True  # noqa: E731  (candidate lists are built by us, not parsed)

def _report(v: Any) -> bool:
    """An ``instructions`` report: the MN's outcome of one instruction."""
    if not isinstance(v, dict) or set(v) - {"id", "ok", "code", "detail"}:
        return False
    if not (_int(1, 2**53)(v.get("id")) and type(v.get("ok")) is bool):
        return False
    return all(_text(limit)(v[k]) for k, limit in (("code", 32), ("detail", 300)) if k in v)


# The proactive handover tunnel's encapsulations (RFC 6252 §7.4): an MPLS
# label-switched path inside one controller's network, or VXLAN between the
# nAR and the MN itself (IANA's port 4789; 24-bit keys, 0 unused).
ENCAPSULATIONS = ("mpls", "vxlan")
MAX_CORRESPONDENTS = 64    # listed in a binding-ack: it stays one datagram below 1,400 bytes
VXLAN_PORT = 4789
VXLAN_KEY_MAX = (1 << 24) - 1

_AUTHENTICATED = {"network": network_ok, "sa": _sa_id, "seq": _seq, "mac": _tag}
# The MN's requests name the MAC it uses in the network: the SA's first binds
# it (PANA names none; mpa_sdn.aa), every later one must name the same.
_SIGNED = {**_AUTHENTICATED, "mn_mac": _mac}

# type -> (required fields, optional fields), each field -> its check.
SCHEMAS: dict[str, tuple[dict, dict]] = {
    # MN -> AA/CA
    # REST: the MN names its network, or gives its current address.
    "discover": ({}, {"network": network_ok, "address": ipv4_ok}),
    "config-request": (_SIGNED, {}),
    "release": (_SIGNED, {"scope": _one_of("lease", "all")}),
    "resume": (_SIGNED, {}),
    # MN -> AR (RFC 6252 §6.3 steps 2-5): the proactive handover tunnel, the
    # binding update through it, and the handover's phases.
    # ``outer``: the MN's current address (its oCoA), where an MN-terminated
    # tunnel from another domain's nAR ends (RFC 6252 §7.4).
    "tunnel-request": (_SIGNED, {"lifetime": _int(1, 2**31 - 1), "outer": ipv4_ok}),
    "tunnel-release": (_SIGNED, {}),
    # ``rewriting``: the MN rewrites for this care-of already, as the binding-ack
    # that said ``pending`` asked (docs/inter-domain.md).
    "binding-update": ({**_SIGNED, "home_address": ipv4_ok, "care_of": ipv4_ok},
                       {"lifetime": _int(0, 2**31 - 1), "standby": _true,
                        "rewriting": _true, "bicast": _true, "bicast_to": ipv4_ok}),
    "handover": ({**_SIGNED, "phase": _one_of(*HANDOVER_PHASES)},
                 {"buffer_old": _true, "mode": _one_of(*HANDOVER_MODES),
                  "delivered": _list_of(_hex(DIGEST_BYTES), DELIVERED_MAX)}),
    # MN -> controller: what a policy engine asked of it, and how that went.
    "instructions": (_SIGNED, {"wait": _int(0, MAX_WAIT_S),
                                      "reports": _list_of(_report, MAX_REPORTS)}),
    # AA/CA -> MN
    "neighbours": ({"network": network_ok, "candidates": _anything},
                   {"truncated": lambda v: v is True}),
    "config": ({**_AUTHENTICATED, "address": ipv4_ok, "prefix_len": _int(0, 32),
                "router": ipv4_ok, "gateway_mac": _mac, "dns": _list_of(ipv4_ok, 4),
                "lease_time": _seconds}, {}),
    "released": (_AUTHENTICATED, {"scope": _one_of("lease", "all")}),
    "resumed": ({**_AUTHENTICATED, "state": _text(32)}, {}),
    # An MPLS tunnel (one controller owns both ends) names the PoA it reaches;
    # an MN-terminated VXLAN tunnel (the nAR's controller does not control the
    # MN's PoA) gives what the MN needs to end it: the key (VNI), the nAR's
    # address, the outer address it sends to and the router's MAC.
    "tunnel": ({**_AUTHENTICATED, "address": ipv4_ok, "lifetime": _seconds},
               {"poa": network_ok, "encapsulation": _one_of(*ENCAPSULATIONS),
                "key": _int(1, VXLAN_KEY_MAX), "endpoint": ipv4_ok, "outer": ipv4_ok,
                "udp_port": _int(1, 65535), "router_mac": _mac}),
    "tunnel-released": (_AUTHENTICATED, {}),
    # A care-of in another domain: the home domain rewrites at the
    # correspondents' edges only, and the MN restores its home address itself
    # for traffic with ``correspondents`` (docs/inter-domain.md).
    "binding-ack": ({**_AUTHENTICATED, "home_address": ipv4_ok, "care_of": ipv4_ok,
                     "lifetime": _seconds},
                    {"standby": _true, "rewrite_at_mn": _true,
                     "correspondents": _list_of(ipv4_ok, MAX_CORRESPONDENTS),
                     "pending": _true, "bicast_to": ipv4_ok}),
    "handover-state": ({**_AUTHENTICATED, "phase": _text(32)},
                       {"buffered": _int(0, 2**31 - 1)}),
    "instruction-list": ({**_AUTHENTICATED, "pending": _anything}, {}),
    "error": ({"code": _one_of(*ERRORS), "message": _text(300)},
              {"network": network_ok, "in_reply_to": _text(32), "seq": _seq,
               "retry_after": _seconds}),
}
REQUESTS = ("discover", "config-request", "release", "resume",
            "tunnel-request", "tunnel-release", "binding-update", "handover", "instructions")
# Which derived key authenticates a message, by type: the MN-AR key for
# what the access router does (tunnel, buffering, switching), the
# signalling key for the mobility binding and resume.
PURPOSE = {"config-request": "mn-ca", "config": "mn-ca", "release": "mn-ca",
           "released": "mn-ca", "resume": "signalling", "resumed": "signalling",
           "tunnel-request": "mn-ar", "tunnel-release": "mn-ar", "tunnel": "mn-ar",
           "tunnel-released": "mn-ar", "handover": "mn-ar", "handover-state": "mn-ar",
           "binding-update": "signalling", "binding-ack": "signalling",
           "instructions": "signalling", "instruction-list": "signalling"}


@dataclass(frozen=True)
class Message:
    type: str
    fields: dict

    def __getitem__(self, name: str):
        return self.fields[name]

    def get(self, name: str, default=None):
        return self.fields.get(name, default)


def frame_digest(frame: bytes) -> str | None:
    """A ``delivered`` digest: the first DIGEST_BYTES of SHA-256 over the IPv4
    packet an Ethernet frame carries (its header's total length, so no
    padding), in hex; None for anything else.  The MN takes it over the
    frames its lost interface received, the controller over the copies it
    made of them: the same bytes on both sides."""
    if len(frame) < 34 or frame[12:14] != b"\x08\x00" or frame[14] >> 4 != 4:
        return None
    total = int.from_bytes(frame[16:18], "big")
    if total < 20 or 14 + total > len(frame):
        return None
    return hashlib.sha256(frame[14:14 + total]).digest()[:DIGEST_BYTES].hex()


def canonical(fields: dict, keep_mac: bool = False) -> bytes:
    body = {k: v for k, v in fields.items() if keep_mac or k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


def encode(fields: dict) -> bytes:
    """A message's wire form (its canonical form: compact, deterministic)."""
    return canonical(fields, keep_mac=True)


def _reject_constant(name: str):
    raise ValueError(f"{name} is not JSON")


def decode(data: bytes, max_bytes: int, *, expect: tuple[str, ...] = REQUESTS) -> Message:
    """Parse and check one message; ``expect`` limits the types accepted."""
    if len(data) > max_bytes:
        raise SignallingError("oversized", f"{len(data)} bytes; at most {max_bytes}")
    try:
        raw = json.loads(bytes(data).decode("utf-8"), parse_constant=_reject_constant)
    except (UnicodeDecodeError, ValueError, RecursionError) as exc:
        raise SignallingError("malformed", f"not a JSON message: {exc}") from None
    if not isinstance(raw, dict):
        raise SignallingError("malformed", "a message is a JSON object")
    if raw.get("v") != VERSION or type(raw.get("v")) is not int:
        raise SignallingError("unsupported-version", f"version {raw.get('v')!r}; this is {VERSION}")
    kind = raw.get("type")
    if not isinstance(kind, str) or kind not in expect:
        raise SignallingError("unknown-type", f"type {ascii(str(kind)[:32])} is not one of "
                              + ", ".join(expect))
    required, optional = SCHEMAS[kind]
    fields = {k: v for k, v in raw.items() if k not in ("v", "type")}
    missing = sorted(set(required) - set(fields))
    unknown = sorted(set(fields) - set(required) - set(optional))
    if missing or unknown:
        # Field names are the sender's: shown escaped, never as they came.
        problems = ([f"missing {', '.join(missing)}"] if missing else []) + \
                   ([f"unknown {', '.join(ascii(k)[:34] for k in unknown[:5])}"]
                    if unknown else [])
        raise SignallingError("malformed", f"{kind}: {'; '.join(problems)}")
    for name, value in fields.items():
        check = required.get(name) or optional[name]
        if not check(value):
            raise SignallingError("malformed", f"{kind}: field {name} is not valid")
    return Message(kind, {"v": VERSION, "type": kind, **fields})


def build(kind: str, **fields) -> dict:
    """A message's fields (``v`` and ``type`` first), checked like decoded ones."""
    message = {"v": VERSION, "type": kind, **fields}
    required, optional = SCHEMAS[kind]
    wrong = [k for k, v in fields.items() if not (required.get(k) or optional.get(k, None)) or
             not (required.get(k) or optional[k])(v)]
    missing = set(required) - set(fields) - {"mac"}
    if wrong or missing:
        raise ValueError(f"{kind}: bad fields {sorted(wrong)}, missing {sorted(missing)}")
    return message


def error(code: str, message: str, **extra) -> dict:
    return build("error", code=code, message=message[:300], **extra)


def sign(fields: dict, key: bytes) -> dict:
    return {**fields, "mac": keys.mac(key, canonical(fields)).hex()}


def mac_ok(message: Message | dict, key: bytes) -> bool:
    fields = message.fields if isinstance(message, Message) else message
    try:
        tag = bytes.fromhex(fields["mac"])
    except (KeyError, ValueError, TypeError):
        return False
    return keys.verify(key, canonical(fields), tag)

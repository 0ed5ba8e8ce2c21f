"""The MN's side of the signalling: messages built, answers checked.

No I/O here: a :class:`Channel` carries the bytes.  The MN keeps, per
candidate target network, the MPA-SA it established (:class:`SaState`):
its id, the derived keys and the next sequence number.  Every answer to an
authenticated request must carry the request's sequence number and a valid
HMAC under the same key, or it is not believed.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from mpa_protocol import keys, messages
from mpa_protocol.messages import SignallingError

ANSWERS = ("neighbours", "config", "released", "resumed",
           "tunnel", "tunnel-released", "binding-ack", "handover-state", "instruction-list",
           "error")


class ProtocolError(Exception):
    """The other side answered with an error, or with something not to be believed."""

    def __init__(self, code: str, message: str, answer: dict | None = None):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.answer = answer or {}


@dataclass
class SaState:
    network: str
    domain: str
    identity: str
    mn_mac: str
    sa: str
    keys: keys.SaKeys = field(repr=False)
    lifetime: int
    next_seq: int = 1
    config: dict | None = None
    # The PANA session the SA came from (mpa_mn.pana_client): its id, the
    # AA's address, PANA_AUTH_KEY (hex), the integrity algorithm, the Key-Id
    # and the next sequence number of the MN's own requests (Ping, Termination).
    pana: dict | None = field(default=None, repr=False)

    def to_record(self) -> dict:
        return {**{k: v for k, v in self.__dict__.items() if k != "keys"},
                "keys": self.keys.as_hex()}

    @classmethod
    def from_record(cls, record: dict) -> "SaState":
        return cls(**{**record, "keys": keys.SaKeys.from_hex(record["keys"])})


def decode_answer(data: bytes, max_bytes: int = 65536) -> messages.Message:
    """An answer, or ProtocolError: for an error answer, or one not to be read."""
    try:
        msg = messages.decode(data, max_bytes, expect=ANSWERS)
    except SignallingError as exc:
        raise ProtocolError(exc.code, f"unreadable answer: {exc.message}") from None
    if msg.type == "error":
        raise ProtocolError(msg["code"], msg["message"], msg.fields)
    return msg


def reserve(state: SaState) -> int:
    """The next sequence number, taken (the state moves on)."""
    seq = state.next_seq
    state.next_seq += 1
    return seq


def signed(state: SaState, kind: str, seq: int, **fields) -> bytes:
    """An authenticated request with a sequence number :func:`reserve` gave;
    it names the MAC the MN uses in the network (the SA's first binds it)."""
    message = messages.build(kind, network=state.network, sa=state.sa, seq=seq,
                             mn_mac=state.mn_mac, **fields)
    key = state.keys.for_purpose(messages.PURPOSE[kind])
    return messages.encode(messages.sign(message, key))


def request(state: SaState, kind: str, **fields) -> tuple[bytes, int]:
    """An authenticated request and its sequence number (the state moves on)."""
    seq = reserve(state)
    return signed(state, kind, seq, **fields), seq


def check_answer(state: SaState, data: bytes, seq: int, expected: str,
                 echo: dict | None = None) -> dict:
    """The answer's fields, if it is ``expected`` for this SA, network and ``seq``,
    authenticated, and says back what was asked (``echo``: field -> value)."""
    msg = decode_answer(data)
    if (msg.type != expected or msg["seq"] != seq or msg["sa"] != state.sa
            or msg["network"] != state.network):
        raise ProtocolError("unexpected", f"expected {expected} for seq {seq} in "
                            f"{state.network}, got {msg.type} for seq {msg.get('seq')} in "
                            f"{msg.get('network')}")
    if not messages.mac_ok(msg, state.keys.for_purpose(messages.PURPOSE[expected])):
        raise ProtocolError("bad-mac", f"the {expected} answer is not authenticated")
    for name, value in (echo or {}).items():
        if msg[name] != value:
            raise ProtocolError("unexpected", f"the {expected} answer has {name} "
                                f"{msg[name]}, not {value} as asked")
    return msg.fields


# -- the proactive handover tunnel (RFC 6252 §6.3 step 2, §7.4) --------------------

MPLS, VXLAN = messages.ENCAPSULATIONS
# What a VXLAN tunnel answer gives the MN to end the tunnel with.
VXLAN_FIELDS = ("key", "endpoint", "outer", "udp_port", "router_mac")


def tunnel_described(answer: dict, outer: str) -> dict:
    """What a checked ``tunnel`` answer says the tunnel is: ``{"encapsulation":
    "mpls", "poa"}`` (a path inside the controller's network to the MN's
    PoA), or ``{"encapsulation": "vxlan"}`` with :data:`VXLAN_FIELDS` (a tunnel
    the MN ends itself, at ``outer``, the address it asked from).  An answer
    that is neither, or says both, is ``malformed``; one ending elsewhere than
    ``outer`` is ``unexpected``."""
    encapsulation = answer.get("encapsulation", MPLS)
    given = [name for name in VXLAN_FIELDS if name in answer]
    if encapsulation == MPLS:
        if "poa" not in answer:
            raise ProtocolError("malformed", "the tunnel answer names no poa and is no VXLAN "
                                "tunnel", answer)
        if given:
            raise ProtocolError("malformed", f"the MPLS tunnel answer has VXLAN fields "
                                f"({', '.join(given)})", answer)
        return {"encapsulation": MPLS, "poa": answer["poa"]}
    missing = [name for name in VXLAN_FIELDS if name not in answer]
    if missing:
        raise ProtocolError("malformed", f"the VXLAN tunnel answer has no "
                            f"{', '.join(missing)}", answer)
    if "poa" in answer:
        raise ProtocolError("malformed", "the VXLAN tunnel answer names a poa: the tunnel "
                            "ends at the MN", answer)
    if answer["outer"] != outer:
        raise ProtocolError("unexpected", f"the tunnel answer has outer {answer['outer']}, "
                            f"not {outer} as asked", answer)
    return {"encapsulation": VXLAN, **{name: answer[name] for name in VXLAN_FIELDS}}


# -- discovery (RFC 6252 §7.1): unauthenticated by nature --------------------------
#
# Nothing in a neighbours answer is proven: a forged candidate can only send
# the MN to an AA that cannot prove it holds the MSK the MN's own AAA server
# gave it (PANA's AUTH, mpa_mn.pana_client).

DEFAULT_SIGNALLING_PORT = messages.SIGNALLING_PORT


def discover(address: str | None = None, network: str | None = None) -> bytes:
    """A discover message: the MN names its network, or gives its current address."""
    fields = {k: v for k, v in (("network", network), ("address", address)) if v is not None}
    return messages.encode(messages.build("discover", **fields))


def _candidate_problem(candidate) -> str | None:
    if not isinstance(candidate, dict):
        return "is not an object"
    for name in ("network", "served_by"):
        if not messages.network_ok(candidate.get(name)):
            return f"has no valid {name}"
    aa = candidate.get("aa")
    if not isinstance(aa, dict) or not messages.ipv4_ok(aa.get("address")):
        return "has no valid aa.address"
    port = aa.get("port", DEFAULT_SIGNALLING_PORT)
    if type(port) is not int or not 1 <= port <= 65535:
        return "has no valid aa.port"
    return None


def check_neighbours(data: bytes) -> tuple[str, list[dict]]:
    """The network the MN is in and its candidates, each with what the MN relies on."""
    msg = decode_answer(data)
    if msg.type != "neighbours":
        raise ProtocolError("unexpected", f"expected neighbours, got {msg.type}")
    candidates = msg["candidates"]
    if not isinstance(candidates, list):
        raise ProtocolError("malformed", "neighbours: candidates is not a list")
    for index, candidate in enumerate(candidates):
        problem = _candidate_problem(candidate)
        if problem:
            raise ProtocolError("malformed", f"neighbours: candidate {index} {problem}")
    return msg["network"], candidates


def retry_hint(data: bytes) -> tuple[str | None, int | None]:
    """An error answer's code and ``retry_after``; (None, None) for anything else."""
    try:
        msg = messages.decode(data, len(data), expect=("error",))
    except SignallingError:
        return None, None
    return msg["code"], msg.get("retry_after")

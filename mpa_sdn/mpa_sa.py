"""An MPA-SA: its states, its record in the state file and its replay window.

An MPA-SA moves through the states of RFC 6252 Appendix C.2:

    pre-authenticated  keys in place, the MN still elsewhere
    authorized         the MN attached to the SA's network
    held               the MN left; kept ``sa_hold_s`` so that a return
                       needs only proof of possession (a ``resume``)
    expired            lifetime or hold over; kept a while to say so, then gone

Every message under an SA carries a sequence number, accepted once within a
window of ``replay_window`` numbers below the highest seen (a bitmap); the
latest answers are kept, so a retransmission (same number, same MAC) gets
the same answer.  The Authentication Agent (:mod:`mpa_sdn.aa`) keeps the SAs,
changes their states and counts what the window refuses.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field

from mpa_protocol import keys, messages

PRE_AUTHENTICATED = "pre-authenticated"
AUTHORIZED = "authorized"
HELD = "held"
EXPIRED = "expired"
STATES = (PRE_AUTHENTICATED, AUTHORIZED, HELD, EXPIRED)
EXPIRED_KEEP_S = 300.0   # an expired SA still answers "sa-expired" this long
KIND = "sa"              # the state file's kind of record
RECENT_ANSWERS = 8       # answers kept per SA for retransmissions
# Of those, the newest written to the state file.  The record is written on
# every message, and the answers were most of it (about 2.4 of 3 KB with
# eight); a retransmission across a restart is of what the MN asked last
# (it sends the next request once the last is answered), or of a question
# held beside it (an instructions question), so two are what a restart needs.
PERSISTED_ANSWERS = 2

# What the replay window makes of a message's sequence number.
NEW = "new"
OUTSIDE_WINDOW = "outside-window"
REPLAY = "replay"
RETRANSMISSION = "retransmission"


@dataclass
class SecurityAssociation:
    """One MN's MPA-SA with one network's AA: its keys, its state and the
    sequence numbers it has accepted."""

    id: str
    identity: str
    domain: str
    network: str
    mn_mac: str | None          # bound by the first authenticated message (mpa_sdn.aa)
    keys: keys.SaKeys = field(repr=False)
    state: str
    created: float
    expires: float              # end of its lifetime (wall clock)
    source: str                 # the address it was authenticated from
    held_until: float | None = None
    expired_at: float | None = None
    high: int = 0               # the highest sequence number accepted
    seen: int = 0               # bitmap of accepted numbers below ``high``
    # The kept answers, newest last: (seq, digest, the answer's JSON text, at).
    # Text, not the answer's dict: at 10,000 MNs the dicts were about 3 KiB
    # per MN; a retransmission, which needs the dict again, is rare.
    recent: list = field(default_factory=list)
    proven: bool = False        # its MAC was seen as the source of its messages, on our link
    seen_mac: str | None = None  # the source MAC of its PANA exchange, on a link of ours
    # The PANA session it came from (mpa_sdn.pana_agent): session id, PANA_AUTH_KEY
    # (hex), integrity algorithm, Key-Id, and the PaC's last request's sequence
    # number and answer (Ping, Termination: mpa_sdn.pana_open_session).
    pana: dict | None = field(default=None, repr=False)

    def to_record(self) -> dict:
        return {"id": self.id, "identity": self.identity, "domain": self.domain,
                "network": self.network, "mn_mac": self.mn_mac, "keys": self.keys.as_hex(),
                "state": self.state, "created": self.created, "expires": self.expires,
                "source": self.source, "held_until": self.held_until,
                "expired_at": self.expired_at, "high": self.high, "seen": self.seen,
                "recent": [{"seq": seq, "digest": digest, "answer": text, "at": at}
                           for seq, digest, text, at in self.recent[-PERSISTED_ANSWERS:]],
                "proven": self.proven,
                "seen_mac": self.seen_mac, "pana": self.pana}

    @classmethod
    def from_record(cls, record: dict) -> "SecurityAssociation":
        sa = cls(**{**record, "keys": keys.SaKeys.from_hex(record["keys"])})
        if (sa.state not in STATES or type(sa.high) is not int or type(sa.seen) is not int
                or not (sa.pana is None or isinstance(sa.pana, dict)
                        and type(sa.pana.get("session")) is int)
                or not isinstance(sa.recent, list)
                or not all(isinstance(r, dict) and {"seq", "digest", "answer", "at"} <= set(r)
                           and isinstance(r["answer"], (str, dict)) for r in sa.recent)):
            raise ValueError("bad state or sequence fields")
        # A file written before answers were kept as text holds their dicts.
        sa.recent = [(r["seq"], r["digest"], r["answer"] if isinstance(r["answer"], str)
                      else messages.encode(r["answer"]).decode(), r["at"]) for r in sa.recent]
        return sa

    def lapsed(self, now: float) -> bool:
        """Its lifetime, or its hold, is over (it may not be marked expired yet)."""
        return self.expires <= now or (self.state == HELD and self.held_until is not None
                                       and self.held_until <= now)

    def view(self, now: float) -> dict:
        return {"sa": self.id, "identity": self.identity, "domain": self.domain,
                "network": self.network, "mn_mac": self.mn_mac, "state": self.state,
                "expires_in": max(0, round(self.expires - now)),
                "held_for": (max(0, round(self.held_until - now))
                             if self.state == HELD and self.held_until else None),
                "last_seq": self.high}

    # -- the replay window ------------------------------------------------------

    def window_verdict(self, seq: int, digest: str, now: float, window: int,
                       retransmit_s: float) -> tuple[str, dict | None]:
        """What a message with this sequence number and MAC is to the SA:
        NEW, OUTSIDE_WINDOW (older than the window), REPLAY (used), or
        RETRANSMISSION (used, with the same MAC, within ``retransmit_s`` of its
        answer, which comes with it).  Changes nothing: see :meth:`accept`."""
        if seq <= self.high - window:
            return OUTSIDE_WINDOW, None
        for kept_seq, kept_digest, text, at in self.recent:
            if kept_seq == seq:
                if kept_digest == digest and now - at <= retransmit_s:
                    return RETRANSMISSION, json.loads(text)
                break  # used, and not a retransmission: a replay
        if seq == self.high or (seq < self.high and self.seen >> (self.high - seq) & 1):
            return REPLAY, None
        return NEW, None

    def accept(self, seq: int, digest: str, answer: dict, now: float, window: int) -> None:
        """Mark a sequence number used and keep its answer.

        An answer may come late (a configuration DAD held back) after newer
        numbers were used: its number is marked if still in the window, and
        kept answers stay in the order they were given.
        """
        if seq > self.high:
            shift = seq - self.high
            self.seen = ((self.seen << shift) | (1 << shift)) & ((1 << window) - 1) \
                if shift < window else 0
            self.high = seq
        elif 0 < self.high - seq < window:
            self.seen |= 1 << (self.high - seq)
        self.recent = [r for r in self.recent if r[0] != seq][-(RECENT_ANSWERS - 1):] + \
            [(seq, digest, messages.encode(answer).decode(), now)]

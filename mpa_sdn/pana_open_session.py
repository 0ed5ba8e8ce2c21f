"""An established PANA session: what the MN may still ask of it once its
MPA-SA exists (RFC 5191 §4.4, §4.5), answered under PANA_AUTH_KEY from the
session's state in the SA (the state file keeps it across restarts).

- **Ping**: a PNR with the P flag gets a PNA; nothing else changes.
- **Termination**: a PTR gets a PTA, and the MPA-SA ends (``terminated``).

Each carries the MN's own sequence numbers: the same request again gets the
same answer, an older one is a replay.  A PTR sent again after its session
ended (its PTA lost) gets its PTA again for ``mpa.pana_session_s``.
"""

from __future__ import annotations

import logging
from typing import Callable

from mpa_protocol import pana, pana_security
from mpa_protocol.pana import PanaMessage
from mpa_sdn.mpa_sa import EXPIRED
from mpa_sdn.pana_session import PanaReply, newer

LOG = logging.getLogger("mpa_sdn.pana")


def drop(counters, reason: str, origin, why: str) -> list:
    """A PANA message dropped in silence (RFC 5191 §5), counted by reason."""
    counters[f"pana_dropped_{reason}"] += 1
    LOG.info("PANA message from %s dropped (%s): %s", origin.source, reason, why)
    return []


class OpenSessions:
    """``save`` writes an SA whose PANA state changed; ``terminated(sa,
    cause, now)`` ends one and returns what to send."""

    def __init__(self, settings, counters, save: Callable, terminated: Callable):
        self.settings = settings
        self.counters = counters
        self.save = save
        self.terminated = terminated
        # The PTA of each session the MN terminated, by the PTR's bytes: kept
        # pana_session_s, at most max_pana_sessions, the oldest going first
        # (dicts keep their order).
        self._ended: dict[bytes, tuple[float, bytes]] = {}

    def request(self, sa, msg: PanaMessage, data: bytes, origin, now: float) -> list:
        state = sa.pana
        if not msg.is_request or msg.msg_type not in (pana.NOTIFICATION, pana.TERMINATION) \
                or (msg.msg_type == pana.NOTIFICATION and not msg.has(pana.FLAG_P)):
            return drop(self.counters, "unexpected", origin,
                        f"{msg.name} on an established session")
        auth_key = bytes.fromhex(state["auth_key"])
        if msg.auth is None or not pana_security.verify_auth(data, auth_key, state["integrity"]):
            return drop(self.counters, "bad_auth", origin, f"{msg.name}: AUTH does not verify")
        if sa.state == EXPIRED or sa.lapsed(now):
            # Its lifetime ended the PANA session too (RFC 5191 §4.4): the AA
            # keeps the SA only to tell the MN it expired.
            return drop(self.counters, "expired_session", origin,
                        f"{msg.name}: the MPA-SA expired")
        last = state.get("pac_seq")
        if last is not None and msg.seq == last and state.get("pac_answer"):
            self.counters["pana_request_retransmission"] += 1
            return [PanaReply(origin, bytes.fromhex(state["pac_answer"]))]
        if last is not None and not newer(msg.seq, last):
            return drop(self.counters, "replay", origin,
                        f"{msg.name} with sequence number {msg.seq} again")
        answer = pana_security.sign(PanaMessage(msg.msg_type, msg.flags & ~pana.FLAG_R,
                                                state["session"], msg.seq),
                                    auth_key, state["integrity"])
        state["pac_seq"], state["pac_answer"] = msg.seq, answer.hex()
        if msg.msg_type == pana.NOTIFICATION:
            # Liveness only (RFC 5191 §4.4): the SA's state is the AA's business.
            self.counters["pana_ping_answered"] += 1
            self.save(sa)
            return [PanaReply(origin, answer)]
        self.counters["pana_terminated"] += 1
        LOG.info("PANA session %08x of MPA-SA sa=%s terminated by the MN (cause %s)",
                 state["session"], sa.id[:8], msg.termination_cause)
        self._ended = {k: v for k, v in self._ended.items() if v[0] > now}
        while len(self._ended) >= self.settings.max_pana_sessions:
            del self._ended[next(iter(self._ended))]
        self._ended[data] = (now + self.settings.pana_session_s, answer)
        return self.terminated(sa, msg.termination_cause, now) + [PanaReply(origin, answer)]

    def terminated_again(self, data: bytes, origin, now: float) -> list:
        """The PTA again for a PTR seen again after its session ended."""
        ended = self._ended.get(data)
        if ended is None or ended[0] <= now:
            return []
        self.counters["pana_request_retransmission"] += 1
        return [PanaReply(origin, ended[1])]

"""Pre-authentication as the AA/CA service holds it: the PANA agent of every
network (:mod:`mpa_sdn.pana_agent`) and the domains' RADIUS clients
(:mod:`mpa_sdn.aaa`), wired to the AA that keeps the MPA-SAs, and what the
rest of the core hears of it (a ``preauthentication`` event per session).

The service hands it PANA datagrams from MNs, RADIUS datagrams from the
servers, and time; it returns what to send (PanaReply, RADIUS datagrams).
Times are wall clock, as the AA's.
"""

from __future__ import annotations

import logging
from typing import Callable

from mpa_protocol import pana
from mpa_sdn.mobility import Refused
from mpa_sdn.pana_agent import PanaAgent

LOG = logging.getLogger("mpa_sdn.preauthentication")


class Preauthentication:
    """``release_lease(sa, wall)``: the SA's lease back (Refused while a
    handover goes through its tunnel); ``events``: the core's event log."""

    def __init__(self, topology, settings, counters, entropy: Callable[[int], bytes], aa, aaa,
                 release_lease: Callable, events=None):
        self.counters = counters
        self.aa = aa
        self.aaa = aaa
        self.release_lease = release_lease
        self.events = events
        self.paa = PanaAgent(topology, settings, counters, entropy, aaa,
                             establish=aa.establish, by_session=aa.by_session,
                             terminated=self._terminated, save=aa.save,
                             identity_limit=aa.identity_limit, source_limit=aa.source_limit,
                             rand=lambda: int.from_bytes(entropy(4), "big") / 2**32,
                             ended=self._ended)

    def pana(self, data: bytes, origin, network: str, port: int, wall: float) -> list:
        return self.paa.datagram(data, origin, network, port, wall)

    def radius(self, data: bytes, source: tuple, wall: float) -> list:
        """A datagram from a RADIUS server: the answer to a session's request."""
        matched = self.aaa.answer(data, source)
        if matched is None:
            return []
        session_id, answer = matched
        return self.paa.aaa_answer(session_id, answer, wall)

    def tick(self, wall: float) -> list:
        """PANA and RADIUS retransmissions, and the sessions no server answered."""
        sends, unanswered = self.aaa.tick(wall)
        for session_id in unanswered:
            sends += self.paa.aaa_answer(session_id, None, wall)
        return sends + self.paa.tick(wall)

    def next_due(self) -> float | None:
        due = [d for d in (self.paa.next_due(), self.aaa.next_due()) if d is not None]
        return min(due) if due else None

    def _ended(self, session, how: str, wall: float) -> None:
        """A PANA session closed: established (the SA exists now), rejected,
        expired or unanswered; Tauth (RFC 6252 C.5.3) from its PCI.  A session
        whose final PAR carried the key but never got its PAN leaves an SA
        the MN may hold (its PAN lost) or not (it did not believe the AA):
        kept if the MN has used it, else gone."""
        if how in ("expired", "unanswered") and session.result == pana.PANA_SUCCESS:
            sa = self.aa.by_session(session.id)
            if sa is not None and sa.high == 0:
                self.aa.abandon(sa)
        if self.events is not None:
            self.events.emit("preauthentication", identity=session.identity,
                             network=session.network, data={
                                 "result": how, "domain": session.domain,
                                 "pana_session": f"{session.id:08x}",
                                 "pre_authentication": session.pre,
                                 "result_code": session.result,
                                 "ms": round((wall - session.started) * 1000, 3)})

    def _terminated(self, sa, cause, wall: float) -> list:
        """The MN ended its PANA session (PTR): the SA goes, with its lease
        unless a handover goes through that lease's tunnel (then the lease
        ends with its own time)."""
        try:
            self.release_lease(sa, wall)
        except Refused as exc:
            self.counters["pana_termination_lease_kept"] += 1
            LOG.info("PANA termination of sa=%s: the lease stays (%s)", sa.id[:8], exc.message)
        self.aa.end(sa)
        return []

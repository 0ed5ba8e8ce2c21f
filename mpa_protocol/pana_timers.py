"""PANA's retransmission timer (RFC 5191 §9, which takes RFC 3315 §14's).

A request that gets no answer is sent again after RT seconds:

- the first RT = IRT + RAND*IRT, each next RT = 2*RTprev + RAND*RTprev,
  RAND uniform in [-0.1, +0.1];
- with MRT set, an RT over MRT becomes MRT + RAND*MRT;
- with MRC set, the exchange fails when the timer runs out after the MRC-th
  retransmission (RFC 5609's RTX_COUNTER against RTX_MAX_NUM: REQ_MRC is the
  number of retransmissions, not of transmissions);
- with MRD set, it fails MRD seconds after the first transmission.

The timer is pure: the caller passes ``now`` (seconds, any monotonic origin)
and, for tests, the random source; it never reads a clock.
"""

from __future__ import annotations

import random
from dataclasses import dataclass

RAND_BOUND = 0.1


@dataclass(frozen=True)
class RetransmissionParameters:
    """IRT, MRT, MRC, MRD in RFC 3315's sense; 0 means "no limit"."""
    irt: float
    mrt: float
    mrc: int
    mrd: float

    def __post_init__(self):
        if self.irt <= 0 or self.mrt < 0 or self.mrc < 0 or self.mrd < 0:
            raise ValueError(f"retransmission parameters out of range: {self}")


# RFC 5191 §9: a PCI is sent until the PAA answers; other requests 10 times more.
PCI_IRT, PCI_MRT, PCI_MRC, PCI_MRD = 1.0, 120.0, 0, 0.0
REQ_IRT, REQ_MRT, REQ_MRC, REQ_MRD = 1.0, 30.0, 10, 0.0
PCI_TIMERS = RetransmissionParameters(PCI_IRT, PCI_MRT, PCI_MRC, PCI_MRD)
REQ_TIMERS = RetransmissionParameters(REQ_IRT, REQ_MRT, REQ_MRC, REQ_MRD)

WAIT, RETRANSMIT, EXPIRED = "wait", "retransmit", "expired"


class Retransmission:
    """The timer of one outstanding request, started when it was first sent.

    ``poll(now)`` says what to do: WAIT, RETRANSMIT (the caller sends the
    same bytes again; the timer has counted it and set the next RT) or
    EXPIRED (the exchange failed; it stays expired).  ``next_due(now)`` is
    when to poll next, None once expired.
    """

    def __init__(self, params: RetransmissionParameters, now: float,
                 rng: random.Random | None = None):
        self.params = params
        self._rng = rng if rng is not None else random.SystemRandom()
        self.started = now
        self.attempts = 1          # transmissions so far, the first included
        self.expired = False
        self.rt = self._bounded(params.irt + self._rand() * params.irt)
        self._due = now + self.rt

    @property
    def retransmissions(self) -> int:
        return self.attempts - 1

    def _rand(self) -> float:
        value = self._rng.uniform(-RAND_BOUND, RAND_BOUND)
        return min(RAND_BOUND, max(-RAND_BOUND, value))

    def _bounded(self, rt: float) -> float:
        if self.params.mrt and rt > self.params.mrt:
            return self.params.mrt + self._rand() * self.params.mrt
        return rt

    def _deadline(self) -> float | None:
        return self.started + self.params.mrd if self.params.mrd else None

    def next_due(self, now: float) -> float | None:
        if self.expired:
            return None
        due = self._due
        deadline = self._deadline()
        if deadline is not None:
            due = min(due, deadline)
        return max(due, now)

    def poll(self, now: float) -> str:
        if self.expired:
            return EXPIRED
        deadline = self._deadline()
        if deadline is not None and now >= deadline:
            self.expired = True
            return EXPIRED
        if now < self._due:
            return WAIT
        if self.params.mrc and self.retransmissions >= self.params.mrc:
            self.expired = True
            return EXPIRED
        self.attempts += 1
        self.rt = self._bounded(2 * self.rt + self._rand() * self.rt)
        self._due = now + self.rt
        return RETRANSMIT

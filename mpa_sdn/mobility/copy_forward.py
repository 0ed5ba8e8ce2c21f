"""Copy-and-forward for an MN with two interfaces (RFC 6252 §7.6.2).

The MN prepares its second interface in a candidate target network (an SA
and an nCoA there, the interface attached) and tells the controller, with a
*standby* binding update, where its home address should go if the link of
its active interface is lost suddenly.  Until then the PoA switch of the
active care-of copies every packet it delivers to the MN to the controller
(the delivering flow gets an ``output:CONTROLLER`` after its output to the
MN's port, so the copy is the very frame the MN receives), and the
controller keeps the newest copies in a :class:`CopyRing`.

When the link is lost (the PoA's port-status, or the MN's ``link-lost``
signal through its other interface), the binding moves to the standby
care-of and the copies the MN may not have received are forwarded to it.
Which ones: the MN says which frames its lost interface received last
(``delivered``, digests of the IPv4 packets, see
:func:`mpa_protocol.messages.frame_digest`), and every copy after the last of
them is forwarded; nothing it received is sent twice.  Without that word
(within ``mpa.copy_wait_s``) the controller forwards every copy made from
``mpa.copy_guard_s`` before it saw the loss: a duplicate is better than a
loss, and the counters say how it was decided.

Copies cost a packet-in each for as long as the standby lasts; the ring is
bounded in packets (``mpa.copy_packets``) and age (``mpa.copy_time_s``),
dropping the oldest, which the MN is the likeliest to have received.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass

from mpa_protocol.messages import frame_digest
from mpa_sdn import openflow as of


@dataclass(frozen=True)
class Standby:
    """Where ``home`` goes when its current care-of's link is lost."""

    home: str
    care_of: str             # the prepared interface's address (an nCoA)
    network: str             # the care-of's network
    identity: str
    mac: str                 # the prepared interface's MAC
    expires: float           # wall clock


@dataclass
class Copy:
    at: float                # when the controller got it (monotonic)
    data: bytes
    digest: str | None = None

    def digested(self) -> str | None:
        if self.digest is None:
            self.digest = frame_digest(self.data) or ""
        return self.digest or None


class CopyRing:
    """The newest copies of what an MN's active interface was sent, oldest first."""

    def __init__(self, max_packets: int, max_age_s: float, counters: collections.Counter):
        self.max_packets, self.max_age_s, self.counters = max_packets, max_age_s, counters
        self.copies: collections.deque[Copy] = collections.deque()
        self.made = 0
        self.owner = None   # the handover that forwards them, once the link is lost

    def __len__(self) -> int:
        return len(self.copies)

    def add(self, data: bytes, now: float) -> None:
        self.copies.append(Copy(now, bytes(data)))
        self.made += 1
        self.counters["copy_made"] += 1
        dropped = 0
        while len(self.copies) > self.max_packets or (
                self.copies and now - self.copies[0].at > self.max_age_s):
            self.copies.popleft()
            dropped += 1
        if dropped:
            self.counters["copy_aged"] += dropped

    def undelivered(self, delivered: list[str] | None, since: float) -> tuple[list[Copy], str]:
        """The copies the MN may not have received, and how that was decided:

        ``marker``: after the newest copy that ends the longest run of the
        MN's ``delivered`` digests; ``nothing-delivered``: the MN received
        none of them (all); ``unmatched``: none of its digests is here (the
        ring lost them, or the MN is confused: all, as duplicates beat
        losses); ``guard``: no word from the MN, every copy made at or after
        ``since``."""
        copies = list(self.copies)
        if delivered is None:
            return [c for c in copies if c.at >= since], "guard"
        if not delivered:
            return copies, "nothing-delivered"
        best, best_run = None, 0
        for i in range(len(copies) - 1, -1, -1):
            run = 0
            while (run < len(delivered) and i - run >= 0
                   and copies[i - run].digested() == delivered[-1 - run]):
                run += 1
            if run > best_run:
                best, best_run = i, run
                if run == len(delivered):
                    break
        if best is None:
            return copies, "unmatched"
        return copies[best + 1:], "marker"


def with_copy(mod, port: int):
    """``mod`` with a copy to the controller after each output to ``port``
    (None if it outputs nothing there)."""
    copied = False
    instructions = []
    for instruction in mod.instructions:
        actions = getattr(instruction, "actions", None)
        if instruction.type != of.ofp.OFPIT_APPLY_ACTIONS or actions is None:
            instructions.append(instruction)
            continue
        out = []
        for action in actions:
            out.append(action)
            if action.type == of.ofp.OFPAT_OUTPUT and action.port == port:
                out.append(of.to_controller())
                copied = True
        instructions.append(of.parser.OFPInstructionActions(of.ofp.OFPIT_APPLY_ACTIONS, out))
    if not copied:
        return None
    return of.flow_add(mod.table_id, mod.priority, mod.match, instructions, mod.cookie,
                       mod.idle_timeout, mod.hard_timeout)

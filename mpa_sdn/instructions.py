"""The MN's part of the actions: the ``instructions`` message (docs/signalling.md).

An MN asks, signed under one of its MPA-SAs and over either channel, for
what it is to do; the same message carries its reports on what it was told
before.  With ``wait``, the question is held until an instruction comes or
the wait is over: that is how an MN subscribes.  Each MN holds at most
``held_per_mn`` questions (the newest kept, counted
``instructions_superseded``), and one answer holds at most MAX_PENDING
instructions, fewer if they would not fit ``max_message_bytes``.

:class:`Instructions` is the MN's side of :class:`mpa_sdn.actions.Actions`,
which owns the actions it reads and finishes.
"""

from __future__ import annotations

import dataclasses
import heapq
import itertools

from mpa_protocol import messages
from mpa_sdn.action_record import DELIVERED, DONE, FAILED, PENDING, Action
from mpa_sdn.mpa_sa import AUTHORIZED, PRE_AUTHENTICATED
from mpa_sdn.service import Answer, Held, Origin

MAX_PENDING = 4                 # instructions in one answer, as many as fit max_message_bytes


class Instructions:
    """The MN's side of :class:`~mpa_sdn.actions.Actions`, one object with it:
    it reads the open actions (``_open``, ``actions``) and ends them with
    ``_finish`` and ``_changed``, which stay with the actions' lifecycle."""

    def __init__(self):
        # identity -> its held questions; and a heap of (when its wait is over, n, identity, held)
        self.waiting: dict[str, list[Held]] = {}
        self._wait_due: list[tuple[float, int, str, Held]] = []
        self._held = itertools.count()                 # ties in _wait_due, in arrival order

    def instructions_of(self, identity: str) -> list[dict]:
        return [dict(a.instruction) for a in self._open_parts(identity)]

    def _open_parts(self, identity: str) -> list[Action]:
        return [a for a in self._open.get(identity, {}).values()
                if a.instruction is not None and not a.reported]

    def poll(self, sa, msg, origin: Origin, wall: float) -> list[Answer]:
        """An ``instructions`` message: reports first, then what is pending."""
        if sa.state not in (PRE_AUTHENTICATED, AUTHORIZED):
            return self.service.refuse(sa, msg, "wrong-state", f"the SA is {sa.state}",
                                       [origin], wall)
        self.counters["instructions_asked"] += 1
        for report in msg.get("reports", []):
            self._report(sa.identity, report, wall)
        wait = msg.get("wait", 0)
        if wait and not self._open_parts(sa.identity):
            self.counters["instructions_waiting"] += 1
            mine = self.waiting.setdefault(sa.identity, [])
            answers = []
            while len(mine) >= self.service.settings.held_per_mn:
                # The newest question is the one its MN still listens for: the
                # oldest is answered now (nothing pending), so no MN, however
                # many it asks, holds more than its share of the shell's slots.
                self.counters["instructions_superseded"] += 1
                answers += self._answer_held(mine.pop(0), wall)
            held = self.service.hold(sa, msg, [origin])
            mine.append(held)
            heapq.heappush(self._wait_due, (wall + wait, next(self._held), sa.identity, held))
            return answers
        return self._answer(sa, msg, [origin], wall)

    def _answer(self, sa, msg, origins: list, wall: float) -> list[Answer]:
        parts = self._fitting(sa, msg, self._open_parts(sa.identity)[:MAX_PENDING])
        for action in parts:
            if action.state == PENDING:
                action.state = DELIVERED
                action.updated_at = wall
                self._changed(action)
        answers = self.service.answer(sa, msg, "instruction-list", origins, wall,
                                      pending=[dict(a.instruction) for a in parts])
        gate = self.mobility.answer_gate(sa.identity)
        if gate is not None and any(a.instruction["do"] == "switch" for a in parts):
            # Told to switch only once the target's AR holds the traffic.
            answers = [dataclasses.replace(a, after=gate) for a in answers]
        return answers

    def _fitting(self, sa, msg, parts: list[Action]) -> list[Action]:
        """The first of ``parts`` that one answer holds within max_message_bytes,
        at least one: in-band, an answer is one datagram.  The rest stay pending."""
        limit = self.service.settings.max_message_bytes
        while len(parts) > 1 and len(messages.encode(self.service.signed(
                sa, msg, "instruction-list", pending=[a.instruction for a in parts]))) > limit:
            parts = parts[:-1]
            self.counters["instructions_left_for_later"] += 1
        return parts

    def _wake(self, identity: str, wall: float) -> list[Answer]:
        """A new instruction for ``identity``: its held questions are answered."""
        if not self._open_parts(identity):
            return []
        answers = []
        for held in self.waiting.pop(identity, []):
            answers += self._answer_held(held, wall)
        return answers

    def _answer_held(self, held: Held, wall: float) -> list[Answer]:
        sa = self.service.unhold(held)
        return [] if sa is None else self._answer(sa, held.msg, held.origins, wall)

    def _report(self, identity: str, report: dict, wall: float) -> None:
        action = self.actions.get(report["id"])
        if action is None or action.identity != identity or action.instruction is None:
            self.counters["instructions_report_unknown"] += 1
            return
        if action.reported or not action.open:
            self.counters["instructions_report_again"] += 1
            return
        action.reported = True
        mn = {"ok": report["ok"], **{k: report[k] for k in ("code", "detail") if k in report}}
        action.result = {**(action.result or {}), "mn": mn}
        self.counters["instructions_reported"] += 1
        if not report["ok"]:
            self._finish(action, FAILED, wall, error=(
                report.get("code", "mn-failed"), report.get("detail", "the MN's part failed")))
        elif action.network_done:
            if action.action == "prepare":
                action.result["prepared"] = self._prepared(identity,
                                                           action.params["candidates"])
            self._finish(action, DONE, wall)
        else:
            action.updated_at = wall
            self._changed(action)

    def _prepared(self, identity: str, networks: list[str]) -> dict:
        """What the controller holds for the MN in each network (its own view,
        not the MN's word)."""
        out = {}
        for network in networks:
            sa_id = self.service.aa.by_identity_network.get((identity, network))
            sa = self.service.aa.sas.get(sa_id) if sa_id else None
            lease = self._lease(sa) if sa else None
            tunnel = self.mobility.tunnels.get(lease.address) if lease else None
            out[network] = {"sa": sa.state if sa else None,
                            "address": lease.address if lease else None,
                            "tunnel": tunnel.poa.id if tunnel else None}
        return out

    def _waits_over(self, wall: float) -> list[Answer]:
        """Held questions whose wait is over get an empty answer."""
        answers = []
        while self._wait_due and self._wait_due[0][0] <= wall:
            _, _, identity, held = heapq.heappop(self._wait_due)
            mine = self.waiting.get(identity, [])
            if held not in mine:
                continue            # answered when an instruction came
            mine.remove(held)
            if not mine:
                del self.waiting[identity]
            answers += self._answer_held(held, wall)
        return answers

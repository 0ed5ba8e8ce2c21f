"""``mpa-mn follow``: the MN's part of what a policy engine asks the network.

The MN asks its current network's controller for its instructions
(``instructions``, signed with that network's MPA-SA), carries each out
and reports how it went in its next question:

    prepare {networks}     steps 1-3 with each: pre-authenticate, configure
                           (nCoA on its vif), tunnel, bind the home address
                           through the tunnel
    switch {network, poa}  the target's AR buffers already: get ready, emit
                           the ``switch`` event (whatever moves the link acts
                           on it: the radio, or the lab), wait for the link to
                           drop and come back, attach and say ``arrived``
    stay {network}         the handover was cancelled: nothing to do
    forget {network}       the network released the nCoA (and the SA): drop
                           them here too

Over REST the question waits at the controller (``wait``) until an
instruction comes, which is how the MN subscribes; in-band it polls every
``poll_s``.  Each step is also emitted as a JSON event.
"""

from __future__ import annotations

import logging
import time
from typing import Callable

from mpa_mn.handover import Handover, HandoverFailed, arrival_checked
from mpa_mn.link import LinkError
from mpa_mn.mobile_node import MnError, MobileNode
from mpa_mn.protocol import ProtocolError
from mpa_mn.vif import VifError

LOG = logging.getLogger("mpa_mn.follow")

FAILURES = (ProtocolError, MnError, VifError, LinkError, HandoverFailed)
DEFAULT_WAIT_S = 20          # REST: how long each question waits at the controller
DEFAULT_POLL_S = 0.2         # in-band: between two questions
MAX_QUESTION_FAILURES = 5    # questions unanswered in a row before the MN gives up


def _failure(instruction: dict, exc: Exception) -> dict:
    code = "interface" if isinstance(exc, VifError) else getattr(exc, "code", "failed")
    message = getattr(exc, "message", None) or str(exc)
    return {"id": instruction["id"], "ok": False, "code": str(code)[:32],
            "detail": "".join(c if c.isprintable() else " " for c in message)[:300] or "failed"}


class Follower:
    def __init__(self, node: MobileNode, handover: Handover, home: str, interface: str,
                 emit: Callable[[dict], None], *, wait_s: int = 0,
                 poll_s: float = DEFAULT_POLL_S, link_timeout_s: float = 30.0,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep,
                 moved: Callable[[str], None] | None = None):
        self.node, self.handover, self.home = node, handover, home
        self.interface, self.emit = interface, emit
        self.wait_s, self.poll_s, self.link_timeout_s = wait_s, poll_s, link_timeout_s
        self.clock, self.sleep = clock, sleep
        self.moved = moved   # (new address) -> None: in-band, questions go from it now
        self.network: str | None = None
        self.handled: dict[int, dict] = {}   # instruction id -> its report

    def run(self, network: str, count: int | None = None,
            duration_s: float | None = None) -> dict:
        """Follow until ``count`` instructions are carried out, ``duration_s``
        passed, or KeyboardInterrupt (SIGTERM, Ctrl-C)."""
        self.network = network
        deadline = None if duration_s is None else self.clock() + duration_s
        reports: list[dict] = []
        failures = 0
        try:
            while True:
                if count is not None and len(self.handled) >= count:
                    if reports:
                        self._ask(reports, wait=0)   # the last reports go out
                    break
                left = None if deadline is None else deadline - self.clock()
                if left is not None and left <= 0:
                    break
                # A question held at the controller ends by the deadline.
                wait = self.wait_s if left is None else min(self.wait_s, int(left))
                try:
                    pending = self._ask(reports, wait)
                except ProtocolError as exc:
                    failures += 1
                    self.emit({"event": "question-failed", "network": self.network,
                               "code": exc.code, "message": exc.message})
                    if failures >= MAX_QUESTION_FAILURES:
                        raise
                    self.sleep(self.poll_s)
                    continue
                failures = 0
                reports = []
                for instruction in pending:
                    reports.append(self._carry_out(instruction))
                if not pending and not wait:
                    self.sleep(self.poll_s)
        except KeyboardInterrupt:
            LOG.info("stopped")
        return {"network": self.network, "handled": len(self.handled),
                "reports": list(self.handled.values())}

    def _ask(self, reports: list[dict], wait: int) -> list[dict]:
        return self.node.instructions(self.network, wait, reports)

    def _carry_out(self, instruction: dict) -> dict:
        ident = instruction["id"]
        if ident in self.handled:      # asked again before the report arrived
            return self.handled[ident]
        self.emit({"event": "instruction", **instruction})
        try:
            report = {"id": ident, "ok": True, **self._do(instruction)}
        except FAILURES as exc:
            report = _failure(instruction, exc)
        self.emit({"event": "reported", **report})
        outcome = {k: report[k] for k in ("id", "ok", "code", "detail") if k in report}
        self.handled[ident] = outcome
        return outcome

    def _do(self, instruction: dict) -> dict:
        do = instruction["do"]
        if do == "prepare":
            for network in instruction.get("networks", []):
                # Steps 1-3; the pre-switch is the network's, when it decides.
                ready = self.handover.before_pre_switch(network, self.home)
                self.emit({"event": "prepared", "network": network,
                           "address": ready["address"], "timings_ms": ready["timings_ms"]})
            return {}
        if do == "switch":
            network = instruction["network"]
            attached = self.handover.switch_told(network, self.emit, self.interface,
                                                 self.node.mac, self.link_timeout_s,
                                                 instruction.get("poa"))
            self.emit({"event": "attached", "network": network,
                       "address": attached["address"], "timings_ms": attached["timings_ms"]})
            self.network = network    # the next questions go to the new network
            if self.moved is not None:
                self.moved(attached["address"])
            # Attached there even if the controller switched the handover
            # back: the network is followed, and the instruction failed.
            arrival_checked(attached)
            return {}
        if do == "stay":
            return {}
        if do == "forget":
            self.node.forget(instruction["network"], instruction.get("scope", "all"))
            return {}
        raise MnError("unknown-instruction", f"no instruction {do!r}")

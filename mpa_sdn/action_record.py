"""One action: its record as the state store keeps it, its states, and
the refusal a request gets (mpa_sdn/actions.py carries actions out,
mpa_sdn/instructions.py is the MN's part of them)."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from mpa_sdn.events import rfc3339

PENDING, DELIVERED, DONE, FAILED = "pending", "delivered", "done", "failed"
OPEN = (PENDING, DELIVERED)


class ActionRefused(Exception):
    """The request cannot be carried out; ``problem`` names the API's problem type."""

    def __init__(self, problem: str, detail: str):
        super().__init__(detail)
        self.problem = problem


@dataclass
class Action:
    id: int
    identity: str
    action: str
    params: dict
    requested_by: str
    created_at: float             # wall seconds
    updated_at: float
    state: str = PENDING
    instruction: dict | None = None   # the MN's part, as it is sent to it
    result: dict | None = None
    error: dict | None = None
    handover: int | None = None
    reported: bool = False            # the MN reported on its instruction
    network_done: bool = True         # the network's part needs nothing more

    @property
    def open(self) -> bool:
        return self.state in OPEN

    def view(self) -> dict:
        return {"id": self.id, "identity": self.identity, "action": self.action,
                "state": self.state, "params": dict(self.params),
                "requested_by": self.requested_by,
                "created_at": rfc3339(self.created_at), "updated_at": rfc3339(self.updated_at),
                "instruction": None if self.instruction is None else dict(self.instruction),
                "result": self.result, "error": self.error, "handover": self.handover}

    def record(self) -> dict:
        return dataclasses.asdict(self)


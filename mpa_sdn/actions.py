"""What a policy engine asks the network to do for an MN, and the MN's part.

An *action* is one request: ``prepare`` (candidates), ``pre-switch``,
``complete``, ``cancel`` or ``release``.  The network does its part at
once (a pre-switch starts buffering at the target's AR, a release frees
the candidate's SA, nCoA and tunnel); the MN's part becomes an
*instruction* the MN fetches with the ``instructions`` message
(docs/signalling.md), signed under one of its MPA-SAs, over either
channel (mpa_sdn/instructions.py).  An action's record and states are
mpa_sdn/action_record.py.

    action        network's part                      MN's instruction
    prepare       (none: the MN must authenticate)    prepare {networks}
    pre-switch    the target's AR buffers (§6.3 s.4)  switch {network, poa}
    complete      the MN's "arrived", on its behalf   (none)
    cancel        switch back                          stay {network}
    release       tunnel, nCoA (and SA) freed          forget {network, scope}

An action ends ``done`` or ``failed``: a prepare, cancel or release when
the MN reports on its instruction (in a later ``instructions`` message),
a pre-switch when its handover ends (completed, or switched back), a
complete at once.  An instruction nobody reports on within
INSTRUCTION_TIMEOUT_S fails the action.  Actions are kept in the state
store, so a restart loses none; a pre-switch whose handover a restart
ended fails.
"""

from __future__ import annotations

import collections
import dataclasses
import heapq
import logging
from typing import Protocol

from mpa_sdn.action_record import DELIVERED, DONE, FAILED, Action, ActionRefused
from mpa_sdn.ca import mpa_client
from mpa_sdn.instructions import Instructions
from mpa_sdn.mobility import Refused
from mpa_sdn.mpa_sa import AUTHORIZED, PRE_AUTHENTICATED
from mpa_sdn.service import Answer, Held
from mpa_sdn.topology import ROLE_ACCESS

LOG = logging.getLogger("mpa_sdn.actions")

KIND = "action"
KINDS = ("prepare", "pre-switch", "complete", "cancel", "release")
INSTRUCTION_TIMEOUT_S = 120.0   # an MN that neither fetches nor reports by then: failed
KEEP_FINISHED = 1000            # finished actions kept (memory and store)


class Signalling(Protocol):
    """What the actions use of the signalling service that owns them
    (mpa_sdn/service.py): its agents and their MNs, its clock, and the
    signing and holding of answers.  The service makes its actions with
    itself (mpa_sdn/assembly.py), which is how the one cycle between them
    is broken."""

    aa: object
    ca: object
    homes: dict
    settings: object

    def wall(self, now: float) -> float: ...
    def answer(self, sa, msg, kind: str, origins: list, wall: float, **fields) -> list: ...
    def refuse(self, sa, msg, code: str, text: str, origins: list, wall: float,
               **extra) -> list: ...
    def signed(self, sa, msg, kind: str, **fields) -> dict: ...
    def hold(self, sa, msg, origins: list) -> Held: ...
    def unhold(self, held: Held): ...
    def release_lease(self, sa, wall: float) -> tuple: ...


class Actions(Instructions):
    def __init__(self, service: Signalling, mobility, graph, policies, events, store,
                 counters):
        super().__init__()      # the MN's held questions
        self.service, self.mobility, self.graph = service, mobility, graph
        self.policies, self.events, self.store, self.counters = policies, events, store, counters
        self.actions: dict[int, Action] = {}           # every action kept, by id
        # The MN's questions and mpa_tick look only at what is still open:
        self._open: dict[str, dict[int, Action]] = {}  # identity -> its open actions, by id
        self._finished: collections.deque[int] = collections.deque()  # oldest first
        self._due: list[tuple[float, int]] = []        # (when its instruction fails, id), a heap
        self._load()

    # -- the state store ---------------------------------------------------------

    def _load(self) -> None:
        known = {f.name for f in dataclasses.fields(Action)}
        records = sorted(self.store.load(KIND).values(), key=lambda r: r["id"])
        for record in records:
            self._keep(Action(**{k: v for k, v in record.items() if k in known}))
        self._next = max(self.actions, default=0) + 1
        for action in [a for mine in self._open.values() for a in mine.values()]:
            if action.action == "pre-switch" and action.handover is not None:
                # Handovers do not outlive the process that ran them.
                self._finish(action, FAILED, action.updated_at, error=(
                    "restarted", "the controller restarted during the handover"))
        self._trim()

    def _save(self, action: Action) -> None:
        self.store.put(KIND, str(action.id), action.record())

    def _keep(self, action: Action) -> None:
        """A new (or loaded) action, filed as open or finished."""
        self.actions[action.id] = action
        if not action.open:
            self._finished.append(action.id)
            return
        self._open.setdefault(action.identity, {})[action.id] = action
        if action.instruction is not None and action.network_done:
            heapq.heappush(self._due, (action.created_at + INSTRUCTION_TIMEOUT_S, action.id))

    def _trim(self) -> None:
        while len(self._finished) > KEEP_FINISHED:
            ident = self._finished.popleft()
            del self.actions[ident]
            self.store.delete(KIND, str(ident))

    # -- views -------------------------------------------------------------------

    def get(self, ident: int) -> Action | None:
        return self.actions.get(ident)

    def views(self, identity: str | None = None, state: str | None = None) -> list[dict]:
        return [a.view() for a in self.actions.values()
                if (identity is None or a.identity == identity)
                and (state is None or a.state == state)]

    # -- a policy engine's requests ------------------------------------------------

    def request(self, kind: str, identity: str, params: dict, by: str,
                now: float) -> tuple[Action, list[Answer]]:
        """Carry out the network's part of ``kind`` for ``identity`` and queue
        the MN's; the action, and the answers to questions it was waiting with."""
        wall = self.service.wall(now)
        if not self.known(identity):
            raise ActionRefused("not-found", f"unknown mobile node {identity!r}")
        action = Action(self._next, identity, kind, dict(params), by, wall, wall)
        getattr(self, "_" + kind.replace("-", "_"))(action, now)
        self._next += 1
        self.counters[f"action_{kind.replace('-', '_')}"] += 1
        LOG.info("identity=%s action=%d %s %s by %s: %s", identity, action.id, kind,
                 params, by, action.state)
        self._keep(action)
        if not action.open:     # a complete: done at once
            self._ended(action)
        self._changed(action)
        self._trim()
        return action, self._wake(identity, wall)

    def known(self, identity: str) -> bool:
        """An MN the controller knows: in the topology or with an MPA-SA (the
        domains' subscribers are their RADIUS servers' business, not ours)."""
        return (identity in self.service.homes
                or any(mn.identity == identity
                       for mn in self.service.topology.mobile_nodes.values())
                or bool(self.service.aa.sas_of(identity)))

    def _network(self, name: str):
        try:
            return self.graph.network(name)
        except KeyError:
            raise ActionRefused("unprocessable", f"no network {name!r}") from None

    def _served(self, name: str):
        network = self._network(name)
        if network.role != ROLE_ACCESS or name not in self.service.ca.pools:
            raise ActionRefused("unprocessable", f"{name} has no AA or CA")
        return network

    def _sa(self, identity: str, network: str, usable: bool = True):
        sa_id = self.service.aa.by_identity_network.get((identity, network))
        sa = self.service.aa.sas.get(sa_id) if sa_id else None
        if sa is None or (usable and sa.state not in (PRE_AUTHENTICATED, AUTHORIZED)):
            raise ActionRefused("wrong-state", f"{identity} has no usable MPA-SA with "
                                f"{network}: prepare it first")
        return sa

    def _lease(self, sa):
        return self.service.ca.lease_for(sa.network, mpa_client(sa.identity, sa.mn_mac))

    def current_network(self, identity: str) -> str | None:
        """Where the MN is: its binding's network if it reaches it directly, else
        the network of the PoA its SAs' MAC was last learned at."""
        binding = self.mobility.binding_of(identity)
        if binding is not None:
            reach = self.mobility.reach(binding)
            if reach is not None and reach.tunnel is None:
                return reach.poa.network
        macs = [sa.mn_mac for sa in self.service.aa.sas_of(identity)]
        macs += [mn.mac for mn in self.graph.topology.mobile_nodes.values()
                 if mn.identity == identity]       # the topology's own MNs, before any SA
        for mac in macs:
            poa = self.mobility.where.get(mac)
            if poa is not None:
                return poa.network
        return None

    def _prepare(self, action: Action, now: float) -> None:
        candidates = action.params["candidates"]
        for name in candidates:
            self._served(name)
        here = self.current_network(action.identity)
        if here is None:
            raise ActionRefused("wrong-state", f"{action.identity} is not attached anywhere "
                                "the controller knows")
        neighbours = set(self.graph.neighbours(here))
        strangers = [c for c in candidates if c not in neighbours]
        if strangers:
            raise ActionRefused("unprocessable", f"not candidates of {here}: "
                                f"{', '.join(strangers)}")
        limit = self.policies.of(here).max_candidates
        if len(candidates) > limit:
            raise ActionRefused("unprocessable", f"at most {limit} candidates from {here} "
                                "(its policy's max_candidates)")
        action.params = {"candidates": list(candidates), "from": here}
        action.instruction = {"id": action.id, "do": "prepare", "networks": list(candidates)}

    def _pre_switch(self, action: Action, now: float) -> None:
        p = action.params
        network = self._served(p["network"])
        poa = p.get("poa")
        if poa is not None and poa not in {x.id for x in network.poas}:
            raise ActionRefused("unprocessable", f"{poa} is no PoA of {network.id}")
        sa = self._sa(action.identity, network.id)
        mode = p.get("mode", "buffer")
        action.params = {"network": network.id, "poa": poa, "mode": mode,
                         "buffer_old": bool(p.get("buffer_old", False))}
        current = self.mobility.handovers.get(action.identity)
        if current is not None and current.ended_at is None:
            raise ActionRefused("wrong-state", f"a handover of {action.identity} to "
                                f"{current.network} is in progress")
        self._mobility(sa, "pre-switch", now, mode=mode,
                       buffer_old=action.params["buffer_old"])
        handover = self.mobility.handovers[action.identity]
        action.handover = handover.id
        action.network_done = False
        action.result = {"handover": handover.view()}
        action.instruction = {"id": action.id, "do": "switch", "network": network.id,
                              "poa": poa}

    def _complete(self, action: Action, now: float) -> None:
        sa = self._target_sa(action)
        state = self._mobility(sa, "arrived", now)
        if state["phase"] == "pre-switching":
            raise ActionRefused("wrong-state", f"{action.identity} is not seen at a PoA of "
                                f"{sa.network} yet")
        action.result = {"phase": state["phase"]}
        action.state = DONE

    def _cancel(self, action: Action, now: float) -> None:
        sa = self._target_sa(action)
        handover = self.mobility.handovers.get(action.identity)
        if handover is None or handover.network != sa.network or handover.phase != \
                "pre-switching":
            raise ActionRefused("wrong-state", f"no handover of {action.identity} to "
                                f"{sa.network} is pre-switching")
        state = self._mobility(sa, "cancel", now)
        action.result = {"phase": state["phase"], "handover": handover.id}
        action.instruction = {"id": action.id, "do": "stay", "network": sa.network}

    def _target_sa(self, action: Action):
        network = self._served(action.params["network"]).id
        action.params = {"network": network}
        return self._sa(action.identity, network)

    def _release(self, action: Action, now: float) -> None:
        network = self._served(action.params["network"]).id
        scope = action.params.get("scope", "all")
        action.params = {"network": network, "scope": scope}
        sa = self._sa(action.identity, network, usable=False)
        binding = self.mobility.binding_of(action.identity)
        if binding is not None and binding.network == network:
            raise ActionRefused("wrong-state", f"{action.identity}'s binding is in {network}; "
                                "release another network")
        handover = self.mobility.handovers.get(action.identity)
        if handover is not None and handover.ended_at is None and handover.network == network:
            raise ActionRefused("wrong-state", f"a handover to {network} is in progress")
        try:
            tunnel, lease = self.service.release_lease(sa, self.service.wall(now))
        except Refused as exc:
            raise ActionRefused(exc.code, exc.message) from None
        if scope == "all":
            self.service.aa.end(sa)
        action.result = {"released": {
            "tunnel": tunnel, "lease": lease.address if lease is not None else None,
            "sa": scope == "all"}}
        action.instruction = {"id": action.id, "do": "forget", "network": network,
                              "scope": scope}

    def _mobility(self, sa, phase: str, now: float, mode: str = "buffer",
                  buffer_old: bool = False) -> dict:
        try:
            return self.mobility.handover(sa, self._lease(sa), phase, buffer_old, now, mode)
        except Refused as exc:
            raise ActionRefused("too-soon" if exc.code == "too-soon" else "wrong-state",
                                exc.message) from None

    # -- the handover a pre-switch started -----------------------------------------

    def handover_ended(self, view: dict, now: float) -> None:
        for action in list(self._open.get(view["identity"], {}).values()):
            if action.handover == view["id"]:
                action.result = {**(action.result or {}), "handover": view}
                wall = self.service.wall(now)
                if view["switched_back"]:
                    self._finish(action, FAILED, wall, error=(
                        "switched-back", f"switched back: {view.get('reason') or 'unknown'}"))
                else:
                    action.network_done = True
                    self._finish(action, DONE, wall)

    # -- an action's end ----------------------------------------------------------------

    def _finish(self, action: Action, state: str, wall: float,
                error: tuple[str, str] | None = None) -> None:
        action.state = state
        action.updated_at = wall
        if error is not None:
            action.error = {"code": error[0], "detail": error[1]}
        mine = self._open[action.identity]
        del mine[action.id]
        if not mine:
            del self._open[action.identity]
        self._finished.append(action.id)
        self._ended(action)
        self._changed(action)
        self._trim()

    def _ended(self, action: Action) -> None:
        self.counters[f"action_{action.state}"] += 1
        error = action.error
        LOG.info("identity=%s action=%d %s: %s%s", action.identity, action.id, action.action,
                 action.state, f" ({error['code']}: {error['detail']})" if error else "")

    def _changed(self, action: Action) -> None:
        self._save(action)
        # At its own time: a restart fails actions before the core has any.
        self.events.emit("action", identity=action.identity, data=action.view(),
                         wall=action.updated_at)

    # -- time --------------------------------------------------------------------------

    def tick(self, wall: float) -> list[Answer]:
        """Held questions whose wait is over get an empty answer; instructions
        nobody reported on fail their action."""
        answers = self._waits_over(wall)
        while self._due and self._due[0][0] < wall:
            action = self.actions.get(heapq.heappop(self._due)[1])
            if action is not None and action.open and not action.reported:
                self._finish(action, FAILED, wall, error=(
                    "no-report" if action.state == DELIVERED else "not-fetched",
                    f"the MN did not report on its instruction within "
                    f"{INSTRUCTION_TIMEOUT_S:g} s"))
        return answers

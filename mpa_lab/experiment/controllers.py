"""The controller process(es) of one session of ``mpa-lab run``: one for
every domain of the topology, or one per administrative domain
(``controllers: per-domain``; ``mpa-controller --domain ID`` on the ports of
the topology's ``domains.ID.controller``, docs/inter-domain.md).

What the run reads of "the controller" comes from the one that keeps it:
a handover's record (``GET /mpa/v1/handovers``) from the controller of the
network the MN moved to, which ran the handover; the counters from each,
per domain; and, through the handover driver, a handover in progress from
the target network's controller and an MN's binding from its home domain's
(mpa_lab/experiment/handover_driver.py).
"""

from __future__ import annotations

import contextlib
from typing import Callable

from mpa_lab.experiment.handover_driver import DomainApi, HandoverDriver
from mpa_lab.experiment.scenario import Scenario

ONE = None   # the domain key of the one controller's records


class SessionControllers:
    """``processes``: ControllerProcess objects (started and closed here),
    each with its ``domain`` (None: the one controller of every domain)."""

    def __init__(self, processes: list):
        domains = [p.domain for p in processes]
        if not processes or (ONE in domains and len(processes) > 1) or (
                len(set(domains)) != len(domains)):
            raise ValueError("one controller for every domain, or one per domain")
        self.processes = list(processes)

    @classmethod
    def for_session(cls, scenario: Scenario, path: Callable[[str, str], str], name: str, *,
                    ofp_port: int, rest_port: int, log_level: str) -> "SessionControllers":
        """The session's controller(s), not started: each with its log in
        ``path("logs", ...)`` and a fresh state file in ``path("state", ...)``
        (``controller-NAME[-DOMAIN].log``, ``NAME[-DOMAIN].db``).  With one
        controller per domain, ``ofp_port`` and ``rest_port`` are the
        topology's ``domains.ID.controller`` ports instead."""
        from mpa_lab.net.controller_process import ControllerProcess

        def process(domain: str | None, ofp: int, rest: int) -> ControllerProcess:
            suffix = f"-{domain}" if domain else ""
            return ControllerProcess(
                scenario.topology_path, ofp_port=ofp, rest_port=rest,
                log_path=path("logs", f"controller-{name}{suffix}.log"),
                state_db=path("state", f"{name}{suffix}.db"), rest_host="0.0.0.0",
                log_level=log_level, domain=domain)
        if not scenario.per_domain:
            return cls([process(ONE, ofp_port, rest_port)])
        domains = scenario.topology.domains
        return cls([process(did, domains[did].controller.openflow_port,
                            domains[did].controller.rest_port) for did in sorted(domains)])

    @property
    def per_domain(self) -> bool:
        return self.processes[0].domain is not ONE

    def lab_controllers(self) -> dict[str, tuple[str, int]] | None:
        """``Lab(controllers=...)``: each domain's OpenFlow address (None: one controller)."""
        if not self.per_domain:
            return None
        return {p.domain: ("127.0.0.1", p.ofp_port) for p in self.processes}

    def __enter__(self):
        with contextlib.ExitStack() as started:
            for process in self.processes:
                started.enter_context(process)
            started.pop_all()
        return self

    def __exit__(self, *exc):
        for process in self.processes:
            process.close()

    def wait_switches(self, lab) -> None:
        """Until each controller has its switches connected and reconciled."""
        for process in self.processes:
            process.wait_switches(ids=lab.switches_of(process.domain) if self.per_domain
                                  else None)

    def driver(self, lab, state_dir: str, channel: str) -> HandoverDriver:
        """A handover driver that tells the MN each domain's REST API and
        reads each controller where it keeps things."""
        first = self.processes[0]
        if not self.per_domain:
            return HandoverDriver(lab, first.rest_port, state_dir, channel,
                                  mobile_nodes=first.mobile_nodes)
        return HandoverDriver(lab, first.rest_port, state_dir, channel, domains={
            p.domain: DomainApi(p.rest_port, p.mobile_nodes) for p in self.processes})

    def handovers(self) -> dict[str | None, list[dict]]:
        """Each controller's handover records (``GET /mpa/v1/handovers``), by
        its domain (``ONE`` for the one controller); one that does not answer
        has none."""
        records = {}
        for process in self.processes:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                records[process.domain] = process.get("/mpa/v1/handovers")
        return records

    def counters(self) -> dict:
        """The one controller's counters or, with one per domain, each
        domain's (domain -> its counters); one that does not answer is left out."""
        counters = {}
        for process in self.processes:
            with contextlib.suppress(OSError, RuntimeError, ValueError):
                counters[process.domain] = process.counters()
        if not self.per_domain:
            return counters.get(ONE, {})
        return counters

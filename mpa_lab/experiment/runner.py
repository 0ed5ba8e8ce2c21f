"""Run a scenario in the lab: every mode, on this machine, in one invocation.

For each repetition and each mode, a *session*: a fresh controller process
(with ``controllers: per-domain``, one per administrative domain,
mpa_lab/experiment/controllers.py) and lab, the MNs bound to their home
addresses where they start, a UDP stream from the correspondent to each home
address, then the mode's handovers through the real MN client
(mpa_lab/experiment/handover_driver.py), one after the other,
``interval_s`` apart.  Copy-and-forward needs an MN with a
second interface whose first link is lost, so each of its losses is a
session of its own.  After a session the receivers' logs are analysed per
handover and the controller's handover records are matched to them
(mpa_lab/experiment/results.py); each handover says whether it crossed
domains, whatever the controllers.

Whatever happens (a failed handover, an exception, Ctrl-C or SIGTERM) the
lab and the controller(s) of the session are torn down and ``results.json``
is written with what was measured, marked incomplete if it is.  What
stopped a run is named with where it was raised, in ``results.json``'s
``stopped``, and logged with its traceback in ``logs/mpa-lab.log``
(mpa_lab/experiment/run_log.py).
"""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import platform
import shutil
import subprocess
import time
from dataclasses import dataclass

from mpa_lab.aaa.lab_servers import LabAaa
from mpa_lab.experiment import results as res
from mpa_lab.experiment.progress import Progress
from mpa_lab.experiment.run_log import RunLog
from mpa_lab.traffic import tcp_analysis
from mpa_lab.experiment.scenario import (MPA, MPA_BICAST, MPA_BUFFER, MPA_COPY_FORWARD,
                                         REACTIVE, TCP, Scenario)
from mpa_sdn.domain_view import home_domain

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
SUBDIRS = ("logs", "state", "plots")    # the run's own: emptied when it starts


@dataclass(frozen=True)
class Session:
    mode: str
    repetition: int
    name: str
    # (MN, PoA) per handover, by the moment each starts in: one at a time,
    # or (handovers.together) every MN's at once.
    moments: tuple[tuple[tuple[str, str], ...], ...]

    @property
    def plan(self) -> tuple[tuple[str, str], ...]:
        """(MN, PoA) per handover, in order."""
        return tuple(move for moment in self.moments for move in moment)


def sessions(scenario: Scenario) -> list[Session]:
    """Every session of the run, in order: each repetition runs every mode."""
    out = []
    for repetition in range(1, scenario.repetitions + 1):
        for mode in scenario.modes:
            suffix = f"-{repetition}" if scenario.repetitions > 1 else ""
            if mode == MPA_COPY_FORWARD:
                out += [Session(mode, repetition, f"{mode}{suffix}-{k + 1}", ((item,),))
                        for k, item in enumerate(scenario.plan(mode))]
            else:
                moments = tuple(tuple(moment) for moment in scenario.moments(mode))
                out.append(Session(mode, repetition, f"{mode}{suffix}", moments))
    return out


def source_commit() -> dict:
    """The commit this code is at, and whether the tree differs from it."""
    def git(*args):
        try:
            return subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True,
                                  errors="replace", timeout=10).stdout.strip()
        except (OSError, subprocess.SubprocessError):
            return ""
    commit = git("rev-parse", "--short", "HEAD")
    if not commit:
        # An image has no .git: its build names the commit (Dockerfile's
        # SOURCE_COMMIT, as `git describe --always --dirty` gives it).
        built = os.environ.get("MPA_SOURCE_COMMIT") or "unknown"
        return {"commit": built.removesuffix("-dirty"), "dirty": built.endswith("-dirty")}
    return {"commit": commit, "dirty": bool(git("status", "--porcelain", "--untracked-files=no"))}


class Experiment:
    def __init__(self, scenario: Scenario, out_dir: str, *, ofp_port: int, rest_port: int,
                 progress: Progress | None = None, log_level: str = "INFO"):
        self.scenario = scenario
        self.out = out_dir
        self.ofp_port, self.rest_port = ofp_port, rest_port
        self.log_level = log_level
        self.sessions = sessions(scenario)
        self.progress = progress or Progress(sum(len(s.plan) for s in self.sessions))
        self.results: dict = {}
        self._collected: dict = {}

    # -- the run ----------------------------------------------------------------

    def run(self) -> dict:
        """Every session; ``results.json`` (and the plots) written whatever
        happens.  Exceptions (KeyboardInterrupt among them) pass on after that."""
        self._prepare_out()
        log = RunLog(os.path.join(self.out, "logs"))
        s = self.scenario
        self.results = {"scenario": s.name, **source_commit(), "log": log.path,
                        "started_at": datetime.datetime.now(datetime.timezone.utc)
                        .isoformat(timespec="seconds"),
                        "host": {"name": platform.node(), "cpus": os.cpu_count(),
                                 "kernel": platform.release(),
                                 "python": platform.python_version()},
                        "complete": False, "settings": s.to_dict(),
                        "modes": {m: {"handovers": [], "summary": None, "sessions": []}
                                  for m in s.modes}}
        self._collected = {m: {"streams": [], "delays": [], "tcp": []} for m in s.modes}
        aaa = LabAaa(s.topology)
        try:
            # One set of AAA servers for the whole run: each session's
            # controllers read the same secrets, the MNs the same credentials.
            self.progress.show("starting the domains' AAA servers")
            aaa.start()
            for line in aaa.describe():
                self.progress.note(line)
            self.results["aaa_logs"] = aaa.log_paths()
            for session in self.sessions:
                self._session(session)
            self.results["complete"] = True
        except KeyboardInterrupt:
            self.results["stopped"] = "interrupted"
            raise
        except Exception as exc:
            # Named with where it was raised; the traceback goes to the log.
            self.results["stopped"] = log.stopped(exc)
            raise
        finally:
            aaa.stop()
            self.progress.close()
            self._finish()
            log.close()
        return self.results

    def _prepare_out(self) -> None:
        os.makedirs(self.out, exist_ok=True)
        for sub in SUBDIRS:
            shutil.rmtree(os.path.join(self.out, sub), ignore_errors=True)
            os.makedirs(os.path.join(self.out, sub))

    def _path(self, sub: str, name: str) -> str:
        return os.path.join(self.out, sub, name)

    def _session(self, session: Session) -> None:
        from mpa_lab.experiment.controllers import SessionControllers
        from mpa_lab.net.lab import Lab

        s = self.scenario
        self.progress.show(f"{session.name}: starting the controller"
                           f"{'s' if s.per_domain else ''} and the lab")
        controllers = SessionControllers.for_session(
            s, self._path, session.name, ofp_port=self.ofp_port, rest_port=self.rest_port,
            log_level=self.log_level)
        lab = Lab(s.topology, controller_port=self.ofp_port, management=True,
                  controllers=controllers.lab_controllers(), link_layer_ms=s.link_layer_ms,
                  poa_ports=s.poa_ports)
        done, history, counters, streams = [], {}, {}, {}
        try:
            self._in_lab(session, controllers, lab, done, history, counters, streams)
        finally:
            # Also after a failure or Ctrl-C: what was measured is kept.
            self._analyse(session, done, history, counters, streams)

    def _in_lab(self, session: Session, controllers, lab, done: list, history: dict,
                counters: dict, streams: dict) -> None:
        from mpa_lab.traffic.streams import TcpStream, UdpStream

        s = self.scenario
        with controllers, lab:
            controllers.wait_switches(lab)
            # A second interface is prepared over REST (the MN's management
            # link): in-band preparation through it is not supported yet.
            channel = "rest" if session.mode == MPA_COPY_FORWARD else s.channel
            driver = controllers.driver(lab, self._path("state", session.name), channel)
            for mn in s.mobile_nodes:
                bound = driver.bind_home(mn.id, s.traffic.source)
                if not bound.ok:
                    raise RuntimeError(f"{session.name}: {mn.id} could not bind its home "
                                       f"address: {'; '.join(bound.errors)}")
            stream_class = TcpStream if s.traffic.protocol == TCP else UdpStream
            for index, mn in enumerate(s.mobile_nodes):
                streams[mn.id] = stream_class(
                    lab, s.traffic.source, mn.id, driver.home_address(mn.id),
                    s.traffic.port + index, s.traffic.rate_pps,
                    self._path("logs", f"arrivals-{session.name}-{mn.id}.log"),
                    size=s.traffic.size)
            try:
                with contextlib.ExitStack() as stack:
                    for stream in streams.values():
                        stack.enter_context(stream)
                    time.sleep(s.warmup_s)
                    self._handovers(session, driver, done)
            finally:
                history.update(controllers.handovers())
                counters.update(controllers.counters())
                for mn in list(lab.second):
                    lab.remove_interface(mn)

    def _handovers(self, session: Session, driver, done: list) -> None:
        s, total, k = self.scenario, len(session.plan), 0
        for number, moment in enumerate(session.moments, 1):
            what = ", ".join(f"{mn} -> {poa}" for mn, poa in moment)
            self.progress.show(f"{session.name} {k + 1}/{total}: {what}")
            if len(moment) == 1:
                results = [self._one(session.mode, driver, *moment[0])]
            else:
                results = driver.together(
                    list(moment), lambda mn, poa: self._one(session.mode, driver, mn, poa))
            for r in results:
                r.moment = number
            done += results
            k += len(moment)
            left = total - k
            failed = [r for r in results if not r.ok]
            if failed:
                for r in failed:
                    self.progress.note(f"{session.name}: handover {r.index} ({r.mn} -> "
                                       f"{r.to_poa}) failed: {'; '.join(r.errors)}")
                if left:
                    self.progress.note(f"{session.name}: the session's {left} others are "
                                       "skipped")
                self.progress.step(f"{session.name}: failed", advance=len(moment) + left)
                return
            self.progress.step(f"{session.name} {k}/{total} done", advance=len(moment))
            if left:
                time.sleep(s.interval_s)
        time.sleep(s.interval_s)   # the stream goes on after the last one, too

    def _one(self, mode: str, driver, mn: str, poa: str):
        s = self.scenario
        if mode == REACTIVE:
            return driver.reactive(mn, poa, dad=s.dad)
        if mode == MPA:
            return driver.handover(mn, poa, mode="none")
        if mode == MPA_BUFFER:
            return driver.handover(mn, poa)
        if mode == MPA_BICAST:
            return driver.handover(mn, poa, mode="bicast")
        if mode == MPA_COPY_FORWARD:
            return driver.sudden_loss(mn, poa, s.mobile_node(mn).standby_mac,
                                      before_s=s.loss_after_s)
        raise ValueError(f"unknown mode {mode!r}")

    # -- results ----------------------------------------------------------------

    def _analyse(self, session: Session, done: list, history: dict, counters: dict,
                 streams: dict) -> None:
        """``history``: each controller's handover records, by domain (None:
        the one controller's)."""
        mode = self.results["modes"][session.mode]
        collected = self._collected[session.mode]
        mode["sessions"].append({"name": session.name, "repetition": session.repetition,
                                 "handovers": len(done), "counters": counters})
        analysed = {}   # a handover's index -> its window and its stream's arrivals
        for mn, stream in streams.items():
            if stream.sent is None:      # never started, or stopped before it reported
                continue
            mine = [r for r in done if r.mn == mn]
            try:
                arrivals = stream.arrivals()
                report = stream.analysis([r.window() for r in mine], arrivals)
            except (OSError, ValueError) as exc:
                mode["sessions"][-1].setdefault("errors", []).append(
                    f"{mn}'s stream cannot be analysed: {exc}")
                continue
            collected["streams"].append({**report, "mn": mn})
            collected["delays"] += res.first_delays_ms(arrivals)
            tcp = self._tcp(stream, mine, arrivals)
            if tcp is not None:
                collected.setdefault("tcp", []).append({"mn": mn, **tcp_analysis.stream_totals(
                    stream.samples())})
            for k, (result, window) in enumerate(zip(mine, report["windows"])):
                analysed[result.index] = (window, arrivals, tcp[k] if tcp else None)
        for result in done:              # in the order they ran, whoever moved
            if result.index not in analysed:
                continue
            window, arrivals, tcp = analysed[result.index]
            # The target network's controller ran the handover and keeps its
            # record; a copy-and-forward's, the MN's home domain (the one that
            # keeps its binding and its standby, docs/inter-domain.md).
            keeper = None
            if self.scenario.per_domain:
                keeper = (home_domain(self.scenario.topology.mobile_nodes[result.mn].identity)
                          if result.kind == "copy-and-forward" else
                          self.scenario.topology.networks[result.to_network].domain)
            record = res.controller_record(history.get(keeper, []), result)
            points = res.timeline(arrivals, window, res.event_ns(result))
            row = res.handover_row(len(mode["handovers"]) + 1, session.repetition,
                                   result, window, record, points,
                                   domains=self._domains(result), tcp=tcp)
            if not result.ok:
                row["stderr"] = result.stderr
            mode["handovers"].append(row)

    def _tcp(self, stream, mine: list, arrivals) -> list[dict] | None:
        """A TCP stream's figures for each of ``mine`` (its MN's handovers):
        the longest stall, throughput around it, retransmissions."""
        if stream.protocol != TCP:
            return None
        recv = sorted(recv_ns for _, _, recv_ns in arrivals)
        samples = stream.samples()
        end_ns = max([*recv[-1:], *(s[0] for s in samples[-1:])], default=0) + 1
        traffic = self.scenario.traffic
        return [tcp_analysis.handover(recv, samples, size=traffic.size, window=span,
                                      outage_ns=res.event_ns(result),
                                      link_layer_ms=result.link_layer_ms,
                                      window_ns=traffic.throughput_window_ms * 1_000_000)
                for result, span in zip(mine, tcp_analysis.spans(
                    [r.window() for r in mine], end_ns))]

    def _domains(self, result) -> tuple[str, str]:
        """The domains of the networks ``result`` moved from and to."""
        networks = self.scenario.topology.networks
        return networks[result.from_network].domain, networks[result.to_network].domain

    def _finish(self) -> None:
        for name, mode in self.results["modes"].items():
            collected = self._collected[name]
            mode["summary"] = res.summary(mode["handovers"], collected["streams"],
                                          collected["delays"], collected.get("tcp"))
        self.results["finished_at"] = datetime.datetime.now(
            datetime.timezone.utc).isoformat(timespec="seconds")
        try:
            from mpa_lab.experiment.plots import write_plots
            self.results["plots"] = write_plots(self.results, os.path.join(self.out, "plots"))
        except Exception as exc:  # noqa: BLE001 - the numbers matter more than the pictures
            self.results["plots_error"] = f"{type(exc).__name__}: {exc}"
        path = os.path.join(self.out, "results.json")
        with open(path + ".tmp", "w", encoding="utf-8") as f:
            json.dump(self.results, f, indent=1)
        os.replace(path + ".tmp", path)
        self.results["path"] = path

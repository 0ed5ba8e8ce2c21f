"""Scripted handovers in the lab (RFC 6252 §6.3 steps 3-6, and without MPA),
for the integration tests and the benchmarks.

A handover: the MN runs ``mpa-mn handover NET --wait-link --home HOA`` in its
host.  The client pre-authenticates with the target network, gets its nCoA,
asks for the proactive handover tunnel, sends the binding update through it
and pre-switches, then prints a ``ready`` line.  The driver then moves the
MN's link to the target PoA (``Lab.move(..., readdress=False)``); the client
sees its carrier drop and come back, puts the nCoA on its interface, says it
has arrived and prints its timings.  ``mode`` "bicast" pre-switches to
bicasting instead of buffering; "none" does not pre-switch and does not say
it has arrived (the controller finds it by its gratuitous ARP).

A reactive handover (no MPA, RFC 6252 C.5): the MN runs ``mpa-mn reactive
NET --wait-link``, which prints its ``ready`` line as soon as it watches its
carrier; after the move it authenticates, gets an address by DHCP, checks it
with ARP probes, puts it on its interface and binds its home address to it.

With one controller per administrative domain (``domains``), the client is
told each domain's REST API (``mpa-mn --domain-controller``), and the
driver reads each thing from the controller that keeps it: a handover in
progress, a tunnel or a standby from the target network's domain's, the
binding from the MN's home domain's (docs/inter-domain.md).

The driver checks nothing: every run becomes a `HandoverResult` (what was
asked, the client's own report, the lab's link-layer switch, what went
wrong), and the caller decides what to make of it.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import os
import select
import signal
import subprocess
import tempfile
import threading
import time
from dataclasses import dataclass, field
from collections.abc import Mapping
from typing import TYPE_CHECKING, Callable

from mpa_mn.dad import DadSettings
from mpa_protocol.messages import SWITCHED_BACK
from mpa_protocol.program_output import OutputError, utf8
from mpa_sdn.domain_view import home_domain
from mpa_lab.experiment.preconfigure import mpa_mn_command, run_mpa_mn
from mpa_lab.net.client_events import error_of, first_error
from mpa_lab.net.probes import ping

if TYPE_CHECKING:  # the lab needs Mininet; the driver's bookkeeping does not
    from mpa_lab.net.lab import LinkSwitch

POLL_S = 0.1
FAILURE_MODES = ("no-arrival", "return")
MODES = ("buffer", "bicast", "none")
# ``reactive``'s keywords: mpa-mn reactive's options, without their dashes.
# Its DAD options are DadSettings' fields without their "_s".
DAD_OPTIONS = {f.name: f.name.removesuffix("_s") for f in dataclasses.fields(DadSettings)}
REACTIVE_OPTIONS = (*DAD_OPTIONS.values(), "dhcp_retry", "dhcp_timeout", "decline_wait")
STDERR_TAIL = 2000


@dataclass
class HandoverResult:
    """One handover: ``kind`` "handover" (MPA; ``mode`` "buffer", "bicast" or
    "none"), "reactive" (without MPA), "copy-and-forward"; or one failed on
    purpose ("no-arrival", "return").  Times ending in ``_wall_ns`` are
    wall-clock ns, comparable with the client's and with the traffic tools'
    timestamps."""

    index: int                 # the driver's count, from 1
    kind: str
    mn: str
    from_network: str
    to_network: str
    from_poa: str
    to_poa: str
    buffer_old: bool = False
    mode: str | None = None            # "handover" and the failed ones: how it pre-switched
    started_wall_ns: int = 0
    ended_wall_ns: int = 0
    ready_wall_ns: int | None = None
    ready: dict | None = None          # the client's ready line
    client: dict | None = None         # its final JSON document
    returncode: int | None = None
    link: list[LinkSwitch] = field(default_factory=list)  # the lab's moves, in order
    # The client's exit -> the controller's handover ended (or, for "none"
    # and "reactive", its binding reaching the MN at the target PoA).
    settled_ms: float | None = None
    loss_wall_ns: int | None = None    # copy-and-forward: when the first link was cut
    switched_back_ms: float | None = None  # failed handovers: ready -> the controller gave up
    errors: list[str] = field(default_factory=list)
    stderr: str = ""
    moment: int | None = None          # the caller's: which moment of its plan it started in

    @property
    def ok(self) -> bool:
        return not self.errors

    @property
    def address(self) -> str | None:
        """The MN's address in the target network: the nCoA the client
        announced as ready, or (reactive) the one it reported."""
        return self.report.get("address") or (self.ready or {}).get("address")

    @property
    def report(self) -> dict:
        """The client's result for the target network (its document's only
        entry of ``results``), with its timings."""
        results = (self.client or {}).get("results")
        if isinstance(results, list) and len(results) == 1 and isinstance(results[0], dict):
            return results[0]
        return self.client or {}

    @property
    def link_layer_ms(self) -> float | None:
        """The lab's link-layer switch (the first move; None if its link
        never came up at the target)."""
        return self.link[0].duration_ms if self.link else None

    @property
    def imposed_ms(self) -> float | None:
        """The outage the lab imposed on that switch (None: no switch)."""
        return self.link[0].imposed_ms if self.link else None

    @property
    def interruption_ms(self) -> float | None:
        """The client's view: from its link going down until its traffic can
        reach it again: its attachment for MPA (the nCoA on the interface,
        announced; the binding was made through the tunnel before), the
        binding update's answer for a reactive handover (its address is new
        to the binding).  None without both marks (copy-and-forward: the
        client never sees its active link go down)."""
        end = "bound_at" if self.kind == "reactive" else "attached_at"
        return self._client_span_ms("link_down_at", end)

    @property
    def attach_after_link_ms(self) -> float | None:
        """From the lab's link up at the target to the client's attachment."""
        attached = self.report.get("attached_at")
        if not self.link or not isinstance(attached, int):
            return None
        return (attached - self.link[-1].up_wall_ns) / 1e6

    def _client_span_ms(self, start: str, end: str) -> float | None:
        report = self.report
        if not all(isinstance(report.get(k), int) for k in (start, end)):
            return None
        return (report[end] - report[start]) / 1e6

    def window(self) -> dict:
        """A traffic-analysis window (send times) covering this handover."""
        end_ns = max(self.ended_wall_ns, self.started_wall_ns + 1)
        kind = self.kind if self.mode in (None, "buffer") else f"{self.kind} ({self.mode})"
        return {"label": f"{self.index} {kind} {self.from_poa}->{self.to_poa}",
                "start_ns": self.started_wall_ns, "end_ns": end_ns}


@dataclass
class BindResult:
    """The initial binding at the MN's current network: pre-authentication,
    then ``bind`` (care-of: the MN's current address)."""

    mn: str
    network: str
    home_address: str
    care_of: str
    documents: dict = field(default_factory=dict)  # command -> its JSON document
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.errors


@dataclass(frozen=True)
class DomainApi:
    """One domain's controller, as the driver uses it (one controller per
    domain): where the MN reaches its REST API, over its management link,
    and its mobility state (``ControllerProcess.mobile_nodes``)."""

    rest_port: int
    mobile_nodes: Callable[[], list[dict]]


class Lines:
    """Lines from a pipe, each within a deadline; at the end, every line not
    taken and the rest."""

    def __init__(self, stream):
        self.fd = stream.fileno()
        self.buffer = b""
        self.kept = b""
        self.eof = False

    def line(self, deadline: float) -> bytes | None:
        """The next line, or None at end of file or past the deadline."""
        while b"\n" not in self.buffer and not self.eof:
            left = deadline - time.monotonic()
            if left <= 0:
                return None
            if select.select([self.fd], [], [], left)[0]:
                self._read()
        if b"\n" not in self.buffer:
            return None
        line, self.buffer = self.buffer.split(b"\n", 1)
        return line

    def keep(self, line: bytes) -> None:
        """A line that belongs to the output's end (a document over many lines)."""
        self.kept += line + b"\n"

    def rest(self) -> bytes:
        while not self.eof:
            self._read()
        rest, self.kept, self.buffer = self.kept + self.buffer, b"", b""
        return rest

    def _read(self) -> None:
        chunk = os.read(self.fd, 65536)
        self.eof = not chunk
        self.buffer += chunk


class HandoverDriver:
    """Handovers of the lab's MNs with ``mpa-mn``; the lab must have been
    started with ``management=True`` when ``channel`` is "rest".

    ``mobile_nodes``: the controller's mobility state, each MN's view
    (``ControllerProcess.mobile_nodes``: ``GET /mpa/v1/mobile-nodes``).
    ``domains``: with one controller per domain, each one's (domain id ->
    its `DomainApi`) instead; ``rest_port`` is then the REST API of domains
    not named (mpa-mn's ``--controller``)."""

    ready_timeout_s = 30.0   # pre-authentication, nCoA, tunnel, binding, pre-switch
    finish_timeout_s = 30.0  # after the move: the client attaches and reports
    reactive_timeout_s = 120.0  # after the move: DHCP (its own timeout, 60 s), DAD, binding
    stop_timeout_s = 3.0     # a client told to stop (SIGTERM), before it is killed
    settle_margin_s = 5.0    # beyond the controller's own deadline, for it to end a handover
    # After the controller shows a binding reaching the MN (it shows what it
    # wants at once; the switches follow in up to three make-before-break
    # stages, and OVS's datapath a moment later), so that a result's window
    # holds the traffic's return.
    binding_grace_s = 0.5
    reach_timeout_s = 10.0   # bind_home: for a correspondent to reach the home address

    def __init__(self, lab, rest_port: int, state_dir: str, channel: str = "inband", *,
                 mobile_nodes: Callable[[], list[dict]] | None = None,
                 domains: Mapping[str, DomainApi] | None = None):
        if (mobile_nodes is None) == (domains is None):
            raise ValueError("the driver reads one controller (mobile_nodes) or one per "
                             "domain (domains)")
        self.lab = lab
        self.rest_port = rest_port
        self.state_dir = str(state_dir)
        self.channel = channel
        self.mobile_nodes = mobile_nodes
        self.domains = dict(domains) if domains is not None else None
        self.results: list[HandoverResult] = []
        self._lock = threading.Lock()     # handovers in threads of their own (together)

    @property
    def domain_rest_ports(self) -> dict[str, int] | None:
        """Each domain's REST port for mpa-mn (None: one controller)."""
        if self.domains is None:
            return None
        return {domain: api.rest_port for domain, api in self.domains.items()}

    def domain_of(self, network: str) -> str | None:
        """The domain whose controller keeps what happens in ``network`` (None:
        the one controller)."""
        return None if self.domains is None else self.lab.topology.networks[network].domain

    def home_domain(self, mn: str) -> str | None:
        """The domain whose controller keeps ``mn``'s binding: its identity's
        realm (None: the one controller)."""
        if self.domains is None:
            return None
        return home_domain(self.lab.topology.mobile_nodes[mn].identity)

    # -- the MN's client ----------------------------------------------------

    def state_path(self, mn: str) -> str:
        return os.path.join(self.state_dir, f"{mn}.json")

    def home_address(self, mn: str) -> str:
        home = self.lab.topology.mobile_nodes[mn].home_address
        if home is None:
            raise ValueError(f"mobile node {mn} has no home_address in the topology")
        return str(home)

    def bind_home(self, mn: str, correspondent: str | None = None) -> BindResult:
        """Pre-authenticate with the MN's current network, then bind its home
        address to its current address there.  With ``correspondent``: that
        host pings the MN's address first (so the controller knows both),
        and reaches the home address afterwards (within ``reach_timeout_s``)."""
        network = self.lab.location[mn].network
        result = BindResult(mn, network, self.home_address(mn), self.lab.address(mn))
        if correspondent is not None:
            if not ping(self.lab.host(correspondent), result.care_of).ok:
                result.errors.append(f"{correspondent} does not reach {mn} at {result.care_of}")
                return result
        self._bind(mn, network, result)
        if correspondent is not None and result.ok:
            host = self.lab.host(correspondent)
            if _poll(lambda: ping(host, result.home_address, count=1).ok,
                     time.monotonic() + self.reach_timeout_s) is None:
                result.errors.append(f"{correspondent} does not reach {mn}'s home address")
        return result

    def _bind(self, mn: str, network: str, result: BindResult) -> None:
        for args in (("preauth", network),
                     ("bind", network, "--home", result.home_address,
                      "--care-of", result.care_of)):
            rc, document = run_mpa_mn(self.lab, mn, self.rest_port, self.state_path(mn),
                                      self.channel, *args,
                                      domain_rest_ports=self.domain_rest_ports)
            result.documents[args[0]] = document
            if rc != 0:
                result.errors.append(f"mpa-mn {args[0]} {network}: exit status {rc}: "
                                     f"{error_of(document)}")
                break

    def handover(self, mn: str, target_poa: str, buffer_old: bool = False,
                 mode: str = "buffer") -> HandoverResult:
        """A proactive handover of ``mn`` to ``target_poa``: the client gets
        ready, the lab moves the MN's link, the client attaches.  ``mode``:
        "buffer" (the target's AR buffers while the link switches), "bicast"
        or "none" (no pre-switch: what is sent meanwhile is lost)."""
        if mode not in MODES:
            raise ValueError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        if buffer_old and mode != "buffer":
            raise ValueError("buffer_old is for a buffering handover")
        if mode == "none":
            settle = self._settle_binding
        else:
            # The controller may still be flushing its buffer to the MN; the
            # next handover waits for it, and so does this one.
            settle = functools.partial(self._settle, bound="buffer_time_s")
        result = self._begin("handover", mn, target_poa, buffer_old, mode)
        return self._run(result, self._handover_args(result, True),
                         self._arrival(self.finish_timeout_s, settle))

    def reactive(self, mn: str, target_poa: str, dad: DadSettings | None = None,
                 **options) -> HandoverResult:
        """A handover of ``mn`` to ``target_poa`` without MPA: the client gets
        ready (watches its carrier), the lab moves the MN's link, the client
        authenticates, gets an address by DHCP, checks it and binds its home
        address to it.  ``options``: mpa-mn reactive's (``REACTIVE_OPTIONS``:
        ``probe_num=3``, ``announce_wait=0.5``, ...); unset, RFC 5227's and
        RFC 2131's defaults.  ``dad``: DAD's settings, each one an option
        unless ``options`` gives it.  The driver then waits until the
        controller shows the binding reaching the MN at the target."""
        if dad is not None:
            options = {**{option: getattr(dad, name) for name, option in DAD_OPTIONS.items()},
                       **options}
        unknown = sorted(set(options) - set(REACTIVE_OPTIONS))
        if unknown:
            raise ValueError(f"no reactive option {', '.join(unknown)}: one of "
                             f"{', '.join(REACTIVE_OPTIONS)}")
        result = self._begin("reactive", mn, target_poa, False)
        args = ["reactive", result.to_network, "--wait-link", "--home", self.home_address(mn),
                *[arg for name, value in sorted(options.items())
                  for arg in (f"--{name.replace('_', '-')}", f"{value:g}"
                              if isinstance(value, float) else str(value))]]
        return self._run(result, args,
                         self._arrival(self.reactive_timeout_s, self._settle_binding))

    def failed_handover(self, mn: str, target_poa: str, mode: str) -> HandoverResult:
        """A handover that never completes.  The client pre-switches to
        ``target_poa``'s network and stops there (``handover`` without
        ``--wait-link``: it never attaches), then

        - "no-arrival": the MN never moves;
        - "return": its link moves to the target, never comes up there (the
          association fails), and goes straight back to the old PoA, where
          the MN announces itself (a gratuitous ARP from the address it
          kept), as a host does when its link comes up.

        Either way the controller should switch back: when the MN shows up
        at its old PoA ("return"), or once ``mpa.switch_deadline_s`` has
        passed.  The driver waits until it reports no handover in progress
        for the MN (``switched_back_ms``, from the ready line).
        """
        if mode not in FAILURE_MODES:
            raise ValueError(f"mode must be one of {', '.join(FAILURE_MODES)}, not {mode!r}")
        old_poa = self.lab.location[mn]

        def ready(process, lines, result):
            ready_at = time.monotonic()
            if mode == "return":
                self._move(mn, target_poa, result, link_up=False)
                self._move(mn, old_poa.id, result)
                self.lab.announce(mn)
            self._finish(process, lines, result, self.finish_timeout_s, expect_success=True)
            result.switched_back_ms = self._settle(result, mn, ready_at, "switch_deadline_s")
        result = self._begin(mode, mn, target_poa, False, "buffer")
        return self._run(result, self._handover_args(result, False), ready)

    def sudden_loss(self, mn: str, poa: str, mac: str, before_s: float = 1.0) -> HandoverResult:
        """Copy-and-forward (RFC 6252 §7.6.2): ``mn`` gets a second interface
        at ``poa`` (MAC ``mac``), which ``mpa-mn standby --wait-loss``
        prepares and binds in standby; ``before_s`` after the controller
        shows the standby, the first interface's link is cut
        (``loss_wall_ns``), and the client says what it received last.  The
        driver waits until the controller's handover is over.  The second
        interface stays (``Lab.remove_interface``)."""
        result = self._begin("copy-and-forward", mn, poa, False)
        old = self.lab.host(mn).defaultIntf().name
        args = ["standby", result.to_network, "--interface", self.lab.add_interface(mn, poa, mac),
                "--old-interface", old, "--home", self.home_address(mn), "--wait-loss"]

        def standby_shown() -> bool:
            # Kept, and the copy-and-forward handover too, by the MN's home
            # domain, wherever the second interface is (docs/inter-domain.md).
            return self._state_holds(mn, lambda state: bool((state or {}).get("standby")))

        def ready(process, lines, result):
            if _poll(standby_shown, time.monotonic() + self.ready_timeout_s) is None:
                result.errors.append("the controller never showed the standby")
                return
            time.sleep(before_s)
            result.loss_wall_ns = self.lab.cut_link(mn)
            self._finish(process, lines, result, self.finish_timeout_s, expect_success=True)
            result.settled_ms = self._settle(result, mn, time.monotonic(), "copy_wait_s",
                                             self.home_domain(mn))
        return self._run(result, args, ready)

    def together(self, moves: list[tuple[str, str]], one: Callable[[str, str], HandoverResult]
                 ) -> list[HandoverResult]:
        """``one(mn, poa)`` for every move at once, each in a thread of its
        own: every client starts in the same moment, their MPA steps run
        concurrently, and each MN's link moves as soon as its own client is
        ready, as a real MN's would.  (Holding the early ones back until
        all are ready would keep their traffic in the buffer meanwhile, a
        wait no MN makes, counted in their interruption.)  Then each
        attaches and settles.  The results in ``moves``' order."""
        out: list[HandoverResult | BaseException | None] = [None] * len(moves)

        def run(index: int, mn: str, poa: str) -> None:
            try:
                out[index] = one(mn, poa)
            except BaseException as exc:  # noqa: BLE001 - raised again below, in this thread
                out[index] = exc
        threads = [threading.Thread(target=run, args=(i, mn, poa), name=f"handover-{mn}")
                   for i, (mn, poa) in enumerate(moves)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        for item in out:
            if isinstance(item, BaseException):
                raise item
        return out

    # -- steps --------------------------------------------------------------

    def _run(self, result: HandoverResult, args: list[str], ready) -> HandoverResult:
        """Start the client (``mpa-mn ARGS``); once it is ready, ``ready(process,
        lines, result)`` does the rest; without a ready line it is stopped."""
        process, lines, stderr = self._start(result, args)
        try:
            if self._wait_ready(process, lines, result):
                ready(process, lines, result)
            else:
                self._finish(process, lines, result, self.stop_timeout_s, expect_success=True)
        finally:
            self._end(process, stderr, result)
        return result

    def _arrival(self, timeout_s: float, settle):
        """What a handover does once its client is ready: move the MN's link
        to the target, wait up to ``timeout_s`` for the client's report, keep
        the address it took, then ``settle(result, mn, since)`` (ms until the
        controller is done with the move)."""
        def ready(process, lines, result: HandoverResult) -> None:
            self._move(result.mn, result.to_poa, result)
            self._finish(process, lines, result, timeout_s, expect_success=True)
            if result.address and (result.returncode == 0 or _switched_back(result.client)):
                # Switched back, the MN still attached and took its nCoA: the
                # handover failed, the address is the MN's all the same.
                self.lab.note_address(result.mn, result.address)
            if result.returncode == 0 and result.address:
                result.settled_ms = settle(result, result.mn, time.monotonic())
        return ready

    def _begin(self, kind: str, mn: str, target_poa: str, buffer_old: bool,
               mode: str | None = None) -> HandoverResult:
        here = self.lab.location[mn]
        target = self.lab.graph.poa(target_poa)
        with self._lock:
            result = HandoverResult(len(self.results) + 1, kind, mn, here.network,
                                    target.network, here.id, target.id, buffer_old, mode,
                                    started_wall_ns=time.time_ns())
            self.results.append(result)
        return result

    def _handover_args(self, result: HandoverResult, wait_link: bool) -> list[str]:
        return ["handover", result.to_network, *(["--wait-link"] if wait_link else []),
                "--home", self.home_address(result.mn),
                *(["--buffer-old"] if result.buffer_old else []),
                *(["--mode", result.mode] if result.mode not in (None, "buffer") else [])]

    def _start(self, result: HandoverResult, args: list[str]):
        command = mpa_mn_command(self.lab, result.mn, self.rest_port,
                                 self.state_path(result.mn), self.channel, *args,
                                 domain_rest_ports=self.domain_rest_ports)
        stderr = tempfile.TemporaryFile()
        process = self.lab.host(result.mn).popen(command, stdout=subprocess.PIPE, stderr=stderr)
        return process, Lines(process.stdout), stderr

    def _wait_ready(self, process, lines: Lines, result: HandoverResult) -> bool:
        deadline = time.monotonic() + self.ready_timeout_s
        while True:
            line = lines.line(deadline)
            if line is None:
                state = "it ended" if lines.eof else f"not within {self.ready_timeout_s:g} s"
                result.errors.append(f"no ready line from mpa-mn ({state})")
                return False
            document = _json(line)
            if isinstance(document, dict) and document.get("event") == "ready":
                result.ready, result.ready_wall_ns = document, time.time_ns()
                return True
            lines.keep(line)

    def _move(self, mn: str, poa: str, result: HandoverResult, link_up: bool = True) -> None:
        try:
            self.lab.move(mn, poa, readdress=False, link_up=link_up)
        except (OSError, RuntimeError, ValueError) as exc:
            result.errors.append(f"the lab could not move {mn} to {poa}: {exc}")
            return
        # This MN's: with handovers together, others move at the same time.
        result.link.append(next(s for s in reversed(self.lab.link_switches) if s.host == mn))

    def _finish(self, process, lines: Lines, result: HandoverResult, timeout_s: float,
                expect_success: bool) -> None:
        """Wait for the client, stopping it after ``timeout_s``; keep its report."""
        try:
            process.wait(timeout_s)
        except subprocess.TimeoutExpired:
            if expect_success:
                result.errors.append(f"mpa-mn did not finish within {timeout_s:g} s; stopped")
            self._stop(process)
        result.returncode = process.returncode
        rest = lines.rest().strip()
        document = (_json(rest) or _json(rest.rsplit(b"\n", 1)[-1])) if rest else None
        if isinstance(document, dict):
            result.client = document
        elif rest:
            result.errors.append(_not_a_document(
                rest, f"mpa-mn in {result.mn} ({result.kind} to {result.to_network})"))
        if expect_success and result.returncode != 0:
            result.errors.append(f"mpa-mn exit status {result.returncode}: "
                                 f"{error_of(result.client or {})}")

    def _end(self, process, stderr, result: HandoverResult) -> None:
        if process.poll() is None:
            self._stop(process)
        process.stdout.close()
        stderr.seek(0)
        result.stderr = stderr.read().decode(errors="replace")[-STDERR_TAIL:]
        stderr.close()
        result.ended_wall_ns = time.time_ns()

    def _stop(self, process) -> None:
        process.send_signal(signal.SIGTERM)
        try:
            process.wait(self.stop_timeout_s)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

    # -- the controller's view ------------------------------------------------

    def mobile_node_state(self, mn: str, domain: str | None = None) -> dict | None:
        """The controller's mobility state of ``mn``: with one controller per
        domain, ``domain``'s (None: the MN's home domain's, which keeps its
        binding)."""
        identity = self.lab.topology.mobile_nodes[mn].identity
        if self.domains is None:
            states = self.mobile_nodes
        else:
            states = self.domains[domain or self.home_domain(mn)].mobile_nodes
        return next((s for s in states() if s.get("identity") == identity), None)

    def _settle(self, result: HandoverResult, mn: str, since: float,
                bound: str, domain: str | None = None) -> float | None:
        """ms from ``since`` until the controller of the target network (or
        ``domain``'s) reports no handover in progress for ``mn``; None, and an
        error in ``result``, if it still does after its ``mpa.<bound>`` and
        ``settle_margin_s``."""
        domain = domain or self.domain_of(result.to_network)
        ms = self._wait(since, getattr(self.lab.topology.mpa, bound), lambda: self._state_holds(
            mn, lambda state: state is None or state.get("handover") is None, domain))
        if ms is None:
            result.errors.append(f"the controller still reports the handover in progress "
                                 f"after mpa.{bound}")
        return ms

    def _settle_binding(self, result: HandoverResult, mn: str, since: float) -> float | None:
        """ms from ``since`` until the controller shows ``mn``'s binding to
        ``result.address`` reaching it directly at the target PoA (with no
        handover at the controller, nothing else says the move is complete),
        then ``binding_grace_s`` more; an error in ``result`` if it does not
        within ``settle_margin_s``.

        With one controller per domain the home domain's keeps the binding.
        To a care-of in another domain it sees no PoA (its ``reach`` is
        null): there the binding names the target network, and the target's
        controller has dropped its tunnel to the care-of, as it does once it
        sees the MN at one of its PoAs."""
        domain = self.domain_of(result.to_network)
        abroad = domain is not None and domain != self.home_domain(mn)
        reach = {"poa": result.to_poa, "tunnel": False}

        def bound(state):
            binding = (state or {}).get("binding") or {}
            if binding.get("care_of") != result.address:
                return False
            return binding.get("network") == result.to_network if abroad else (
                binding.get("reach") == reach)

        def untunnelled(state):
            return all(t.get("address") != result.address for t in (state or {}).get("tunnels")
                       or [])
        ms = self._wait(since, 0.0, lambda: self._state_holds(mn, bound) and (
            not abroad or self._state_holds(mn, untunnelled, domain)))
        if ms is None:
            result.errors.append(f"the controller does not show {mn}'s binding to "
                                 f"{result.address} reaching it at {result.to_poa}")
        else:
            time.sleep(self.binding_grace_s)
        return ms

    def _wait(self, since: float, deadline_s: float, holds: Callable[[], bool]) -> float | None:
        """ms from ``since`` until ``holds()``; None if it does not by
        ``deadline_s`` (the controller's own bound, if any) +
        ``settle_margin_s`` after ``since``."""
        at = _poll(holds, since + deadline_s + self.settle_margin_s)
        return None if at is None else (at - since) * 1000

    def _state_holds(self, mn: str, done: Callable[[dict | None], bool],
                     domain: str | None = None) -> bool:
        """``done(the controller's state of mn)`` (``domain``'s, see
        :meth:`mobile_node_state`); False while the controller does not answer."""
        try:
            return done(self.mobile_node_state(mn, domain))
        except (OSError, ValueError):
            return False


def _poll(done: Callable[[], bool], deadline: float) -> float | None:
    """Try ``done()`` every ``POLL_S`` until it holds: when it did
    (monotonic s); None if it still does not at ``deadline`` (monotonic s)."""
    while True:
        if done():
            return time.monotonic()
        if time.monotonic() > deadline:
            return None
        time.sleep(POLL_S)


def _json(data: bytes):
    try:
        return json.loads(data)
    except ValueError:
        return None


def _not_a_document(output: bytes, source: str) -> str:
    """Why ``source``'s last ``output`` is not its JSON document."""
    try:
        utf8(output, source)
    except OutputError as exc:
        return str(exc)
    return f"{source}: its last output is not a JSON object: {output[-200:]!r}"


def _switched_back(document: dict | None) -> bool:
    """Whether an ``mpa-mn --json`` document says the controller switched back."""
    error = first_error(document or {})
    return isinstance(error, dict) and error.get("code") == SWITCHED_BACK

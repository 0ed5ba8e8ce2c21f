"""What an MN's client has said about its readiness for the link-layer
switch, read from the file its output goes to: ``mpa-lab up``'s
``move --when-ready FILE``.

``mpa-mn handover``, ``reactive`` and ``standby`` print ``{"event":
"ready", ...}`` as one line (flushed) once the MN is ready for the switch:
for an MPA handover, once the target's AR buffers for it (RFC 6252 §6.3
step 4).  ``mpa-mn follow`` prints ``{"event": "switch", ...}`` when a
policy engine told it to switch.  Moving the link before that line is a
race the client loses: it counts the carrier's changes from just before it
prints the line, so a switch that came earlier is never seen.

A plain ``move`` finds such a client itself (:func:`waiting_clients`): an
``mpa-mn`` process in the MN's network namespace that waits for its link
(``handover`` or ``reactive`` with ``--wait-link``, or ``follow``), and the
file its output goes to, if it goes to one.

A client that fails before it is ready says so on stderr, one line
``mpa-mn: NET: CODE: MESSAGE`` (or ``mpa-mn: COMMAND: ...``), and with
``--json`` ends with its document; a crash ends with a traceback.  With
``2>&1`` all of that is in the file too, and the wait ends at once.
"""

from __future__ import annotations

import json
import os
import stat
import time
from dataclasses import dataclass
from typing import Callable

READY_EVENTS = ("ready", "switch")
ERROR_PREFIX = "mpa-mn: "
TRACEBACK = "Traceback (most recent call last):"
POLL_S = 0.05
# A file bigger than this is not a client's output of one handover.
MAX_BYTES = 1 << 20


class NotReady(Exception):
    """The client failed before it was ready, or did not get ready in time."""


@dataclass(frozen=True)
class ClientSaid:
    """The first thing of interest in a client's output: its ready (or
    switch) event, and where in the text it ends; or why it will never be
    ready."""

    event: dict | None = None
    failure: str | None = None
    end: int = 0


def client_said(text: str, start: int = 0) -> ClientSaid | None:
    """What ``text`` (a client's output so far) says first from ``start``,
    where an earlier move's event ended (``mpa-mn follow`` prints one for
    each instruction, and output appended to a file keeps the last
    handover's: the first --json document after that event closes its run,
    and is passed over); None: nothing yet (it is still getting ready).
    Only whole lines count: the last one may be half written."""
    lines = text[start:text.rfind("\n") + 1].splitlines(keepends=True)
    rest, end, closing = [], start, start > 0
    for index, line in enumerate(lines):
        end += len(line)
        stripped = line.strip()
        event = _event(stripped)
        if event is not None:
            return ClientSaid(event=event, end=end)
        if stripped.startswith(ERROR_PREFIX):
            return ClientSaid(failure=stripped)
        if stripped == TRACEBACK:
            last = [l.strip() for l in lines[index:] if l.strip()][-1]
            return ClientSaid(failure=f"it crashed: {last}")
        rest.append(line)
        if closing and _ends_run(_document(rest)):
            rest, closing = [], False
    document = _document(rest)
    if _ends_run(document):
        # The --json document: the client has ended without being ready.
        return ClientSaid(failure=f"it ended without a ready event: {error_of(document)}")
    return None


def _ends_run(document) -> bool:
    """Whether ``document`` is an mpa-mn --json document, printed as it ends."""
    return isinstance(document, dict) and "ok" in document


def _event(line: str) -> dict | None:
    if not line.startswith("{"):
        return None
    document = _json(line)
    if isinstance(document, dict) and document.get("event") in READY_EVENTS:
        return document
    return None


def _json(text: str):
    try:
        return json.loads(text)
    except ValueError:
        return None


def _document(lines: list[str]):
    """The --json document that ends ``lines`` (on one line, or from its
    last line that is a lone ``{``), after whatever else the client printed."""
    if not lines:
        return None
    starts = [i for i, line in enumerate(lines) if line.strip() == "{"]
    return _json("".join(lines[starts[-1]:] if starts else lines[-1:]))


def first_error(document: dict):
    """An ``mpa-mn --json`` document's error, or its first result's; None if none."""
    error = document.get("error")
    if error is None:
        error = next((r.get("error") for r in document.get("results", [])
                      if isinstance(r, dict) and r.get("error")), None)
    return error


def error_of(document: dict) -> str:
    """What an ``mpa-mn --json`` document says went wrong."""
    error = first_error(document)
    if error is None:
        return str(document)[:300]
    if isinstance(error, dict):
        return f"{error.get('code')}: {error.get('message')}"
    return str(error)[:300]


def wait_ready(path: str, timeout_s: float, clock: Callable[[], float] = time.monotonic,
               sleep: Callable[[float], None] = time.sleep, start: int = 0) -> ClientSaid:
    """The ready (or switch) event the client writing to ``path`` prints
    after ``start`` (:func:`client_said`), once it has, with where it ends;
    NotReady if it failed first, or has not within ``timeout_s``."""
    deadline = clock() + timeout_s
    while True:
        text = _read(path)
        said = client_said(text, start) if text is not None else None
        if said is not None and said.event is not None:
            return said
        if said is not None:
            raise NotReady(f"the client writing to {path} failed: {said.failure}")
        if clock() >= deadline:
            if text is None:
                raise NotReady(f"{path} does not exist (where does the client write?)")
            tail = text.strip().splitlines()[-1:] or ["nothing"]
            raise NotReady(f"no ready event in {path} within {timeout_s:g} s "
                           f"(its last line: {tail[0][:200]})")
        sleep(POLL_S)


def _read(path: str) -> str | None:
    """The file's text so far (a byte that is not UTF-8 replaced: it is a
    log), or None if there is no such file."""
    try:
        with open(path, "rb") as f:
            data = f.read(MAX_BYTES)
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise NotReady(f"cannot read {path}: {exc.strerror or exc}") from None
    return data.decode("utf-8", errors="replace")


# -- a client waiting in an MN's host ----------------------------------------------------

CLIENT = "mpa-mn"
CLIENT_MODULE = "mpa_mn.cli"
WAIT_LINK = "--wait-link"


@dataclass(frozen=True)
class WaitingClient:
    """An mpa-mn waiting for its MN's link to switch."""

    pid: int
    command: tuple[str, ...]     # its arguments after the program
    output: str | None           # the regular file its stdout goes to, if any

    def __str__(self) -> str:
        return f"mpa-mn {' '.join(self.command)} (pid {self.pid})"


def waiting_for_link(argv: list[str]) -> tuple[str, ...] | None:
    """``argv``'s arguments if it is an mpa-mn that waits for the link to
    switch (``handover``/``reactive`` ``--wait-link``, ``follow``); else None."""
    for index, arg in enumerate(argv[:3]):
        if os.path.basename(arg) == CLIENT:
            command = tuple(argv[index + 1:])
            break
        if arg == "-m" and argv[index + 1:index + 2] == [CLIENT_MODULE]:
            command = tuple(argv[index + 2:])
            break
    else:
        return None
    if "follow" in command or (WAIT_LINK in command and (
            "handover" in command or "reactive" in command)):
        return command
    return None


def network_namespace(pid: int, proc: str = "/proc") -> tuple[int, int]:
    """Which network namespace ``pid`` is in (device and inode of its ns/net)."""
    found = os.stat(os.path.join(proc, str(pid), "ns", "net"))
    return found.st_dev, found.st_ino


def waiting_clients(namespace: tuple[int, int], proc: str = "/proc") -> list[WaitingClient]:
    """The mpa-mn processes in ``namespace`` (:func:`network_namespace`) that
    wait for the link to switch, lowest pid first.  A process that ends while
    it is looked at is left out."""
    found = []
    for entry in sorted((e for e in os.listdir(proc) if e.isdigit()), key=int):
        try:
            with open(os.path.join(proc, entry, "cmdline"), "rb") as f:
                argv = [a.decode("utf-8", "replace") for a in f.read().split(b"\0") if a]
            command = waiting_for_link(argv)
            if command is None or network_namespace(int(entry), proc) != namespace:
                continue
            found.append(WaitingClient(int(entry), command, _output_file(proc, entry)))
        except OSError:
            continue
    return found


def _output_file(proc: str, pid: str) -> str | None:
    """The regular file the process's stdout goes to, or None (a terminal, a pipe)."""
    try:
        path = os.readlink(os.path.join(proc, pid, "fd", "1"))
        return path if stat.S_ISREG(os.stat(path).st_mode) else None
    except OSError:
        return None

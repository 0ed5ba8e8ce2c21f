"""One domain's FreeRADIUS, run by the lab: started in the foreground on a
generated configuration, ready when it answers a Status-Server (RFC 5997),
stopped cleanly; when it does not start, the error carries its log's last
lines.

Several run side by side, each with its own configuration directory,
address and port.  Runs as whoever starts it (root in the lab): the
configuration names no ``user``/``group``.
"""

from __future__ import annotations

import secrets
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from mpa_lab.aaa.freeradius_config import ServerSettings, write_config
from mpa_sdn import radius

FREERADIUS = "freeradius"
READY_LINE = "Ready to process requests"
LOG_TAIL_LINES = 20


class RadiusServerError(RuntimeError):
    """FreeRADIUS did not start, or did not answer; the message holds its log's tail."""


def log_tail(path: Path, lines: int = LOG_TAIL_LINES) -> str:
    try:
        return "\n".join(Path(path).read_text(errors="replace").splitlines()[-lines:])
    except OSError as e:
        return f"(no log: {e})"


def check_config(confdir: Path, binary: str = FREERADIUS) -> subprocess.CompletedProcess:
    """``freeradius -C``: the configuration is read and checked, nothing started."""
    return subprocess.run([binary, "-C", "-d", str(confdir)], capture_output=True, text=True,
                          errors="replace", timeout=30, stdin=subprocess.DEVNULL)


def status_server(settings: ServerSettings, timeout_s: float) -> radius.Answer | None:
    """Ask the server whether it is there, from its client's address.

    None when no answer came within ``timeout_s``.  Raises OSError when the
    client's address is not one of this host's (the caller then relies on
    the log's readiness line).
    """
    identifier = secrets.randbelow(256)
    authenticator = secrets.token_bytes(radius.AUTHENTICATOR_BYTES)
    secret = settings.secret.encode()
    data = radius.status_server(identifier=identifier, authenticator=authenticator,
                                secret=secret, nas_identifier="mpa-lab")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind((settings.client_address, 0))
        s.settimeout(timeout_s)
        s.sendto(data, (settings.address, settings.auth_port))
        try:
            answer, _ = s.recvfrom(4096)
        except socket.timeout:
            return None
    return radius.parse_answer(answer, identifier=identifier, request_authenticator=authenticator,
                               secret=secret, request_code=radius.STATUS_SERVER)


class FreeRadiusServer:
    """A FreeRADIUS process serving one domain from ``confdir``."""

    def __init__(self, settings: ServerSettings, confdir: Path, binary: str = FREERADIUS):
        self.settings = settings
        self.confdir = Path(confdir)
        self.binary = shutil.which(binary) or binary
        self.process: subprocess.Popen | None = None
        self._output = None

    def start(self, timeout_s: float = 15.0) -> None:
        """Write the configuration, start the server and return once it answers."""
        write_config(self.settings, self.confdir)
        log = Path(self.settings.log_path)
        self._output = open(log.with_suffix(".stderr"), "wb")
        # -f: foreground, a child to wait for and signal; it logs to the
        # file its configuration names (settings.log_path).
        self.process = subprocess.Popen(
            [self.binary, "-f", "-d", str(self.confdir)],
            stdin=subprocess.DEVNULL, stdout=self._output, stderr=subprocess.STDOUT)
        try:
            self._wait_ready(time.monotonic() + timeout_s)
        except BaseException:
            self.stop()
            raise

    def _wait_ready(self, deadline: float) -> None:
        log = Path(self.settings.log_path)
        offset = log.stat().st_size if log.exists() else 0
        while True:
            if self.process.poll() is not None:
                raise RadiusServerError(self._failure(f"exited with {self.process.returncode}"))
            if READY_LINE in _read_from(log, offset):
                break
            if time.monotonic() > deadline:
                raise RadiusServerError(self._failure("no readiness line"))
            time.sleep(0.05)
        while True:
            try:
                if status_server(self.settings, timeout_s=0.5) is not None:
                    return
            except OSError:
                return          # not from this host: the readiness line is what we have
            except radius.RadiusError as e:
                # FreeRADIUS 3.2.1 answers Status-Server without a
                # Message-Authenticator (its EAP answers all carry one); the
                # Response Authenticator was checked first and is right, so
                # the server is there.  The AA never takes such an answer.
                if e.reason == "no-message-authenticator":
                    return
                raise RadiusServerError(self._failure(f"Status-Server answer refused ({e})"))
            if time.monotonic() > deadline:
                raise RadiusServerError(self._failure("no answer to Status-Server"))

    def _failure(self, what: str) -> str:
        s = self.settings
        stderr = log_tail(Path(s.log_path).with_suffix(".stderr"))
        return (f"FreeRADIUS for {s.domain} on {s.address}:{s.auth_port}: {what}\n"
                f"--- {s.log_path} ---\n{log_tail(s.log_path)}\n--- output ---\n{stderr}")

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self, timeout_s: float = 5.0) -> None:
        """SIGTERM, then SIGKILL past ``timeout_s``; safe to call twice."""
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout_s)
        if self._output is not None:
            self._output.close()
            self._output = None

    def __enter__(self) -> "FreeRadiusServer":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_from(path: Path, offset: int) -> str:
    try:
        with open(path, "rb") as f:
            f.seek(offset)
            return f.read().decode(errors="replace")
    except OSError:
        return ""


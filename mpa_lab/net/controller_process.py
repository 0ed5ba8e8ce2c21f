"""Run the real controller process next to the lab, and talk to its REST API.

Used by ``mpa-lab`` and by the integration tests: the controller is always
the installed ``mpa-controller`` in its own process (Ryu's eventlet patching
and Mininet cannot share one).
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request

from mpa_protocol import api_tokens
from mpa_protocol.http_opener import direct_opener
from mpa_protocol.program_output import json_output, utf8


MPA_CONTROLLER = os.path.join(os.path.dirname(sys.executable), "mpa-controller")


class ControllerProcess:
    def __init__(self, config: str, *, ofp_port: int = 6653, rest_port: int = 8080,
                 log_path: str | None = None, log_level: str = "INFO",
                 rest_host: str = "127.0.0.1", state_db: str | None = None,
                 domain: str | None = None):
        self.config = config
        # The one administrative domain it serves (--domain); None: all of them.
        self.domain = domain
        self.ofp_port = ofp_port
        self.rest_port = rest_port
        # The REST API listens on rest_host; MNs in the lab reach it over
        # their management links only when it listens beyond loopback.
        self.rest_host = rest_host
        self.state_db = state_db
        self.log_path = log_path
        self.log_level = log_level
        self.process: subprocess.Popen | None = None
        self._log = None
        # A token of each role, made for this process in a file of its own:
        # the API has no default credentials.
        self.tokens: dict[str, str] = {}
        self._token_dir: str | None = None

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.rest_port}"

    def start(self, timeout_s: float = 20.0) -> None:
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        try:
            # Whatever listens there now is not ours (a controller left from
            # an earlier run): talking to it would go unnoticed.
            socket.create_connection(("127.0.0.1", self.rest_port), timeout=1).close()
        except OSError:
            pass
        else:
            raise RuntimeError(f"something already listens on {self.base_url}; "
                               "stop it first (an earlier controller?)")
        self._log = open(self.log_path, "ab") if self.log_path else subprocess.DEVNULL
        tokens_path = self._make_tokens()
        self.process = subprocess.Popen(
            [MPA_CONTROLLER, "--config", self.config, "--ofp-port", str(self.ofp_port),
             "--rest-host", self.rest_host, "--rest-port", str(self.rest_port),
             "--log-level", self.log_level, "--api-tokens", tokens_path]
            + (["--state-db", self.state_db] if self.state_db else [])
            + (["--domain", self.domain] if self.domain else []),
            stdin=subprocess.DEVNULL, stdout=self._log, stderr=self._log,
            start_new_session=True)
        try:
            self._wait_answering(timeout_s)
        except BaseException:
            # Nothing of a controller that did not come up is left behind:
            # not the process, not its tokens file.
            self.close()
            raise

    def _wait_answering(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        while True:
            if self.process.poll() is not None:
                raise RuntimeError(f"{self.label} exited with {self.process.returncode}"
                                   + self._last_words())
            try:
                self.get("/mpa/v1/switches")   # a RuntimeError: it answers, but wrongly
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise TimeoutError(f"{self.label} did not answer on REST") from None
                time.sleep(0.1)

    def _last_words(self) -> str:
        """Why it stopped, as its log's last line says (e.g. that it cannot
        listen on a port another process holds), and where the rest is."""
        if not self.log_path:
            return ""
        try:
            with open(self.log_path, "rb") as log:
                log.seek(0, os.SEEK_END)
                log.seek(max(0, log.tell() - 4096))
                lines = log.read().decode(errors="replace").strip().splitlines()
        except OSError:
            lines = []
        return (f": {lines[-1].strip()}" if lines else "") + f"; see {self.log_path}"

    def _make_tokens(self) -> str:
        if self._token_dir is None:
            self._token_dir = tempfile.mkdtemp(prefix="mpa-tokens-")
        path = os.path.join(self._token_dir, "api-tokens.yaml")
        if not self.tokens:
            self.tokens = {role: api_tokens.add_token(path, f"lab-{role}", role)
                           for role in api_tokens.ROLES}
        return path

    def request(self, method: str, path: str, body=None, role: str | None = api_tokens.READER,
                headers: dict | None = None, timeout: float = 5):
        """One API call with a token of ``role`` (None: no token): (status,
        headers, parsed body)."""
        data = None if body is None else json.dumps(body).encode()
        status, answer_headers, raw = self._open(
            method, path, data, role, {**({"Content-Type": "application/json"}
                                          if data is not None else {}), **(headers or {})},
            timeout)
        return status, answer_headers, json_output(
            raw or b"null", f"{self.label}'s answer to {method} {path} ({status})")

    def _open(self, method: str, path: str, data: bytes | None, role: str | None,
              headers: dict, timeout: float) -> tuple[int, object, bytes]:
        token = {} if role is None else {"Authorization": f"Bearer {self.tokens[role]}"}
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers={**token, **headers})
        try:
            # Never through a proxy the environment names: the controller is local.
            with direct_opener().open(request, timeout=timeout) as response:
                return response.status, response.headers, response.read()
        except urllib.error.HTTPError as exc:
            with exc:
                return exc.code, exc.headers, exc.read()

    def get(self, path: str, role: str = api_tokens.READER):
        status, _, body = self.request("GET", path, role=role)
        if status != 200:
            raise RuntimeError(f"GET {path}: {status} {body}")
        return body

    def counters(self) -> dict:
        return self.get("/mpa/v1/counters")

    def mobile_nodes(self) -> list[dict]:
        return self.get("/mpa/v1/mobile-nodes")

    def metrics(self) -> dict[str, float]:
        """GET /metrics (Prometheus's text): sample (name and labels) -> value."""
        status, _, raw = self._open("GET", "/metrics", None, api_tokens.READER, {}, 5)
        if status != 200:
            raise RuntimeError(f"GET /metrics: {status} {raw[:200]!r}")
        return {line.rsplit(" ", 1)[0]: float(line.rsplit(" ", 1)[1])
                for line in utf8(raw, f"{self.label}'s GET /metrics").splitlines()
                if line and not line.startswith("#")}

    def wait_switches(self, timeout_s: float = 30.0, ids=None) -> list[dict]:
        """Until every switch it lists (or each of ``ids``, the switches a lab
        connected to it) is connected and reconciled; what it lists then."""
        deadline = time.monotonic() + timeout_s
        switches = []
        while True:
            try:
                switches = self.get("/mpa/v1/switches")
            except OSError:
                switches = switches or []
            ready = {s["id"] for s in switches if s["connected"] and s["reconciled"]}
            waited = {s["id"] for s in switches} if ids is None else set(ids)
            if switches and waited <= ready:
                return switches
            if time.monotonic() > deadline:
                missing = sorted(waited - ready)
                raise TimeoutError(f"switches not ready at {self.label}: "
                                   f"{', '.join(missing) or 'no answer'}")
            time.sleep(0.2)

    @property
    def label(self) -> str:
        """How messages name it."""
        return "mpa-controller" + (f" --domain {self.domain}" if self.domain else "")

    def stop(self, timeout_s: float = 10.0) -> int | None:
        if self.process is None:
            return None
        process, self.process = self.process, None
        if process.poll() is None:
            process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout_s)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        if self._log not in (None, subprocess.DEVNULL):
            self._log.close()
        self._log = None
        return process.returncode

    def close(self) -> None:
        """Stop, and remove the tokens file."""
        self.stop()
        if self._token_dir is not None:
            shutil.rmtree(self._token_dir, ignore_errors=True)
            self._token_dir, self.tokens = None, {}

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()

"""HTTP to the controller's northbound API: JSON calls and the event stream.

Standard library only.  The transport is an urllib opener (anything with
``open(request, timeout=)`` that answers as ``urllib.request`` does: a
response with ``status``, ``headers``, ``read`` and ``readline``, or
``HTTPError`` for 4xx/5xx), so the tests hand requests to the WSGI
application in-process.

A GET, or a POST that carries an ``Idempotency-Key``, is sent a second time
when the first attempt may have reached the controller but its answer did
not come back (a reset or a timeout): the controller answers the repeat of
a keyed POST with its first answer and does nothing twice.  Nothing else is
repeated: a refused connection sent nothing, and a PATCH has no key.
"""

from __future__ import annotations

import http.client
import json
import secrets
import ssl
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any, Callable, Iterator

from mpa_protocol.http_opener import direct_opener

MAX_ANSWER_BYTES = 32 << 20      # 1000 finished actions fit many times over
MAX_EVENT_LINE = 1 << 20         # one SSE line (an event's data is one line of JSON)
USER_AGENT = "mpa-ctl/1"
PROBLEM_PREFIX = "urn:mpa-sdn:problem:"
REPLAYED = "Idempotent-Replayed"
# Failures after which the request may have been handled: worth one repeat.
_MAYBE_HANDLED = (ConnectionResetError, ConnectionAbortedError, BrokenPipeError, TimeoutError,
                  http.client.IncompleteRead)
_WORDS = ((http.client.RemoteDisconnected, "the connection closed without an answer"),
          (ConnectionRefusedError, "connection refused"),
          (ConnectionResetError, "connection reset"),
          (TimeoutError, "timed out"))


class ApiError(Exception):
    """The controller refused: its problem (RFC 9457), or for an answer that is
    not one, a problem made of what came."""

    def __init__(self, status: int, problem: dict, headers=None):
        super().__init__(f"{status} {problem.get('title', '')}: {problem.get('detail', '')}")
        self.status, self.problem, self.headers = status, problem, headers

    @property
    def name(self) -> str | None:
        """The problem type's last part (``wrong-state``), or None."""
        kind = self.problem.get("type", "")
        return kind[len(PROBLEM_PREFIX):] if kind.startswith(PROBLEM_PREFIX) else None


class Unreachable(Exception):
    """No answer came: refused, reset, timed out, a name or TLS failure."""


class StreamBroken(Exception):
    """The event stream stopped in the middle (reset, silence, garbage)."""


@dataclass
class Answer:
    status: int
    headers: Any      # case-insensitive .get(), as http.client's
    body: Any         # the JSON, or None for an empty body

    @property
    def replayed(self) -> bool:
        return (self.headers.get(REPLAYED) or "").lower() == "true"


def new_key() -> str:
    """A fresh Idempotency-Key: 32 URL-safe characters (the API takes 1-64 printable)."""
    return secrets.token_urlsafe(24)


def describe(exc: BaseException) -> str:
    """A transport failure in a few words, without urllib's wrapping."""
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    if not isinstance(reason, BaseException):
        return str(reason)
    if isinstance(reason, ssl.SSLCertVerificationError):
        return f"TLS: {reason.verify_message} (signed by a private CA? --ca FILE)"
    for kind, words in _WORDS:
        if isinstance(reason, kind):
            return words
    text = getattr(reason, "strerror", None) or str(reason)
    return f"{type(reason).__name__}: {text}" if text else type(reason).__name__


def _maybe_handled(exc: BaseException) -> bool:
    reason = exc.reason if isinstance(exc, urllib.error.URLError) else exc
    return isinstance(reason, _MAYBE_HANDLED)


def _problem(status: int, headers, data: bytes) -> ApiError:
    try:
        body = json.loads(data)
    except ValueError:
        body = None
    if not isinstance(body, dict) or "status" not in body:
        text = data[:200].decode("utf-8", "replace").strip()
        body = {"status": status, "title": "not an answer of the mpa-sdn API",
                "detail": text or "(empty body)"}
    return ApiError(status, body, headers)


def _refusal(exc: urllib.error.HTTPError) -> ApiError:
    """A 4xx or 5xx answer as its problem; its connection closed."""
    try:
        data = exc.read(MAX_ANSWER_BYTES + 1)
    finally:
        exc.close()
    return _problem(exc.code, exc.headers, data)


class Client:
    def __init__(self, base_url: str, token: str | None = None, opener=None,
                 timeout: float = 10.0, on_retry: Callable[[str], None] | None = None):
        self.base_url = base_url.rstrip("/")
        self.token = token
        self.opener = opener if opener is not None else direct_opener()
        self.timeout = timeout
        self.on_retry = on_retry or (lambda message: None)

    def url(self, path: str, query: dict | None = None) -> str:
        query = {k: v for k, v in (query or {}).items() if v is not None}
        return self.base_url + path + ("?" + urllib.parse.urlencode(query) if query else "")

    def _request(self, method: str, url: str, body=None, headers: dict | None = None):
        request = urllib.request.Request(url, method=method, data=None if body is None else
                                         json.dumps(body).encode())
        request.add_header("User-Agent", USER_AGENT)
        if body is not None:
            request.add_header("Content-Type", "application/json")
        if self.token is not None:
            request.add_header("Authorization", f"Bearer {self.token}")
        for name, value in (headers or {}).items():
            request.add_header(name, value)
        return request

    def call(self, method: str, path: str, body=None, query: dict | None = None,
             key: str | None = None) -> Answer:
        """One call; ApiError for a refusal, Unreachable when no answer came."""
        url = self.url(path, query)
        headers = {"Accept": "application/json"}
        if key is not None:
            headers["Idempotency-Key"] = key
        repeatable = method == "GET" or key is not None
        while True:
            try:
                return self._once(self._request(method, url, body, headers))
            except (OSError, http.client.HTTPException) as exc:
                if not (repeatable and _maybe_handled(exc)):
                    raise Unreachable(f"{method} {url}: {describe(exc)}") from None
                repeatable = False      # once
                self.on_retry(f"{method} {url}: {describe(exc)}; sending it again"
                              + (" with the same Idempotency-Key" if key else ""))

    def _once(self, request) -> Answer:
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                data = response.read(MAX_ANSWER_BYTES + 1)
                status, headers = response.status, response.headers
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        if len(data) > MAX_ANSWER_BYTES:
            raise ApiError(status, {"status": status, "title": "answer too long",
                                    "detail": f"over {MAX_ANSWER_BYTES} bytes"}, headers)
        try:
            body = json.loads(data) if data else None
        except ValueError:
            raise _problem(status, headers, data) from None
        return Answer(status, headers, body)

    def stream(self, path: str, query: dict | None = None, last_event_id: str | None = None,
               timeout: float | None = None) -> "EventStream":
        """The open event stream; ``timeout``: the longest silence before
        reading fails (the server sends a comment every 15 s)."""
        headers = {"Accept": "text/event-stream"}
        if last_event_id is not None:
            headers["Last-Event-ID"] = last_event_id
        url = self.url(path, query)
        request = self._request("GET", url, headers=headers)
        try:
            response = self.opener.open(request, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as exc:
            raise _refusal(exc) from None
        except (OSError, http.client.HTTPException) as exc:
            raise Unreachable(f"GET {url}: {describe(exc)}") from None
        kind = (response.headers.get("Content-Type") or "").split(";")[0].strip()
        if kind != "text/event-stream":
            data = response.read(MAX_ANSWER_BYTES)
            response.close()
            raise _problem(response.status, response.headers, data)
        return EventStream(response)


class EventStream:
    """An open ``text/event-stream``: iterating yields each event (the Event
    object of the document) and None for each comment (the heartbeat), so a
    reader can look at its clock; ``last_id`` is the last ``id:`` seen."""

    def __init__(self, response):
        self.response = response
        self.last_id: str | None = None

    def close(self) -> None:
        self.response.close()

    def __iter__(self) -> Iterator[dict | None]:
        data: list[str] = []
        ident = None
        while True:
            try:
                line = self.response.readline(MAX_EVENT_LINE + 1)
            except (OSError, http.client.HTTPException, ValueError) as exc:
                raise StreamBroken(describe(exc)) from None
            if not line:
                return   # the controller ended it (a limit, or it is stopping)
            if len(line) > MAX_EVENT_LINE:
                raise StreamBroken(f"a line over {MAX_EVENT_LINE} bytes")
            text = line.decode("utf-8", "replace").rstrip("\r\n")
            if text.startswith(":"):
                yield None
                continue
            if text:
                field, _, value = text.partition(":")
                value = value[1:] if value.startswith(" ") else value
                if field == "data":
                    data.append(value)
                elif field == "id":
                    ident = value
                continue
            if data:   # a blank line ends an event
                try:
                    event = json.loads("\n".join(data))
                except ValueError:
                    raise StreamBroken("an event that is not JSON") from None
                if ident is not None:
                    self.last_id = ident
                yield event
            data, ident = [], None

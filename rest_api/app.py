"""The REST API (``/mpa/v1``, and ``/metrics`` for Prometheus), as a plain WSGI
application.

It parses the path, calls the core's facade and maps errors to status
codes; nothing else.  Tests drive it in-process with ``webob.Request.blank``.

The MN's messages (the REST signalling channel, docs/signalling.md) are
POSTed as JSON to the endpoint of their kind; the body is handed as bytes
to the one handler both channels share, and its answer is the response.
"""

from __future__ import annotations

import json
import logging
import re

from webob import Request, Response

from mpa_sdn import signalling
from mpa_sdn.facade import Facade, NotFound
from mpa_sdn.metrics import CONTENT_TYPE as METRICS_TYPE

LOG = logging.getLogger("rest_api")

_ID = rf"(?P<id>{signalling.ID_PATTERN})"
# Which messages each signalling endpoint takes.
WAIT_FOR_DAD_S = 3.0  # a configuration held back by DAD answers within this, or 503
# (method, path pattern, facade call); the first matching pattern wins.
ROUTES = [
    ("GET", r"/mpa/v1/networks", lambda f, m: f.networks()),
    ("GET", rf"/mpa/v1/networks/{_ID}", lambda f, m: f.network(m["id"])),
    ("GET", rf"/mpa/v1/networks/{_ID}/neighbours", lambda f, m: f.neighbours(m["id"])),
    ("GET", rf"/mpa/v1/networks/{_ID}/leases", lambda f, m: f.leases(m["id"])),
    ("GET", rf"/mpa/v1/networks/{_ID}/pool", lambda f, m: f.pool(m["id"])),
    ("GET", r"/mpa/v1/sas", lambda f, m: f.sas()),
    ("GET", r"/mpa/v1/mobile-nodes", lambda f, m: f.mobile_nodes()),
    ("GET", r"/mpa/v1/handovers", lambda f, m: f.handovers()),
    ("GET", r"/mpa/v1/switches", lambda f, m: f.switches()),
    ("GET", r"/mpa/v1/counters", lambda f, m: f.counters()),
    ("POST", r"/mpa/v1/discover", ("discover",)),
    ("GET", r"/metrics", lambda f, m: _metrics(f.metrics())),
] + [("POST", rf"/mpa/v1/networks/{_ID}/{name}", kinds)
     for name, kinds in signalling.SIGNAL_ENDPOINTS.items()]
_COMPILED = [(method, re.compile(pattern + r"/?\Z"), call) for method, pattern, call in ROUTES]


def _metrics(text: bytes) -> Response:
    """Prometheus's text format, as it is."""
    return Response(content_type=METRICS_TYPE.split(";")[0], charset="utf-8", body=text)


def _json(status: int, body) -> Response:
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.text = json.dumps(body, indent=1, sort_keys=True) + "\n"
    return response


def _error(status: int, message: str, **extra) -> Response:
    return _json(status, {"error": {"status": status, "message": message, **extra}})


def _message(status: int, fields: dict) -> Response:
    """A signalling message as the response: its wire form, byte for byte."""
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.body = signalling.encode(fields)
    if fields.get("retry_after"):
        response.retry_after = fields["retry_after"]
    return response


class RestApi:
    def __init__(self, facade: Facade, counters=None):
        self.facade = facade
        self.counters = counters if counters is not None else {}

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        matched = [(method, m, call) for method, pattern, call in _COMPILED
                   if (m := pattern.match(request.path_info))]
        if not matched:
            self._count("rest_not_found")
            return _error(404, f"no such resource: {request.path_info}")
        allowed = sorted({method for method, _, _ in matched} | {"HEAD"})
        for method, m, call in matched:
            if request.method in (method, "HEAD" if method == "GET" else None):
                if method == "POST":
                    return self._signal(request, m.groupdict().get("id"), call)
                try:
                    body = call(self.facade, m.groupdict())
                except NotFound as exc:
                    self._count("rest_not_found")
                    return _error(404, str(exc), kind=exc.kind, id=exc.ident)
                except Exception:  # a bug: say so without leaking internals
                    self._count("rest_internal_error")
                    LOG.exception("%s %s failed", request.method, request.path_info)
                    return _error(500, "internal error; see the controller log")
                self._count("rest_ok")
                return body if isinstance(body, Response) else _json(200, body)
        self._count("rest_method_not_allowed")
        response = _error(405, f"{request.method} is not allowed on {request.path_info}",
                          allowed=allowed)
        response.allow = allowed
        return response

    def _signal(self, request: Request, network: str | None, kinds: tuple) -> Response:
        """One MN message: checked here only for what HTTP itself carries."""
        limit = self.facade.max_message_bytes
        if request.content_type != "application/json":
            self._count("rest_signal_refused")
            return _message(415, signalling.error(
                "malformed", "the body must be a JSON message (Content-Type: application/json)"))
        if request.content_length is not None and request.content_length > limit:
            self._count("rest_signal_refused")
            return _message(413, signalling.error("oversized", f"at most {limit} bytes"))
        body = request.body_file.read(limit + 1)
        try:
            answer = self.facade.signal(body, network, request.remote_addr or "", kinds)
        except NotFound as exc:
            self._count("rest_not_found")
            return _message(404, signalling.error("unknown-network", str(exc)))
        except Exception:  # a bug: say so without leaking internals
            self._count("rest_internal_error")
            LOG.exception("%s %s failed", request.method, request.path_info)
            return _error(500, "internal error; see the controller log")
        if answer is None:
            # No answer in time: a configuration held back by duplicate
            # address detection, or a controller too busy to get to it.
            self._count("rest_signal_pending")
            if "config-request" in kinds:
                return _message(503, signalling.error(
                    "address-pending", "duplicate address detection is still running; "
                    "send the same message again", retry_after=1))
            return _message(503, signalling.error(
                "busy", "the controller did not get to it in time; send it again",
                retry_after=1))
        self._count("rest_signal_answered" if answer.status < 400 else "rest_signal_refused")
        return _message(answer.status, answer.fields)

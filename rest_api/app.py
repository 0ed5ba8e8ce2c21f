"""The REST API (``/mpa/v1``, and ``/metrics`` for Prometheus), as a plain WSGI
application.

Every route is an operation of the OpenAPI document (``openapi.yaml``,
served at ``/mpa/v1/openapi.json``): the document says which parameters
and bodies an operation takes, and they are checked against it here
before the facade is called. This module parses, authenticates, checks
and maps errors to problems (RFC 9457); the core decides.
Tests drive it in-process with ``webob.Request.blank``.

The MN's messages (the REST signalling channel, docs/signalling.md) are
POSTed as JSON to the endpoint of their kind; the body is handed as bytes
to the one handler both channels share, and its answer is the response.
They carry their own authentication (the MPA-SA), not a bearer token.
"""

from __future__ import annotations

import functools
import json
import logging
import re
import ssl
from dataclasses import dataclass
from typing import Callable
from urllib.parse import quote

from webob import Request, Response

from mpa_protocol import api_tokens, messages
from mpa_sdn.facade import Busy, Conflict, Facade, NotFound, Unavailable, Unprocessable
from mpa_sdn.metrics import CONTENT_TYPE as METRICS_TYPE
from mpa_sdn.topology import ControllerSettings
from rest_api import spec
from rest_api.event_stream import stream_events
from rest_api.idempotency import Idempotency
from rest_api.limits import Slots
from rest_api.problems import Problem, json_list_response, json_response

LOG = logging.getLogger("rest_api")

WAIT_FOR_DAD_S = 3.0  # a configuration held back by DAD answers within this, or 503
MAX_BODY_BYTES = 4096  # a policy engine's or an admin's request body
REALM = 'Bearer realm="mpa-sdn"'
LIST_CHUNK = 200      # a list's rows encoded at a time, the worker let in between
# The signalling endpoint of each operation (the rest are under /networks/{id}/).
SIGNAL_OPERATIONS = {"signalDiscover": ("discover",), **{
    "signal" + name.capitalize(): kinds for name, kinds in messages.SIGNAL_ENDPOINTS.items()}}


@dataclass
class Call:
    """One request, once it is routed, authenticated and checked."""

    request: Request
    params: dict            # path parameters, as the document types them
    query: dict
    body: object            # the JSON body, checked; None without one
    principal: api_tokens.Principal | None


def _message(status: int, fields: dict) -> Response:
    """A signalling message as the response: its wire form, byte for byte."""
    response = Response(status=status, content_type="application/json", charset="utf-8")
    response.body = messages.encode(fields)
    if fields.get("retry_after"):
        response.retry_after = fields["retry_after"]
    return response


def _accepted(action: dict) -> Response:
    return json_response(202, action, {"Location": f"/mpa/v1/actions/{action['id']}"})


# operationId -> (role, handler(api, call) -> Response or JSON-able)
def _get(read: Callable) -> tuple[str, Callable]:
    return api_tokens.READER, lambda api, c: read(api.facade, **c.params)


def _act(kind: str) -> tuple[str, Callable]:
    return api_tokens.POLICY_ENGINE, lambda api, c: _accepted(api.facade.act(
        kind, c.params["identity"], c.body, c.principal.name))


HANDLERS: dict[str, tuple[str | None, Callable]] = {
    "getOpenApi": (None, lambda api, c: Response(
        content_type="application/json", charset="utf-8", body=spec.document_json())),
    "listNetworks": _get(lambda f: f.networks()),
    "getNetwork": _get(lambda f, network_id: f.network(network_id)),
    "listNeighbours": _get(lambda f, network_id: f.neighbours(network_id)),
    "listLeases": _get(lambda f, network_id: f.leases(network_id)),
    "getPool": _get(lambda f, network_id: f.pool(network_id)),
    "getNetworkPolicy": _get(lambda f, network_id: f.policy(network_id)),
    "updateNetworkPolicy": (api_tokens.ADMIN, lambda api, c: api.facade.update_policy(
        c.params["network_id"], c.body, c.principal.name)),
    "listSas": _get(lambda f: f.sas()),
    "listMobileNodes": _get(lambda f: f.mobile_nodes()),
    "getMobileNode": _get(lambda f, identity: f.mobile_node(identity)),
    "prepareCandidates": _act("prepare"),
    "startPreSwitch": _act("pre-switch"),
    "completeHandover": _act("complete"),
    "cancelHandover": _act("cancel"),
    "releaseCandidate": _act("release"),
    "listActions": (api_tokens.READER, lambda api, c: api.facade.actions(**c.query)),
    "getAction": _get(lambda f, action_id: f.action(action_id)),
    "listHandovers": _get(lambda f: f.handovers()),
    "streamEvents": (api_tokens.READER, lambda api, c: stream_events(api.facade, c, api.streams)),
    "listSwitches": _get(lambda f: f.switches()),
    "getCounters": _get(lambda f: f.counters()),
    "getMetrics": (api_tokens.READER, lambda api, c: Response(
        content_type=METRICS_TYPE.split(";")[0], charset="utf-8", body=api.facade.metrics())),
    **{op: (None, None) for op in SIGNAL_OPERATIONS},
}


@dataclass(frozen=True)
class Route:
    method: str
    template: str
    operation: str
    role: str | None
    handler: Callable | None
    checks: spec.Checks
    pattern: re.Pattern     # the template's, compiled once

    def match(self, path: str):
        return self.pattern.match(path)


@functools.cache
def routes() -> tuple[Route, ...]:
    """Every operation's route, built (patterns and validators) once per process."""
    found = []
    for (method, template), op in spec.operations().items():
        role, handler = HANDLERS[op["operationId"]]
        found.append(Route(method, template, op["operationId"], role, handler,
                           spec.Checks(op), spec.template_regex(template)))
    # Literal segments before parameters: /networks/{id} is not /openapi.json.
    return tuple(sorted(found, key=lambda r: r.template.count("{")))


def find_route(method: str, path: str) -> tuple[Route, dict]:
    """The route of ``method`` (HEAD as GET) on ``path``, and its path parameters
    as sent; a problem when there is none: 404, or 405 with the methods allowed."""
    matched = [(r, m) for r in routes() if (m := r.match(path))]
    if not matched:
        raise Problem("not-found", f"no such resource: {path}")
    wanted = "GET" if method == "HEAD" else method
    for route, m in matched:
        if route.method == wanted:
            return route, m.groupdict()
    allowed = sorted({r.method for r, _ in matched} | (
        {"HEAD"} if any(r.method == "GET" for r, _ in matched) else set()))
    raise Problem("method-not-allowed", f"{method} is not allowed on {path}",
                  headers={"Allow": ", ".join(allowed)}, allowed=allowed)


class BodyLost(Exception):
    """The body could not be read whole: the client went away, was too slow
    or broke the chunked framing.  Counted under ``counter``; the server
    closes the connection after ``problem`` (which a gone client never gets)."""

    def __init__(self, counter: str, problem: Problem, cause: Exception):
        super().__init__(str(cause))
        self.counter, self.problem = counter, problem


def read_body(request: Request, limit: int) -> bytes:
    """The body, up to ``limit`` + 1 bytes (more is the caller's 413), with or
    without Content-Length (chunked); a body cut short is :class:`BodyLost`,
    never a traceback or a 500: it is the client's doing."""
    try:
        data = request.body_file.read(limit + 1)
    except TimeoutError as exc:
        raise BodyLost("rest_timeout_body", Problem(
            "request-timeout", "the body did not arrive in time"), exc) from None
    except ssl.SSLError as exc:
        raise BodyLost("rest_tls_error", Problem(
            "incomplete-body", "TLS failed while the body arrived"), exc) from None
    except OSError as exc:
        raise BodyLost("rest_client_disconnected", Problem(
            "incomplete-body", "the connection ended before the body was whole"), exc) from None
    except ValueError as exc:   # the server's chunked reader: a chunk size that is none
        raise BodyLost("rest_body_malformed", Problem(
            "incomplete-body", "the chunked framing is broken"), exc) from None
    length = request.content_length
    if length is not None and len(data) < min(length, limit + 1):
        raise BodyLost("rest_client_disconnected", Problem(
            "incomplete-body", f"{len(data)} of {length} bytes arrived"),
            EOFError("short body"))
    return data


class RestApi:
    def __init__(self, facade: Facade, counters=None, tokens: api_tokens.Tokens | None = None,
                 max_streams: int = ControllerSettings.rest_max_streams,
                 streams_per_token: int = ControllerSettings.rest_streams_per_token,
                 pause: Callable[[], None] | None = None):
        self.facade = facade
        # The shell's way to let its other threads run (the worker) while a
        # long answer is encoded; None: encoded in one go.
        self.pause = pause
        self.counters = counters if counters is not None else {}
        self.tokens = tokens if tokens is not None else api_tokens.Tokens()
        self.idempotency = Idempotency(facade.store, facade.wall, self.counters)
        # Event streams open at once, in all and per token's name.
        self.streams = Slots(max_streams, streams_per_token, self.counters, "rest_streams",
                             key_name="token", gauge=True)

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def __call__(self, environ, start_response):
        request = Request(environ)
        response = self.handle(request)
        return response(environ, start_response)

    def handle(self, request: Request) -> Response:
        # The path is named (_path) only in a refusal: a request that
        # succeeds does not pay for it.
        try:
            return self._handle(request)
        except Problem as problem:
            self._count(f"rest_{problem.name.replace('-', '_')}")
            return problem.response(_path(request))
        except BodyLost as lost:
            self._count(lost.counter)
            path = _path(request)
            LOG.info("%s %s from %s: %d %s (%s)", request.method, path,
                     request.remote_addr, lost.problem.status, lost.problem.detail, lost)
            return lost.problem.response(path)
        except Exception:  # a bug: say so without leaking internals
            self._count("rest_internal_error")
            path = _path(request)
            LOG.exception("%s %s failed", request.method, path)
            return Problem("internal-error", "see the controller's log").response(path)

    def _handle(self, request: Request) -> Response:
        # webob decodes both as UTF-8 when they are first read.
        try:
            request.path_info
        except UnicodeDecodeError:      # a path that is no text names nothing
            raise Problem("not-found", f"no such resource: {_path(request)}") from None
        try:
            request.GET
        except UnicodeDecodeError:
            raise Problem("invalid-request", "the query is not UTF-8 once percent-decoded",
                          errors=[{"pointer": "/", "detail": "not UTF-8"}]) from None
        return self._route(request)

    def _route(self, request: Request) -> Response:
        route, raw_params = find_route(request.method, request.path_info)
        principal = self._authenticate(request, route)
        params = self._path_params(route, raw_params)
        if route.operation in SIGNAL_OPERATIONS:
            return self._signal(request, params.get("network_id"),
                                SIGNAL_OPERATIONS[route.operation])
        query = self._query(route, request)
        self._headers(route, request)
        body = self._body(route, request)
        call = Call(request, params, query, body, principal)
        key = request.headers.get("Idempotency-Key")
        if request.method == "POST" and key is not None:
            response = self.idempotency.run(principal.name, request, key, body,
                                            lambda: self._call(route, call))
        else:
            response = self._call(route, call)
        self._count("rest_ok")
        return response

    def _call(self, route: Route, call: Call) -> Response:
        try:
            result = route.handler(self, call)
        except NotFound as exc:
            raise Problem("not-found", str(exc)) from None
        except Conflict as exc:
            raise Problem(exc.code, str(exc)) from None
        except Unprocessable as exc:
            raise Problem("unprocessable", str(exc)) from None
        except Unavailable as exc:
            raise Problem("unavailable", str(exc), headers={"Retry-After": "1"}) from None
        if isinstance(result, Response):
            return result
        if isinstance(result, list) and len(result) > LIST_CHUNK and self.pause is not None:
            return json_list_response(result, LIST_CHUNK, self.pause)
        return json_response(200, result)

    # -- checks, in the order a client would want to hear of them --------------

    def _authenticate(self, request: Request, route: Route) -> api_tokens.Principal | None:
        if route.role is None:
            return None
        header = request.headers.get("Authorization")
        if header is None:
            self._count("rest_auth_missing")
            raise Problem("unauthorized", "send Authorization: Bearer TOKEN",
                          headers={"WWW-Authenticate": REALM})
        scheme, _, token = header.partition(" ")
        principal = (self.tokens.identify(token.strip())
                     if scheme.lower() == "bearer" else None)
        if principal is None:
            self._count("rest_auth_invalid")
            LOG.warning("%s %s from %s: unknown or malformed bearer token", request.method,
                        request.path_info, request.remote_addr)
            raise Problem("unauthorized", "the bearer token is not one this controller knows",
                          headers={"WWW-Authenticate": REALM + ', error="invalid_token"'})
        if not principal.may(route.role):
            self._count("rest_auth_forbidden")
            LOG.warning("%s %s: token %s (%s) may not; needs %s", request.method,
                        request.path_info, principal.name, principal.role, route.role)
            raise Problem("forbidden", f"the token's role ({principal.role}) may not; "
                          f"this needs {route.role}")
        return principal

    @staticmethod
    def _path_params(route: Route, raw: dict) -> dict:
        """A parameter that cannot name anything names nothing: 404."""
        params = {}
        for name, value in raw.items():
            parameter, check = route.checks.path[name]
            params[name] = _typed(parameter, value)
            if not check.is_valid(params[name]):
                raise Problem("not-found", f"no {name.replace('_', ' ')} {value!r:.60}")
        return params

    @staticmethod
    def _query(route: Route, request: Request) -> dict:
        accepted = route.checks.query
        problems, query = [], {}
        for name in dict.fromkeys(request.GET.keys()):     # each name once
            if name not in accepted:
                problems.append({"pointer": name, "detail": "unknown query parameter"})
            elif len(request.GET.getall(name)) > 1:
                problems.append({"pointer": name, "detail": "given more than once"})
        for name, (parameter, check) in accepted.items():
            if name not in request.GET or any(p["pointer"] == name for p in problems):
                continue
            value = _typed(parameter, request.GET[name])
            if check.is_valid(value):
                query[name] = value
            else:
                problems += spec.errors(check, value, prefix=name)
        if problems:
            raise Problem("invalid-request", "query parameters do not fit the API",
                          errors=problems)
        return query

    @staticmethod
    def _headers(route: Route, request: Request) -> None:
        problems = []
        for name, (parameter, check) in route.checks.header.items():
            value = request.headers.get(name)
            if value is not None and not check.is_valid(value):
                problems += spec.errors(check, value, prefix=parameter["name"])
        if problems:
            raise Problem("invalid-request", "a header does not fit the API", errors=problems)

    @staticmethod
    def _body(route: Route, request: Request):
        if route.checks.body is None:
            if request.content_length:
                raise Problem("invalid-request", "this operation takes no body",
                              errors=[{"pointer": "/", "detail": "no body expected"}])
            return None
        if request.content_type != "application/json":
            raise Problem("unsupported-media-type",
                          f"Content-Type {request.content_type or 'none'!r:.60}; send "
                          "application/json")
        if request.content_length is not None and request.content_length > MAX_BODY_BYTES:
            raise Problem("payload-too-large", f"at most {MAX_BODY_BYTES} bytes")
        data = read_body(request, MAX_BODY_BYTES)
        if len(data) > MAX_BODY_BYTES:
            raise Problem("payload-too-large", f"at most {MAX_BODY_BYTES} bytes")
        try:
            body = json.loads(data.decode("utf-8"), object_pairs_hook=_no_duplicates,
                              parse_constant=_no_constant)
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise Problem("malformed-json", f"not JSON: {str(exc)[:120]}") from None
        if not isinstance(body, dict):
            raise Problem("malformed-json", "the body must be one JSON object")
        problems = spec.errors(route.checks.body, body)
        if problems:
            raise Problem("invalid-request", "the body does not fit the API", errors=problems)
        return body

    # -- the MN's signalling ---------------------------------------------------

    def _signal(self, request: Request, network: str | None, kinds: tuple) -> Response:
        """One MN message: checked here only for what HTTP itself carries."""
        limit = self.facade.max_message_bytes
        if request.content_type != "application/json":
            self._count("rest_signal_refused")
            return _message(415, messages.error(
                "malformed", "the body must be a JSON message (Content-Type: application/json)"))
        if request.content_length is not None and request.content_length > limit:
            self._count("rest_signal_refused")
            return _message(413, messages.error("oversized", f"at most {limit} bytes"))
        body = read_body(request, limit)
        try:
            answer = self.facade.signal(body, network, request.remote_addr or "", kinds)
        except NotFound as exc:
            self._count("rest_not_found")
            return _message(404, messages.error("unknown-network", str(exc)))
        except Busy as exc:     # refused before it was queued: the shell counted why
            return _message(503, messages.error("busy", f"{exc}; send it again",
                                                retry_after=1))
        if answer is None:
            # No answer in time: a configuration held back by duplicate
            # address detection, or a controller too busy to get to it.
            self._count("rest_signal_pending")
            if "config-request" in kinds:
                return _message(503, messages.error(
                    "address-pending", "duplicate address detection is still running; "
                    "send the same message again", retry_after=1))
            return _message(503, messages.error(
                "busy", "the controller did not get to it in time; send it again",
                retry_after=1))
        self._count("rest_signal_answered" if answer.status < 400 else "rest_signal_refused")
        return _message(answer.status, answer.fields)


def _path(request: Request) -> str:
    """The request's path as a problem's ``instance`` names it: decoded, or,
    when it is no UTF-8, as sent (percent-encoded)."""
    try:
        return request.path_info
    except UnicodeDecodeError:
        return request.environ.get("RAW_PATH_INFO") or quote(
            request.environ.get("PATH_INFO", "").encode("latin-1"), safe="/")


def _typed(parameter: dict, value: str):
    """A parameter of type integer as an int when it is one; any other value as
    sent, for the parameter's check to refuse."""
    # ASCII only: isdigit() takes "²" (int() fails) and "١" (int() reads 1); at most
    # 16 digits, so that int() never reads thousands.
    if parameter["schema"].get("type") == "integer" and value.isascii() and value.isdigit() \
            and len(value) <= 16:
        return int(value)
    return value


def _no_duplicates(pairs):
    keys = [k for k, _ in pairs]
    if len(keys) != len(set(keys)):
        raise ValueError("a key appears twice in one object")
    return dict(pairs)


def _no_constant(name):
    raise ValueError(f"{name} is not JSON")

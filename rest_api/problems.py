"""RFC 9457 problem details: the API's errors, each with a stable ``type``.

The table of types is also in the OpenAPI document's description, and a
test keeps the two the same.
"""

from __future__ import annotations

import json

from webob import Response

PROBLEM_TYPE = "application/problem+json"
PREFIX = "urn:mpa-sdn:problem:"
# name -> (status, title)
TYPES = {
    "malformed-json": (400, "The body is not one JSON object"),
    "incomplete-body": (400, "The body did not arrive whole"),
    "invalid-request": (400, "The request breaks the API's schema"),
    "unauthorized": (401, "A valid bearer token is needed"),
    "forbidden": (403, "The token's role may not do this"),
    "not-found": (404, "No such resource"),
    "method-not-allowed": (405, "The resource does not take this method"),
    "wrong-state": (409, "The mobile node's state does not allow it now"),
    "too-soon": (409, "The mobile node arrived in its network too recently"),
    "idempotency-key-in-use": (409, "A request with this Idempotency-Key is in progress"),
    "request-timeout": (408, "The body did not arrive in time"),
    "payload-too-large": (413, "The body is too long"),
    "unsupported-media-type": (415, "The body must be application/json"),
    "unprocessable": (422, "The request cannot be carried out here"),
    "idempotency-key-reused": (422, "This Idempotency-Key was used with another request"),
    "internal-error": (500, "Internal error; see the controller's log"),
    "unavailable": (503, "The controller did not get to it in time"),
}


def _encode(body) -> str:
    return json.dumps(body, sort_keys=True, separators=(",", ":"))


def json_list_response(rows: list, chunk: int, pause) -> Response:
    """A long list as :func:`json_response` writes it, byte for byte, encoded
    ``chunk`` rows at a time with ``pause()`` between them: the REST thread
    shares the worker's one OS thread, and one encoding of 2,000 switches'
    rows held the worker up for tens of milliseconds."""
    def pieces():
        yield b"["
        for start in range(0, len(rows), chunk):
            if start:
                pause()
                yield b","
            yield ",".join(_encode(row) for row in rows[start:start + chunk]).encode()
        yield b"]\n"
    return Response(status=200, content_type="application/json", charset="utf-8",
                    app_iter=pieces())


def json_response(status: int, body, headers: dict | None = None,
                  content_type: str = "application/json") -> Response:
    """``body`` as compact JSON, its keys sorted.  Not indented: Python's
    JSON encoder indents in pure Python, ten times slower than its C
    encoder, and a view of 2,000 switches spent 190 ms there."""
    response = Response(status=status, content_type=content_type, charset="utf-8")
    response.text = _encode(body) + "\n"
    for name, value in (headers or {}).items():
        response.headers[name] = value
    return response


class Problem(Exception):
    """Raised anywhere in the REST layer; becomes the response."""

    def __init__(self, name: str, detail: str, headers: dict | None = None, **extensions):
        assert name in TYPES, name
        super().__init__(detail)
        self.name, self.detail = name, detail
        self.status = TYPES[name][0]
        self.headers = headers or {}
        self.extensions = extensions

    def response(self, instance: str | None = None) -> Response:
        body = {"type": PREFIX + self.name, "title": TYPES[self.name][1],
                "status": self.status, "detail": self.detail, **self.extensions}
        if instance:
            body["instance"] = instance
        return json_response(self.status, body, self.headers, PROBLEM_TYPE)

"""Checks a response against the OpenAPI document: the operation must list
its status, its content type, and its body must fit the schema there."""

from __future__ import annotations

import json
from urllib.parse import unquote

from jsonschema import FormatChecker

from rest_api import spec
from rest_api.app import find_route
from rest_api.problems import Problem

SEEN: set[tuple[str, int]] = set()   # (operationId, status) of every response checked


def operation_of(method: str, path: str) -> dict | None:
    """The operation the server routes ``method path`` to (unit/rest/test_openapi.py shows
    its routes are the document's operations), or None for a 404 or 405."""
    try:
        route, _ = find_route(method, unquote(path.split("?")[0]))
    except Problem:
        return None
    return route.checks.operation


def documented(op: dict, status: int) -> dict | None:
    """The operation's response for ``status`` (or its range, ``4XX``), or None."""
    responses = op["responses"]
    entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
    return spec._resolve(entry) if entry is not None else None


def check_response(method: str, path: str, response) -> None:
    status = response.status_int
    op = operation_of(method, path)
    ctype = response.content_type
    if op is None:
        # No operation: a problem (404, 405) as every other error.
        assert status in (404, 405), (method, path, status)
        assert ctype == "application/problem+json", (method, path, ctype)
        body, schema = json.loads(response.body), {"$ref": "#/components/schemas/Problem"}
        errors = list(spec.validator(schema, FormatChecker()).iter_errors(body))
        assert not errors, (method, path, [e.message for e in errors])
        return
    SEEN.add((op["operationId"], status))
    entry = documented(op, status)
    assert entry is not None, f"{method} {path}: {status} is not documented for " \
                              f"{op['operationId']}"
    content = entry.get("content", {})
    if not content:
        assert not response.body, f"{op['operationId']} {status}: a body where none is documented"
        return
    assert ctype in content, f"{op['operationId']} {status}: {ctype} not in {list(content)}"
    for header, spec_ in entry.get("headers", {}).items():
        assert header in response.headers, f"{op['operationId']} {status}: no {header}"
    if method == "HEAD" or ctype not in ("application/json", "application/problem+json"):
        return
    body = json.loads(response.body)
    errors = list(spec.validator(content[ctype]["schema"], FormatChecker())
                  .iter_errors(body))
    assert not errors, (op["operationId"], status,
                        [(list(e.absolute_path), e.message[:300]) for e in errors[:5]])

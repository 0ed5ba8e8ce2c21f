"""The REST API in-process, with a token of each role and every response
checked against the OpenAPI document (tests/test_openapi.py's checker)."""

from __future__ import annotations

import json

from webob import Request

from rest_api import auth

TOKENS = {auth.READER: "reader-token-for-tests-only-0000000000",
          auth.POLICY_ENGINE: "policy-engine-token-for-tests-only-00",
          auth.ADMIN: "admin-token-for-tests-only-000000000000"}


def tokens() -> auth.Tokens:
    return auth.Tokens([(f"test-{role}", role, auth.digest(token))
                        for role, token in TOKENS.items()])


def request(api, path, method="GET", role: str | None = auth.READER, body=None,
            headers: dict | None = None, raw: bytes | None = None,
            content_type="application/json"):
    """(response, parsed JSON body or None); ``role`` None sends no token."""
    kw = {"method": method, "headers": dict(headers or {})}
    if role is not None:
        kw["headers"]["Authorization"] = f"Bearer {TOKENS[role]}"
    if body is not None or raw is not None:
        kw["body"] = raw if raw is not None else json.dumps(body).encode()
        kw["content_type"] = content_type
    response = Request.blank(path, **kw).get_response(api)
    from openapi_check import check_response
    check_response(method, path, response)
    parsed = None
    if response.content_type in ("application/json", "application/problem+json") \
            and response.body:
        parsed = json.loads(response.body)
    return response, parsed

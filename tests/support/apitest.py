"""The REST API in-process, with a token of each role and every response
checked against the OpenAPI document (tests/openapi_check.py)."""

from __future__ import annotations

import json

from webob import Request

from support.openapi_check import check_response
from mpa_protocol import api_tokens

TOKENS = {api_tokens.READER: "reader-token-for-tests-only-0000000000",
          api_tokens.POLICY_ENGINE: "policy-engine-token-for-tests-only-00",
          api_tokens.ADMIN: "admin-token-for-tests-only-000000000000"}


def tokens() -> api_tokens.Tokens:
    return api_tokens.Tokens([(f"test-{role}", role, api_tokens.digest(token))
                              for role, token in TOKENS.items()])


def request(api, path, method="GET", role: str | None = api_tokens.READER, body=None,
            headers: dict | None = None, raw: bytes | None = None,
            content_type="application/json", environ: dict | None = None,
            mismatches: list | None = None):
    """(response, parsed JSON body or None); ``role`` None sends no token.

    ``environ``: WSGI variables to set on the request (None removes one).
    ``mismatches``: where a response that breaks the document is noted, as
    (method, path, what is wrong), instead of failing the call."""
    kw = {"method": method, "headers": dict(headers or {})}
    if role is not None:
        kw["headers"]["Authorization"] = f"Bearer {TOKENS[role]}"
    if body is not None or raw is not None:
        kw["body"] = raw if raw is not None else json.dumps(body).encode()
        kw["content_type"] = content_type
    blank = Request.blank(path, **kw)
    for name, value in (environ or {}).items():
        if value is None:
            blank.environ.pop(name, None)
        else:
            blank.environ[name] = value
    response = blank.get_response(api)
    try:
        check_response(method, path, response)
    except AssertionError as exc:
        if mismatches is None:
            raise
        mismatches.append((method, path, str(exc)))
    parsed = None
    if response.content_type in ("application/json", "application/problem+json") \
            and response.body:
        parsed = json.loads(response.body)
    return response, parsed


def rig_api(rig, wait_events=None, **options):
    """A RestApi over a tests/rig.py core whose calls run where the rig runs
    the core: what the core sends goes to the fake switches, its answer to
    the caller (``wait_events``: the facade's, which must not block;
    ``options``: RestApi's, tokens() by default)."""
    from mpa_sdn.facade import WAIT_S, Facade
    from mpa_sdn.service import Answer
    from rest_api.app import RestApi

    def exchange(make_origin, call, timeout=WAIT_S, held_from=None):
        box, sends = [], []
        for item in call(make_origin(box.append), rig.now):
            if isinstance(item, Answer):
                item.origin.reply_to(item)
            else:
                sends.append(item)
        rig.run(sends)
        return box[0] if box else None

    options.setdefault("tokens", tokens())
    return RestApi(Facade(rig.core, lambda: rig.now, exchange, wait_events), rig.core.counters,
                   **options)

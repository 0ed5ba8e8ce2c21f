"""``Idempotency-Key`` on POST: a retried request is answered, not redone.

A policy engine that lost the answer to "pre-switch" cannot tell whether
the network acted; sending the same request again with the same key gets
the first answer back and changes nothing. Records are kept in the
controller's state store for a day, so a restart in between loses none.

Only successful answers are kept: a refusal changed nothing, and the
same request may succeed once the MN's state allows it.  At most
MAX_RECORDS are kept: beyond, the oldest is forgotten and counted
(``rest_idempotency_forgotten``).
"""

from __future__ import annotations

import hashlib
import json
from typing import Callable

from webob import Request, Response

from rest_api.problems import Problem

KIND = "idempotency"
TTL_S = 24 * 3600
MAX_RECORDS = 10_000
REPLAYED = "Idempotent-Replayed"
KEPT_HEADERS = ("Location",)
FORGOTTEN = "rest_idempotency_forgotten"   # a record dropped for a new one, unexpired


def _fingerprint(body) -> str:
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":"))
                          .encode()).hexdigest()


class Idempotency:
    def __init__(self, store, wall: Callable[[], float], counters: dict | None = None):
        self.store, self.wall = store, wall
        self.counters = counters if counters is not None else {}
        self.records: dict[str, dict] = {}
        self.in_progress: set[str] = set()
        if store is not None:
            now = wall()
            for ident, record in sorted(store.load(KIND).items(), key=lambda kv: kv[1]["at"]):
                if record["at"] + TTL_S > now:
                    self.records[ident] = record
                else:
                    store.delete(KIND, ident)

    def run(self, who: str, request: Request, key: str, body,
            call: Callable[[], Response]) -> Response:
        ident = hashlib.sha256("\0".join((who, request.method, request.path_info, key))
                               .encode()).hexdigest()[:32]
        fingerprint = _fingerprint(body)
        record = self.records.get(ident)
        if record is not None and record["at"] + TTL_S <= self.wall():
            self._forget(ident)
            record = None
        if record is not None:
            if record["fingerprint"] != fingerprint:
                raise Problem("idempotency-key-reused",
                              "this Idempotency-Key was used with another body; use a new key")
            response = Response(status=record["status"], content_type=record["type"],
                                charset="utf-8", body=record["body"].encode())
            for name, value in record["headers"].items():
                response.headers[name] = value
            response.headers[REPLAYED] = "true"
            return response
        if ident in self.in_progress:
            raise Problem("idempotency-key-in-use",
                          "a request with this Idempotency-Key is still being handled")
        self.in_progress.add(ident)
        try:
            response = call()
        finally:
            self.in_progress.discard(ident)
        if 200 <= response.status_int < 300:
            self._keep(ident, {
                "at": self.wall(), "fingerprint": fingerprint, "status": response.status_int,
                "type": response.content_type,
                "headers": {h: response.headers[h] for h in KEPT_HEADERS if h in response.headers},
                "body": response.text})
        return response

    def _keep(self, ident: str, record: dict) -> None:
        while len(self.records) >= MAX_RECORDS:
            self._forget(next(iter(self.records)))   # the oldest
            self.counters[FORGOTTEN] = self.counters.get(FORGOTTEN, 0) + 1
        self.records[ident] = record
        if self.store is not None:
            self.store.put(KIND, ident, record)

    def _forget(self, ident: str) -> None:
        self.records.pop(ident, None)
        if self.store is not None:
            self.store.delete(KIND, ident)

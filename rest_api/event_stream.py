"""``GET /mpa/v1/events``: the core's events as server-sent events (SSE).

Each event is written as it happens (``id``, ``event``, one ``data`` line
of JSON); a comment every HEARTBEAT_S keeps proxies and idle connections
open.  A client that reconnects with ``Last-Event-ID`` gets what it missed,
or a ``reset`` event when the controller no longer holds all of it.

Streams are bounded in all and per token (``slots``): past either, 503.  A
stream's slot is given back when its iterator is closed, however it ends
(the client gone, its limit reached, the controller stopping); the server
closes it even if it never started.
"""

from __future__ import annotations

import json

from webob import Response

from mpa_sdn.events import rfc3339
from rest_api.problems import Problem

HEARTBEAT_S = 15.0
RETRY_AFTER_S = 5   # a client refused for the bound on streams tries again after this


def _frame(event: dict) -> bytes:
    return (f"id: {event['id']}\nevent: {event['type']}\n"
            f"data: {json.dumps(event, sort_keys=True, separators=(',', ':'))}\n\n").encode()


def stream_events(facade, call, slots) -> Response:
    request = call.request
    last = request.headers.get("Last-Event-ID")
    after = call.query.get("after")
    if last is not None:
        after = int(last)           # the document's pattern: digits only
    if after is not None and after > facade.last_event_id:
        raise Problem("invalid-request", "no such event yet",
                      errors=[{"pointer": "after", "detail": "beyond the last event"}])
    cursor = facade.last_event_id if after is None else after
    identity = call.query.get("identity")
    types = set(call.query["types"].split(",")) if "types" in call.query else None
    limit = call.query.get("limit")
    # eventlet's server otherwise gathers 4 KiB before it writes anything.
    request.environ["eventlet.minimum_write_chunk_size"] = 0

    name = call.principal.name
    refused = slots.take(name)
    if refused:
        raise Problem("unavailable", "the controller has all the event streams it serves open"
                      if refused == "full" else f"token {name} has all the event streams it "
                      "may have open", headers={"Retry-After": str(RETRY_AFTER_S)})
    response = Response(content_type="text/event-stream", charset="utf-8")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.app_iter = _Held(_frames(facade, cursor, identity, types, limit),
                              lambda: slots.give(name))
    return response


def _frames(facade, cursor: int, identity: str | None, types: set | None, limit: int | None):
    """The stream: a first comment, then the events after ``cursor`` that
    name ``identity`` and have one of ``types`` (None: any) as they come, a
    keep-alive comment each HEARTBEAT_S without one, until ``limit`` events
    are sent or the controller stops."""
    def wanted(event: dict) -> bool:
        return ((identity is None or event.get("identity") == identity)
                and (types is None or event["type"] in types))

    sent = 0
    yield b": mpa-sdn events\n\n"
    while True:
        events, lost = facade.events_after(cursor)
        if lost:
            # Some were dropped from the ring, or the cursor is another
            # process's: the client must read the state again, and
            # follows from the oldest event still held.
            first = events[0]["id"] if events else facade.last_event_id + 1
            yield _frame({"id": first - 1, "type": "reset",
                          "time": events[0]["time"] if events else rfc3339(facade.wall()),
                          "data": {"after": cursor}})
            cursor = first - 1
        for event in events:
            cursor = event["id"]
            if wanted(event):
                yield _frame(event)
                sent += 1
                if limit is not None and sent >= limit:
                    return
        if not events and not facade.wait_events(cursor, HEARTBEAT_S):
            if facade.closed:      # the controller is stopping
                return
            yield b": keep-alive\n\n"


class _Held:
    """A stream's frames, holding its slot until closed.  A generator's own
    ``finally`` would not do: one closed before it started never runs it."""

    def __init__(self, frames, give):
        self.frames, self._give = frames, give

    def __iter__(self):
        try:
            yield from self.frames
        finally:
            self.close()

    def close(self):
        self.frames.close()
        if self._give is not None:
            self._give, give = None, self._give
            give()

"""``GET /mpa/v1/events``: the core's events as server-sent events (SSE).

Each event is written as it happens (``id``, ``event``, one ``data`` line
of JSON); a comment every HEARTBEAT_S keeps proxies and idle connections
open.  A client that reconnects with ``Last-Event-ID`` gets what it missed,
or a ``reset`` event when the controller no longer holds all of it.
"""

from __future__ import annotations

import json

from webob import Response

from mpa_sdn.events import rfc3339
from rest_api.problems import Problem

HEARTBEAT_S = 15.0


def _frame(event: dict) -> bytes:
    return (f"id: {event['id']}\nevent: {event['type']}\n"
            f"data: {json.dumps(event, sort_keys=True, separators=(',', ':'))}\n\n").encode()


def stream_events(facade, call) -> Response:
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

    def wanted(event: dict) -> bool:
        return ((identity is None or event.get("identity") == identity)
                and (types is None or event["type"] in types))

    def frames():
        nonlocal cursor
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

    response = Response(content_type="text/event-stream", charset="utf-8")
    response.headers["Cache-Control"] = "no-cache"
    response.headers["X-Accel-Buffering"] = "no"
    response.app_iter = frames()
    return response

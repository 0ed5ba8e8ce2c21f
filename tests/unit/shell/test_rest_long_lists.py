"""A long list over the real REST listener: encoded in pieces with the
worker let in between (the shell's pause), sent chunked, and read back whole
by an HTTP client."""

from __future__ import annotations

import json
import socket

from apps.rest_server import RestServer

import eventlet
from eventlet.green import socket as green_socket

from mpa_lab.topogen import generate
from mpa_sdn.config import parse_topology
from mpa_sdn.controller import Controller
from mpa_sdn.facade import Facade
from mpa_sdn.topology import ControllerSettings
from rest_api.app import LIST_CHUNK, RestApi
from support.apitest import TOKENS, tokens
from mpa_protocol import api_tokens


def fetch(server, path: str) -> tuple[bytes, bytes]:
    """GET ``path`` over a green socket: the head, and the body unchunked."""
    sock = green_socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.connect(server.server.getsockname())
    sock.sendall((f"GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n"
                  f"Authorization: Bearer {TOKENS[api_tokens.READER]}\r\n\r\n").encode())
    data = b""
    while chunk := sock.recv(65536):
        data += chunk
    sock.close()
    head, rest = data.split(b"\r\n\r\n", 1)
    body = b""
    while True:
        size, rest = rest.split(b"\r\n", 1)
        if int(size, 16) == 0:
            return head, body
        body, rest = body + rest[:int(size, 16)], rest[int(size, 16) + 2:]


def test_a_long_switch_list_comes_whole_while_others_run_between_its_pieces():
    topology = parse_topology(generate(2, LIST_CHUNK, 1, neighbours="ring"))
    core = Controller(topology)
    ran_between = []

    def pause():
        ran_between.append(len(ticks))
        eventlet.sleep(0)
    ticks = []

    def worker():     # what the worker would do meanwhile
        while True:
            ticks.append(1)
            eventlet.sleep(0)
    api = RestApi(Facade(core, clock=lambda: 0.0), core.counters, tokens=tokens(), pause=pause)
    server = RestServer(("127.0.0.1", 0), api, ControllerSettings(), {}, None)
    threads = [eventlet.spawn(server.serve_forever), eventlet.spawn(worker)]
    try:
        with eventlet.Timeout(30):
            head, body = fetch(server, "/mpa/v1/switches")
    finally:
        server.close()
        for thread in threads:
            thread.kill()
    assert head.startswith(b"HTTP/1.1 200") and b"chunked" in head.lower()
    rows = json.loads(body)
    assert [r["id"] for r in rows] == [r["id"] for r in core.switch_summary(0.0)]
    assert len(ran_between) >= 2
    assert ran_between == sorted(ran_between) and ran_between[-1] > ran_between[0]

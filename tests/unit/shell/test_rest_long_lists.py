"""A long list over the real REST listener: encoded in pieces with the
worker let in between (the shell's pause), sent chunked, and read back whole
by an HTTP client."""

from __future__ import annotations

import json
import urllib.request

from apps.rest_server import RestServer

import eventlet
from eventlet.green.urllib import request as green_request

from mpa_lab.topogen import generate
from mpa_sdn.config import parse_topology
from mpa_sdn.controller import Controller
from mpa_sdn.facade import Facade
from mpa_sdn.topology import ControllerSettings
from rest_api.app import LIST_CHUNK, RestApi
from support.apitest import TOKENS, tokens
from mpa_protocol import api_tokens


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
        host, port = server.server.getsockname()
        request = urllib.request.Request(f"http://{host}:{port}/mpa/v1/switches", headers={
            "Authorization": f"Bearer {TOKENS[api_tokens.READER]}"})
        opener = green_request.build_opener(green_request.ProxyHandler({}))
        with eventlet.Timeout(30):
            with opener.open(request) as response:
                rows = json.loads(response.read())
    finally:
        server.close()
        for thread in threads:
            thread.kill()
    assert [r["id"] for r in rows] == [r["id"] for r in core.switch_summary(0.0)]
    assert len(ran_between) >= 2
    assert ran_between == sorted(ran_between) and ran_between[-1] > ran_between[0]

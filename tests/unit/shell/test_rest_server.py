"""The REST listener (apps.rest_server) on a real loopback socket: its bounds
on connections, its header, body and idle timeouts, clients that go away or
stop reading, TLS errors; and the event streams' bounds.

The server runs on eventlet in this process, on an ephemeral port, with
timeouts of a fraction of a second; its clients are green sockets, and every
wait is a poll with a deadline.  Nothing here asserts how long anything took.
"""

from __future__ import annotations

import dataclasses
import errno
import json
import logging
import socket
import struct

import pytest

from apps import descriptors, tls
from apps.rest_server import DISCARD_MAX_BYTES, RestServer

import eventlet
from eventlet.green import socket as green_socket, subprocess as green_subprocess
from webob import Request

from support.apitest import TOKENS, tokens
from mpa_mn import protocol
from mpa_protocol import api_tokens
from mpa_sdn.controller import Controller
from mpa_sdn.facade import Facade
from mpa_sdn.topology import ControllerSettings
from rest_api.app import MAX_BODY_BYTES, RestApi

DEADLINE_S = 10
SMALL_S = 0.2   # every timeout of the server under test
SETTINGS = dataclasses.replace(
    ControllerSettings(), rest_header_timeout_s=SMALL_S, rest_body_timeout_s=SMALL_S,
    rest_idle_timeout_s=SMALL_S, rest_max_connections=6, rest_connections_per_source=4)
POLICY = "/mpa/v1/networks/net-a1/policy"


# -- the server and its clients ------------------------------------------------------

@pytest.fixture
def serve():
    """start(app, context=None, **settings) -> a RestServer serving ``app``;
    stopped after the test."""
    started = []

    def start(app, counters=None, context=None, **settings):
        server = RestServer(("127.0.0.1", 0), app, dataclasses.replace(SETTINGS, **settings),
                            {} if counters is None else counters, context)
        started.append((server, eventlet.spawn(server.serve_forever)))
        return server

    yield start
    for server, thread in started:
        server.close()
        thread.kill()


@pytest.fixture
def api(topology):
    """The real REST API, its counters the ones the server counts into."""
    core = Controller(topology)
    return RestApi(Facade(core, clock=lambda: 100.0), core.counters, tokens=tokens())


def ok(environ, start_response):
    body = environ["wsgi.input"].read()
    start_response("200 OK", [("Content-Type", "text/plain")])
    return [b"ok " + body]


def connect(server, source="127.0.0.1", receive_buffer: int | None = None):
    sock = green_socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    if receive_buffer is not None:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, receive_buffer)
    sock.bind((source, 0))
    sock.connect(server.server.getsockname())
    return sock


def request_bytes(method, path, body=b"", headers=None) -> bytes:
    lines = [f"{method} {path} HTTP/1.1", "Host: test"]
    lines += [f"{name}: {value}" for name, value in (headers or {}).items()]
    if body:
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def read_response(sock) -> tuple[int, dict, bytes]:
    """One response with a Content-Length: (status, headers, body)."""
    data = b""
    with eventlet.Timeout(DEADLINE_S):
        while b"\r\n\r\n" not in data:
            chunk = sock.recv(4096)
            assert chunk, f"closed before a whole response: {data!r}"
            data += chunk
        head, body = data.split(b"\r\n\r\n", 1)
        status_line, *header_lines = head.decode().split("\r\n")
        headers = {k.lower(): v.strip() for k, v in (h.split(":", 1) for h in header_lines)}
        while len(body) < int(headers.get("content-length", 0)):
            chunk = sock.recv(4096)
            assert chunk, "closed in the middle of the body"
            body += chunk
    return int(status_line.split()[1]), headers, body


def closed_by_server(sock) -> bytes:
    """Everything until the server closes; a deadline, not a duration."""
    data = b""
    with eventlet.Timeout(DEADLINE_S):
        while True:
            try:
                chunk = sock.recv(65536)
            except ConnectionResetError:
                return data
            if not chunk:
                return data
            data += chunk


def wait_for(predicate, what: str):
    with eventlet.Timeout(DEADLINE_S, AssertionError(f"never: {what}")):
        while not predicate():
            eventlet.sleep(0.01)


def reset(sock) -> None:
    """Close as a client that crashed: a reset, not a FIN."""
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    sock.close()


# -- timeouts --------------------------------------------------------------------------------

def test_a_kept_alive_connection_with_no_next_request_is_closed_after_the_idle_timeout(serve):
    server = serve(ok)
    sock = connect(server)
    sock.sendall(request_bytes("GET", "/"))
    assert read_response(sock)[0] == 200
    assert closed_by_server(sock) == b""
    assert server.counters["rest_timeout_idle"] == 1
    wait_for(lambda: server.counters["rest_connections_open"] == 0, "the connection is given back")


def test_a_connection_that_sends_nothing_is_closed_after_the_header_timeout(serve):
    server = serve(ok)
    sock = connect(server)
    assert closed_by_server(sock) == b""
    assert server.counters["rest_timeout_header"] == 1


def test_a_header_trickle_does_not_stretch_the_header_timeout(serve):
    """A byte every tenth of the timeout: each one would restart a timeout
    per read; the bound on the whole closes the connection anyway."""
    server = serve(ok)
    sock = connect(server)
    trickle = request_bytes("GET", "/", headers={"X-Padding": "p" * 4000})
    with eventlet.Timeout(DEADLINE_S):
        for byte in trickle:
            try:
                sock.sendall(bytes([byte]))
            except OSError:
                break
            if server.counters.get("rest_timeout_header"):
                break
            eventlet.sleep(SMALL_S / 10)
    assert server.counters["rest_timeout_header"] == 1
    assert closed_by_server(sock) == b"", "no response to a request that never arrived"


def test_half_sent_headers_are_closed_after_the_header_timeout(serve):
    server = serve(ok)
    sock = connect(server)
    sock.sendall(b"GET / HTTP/1.1\r\nHost: te")
    assert closed_by_server(sock) == b""
    assert server.counters["rest_timeout_header"] == 1


def test_a_half_sent_body_is_answered_408_and_closed_after_the_body_timeout(serve, api):
    server = serve(api, api.counters)
    sock = connect(server)
    body = json.dumps({"max_candidates": 1}).encode()
    sock.sendall(request_bytes("PATCH", POLICY, body, headers={
        "Authorization": f"Bearer {TOKENS[api_tokens.ADMIN]}", "Content-Type": "application/json"})
        [:-5])
    status, headers, problem = read_response(sock)
    assert (status, headers["connection"]) == (408, "close")
    assert json.loads(problem)["type"] == "urn:mpa-sdn:problem:request-timeout"
    assert closed_by_server(sock) == b""
    assert api.counters["rest_timeout_body"] == 1
    assert api.facade.policy("net-a1")["max_candidates"] != 1, "nothing changed"


# -- clients that go away mid-body: the client's fault, not a 500 ----------------------

@pytest.mark.parametrize("ending", ["reset", "close"])
@pytest.mark.parametrize("path, headers", [
    (POLICY, {"Authorization": f"Bearer {TOKENS[api_tokens.ADMIN]}"}),
    ("/mpa/v1/discover", {}),
])
def test_a_client_gone_mid_body_is_counted_as_such_without_a_traceback(
        serve, api, caplog, capfd, path, headers, ending):
    caplog.set_level(logging.INFO)
    server = serve(api, api.counters, rest_body_timeout_s=DEADLINE_S)
    sock = connect(server)
    sock.sendall(request_bytes("PATCH" if path == POLICY else "POST", path, b"{" * 100, headers={
        **headers, "Content-Type": "application/json"})[:-60])
    eventlet.sleep(0.05)   # the server is reading the body now
    reset(sock) if ending == "reset" else sock.close()
    wait_for(lambda: api.counters.get("rest_client_disconnected"), "the disconnect is counted")
    assert "rest_internal_error" not in api.counters
    assert "Traceback" not in caplog.text + capfd.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.name == "rest_api"]
    assert len(lines) == 1 and " 400 " in lines[0], lines


@pytest.mark.parametrize("error, counter, status", [
    (ConnectionResetError(errno.ECONNRESET, "Connection reset by peer"),
     "rest_client_disconnected", 400),
    (TimeoutError("the body did not arrive in time"), "rest_timeout_body", 408),
])
def test_a_body_read_that_fails_is_the_clients_outcome_not_a_500(api, caplog, error, counter,
                                                                  status):
    class Broken:
        def read(self, *size):
            raise error

    request = Request.blank(POLICY, method="PATCH", content_type="application/json",
                            headers={"Authorization": f"Bearer {TOKENS[api_tokens.ADMIN]}"},
                            body=b'{"max_candidates": 1}')
    request.environ["wsgi.input"] = Broken()
    request.is_body_seekable = False
    response = request.get_response(api)
    assert response.status_int == status
    assert api.counters[counter] == 1 and "rest_internal_error" not in api.counters
    assert "Traceback" not in caplog.text


def test_a_body_shorter_than_its_length_is_a_disconnect_not_malformed_json(api):
    request = Request.blank(POLICY, method="PATCH", content_type="application/json",
                            headers={"Authorization": f"Bearer {TOKENS[api_tokens.ADMIN]}"},
                            body=b'{"max_candidates": 1}')
    request.environ["CONTENT_LENGTH"] = "40"
    response = request.get_response(api)
    assert response.status_int == 400
    assert response.json["type"] == "urn:mpa-sdn:problem:incomplete-body"
    assert api.counters["rest_client_disconnected"] == 1
    assert "rest_malformed_json" not in api.counters


# -- chunked request bodies --------------------------------------------------------------

def chunked(body: bytes, size: int = 7) -> bytes:
    pieces = [body[i:i + size] for i in range(0, len(body), size)]
    return b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"


def test_a_chunked_body_is_read_for_the_api_and_for_signalling(serve, api):
    server = serve(api, api.counters)
    sock = connect(server)
    admin = {"Authorization": f"Bearer {TOKENS[api_tokens.ADMIN]}",
             "Content-Type": "application/json", "Transfer-Encoding": "chunked"}
    sock.sendall(request_bytes("PATCH", POLICY, headers=admin)
                 + chunked(json.dumps({"max_candidates": 1}).encode()))
    status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["max_candidates"] == 1
    # The same connection goes on: the chunked body was read to its end.
    sock.sendall(request_bytes("POST", "/mpa/v1/discover", headers={
        "Content-Type": "application/json", "Transfer-Encoding": "chunked"})
        + chunked(protocol.discover(address="10.1.1.199")))
    status, _, body = read_response(sock)
    assert status == 200 and json.loads(body)["network"] == "net-a1", body


def test_a_chunked_body_beyond_the_bound_is_413_and_the_rest_is_not_read(serve, api):
    server = serve(api, api.counters, rest_body_timeout_s=DEADLINE_S)
    sock = connect(server)
    sock.sendall(request_bytes("PATCH", POLICY, headers={
        "Authorization": f"Bearer {TOKENS[api_tokens.ADMIN]}", "Content-Type": "application/json",
        "Transfer-Encoding": "chunked"}) + chunked(b" " * (MAX_BODY_BYTES + 1), 1000))
    # Far more than the server drains to keep a connection: it closes instead.
    try:
        sock.sendall(chunked(b" " * DISCARD_MAX_BYTES * 2, 4096)[:-5])
    except OSError:
        pass
    assert read_response(sock)[0] == 413
    assert closed_by_server(sock) == b"", "closed, not drained for the next request"


# -- bounds on connections ------------------------------------------------------------------------

def test_a_connection_past_the_bound_is_answered_503_and_closed_at_once(serve):
    server = serve(ok, rest_header_timeout_s=DEADLINE_S)
    held = [connect(server, f"127.0.0.{2 + i // 4}") for i in range(6)]
    wait_for(lambda: server.counters["rest_connections_open"] == 6, "six connections open")
    refused = connect(server, "127.0.0.9")
    status, headers, body = read_response(refused)
    assert (status, headers["connection"], headers["retry-after"]) == (503, "close", "1")
    assert json.loads(body)["type"] == "urn:mpa-sdn:problem:unavailable"
    assert closed_by_server(refused) == b""
    assert server.counters["rest_connections_full"] == 1
    held[0].close()
    wait_for(lambda: server.counters["rest_connections_open"] == 5, "one given back")
    again = connect(server, "127.0.0.9")
    again.sendall(request_bytes("GET", "/"))
    assert read_response(again)[0] == 200


def test_one_source_cannot_take_every_connection(serve):
    server = serve(ok, rest_header_timeout_s=DEADLINE_S)
    held = [connect(server, "127.0.0.2") for _ in range(4)]
    refused = connect(server, "127.0.0.2")
    assert read_response(refused)[0] == 503
    assert server.counters["rest_connections_source_full"] == 1
    # Another source is served while the first holds its bound, idle.
    other = connect(server, "127.0.0.1")
    other.sendall(request_bytes("GET", "/"))
    assert read_response(other)[0] == 200
    assert server.counters["rest_connections_open"] == 5
    assert all(sock.fileno() >= 0 for sock in held)


@pytest.mark.parametrize("sent, status", [(b"GARBAGE\r\n\r\n", 400),
                                          (b"GET / HTTP/9.9\r\n\r\n", 505),
                                          (b"GET / HTTP/1.1 extra\r\n\r\n", 400)])
def test_what_is_no_http_request_is_a_counted_problem_not_a_line_on_stderr(
        serve, caplog, capfd, sent, status):
    caplog.set_level(logging.INFO, logger="apps.rest_server")
    server = serve(ok)
    sock = connect(server)
    sock.sendall(sent)
    answer, headers, body = read_response(sock)
    assert (answer, headers["content-type"], headers["connection"]) == \
        (status, "application/problem+json", "close")
    assert json.loads(body)["status"] == status
    assert closed_by_server(sock) == b""
    assert server.counters["rest_malformed_http"] == 1
    assert capfd.readouterr().err == "", "http.server's own line went to stderr"
    assert any("no HTTP request" in r.getMessage() for r in caplog.records)


def test_the_accept_loop_outlives_running_out_of_descriptors(serve, monkeypatch):
    server = serve(ok)
    accept, failures = server.server.accept, [OSError(errno.EMFILE, "Too many open files")]

    def flaky_accept():
        if failures:
            raise failures.pop()
        return accept()

    monkeypatch.setattr(server.server, "accept", flaky_accept)
    sock = connect(server)
    sock.sendall(request_bytes("GET", "/"))
    assert read_response(sock)[0] == 200
    assert server.counters["rest_accept_failed"] == 1


# -- responses the client does not take ---------------------------------------------------

class Endless:
    """An open-ended response, as an event stream is: it says when it is closed."""

    def __init__(self, pause_s=0.0, chunk=b"x" * 65536):
        self.pause_s, self.chunk, self.closed = pause_s, chunk, False

    def __call__(self, environ, start_response):
        environ["eventlet.minimum_write_chunk_size"] = 0
        start_response("200 OK", [("Content-Type", "text/event-stream")])
        return self

    def __iter__(self):
        while True:
            yield self.chunk
            eventlet.sleep(self.pause_s)

    def close(self):
        self.closed = True


def test_a_stream_whose_client_reads_nothing_ends_and_is_closed(serve, caplog, capfd):
    app = Endless()
    server = serve(app)
    sock = connect(server, receive_buffer=4096)
    sock.sendall(request_bytes("GET", "/events"))
    wait_for(lambda: app.closed, "the response is closed")
    assert server.counters["rest_timeout_write"] == 1
    assert "Traceback" not in caplog.text + capfd.readouterr().err


def test_a_stream_whose_client_goes_away_ends_and_is_closed(serve, caplog, capfd):
    app = Endless(pause_s=0.01, chunk=b"data: x\n\n")
    server = serve(app, rest_idle_timeout_s=DEADLINE_S)
    sock = connect(server)
    sock.sendall(request_bytes("GET", "/events"))
    assert sock.recv(4096).startswith(b"HTTP/1.1 200")
    sock.close()
    wait_for(lambda: app.closed, "the response is closed")
    assert server.counters["rest_client_disconnected"] == 1
    assert "Traceback" not in caplog.text + capfd.readouterr().err


# -- event streams: bounded in all and per token -----------------------------------------------

def open_stream(api, role):
    request = Request.blank("/mpa/v1/events", headers={"Authorization": f"Bearer {TOKENS[role]}"})
    return api.handle(request)


def test_event_streams_are_bounded_per_token_and_in_all(topology):
    core = Controller(topology)
    api = RestApi(Facade(core, clock=lambda: 100.0), core.counters, tokens=tokens(),
                  max_streams=3, streams_per_token=2)
    first, second = open_stream(api, api_tokens.READER), open_stream(api, api_tokens.READER)
    assert (first.status_int, second.status_int) == (200, 200)
    refused = open_stream(api, api_tokens.READER)
    assert refused.status_int == 503 and refused.headers["Retry-After"] == "5"
    assert "token test-reader" in refused.json["detail"]
    assert api.counters["rest_streams_token_full"] == 1
    assert open_stream(api, api_tokens.ADMIN).status_int == 200
    full = open_stream(api, api_tokens.POLICY_ENGINE)
    assert full.status_int == 503 and api.counters["rest_streams_full"] == 1
    assert api.counters["rest_streams_open"] == 3
    first.app_iter.close()          # never iterated: the slot comes back all the same
    assert api.counters["rest_streams_open"] == 2
    assert open_stream(api, api_tokens.READER).status_int == 200


def test_open_connections_and_streams_are_gauges_in_the_metrics(api):
    api.counters["rest_connections_open"] = 3
    assert open_stream(api, api_tokens.READER).status_int == 200
    text = api.facade.metrics().decode()
    assert "# TYPE mpa_rest_connections_open gauge" in text
    assert "mpa_rest_connections_open 3.0" in text and "mpa_rest_event_streams_open 1.0" in text
    assert 'event="rest_connections_open"' not in text, "a level is no count"


def test_a_stream_that_ends_gives_its_slot_back(topology):
    core = Controller(topology)
    api = RestApi(Facade(core, clock=lambda: 100.0), core.counters, tokens=tokens(),
                  max_streams=1, streams_per_token=1)
    request = Request.blank("/mpa/v1/events?limit=1",
                            headers={"Authorization": f"Bearer {TOKENS[api_tokens.READER]}"})
    api.facade.closed = True        # no event comes: the stream ends at its first wait
    response = request.get_response(api)
    assert response.status_int == 200
    assert b"".join(response.app_iter) == b": mpa-sdn events\n\n"
    assert api.counters["rest_streams_open"] == 0
    api.facade.closed = False
    assert open_stream(api, api_tokens.READER).status_int == 200


# -- TLS -------------------------------------------------------------------------------------------

def test_a_tls_renegotiation_is_one_counted_line_not_a_traceback(serve, tmp_path, caplog, capfd):
    from support.pki import Pki
    pki = Pki(tmp_path / "pki")
    issued = pki.issue("controller", server=True)
    server = serve(ok, context=tls.server_context(issued.cert, issued.key),
                   rest_header_timeout_s=DEADLINE_S)
    port = server.server.getsockname()[1]
    client = green_subprocess.Popen(
        ["openssl", "s_client", "-tls1_2", "-connect", f"127.0.0.1:{port}", "-CAfile", pki.ca],
        stdin=green_subprocess.PIPE, stdout=green_subprocess.PIPE, stderr=green_subprocess.STDOUT)
    try:
        wait_for(lambda: server.counters["rest_connections_open"] == 1, "the client connected")
        eventlet.sleep(0.2)   # through its handshake: s_client reads commands only after
        client.stdin.write(b"R\n")   # s_client's command: renegotiate
        client.stdin.flush()
        wait_for(lambda: server.counters.get("rest_tls_error"), "the TLS error is counted")
    finally:
        client.kill()
        client.wait()
    assert "Traceback" not in capfd.readouterr().err
    lines = [r.getMessage() for r in caplog.records if r.name == "apps.rest_server"]
    assert len(lines) == 1 and lines[0].startswith("REST: TLS error with 127.0.0.1:"), lines


def test_a_tls_client_past_the_bound_is_closed_without_a_handshake(serve, tmp_path):
    from support.pki import Pki
    pki = Pki(tmp_path / "pki")
    issued = pki.issue("controller", server=True)
    server = serve(ok, context=tls.server_context(issued.cert, issued.key),
                   rest_connections_per_source=1, rest_header_timeout_s=DEADLINE_S)
    held = connect(server)
    refused = connect(server)
    assert closed_by_server(refused) == b""
    assert server.counters["rest_connections_source_full"] == 1
    assert held.fileno() >= 0


# -- descriptors ------------------------------------------------------------------------------------

def test_the_soft_descriptor_limit_is_raised_to_what_the_bounds_need(topology, monkeypatch):
    limits = {"now": (1024, 65536)}
    monkeypatch.setattr(descriptors.resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(descriptors.resource, "setrlimit",
                        lambda which, value: limits.update(now=value))
    line = descriptors.ensure(topology)
    assert limits["now"] == (65536, 65536)
    assert line.startswith("file descriptors: soft limit raised from 1024 to 65536")
    assert descriptors.ensure(topology).startswith("file descriptors: 65536 allowed")


def test_with_no_hard_descriptor_limit_the_soft_one_is_raised_to_what_the_bounds_need(
        topology, monkeypatch):
    infinity = descriptors.resource.RLIM_INFINITY
    limits = {"now": (256, infinity)}

    def setrlimit(which, value):
        if value[0] == infinity:    # as Linux (past nr_open) and macOS refuse it
            raise ValueError("not allowed to raise maximum limit")
        limits.update(now=value)
    monkeypatch.setattr(descriptors.resource, "getrlimit", lambda which: limits["now"])
    monkeypatch.setattr(descriptors.resource, "setrlimit", setrlimit)
    want = descriptors.needed(topology)
    assert descriptors.ensure(topology) == \
        f"file descriptors: soft limit raised from 256 to {want} ({want} needed)"
    assert limits["now"] == (want, infinity)


def test_a_hard_descriptor_limit_below_the_bounds_stops_start_up(topology, monkeypatch, capsys):
    monkeypatch.setattr(descriptors.resource, "getrlimit", lambda which: (256, 1024))
    with pytest.raises(SystemExit) as stopped:
        descriptors.ensure(topology)
    assert stopped.value.code == 2
    assert "the hard limit is 1024" in capsys.readouterr().err


# -- the application's listener ---------------------------------------------------------------

def test_the_application_serves_its_api_within_the_configured_bounds(topology):
    from apps import mpa_app, runtime
    settings = dataclasses.replace(topology.controller, rest_port=0, rest_max_connections=2,
                                   rest_connections_per_source=2, rest_max_streams=7)
    runtime.configure(dataclasses.replace(topology, controller=settings), "test.yaml")
    app = mpa_app.MpaApp()
    app.start()
    try:
        assert isinstance(app.rest_server, RestServer)
        assert app.rest.streams.total == 7
        held = [connect(app.rest_server) for _ in range(2)]
        assert read_response(connect(app.rest_server))[0] == 503
        assert app.counters["rest_connections_full"] == 1
        held[0].sendall(request_bytes("GET", "/mpa/v1/openapi.json"))
        assert read_response(held[0])[0] == 200
    finally:
        app.stop()
    assert app.rest_server.closing

"""mpa-ctl against the real REST application and core, in-process.

The transport is an urllib opener that hands each request to the WSGI
application (as tests/unit/mn/test_mobile_node.py's WsgiOpener does), checks each
answer against the OpenAPI document, and gives the body to the client only
as it reads it, so an event stream is produced event by event.  The
in-process facade's ``wait_events`` never blocks: where a test needs the
network to move while mpa-ctl waits, ``wait_events`` (or ``sleep``) moves it.
"""

from __future__ import annotations

import http.client
import io
import json
import os
import stat
import urllib.error
import urllib.parse
import urllib.request

import pytest
from webob import Request

from support.apitest import TOKENS, rig_api, tokens
from mpa_ctl import cli
from mpa_ctl.client import direct_opener
from support.service_rig import IDENTITY
from mpa_sdn.controller import Controller
from mpa_sdn.events import EventLog
from mpa_sdn.facade import Facade
from mpa_sdn.mobility import QUIET_S
from support.openapi_check import check_response
from mpa_protocol import api_tokens
from rest_api.app import RestApi
from rest_api.event_stream import HEARTBEAT_S
from support.network_rig import Rig
from support.handover_rig import HOME, NCOA, arrive, bound, later, make_rig, pings

READER, ENGINE, ADMIN = api_tokens.READER, api_tokens.POLICY_ENGINE, api_tokens.ADMIN


# -- the transport --------------------------------------------------------------------------

def _message(headerlist) -> http.client.HTTPMessage:
    message = http.client.HTTPMessage()
    for name, value in headerlist:
        message[name] = value
    return message


class Streamed:
    """A response read as http.client's is; the body is pulled from the
    application's iterator only when the client reads. ``drop_after``: the
    connection resets once the client has read that many events."""

    def __init__(self, response, drop_after: int | None = None):
        self.status = response.status_int
        self.headers = _message(response.headerlist)
        self._app_iter = response.app_iter
        self._chunks = iter(response.app_iter)
        self._buffer = b""
        self.drop_after = drop_after
        self._events = 0
        self._in_event = False
        self._idle = 0

    def _fill(self) -> bool:
        chunk = next(self._chunks, None)
        if chunk is None:
            return False
        self._buffer += chunk
        return True

    def read(self, n: int = -1) -> bytes:
        while (n < 0 or len(self._buffer) < n) and self._fill():
            pass
        n = len(self._buffer) if n < 0 else n
        data, self._buffer = self._buffer[:n], self._buffer[n:]
        return data

    def readline(self, limit: int = -1) -> bytes:
        if self.drop_after is not None and self._events >= self.drop_after:
            raise ConnectionResetError(104, "Connection reset by peer")
        while b"\n" not in self._buffer and (limit < 0 or len(self._buffer) < limit) \
                and self._fill():
            pass
        end = self._buffer.find(b"\n") + 1 or len(self._buffer)
        end = end if limit < 0 else min(end, limit)
        data, self._buffer = self._buffer[:end], self._buffer[end:]
        if data.startswith(b"data:"):
            self._in_event = True
        elif data == b"\n" and self._in_event:   # the event is whole
            self._in_event = False
            self._events += 1
        # The in-process stream never blocks: a test that forgot to end it must fail.
        if data != b"\n":
            self._idle = self._idle + 1 if data.startswith(b": keep-alive") else 0
        assert self._idle < 1000, "an event stream idles for ever"
        return data

    def close(self) -> None:
        close = getattr(self._app_iter, "close", None)
        if close is not None:
            close()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False


class Wsgi:
    """An urllib opener that is the controller: each request goes to the WSGI
    application.  ``faults``: (method, path, when, exception), each used once:
    ``before`` the application sees the request, or ``after`` it handled it
    (the answer is lost); ``drops``: paths whose stream resets after N events."""

    def __init__(self, app, faults=(), drops=None):
        self.app = app
        self.faults = list(faults)
        self.drops = dict(drops or {})
        self.requests: list[dict] = []

    def _fault(self, method: str, path: str, when: str):
        for fault in self.faults:
            if fault[:3] == (method, path, when):
                self.faults.remove(fault)
                raise fault[3]

    def open(self, request, timeout=None):
        assert timeout is not None and timeout > 0   # never a call that may hang for ever
        parts = urllib.parse.urlsplit(request.full_url)
        method = request.get_method()
        headers = {name.title(): value for name, value in request.header_items()}
        self.requests.append({"method": method, "path": parts.path, "query":
                              dict(urllib.parse.parse_qsl(parts.query)), "headers": headers,
                              "body": json.loads(request.data) if request.data else None,
                              "timeout": timeout})
        self._fault(method, parts.path, "before")
        kw = {"method": method, "headers": {k: v for k, v in headers.items()
                                            if k != "Content-Type"},
              "remote_addr": "172.31.0.9"}
        if request.data is not None:
            kw.update(body=request.data, content_type=headers["Content-Type"])
        target = parts.path + ("?" + parts.query if parts.query else "")
        response = Request.blank(target, **kw).get_response(self.app)
        check_response(method, target, response)
        self._fault(method, parts.path, "after")
        if response.status_int >= 400:
            raise urllib.error.HTTPError(request.full_url, response.status_int,
                                         response.status, _message(response.headerlist),
                                         io.BytesIO(response.body))
        return Streamed(response, self.drops.pop(parts.path, None))

    def sent(self, method: str, path: str) -> list[dict]:
        return [r for r in self.requests if r["method"] == method and r["path"] == path]


class Clock:
    """Monotonic time that moves only when told (or by ``step`` at each look)."""

    def __init__(self, step: float = 0.0):
        self.now, self.step = 1000.0, step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def ctl(app_or_transport, *argv, role: str | None = READER, env=None, sleep=None,
        clock=None):
    """(exit status, stdout, stderr, transport) of ``mpa-ctl argv``."""
    transport = app_or_transport if isinstance(app_or_transport, Wsgi) \
        else Wsgi(app_or_transport)
    environ = dict(env or {})
    if role is not None:
        environ["MPA_TOKEN"] = TOKENS[role]
    out, err = io.StringIO(), io.StringIO()
    system = cli.System(clock=clock or Clock(), sleep=sleep or _no_sleep, environ=environ,
                        stdout=out, stderr=err)
    code = cli.main(list(argv), opener=transport, system=system)
    return code, out.getvalue(), err.getvalue(), transport


def _no_sleep(seconds):
    raise AssertionError(f"slept {seconds} s where nothing should wait")


# -- the controller -------------------------------------------------------------------------

@pytest.fixture
def api(topology):
    return RestApi(Facade(Controller(topology), clock=lambda: 100.0), tokens=tokens())


@pytest.fixture
def rig(topology):
    return make_rig(topology)


def pre_switch(app) -> dict:
    code, out, err, _ = ctl(app, "--json", "handover", IDENTITY, "net-b1", role=ENGINE)
    assert code == 0, err
    return json.loads(out)


def complete_handover(rig) -> None:
    """mn1 arrives at ap-b1-1 and the buffer empties: the handover completes."""
    arrive(rig)
    later(rig, QUIET_S)


# -- reading --------------------------------------------------------------------------------

def test_status_of_a_controller_without_switches(api, topology):
    code, out, err, _ = ctl(api, "--url", "http://ctl.example:8080", "status")
    assert code == 0 and err == ""
    assert "controller    http://ctl.example:8080" in out
    assert f"switches      0/{len(topology.switches)} connected, 0 reconciled" in out
    assert "handovers     0 in progress" in out
    assert "last handovers" not in out


def test_status_counts_switches_bindings_and_handovers(rig):
    bound(rig)
    app = rig_api(rig)
    pre_switch(app)
    code, out, _, transport = ctl(app, "status")
    assert code == 0
    assert "switches      6/6 connected, 6 reconciled" in out
    assert "mobile nodes  1, 1 with a binding" in out
    assert "handovers     1 in progress" in out
    assert f"now   #1 {IDENTITY} net-a1 -> net-b1 pre-switching (buffer)" in out
    assert [r["path"] for r in transport.requests] == [
        "/mpa/v1/switches", "/mpa/v1/mobile-nodes", "/mpa/v1/handovers"]
    complete_handover(rig)
    code, out, _, _ = ctl(app, "status")
    assert "handovers     0 in progress" in out
    assert "last handovers (1 of 1, oldest first):" in out
    [last] = [line for line in out.splitlines() if line.startswith("  #1 ")]
    assert last.startswith(f"  #1 {IDENTITY} net-a1 -> net-b1 completed ")
    assert last.endswith(" ms (buffer)")


def test_mns_one_line_per_mn(rig):
    bound(rig)
    code, out, _, _ = ctl(rig_api(rig), "mns")
    assert code == 0
    header, line = out.splitlines()
    assert header.split() == ["IDENTITY", "HOME", "BINDING", "TUNNELS", "HANDOVER"]
    assert line.split() == [IDENTITY, HOME, "net-b1", NCOA, "(tunnel", "at", "ap-a1-1)",
                            "net-b1", "-"]


def test_mn_shows_the_whole_state_and_json_is_the_api_s(rig):
    bound(rig)
    app = rig_api(rig)
    action = pre_switch(app)
    pings(rig, "cn1", HOME, [1, 2])
    code, out, _, _ = ctl(app, "mn", IDENTITY)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == IDENTITY
    assert f"  home address  {HOME}" in lines
    assert f"  binding       net-b1 {NCOA} (tunnel at ap-a1-1), expires in 3600 s" in lines
    assert "handover: #1 net-a1 -> net-b1 pre-switching (buffer)" in lines
    [buffer] = [line for line in lines if line.startswith("  buffer  ")]
    assert "2 held" in buffer and "2 in, 0 flushed, 0 dropped" in buffer
    sas = lines.index("MPA-SAs:")
    assert lines[sas + 2].split()[:3] == ["net-b1", "domain-b", "pre-authenticated"]
    assert lines[lines.index("leases:") + 2].split()[:3] == ["net-b1", NCOA, "bound"]
    assert lines[lines.index("tunnels:") + 2].split()[:3] == ["net-b1", NCOA, "ap-a1-1"]
    assert lines[lines.index("pending instructions:") + 1] == \
        f"  #{action['id']} switch net-b1"
    recent = lines[lines.index("recent actions:") + 2].split()
    assert recent[:4] == [str(action["id"]), IDENTITY, "pre-switch", "pending"]

    code, out, _, _ = ctl(app, "--json", "mn", IDENTITY)
    assert json.loads(out) == Facade(rig.core, lambda: rig.now).mobile_node(IDENTITY)


def test_an_unknown_mn_is_the_api_s_404(api):
    code, out, err, _ = ctl(api, "mn", "nobody@nowhere")
    assert code == 1 and out == ""
    assert err == "mpa-ctl: 404 No such resource: unknown mobile node 'nobody@nowhere'\n"


def test_counters_with_a_prefix(rig):
    code, out, _, _ = ctl(rig_api(rig), "counters", "switch_")
    assert code == 0
    assert out.splitlines() == ["switch_connected  6"]
    code, out, _, _ = ctl(rig_api(rig), "--json", "counters", "switch_")
    assert json.loads(out) == {"switch_connected": 6}


def test_networks_and_switches(rig, topology):
    code, out, _, _ = ctl(rig_api(rig), "networks")
    assert code == 0
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert sorted(rows) == sorted(topology.networks)
    assert rows["net-a1"][:6] == ["net-a1", "access", "domain-a", "10.1.1.0/24", "10.1.1.1",
                                  "ar-a1"]
    code, out, _, _ = ctl(rig_api(rig), "switches")
    rows = {line.split()[0]: line.split() for line in out.splitlines()[1:]}
    assert rows["ar-a1"][1:3] == ["0000000000000011", "yes"]


# -- errors ---------------------------------------------------------------------------------

def test_a_refused_action_prints_the_problem_and_changes_nothing(rig):
    app = rig_api(rig)
    code, out, err, _ = ctl(app, "handover", IDENTITY, "net-b1", role=ENGINE)
    assert code == 1 and out == ""
    assert err == ("mpa-ctl: 409 The mobile node's state does not allow it now: "
                   f"{IDENTITY} has no usable MPA-SA with net-b1: prepare it first\n")
    assert rig.core.actions.views() == []


def test_a_request_against_the_schema_lists_each_error(rig):
    code, _, err, _ = ctl(rig_api(rig), "actions", "--state", "finished")
    assert code == 1
    lines = err.splitlines()
    assert lines[0] == ("mpa-ctl: 400 The request breaks the API's schema: query parameters "
                        "do not fit the API")
    assert lines[1].startswith("mpa-ctl:   state: ")


def test_without_a_token_401_says_where_one_goes(api):
    code, out, err, transport = ctl(api, "networks", role=None)
    assert code == 1 and out == ""
    assert err.splitlines() == [
        "mpa-ctl: 401 A valid bearer token is needed: send Authorization: Bearer TOKEN",
        "mpa-ctl: no token: set MPA_TOKEN or use --token-file FILE (make one with mpa-ctl "
        "new-token)"]
    assert "Authorization" not in transport.requests[0]["headers"]
    code, _, err, _ = ctl(api, "networks", role=None, env={"MPA_TOKEN": "not-a-known-token"})
    assert code == 1 and "the token was refused: check MPA_TOKEN or --token-file" in err


def test_the_role_decides(rig):
    code, _, err, _ = ctl(rig_api(rig), "prepare", IDENTITY, "net-b1", role=READER)
    assert code == 1
    assert err.startswith("mpa-ctl: 403 The token's role may not do this: the token's role "
                          "(reader) may not; this needs policy-engine")
    assert rig.core.actions.views() == []


def test_no_answer_is_exit_3_and_a_refused_connection_is_not_retried(api):
    transport = Wsgi(api, faults=[("GET", "/mpa/v1/networks", "before", urllib.error.URLError(
        ConnectionRefusedError(111, "Connection refused")))])
    code, out, err, _ = ctl(transport, "networks")
    assert code == 3 and out == ""
    assert err == ("mpa-ctl: no answer from the controller: GET "
                   "http://127.0.0.1:8080/mpa/v1/networks: connection refused\n")
    assert len(transport.requests) == 1


def test_a_lost_answer_to_a_get_is_asked_for_once_more(rig):
    transport = Wsgi(rig_api(rig), faults=[("GET", "/mpa/v1/switches", "after",
                                            ConnectionResetError(104, "reset"))])
    code, out, err, _ = ctl(transport, "switches")
    assert code == 0 and len(out.splitlines()) == 1 + len(rig.graph.switch_ids())
    assert len(transport.sent("GET", "/mpa/v1/switches")) == 2
    assert err == ("mpa-ctl: GET http://127.0.0.1:8080/mpa/v1/switches: connection reset; "
                   "sending it again\n")


def test_the_token_is_not_an_option_and_a_bad_url_is_usage(api, capsys):
    code, _, err, transport = ctl(api, "--token", TOKENS[READER], "status")
    assert code == 2 and transport.requests == []
    assert "mpa-ctl: error: argument COMMAND: invalid choice" in capsys.readouterr().err
    assert err == ""     # not taken for --token-file
    code, _, err, transport = ctl(api, "--url", "ftp://controller", "status")
    assert code == 2 and transport.requests == []
    assert "an http:// or https:// URL" in err


def test_an_unusable_ca_file_is_usage(tmp_path):
    out, err = io.StringIO(), io.StringIO()
    code = cli.main(["--url", "https://controller.invalid", "--ca", str(tmp_path / "none.pem"),
                     "networks"], system=cli.System(environ={}, stdout=out, stderr=err,
                                                    sleep=_no_sleep))
    assert code == 2 and out.getvalue() == ""
    assert err.getvalue().startswith(f"mpa-ctl: --ca {tmp_path / 'none.pem'}: ")


def test_the_token_file(api, tmp_path):
    path = tmp_path / "token"
    path.write_text(f"# the reader's\n\n{TOKENS[READER]}\n")
    code, _, _, transport = ctl(api, "--token-file", str(path), "networks", role=None,
                                env={"MPA_TOKEN": "ignored-when-a-file-is-given"})
    assert code == 0
    assert transport.requests[0]["headers"]["Authorization"] == f"Bearer {TOKENS[READER]}"
    path.write_text("two words\n")
    code, _, err, transport = ctl(api, "--token-file", str(path), "networks", role=None)
    assert code == 2 and transport.requests == [] and "not a token" in err


def test_the_direct_opener_takes_no_proxy_from_the_environment(monkeypatch):
    monkeypatch.setenv("http_proxy", "http://proxy.invalid:3128")
    monkeypatch.setenv("https_proxy", "http://proxy.invalid:3128")
    def proxies(opener):
        return [h.proxies for h in opener.handlers if isinstance(h, urllib.request.ProxyHandler)]
    assert proxies(urllib.request.build_opener()) == [{"http": "http://proxy.invalid:3128",
                                                       "https": "http://proxy.invalid:3128"}]
    assert proxies(direct_opener()) == []


# -- acting for an MN -----------------------------------------------------------------------

def test_prepare_creates_one_action_and_json_prints_it(rig):
    code, out, err, transport = ctl(rig_api(rig), "--json", "prepare", IDENTITY, "net-b1",
                                    role=ENGINE)
    assert code == 0 and err == ""
    action = json.loads(out)
    assert action == rig.core.actions.views()[0] and len(rig.core.actions.views()) == 1
    assert (action["action"], action["state"], action["params"]["candidates"]) == \
        ("prepare", "pending", ["net-b1"])
    [post] = transport.sent("POST", f"/mpa/v1/mobile-nodes/{IDENTITY}/prepare")
    assert post["body"] == {"candidates": ["net-b1"]}
    assert 1 <= len(post["headers"]["Idempotency-Key"]) <= 64


def test_each_invocation_has_its_own_key(rig):
    app = rig_api(rig)
    keys = [ctl(app, "prepare", IDENTITY, "net-b1", role=ENGINE)[3].requests[0]["headers"]
            ["Idempotency-Key"] for _ in range(2)]
    assert keys[0] != keys[1]
    assert len(rig.core.actions.views()) == 2


def test_the_human_form_of_an_action(rig):
    code, out, _, _ = ctl(rig_api(rig), "prepare", IDENTITY, "net-b1", "net-a2", role=ENGINE)
    assert code == 0
    lines = out.splitlines()
    assert lines[0] == f"action 1 prepare {IDENTITY}: pending"
    assert lines[1] == "  params       candidates=net-b1,net-a2 from=net-a1"
    assert lines[3] == "  instruction  #1 prepare net-b1,net-a2"


@pytest.mark.parametrize("lost", [ConnectionResetError(104, "Connection reset by peer"),
                                  urllib.error.URLError(TimeoutError("timed out"))])
def test_an_answer_lost_after_the_controller_acted_is_asked_for_again(rig, lost):
    path = f"/mpa/v1/mobile-nodes/{IDENTITY}/prepare"
    transport = Wsgi(rig_api(rig), faults=[("POST", path, "after", lost)])
    code, out, err, _ = ctl(transport, "--json", "prepare", IDENTITY, "net-b1", role=ENGINE)
    assert code == 0
    first, second = transport.sent("POST", path)
    assert first["headers"]["Idempotency-Key"] == second["headers"]["Idempotency-Key"]
    assert first["body"] == second["body"]
    assert len(rig.core.actions.views()) == 1          # done once
    assert json.loads(out) == rig.core.actions.views()[0]
    notes = err.splitlines()
    assert notes[0].endswith("sending it again with the same Idempotency-Key")
    assert notes[1] == ("mpa-ctl: the controller had handled this request already; this is "
                        "its first answer")


def test_an_answer_lost_twice_is_exit_3(rig):
    path = f"/mpa/v1/mobile-nodes/{IDENTITY}/prepare"
    lost = [("POST", path, "after", ConnectionResetError(104, "reset")) for _ in range(3)]
    transport = Wsgi(rig_api(rig), faults=lost)
    code, _, err, _ = ctl(transport, "prepare", IDENTITY, "net-b1", role=ENGINE)
    assert code == 3 and len(transport.sent("POST", path)) == 2
    assert err.splitlines()[-1].endswith("connection reset")
    assert len(rig.core.actions.views()) == 1


def test_handover_sends_only_what_was_asked(rig):
    bound(rig)
    code, _, err, transport = ctl(rig_api(rig), "handover", IDENTITY, "net-b1", "--poa",
                                  "ap-b1-1", "--buffer-old", role=ENGINE)
    assert code == 0, err
    [post] = transport.sent("POST", f"/mpa/v1/mobile-nodes/{IDENTITY}/pre-switch")
    assert post["body"] == {"network": "net-b1", "poa": "ap-b1-1", "buffer_old": True}
    [action] = rig.core.actions.views()
    assert action["params"] == {"network": "net-b1", "poa": "ap-b1-1", "mode": "buffer",
                                "buffer_old": True}


def test_release_and_complete_name_their_network(rig):
    bound(rig)
    app = rig_api(rig)
    code, _, err, transport = ctl(app, "release", IDENTITY, "net-b1", "--scope", "lease",
                                  role=ENGINE)
    assert code == 1    # the binding is in net-b1
    assert err == (f"mpa-ctl: 409 The mobile node's state does not allow it now: {IDENTITY}'s "
                   "binding is in net-b1; release another network\n")
    assert transport.requests[0]["body"] == {"network": "net-b1", "scope": "lease"}
    code, _, err, transport = ctl(app, "complete", IDENTITY, "net-b1", role=ENGINE)
    assert code == 1 and err.startswith("mpa-ctl: 409 ")   # no handover is pre-switching
    assert transport.requests[0]["body"] == {"network": "net-b1"}


# -- following an action --------------------------------------------------------------------

def test_wait_follows_the_action_through_the_stream_until_done(rig):
    bound(rig)
    moves = []

    def wait_events(after, timeout):   # while mpa-ctl listens, the MN moves
        if not moves:
            moves.append(after)
            complete_handover(rig)
        return rig.core.events.last_id > after

    app = rig_api(rig, wait_events)
    code, out, err, transport = ctl(app, "handover", IDENTITY, "net-b1", "--wait", "30",
                                    role=ENGINE)
    assert code == 0, err
    assert err == "" and moves
    [stream] = transport.sent("GET", "/mpa/v1/events")
    assert stream["query"] == {"types": "action", "identity": IDENTITY}
    assert stream["timeout"] == 30          # no longer than the wait
    [action] = rig.core.actions.views()
    assert action["state"] == "done"
    assert out.splitlines()[0] == f"action 1 pre-switch {IDENTITY}: pending"
    assert f"action 1 pre-switch {IDENTITY}: done" in out.splitlines()
    # Read once, when the stream was open; then only the stream.
    assert len(transport.sent("GET", "/mpa/v1/actions/1")) == 1


def test_wait_exits_1_when_the_action_fails(rig):
    bound(rig)

    cancelled = []

    def wait_events(after, timeout):   # a policy engine cancels meanwhile
        if not cancelled:
            cancelled.append(ctl(app, "cancel", IDENTITY, "net-b1", role=ENGINE)[0])
        return rig.core.events.last_id > after

    app = rig_api(rig, wait_events)
    code, out, err, _ = ctl(app, "--json", "handover", IDENTITY, "net-b1", "--wait",
                            role=ENGINE)
    assert code == 1 and cancelled == [0]
    action = json.loads(out)
    assert (action["state"], action["error"]["code"]) == ("failed", "switched-back")
    assert err.startswith(f"mpa-ctl: action 1 pre-switch {IDENTITY}: failed (switched-back: ")


def test_wait_polls_when_the_stream_breaks(rig):
    bound(rig)
    transport = Wsgi(rig_api(rig), faults=[("GET", "/mpa/v1/events", "before",
                                            ConnectionResetError(104, "reset"))])
    slept = []

    def sleep(seconds):   # the MN arrives while mpa-ctl waits between two questions
        slept.append(seconds)
        complete_handover(rig)

    code, _, err, _ = ctl(transport, "handover", IDENTITY, "net-b1", "--wait", "10",
                          role=ENGINE, sleep=sleep)
    assert code == 0
    assert err == ("mpa-ctl: the event stream failed (GET http://127.0.0.1:8080/mpa/v1/events"
                   "?types=action&identity=mn1%40domain-a: connection reset); asking for "
                   "action 1 every 1 s\n")
    assert slept == [1.0]
    assert len(transport.sent("GET", "/mpa/v1/actions/1")) == 2


def test_wait_gives_up_at_its_deadline(rig):
    bound(rig)
    code, out, err, _ = ctl(rig_api(rig), "handover", IDENTITY, "net-b1", "--wait", "5",
                            role=ENGINE, clock=Clock(step=1.0))
    assert code == 1
    assert err == "mpa-ctl: action 1 is still pending after 5 s\n"
    assert rig.core.actions.views()[0]["state"] == "pending"   # it goes on


# -- policy ---------------------------------------------------------------------------------

def test_policy_set_and_reset_round_trip(rig):
    app = rig_api(rig)
    code, out, err, transport = ctl(app, "policy", "net-b1", "--set", "dwell_s=2.5", "--set",
                                    "buffer_packets=100", "--set", "buffer_time_s=3",
                                    role=ADMIN)
    assert code == 0, err
    [patch] = transport.sent("PATCH", "/mpa/v1/networks/net-b1/policy")
    assert patch["body"] == {"dwell_s": 2.5, "buffer_packets": 100, "buffer_time_s": 3}
    assert type(patch["body"]["buffer_packets"]) is int
    policy = rig.core.policies.of("net-b1")
    assert (policy.dwell_s, policy.buffer_packets) == (2.5, 100)
    assert "  buffer_packets     100  (set through the API)" in out.splitlines()

    code, out, err, transport = ctl(app, "--json", "policy", "net-b1", "--reset", "dwell_s",
                                    "--reset", "buffer_packets", "--set", "buffer_time_s=null",
                                    role=ADMIN)
    assert code == 0, err
    assert transport.sent("PATCH", "/mpa/v1/networks/net-b1/policy")[0]["body"] == \
        {"dwell_s": None, "buffer_packets": None, "buffer_time_s": None}
    assert json.loads(out)["changed"] == []
    code, out, _, _ = ctl(app, "--json", "policy", "net-b1")
    assert json.loads(out) == rig.core.policies.of("net-b1").view()


@pytest.mark.parametrize("argv, says", [
    (["--set", "buffer_packets=1.5"], "--set buffer_packets=1.5: must be integer or null"),
    (["--set", "dwell_s=soon"], "--set dwell_s=soon: must be number or null"),
    (["--set", "dwell_s=nan"], "--set dwell_s=nan: must be number or null"),
    (["--set", "colour=blue"], "colour: not a policy field; one of buffer_bytes, "),
    (["--set", "dwell_s"], "--set dwell_s: KEY=VALUE"),
    (["--set", "dwell_s=1", "--reset", "dwell_s"], "dwell_s: given twice"),
])
def test_policy_values_are_checked_against_the_document_first(rig, argv, says):
    code, _, err, transport = ctl(rig_api(rig), "policy", "net-b1", *argv, role=ADMIN)
    assert code == 2 and says in err
    assert not transport.sent("PATCH", "/mpa/v1/networks/net-b1/policy")


def test_policy_changes_need_an_admin(rig):
    code, _, err, _ = ctl(rig_api(rig), "policy", "net-b1", "--set", "dwell_s=1",
                          role=ENGINE)
    assert code == 1 and "403" in err
    assert rig.core.policies.of("net-b1").view()["changed"] == []


def test_a_patch_is_not_sent_twice(rig):
    transport = Wsgi(rig_api(rig), faults=[("PATCH", "/mpa/v1/networks/net-b1/policy",
                                            "after", ConnectionResetError(104, "reset"))])
    code, _, _, _ = ctl(transport, "policy", "net-b1", "--set", "dwell_s=1", role=ADMIN)
    assert code == 3
    assert len(transport.sent("PATCH", "/mpa/v1/networks/net-b1/policy")) == 1


# -- events ---------------------------------------------------------------------------------

def switches_connect_while_watched(topology, later=None):
    """A core whose switches connect once someone waits for events; then
    ``later``'s functions run, one at each wait."""
    rig = Rig(topology)
    todo = [rig.connect_all] + list(later or [])

    def wait_events(after, timeout):
        if rig.core.events.last_id <= after and todo:
            todo.pop(0)()
        return rig.core.events.last_id > after

    return rig, rig_api(rig, wait_events)


def test_watch_prints_count_events_and_stops(topology):
    rig, app = switches_connect_while_watched(topology)
    code, out, err, transport = ctl(app, "watch", "--types", "switch", "--count", "3")
    assert code == 0 and err == ""
    lines = out.splitlines()
    assert len(lines) == 3
    names = sorted(rig.graph.switch_ids())[:3]
    for line, name in zip(lines, names):
        assert line.split()[1:4] == ["switch", name, "connected"]
    [stream] = transport.requests
    assert stream["query"] == {"types": "switch", "limit": "3"}
    assert "Last-Event-Id" not in stream["headers"]
    assert stream["timeout"] == cli.STREAM_IDLE_S     # silence longer than that: reconnect
    # ... which an idle stream that is well never shows: the heartbeats come more often.
    assert cli.STREAM_IDLE_S >= 2 * HEARTBEAT_S


def test_watch_an_mn_s_actions(rig):
    asked = []

    def wait_events(after, timeout):   # a policy engine acts while mpa-ctl watches
        if not asked:
            asked.append(ctl(app, "prepare", IDENTITY, "net-b1", role=ENGINE)[0])
        return rig.core.events.last_id > after

    app = rig_api(rig, wait_events)
    code, out, err, transport = ctl(app, "watch", "--identity", IDENTITY, "--types", "action",
                                    "--count", "1")
    assert code == 0 and asked == [0] and err == ""
    [action] = rig.core.actions.views()
    assert out == f"{action['created_at']}  action     {IDENTITY}  #1 prepare: pending\n"
    assert transport.requests[0]["query"] == {"identity": IDENTITY, "types": "action",
                                              "limit": "1"}


def test_watch_json_is_one_event_per_line(topology):
    rig, app = switches_connect_while_watched(topology)
    code, out, _, _ = ctl(app, "--json", "watch", "--count", "2")
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in events] == [1, 2]
    assert all(e["type"] == "switch" for e in events)


def test_watch_reconnects_where_it_left_off(topology):
    rig, app = switches_connect_while_watched(topology)
    transport = Wsgi(app, drops={"/mpa/v1/events": 2})
    slept = []
    code, out, err, _ = ctl(transport, "--json", "watch", "--count", "5",
                            sleep=slept.append)
    assert code == 0
    ids = [json.loads(line)["id"] for line in out.splitlines()]
    assert ids == [1, 2, 3, 4, 5]        # nothing lost, nothing twice
    first, second = transport.requests
    assert first["query"] == {"limit": "5"} and "Last-Event-Id" not in first["headers"]
    assert second["query"] == {"limit": "3"} and second["headers"]["Last-Event-Id"] == "2"
    assert slept == [1.0]
    assert "the stream broke (connection reset); reconnecting in 1 s from event 2" in err


def test_watch_after_a_controller_restart_follows_from_now(topology):
    rig, app = switches_connect_while_watched(topology, [lambda: rig.connect("core")])
    transport = Wsgi(app, drops={"/mpa/v1/events": 2})
    restarted = []

    def sleep(seconds):   # the controller restarts while mpa-ctl waits to reconnect
        restarted.append(seconds)
        rig.core.events = EventLog(rig.core.events.wall_offset)

    code, out, err, _ = ctl(transport, "--json", "watch", "--count", "3", sleep=sleep)
    assert code == 0 and restarted == [1.0]
    assert "event 2 is not the controller's any more (a restart?)" in err
    third = transport.requests[2]
    assert "Last-Event-Id" not in third["headers"] and third["query"] == {"limit": "1"}
    events = [json.loads(line) for line in out.splitlines()]
    assert [e["id"] for e in events] == [1, 2, 1]
    assert events[2]["data"]["switch"] == "core"


def test_watch_ctrl_c_is_a_quiet_exit_0(topology):
    rig = Rig(topology)

    def wait_events(after, timeout):
        raise KeyboardInterrupt

    code, out, err, _ = ctl(rig_api(rig, wait_events), "watch")
    assert (code, out, err) == (0, "", "")


def test_a_refused_watch_says_why(api):
    code, _, err, _ = ctl(api, "watch", "--types", "Switch!")
    assert code == 1 and err.startswith("mpa-ctl: 400 ")


# -- tokens ---------------------------------------------------------------------------------

def test_new_token_prints_only_the_token_and_keeps_its_digest(tmp_path):
    path = str(tmp_path / "api-tokens.yaml")
    code, out, err, transport = ctl(Wsgi(None), "new-token", "--file", path,
                                    "--role", "policy-engine", "--name", "engine-1", role=None)
    assert code == 0 and transport.requests == []     # no server
    token = out[:-1]
    assert out == token + "\n"
    assert api_tokens.TOKEN_BYTES <= len(token) <= api_tokens.MAX_TOKEN_CHARS
    assert token not in err and "engine-1 (policy-engine)" in err
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert api_tokens.load_tokens(path).identify(token) == \
        api_tokens.Principal("engine-1", "policy-engine")
    assert api_tokens.digest(token) in open(path).read() and token not in open(path).read()

    code, out, err, _ = ctl(Wsgi(None), "new-token", "--file", path, "--role", "admin",
                            "--name", "engine-1", role=None)
    assert code == 1 and out == ""
    assert "'engine-1' is used twice" in err
    assert len(api_tokens.load_tokens(path)) == 1


def test_new_token_refuses_an_unknown_role(tmp_path, capsys):
    path = tmp_path / "api-tokens.yaml"
    code, out, _, _ = ctl(Wsgi(None), "new-token", "--file", str(path), "--role", "root",
                          "--name", "x", role=None)
    assert code == 2 and out == "" and not path.exists()


def test_wait_outlasts_an_unreported_instruction():
    """--wait's default ends after the controller fails an instruction nobody
    reports on, so a waited action is always seen ending."""
    from mpa_ctl import cli
    from mpa_sdn.actions import INSTRUCTION_TIMEOUT_S
    assert cli.DEFAULT_WAIT_S > INSTRUCTION_TIMEOUT_S

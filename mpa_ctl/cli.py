"""``mpa-ctl``: the controller's northbound REST API for people.

    mpa-ctl [options] status             switches, MNs, handovers now and lately
    mpa-ctl [options] networks | mns | handovers | switches
    mpa-ctl [options] mn IDENTITY        one MN's whole MPA state
    mpa-ctl [options] counters [PREFIX]
    mpa-ctl [options] prepare IDENTITY NET [NET...]          [--wait [S]]
    mpa-ctl [options] handover IDENTITY NET [--poa POA] [--mode buffer|bicast]
                      [--buffer-old]                         [--wait [S]]
    mpa-ctl [options] complete | cancel IDENTITY NET         [--wait [S]]
    mpa-ctl [options] release IDENTITY NET [--scope lease|all] [--wait [S]]
    mpa-ctl [options] actions [--identity I] [--state S]
    mpa-ctl [options] action ID
    mpa-ctl [options] policy NET [--set KEY=VALUE ...] [--reset KEY ...]
    mpa-ctl [options] watch [--identity I] [--types a,b] [--count N]
    mpa-ctl new-token --file FILE --role ROLE --name NAME

The token comes from ``--token-file FILE`` or ``$MPA_TOKEN``, never from the
command line (where ``ps`` would show it).  Each action carries a fresh
``Idempotency-Key``, so the one repeat after a reset or a timeout does
nothing twice.  Exit status: 0 done; 1 the controller refused (the problem
is on stderr), or a followed action did not end ``done``; 2 usage; 3 no
answer from the controller.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import re
import ssl
import sys
import time
import urllib.parse
from dataclasses import dataclass, field
from typing import Callable, Mapping, TextIO

from mpa_ctl import render
from mpa_ctl.client import (ApiError, Client, StreamBroken, Unreachable, direct_opener,
                            new_key)
from mpa_protocol import api_tokens

EXIT_OK, EXIT_REFUSED, EXIT_USAGE, EXIT_UNREACHABLE, EXIT_INTERRUPTED = 0, 1, 2, 3, 130
DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_S = 10.0
DEFAULT_WAIT_S = 180.0    # longer than an unanswered instruction lives (120 s)
STREAM_IDLE_S = 45.0      # three of the controller's 15 s heartbeats: then it is dead
POLL_S = 1.0              # --wait without the stream: GET the action this often
RECONNECT_S = (1.0, 10.0)  # watch: first and longest delay before reconnecting
API = "/mpa/v1"
EVENTS = API + "/events"
# What the controller takes.
TOKEN = re.compile(rf"[\x21-\x7e]{{1,{api_tokens.MAX_TOKEN_CHARS}}}\Z")


class Usage(Exception):
    """A command line or local file that cannot be used (exit 2)."""


@dataclass
class System:
    """What mpa-ctl takes from the host; the tests replace parts."""

    clock: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    environ: Mapping[str, str] = field(default_factory=lambda: os.environ)
    stdout: TextIO | None = None
    stderr: TextIO | None = None


class Run:
    """One invocation: its arguments, its output and its client."""

    def __init__(self, args, opener, system: System):
        self.args, self.system = args, system
        self.out = system.stdout or sys.stdout
        self.err = system.stderr or sys.stderr
        self._opener = opener
        self._client: Client | None = None
        self.token_sent = False

    @property
    def client(self) -> Client:
        if self._client is None:
            url = _url(self.args.url or self.system.environ.get("MPA_URL") or DEFAULT_URL)
            token = _token(self.args.token_file, self.system.environ)
            self.token_sent = token is not None
            opener = self._opener if self._opener is not None else _opener(self.args.ca)
            self._client = Client(url, token, opener, self.args.timeout, on_retry=self.note)
        return self._client

    def print(self, lines) -> None:
        for line in lines:
            print(line, file=self.out, flush=True)

    def note(self, message: str) -> None:
        print(f"mpa-ctl: {message}", file=self.err, flush=True)

    def json(self, body) -> None:
        print(json.dumps(body, indent=1, sort_keys=True), file=self.out, flush=True)

    def show(self, body, lines: Callable[[object], list[str]]) -> int:
        if self.args.json:
            self.json(body)
        else:
            self.print(lines(body))
        return EXIT_OK

    def get(self, path: str, query: dict | None = None):
        return self.client.call("GET", API + path, query=query).body


# -- local checks ---------------------------------------------------------------------------

def _url(text: str) -> str:
    try:
        parts = urllib.parse.urlsplit(text)
        usable = parts.scheme in ("http", "https") and parts.hostname and (parts.port or 1)
    except ValueError:   # a bad port or IPv6 literal
        usable = False
    if not usable:
        raise Usage(f"--url {text!r}: an http:// or https:// URL of the controller")
    return text


def _token(path: str | None, environ: Mapping[str, str]) -> str | None:
    if path is not None:
        try:
            with open(path, encoding="utf-8") as f:
                lines = [line.strip() for line in f.read(4096).splitlines()]
        except (OSError, UnicodeDecodeError) as exc:
            raise Usage(f"--token-file {path}: {getattr(exc, 'strerror', None) or exc}") \
                from None
        token = next((line for line in lines if line and not line.startswith("#")), None)
        where = f"--token-file {path}"
        if token is None:
            raise Usage(f"{where}: no token in it")
    else:
        token, where = environ.get("MPA_TOKEN") or None, "MPA_TOKEN"
    if token is not None and not TOKEN.match(token):
        raise Usage(f"{where}: not a token (1-{api_tokens.MAX_TOKEN_CHARS} printable "
                    "characters, no spaces)")
    return token


def _opener(ca: str | None):
    try:
        return direct_opener(ca)
    except (OSError, ssl.SSLError) as exc:
        raise Usage(f"--ca {ca}: {getattr(exc, 'strerror', None) or exc}") from None


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"{text!r}: a number of seconds over 0")
    return value


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: a whole number from 1")
    return int(text)


def _quote(segment: str) -> str:
    return urllib.parse.quote(segment, safe="@")


# -- reading ----------------------------------------------------------------------------------

def cmd_status(run: Run) -> int:
    switches, mns, history = run.get("/switches"), run.get("/mobile-nodes"), \
        run.get("/handovers")
    body = {"switches": switches, "mobile_nodes": mns, "handovers": history}
    return run.show(body, lambda b: render.status(run.client.base_url, switches, mns, history))


def cmd_networks(run: Run) -> int:
    return run.show(run.get("/networks"), render.networks)


def cmd_mns(run: Run) -> int:
    return run.show(run.get("/mobile-nodes"), render.mobile_nodes)


def cmd_mn(run: Run) -> int:
    return run.show(run.get(f"/mobile-nodes/{_quote(run.args.identity)}"), render.mobile_node)


def cmd_handovers(run: Run) -> int:
    return run.show(run.get("/handovers"), render.handovers)


def cmd_switches(run: Run) -> int:
    return run.show(run.get("/switches"), render.switches)


def cmd_counters(run: Run) -> int:
    prefix = run.args.prefix or ""
    values = {k: v for k, v in run.get("/counters").items() if k.startswith(prefix)}
    return run.show(values, lambda b: render.counters(b, prefix))


def cmd_actions(run: Run) -> int:
    query = {"identity": run.args.identity, "state": run.args.state}
    return run.show(run.get("/actions", query), render.actions)


def cmd_action(run: Run) -> int:
    return run.show(run.get(f"/actions/{run.args.id}"), render.action)


# -- acting for an MN ------------------------------------------------------------------------

def _act(run: Run, endpoint: str, body: dict) -> int:
    args = run.args
    answer = run.client.call("POST", f"{API}/mobile-nodes/{_quote(args.identity)}/{endpoint}",
                             body, key=new_key())
    action = answer.body
    if answer.replayed:
        run.note("the controller had handled this request already; this is its first answer")
    if args.wait is None:
        return run.show(action, render.action)
    accepted = action
    if not args.json:
        run.print(render.action(action))
    try:
        action = follow(run, action, args.wait)
    except KeyboardInterrupt:
        run.note(f"stopped waiting; action {action['id']} goes on (mpa-ctl action "
                 f"{action['id']})")
        return EXIT_INTERRUPTED
    if args.json:
        run.json(action)
    elif action["state"] in render.FINAL and action != accepted:
        run.print(render.action(action))
    if action["state"] == "done":
        return EXIT_OK
    if action["state"] in render.FINAL:
        run.note(render.action_line(action))
    else:
        run.note(f"action {action['id']} is still {action['state']} after {args.wait:g} s")
    return EXIT_REFUSED


def cmd_prepare(run: Run) -> int:
    return _act(run, "prepare", {"candidates": run.args.networks})


def cmd_handover(run: Run) -> int:
    a = run.args
    body = {"network": a.network, "poa": a.poa, "mode": a.mode,
            "buffer_old": True if a.buffer_old else None}
    return _act(run, "pre-switch", {k: v for k, v in body.items() if v is not None})


def cmd_complete(run: Run) -> int:
    return _act(run, "complete", {"network": run.args.network})


def cmd_cancel(run: Run) -> int:
    return _act(run, "cancel", {"network": run.args.network})


def cmd_release(run: Run) -> int:
    body = {"network": run.args.network}
    if run.args.scope is not None:
        body["scope"] = run.args.scope
    return _act(run, "release", body)


def follow(run: Run, action: dict, seconds: float) -> dict:
    """The action once it is done or failed, or as it is when
    ``seconds`` have passed: from the event stream, or by asking for it
    every POLL_S if the stream cannot be had or breaks."""
    deadline = run.system.clock() + seconds
    if action["state"] in render.FINAL:
        return action
    try:
        return _follow_stream(run, action, deadline)
    except (StreamBroken, Unreachable) as exc:
        run.note(f"the event stream failed ({exc}); asking for action {action['id']} every "
                 f"{POLL_S:g} s")
    while True:
        action = _progress(run, action, run.get(f"/actions/{action['id']}"))
        now = run.system.clock()
        if action["state"] in render.FINAL or now >= deadline:
            return action
        run.system.sleep(min(POLL_S, deadline - now))


def _follow_stream(run: Run, action: dict, deadline: float) -> dict:
    remaining = max(1.0, deadline - run.system.clock())
    stream = run.client.stream(EVENTS, {"types": "action", "identity": action["identity"]},
                               timeout=min(STREAM_IDLE_S, remaining))
    try:
        # Read once the stream is open: a change from now on is in the stream.
        action = _progress(run, action, run.get(f"/actions/{action['id']}"))
        if action["state"] in render.FINAL:
            return action
        for event in stream:
            if event is not None and event.get("data", {}).get("id") == action["id"]:
                action = _progress(run, action, event["data"])
                if action["state"] in render.FINAL:
                    return action
            if run.system.clock() >= deadline:
                return action
        raise StreamBroken("the controller ended the stream")
    except StreamBroken:
        if run.system.clock() >= deadline:   # silence until the deadline: not a failure
            return action
        raise
    finally:
        stream.close()


def _progress(run: Run, before: dict, now: dict) -> dict:
    if now["state"] != before["state"] and not run.args.json \
            and now["state"] not in render.FINAL:
        run.print([f"  ... {now['state']} at {now['updated_at']}"])
    return now


# -- policy ---------------------------------------------------------------------------------

def _changeable(run: Run) -> dict:
    """The fields of NetworkPolicyChange and their JSON types, from the document
    the controller serves (so that a newer controller's fields work too)."""
    document = run.client.call("GET", API + "/openapi.json").body
    try:
        properties = document["components"]["schemas"]["NetworkPolicyChange"]["properties"]
    except (KeyError, TypeError):
        raise Usage("the controller's API document has no NetworkPolicyChange") from None
    return {name: ([schema["type"]] if isinstance(schema.get("type"), str)
                   else list(schema.get("type", []))) for name, schema in properties.items()}


def _value(name: str, text: str, types: list[str]):
    if text == "null" and "null" in types:
        return None
    if "integer" in types and re.fullmatch(r"[+-]?\d+", text):
        return int(text)
    if "number" in types:
        try:
            value = float(text)
        except ValueError:
            value = math.nan
        if math.isfinite(value):
            return int(value) if re.fullmatch(r"[+-]?\d+", text) else value
    if "string" in types:
        return text
    raise Usage(f"--set {name}={text}: must be {' or '.join(types)}")


def cmd_policy(run: Run) -> int:
    a = run.args
    path = f"/networks/{_quote(a.network)}/policy"
    if not a.set and not a.reset:
        return run.show(run.get(path), render.policy)
    fields = _changeable(run)
    changes: dict = {}
    pairs = [tuple(item.split("=", 1)) if "=" in item else (item, None) for item in a.set]
    for name, text in pairs + [(name, "null") for name in a.reset]:
        if text is None:
            raise Usage(f"--set {name}: KEY=VALUE")
        if name not in fields:
            raise Usage(f"{name}: not a policy field; one of {', '.join(sorted(fields))}")
        if name in changes:
            raise Usage(f"{name}: given twice")
        changes[name] = _value(name, text, fields[name])
    body = run.client.call("PATCH", API + path, changes).body
    return run.show(body, render.policy)


# -- events ---------------------------------------------------------------------------------

def cmd_watch(run: Run) -> int:
    a = run.args
    query = {"identity": a.identity, "types": a.types}
    last, seen, delay, connected = None, 0, RECONNECT_S[0], False
    while True:
        if a.count is not None:
            query["limit"] = a.count - seen
        try:
            stream = run.client.stream(EVENTS, query, last,
                                       timeout=max(run.args.timeout, STREAM_IDLE_S))
        except Unreachable as exc:
            if not connected:
                raise
            run.note(f"{exc}; again in {delay:g} s")
            run.system.sleep(delay)
            delay = min(2 * delay, RECONNECT_S[1])
            continue
        except ApiError as exc:
            if last is None or exc.status != 400:
                raise
            # The controller's events began again from 1: it restarted.
            run.note(f"event {last} is not the controller's any more (a restart?); "
                     "following from now: read the state again")
            last = None
            continue
        connected = True
        try:
            for event in stream:
                if event is None:
                    continue
                last = stream.last_id or str(event.get("id"))
                if a.json:
                    print(json.dumps(event, sort_keys=True), file=run.out, flush=True)
                else:
                    run.print([render.event_line(event)])
                delay = RECONNECT_S[0]
                if event.get("type") != "reset":
                    seen += 1
                    if a.count is not None and seen >= a.count:
                        return EXIT_OK
            why = "the controller ended the stream"
        except StreamBroken as exc:
            why = f"the stream broke ({exc})"
        finally:
            stream.close()
        run.note(f"{why}; reconnecting in {delay:g} s from event {last or 'now'}")
        run.system.sleep(delay)
        delay = min(2 * delay, RECONNECT_S[1])


# -- tokens ---------------------------------------------------------------------------------

def cmd_new_token(run: Run) -> int:
    a = run.args
    try:
        token = api_tokens.add_token(a.file, a.name, a.role)
    except api_tokens.TokenFileError as exc:
        for problem in exc.problems:
            run.note(problem)
        return EXIT_REFUSED
    except OSError as exc:
        run.note(f"{a.file}: {exc.strerror or exc}")
        return EXIT_REFUSED
    print(token, file=run.out, flush=True)
    run.note(f"added {a.name} ({a.role}) to {a.file}; the token is shown only this once. "
             "The controller reads the file when it starts (--api-tokens).")
    return EXIT_OK


# -- the command line -----------------------------------------------------------------------

def _common(parser: argparse.ArgumentParser, main: bool) -> None:
    """The options; on a command's parser they default to "not given", so that
    an option before the command is not reset by the command's parser."""
    d = (lambda value: value) if main else (lambda value: argparse.SUPPRESS)
    add = parser.add_argument
    add("--url", default=d(None),
        help=f"the controller's REST API (default: $MPA_URL, else {DEFAULT_URL})")
    add("--token-file", default=d(None), metavar="FILE",
        help="a file holding the bearer token (default: $MPA_TOKEN)")
    add("--ca", default=d(None), metavar="FILE",
        help="HTTPS: trust the certificates in FILE (a private CA)")
    add("--json", action="store_true", default=d(False),
        help="print the API's JSON as it comes instead of tables")
    add("--timeout", type=_seconds, default=d(DEFAULT_TIMEOUT_S), metavar="S",
        help=f"how long to wait for one answer (default: {DEFAULT_TIMEOUT_S:g})")


def build_parser() -> argparse.ArgumentParser:
    # A table of the commands, in the order --help lists them: long, and
    # clearer read top to bottom than split.
    # No abbreviations: "--token SECRET" must not be taken for --token-file.
    parser = argparse.ArgumentParser(
        prog="mpa-ctl", allow_abbrev=False, description="The mpa-sdn controller's northbound "
        "REST API: read the MNs' MPA state, act for an MN (policy-engine role), set a network's policy (admin), "
        "follow the events.", epilog="The token: --token-file FILE or $MPA_TOKEN. Exit "
        "status: 0 done, 1 refused (or a followed action did not end done), 2 usage, 3 no "
        "answer.")
    _common(parser, main=True)
    common = argparse.ArgumentParser(add_help=False, allow_abbrev=False)
    _common(common, main=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, text, *positionals):
        sub = commands.add_parser(name, parents=[common], help=text, description=text,
                                  allow_abbrev=False)
        for positional in positionals:
            sub.add_argument(*positional[:1], **positional[1])
        return sub

    identity = ("identity", {"metavar": "IDENTITY", "help": "the MN's identity (NAI)"})
    network = ("network", {"metavar": "NET"})

    def action(name, text, *positionals):
        sub = command(name, text, identity, *positionals)
        sub.add_argument("--wait", type=_seconds, nargs="?", const=DEFAULT_WAIT_S,
                         metavar="S", help="follow the action until it is done or "
                         f"failed, at most S seconds (default: {DEFAULT_WAIT_S:g}); "
                         "exit 0 only if done")
        return sub

    command("status", "switches, MNs, handovers in progress and the last ones' results")
    command("networks", "every network: prefix, gateway, AR, PoAs, pool, neighbours")
    command("mns", "one line per MN: home address, binding, tunnels, handover phase")
    command("mn", "one MN: SAs, leases, tunnels, binding, handover and its buffer, pending "
            "instructions, recent actions", identity)
    command("handovers", "the last finished handovers, then those in progress")
    command("switches", "every switch: connection, reconciliation, flows, errors")
    command("counters", "the controller's counters", (
        "prefix", {"nargs": "?", "metavar": "PREFIX", "help": "only those starting so"}))
    action("prepare", "prepare the MN's handover to candidate networks (pre-authentication, "
           "nCoA, tunnel, binding)", ("networks", {"nargs": "+", "metavar": "NET"}))
    handover = action("handover", "start the handover to a prepared network (pre-switch: the "
                      "target's AR buffers; the MN is told to switch)", network)
    handover.add_argument("--poa", help="the target PoA (default: the MN chooses)")
    handover.add_argument("--mode", choices=("buffer", "bicast"),
                          help="how the target gets the MN's traffic meanwhile "
                          "(default: buffer)")
    handover.add_argument("--buffer-old", action="store_true",
                          help="the old AR buffers for the MN's old address too")
    action("complete", "say that the MN has arrived in the network", network)
    action("cancel", "cancel the pre-switching handover and switch back", network)
    action("release", "give back what the network holds for the MN", network).add_argument(
        "--scope", choices=("lease", "all"), help="lease: the MPA-SA stays (default: all)")
    actions = command("actions", "the actions, newest last")
    actions.add_argument("--identity", help="only this MN's")
    actions.add_argument("--state", help="pending, delivered, done or failed")
    command("action", "one action", ("id", {"type": _positive, "metavar": "ID"}))
    policy = command("policy", "a network's handover policy; change it (admin) with --set "
                     "and --reset", network)
    policy.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                        help="a new value (a number, or null for the topology's default)")
    policy.add_argument("--reset", action="append", default=[], metavar="KEY",
                        help="back to the topology's default")
    watch = command("watch", "the event stream, one line per event; reconnects where it "
                    "left off")
    watch.add_argument("--identity", help="only this MN's events")
    watch.add_argument("--types", metavar="A,B", help="only these types (sa, lease, tunnel, "
                       "binding, handover, action, instruction, policy, switch)")
    watch.add_argument("--count", type=_positive, metavar="N", help="stop after N events")
    new_token = commands.add_parser(
        "new-token", allow_abbrev=False,
        help="add a token to the controller's tokens file (local) and print it",
        description="Add a token to the controller's tokens file (created with mode 600) and "
        "print it, once, alone on stdout.")
    new_token.add_argument("--file", required=True, metavar="FILE")
    new_token.add_argument("--role", required=True, choices=api_tokens.ROLES)
    new_token.add_argument("--name", required=True, help="who holds it (in the logs)")
    return parser


COMMANDS = {name[len("cmd_"):].replace("_", "-"): function
            for name, function in globals().items() if name.startswith("cmd_")}


def _problem(run: Run, exc: ApiError) -> None:
    p = exc.problem
    run.note(f"{exc.status} {p.get('title', '')}: {p.get('detail', '')}")
    for error in p.get("errors") or []:
        run.note(f"  {error.get('pointer')}: {error.get('detail')}")
    if p.get("allowed"):
        run.note(f"  allowed: {', '.join(p['allowed'])}")
    if exc.status == 401:
        run.note("the token was refused: check MPA_TOKEN or --token-file" if run.token_sent
                 else "no token: set MPA_TOKEN or use --token-file FILE "
                 "(make one with mpa-ctl new-token)")
    retry = exc.headers.get("Retry-After") if exc.headers is not None else None
    if exc.status == 503 and retry:
        run.note(f"the controller asks to retry after {retry} s")


def main(argv: list[str] | None = None, opener=None, system: System | None = None) -> int:
    """``opener``: the urllib opener to send with (default: a direct one)."""
    system = system or System()
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:   # --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    run = Run(args, opener, system)
    try:
        return COMMANDS[args.command](run)
    except Usage as exc:
        run.note(str(exc))
        return EXIT_USAGE
    except ApiError as exc:
        _problem(run, exc)
        return EXIT_REFUSED
    except Unreachable as exc:
        run.note(f"no answer from the controller: {exc}")
        return EXIT_UNREACHABLE
    except KeyboardInterrupt:
        return EXIT_OK if args.command == "watch" else EXIT_INTERRUPTED
    except BrokenPipeError:   # `mpa-ctl watch | head`: the reader has gone
        if run.out is sys.stdout:
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return EXIT_OK


if __name__ == "__main__":
    sys.exit(main())

"""``mpa-mn``: the MN's command line (run inside the MN's host, e.g. as root in
a Mininet host's network namespace).

    mpa-mn [options] discover            the CTNs of the network the MN is in
    mpa-mn [options] preauth NET...      an MPA-SA with each CTN's AA
    mpa-mn [options] configure NET...    an nCoA from each CTN's CA, on mpa-NET
    mpa-mn [options] up NET...           discover, then preauth + configure each
    mpa-mn [options] release NET... [--all]   give the nCoA back (--all: the SA too)
    mpa-mn [options] resume NET...       prove possession of a held SA
    mpa-mn [options] status              what the state file holds

Options may come before or after the command.  Output is one line per
result, or one JSON document with ``--json``.  Exit status: 0 all done;
1 an AA or CA refused, or did not answer, or the interface could not be set
(stderr names the network and the error code); 2 usage or configuration
errors.  Key material is never printed.
"""

from __future__ import annotations

import argparse
import ipaddress
import json
import logging
import secrets
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from mpa_mn import channels
from mpa_mn.channels import InbandChannel, RestChannel
from mpa_mn.client import MnError, MobileNode
from mpa_mn.protocol import ProtocolError
from mpa_mn.state import StateError, StateFile, default_path
from mpa_mn.vif import Ip, NoVifs, VifError, Vifs
from mpa_sdn.config import ConfigError
from mpa_sdn.signalling import ID_RE, MAC_RE
from mpa_sdn.credentials import MnCredentials, load_mn_credentials

LOG = logging.getLogger("mpa_mn.cli")

DEFAULT_CONTROLLER = "http://127.0.0.1:8080"
DEFAULT_CREDENTIALS = "/etc/mpa-mn/credentials.yaml"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


@dataclass
class System:
    """What the CLI takes from the host it runs on; the tests replace parts."""

    run: Callable = subprocess.run                 # for `ip`
    opener: Any = None                             # urllib opener (REST); None: direct
    socket_factory: Callable = channels.udp_socket  # in-band
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    sleep: Callable[[float], None] = time.sleep
    entropy: Callable[[int], bytes] = secrets.token_bytes
    stdout: TextIO | None = None
    stderr: TextIO | None = None


# -- arguments ------------------------------------------------------------------

def _network(value: str) -> str:
    if not ID_RE.fullmatch(value):
        raise argparse.ArgumentTypeError(f"{value!r} is not a network id")
    return value


def _ipv4(value: str) -> str:
    try:
        return str(ipaddress.IPv4Address(value))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an IPv4 address") from None


def _mac(value: str) -> str:
    if not MAC_RE.fullmatch(value.lower()):
        raise argparse.ArgumentTypeError(f"{value!r} is not a MAC address (aa:bb:cc:dd:ee:ff)")
    return value.lower()


def _url(value: str) -> str:
    parts = urllib.parse.urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise argparse.ArgumentTypeError(f"{value!r} is not an http:// or https:// URL")
    try:
        parts.port
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} has a bad port") from None
    return value


def _seconds(value: str) -> float:
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
    if not 0 < seconds <= 300:
        raise argparse.ArgumentTypeError("must be more than 0 and at most 300 seconds")
    return seconds


def _port(value: str) -> int:
    try:
        port = int(value)
    except ValueError:
        port = 0
    if not 1 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"{value!r} is not a UDP port")
    return port


def _common(parser: argparse.ArgumentParser, main: bool) -> None:
    """The options; on a command's parser they default to "not given", so that
    an option before the command is not reset by the command's parser."""
    d = (lambda value: value) if main else (lambda value: argparse.SUPPRESS)
    add = parser.add_argument
    add("--channel", choices=("rest", "inband"), default=d("rest"),
        help="REST to the controller, or UDP to each network's gateway (default: rest)")
    add("--controller", type=_url, default=d(DEFAULT_CONTROLLER), metavar="URL",
        help=f"the controller's REST API (default: {DEFAULT_CONTROLLER})")
    add("--credentials", default=d(DEFAULT_CREDENTIALS), metavar="FILE",
        help=f"the MN's keys per domain (default: {DEFAULT_CREDENTIALS})")
    add("--interface", default=d(None), metavar="IFACE",
        help="the MN's physical interface (default: the default route's)")
    add("--mac", type=_mac, default=d(None), help="the MN's MAC (default: the interface's)")
    add("--address", type=_ipv4, default=d(None),
        help="the MN's current IPv4 address (default: the interface's)")
    add("--gateway", type=_ipv4, default=d(None),
        help="in-band: where discovery goes (default: the default route's gateway)")
    add("--port", type=_port, default=d(channels.DEFAULT_PORT),
        help=f"in-band: the gateway's signalling port for discovery "
             f"(default: {channels.DEFAULT_PORT})")
    add("--state", default=d(None), metavar="FILE",
        help="the MPA-SAs between runs (default: /run/mpa-mn/IDENTITY.json)")
    add("--timeout", type=_seconds, default=d(channels.DEFAULT_TIMEOUT_S), metavar="S",
        help="how long to wait for one answer; in-band it is spread over 4 sends, "
             "each waiting twice as long as the one before (default: 7.5)")
    add("--no-vif", action="store_true", default=d(False),
        help="do not put nCoAs on virtual interfaces (unprivileged use)")
    add("--json", action="store_true", default=d(False),
        help="print one JSON document on stdout")
    add("-v", "--verbose", action="store_true", default=d(False), help="log to stderr")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="mpa-mn", description="The mobile node's side of Media-independent "
        "Pre-Authentication (RFC 6252): discovery, pre-authentication and pre-configuration "
        "with candidate target networks.")
    _common(parser, main=True)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, main=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, text, networks=True):
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        if networks:
            sub.add_argument("networks", nargs="+", type=_network, metavar="NET")
        return sub

    command("discover", "the candidate target networks of the MN's network", networks=False)
    command("preauth", "pre-authenticate with each network's AA")
    command("configure", "get an nCoA from each network's CA and put it on mpa-NET")
    command("up", "discover, then pre-authenticate and configure with each network")
    command("release", "give each network's nCoA back").add_argument(
        "--all", action="store_true", help="end the MPA-SA too")
    command("resume", "prove possession of each network's held MPA-SA")
    command("status", "the MPA-SAs and nCoAs in the state file", networks=False)
    return parser


# -- the MN ---------------------------------------------------------------------

class _Host:
    """The MN's MAC, address and default gateway: from the options, else asked of
    ``ip`` once, when first needed."""

    def __init__(self, args, ip: Ip):
        self.args, self.ip = args, ip
        self._interface = None

    def _ask(self, question, *args):
        try:
            return question(*args)
        except VifError as exc:   # no such interface, no `ip`: the user must fix it
            raise MnError("interface", str(exc)) from None

    def interface(self) -> tuple[str | None, str | None]:
        if self._interface is None:
            name = self.args.interface or self._ask(self.ip.default_route)[1]
            if name is None:
                raise MnError("usage", "no default route: give --interface "
                              "(or --mac and --address)")
            self.args.interface = name
            self._interface = self._ask(self.ip.interface, name)
        return self._interface

    def mac(self) -> str | None:
        return self.args.mac or self.interface()[0]

    def address(self) -> str | None:
        address = self.args.address or self.interface()[1]
        if address is None:
            raise MnError("usage", f"{self.args.interface} has no IPv4 address: give --address")
        return address

    def gateway(self) -> str:
        if self.args.gateway:
            return self.args.gateway
        gateway, _ = self._ask(self.ip.default_route, self.args.interface)
        if gateway is None:
            raise MnError("usage", "no default gateway to discover through: give --gateway")
        return gateway


# What each command needs to know about the host.
NEEDS_MAC = ("preauth", "up")
NEEDS_ADDRESS = ("discover", "preauth", "up")


def _channel(args, host: _Host, system: System):
    if args.channel == "rest":
        return RestChannel(args.controller, timeout=args.timeout, opener=system.opener,
                           sleep=system.sleep)
    return InbandChannel(host.address(), gateway=host.gateway, port=args.port,
                         timeout=args.timeout, socket_factory=system.socket_factory,
                         clock=system.clock, sleep=system.sleep)


def _credentials(args) -> MnCredentials:
    try:
        return load_mn_credentials(args.credentials)
    except ConfigError as exc:
        raise MnError("credentials", "; ".join(
            line if line.startswith(args.credentials) else f"{args.credentials}: {line}"
            for line in exc.lines())) from None


# -- commands -----------------------------------------------------------------------

def _preauth(node: MobileNode, network: str) -> dict:
    sa = node.preauthenticate(network)
    return {"domain": sa.domain, "identity": sa.identity, "sa": sa.sa, "lifetime": sa.lifetime}


def _up(node: MobileNode, network: str) -> dict:
    preauth = _preauth(node, network)
    return {**preauth, "config": _strip(node.configure(network))}


def _strip(config: dict) -> dict:
    return {k: v for k, v in config.items() if k != "network"}


PER_NETWORK = {
    "preauth": _preauth,
    "configure": lambda node, network: _strip(node.configure(network)),
    "up": _up,
    "release": lambda node, network, all=False: _strip(node.release(network, all=all)),
    "resume": lambda node, network: _strip(node.resume(network)),
}


def _exit_class(exc: Exception) -> int:
    return EXIT_USAGE if isinstance(exc, (MnError, StateError)) else EXIT_REFUSED


def _code(exc: Exception) -> str:
    if isinstance(exc, VifError):
        return "interface"
    if isinstance(exc, StateError):
        return "state"
    return exc.code


def _message(exc: Exception) -> str:
    return exc.message if isinstance(exc, (ProtocolError, MnError)) else str(exc)


def _run(args, node: MobileNode) -> tuple[dict, list[str], int]:
    """(JSON document, lines for humans, exit status); errors are in the document."""
    if args.command == "discover":
        found = node.discover()
        lines = [f"{found['network']} ({found['address']}): "
                 f"{len(found['candidates'])} candidate target network(s)"]
        lines += [_candidate_line(c) for c in found["candidates"]]
        return {"ok": True, **found}, lines, EXIT_OK
    if args.command == "status":
        status = node.status()
        lines = [_status_line(n) for n in status["networks"]] or ["no MPA-SAs"]
        return {"ok": True, **status}, lines, EXIT_OK
    if args.command == "up":
        node.discover()  # once, fresh: every network below is checked against it
    action = PER_NETWORK[args.command]
    results, lines, status = [], [], EXIT_OK
    for network in dict.fromkeys(args.networks):   # each once, in the order given
        try:
            if args.command == "release":
                result = action(node, network, all=args.all)
            else:
                result = action(node, network)
        except (ProtocolError, MnError, VifError) as exc:
            status = max(status, _exit_class(exc))
            results.append({"network": network, "ok": False,
                            "error": {"code": _code(exc), "message": _message(exc)}})
            continue
        results.append({"network": network, "ok": True, **result})
        lines.append(_result_line(args.command, network, result))
    return {"ok": status == EXIT_OK, "results": results}, lines, status


def _candidate_line(c: dict) -> str:
    aa = c["aa"]
    line = (f"  {c['network']}: served by {c['served_by']}, prefix {c.get('prefix')}, "
            f"AA {aa['address']}:{aa.get('port', channels.DEFAULT_PORT)}")
    if c.get("l2_handover_ms") is not None:
        line += f", L2 handover {c['l2_handover_ms']:g} ms"
    return line


def _config_text(config: dict) -> str:
    text = (f"nCoA {config['address']} (/{config['prefix_len']}), router {config['router']} "
            f"at {config['gateway_mac']}, lease {config['lease_time']} s")
    if config.get("dns"):
        text += f", DNS {' '.join(config['dns'])}"
    if config.get("interface"):
        text += f", on {config['interface']}"
    return text


def _result_line(command: str, network: str, r: dict) -> str:
    if command in ("preauth", "up"):
        line = (f"{network}: pre-authenticated with {r['domain']} as {r['identity']}, "
                f"MPA-SA {r['sa'][:8]}, lifetime {r['lifetime']} s")
        return line + (f"; {_config_text(r['config'])}" if command == "up" else "")
    if command == "configure":
        return f"{network}: {_config_text(r)}"
    if command == "release":
        what = "the nCoA and the MPA-SA" if r["scope"] == "all" else "the nCoA"
        return f"{network}: released {what}" + (" (interface removed)"
                                                if r["interface_removed"] else "")
    return f"{network}: resumed; the MPA-SA is {r['state']}"


def _status_line(n: dict) -> str:
    line = (f"{n['network']}: MPA-SA {n['sa'][:8]} with {n['domain']} as {n['identity']}, "
            + ("expired" if n["expired"] else f"expires in {n['expires_in']} s")
            + f", next seq {n['next_seq']}")
    if n["config"]:
        line += f"; nCoA {n['config']['address']}"
        if n["interface"]:
            line += f" on {n['interface']}"
        line += f", lease ends in {n['lease_expires_in']} s"
    else:
        line += "; not configured"
    return line


# -- main ------------------------------------------------------------------------------

def main(argv: list[str] | None = None, system: System | None = None) -> int:
    system = system or System()
    stdout = system.stdout or sys.stdout
    stderr = system.stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    if args.verbose:
        logging.basicConfig(level=logging.DEBUG, stream=stderr,
                            format="%(asctime)s %(name)s %(levelname)s %(message)s")
    document = {"command": args.command, "channel": args.channel}
    channel = None
    try:
        ip = Ip(system.run)
        host = _Host(args, ip)
        credentials = None
        if args.command in NEEDS_MAC or args.state is None:
            credentials = _credentials(args)
        path = args.state or default_path(i for i, _ in credentials.keys.values())
        mac = host.mac() if args.command in NEEDS_MAC else args.mac
        address = (host.address() if args.command in NEEDS_ADDRESS or
                   (args.channel == "inband" and args.command != "status") else args.address)
        channel = _channel(args, host, system) if args.command != "status" else None
        store = StateFile(path)
        with store.locked(clock=system.clock, sleep=system.sleep):
            node = MobileNode(credentials or MnCredentials({}), mac, address, channel, store,
                              NoVifs() if args.no_vif else Vifs(ip), entropy=system.entropy,
                              wall=system.wall)
            result, lines, status = _run(args, node)
    except (ProtocolError, MnError, VifError, StateError) as exc:
        document.update(ok=False, error={"code": _code(exc), "message": _message(exc)})
        result, lines, status = {}, [], _exit_class(exc)
        print(f"mpa-mn: {args.command}: {_code(exc)}: {_message(exc)}", file=stderr)
    document.update(result)
    if channel is not None and channel.counters:
        document["counters"] = dict(sorted(channel.counters.items()))
    for item in document.get("results", []):
        if not item["ok"]:
            print(f"mpa-mn: {item['network']}: {item['error']['code']}: "
                  f"{item['error']['message']}", file=stderr)
    if args.json:
        print(json.dumps(document, indent=1, sort_keys=True), file=stdout)
    else:
        for line in lines:
            print(line, file=stdout)
    return status


if __name__ == "__main__":
    sys.exit(main())

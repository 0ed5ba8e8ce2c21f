"""``mpa-mn``: the MN's command line (run inside the MN's host, e.g. as root in
a Mininet host's network namespace).

    mpa-mn [options] discover            the CTNs of the network the MN is in
    mpa-mn [options] preauth NET...      an MPA-SA with each CTN's AA
    mpa-mn [options] configure NET...    an nCoA from each CTN's CA, on mpa-NET
    mpa-mn [options] up NET...           discover, then preauth + configure each
    mpa-mn [options] release NET... [--all]   give the nCoA back (--all: the SA too)
    mpa-mn [options] resume NET...       prove possession of a held SA
    mpa-mn [options] status              what the state file holds

The proactive handover (RFC 6252 §6.3 steps 2-6; see mpa_mn/handover.py):

    mpa-mn [options] tunnel NET... [--lifetime S]   the tunnel from NET's AR to where the
                                         MN is: its PoA (MPLS), or the MN itself (VXLAN,
                                         ended on mpa-NET)
    mpa-mn [options] untunnel NET...     release it
    mpa-mn [options] bind NET --home ADDR [--care-of ADDR] [--lifetime S]
                                         home address -> care-of, in-band from the care-of;
                                         kept by the home domain (the identity's realm):
                                         for NET of another domain, under the MPA-SA with
                                         a network of it, the MN then rewriting addresses
                                         for the correspondents the answer lists (nftables)
    mpa-mn [options] switch NET --phase pre-switch|arrived|cancel|link-lost [--buffer-old]
                     [--mode buffer|bicast]
    mpa-mn [options] attach NET          after the link-layer switch: the nCoA on the
                                         interface, then "arrived" in-band from it
    mpa-mn [options] handover NET --home ADDR [--mode buffer|bicast|none]
                     [--buffer-old] [--wait-link [--link-timeout S]]
                                         preauth, configure, tunnel, bind, pre-switch
                                         (none: no pre-switch, no arrived); with
                                         --wait-link the switch, then attach

A handover without MPA, the baseline (RFC 6252 C.5; see mpa_mn/reactive.py):

    mpa-mn [options] reactive NET --home ADDR [--wait-link [--link-timeout S]]
                     [--probe-wait S] [--probe-num N] [--probe-min S] [--probe-max S]
                     [--announce-wait S] [--announce-num N] [--announce-interval S]
                     [--max-conflicts N] [--dhcp-retry S] [--dhcp-timeout S]
                     [--decline-wait S]
                                         after the switch: authenticate with NET's AA,
                                         DHCP on the wire, RFC 5227 DAD (defaults: its
                                         constants), the address on the interface, then
                                         bind the home address to it

Copy-and-forward with a second interface (RFC 6252 §7.6.2; see mpa_mn/standby.py):

    mpa-mn [options] standby NET --interface IF2 [--old-interface IF1] --home ADDR
                     [--wait-loss [--loss-timeout S]]
                                         preauth (for IF2's MAC), configure, the nCoA on
                                         IF2, a standby binding; with --wait-loss, when
                                         IF1's carrier drops: the default route to IF2,
                                         then "link-lost" with what IF1 received

Following a policy engine (the northbound API's actions; see mpa_mn/follow.py):

    mpa-mn [options] follow --home ADDR [--network NET] [--wait S | --poll S]
                     [--link-timeout S] [--count N] [--for S]
                                         ask the current network for instructions
                                         (prepare, switch, stay, forget), carry them out
                                         and report; one JSON event per line

``handover``, ``reactive`` (with --wait-link: once it watches its carrier) and
``standby`` print ``{"event": "ready", ...}`` as one line (and flush it) when
the MN is ready for the link-layer switch or the loss, whatever the output
mode.

With one controller per domain, ``--domain-controller DOMAIN=URL`` (once per
domain) says where each domain's REST API is; a request about a network goes
to its domain's (discovery says which), ``--controller`` to the others.

Options may come before or after the command.  Output is one line per
result, or one JSON document with ``--json``.  Exit status: 0 all done;
1 an AA, CA or AR refused, or did not answer, or the interface could not be
set, or the link did not switch (or was not lost) in time, or no usable
address came by DHCP, or the controller switched the handover back
(``switched-back``: the answer to ``arrived`` says so, or that the handover is
gone; the result keeps what the MN did) (stderr names the network and the
error code); 2 usage or configuration errors.  Key material is never printed.
"""

from __future__ import annotations

import argparse
import collections
import ipaddress
import json
import logging
import secrets
import signal
import subprocess
import sys
import time
import urllib.parse
from dataclasses import dataclass
from typing import Any, Callable, TextIO

from mpa_mn import channels, link, report, standby
from mpa_mn import follow as follow_mod
from mpa_mn.binding_rewrite import NoRewrites, Nft, RewriteError, Rewrites
from mpa_mn.channels import Controllers, InbandChannel, RestChannel
from mpa_mn.dad import DadSettings
from mpa_mn.dhcp_client import DhcpSettings
from mpa_mn.handover import (
    DEFAULT_LINK_TIMEOUT_S, MODES, Handover, HandoverFailed, arrival_checked, plan_attach)
from mpa_mn.link import LinkError
from mpa_mn.mobile_node import MnError, MobileNode, without_network
from mpa_mn.protocol import ProtocolError
from mpa_mn.reactive import Reactive, ReactiveSettings
from mpa_mn.state_file import StateError, StateFile, default_path
from mpa_mn.vif import Ip, NoVifs, VifError, Vifs, ipv4_addresses
from mpa_mn.credentials import MnCredentials, load_mn_credentials
from mpa_protocol.log_text import EscapingFormatter
from mpa_protocol.messages import (BUFFER, HANDOVER_MODES, HANDOVER_PHASES, ID_RE, MAC_RE,
                                   MAX_WAIT_S)
from mpa_protocol.schema import ConfigError

LOG = logging.getLogger("mpa_mn.cli")

DEFAULT_CONTROLLER = "http://127.0.0.1:8080"
DEFAULT_CREDENTIALS = "/etc/mpa-mn/credentials.yaml"
EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2


@dataclass
class System:
    """What the CLI takes from the host it runs on; the tests replace parts."""

    run: Callable = subprocess.run                 # for `ip`
    nft: Callable = subprocess.run                 # for `nft`: the rewriting of a binding abroad
    opener: Any = None                             # urllib opener (REST); None: direct
    socket_factory: Callable = channels.udp_socket  # in-band
    raw_socket: Callable = link.raw_socket         # the gratuitous ARP
    packet_socket: Callable = link.packet_socket   # reactive: DHCP and ARP probes
    sniff_socket: Callable = standby.sniff_socket  # what the old interface receives
    sysfs: str = link.SYSFS_NET                    # the carrier (--wait-link, --wait-loss)
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], float] = time.time
    wall_ns: Callable[[], int] = time.time_ns      # the handover's marks
    perf_ns: Callable[[], int] = time.perf_counter_ns  # the handover's durations
    sleep: Callable[[float], None] = time.sleep
    # Between two looks at the carrier while the link switches (None: sleep).
    link_wait: Callable[[float], None] | None = None
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


def _domain_controller(value: str) -> tuple[str, str]:
    domain, equals, url = value.partition("=")
    if not equals or not ID_RE.fullmatch(domain):
        raise argparse.ArgumentTypeError(f"{value!r} is not DOMAIN=URL")
    return domain, _url(url)


def _duration(zero: bool):
    """A parser of seconds, up to 300; from 0 with ``zero``, else above it."""
    def parse(value: str) -> float:
        try:
            seconds = float(value)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{value!r} is not a number of seconds") from None
        if not (0 <= seconds if zero else 0 < seconds) or seconds > 300:
            raise argparse.ArgumentTypeError(f"must be {'0' if zero else 'more than 0'} "
                                             "and at most 300 seconds")
        return seconds
    return parse


_seconds = _duration(zero=False)   # a time to wait for something
_wait = _duration(zero=True)       # a wait RFC 5227 or RFC 2131 sets, which may be none


def _whole(least: int, most: int, what: str):
    """A parser of whole numbers from ``least`` to ``most``, ``what`` in errors."""
    def parse(value: str) -> int:
        try:
            number = int(value)
        except ValueError:
            number = least - 1
        if not least <= number <= most:
            raise argparse.ArgumentTypeError(f"{value!r} is not {what} (at least {least})")
        return number
    return parse


def _count(least: int):
    return _whole(least, 100, "a count up to 100")


def _lifetime(least: int):
    return _whole(least, 2**31 - 1, "a lifetime in whole seconds")


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
        help=f"the controller's REST API (default: {DEFAULT_CONTROLLER}); with one "
             "controller per domain, the one of domains not given --domain-controller")
    add("--domain-controller", type=_domain_controller, action="append", default=d([]),
        metavar="DOMAIN=URL", help="the REST API of DOMAIN's controller, where requests "
        "about its networks go (once per domain)")
    add("--credentials", default=d(DEFAULT_CREDENTIALS), metavar="FILE",
        help=f"the MN's identity and EAP method per domain (docs/topology.md; default: "
             f"{DEFAULT_CREDENTIALS})")
    add("--interface", default=d(None), metavar="IFACE",
        help="the MN's physical interface (default: the default route's); standby: the "
             "interface to prepare")
    add("--mac", type=_mac, default=d(None),
        help="the MN's MAC (default: the interface's; standby: the prepared one's)")
    add("--address", type=_ipv4, default=d(None),
        help="the MN's current IPv4 address (default: the interface's)")
    add("--home", type=_ipv4, default=d(None), metavar="ADDR",
        help="the MN's home address (bind, handover, standby)")
    add("--gateway", type=_ipv4, default=d(None),
        help="in-band: where discovery goes (default: the default route's gateway)")
    add("--port", type=_port, default=d(channels.DEFAULT_PORT),
        help=f"in-band: the gateway's signalling port for discovery "
             f"(default: {channels.DEFAULT_PORT})")
    add("--state", default=d(None), metavar="FILE",
        help="the MPA-SAs between runs (default: /run/mpa-mn/IDENTITY.json)")
    add("--timeout", type=_seconds, default=d(channels.DEFAULT_TIMEOUT_S), metavar="S",
        help="how long to wait for one answer; in-band it is spread over 4 sends, "
             "each waiting twice as long as the one before; PANA (pre-authentication): "
             "for each message of the AA (default: 7.5)")
    add("--no-vif", action="store_true", default=d(False),
        help="do not put nCoAs on virtual interfaces, nor install the rewriting of a "
             "binding abroad: only report them (unprivileged use)")
    add("--json", action="store_true", default=d(False),
        help="print one JSON document on stdout")
    add("-v", "--verbose", action="store_true", default=d(False), help="log to stderr")


def build_parser() -> argparse.ArgumentParser:
    # A table of the commands, in the order --help lists them: long, and
    # clearer read top to bottom than split further (the longer commands'
    # options are in functions of their own).
    parser = argparse.ArgumentParser(
        prog="mpa-mn", description="The mobile node's side of Media-independent "
        "Pre-Authentication (RFC 6252): discovery, pre-authentication and pre-configuration "
        "with candidate target networks.")
    _common(parser, main=True)
    common = argparse.ArgumentParser(add_help=False)
    _common(common, main=False)
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def command(name, text, networks="+"):
        sub = commands.add_parser(name, parents=[common], help=text, description=text)
        if networks:
            sub.add_argument("networks", nargs=networks, type=_network, metavar="NET")
        return sub

    def buffer_old(sub):
        sub.add_argument("--buffer-old", action="store_true",
                         help="the old network's AR buffers for the MN's old address too")

    def wait_link(sub, then):
        sub.add_argument("--wait-link", action="store_true",
                         help=f"wait for the interface's carrier to drop and come back, "
                         f"then {then}")
        sub.add_argument("--link-timeout", type=_seconds, default=DEFAULT_LINK_TIMEOUT_S,
                         metavar="S", help="how long --wait-link waits "
                         f"(default: {DEFAULT_LINK_TIMEOUT_S:g})")

    command("discover", "the candidate target networks of the MN's network", networks=False)
    command("preauth", "pre-authenticate with each network's AA")
    command("configure", "get an nCoA from each network's CA and put it on mpa-NET")
    command("up", "discover, then pre-authenticate and configure with each network")
    command("release", "give each network's nCoA back").add_argument(
        "--all", action="store_true", help="end the MPA-SA too")
    command("resume", "prove possession of each network's held MPA-SA")
    command("ping", "PANA's Ping on each network's MPA-SA: the AA answers if it holds it")
    command("terminate", "end each network's MPA-SA by PANA-Termination (its nCoA too)")
    command("status", "the MPA-SAs and nCoAs in the state file", networks=False)
    command("tunnel", "a proactive handover tunnel from each network's AR to where the MN "
            "is, for the network's nCoA: to its PoA (MPLS), or to the MN itself (VXLAN, ended "
            "on mpa-NET)").add_argument(
        "--lifetime", type=_lifetime(1), metavar="S", help="ask for this lifetime")
    command("untunnel", "release each network's proactive handover tunnel")
    bind = command("bind", "bind the home address (--home) to a care-of address at the "
                   "network's AR; sent in-band from the care-of address", networks=1)
    bind.add_argument("--care-of", type=_ipv4, metavar="ADDR",
                      help="default: the interface's address in the network if the MN is "
                      "attached to it, else the network's nCoA")
    bind.add_argument("--lifetime", type=_lifetime(0), metavar="S",
                      help="ask for this lifetime (0: remove the binding)")
    switch = command("switch", "tell the network's AR a phase of the handover", networks=1)
    switch.add_argument("--phase", required=True, choices=HANDOVER_PHASES)
    buffer_old(switch)
    switch.add_argument("--mode", choices=HANDOVER_MODES,
                        help="how the target gets the MN's traffic meanwhile")
    command("attach", "after the link-layer switch: the nCoA on the interface, the old "
            "address off, the router as default route, a gratuitous ARP, then arrived",
            networks=1)
    handover = command("handover", "pre-authenticate, configure, tunnel, bind (--home) and "
                       "pre-switch, then print the ready event; with --wait-link, wait for "
                       "the link-layer switch and attach", networks=1)
    buffer_old(handover)
    handover.add_argument("--mode", choices=MODES, default=BUFFER,
                          help="buffer: the target's AR buffers while the link switches; "
                          "bicast: the correspondents' edges send to both networks; none: no "
                          "pre-switch, so nothing holds the traffic (default: buffer)")
    wait_link(handover, "attach (a handover that pre-switched is cancelled if it never "
              "comes)")
    reactive = command("reactive", "a handover without MPA: after the link-layer switch, "
                       "authenticate with the network's AA, get an address by DHCP, check it "
                       "(RFC 5227), put it on the interface and bind the home address (--home) "
                       "to it", networks=1)
    wait_link(reactive, "go on")
    _reactive_options(reactive)
    stand = command("standby", "make a second interface (--interface) ready in the "
                    "network and bind the home address (--home) to it in standby; with "
                    "--wait-loss, when the old interface's link is lost, switch to it",
                    networks=1)
    _standby_options(stand)
    follow = command("follow", "carry out what a policy engine asks of the MN: ask the "
                     "current network for instructions, do each, report; events as JSON lines",
                     networks=False)
    _follow_options(follow)
    return parser


def _standby_options(sub: argparse.ArgumentParser) -> None:
    """standby's: the old interface and the wait for its loss."""
    sub.add_argument("--old-interface", metavar="IFACE",
                     help="the active interface (default: the default route's)")
    sub.add_argument("--wait-loss", action="store_true",
                     help="watch the old interface until its carrier drops, then move "
                     "the default route and send link-lost")
    sub.add_argument("--loss-timeout", type=_seconds, default=standby.DEFAULT_LOSS_TIMEOUT_S,
                     metavar="S", help="how long --wait-loss waits "
                     f"(default: {standby.DEFAULT_LOSS_TIMEOUT_S:g})")


def _follow_options(sub: argparse.ArgumentParser) -> None:
    """follow's: the network asked, the waits, when to stop."""
    sub.add_argument("--network", type=_network, metavar="NET",
                     help="the network whose MPA-SA asks (default: the one the MN is in, "
                     "by discovery); after each switch, the new one")
    sub.add_argument("--wait", type=_whole(0, MAX_WAIT_S, "--wait"), default=None, metavar="S",
                     help="REST: each question waits at the controller up to S s for an "
                     f"instruction (default: {follow_mod.DEFAULT_WAIT_S}; in-band: 0)")
    sub.add_argument("--poll", type=_seconds, default=follow_mod.DEFAULT_POLL_S,
                     metavar="S", help="between two questions that do not wait "
                     f"(default: {follow_mod.DEFAULT_POLL_S:g})")
    sub.add_argument("--link-timeout", type=_seconds, default=DEFAULT_LINK_TIMEOUT_S,
                     metavar="S", help="how long a switch waits for the link "
                     f"(default: {DEFAULT_LINK_TIMEOUT_S:g})")
    sub.add_argument("--count", type=_count(1), metavar="N",
                     help="stop after N instructions (default: until stopped)")
    sub.add_argument("--for", dest="duration", type=_seconds, metavar="S",
                     help="stop after S seconds")


def _reactive_options(sub: argparse.ArgumentParser) -> None:
    dad, dhcp = DadSettings(), DhcpSettings()
    for flag, kind, default, text in (
            ("--probe-wait", _wait, dad.probe_wait_s,
             "DAD: the most it waits before its first probe"),
            ("--probe-num", _count(0), dad.probe_num, "DAD: probes to send; 0: no DAD"),
            ("--probe-min", _wait, dad.probe_min_s, "DAD: the least time between probes"),
            ("--probe-max", _wait, dad.probe_max_s, "DAD: the most time between probes"),
            ("--announce-wait", _wait, dad.announce_wait_s, "DAD: the wait after the last probe"),
            ("--announce-num", _count(1), dad.announce_num, "announcements of the address"),
            ("--announce-interval", _wait, dad.announce_interval_s, "between announcements"),
            ("--max-conflicts", _count(1), dad.max_conflicts,
             "give up at this many addresses found in use"),
            ("--dhcp-retry", _seconds, dhcp.first_wait_s,
             "DHCP: the wait before the first retransmission, doubled for each next one up "
             "to 64 s, each randomised by a quarter"),
            ("--dhcp-timeout", _seconds, dhcp.timeout_s, "DHCP: give up after this long"),
            ("--decline-wait", _wait, ReactiveSettings().decline_wait_s,
             "after declining an address in use, before DHCP starts again")):
        sub.add_argument(flag, type=kind, default=default,
                         metavar="N" if isinstance(default, int) else "S",
                         help=f"{text} (default: {default:g})")


def _reactive_settings(args) -> ReactiveSettings:
    try:
        return ReactiveSettings(
            DhcpSettings(first_wait_s=args.dhcp_retry, jitter_s=args.dhcp_retry / 4,
                         max_wait_s=max(args.dhcp_retry, DhcpSettings().max_wait_s),
                         timeout_s=args.dhcp_timeout),
            DadSettings(args.probe_wait, args.probe_num, args.probe_min, args.probe_max,
                        args.announce_wait, args.announce_num, args.announce_interval,
                        args.max_conflicts),
            args.decline_wait)
    except ValueError as exc:
        raise MnError("usage", str(exc)) from None


# -- the MN ---------------------------------------------------------------------

class _Host:
    """The MN's MAC, address and default gateway: from the options, else asked of
    ``ip`` once, when first needed.  They are those of the interface the MN is
    active on: for standby, the old one (its --interface is being prepared)."""

    def __init__(self, args, ip: Ip):
        self.args, self.ip = args, ip
        self.option = "old_interface" if args.command == "standby" else "interface"
        self._interface = None

    def _ask(self, question, *args):
        try:
            return question(*args)
        except VifError as exc:   # no such interface, no `ip`: the user must fix it
            raise MnError("interface", str(exc)) from None

    def name(self) -> str:
        if getattr(self.args, self.option) is None:
            name = self._ask(self.ip.default_route)[1]
            if name is None:
                raise MnError("usage", f"no default route: give --{self.option.replace('_', '-')}"
                              + ("" if self.option == "old_interface"
                                 else " (or --mac and --address)"))
            setattr(self.args, self.option, name)
        return getattr(self.args, self.option)

    def interface(self) -> tuple[str | None, str | None]:
        if self._interface is None:
            self._interface = self._ask(self.ip.interface, self.name())
        return self._interface

    def addresses(self) -> list[str]:
        """Every IPv4 address the MN holds on its interface (or --address)."""
        if self.args.address:
            return [self.args.address]
        found = self._ask(self.ip.link, self.name())
        if found is None:
            raise MnError("interface", f"no interface {self.name()}")
        return [address for address, _ in ipv4_addresses(found)]

    def mac(self) -> str | None:
        return self.args.mac or self.interface()[0]

    def address(self) -> str | None:
        address = self.args.address or self.interface()[1]
        if address is None:
            raise MnError("usage", f"{self.name()} has no IPv4 address: give --address")
        return address

    def gateway(self) -> str:
        if self.args.gateway:
            return self.args.gateway
        gateway, _ = self._ask(self.ip.default_route, getattr(self.args, self.option))
        if gateway is None:
            raise MnError("usage", "no default gateway to discover through: give --gateway")
        return gateway


# What each command needs to know about the host (bind: it may pre-authenticate
# with a network of the home domain, the one the MN is in if it is one).
NEEDS_MAC = ("preauth", "up", "handover", "standby", "reactive", "follow", "bind")
# (tunnel: an MN-terminated tunnel ends at the MN's current address, always sent.)
NEEDS_ADDRESS = ("discover", "preauth", "up", "tunnel", "handover", "standby", "reactive",
                 "follow", "bind")
# Commands that send only in-band from an address of their own: --channel
# does not apply.
OWN_SOURCE = ("attach",)


def _inband(args, system: System, source: str, gateway=None) -> InbandChannel:
    return InbandChannel(source, gateway=gateway, port=args.port, timeout=args.timeout,
                         socket_factory=system.socket_factory, clock=system.clock,
                         sleep=system.sleep)


def _channel(args, host: _Host, system: System):
    if args.channel == "rest":
        # follow: a question may be held that long at the controller first.
        timeout = args.timeout + (_follow_wait(args) if args.command == "follow" else 0)
        return RestChannel(_controllers(args), timeout=timeout, opener=system.opener,
                           sleep=system.sleep)
    return _inband(args, system, host.address(), gateway=host.gateway)


def _controllers(args) -> Controllers:
    given = {}
    for domain, url in args.domain_controller:
        if given.get(domain, url) != url:
            raise MnError("usage", f"--domain-controller gives {domain} two URLs")
        given[domain] = url
    return Controllers.of(args.controller, given)


def _credentials(args) -> MnCredentials:
    try:
        return load_mn_credentials(args.credentials)
    except ConfigError as exc:
        raise MnError("credentials", "; ".join(
            line if line.startswith(args.credentials) else f"{args.credentials}: {line}"
            for line in exc.lines())) from None


# -- commands -----------------------------------------------------------------------

@dataclass
class _Context:
    """What a command works with."""

    args: Any
    node: MobileNode
    host: _Host
    ip: Ip
    system: System
    emit: Callable[[dict], None]   # the ready event of handover and standby

    def home(self) -> str:
        if not self.args.home:
            raise MnError("usage", f"{self.args.command} needs the MN's home address: "
                          "give --home")
        return self.args.home

    def handover(self) -> Handover:
        s = self.system
        return Handover(self.node, self.ip, sysfs=s.sysfs, raw_socket=s.raw_socket,
                        clock=s.clock, sleep=s.link_wait or s.sleep, wall_ns=s.wall_ns,
                        perf_ns=s.perf_ns)

    def reactive(self) -> Reactive:
        s = self.system
        return Reactive(self.node, self.ip, sysfs=s.sysfs, packet_socket=s.packet_socket,
                        clock=s.clock, sleep=s.sleep, link_wait=s.link_wait,
                        wall_ns=s.wall_ns, perf_ns=s.perf_ns, entropy=s.entropy)

    def standby(self) -> standby.Standby:
        s = self.system
        return standby.Standby(self.node, self.ip, sysfs=s.sysfs, raw_socket=s.raw_socket,
                               sniff_socket=s.sniff_socket, clock=s.clock,
                               wall_ns=s.wall_ns, perf_ns=s.perf_ns)


def _preauth(c: _Context, network: str) -> dict:
    sa = c.node.preauthenticate(network)
    return {"domain": sa.domain, "identity": sa.identity, "sa": sa.sa, "lifetime": sa.lifetime,
            "method": c.node.credentials.for_domain(sa.domain).method,
            "pana_session": f"{sa.pana['session']:08x}"}


def _up(c: _Context, network: str) -> dict:
    return {**_preauth(c, network), "config": without_network(c.node.configure(network))}


def _bind(c: _Context, network: str) -> dict:
    home = c.home()
    care_of = c.args.care_of or c.node.care_of(network, c.host.addresses())
    return c.node.bind_care_of(network, home, care_of, c.args.lifetime)


def _attach(c: _Context, network: str) -> dict:
    plan = plan_attach(c.ip, network, c.node.config(network), c.host.name(), c.args.mac)
    return arrival_checked(c.handover().attach(plan))


def _handover(c: _Context, network: str) -> dict:
    home, wait = c.home(), c.args.wait_link
    if c.args.no_vif:
        raise MnError("usage", "a handover sends from the nCoA, which needs its vif: "
                      "drop --no-vif")
    return c.handover().run(network, home, c.emit, c.args.buffer_old,
                            interface=c.host.name() if wait else None, mac=c.node.mac,
                            link_timeout_s=c.args.link_timeout if wait else None,
                            mode=c.args.mode)


def _reactive(c: _Context, network: str) -> dict:
    home, settings = c.home(), _reactive_settings(c.args)
    return c.reactive().run(network, home, c.emit, c.host.name(), c.node.mac, settings,
                            link_timeout_s=c.args.link_timeout if c.args.wait_link else None)


def _standby(c: _Context, network: str) -> dict:
    if not c.args.interface:
        raise MnError("usage", "standby needs the interface to prepare: give --interface")
    return c.standby().run(network, c.home(), c.emit, c.args.interface, c.host.name(),
                           c.args.mac,
                           loss_timeout_s=c.args.loss_timeout if c.args.wait_loss else None)


PER_NETWORK = {
    "preauth": _preauth,
    "configure": lambda c, network: c.node.configure(network),
    "up": _up,
    "release": lambda c, network: c.node.release(network, all=c.args.all),
    "resume": lambda c, network: c.node.resume(network),
    "ping": lambda c, network: c.node.pana_ping(network),
    "terminate": lambda c, network: c.node.terminate(network),
    "tunnel": lambda c, network: c.node.tunnel(network, c.args.lifetime),
    "untunnel": lambda c, network: c.node.untunnel(network),
    "bind": _bind,
    "switch": lambda c, network: c.node.switch(network, c.args.phase, c.args.buffer_old,
                                               mode=c.args.mode),
    "attach": _attach,
    "handover": _handover,
    "reactive": _reactive,
    "standby": _standby,
}
# What a command can fail with, short of a bug.
FAILURES = (ProtocolError, MnError, VifError, LinkError, HandoverFailed)


def _exit_class(exc: Exception) -> int:
    return EXIT_USAGE if isinstance(exc, (MnError, StateError)) else EXIT_REFUSED


def _code(exc: Exception) -> str:
    if isinstance(exc, RewriteError):
        return "nftables"
    if isinstance(exc, VifError):
        return "interface"
    if isinstance(exc, StateError):
        return "state"
    return exc.code


def _message(exc: Exception) -> str:
    return str(exc) if isinstance(exc, (VifError, StateError)) else exc.message


def _follow_wait(args) -> int:
    """In-band, questions are polled: the controller holds none."""
    if args.channel != "rest":
        return 0
    return follow_mod.DEFAULT_WAIT_S if args.wait is None else args.wait


def _follow(c: _Context) -> tuple[dict, list[str], int]:
    args = c.args
    network = args.network or c.node.discover()["network"]
    follower = follow_mod.Follower(
        c.node, c.handover(), c.home(), c.host.name(), c.emit,
        wait_s=_follow_wait(args), poll_s=args.poll, link_timeout_s=args.link_timeout,
        clock=c.system.clock, sleep=c.system.sleep,
        # In-band, questions go from the new address, and discovery (the MN
        # discovers again from where it is now) to the new default gateway.
        moved=(lambda address: setattr(c.node, "channel",
                                       c.node.inband(address, c.host.gateway)))
        if args.channel == "inband" else None)

    def stop(signum, frame):   # SIGTERM ends it as Ctrl-C does, a step cut short unreported
        raise KeyboardInterrupt
    previous = signal.signal(signal.SIGTERM, stop)
    try:
        result = follower.run(network, args.count, args.duration)
    finally:
        signal.signal(signal.SIGTERM, previous)
    failed = [r for r in result["reports"] if not r["ok"]]
    lines = [f"{len(result['reports'])} instruction(s) carried out, {len(failed)} failed; "
             f"now in {result['network']}"]
    return {"ok": True, **result}, lines, EXIT_OK


def _run(args, c: _Context) -> tuple[dict, list[str], int]:
    """(JSON document, lines for humans, exit status); errors are in the document."""
    if args.command == "follow":
        return _follow(c)
    if args.command == "discover":
        found = c.node.discover()
        lines = [f"{found['network']} ({found['address']}): "
                 f"{len(found['candidates'])} candidate target network(s)"]
        lines += [report.candidate_line(candidate) for candidate in found["candidates"]]
        return {"ok": True, **found}, lines, EXIT_OK
    if args.command == "status":
        status = c.node.status()
        lines = [report.status_line(n) for n in status["networks"]] or ["no MPA-SAs"]
        lines += [report.rewrite_line(status["rewrite"])] if status["rewrite"] else []
        return {"ok": True, **status}, lines, EXIT_OK
    if args.command == "up":
        c.node.discover()  # once, fresh: every network below is checked against it
    action = PER_NETWORK[args.command]
    results, lines, status = [], [], EXIT_OK
    for network in dict.fromkeys(args.networks):   # each once, in the order given
        try:
            result = without_network(action(c, network))
        except FAILURES as exc:
            status = max(status, _exit_class(exc))
            done = without_network(exc.result) if isinstance(exc, HandoverFailed) else {}
            results.append({"network": network, **done, "ok": False,
                            "error": {"code": _code(exc), "message": _message(exc)}})
            continue
        results.append({"network": network, "ok": True, **result})
        lines.append(report.result_line(args.command, network, result))
    return {"ok": status == EXIT_OK, "results": results}, lines, status


# -- main ------------------------------------------------------------------------------

def _log_to(stream) -> None:
    """-v: every line to ``stream``.  What a network answered reaches these
    lines, so they are escaped as the controller's are."""
    handler = logging.StreamHandler(stream)
    handler.setFormatter(EscapingFormatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.DEBUG)


def _kernel(args, ip: Ip, system: System) -> dict:
    """What the MN changes in its host's kernel: the nCoAs' vifs and the
    rewriting of a binding abroad; with --no-vif neither, only reported."""
    if args.no_vif:
        return {"vifs": NoVifs(), "rewrites": NoRewrites()}
    return {"vifs": Vifs(ip), "rewrites": Rewrites(Nft(system.nft))}


def _pana(args, system: System) -> dict:
    """How the MN runs PANA: UDP from the host's sockets, --timeout per message."""
    return {"pana_socket": system.socket_factory, "clock": system.clock,
            "pana_timeout": args.timeout}


def main(argv: list[str] | None = None, system: System | None = None) -> int:
    system = system or System(link_wait=link.LinkNotices())
    stdout = system.stdout or sys.stdout
    stderr = system.stderr or sys.stderr
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:   # --help (0) or a usage error (2), already printed
        return int(exc.code or 0)
    if args.verbose:
        _log_to(stderr)
    own_source = args.command in OWN_SOURCE
    document = {"command": args.command, "channel": "inband" if own_source else args.channel}
    used = []   # what counts: every channel the run sent on, and the MN

    def inband(source: str, gateway=None) -> InbandChannel:
        used.append(_inband(args, system, source, gateway))
        return used[-1]

    def emit(event: dict) -> None:
        print(json.dumps(event, sort_keys=True), file=stdout, flush=True)

    try:
        ip = Ip(system.run)
        host = _Host(args, ip)
        credentials = None
        if args.command in NEEDS_MAC or args.state is None:
            credentials = _credentials(args)
        path = args.state or default_path(c.identity for c in credentials.domains.values())
        mac = host.mac() if args.command in NEEDS_MAC else args.mac
        sends = args.command != "status" and not own_source
        address = (host.address() if args.command in NEEDS_ADDRESS or
                   (args.channel == "inband" and sends) else args.address)
        channel = _channel(args, host, system) if sends else None
        used += [channel] if channel else []
        store = StateFile(path)
        with store.locked(clock=system.clock, sleep=system.sleep):
            node = MobileNode(credentials or MnCredentials({}), mac, address, channel, store,
                              entropy=system.entropy, wall=system.wall, inband=inband,
                              **_pana(args, system), **_kernel(args, ip, system))
            used.append(node)
            result, lines, status = _run(args, _Context(args, node, host, ip, system, emit))
    except (*FAILURES, StateError) as exc:
        document.update(ok=False, error={"code": _code(exc), "message": _message(exc)})
        result, lines, status = {}, [], _exit_class(exc)
        print(f"mpa-mn: {args.command}: {_code(exc)}: {_message(exc)}", file=stderr)
    document.update(result)
    counters = sum((c.counters for c in used), collections.Counter())
    if counters:
        document["counters"] = dict(sorted(counters.items()))
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

"""Mininet's CLI for the MPA lab, with the lab's own commands.

``move MN POA`` is a handover without MPA done for the MN: its link moves,
and in another network the lab gives it that network's address and
gateway, as a host configured by hand would get.  An MN whose own client
handles the handover (``mpa-mn handover --wait-link``, ``reactive
--wait-link``, ``follow``) must have its link moved and nothing else: the
client puts the nCoA on the interface and removes the old address itself,
and the lab's re-addressing would race it (its ``ip`` run then fails on an
address already gone).  That is ``move --link-only``, and ``move
--when-ready FILE`` first waits for the client's ready event in the file its
output goes to (mpa_lab/net/client_events.py), so a script can start the
client in the background and move the link once it may.  A plain ``move``
does the same by itself when it finds such a client running in the MN (the
ready event from the file its stdout goes to, if it goes to one).
"""

from __future__ import annotations

import argparse
import shlex

from mininet.cli import CLI
from mininet.log import error, output

from mpa_lab.net.client_events import (NotReady, WaitingClient, network_namespace,
                                       wait_ready, waiting_clients)

DEFAULT_READY_TIMEOUT_S = 30.0
MOVE_USAGE = "move [--link-only] [--when-ready FILE] [--timeout S] MN POA"


class UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    """Errors raised, not printed with an exit: the CLI goes on."""

    def error(self, message):
        raise UsageError(message)

    def exit(self, status=0, message=None):
        raise UsageError(message or "")


def _move_parser() -> _Parser:
    parser = _Parser(prog="move", add_help=False)
    parser.add_argument("--link-only", action="store_true")
    parser.add_argument("--when-ready", metavar="FILE")
    parser.add_argument("--timeout", type=float, default=None, metavar="S")
    parser.add_argument("mn")
    parser.add_argument("poa")
    return parser


class LabCLI(CLI):
    prompt = "mpa-lab> "
    proc = "/proc"    # where the MNs' processes are looked for

    def __init__(self, lab, **kwargs):
        self.lab = lab
        # Per client output file, where the last event a move took ends:
        # the next move reads what the client said after it.
        self.read_to: dict[str, int] = {}
        super().__init__(lab.net, **kwargs)

    def do_move(self, line):
        """move [--link-only] [--when-ready FILE] [--timeout S] MN POA: move a
        mobile node's link to another point of attachment.
        Alone, in another network the MN also takes the lab's address and
        gateway there (a handover without MPA, done for it), unless an
        mpa-mn in the MN waits for its link (handover or reactive with
        --wait-link, follow): then only the link moves, once the client's
        ready event is in the file its output goes to (if it goes to one).
        --link-only: the link and nothing else; the MN's client addresses it.
        --when-ready FILE: first wait (up to --timeout S, default 30) for the
        client's ready event in FILE, where its output goes; implies
        --link-only."""
        try:
            args = _move_parser().parse_args(shlex.split(line))
            if args.timeout is not None and args.timeout < 0:
                raise UsageError("--timeout must not be negative")
        except (UsageError, ValueError) as exc:
            error(f"move: {exc}\nusage: {MOVE_USAGE}\n")
            return
        mn, poa = args.mn, args.poa
        problem = self._unknown(mn, poa)
        if problem:
            error(f"move: {problem}\n")
            return
        here = self.lab.location[mn]
        if here.id == poa:
            output(f"{mn} is at {poa} already; nothing moved\n")
            return
        link_only, ready_file = args.link_only or args.when_ready is not None, args.when_ready
        if not link_only and (client := self._waiting_client(mn)) is not None:
            link_only, ready_file = True, client.output
            output(f"{mn} runs {client}, which sets its addresses: only its link moves"
                   + ("" if ready_file else " (its output goes to no file: no ready event "
                      "to wait for)") + "\n")
        if ready_file is not None and not self._client_ready(ready_file, args.timeout, mn, poa):
            return
        try:
            address = self.lab.move(mn, poa, readdress=not link_only)
        except (ValueError, RuntimeError, OSError) as exc:
            error(f"move: {exc}\n")
            return
        network = self.lab.graph.poa(poa).network
        if not link_only:
            output(f"{mn} is at {poa} ({network}) with {address}\n")
            return
        switch = self.lab.last_link_switch
        took = f" in {switch.duration_ms:.1f} ms" if switch.duration_ms is not None else ""
        output(f"{mn}'s link moved from {here.id} to {poa} ({network}){took}; its address is "
               f"its client's to set\n")

    def _unknown(self, mn: str, poa: str) -> str | None:
        topology = self.lab.topology
        if mn not in topology.mobile_nodes:
            return f"{mn} is not a mobile node ({', '.join(sorted(topology.mobile_nodes))})"
        if poa not in topology.poas:
            return f"unknown PoA {poa} ({', '.join(sorted(topology.poas))})"
        return None

    def _waiting_client(self, mn: str) -> WaitingClient | None:
        """An mpa-mn in ``mn``'s host waiting for its link, if one runs."""
        try:
            namespace = network_namespace(self.lab.host(mn).pid, self.proc)
            clients = waiting_clients(namespace, self.proc)
        except OSError:
            return None
        return clients[0] if clients else None

    def _client_ready(self, path: str, timeout_s: float | None, mn: str, poa: str) -> bool:
        """Whether the client writing to ``path`` got ready for ``poa``'s
        network; if not, why is printed and nothing moves."""
        try:
            said = wait_ready(path, DEFAULT_READY_TIMEOUT_S if timeout_s is None else timeout_s,
                              start=self.read_to.get(path, 0))
        except NotReady as exc:
            error(f"move: {exc}; {mn} stays at {self.lab.location[mn].id}\n")
            return False
        self.read_to[path], event = said.end, said.event
        network = self.lab.graph.poa(poa).network
        ready_for = event.get("network")
        if ready_for is not None and ready_for != network:
            error(f"move: the client is ready for {ready_for}, not for {network} ({poa}'s "
                  f"network); {mn} stays at {self.lab.location[mn].id}\n")
            return False
        output(f"{mn}'s client is ready ({event['event']} event for {ready_for or network})\n")
        return True

    def do_poas(self, _line):
        """poas: every point of attachment, its network and who is there."""
        where = {poa.id: host for host, poa in self.lab.location.items()}
        for network in self.lab.graph.networks():
            for poa in network.poas:
                output(f"{poa.id:<10} {network.id:<8} {poa.switch}:{poa.port:<4} "
                       f"{where.get(poa.id, '')}\n")

"""Mininet's CLI for the MPA lab, with the lab's own commands."""

from __future__ import annotations


from mininet.cli import CLI
from mininet.log import error, output


class LabCLI(CLI):
    prompt = "mpa-lab> "

    def __init__(self, lab, **kwargs):
        self.lab = lab
        super().__init__(lab.net, **kwargs)

    def do_move(self, line):
        """move MN POA: move a mobile node's link to another point of attachment."""
        args = line.split()
        if len(args) != 2:
            error("usage: move MN POA\n")
            return
        mn, poa = args
        if mn not in self.lab.topology.mobile_nodes:
            error(f"move: {mn} is not a mobile node "
                  f"({', '.join(sorted(self.lab.topology.mobile_nodes))})\n")
            return
        if poa not in self.lab.topology.poas:
            error(f"move: unknown PoA {poa} ({', '.join(sorted(self.lab.topology.poas))})\n")
            return
        try:
            address = self.lab.move(mn, poa)
        except ValueError as exc:
            error(f"move: {exc}\n")
            return
        output(f"{mn} is at {poa} ({self.lab.graph.poa(poa).network}) with {address}\n")

    def do_poas(self, _line):
        """poas: every point of attachment, its network and who is there."""
        where = {poa.id: host for host, poa in self.lab.location.items()}
        for network in self.lab.graph.networks():
            for poa in network.poas:
                output(f"{poa.id:<10} {network.id:<8} {poa.switch}:{poa.port:<4} "
                       f"{where.get(poa.id, '')}\n")

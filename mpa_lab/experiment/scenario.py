"""Parse and validate a scenario file: one handover experiment for ``mpa-lab run``.

A scenario names a topology, the traffic, the mobile nodes and where they
go, the handover modes to compare and how often.  Like a topology file it
is checked once, whole: every problem is reported with its key path, and an
experiment never starts on a file that would fail halfway through (a target
that is not a PoA, two MNs meeting at one PoA, a standby PoA the MN starts
at, copy-and-forward from outside the MN's home domain with one controller
per domain).  See
docs/scenarios.md for every key.
"""

from __future__ import annotations

import dataclasses
import hashlib
import os
from dataclasses import dataclass, field
from typing import Any

from mpa_mn.dad import DadSettings
from mpa_protocol import schema
from mpa_protocol.schema import (MISSING, ConfigError, Invalid, Reader, is_version_1, load_yaml,
                                 read_text)
from mpa_sdn.config import load_topology
from mpa_sdn.domain_view import domain_of_switches, home_domain
from mpa_sdn.topology import ROLE_ACCESS, Topology
from mpa_lab.net.link_layer import MAX_LINK_LAYER_MS, PER_STATION, POA_PORTS
from mpa_lab.net.native_tunnelling import TunnellingError, plan as tunnelling_plan
from mpa_lab.traffic.datagrams import HEADER_SIZE
from mpa_lab.traffic.tcp_flow import DEFAULT_RECORD as DEFAULT_TCP_SIZE, MAX_RECORD

# The comparison (RFC 6252 Appendix C.5), in the order the table lists them.
REACTIVE, MPA, MPA_BUFFER, MPA_COPY_FORWARD, MPA_BICAST = (
    "reactive", "mpa", "mpa_buffer", "mpa_copy_forward", "mpa_bicast")
MODES = (REACTIVE, MPA, MPA_BUFFER, MPA_COPY_FORWARD, MPA_BICAST)
UDP, TCP = "udp", "tcp"
PROTOCOLS = (UDP, TCP)
# ``controllers``: one controller for every domain of the topology, or one
# per administrative domain (mpa-controller --domain ID, docs/inter-domain.md).
ONE, PER_DOMAIN = "one", "per-domain"
CONTROLLERS = (ONE, PER_DOMAIN)
CHANNELS = ("inband", "rest")
MAX_HANDOVERS = 1000
DEFAULT_HANDOVERS = 10        # per mode and repetition
MAX_RATE_PPS = 10_000
MAX_PAYLOAD = 1472          # one datagram in one 1,500-byte frame: no fragments
DEFAULT_THROUGHPUT_WINDOW_MS = 500
# ``reactive.dad``: DadSettings' fields by name; these are counts, the rest
# are waits in seconds.
DAD_COUNTS = {"probe_num": schema.integer(0, 10), "announce_num": schema.integer(1, 10),
              "max_conflicts": schema.integer(1, 100)}
DAD_WAIT = schema.number(0, 10)


@dataclass(frozen=True)
class Traffic:
    """A stream from a correspondent to each MN's home address."""

    source: str                 # a correspondent of the topology
    protocol: str = UDP
    rate_pps: int = 100         # datagrams/s; TCP: records written/s
    size: int = 172             # UDP payload bytes: a 20 ms G.711 voice frame and RTP;
                                # TCP: bytes per record (default DEFAULT_TCP_SIZE)
    port: int = 5001            # the first MN's; the next MN's is one more, and so on
    # TCP: throughput is reported in windows this long before, around and
    # after each handover's outage.
    throughput_window_ms: int = DEFAULT_THROUGHPUT_WINDOW_MS


@dataclass(frozen=True)
class MobileNodePlan:
    id: str
    targets: tuple[str, ...]          # PoAs, visited in turn (and again from the start)
    standby_poas: tuple[str, ...]     # copy-and-forward: where the second interface is, in turn
    standby_mac: str


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    topology_path: str
    topology: Topology
    traffic: Traffic
    mobile_nodes: tuple[MobileNodePlan, ...]
    modes: tuple[str, ...]
    handovers: dict[str, int]          # mode -> handovers per repetition
    repetitions: int = 1
    interval_s: float = 1.0            # the stream runs this long between two handovers
    warmup_s: float = 1.0              # ... and before the first
    loss_after_s: float = 1.0          # copy-and-forward: standby armed -> the link is cut
    channel: str = "inband"
    dad: DadSettings = field(default_factory=DadSettings)  # the reactive MN's (RFC 5227)
    description: str = ""
    controllers: str = ONE
    together: bool = False             # every MN hands over in the same moment
    # The outage of every link-layer switch, in place of the topology's
    # l2_handover_ms (None: the topology's; mpa_lab/net/link_layer.py).
    link_layer_ms: float | None = None
    # What a PoA's port does as MNs come and go (mpa_lab/net/link_layer.py).
    poa_ports: str = PER_STATION

    @property
    def per_domain(self) -> bool:
        return self.controllers == PER_DOMAIN

    def plan(self, mode: str) -> list[tuple[str, str]]:
        """(MN, PoA) of each handover of one repetition of ``mode``: the MNs
        take turns; each goes to its next target (copy-and-forward: its
        next standby PoA, from its starting PoA every time).  ``together``:
        the mode's count is of moments, each moving every MN once."""
        return [move for moment in self.moments(mode) for move in moment]

    def moments(self, mode: str) -> list[list[tuple[str, str]]]:
        """The handovers of one repetition of ``mode``, grouped by the moment
        they start in: one each, or (``together``) every MN's at once."""
        turns = {mn.id: 0 for mn in self.mobile_nodes}

        def next_move(mn: MobileNodePlan) -> tuple[str, str]:
            poas = mn.standby_poas if mode == MPA_COPY_FORWARD else mn.targets
            turns[mn.id] += 1
            return mn.id, poas[(turns[mn.id] - 1) % len(poas)]
        if self.together:
            return [[next_move(mn) for mn in self.mobile_nodes]
                    for _ in range(self.handovers[mode])]
        return [[next_move(self.mobile_nodes[index % len(self.mobile_nodes)])]
                for index in range(self.handovers[mode])]

    def moves(self, mode: str) -> list[tuple[str, str, str]]:
        """(MN, from PoA, to PoA) of each handover of one repetition of
        ``mode``, from where the MNs start (copy-and-forward: each from its
        starting PoA, in a fresh lab)."""
        where, out = {m.id: m.attach for m in self.topology.mobile_nodes.values()}, []
        for mn, poa in self.plan(mode):
            out.append((mn, where[mn], poa))
            if mode != MPA_COPY_FORWARD:
                where[mn] = poa
        return out

    def domain_of_poa(self, poa: str) -> str:
        return self.topology.networks[self.topology.poas[poa].network].domain

    def mobile_node(self, mn: str) -> MobileNodePlan:
        return next(m for m in self.mobile_nodes if m.id == mn)

    def to_dict(self) -> dict:
        """What results.json records of the scenario."""
        return {"name": self.name, "path": self.path, "topology": self.topology_path,
                "description": self.description,
                "traffic": dict(self.traffic.__dict__),
                "mobile_nodes": {m.id: {"targets": list(m.targets),
                                        "standby": {"poas": list(m.standby_poas),
                                                    "mac": m.standby_mac}}
                                 for m in self.mobile_nodes},
                "modes": list(self.modes), "handovers": dict(self.handovers),
                "repetitions": self.repetitions, "interval_s": self.interval_s,
                "warmup_s": self.warmup_s, "loss_after_s": self.loss_after_s,
                "channel": self.channel, "dad": dataclasses.asdict(self.dad),
                "controllers": self.controllers, "together": self.together,
                "link_layer_ms": self.link_layer_ms, "poa_ports": self.poa_ports}


def default_standby_mac(mn: str) -> str:
    """A stable, locally administered MAC for an MN's second interface."""
    digest = hashlib.sha256(b"mpa-sdn standby " + mn.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def load_scenario(path: str) -> Scenario:
    """The scenario in ``path``; its topology path is relative to the file."""
    raw = load_yaml(read_text(path), path)
    r = Reader()
    top = r.mapping(raw, "", required={"version", "topology", "traffic", "mobile_nodes",
                                       "modes"},
                    optional={"name", "description", "handovers", "repetitions", "channel",
                              "reactive", "copy_forward", "controllers", "link_layer_ms",
                              "poa_ports"})
    if top is None:
        raise ConfigError(r.errors)
    if not is_version_1(top["version"]):
        r.error("version", f"must be 1, not {top['version']!r}")
    name = r.field(top, "name", "", schema.ident,
                   os.path.splitext(os.path.basename(path))[0])
    description = r.field(top, "description", "", schema.text, "")
    topology_path = r.field(top, "topology", "", schema.file_path)
    if r.errors:
        raise ConfigError(r.errors)
    topology_path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(path)),
                                                  topology_path))
    try:
        topology = load_topology(topology_path)
    except ConfigError as exc:
        raise ConfigError([("topology", f"{topology_path}: {p + ': ' if p else ''}{m}")
                           for p, m in exc.errors]) from None
    try:
        tunnelling_plan(topology)     # as the lab does before it builds anything
    except TunnellingError as exc:
        for problem in exc.problems:
            r.error("topology", f"{topology_path}: the lab cannot build it: {problem}")
    traffic = _traffic(r, top["traffic"], topology)
    mobile_nodes = _mobile_nodes(r, top["mobile_nodes"], topology)
    count, interval_s, warmup_s, together = _handovers(r, top.get("handovers"))
    modes, counts = _modes(r, top["modes"], count)
    dad = _dad(r, top.get("reactive"))
    loss_after_s = _copy_forward(r, top.get("copy_forward"))
    repetitions = r.field(top, "repetitions", "", schema.integer(1, 100), 1)
    channel = r.field(top, "channel", "", _one_of(CHANNELS), "inband")
    controllers = r.field(top, "controllers", "", _one_of(CONTROLLERS), ONE)
    link_layer_ms = r.field(top, "link_layer_ms", "", schema.number(0, MAX_LINK_LAYER_MS), None)
    poa_ports = r.field(top, "poa_ports", "", _one_of(POA_PORTS), PER_STATION)
    if r.errors:
        raise ConfigError(r.errors)
    scenario = Scenario(name, os.path.abspath(path), topology_path, topology, traffic,
                        mobile_nodes, modes, counts, repetitions, interval_s, warmup_s,
                        loss_after_s=loss_after_s, channel=channel, dad=dad,
                        description=description, controllers=controllers, together=together,
                        link_layer_ms=link_layer_ms, poa_ports=poa_ports)
    if together:
        _check_together(r, scenario, top["modes"])
    else:
        _check_moves(r, scenario)
    if scenario.per_domain:
        _check_per_domain(r, scenario, top["modes"])
    if r.errors:
        raise ConfigError(r.errors)
    return scenario


def _one_of(choices):
    def parse(value):
        if value not in choices:
            raise Invalid(f"{value!r} is not one of {', '.join(choices)}")
        return value
    return parse


def _traffic(r: Reader, raw: Any, topology: Topology) -> Traffic | None:
    t = r.mapping(raw, "traffic", required={"from"},
                  optional={"protocol", "rate_pps", "size", "port", "throughput_window_ms"})
    if t is None:
        return None
    source = r.field(t, "from", "traffic", schema.ident)
    if isinstance(source, str) and source not in topology.correspondents:
        known = ", ".join(sorted(topology.correspondents)) or "none"
        r.error("traffic.from", f"{source!r} is not a correspondent of the topology "
                                f"(it has {known})")
    protocol = r.field(t, "protocol", "traffic", _one_of(PROTOCOLS), UDP)
    rate = r.field(t, "rate_pps", "traffic", schema.integer(1, MAX_RATE_PPS), 100)
    tcp = protocol == TCP
    size = r.field(t, "size", "traffic",
                   schema.integer(HEADER_SIZE, MAX_RECORD if tcp else MAX_PAYLOAD),
                   DEFAULT_TCP_SIZE if tcp else Traffic.size)
    port = r.field(t, "port", "traffic", schema.integer(1024, 65000), Traffic.port)
    window = r.field(t, "throughput_window_ms", "traffic", schema.integer(50, 10_000),
                     DEFAULT_THROUGHPUT_WINDOW_MS)
    if "throughput_window_ms" in t and not tcp:
        r.error("traffic.throughput_window_ms", "is for protocol tcp only (a UDP stream's "
                                                "windows are its handovers')")
    return Traffic(source, protocol, rate, size, port, window)


def _poa_list(r: Reader, raw: Any, path: str, topology: Topology) -> tuple[str, ...]:
    if not isinstance(raw, list) or not raw:
        r.error(path, "must be a non-empty list of PoAs")
        return ()
    poas = []
    for index, value in enumerate(raw):
        where = f"{path}[{index}]"
        poa = topology.poas.get(value) if isinstance(value, str) else None
        if poa is None:
            r.error(where, f"{value!r} is not a PoA of the topology")
        elif topology.networks[poa.network].role != ROLE_ACCESS:
            r.error(where, f"{value} is in {poa.network}, which is not an access network")
        else:
            poas.append(value)
    return tuple(poas)


def _mobile_nodes(r: Reader, raw: Any, topology: Topology) -> tuple[MobileNodePlan, ...]:
    table = r.table(raw, "mobile_nodes")
    if not table and raw is not None:
        r.error("mobile_nodes", "must name at least one mobile node")
    plans = []
    for mn_id, body in table.items():
        path = f"mobile_nodes.{mn_id}"
        mn = topology.mobile_nodes.get(mn_id)
        if mn is None:
            r.error(path, "is not a mobile node of the topology")
            continue
        if mn.home_address is None or mn.credentials is None:
            r.error(path, "needs a home_address and credentials in the topology: the "
                          "stream goes to its home address, and its client authenticates")
        m = r.mapping(body, path, required={"targets"}, optional={"standby"})
        if m is None:
            continue
        targets = _poa_list(r, m["targets"], f"{path}.targets", topology)
        standby_poas = tuple(p for p in targets if p != mn.attach)
        mac = default_standby_mac(mn_id)
        if "standby" in m:
            s = r.mapping(m["standby"], f"{path}.standby", optional={"poas", "mac"})
            if s is not None:
                if "poas" in s:
                    standby_poas = _poa_list(r, s["poas"], f"{path}.standby.poas", topology)
                mac = r.field(s, "mac", f"{path}.standby", schema.mac, mac)
        for poa in standby_poas:
            if poa == mn.attach:
                r.error(f"{path}.standby.poas", f"{poa} is where {mn_id} starts: its second "
                                                "interface goes to another PoA")
        if mac == mn.mac:
            r.error(f"{path}.standby.mac", "must differ from the MN's own MAC")
        plans.append(MobileNodePlan(mn_id, targets, standby_poas, mac))
    return tuple(plans)


def _handovers(r: Reader, raw: Any) -> tuple[int, float, float, bool]:
    """``handovers``: each mode's count (unless it sets its own), the
    interval, the warm-up and whether the MNs move together."""
    h = r.mapping(raw, "handovers", optional={"count", "interval_s", "warmup_s",
                                              "together"}) if raw is not None else None
    if h is None:
        return DEFAULT_HANDOVERS, Scenario.interval_s, Scenario.warmup_s, False
    return (r.field(h, "count", "handovers", schema.integer(1, MAX_HANDOVERS), DEFAULT_HANDOVERS),
            r.field(h, "interval_s", "handovers", schema.number(0, 60), Scenario.interval_s),
            r.field(h, "warmup_s", "handovers", schema.number(0, 60), Scenario.warmup_s),
            r.field(h, "together", "handovers", schema.boolean, False))


def _modes(r: Reader, raw: Any, count: int) -> tuple[tuple[str, ...], dict[str, int]]:
    """``modes``: a list of names, or a mapping of name to ``{handovers: N}``
    (default: ``count``)."""
    names, counts = [], {}
    if isinstance(raw, list):
        entries = [(f"modes[{i}]", name, None) for i, name in enumerate(raw)]
    elif isinstance(raw, dict):
        entries = [(f"modes.{name}", name, body) for name, body in raw.items()]
    else:
        r.error("modes", f"must be a list of modes ({', '.join(MODES)}) or a mapping of "
                         "mode to its settings")
        return (), {}
    for path, name, body in entries:
        if name not in MODES:
            r.error(path, f"{name!r} is not a mode ({', '.join(MODES)})")
            continue
        if name in names:
            r.error(path, f"{name} is listed twice")
            continue
        names.append(name)
        counts[name] = count
        if body is not None:
            m = r.mapping(body, path, optional={"handovers"})
            if m is not None:
                counts[name] = r.field(m, "handovers", path, schema.integer(1, MAX_HANDOVERS),
                                       count)
    if not names and not r.errors:
        r.error("modes", "must name at least one mode")
    return tuple(names), counts


def _dad(r: Reader, raw: Any) -> DadSettings:
    """``reactive.dad``: the reactive MN's DAD settings, keyed by their names
    in DadSettings (which checks them as a whole)."""
    if raw is None:
        return DadSettings()
    reactive = r.mapping(raw, "reactive", optional={"dad"})
    if reactive is None or "dad" not in reactive:
        return DadSettings()
    path = "reactive.dad"
    names = [f.name for f in dataclasses.fields(DadSettings)]
    d = r.mapping(reactive["dad"], path, optional=set(names))
    if d is None:
        return DadSettings()
    values = {name: r.field(d, name, path, DAD_COUNTS.get(name, DAD_WAIT))
              for name in names if name in d}
    if any(value is MISSING for value in values.values()):
        return DadSettings()
    try:
        return DadSettings(**values)
    except ValueError as exc:
        r.error(path, str(exc))
        return DadSettings()


def _copy_forward(r: Reader, raw: Any) -> float:
    if raw is None:
        return Scenario.loss_after_s
    c = r.mapping(raw, "copy_forward", optional={"loss_after_s"})
    if c is None:
        return Scenario.loss_after_s
    return r.field(c, "loss_after_s", "copy_forward", schema.number(0.1, 60), Scenario.loss_after_s)


def _check_moves(r: Reader, scenario: Scenario) -> None:
    """Walk every mode's plan: no move to where the MN already is, and no
    two MNs at one PoA (the lab has one link per PoA)."""
    topology = scenario.topology
    for mode in scenario.modes:
        if mode == MPA_COPY_FORWARD:
            # Each loss runs in a fresh lab, from where the MNs start.
            taken = {c.poa for c in topology.correspondents.values()} | {
                m.attach for m in topology.mobile_nodes.values()}
            for mn, poa in scenario.plan(mode):
                if poa in taken:
                    r.error(f"mobile_nodes.{mn}.standby.poas",
                            f"{poa} is taken when the lab starts (a host's PoA)")
                    return
            continue
        where = {m.id: m.attach for m in topology.mobile_nodes.values()}
        where.update({c.id: c.poa for c in topology.correspondents.values()})
        for index, (mn, here, poa) in enumerate(scenario.moves(mode)):
            if here == poa:
                r.error(f"mobile_nodes.{mn}.targets",
                        f"handover {index + 1} of {mode} would move {mn} to {poa}, where it "
                        "already is (list the targets so that each differs from the one "
                        "before, the last from the first, and the first from its PoA)")
                return
            holder = next((h for h, p in where.items() if p == poa and h != mn), None)
            if holder is not None:
                r.error(f"mobile_nodes.{mn}.targets",
                        f"handover {index + 1} of {mode} would move {mn} to {poa}, where "
                        f"{holder} is")
                return
            where[mn] = poa


def _check_together(r: Reader, scenario: Scenario, raw_modes: Any) -> None:
    """``handovers.together``: at least two MNs, no copy-and-forward (each
    loss runs in a lab of its own), and in every moment of every mode each
    MN moves to a PoA that differs from its own and that nobody holds before
    the moment (its one port is free only once its holder has left, and the
    MNs leave at once) or reaches in it."""
    if len(scenario.mobile_nodes) < 2:
        r.error("handovers.together", "needs at least two mobile nodes to move together")
        return
    if MPA_COPY_FORWARD in scenario.modes:
        path = (f"modes[{raw_modes.index(MPA_COPY_FORWARD)}]" if isinstance(raw_modes, list)
                else f"modes.{MPA_COPY_FORWARD}")
        r.error(path, f"{MPA_COPY_FORWARD} cannot run with handovers.together: each of its "
                      "link losses runs in a fresh lab of its own")
    topology = scenario.topology
    for mode in scenario.modes:
        if mode == MPA_COPY_FORWARD:
            continue
        where = {m.id: m.attach for m in topology.mobile_nodes.values()}
        where.update({c.id: c.poa for c in topology.correspondents.values()})
        for number, moment in enumerate(scenario.moments(mode), 1):
            problem = _moment_problem(moment, where, number, mode)
            if problem is not None:
                r.error(*problem)
                return
            where.update(moment)


def _moment_problem(moment, where: dict, number: int, mode: str) -> tuple[str, str] | None:
    """(key path, message) of the first reason ``moment``'s moves cannot
    start at once from ``where`` (host -> PoA); None if they can."""
    reached: dict[str, str] = {}
    for mn, poa in moment:
        path, when = f"mobile_nodes.{mn}.targets", f"moment {number} of {mode}"
        if where[mn] == poa:
            return path, (f"{when} would move {mn} to {poa}, where it already is (list the "
                          "targets so that each differs from the one before, the last from "
                          "the first, and the first from its PoA)")
        holder = next((h for h, p in sorted(where.items()) if p == poa and h != mn), None)
        if holder is not None:
            return path, (f"{when} would move {mn} to {poa}, where {holder} is until the "
                          "moment starts (MNs moving together cannot take a PoA another "
                          "one leaves in the same moment)")
        if poa in reached:
            return path, f"{when} would move {mn} and {reached[poa]} both to {poa}"
        reached[poa] = mn
    return None


def _check_per_domain(r: Reader, scenario: Scenario, raw_modes: Any) -> None:
    """``controllers: per-domain``: what the lab per domain needs of the
    topology, and nothing the controllers per domain do not do yet
    (docs/inter-domain.md, "Not built yet")."""
    topology = scenario.topology
    for did in sorted(topology.domains):
        for key in ("openflow_port", "rest_port"):
            if getattr(topology.domains[did].controller, key) is None:
                r.error("controllers", f"per-domain needs each domain's controller ports: the "
                                       f"topology gives no domains.{did}.controller.{key}")
    try:
        domain_of_switches(topology)
    except ConfigError as exc:
        for path, message in exc.errors:
            r.error("controllers", f"per-domain needs each switch's domain: the topology's "
                                   f"{path} {message}")
    source = topology.correspondents[scenario.traffic.source]
    there = topology.networks[topology.poas[source.poa].network].domain
    for plan in scenario.mobile_nodes:
        home = home_domain(topology.mobile_nodes[plan.id].identity)
        if home != there:
            r.error("traffic.from", f"{source.id} is in {there}, and {plan.id}'s home domain "
                                    f"(its identity's realm) is {home}: a correspondent outside "
                                    "the MN's home domain is not built yet across domains: "
                                    "docs/inter-domain.md")
    if MPA_COPY_FORWARD in scenario.modes:
        path = (f"modes[{raw_modes.index(MPA_COPY_FORWARD)}]" if isinstance(raw_modes, list)
                else f"modes.{MPA_COPY_FORWARD}")
        for index, (mn, here, poa) in enumerate(scenario.moves(MPA_COPY_FORWARD)):
            home = home_domain(topology.mobile_nodes[mn].identity)
            if scenario.domain_of_poa(here) != home:
                r.error(path, f"handover {index + 1} of {MPA_COPY_FORWARD} starts {mn} at "
                              f"{here} ({scenario.domain_of_poa(here)}): with one controller "
                              f"per domain, copy-and-forward copies at the active interface's "
                              f"PoA, which must be in {mn}'s home domain ({home}), the one "
                              "that keeps its binding: docs/inter-domain.md")
                break

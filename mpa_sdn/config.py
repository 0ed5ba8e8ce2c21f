"""Parse and validate a topology file into :class:`mpa_sdn.topology.Topology`.

Every problem is collected, not just the first, and each names the key path
where it was found (``networks.net-a1.gateway: ...``), so a user can fix a
file in one pass (the toolkit is :mod:`mpa_protocol.schema`).  The same
function backs ``mpa-controller --check-config``, the controller start-up and
the tests; :func:`mpa_sdn.config_radius.load_radius_servers` reads the RADIUS
secrets the domains name.
This module holds the entry points and the sections that need no other
(``controller``, ``mpa``, ``domains``); the field parsers are in
:mod:`mpa_sdn.config_fields`, the switches, links, networks and neighbours in
:mod:`mpa_sdn.config_network`, the correspondents and MNs in
:mod:`mpa_sdn.config_hosts`.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from typing import Any, Mapping

from mpa_protocol import schema
from mpa_protocol.schema import (MISSING, ConfigError, Reader, is_version_1, load_yaml,
                                 read_text)
from mpa_sdn.config_fields import MAX_LEASE_S, host_address
from mpa_sdn.config_radius import parse_radius
from mpa_sdn.config_hosts import parse_hosts
from mpa_sdn.config_network import (check_tunnel_ports, parse_links, parse_neighbours,
                                    parse_networks, parse_switches)
from mpa_sdn.topology import ControllerSettings, Domain, DomainController, MpaSettings, Topology

DAY_S = 24 * 3600
YEAR_S = 365 * DAY_S


@dataclasses.dataclass(frozen=True)
class Parsed:
    """What parsed of a topology file with errors: the controller's settings
    (the keys that were valid) and the domains whose entries were.  The files
    they name can be checked in the same run, so that one run of
    ``mpa-controller --check-config`` reports every problem."""

    controller: ControllerSettings
    domains: Mapping[str, Domain]


# -- the sections that need no other section (the network's are
# mpa_sdn.config_network's, the hosts' mpa_sdn.config_hosts') --

# The controller's files.  The TLS keys only make sense together: all of a
# group or none.
TLS_GROUPS = (("rest_tls_cert", "rest_tls_key"),
              ("openflow_tls_cert", "openflow_tls_key", "openflow_tls_ca"))
CONTROLLER_FILES = tuple(key for group in TLS_GROUPS for key in group) + ("api_tokens",)

_SETTING_PARSERS = {
    "openflow_host": host_address,
    "openflow_port": schema.integer(1, 65535),
    "rest_host": host_address,
    "rest_port": schema.integer(1, 65535),
    "host_idle_timeout_s": schema.integer(0, 65535),
    "host_probe_s": schema.number(0.1, 60),
    "max_hosts": schema.integer(1, 1_000_000),
    "arp_resolve_interval_s": schema.number(0.01, 60),
    "pending_per_address": schema.integer(0, 1000),
    "pending_addresses": schema.integer(0, 100_000),
    "pending_lifetime_s": schema.number(0.1, 60),
    "reject_hold_s": schema.integer(1, 3600),
    "packet_in_queue": schema.integer(1, 100_000),
    "radius_queue": schema.integer(1, 100_000),
    "gc_every_events": schema.integer(1, 100_000),
    "gc_full_every_s": schema.number(0, 1_000_000),   # 0: never
    "state_write_records": schema.integer(1, 1_000_000),
    "state_write_delay_s": schema.number(0.0, 60),
    "state_checkpoint_s": schema.number(0.1, 3600),
    "rest_max_connections": schema.integer(1, 100_000),
    "rest_connections_per_source": schema.integer(1, 100_000),
    "rest_header_timeout_s": schema.number(0.1, 3600),
    "rest_body_timeout_s": schema.number(0.1, 3600),
    "rest_idle_timeout_s": schema.number(0.1, DAY_S),
    "rest_max_streams": schema.integer(0, 100_000),
    "rest_streams_per_token": schema.integer(0, 100_000),
    "rest_max_waiting": schema.integer(1, 100_000),
    "rest_max_held": schema.integer(1, 100_000),
    "rest_held_per_source": schema.integer(1, 100_000),
    **dict.fromkeys(CONTROLLER_FILES, schema.file_path),
}


_MPA_PARSERS = {
    "signalling_port": schema.integer(1, 65535),
    "max_message_bytes": schema.integer(256, 9000),
    "state_db": schema.file_path,
    "pana_session_s": schema.number(1, 3600),
    "max_pana_sessions": schema.integer(1, 1_000_000),
    "pana_sessions_per_source": schema.integer(1, 1_000_000),
    "pana_max_bytes": schema.integer(1024, 65535),
    "radius_initial_rt_s": schema.number(0.01, 60),
    "radius_max_rt_s": schema.number(0.01, 600),
    "radius_max_count": schema.integer(0, 20),
    "radius_max_duration_s": schema.number(0.1, 600),
    "radius_max_outstanding": schema.integer(1, 256),
    "radius_dead_time_s": schema.number(0, 3600),
    "sa_lifetime_s": schema.integer(1, YEAR_S),
    "sa_hold_s": schema.integer(1, YEAR_S),
    "held_per_mn": schema.integer(1, 64),
    "replay_window": schema.integer(1, 1024),
    "retransmit_s": schema.number(0.01, 3600),
    "failures_per_identity": schema.integer(1, 1_000_000),
    "failures_per_source": schema.integer(1, 1_000_000),
    "failure_window_s": schema.number(0.01, DAY_S),
    "lockout_s": schema.number(0.01, DAY_S),
    "lease_time_s": schema.integer(60, MAX_LEASE_S),
    "offer_hold_s": schema.number(0.01, 3600),
    "dad_probes": schema.integer(1, 10),
    "dad_interval_s": schema.number(0.01, 10),
    "dad_wait_s": schema.number(0.01, 10),
    "dad_reserve": schema.integer(0, 1000),
    "dad_valid_s": schema.number(0.01, DAY_S),
    "dad_probes_per_tick": schema.integer(1, 100_000),
    "dad_packet_outs_per_tick": schema.integer(1, 1_000_000),
    "tunnel_lifetime_s": schema.integer(1, DAY_S),
    "max_tunnels_per_mn": schema.integer(1, 64),
    "max_tunnels": schema.integer(1, 1_000_000),
    "binding_lifetime_s": schema.integer(1, YEAR_S),
    "switch_deadline_s": schema.number(0.05, 3600),
    "buffer_packets": schema.integer(0, 1_000_000),
    "buffer_bytes": schema.integer(0, 1 << 32),
    "buffer_time_s": schema.number(0.01, 3600),
    "flush_rate_pps": schema.integer(1, 10_000_000),
    "flush_batch": schema.integer(1, 10_000),
    "copy_packets": schema.integer(1, 1_000_000),
    "copy_time_s": schema.number(0.01, 3600),
    "copy_wait_s": schema.number(0, 60),
    "copy_guard_s": schema.number(0, 60),
    "bicast_period_s": schema.number(0, 3600),
}


# A domain's own controller (``domains.ID.controller``), for ``--domain ID``:
# what differs from the controller section when two domains' controllers run
# on one machine.
_DOMAIN_CONTROLLER_PARSERS = {
    "openflow_port": schema.integer(1, 65535),
    "rest_port": schema.integer(1, 65535),
    "state_db": schema.file_path,
}


def _settings(r: Reader, raw: Any, section: str, parsers: dict, cls: type) -> Any:
    """A section of optional scalar settings; a key left out keeps cls's default."""
    if raw is None:
        return cls()
    raw = r.mapping(raw, section, optional=set(parsers))
    if raw is None:
        return cls()
    values = {}
    for key, parse in parsers.items():
        value = r.field(raw, key, section, parse, default=MISSING)
        if value is not MISSING:
            values[key] = value
    return cls(**values)


def missing_from_group(present: set[str]) -> list[tuple[str, tuple[str, ...]]]:
    """For each TLS key a half-given group lacks: (key, the group's keys that are given)."""
    missing = []
    for group in TLS_GROUPS:
        given = tuple(key for key in group if key in present)
        if given:
            missing.extend((key, given) for key in group if key not in present)
    return missing


def _controller(r: Reader, raw: Any) -> ControllerSettings:
    errors_before = len(r.errors)
    settings = _settings(r, raw, "controller", _SETTING_PARSERS, ControllerSettings)
    if len(r.errors) == errors_before:
        present = {key for key in CONTROLLER_FILES if getattr(settings, key) is not None}
        for key, given in missing_from_group(present):
            r.error(f"controller.{key}", f"is required with {', '.join(given)}")
    return settings


def _mpa(r: Reader, raw: Any) -> MpaSettings:
    errors_before = len(r.errors)
    settings = _settings(r, raw, "mpa", _MPA_PARSERS, MpaSettings)
    # A probe result that expires before the probing ends could never be used:
    # the reserve of checked addresses would stay empty.
    probing = (settings.dad_probes - 1) * settings.dad_interval_s + settings.dad_wait_s
    if len(r.errors) == errors_before and settings.dad_valid_s <= probing:
        r.error("mpa.dad_valid_s", f"{settings.dad_valid_s:g} s is not longer than probing an "
                                   f"address takes ({probing:g} s from dad_probes, "
                                   "dad_interval_s and dad_wait_s)")
    return settings


def _domains(r: Reader, raw: Any) -> dict[str, Domain]:
    domains = {}
    for did, entry in r.table(raw, "domains").items():
        path = f"domains.{did}"
        entry = r.mapping(entry if entry is not None else {}, path,
                          optional={"name", "radius", "controller"})
        if entry is None:
            r.broken.add(("domain", did))  # its networks are not reported again
        else:
            name = r.field(entry, "name", path, schema.text, default=did)
            radius = (parse_radius(r, entry["radius"], f"{path}.radius")
                      if "radius" in entry else None)
            own = _settings(r, entry.get("controller"), f"{path}.controller",
                            _DOMAIN_CONTROLLER_PARSERS, DomainController)
            domains[did] = Domain(did, did if name is MISSING else name, radius, own)
    if not domains:
        r.error("domains", "at least one administrative domain is required")
    return domains


def parse_topology(raw: Any) -> Topology:
    """Validate already-loaded YAML data; raise ConfigError listing every problem."""
    r = Reader()
    if isinstance(raw, dict) and "version" in raw and not is_version_1(raw["version"]):
        # Another version is another schema: checking the rest would only
        # produce noise.
        raise ConfigError([("version", f"{raw['version']!r} is not a supported version (1)")])
    sections = {"version", "controller", "mpa", "domains", "switches", "links", "networks",
                "neighbours", "correspondents", "mobile_nodes"}
    top = raw
    raw = r.mapping(raw, "", required={"version", "domains", "switches", "networks"},
                    optional=sections) if raw is not None else None
    if raw is None:
        if not r.errors:
            r.error("", "the file is empty")
        # A missing section leaves the others that depend on it unchecked
        # (they would only report what is missing again); these depend on none.
        raise ConfigError(r.errors, _independent(r, top) if isinstance(top, dict) else None)
    controller = _controller(r, raw.get("controller"))
    mpa = _mpa(r, raw.get("mpa"))
    domains = _domains(r, raw.get("domains"))
    used_ports: dict = {}
    switches = parse_switches(r, raw.get("switches"), domains, used_ports)
    links = parse_links(r, raw.get("links"), switches, used_ports)
    networks = parse_networks(r, raw.get("networks"), domains, switches, used_ports)
    neighbours = parse_neighbours(r, raw.get("neighbours"), networks)
    cns, mns = parse_hosts(r, raw.get("correspondents"), raw.get("mobile_nodes"), networks)
    check_tunnel_ports(r, switches, networks)
    if not r.errors:
        topology = Topology(controller=controller, domains=domains, switches=switches,
                            links=links, networks=networks, neighbours=neighbours,
                            correspondents=cns, mobile_nodes=mns, mpa=mpa)
        _check_connected(r, topology)
        if not r.errors:
            return topology
    raise ConfigError(r.errors, Parsed(controller, domains))


def _independent(r: Reader, raw: dict) -> Parsed:
    """The sections that need no other section, checked."""
    controller = _controller(r, raw.get("controller"))
    _mpa(r, raw.get("mpa"))
    return Parsed(controller, _domains(r, raw["domains"]) if "domains" in raw else {})


def _check_connected(r: Reader, topology: Topology) -> None:
    # Imported here: the graph module depends on this one's types only.
    from mpa_sdn.neighbourhood import NeighbourhoodGraph
    graph = NeighbourhoodGraph(topology)
    islands = graph.switch_islands()
    if len(islands) > 1:
        parts = "; ".join(", ".join(sorted(i)) for i in islands)
        r.error("links", f"the switches are not all connected: {parts}")


def load_topology_text(text: str, source: str = "<string>") -> Topology:
    """Credentials paths stay as written: there is no file to be relative to."""
    return parse_topology(load_yaml(text, source))


def load_or_exit(path: str) -> Topology:
    """For command lines: the topology, or one line per error and exit 2."""
    try:
        return load_topology(path)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        raise SystemExit(2) from None


def load_topology(path: str) -> Topology:
    """The topology in ``path``; relative credentials paths and the controller's
    file paths are resolved against the file's directory, so the result does
    not depend on the working directory (in a ConfigError's ``parsed`` too)."""
    base = os.path.dirname(os.path.abspath(path))
    try:
        topology = load_topology_text(read_text(path), path)
    except ConfigError as exc:
        if exc.parsed is None:
            raise
        raise ConfigError(exc.errors, _resolved(exc.parsed, base)) from None
    return _resolved(topology, base)


def _resolved(sections: Topology | Parsed, base: str) -> Topology | Parsed:
    """``sections`` with every file path it holds made absolute against ``base``."""
    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(base, path))

    def with_credentials(table: Mapping) -> dict:
        return {key: entry if entry.credentials is None
                else dataclasses.replace(entry, credentials=absolute(entry.credentials))
                for key, entry in table.items()}

    def with_secrets(table: Mapping) -> dict:
        return {key: entry if entry.radius is None else dataclasses.replace(
            entry, radius=dataclasses.replace(entry.radius, servers=tuple(
                dataclasses.replace(s, secret_file=absolute(s.secret_file))
                for s in entry.radius.servers)))
            for key, entry in table.items()}

    settings = sections.controller
    files = {key: absolute(getattr(settings, key))
             for key in CONTROLLER_FILES if getattr(settings, key) is not None}
    changes = {"controller": dataclasses.replace(settings, **files),
               "domains": with_secrets(sections.domains)}
    if isinstance(sections, Topology):
        changes["mobile_nodes"] = with_credentials(sections.mobile_nodes)
    return dataclasses.replace(sections, **changes)

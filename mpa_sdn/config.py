"""Parse and validate a topology file into :class:`mpa_sdn.topology.Topology`.

Every problem is collected, not just the first, and each names the key path
where it was found (``networks.net-a1.gateway: ...``), so a user can fix a
file in one pass (the toolkit is :mod:`mpa_protocol.schema`).  The same
function backs ``mpa-controller --check-config``, the controller start-up and
the tests; :func:`load_stores` reads the credentials files the domains name.
"""

from __future__ import annotations

import dataclasses
import hashlib
import ipaddress
import os
import re
import sys
from typing import Any, Mapping

from mpa_protocol import schema
from mpa_protocol.credentials import CredentialStore, load_store
from mpa_protocol.messages import ID_RE
from mpa_protocol.schema import (MISSING, ConfigError, Invalid, Quiet, Reader, is_version_1,
                                 kind_of, load_yaml, read_text)
from mpa_sdn import interface_names
from mpa_sdn.topology import (
    ROLE_ACCESS, ROLES, AddressPool, ControllerSettings,
    Correspondent, Domain, Link, MobileNode, MpaSettings, Neighbour, Network, PoA, Port,
    Switch, Topology)

HEX_RE = re.compile(r"(0x)?[0-9a-fA-F]{1,16}")
MAX_PORT = 0xffffff00  # OFPP_MAX: above are reserved ports
MAX_DPID = (1 << 64) - 1
MAX_DNS_SERVERS = 4
# DHCP's lease time is an unsigned 32-bit field (0xffffffff: infinite), but
# some clients read it signed.
MAX_LEASE_S = 2**31 - 1
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


# -- the topology's field parsers (the generic ones are mpa_protocol.schema's) --

def _ipv4(value: Any) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise Invalid(f"must be an IPv4 address as a string, not {kind_of(value)}")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise Invalid(f"{value!r} is not an IPv4 address") from None


def _unicast_ipv4(value: Any) -> ipaddress.IPv4Address:
    address = _ipv4(value)
    if (address.is_unspecified or address.is_loopback or address.is_multicast
            or address.is_reserved):
        raise Invalid(f"{address} is not a unicast address")
    return address


def _host_address(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be an address as a string, not {kind_of(value)}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise Invalid(f"{value!r} is not an IP address") from None
    return value


def _prefix(value: Any) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise Invalid(f"must be a prefix such as 10.1.0.0/24, not {kind_of(value)}")
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise Invalid(f"{value!r} is not an IPv4 prefix ({exc})") from None
    if network.prefixlen > 30:
        raise Invalid(f"{value} is too small for hosts and a gateway (at most /30)")
    return network


def _dpid(value: Any) -> int:
    if isinstance(value, str):
        digits = value.replace(":", "")
        if not HEX_RE.fullmatch(digits):
            raise Invalid(f"{value!r} is not a datapath id (an integer or hex digits)")
        value = int(digits, 16)
    if isinstance(value, bool) or not isinstance(value, int):
        raise Invalid(f"must be an integer or a hex string, not {kind_of(value)}")
    if not 1 <= value <= MAX_DPID:
        raise Invalid(f"{value} is out of range 1..2^64-1")
    return value


def _switch_port(value: Any) -> Port:
    if not isinstance(value, str) or value.count(":") != 1:
        raise Invalid(f"{value!r} must be 'switch:port'")
    switch, port = value.split(":")
    if not ID_RE.fullmatch(switch):
        raise Invalid(f"{switch!r} is not a valid switch id")
    if not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
        raise Invalid(f"port {port!r} must be a number 1..{MAX_PORT}")
    return Port(switch, int(port))


def _pool(value: Any) -> AddressPool:
    if not isinstance(value, str) or value.count("-") != 1:
        raise Invalid(f"{value!r} must be 'first-last', e.g. 10.1.0.100-10.1.0.199")
    first, last = (_ipv4(part.strip()) for part in value.split("-"))
    if last < first:
        raise Invalid(f"{value}: last address is below the first")
    return AddressPool(first, last)


def default_gateway_mac(network_id: str) -> str:
    """A stable, locally administered unicast MAC for a network's gateway."""
    digest = hashlib.sha256(b"mpa-sdn gateway " + network_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


# -- sections ----------------------------------------------------------------

# The controller's files.  The TLS keys only make sense together: all of a
# group or none.
TLS_GROUPS = (("rest_tls_cert", "rest_tls_key"),
              ("openflow_tls_cert", "openflow_tls_key", "openflow_tls_ca"))
CONTROLLER_FILES = tuple(key for group in TLS_GROUPS for key in group) + ("api_tokens",)

_SETTING_PARSERS = {
    "openflow_host": _host_address,
    "openflow_port": schema.integer(1, 65535),
    "rest_host": _host_address,
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
    "auth_session_s": schema.number(0.01, 3600),
    "max_auth_sessions": schema.integer(1, 1_000_000),
    "sa_lifetime_s": schema.integer(1, YEAR_S),
    "sa_hold_s": schema.integer(1, YEAR_S),
    "auth_sessions_per_source": schema.integer(1, 1_000_000),
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
                          optional={"name", "credentials"})
        if entry is None:
            r.broken.add(("domain", did))  # its networks are not reported again
        else:
            name = r.field(entry, "name", path, schema.text, default=did)
            credentials = r.field(entry, "credentials", path, schema.file_path)
            domains[did] = Domain(did, did if name is MISSING else name,
                                  None if credentials is MISSING else credentials)
    if not domains:
        r.error("domains", "at least one administrative domain is required")
    return domains


def _switches(r: Reader, raw: Any) -> dict[str, Switch]:
    switches, by_dpid = {}, {}
    for sid, entry in r.table(raw, "switches").items():
        path = f"switches.{sid}"
        r.broken.add(("switch", sid))
        entry = r.mapping(entry, path, required={"dpid"})
        if entry is None:
            continue
        dpid = r.field(entry, "dpid", path, _dpid)
        if dpid is MISSING:
            continue
        if dpid in by_dpid:
            r.error(f"{path}.dpid", f"{dpid:#x} is already the dpid of switch {by_dpid[dpid]}")
            continue
        r.broken.discard(("switch", sid))
        by_dpid[dpid] = sid
        switches[sid] = Switch(sid, dpid)
    if not switches:
        r.error("switches", "at least one switch is required")
    return switches


def _links(r: Reader, raw: Any, switches: dict, used: dict) -> tuple[Link, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.error("links", f"must be a list of [switch:port, switch:port], not {kind_of(raw)}")
        return ()
    links = []
    for i, entry in enumerate(raw):
        path = f"links[{i}]"
        if not isinstance(entry, list) or len(entry) != 2:
            r.error(path, "must be a pair [switch:port, switch:port]")
            continue
        ends = []
        for j, end in enumerate(entry):
            try:
                ends.append(_switch_port(end))
            except Invalid as exc:
                r.error(f"{path}[{j}]", str(exc))
                continue
            if ends[-1].switch in switches:
                _interfaces_fit(r, f"{path}[{j}]",
                                interface_names.port_name(ends[-1].switch, ends[-1].port))
        if len(ends) != 2:
            continue
        if ends[0].switch == ends[1].switch:
            r.error(path, "a link must join two different switches")
            continue
        if _claim_ports(r, path, ends, switches, used, f"link {i}"):
            links.append(Link(*ends))
    return tuple(links)


def _interfaces_fit(r: Reader, path: str, *names: str) -> None:
    """Report the first of an entry's lab interface names Linux would refuse."""
    for name in names:
        problem = interface_names.problem(name)
        if problem:
            r.error(path, problem)
            return


def _claim_ports(r: Reader, path: str, ends: list[Port], switches: dict,
                 used: dict, owner: str) -> bool:
    ok = True
    for end in ends:
        if end.switch not in switches:
            if ("switch", end.switch) not in r.broken:
                r.error(path, f"unknown switch {end.switch!r}")
            ok = False
        elif (end.switch, end.port) in used:
            r.error(path, f"port {end} is already used by {used[(end.switch, end.port)]}")
            ok = False
    if ok:
        for end in ends:
            used[(end.switch, end.port)] = owner
    return ok


def _network(r: Reader, nid: str, raw: Any, domains: dict, switches: dict,
             used: dict, poa_ids: dict) -> Network | None:
    path = f"networks.{nid}"
    raw = r.mapping(raw, path, required={"domain", "prefix", "gateway", "access_router", "poas"},
                    optional={"role", "served_by", "gateway_mac", "pool", "dns", "lease_time_s"})
    if raw is None:
        return None
    errors_before = len(r.errors)

    def role(value):
        if value not in ROLES:
            raise Invalid(f"{value!r} must be one of {', '.join(ROLES)}")
        return value

    def known(table, what):
        def parse(value):
            value = schema.ident(value)
            if (what, value) in r.broken:
                raise Quiet(value)
            if value not in table:
                raise Invalid(f"unknown {what} {value!r}")
            return value
        return parse

    kind = r.field(raw, "role", path, role, default=ROLE_ACCESS)
    domain = r.field(raw, "domain", path, known(domains, "domain"))
    served_by = r.field(raw, "served_by", path, known(domains, "domain"), default=domain)
    prefix = r.field(raw, "prefix", path, _prefix)
    gateway = r.field(raw, "gateway", path, _ipv4)
    gateway_mac = r.field(raw, "gateway_mac", path, schema.mac, default=default_gateway_mac(nid))
    ar = r.field(raw, "access_router", path, known(switches, "switch"))
    pool = r.field(raw, "pool", path, _pool)
    dns = _dns(r, raw["dns"], f"{path}.dns") if "dns" in raw else ()
    lease_time = r.field(raw, "lease_time_s", path, schema.integer(60, MAX_LEASE_S))

    if isinstance(prefix, ipaddress.IPv4Network):
        if isinstance(gateway, ipaddress.IPv4Address) and not _is_host_of(gateway, prefix):
            r.error(f"{path}.gateway", f"{gateway} is not a host address of {prefix}")
        if isinstance(pool, AddressPool):
            if not (_is_host_of(pool.first, prefix) and _is_host_of(pool.last, prefix)):
                r.error(f"{path}.pool", f"{pool} is not inside the host addresses of {prefix}")
            elif isinstance(gateway, ipaddress.IPv4Address) and gateway in pool:
                r.error(f"{path}.pool", f"{pool} contains the gateway {gateway}")
    if kind == ROLE_ACCESS and pool is None:
        r.error(f"{path}.pool", "is required for an access network (it hands out nCoAs)")

    poas = []
    raw_poas = r.table(raw.get("poas"), f"{path}.poas")
    if not raw_poas:
        r.error(f"{path}.poas", "at least one point of attachment is required")
    for pid, entry in raw_poas.items():
        ppath = f"{path}.poas.{pid}"
        try:
            port = _switch_port(entry)
        except Invalid as exc:
            r.error(ppath, str(exc))
            continue
        if port.switch in switches:
            _interfaces_fit(r, ppath, interface_names.port_name(port.switch, port.port))
        if pid in poa_ids:
            r.error(ppath, f"PoA id is already used in network {poa_ids[pid]}")
            continue
        poa_ids[pid] = nid
        if _claim_ports(r, ppath, [port], switches, used, f"PoA {pid}"):
            poas.append(PoA(pid, nid, port.switch, port.port))

    if len(r.errors) > errors_before:
        return None
    return Network(id=nid, role=kind, domain=domain, served_by=served_by, prefix=prefix,
                   gateway=gateway, gateway_mac=gateway_mac, access_router=ar,
                   poas=tuple(poas), pool=pool, dns=dns, lease_time_s=lease_time)


def _dns(r: Reader, raw: Any, path: str) -> tuple[ipaddress.IPv4Address, ...]:
    if not isinstance(raw, list):
        r.error(path, f"must be a list of IPv4 addresses, not {kind_of(raw)}")
        return ()
    if len(raw) > MAX_DNS_SERVERS:
        r.error(path, f"at most {MAX_DNS_SERVERS} servers, not {len(raw)}")
    servers: list[ipaddress.IPv4Address] = []
    for i, value in enumerate(raw):
        try:
            server = _unicast_ipv4(value)
        except Invalid as exc:
            r.error(f"{path}[{i}]", str(exc))
            continue
        if server in servers:
            r.error(f"{path}[{i}]", f"{server} is given twice")
        servers.append(server)
    return tuple(servers)


def _is_host_of(address, prefix) -> bool:
    return address in prefix and address not in (prefix.network_address, prefix.broadcast_address)


def _networks(r: Reader, raw: Any, domains: dict, switches: dict, used: dict) -> dict:
    networks, poa_ids = {}, {}
    entries = r.table(raw, "networks")
    if not entries:
        r.error("networks", "at least one network is required")
    for nid, entry in entries.items():
        network = _network(r, nid, entry, domains, switches, used, poa_ids)
        if network is not None:
            networks[nid] = network
            continue
        r.broken.add(("network", nid))
        if isinstance(entry, dict) and isinstance(entry.get("poas"), dict):
            r.broken.update(("poa", str(pid)) for pid in entry["poas"])
    # Sorted by start address, a prefix can only overlap the widest-reaching
    # one before it: one pass instead of comparing every pair.
    widest = None
    for n in sorted(networks.values(), key=lambda n: (n.prefix.network_address, n.prefix.prefixlen, n.id)):
        if widest is not None and n.prefix.network_address <= widest.prefix.broadcast_address:
            r.error(f"networks.{n.id}.prefix", f"{n.prefix} overlaps {widest.prefix} of {widest.id}")
        if widest is None or n.prefix.broadcast_address > widest.prefix.broadcast_address:
            widest = n
    macs: dict[str, str] = {}
    for n in sorted(networks.values(), key=lambda n: n.id):
        if n.gateway_mac in macs:
            r.error(f"networks.{n.id}.gateway_mac", f"is the same as network {macs[n.gateway_mac]}'s")
        macs.setdefault(n.gateway_mac, n.id)
    return networks


def _neighbours(r: Reader, raw: Any, networks: dict) -> tuple[Neighbour, ...]:
    if raw is None:
        return ()
    if not isinstance(raw, list):
        r.error("neighbours", f"must be a list, not {kind_of(raw)}")
        return ()
    relations: dict[tuple[str, str], Neighbour] = {}
    for i, entry in enumerate(raw):
        path = f"neighbours[{i}]"
        entry = r.mapping(entry, path, required={"from", "to"},
                          optional={"bidirectional", "l2_handover_ms"})
        if entry is None:
            continue
        ends = []
        for key in ("from", "to"):
            nid = r.field(entry, key, path, schema.ident)
            if nid is MISSING:
                continue
            if ("network", nid) in r.broken:
                continue
            if nid not in networks:
                r.error(f"{path}.{key}", f"unknown network {nid!r}")
            elif networks[nid].role != ROLE_ACCESS:
                r.error(f"{path}.{key}", f"{nid} is a {networks[nid].role} network, "
                                         "not a place an MN moves to or from")
            else:
                ends.append(nid)
        both = r.field(entry, "bidirectional", path, schema.boolean, default=True)
        l2 = r.field(entry, "l2_handover_ms", path, schema.number(0, 60_000))
        if len(ends) != 2 or both is MISSING or l2 is MISSING:
            continue
        if ends[0] == ends[1]:
            r.error(path, "a network is not its own neighbour")
            continue
        pairs = [tuple(ends)] + ([tuple(reversed(ends))] if both else [])
        for source, target in pairs:
            if (source, target) in relations:
                r.error(path, f"{source} -> {target} is given twice")
                continue
            relations[(source, target)] = Neighbour(source, target, l2)
    return tuple(relations[k] for k in sorted(relations))


def _hosts(r: Reader, raw_cns: Any, raw_mns: Any, networks: dict) -> tuple[dict, dict]:
    poas = {p.id: p for n in networks.values() for p in n.poas}
    macs: dict[str, str] = {n.gateway_mac: f"network {n.id}'s gateway" for n in networks.values()}
    taken_poas: dict[str, str] = {}

    def claim_mac(path, owner, mac):
        if mac is MISSING or mac is None:
            return
        if mac in macs:
            r.error(f"{path}.mac", f"{mac} is already used by {macs[mac]}")
        macs[mac] = owner

    def known_poa(value):
        value = schema.ident(value)
        if ("poa", value) in r.broken:
            raise Quiet(value)
        if value not in poas:
            raise Invalid(f"unknown PoA {value!r}")
        return value

    cns = {}
    for cid, entry in r.table(raw_cns, "correspondents").items():
        path = f"correspondents.{cid}"
        _interfaces_fit(r, path, interface_names.host_name(cid, 0))
        entry = r.mapping(entry, path, required={"poa", "address", "mac"})
        if entry is None:
            continue
        poa = r.field(entry, "poa", path, known_poa)
        address = r.field(entry, "address", path, _ipv4)
        mac = r.field(entry, "mac", path, schema.mac)
        claim_mac(path, f"correspondent {cid}", mac)
        if MISSING in (poa, address, mac):
            continue
        network = networks[poas[poa].network]
        if not _is_host_of(address, network.prefix):
            r.error(f"{path}.address", f"{address} is not a host address of {network.prefix} "
                                       f"(network {network.id} of PoA {poa})")
            continue
        if address == network.gateway or (network.pool and address in network.pool):
            r.error(f"{path}.address", f"{address} is the gateway or inside the pool of {network.id}")
            continue
        if poa in taken_poas:
            r.error(f"{path}.poa", f"PoA {poa} already holds {taken_poas[poa]}")
            continue
        taken_poas[poa] = cid
        cns[cid] = Correspondent(cid, poa, address, mac)

    mns, homes = {}, {}
    for mid, entry in r.table(raw_mns, "mobile_nodes").items():
        path = f"mobile_nodes.{mid}"
        _interfaces_fit(r, path, *(interface_names.host_name(mid, i)
                                   for i in range(interface_names.MN_INTERFACES)))
        entry = r.mapping(entry, path, required={"mac", "attach"},
                          optional={"identity", "credentials", "home_address"})
        if entry is None:
            continue
        mac = r.field(entry, "mac", path, schema.mac)
        attach = r.field(entry, "attach", path, known_poa)
        identity = r.field(entry, "identity", path, schema.nai)
        credentials = r.field(entry, "credentials", path, schema.file_path, default=None)
        home = r.field(entry, "home_address", path, _ipv4, default=None)
        claim_mac(path, f"mobile node {mid}", mac)
        if MISSING in (mac, attach, identity, credentials, home):
            continue
        if home is not None:
            # Traffic to a home address is rewritten, never routed: it must not
            # be an address any network routes, and belongs to one MN.
            inside = [n.id for n in networks.values() if home in n.prefix]
            if inside or home.is_multicast or home.is_unspecified or home.is_loopback:
                r.error(f"{path}.home_address", f"{home} is inside network {inside[0]}"
                        if inside else f"{home} cannot be a home address")
                continue
            if home in homes:
                r.error(f"{path}.home_address", f"{home} is already {homes[home]}'s home address")
                continue
            homes[home] = mid
        if networks[poas[attach].network].role != ROLE_ACCESS:
            r.error(f"{path}.attach", f"PoA {attach} is not in an access network")
            continue
        if attach in taken_poas:
            r.error(f"{path}.attach", f"PoA {attach} already holds {taken_poas[attach]}")
            continue
        taken_poas[attach] = mid
        mns[mid] = MobileNode(mid, mac, attach, identity, credentials, home)
    if set(cns) & set(mns):
        r.error("mobile_nodes", f"ids also used by correspondents: {sorted(set(cns) & set(mns))}")
    return cns, mns


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
    switches = _switches(r, raw.get("switches"))
    used_ports: dict = {}
    links = _links(r, raw.get("links"), switches, used_ports)
    networks = _networks(r, raw.get("networks"), domains, switches, used_ports)
    neighbours = _neighbours(r, raw.get("neighbours"), networks)
    cns, mns = _hosts(r, raw.get("correspondents"), raw.get("mobile_nodes"), networks)
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


def load_stores(topology: Topology | Parsed) -> dict[str, CredentialStore]:
    """Every domain's store (empty for a domain without ``credentials``).

    Errors of all files come in one ConfigError: a problem with a file as a whole
    is reported on the topology key that names it, one inside a file on
    ``FILE:key.path``.  ``topology`` may be what parsed of an invalid topology
    (a ConfigError's ``parsed``): the domains that parsed are read.
    """
    stores, errors = {}, []
    for did, domain in sorted(topology.domains.items()):
        if domain.credentials is None:
            stores[did] = CredentialStore(did)
            continue
        try:
            stores[did] = load_store(domain.credentials, did)
        except ConfigError as exc:
            errors += [(f"{domain.credentials}:{p}" if p else f"domains.{did}.credentials", m)
                       for p, m in exc.errors]
    if errors:
        raise ConfigError(errors)
    return stores


def _resolved(sections: Topology | Parsed, base: str) -> Topology | Parsed:
    """``sections`` with every file path it holds made absolute against ``base``."""
    def absolute(path: str) -> str:
        return os.path.normpath(os.path.join(base, path))

    def with_credentials(table: Mapping) -> dict:
        return {key: entry if entry.credentials is None
                else dataclasses.replace(entry, credentials=absolute(entry.credentials))
                for key, entry in table.items()}

    settings = sections.controller
    files = {key: absolute(getattr(settings, key))
             for key in CONTROLLER_FILES if getattr(settings, key) is not None}
    changes = {"controller": dataclasses.replace(settings, **files),
               "domains": with_credentials(sections.domains)}
    if isinstance(sections, Topology):
        changes["mobile_nodes"] = with_credentials(sections.mobile_nodes)
    return dataclasses.replace(sections, **changes)

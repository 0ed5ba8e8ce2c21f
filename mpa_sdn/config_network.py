"""The topology file's network sections: switches, links, networks and their
PoAs, and the neighbour relations between access networks.

Each ``parse_*`` reads its section with a :class:`mpa_protocol.schema.Reader`,
reports every problem on its key path and returns what was valid; an entry
that failed is marked broken, so the sections that name it do not report it
again.
"""

from __future__ import annotations

import hashlib
import ipaddress
from typing import Any

from mpa_protocol import schema
from mpa_protocol.schema import MISSING, Invalid, Quiet, Reader, kind_of
from mpa_sdn import interface_names
from mpa_sdn.config_fields import (MAX_LEASE_S, MAX_PORT, address_pool, datapath_id,
                                   interfaces_fit, ipv4_address, ipv4_prefix, is_host_of,
                                   switch_port, unicast_ipv4)
from mpa_sdn.topology import (ROLE_ACCESS, ROLES, AddressPool, Link, Neighbour, Network, PoA,
                              Port, Switch)

MAX_DNS_SERVERS = 4


def default_gateway_mac(network_id: str) -> str:
    """A stable, locally administered unicast MAC for a network's gateway."""
    digest = hashlib.sha256(b"mpa-sdn gateway " + network_id.encode()).digest()
    return "02:" + ":".join(f"{b:02x}" for b in digest[:5])


def parse_switches(r: Reader, raw: Any, domains: dict, used: dict) -> dict[str, Switch]:
    switches, by_dpid = {}, {}
    for sid, entry in r.table(raw, "switches").items():
        path = f"switches.{sid}"
        r.broken.add(("switch", sid))
        entry = r.mapping(entry, path, required={"dpid"}, optional={"domain", "pht_port"})
        if entry is None:
            continue
        dpid = r.field(entry, "dpid", path, datapath_id)
        domain = r.field(entry, "domain", path, _known(r, domains, "domain"), default=None)
        pht_port = r.field(entry, "pht_port", path, schema.integer(1, MAX_PORT), default=None)
        if MISSING in (dpid, domain, pht_port):
            continue
        if dpid in by_dpid:
            r.error(f"{path}.dpid", f"{dpid:#x} is already the dpid of switch {by_dpid[dpid]}")
            continue
        r.broken.discard(("switch", sid))
        by_dpid[dpid] = sid
        if pht_port is not None:
            used[(sid, pht_port)] = "its proactive handover tunnels (pht_port)"
        switches[sid] = Switch(sid, dpid, domain, pht_port)
    if not switches:
        r.error("switches", "at least one switch is required")
    return switches


def check_tunnel_ports(r: Reader, switches: dict, networks: dict) -> None:
    """A VXLAN port terminates tunnels at an access router's own address: a
    switch that is no network's AR, or the AR of several, cannot tell which."""
    for sid, switch in switches.items():
        if switch.pht_port is None:
            continue
        served = [n.id for n in networks.values() if n.access_router == sid]
        if len(served) != 1:
            r.error(f"switches.{sid}.pht_port",
                    "needs a switch that is the access router of exactly one network "
                    f"(it is the AR of {len(served)})")


def parse_links(r: Reader, raw: Any, switches: dict, used: dict) -> tuple[Link, ...]:
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
                ends.append(switch_port(end))
            except Invalid as exc:
                r.error(f"{path}[{j}]", str(exc))
                continue
            if ends[-1].switch in switches:
                interfaces_fit(r, f"{path}[{j}]",
                                interface_names.port_name(ends[-1].switch, ends[-1].port))
        if len(ends) != 2:
            continue
        if ends[0].switch == ends[1].switch:
            r.error(path, "a link must join two different switches")
            continue
        if _claim_ports(r, path, ends, switches, used, f"link {i}"):
            links.append(Link(*ends))
    return tuple(links)


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


def _role(value: Any) -> str:
    if value not in ROLES:
        raise Invalid(f"{value!r} must be one of {', '.join(ROLES)}")
    return value


def _known(r: Reader, table: dict, what: str):
    """A parser of an id that must name an entry of ``table`` (quiet about one
    that was reported broken already)."""
    def parse(value):
        value = schema.ident(value)
        if (what, value) in r.broken:
            raise Quiet(value)
        if value not in table:
            raise Invalid(f"unknown {what} {value!r}")
        return value
    return parse


def _network(r: Reader, nid: str, raw: Any, domains: dict, switches: dict,
             used: dict, poa_ids: dict) -> Network | None:
    path = f"networks.{nid}"
    raw = r.mapping(raw, path, required={"domain", "prefix", "gateway", "access_router", "poas"},
                    optional={"role", "served_by", "gateway_mac", "pool", "dns", "lease_time_s"})
    if raw is None:
        return None
    errors_before = len(r.errors)
    kind = r.field(raw, "role", path, _role, default=ROLE_ACCESS)
    domain = r.field(raw, "domain", path, _known(r, domains, "domain"))
    served_by = r.field(raw, "served_by", path, _known(r, domains, "domain"), default=domain)
    prefix = r.field(raw, "prefix", path, ipv4_prefix)
    gateway = r.field(raw, "gateway", path, ipv4_address)
    gateway_mac = r.field(raw, "gateway_mac", path, schema.mac, default=default_gateway_mac(nid))
    ar = r.field(raw, "access_router", path, _known(r, switches, "switch"))
    pool = r.field(raw, "pool", path, address_pool)
    dns = _dns(r, raw["dns"], f"{path}.dns") if "dns" in raw else ()
    lease_time = r.field(raw, "lease_time_s", path, schema.integer(60, MAX_LEASE_S))
    _addresses_fit(r, path, kind, prefix, gateway, pool)
    poas = _poas(r, path, nid, raw.get("poas"), switches, used, poa_ids)
    if len(r.errors) > errors_before:
        return None
    return Network(id=nid, role=kind, domain=domain, served_by=served_by, prefix=prefix,
                   gateway=gateway, gateway_mac=gateway_mac, access_router=ar,
                   poas=poas, pool=pool, dns=dns, lease_time_s=lease_time)


def _addresses_fit(r: Reader, path: str, kind: Any, prefix: Any, gateway: Any,
                   pool: Any) -> None:
    """The gateway and the pool inside the prefix's host addresses, apart;
    each value may be MISSING (reported already) and is then not compared."""
    if isinstance(prefix, ipaddress.IPv4Network):
        if isinstance(gateway, ipaddress.IPv4Address) and not is_host_of(gateway, prefix):
            r.error(f"{path}.gateway", f"{gateway} is not a host address of {prefix}")
        if isinstance(pool, AddressPool):
            if not (is_host_of(pool.first, prefix) and is_host_of(pool.last, prefix)):
                r.error(f"{path}.pool", f"{pool} is not inside the host addresses of {prefix}")
            elif isinstance(gateway, ipaddress.IPv4Address) and gateway in pool:
                r.error(f"{path}.pool", f"{pool} contains the gateway {gateway}")
    if kind == ROLE_ACCESS and pool is None:
        r.error(f"{path}.pool", "is required for an access network (it hands out nCoAs)")


def _poas(r: Reader, path: str, nid: str, raw: Any, switches: dict, used: dict,
          poa_ids: dict) -> tuple[PoA, ...]:
    """A network's PoAs, each on a switch port no link or other PoA uses."""
    poas = []
    raw_poas = r.table(raw, f"{path}.poas")
    if not raw_poas:
        r.error(f"{path}.poas", "at least one point of attachment is required")
    for pid, entry in raw_poas.items():
        ppath = f"{path}.poas.{pid}"
        try:
            port = switch_port(entry)
        except Invalid as exc:
            r.error(ppath, str(exc))
            continue
        if port.switch in switches:
            interfaces_fit(r, ppath, interface_names.port_name(port.switch, port.port))
        if pid in poa_ids:
            r.error(ppath, f"PoA id is already used in network {poa_ids[pid]}")
            continue
        poa_ids[pid] = nid
        if _claim_ports(r, ppath, [port], switches, used, f"PoA {pid}"):
            poas.append(PoA(pid, nid, port.switch, port.port))
    return tuple(poas)


def _dns(r: Reader, raw: Any, path: str) -> tuple[ipaddress.IPv4Address, ...]:
    if not isinstance(raw, list):
        r.error(path, f"must be a list of IPv4 addresses, not {kind_of(raw)}")
        return ()
    if len(raw) > MAX_DNS_SERVERS:
        r.error(path, f"at most {MAX_DNS_SERVERS} servers, not {len(raw)}")
    servers: list[ipaddress.IPv4Address] = []
    for i, value in enumerate(raw):
        try:
            server = unicast_ipv4(value)
        except Invalid as exc:
            r.error(f"{path}[{i}]", str(exc))
            continue
        if server in servers:
            r.error(f"{path}[{i}]", f"{server} is given twice")
        servers.append(server)
    return tuple(servers)


def parse_networks(r: Reader, raw: Any, domains: dict, switches: dict, used: dict) -> dict:
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


def parse_neighbours(r: Reader, raw: Any, networks: dict) -> tuple[Neighbour, ...]:
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



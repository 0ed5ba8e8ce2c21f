"""The topology file's host sections: correspondents and mobile nodes, each
at a PoA of a network that :mod:`mpa_sdn.config_network` parsed, with MACs,
PoAs and home addresses that no other host or gateway has."""

from __future__ import annotations

from typing import Any

from mpa_protocol import schema
from mpa_protocol.schema import MISSING, Invalid, Quiet, Reader
from mpa_sdn import interface_names
from mpa_sdn.config_fields import interfaces_fit, ipv4_address, is_host_of
from mpa_sdn.topology import ROLE_ACCESS, Correspondent, MobileNode


def parse_hosts(r: Reader, raw_cns: Any, raw_mns: Any, networks: dict) -> tuple[dict, dict]:
    """The correspondents and the MNs; the correspondents claim first."""
    claims = _Claims(r, networks)
    cns = _correspondents(claims, raw_cns)
    mns = _mobile_nodes(claims, raw_mns)
    if set(cns) & set(mns):
        r.error("mobile_nodes", f"ids also used by correspondents: {sorted(set(cns) & set(mns))}")
    return cns, mns


class _Claims:
    """What the host sections share: the PoAs hosts attach to, and who holds
    each MAC (gateways included), PoA and home address claimed so far."""

    def __init__(self, r: Reader, networks: dict):
        self.r = r
        self.networks = networks
        self.poas = {p.id: p for n in networks.values() for p in n.poas}
        self.macs: dict[str, str] = {n.gateway_mac: f"network {n.id}'s gateway"
                                     for n in networks.values()}
        self.poa_holders: dict[str, str] = {}
        self.homes: dict = {}
        # Per prefix length, each network by its network address: a home
        # address is checked against every network at one lookup per length,
        # not one test per network (10,000 MNs by 2,000 networks took 12 s).
        self._by_length: dict[int, dict[int, list[str]]] = {}
        for n in networks.values():
            self._by_length.setdefault(n.prefix.prefixlen, {}).setdefault(
                int(n.prefix.network_address), []).append(n.id)
        self._order = {nid: i for i, nid in enumerate(networks)}

    def networks_holding(self, address) -> list[str]:
        """The networks whose prefix holds ``address``, in the file's order."""
        value = int(address)
        found = [nid for length, networks in self._by_length.items()
                 for nid in networks.get(value >> (32 - length) << (32 - length), ())]
        return sorted(found, key=self._order.__getitem__)

    def mac(self, path: str, owner: str, mac: Any) -> None:
        if mac is MISSING or mac is None:
            return
        if mac in self.macs:
            self.r.error(f"{path}.mac", f"{mac} is already used by {self.macs[mac]}")
        self.macs[mac] = owner

    def known_poa(self, value: Any) -> str:
        value = schema.ident(value)
        if ("poa", value) in self.r.broken:
            raise Quiet(value)
        if value not in self.poas:
            raise Invalid(f"unknown PoA {value!r}")
        return value

    def poa(self, key_path: str, poa: str, holder: str) -> bool:
        """One host a PoA: False (reported) if another holds it."""
        if poa in self.poa_holders:
            self.r.error(key_path, f"PoA {poa} already holds {self.poa_holders[poa]}")
            return False
        self.poa_holders[poa] = holder
        return True

    def home(self, path: str, home: Any, mid: str) -> bool:
        """Traffic to a home address is rewritten, never routed: it must not be
        an address any network routes, and belongs to one MN."""
        inside = self.networks_holding(home)
        if inside or home.is_multicast or home.is_unspecified or home.is_loopback:
            self.r.error(f"{path}.home_address", f"{home} is inside network {inside[0]}"
                         if inside else f"{home} cannot be a home address")
            return False
        if home in self.homes:
            self.r.error(f"{path}.home_address",
                         f"{home} is already {self.homes[home]}'s home address")
            return False
        self.homes[home] = mid
        return True


def _correspondents(claims: _Claims, raw: Any) -> dict[str, Correspondent]:
    r, cns = claims.r, {}
    for cid, entry in r.table(raw, "correspondents").items():
        path = f"correspondents.{cid}"
        interfaces_fit(r, path, interface_names.host_name(cid, 0))
        entry = r.mapping(entry, path, required={"poa", "address", "mac"})
        if entry is None:
            continue
        poa = r.field(entry, "poa", path, claims.known_poa)
        address = r.field(entry, "address", path, ipv4_address)
        mac = r.field(entry, "mac", path, schema.mac)
        claims.mac(path, f"correspondent {cid}", mac)
        if MISSING in (poa, address, mac):
            continue
        network = claims.networks[claims.poas[poa].network]
        if not is_host_of(address, network.prefix):
            r.error(f"{path}.address", f"{address} is not a host address of {network.prefix} "
                                       f"(network {network.id} of PoA {poa})")
            continue
        if address == network.gateway or (network.pool and address in network.pool):
            r.error(f"{path}.address", f"{address} is the gateway or inside the pool of {network.id}")
            continue
        if claims.poa(f"{path}.poa", poa, cid):
            cns[cid] = Correspondent(cid, poa, address, mac)
    return cns


def _mobile_nodes(claims: _Claims, raw: Any) -> dict[str, MobileNode]:
    r, mns = claims.r, {}
    for mid, entry in r.table(raw, "mobile_nodes").items():
        path = f"mobile_nodes.{mid}"
        interfaces_fit(r, path, *(interface_names.host_name(mid, i)
                                  for i in range(interface_names.MN_INTERFACES)))
        entry = r.mapping(entry, path, required={"mac", "attach"},
                          optional={"identity", "credentials", "home_address"})
        if entry is None:
            continue
        mac = r.field(entry, "mac", path, schema.mac)
        attach = r.field(entry, "attach", path, claims.known_poa)
        identity = r.field(entry, "identity", path, schema.nai)
        credentials = r.field(entry, "credentials", path, schema.file_path, default=None)
        home = r.field(entry, "home_address", path, ipv4_address, default=None)
        claims.mac(path, f"mobile node {mid}", mac)
        if MISSING in (mac, attach, identity, credentials, home):
            continue
        if home is not None and not claims.home(path, home, mid):
            continue
        if claims.networks[claims.poas[attach].network].role != ROLE_ACCESS:
            r.error(f"{path}.attach", f"PoA {attach} is not in an access network")
            continue
        if claims.poa(f"{path}.attach", attach, mid):
            mns[mid] = MobileNode(mid, mac, attach, identity, credentials, home)
    return mns

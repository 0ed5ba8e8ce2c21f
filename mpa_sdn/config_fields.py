"""The topology file's value parsers and the checks several sections share.

Each parser takes one YAML value and returns it typed, or raises
:class:`mpa_protocol.schema.Invalid` with what is wrong; the generic ones
(integers, names, MACs) are :mod:`mpa_protocol.schema`'s, these know
addresses, datapaths and switch ports.
"""

from __future__ import annotations

import ipaddress
import re
from typing import Any

from mpa_protocol.messages import ID_RE
from mpa_protocol.schema import Invalid, Reader, kind_of
from mpa_sdn import interface_names
from mpa_sdn.topology import AddressPool, Port

HEX_RE = re.compile(r"(0x)?[0-9a-fA-F]{1,16}")
MAX_PORT = 0xffffff00  # OFPP_MAX: above are reserved ports
MAX_DPID = (1 << 64) - 1
# DHCP's lease time is an unsigned 32-bit field (0xffffffff: infinite), but
# some clients read it signed.
MAX_LEASE_S = 2**31 - 1


def ipv4_address(value: Any) -> ipaddress.IPv4Address:
    if not isinstance(value, str):
        raise Invalid(f"must be an IPv4 address as a string, not {kind_of(value)}")
    try:
        return ipaddress.IPv4Address(value)
    except ValueError:
        raise Invalid(f"{value!r} is not an IPv4 address") from None


def unicast_ipv4(value: Any) -> ipaddress.IPv4Address:
    address = ipv4_address(value)
    if (address.is_unspecified or address.is_loopback or address.is_multicast
            or address.is_reserved):
        raise Invalid(f"{address} is not a unicast address")
    return address


def host_address(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be an address as a string, not {kind_of(value)}")
    try:
        ipaddress.ip_address(value)
    except ValueError:
        raise Invalid(f"{value!r} is not an IP address") from None
    return value


def ipv4_prefix(value: Any) -> ipaddress.IPv4Network:
    if not isinstance(value, str):
        raise Invalid(f"must be a prefix such as 10.1.0.0/24, not {kind_of(value)}")
    try:
        network = ipaddress.IPv4Network(value, strict=True)
    except ValueError as exc:
        raise Invalid(f"{value!r} is not an IPv4 prefix ({exc})") from None
    if network.prefixlen > 30:
        raise Invalid(f"{value} is too small for hosts and a gateway (at most /30)")
    return network


def datapath_id(value: Any) -> int:
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


def switch_port(value: Any) -> Port:
    if not isinstance(value, str) or value.count(":") != 1:
        raise Invalid(f"{value!r} must be 'switch:port'")
    switch, port = value.split(":")
    if not ID_RE.fullmatch(switch):
        raise Invalid(f"{switch!r} is not a valid switch id")
    if not port.isdigit() or not 1 <= int(port) <= MAX_PORT:
        raise Invalid(f"port {port!r} must be a number 1..{MAX_PORT}")
    return Port(switch, int(port))


def address_pool(value: Any) -> AddressPool:
    if not isinstance(value, str) or value.count("-") != 1:
        raise Invalid(f"{value!r} must be 'first-last', e.g. 10.1.0.100-10.1.0.199")
    first, last = (ipv4_address(part.strip()) for part in value.split("-"))
    if last < first:
        raise Invalid(f"{value}: last address is below the first")
    return AddressPool(first, last)


def is_host_of(address, prefix) -> bool:
    return address in prefix and address not in (prefix.network_address, prefix.broadcast_address)


def interfaces_fit(r: Reader, path: str, *names: str) -> None:
    """Report the first of an entry's lab interface names Linux would refuse."""
    for name in names:
        problem = interface_names.problem(name)
        if problem:
            r.error(path, problem)
            return



"""The MN's end of an MN-terminated proactive handover tunnel (RFC 6252
§6.3 step 2, §7.4): what the kernel must hold, and the ``ip`` arguments
that make it so.

When the CTN's access router (the nAR) belongs to a controller that does
not control the MN's current PoA, no controller has a path from one to the
other, so the tunnel is an IP tunnel between the nAR's address (``endpoint``)
and the MN's current address (``outer``, its oCoA), with the nCoA inside:
VXLAN, ended at the nAR by an Open vSwitch port and at the MN by a kernel
VXLAN device.  That device takes the place of the nCoA's TUN vif, under the
same name (:func:`mpa_mn.vif.vif_name`), and holds

* nCoA/32, and the MPA-SA's MAC (the MN's, which it pre-authenticated
  with): the nAR sends the inner frames to that MAC;
* a permanent neighbour entry for the CTN's router with the MAC the answer
  gave, so nothing is ARPed down the tunnel;
* a default route via that router, ``onlink`` (no prefix on the device
  covers it), in the network's own routing table;
* and a rule ``from nCoA lookup TABLE``: what leaves from the nCoA, and
  nothing else, takes the tunnel.  The rule comes last, so that packets are
  steered into the table only once its path is complete; and it goes first.

TABLE is the network's own: :data:`TABLE_FIRST` plus the first 24 bits of
the SHA-256 of the vif's name, so tables 268435456 to 285212671
(0x10000000-0x10ffffff), clear of the kernel's (253-255) and of the small
numbers people give theirs.  It is found again from the network alone, so
everything is cleaned up after a restart whatever the state file says.
Two networks share a table with a chance of one in 16 million per pair.

Nothing here runs anything: it reads what ``ip -j`` shows and returns the
arguments; :class:`mpa_mn.vif.Vifs` runs them and the handover's attachment
(:mod:`mpa_mn.handover`) puts the rule's deletion in its ``ip -batch``.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

VXLAN = "vxlan"
TABLE_FIRST = 0x10000000
TABLE_BITS = 24
TABLE_LAST = TABLE_FIRST + (1 << TABLE_BITS) - 1
# What ``ip -j rule show`` says of a rule that selects by source alone.
PLAIN_RULE = {"priority", "src", "table", "protocol"}


@dataclass(frozen=True)
class VxlanEnd:
    """The tunnel as a ``tunnel`` answer gave it, the router behind its nAR, and
    the MN's MAC the nAR sends to."""

    key: int            # the VNI
    endpoint: str       # the nAR's address: the remote end
    outer: str          # the MN's current address: the local end
    udp_port: int
    router: str         # the CTN's router (the config's), reached through the tunnel
    router_mac: str
    mac: str            # the MPA-SA's MAC: the inner frames' destination

    @classmethod
    def of(cls, tunnel: dict, router: str, mac: str) -> "VxlanEnd":
        """From a held tunnel (:func:`mpa_mn.protocol.tunnel_described`'s fields)."""
        return cls(tunnel["key"], tunnel["endpoint"], tunnel["outer"], tunnel["udp_port"],
                   router, tunnel["router_mac"].lower(), mac.lower())


def table(name: str) -> int:
    """The routing table of the vif ``name`` (see the module's docstring)."""
    digest = hashlib.sha256(name.encode()).digest()
    return TABLE_FIRST + int.from_bytes(digest[:TABLE_BITS // 8], "big")


def is_vxlan(link: dict | None) -> bool:
    return link is not None and link.get("linkinfo", {}).get("info_kind") == VXLAN


def outer_interface(links: dict[str, dict], outer: str) -> str | None:
    """The interface holding ``outer`` (``links``: :meth:`mpa_mn.vif.Ip.links`)."""
    for name, link in links.items():
        if any(a.get("family") == "inet" and a.get("local") == outer
               for a in link.get("addr_info", [])):
            return name
    return None


def device_ok(link: dict, end: VxlanEnd, physical: str) -> bool:
    """Whether ``link`` is the device ``end`` needs: none of these but the MAC
    can be changed on a VXLAN device, and that one not while it is up, so one
    that differs is made again."""
    data = link.get("linkinfo", {}).get("info_data", {})
    return (is_vxlan(link) and (link.get("address") or "").lower() == end.mac
            and (data.get("id"), data.get("remote"), data.get("local"), data.get("port"),
                 data.get("link")) == (end.key, end.endpoint, end.outer, end.udp_port,
                                       physical))


def device_commands(name: str, end: VxlanEnd, physical: str) -> list[list[str]]:
    """The device made, down, with the MN's MAC (it is up once it holds the nCoA)."""
    return [["link", "add", name, "type", VXLAN, "id", str(end.key), "remote", end.endpoint,
             "local", end.outer, "dstport", str(end.udp_port), "dev", physical],
            ["link", "set", "dev", name, "address", end.mac]]


def neighbour_commands(neighbours: list[dict], name: str, end: VxlanEnd) -> list[list[str]]:
    """The router's permanent entry (``neighbours``: ``ip -j neigh show dev NAME``)."""
    for entry in neighbours:
        if (entry.get("dst") == end.router and (entry.get("lladdr") or "").lower()
                == end.router_mac and "PERMANENT" in entry.get("state", [])):
            return []
    return [["neigh", "replace", end.router, "lladdr", end.router_mac, "dev", name,
             "nud", "permanent"]]


def route_commands(routes: list[dict], number: int, name: str,
                   router: str) -> list[list[str]]:
    """The table holds its default route via the router, and nothing else
    (``routes``: ``ip -j route show table NUMBER``)."""
    wanted = {"dst": "default", "gateway": router, "dev": name}
    if len(routes) == 1 and all(routes[0].get(k) == v for k, v in wanted.items()) \
            and "onlink" in routes[0].get("flags", []):
        return []
    # ``replace`` changes one default route; anything else there goes first.
    flush = flush_commands(routes, number) if len(routes) > 1 or any(
        r.get("dst") != "default" for r in routes) else []
    return [*flush, ["route", "replace", "default", "via", router, "dev", name, "onlink",
                     "table", str(number)]]


def flush_commands(routes: list[dict], number: int) -> list[list[str]]:
    """The table emptied (``routes``: what it holds)."""
    return [["route", "flush", "table", str(number)]] if routes else []


def rule_commands(rules: list[dict], number: int, address: str | None) -> list[list[str]]:
    """One rule ``from ADDRESS lookup NUMBER`` into the table and no other
    (``rules``: ``ip -j rule show table NUMBER``); None: no rule at all."""
    ours = [r for r in rules if str(r.get("table")) == str(number)]
    keep = next((r for r in ours if address is not None and r.get("src") == address
                 and r.get("srclen", 32) == 32 and set(r) <= PLAIN_RULE), None)
    commands = [rule_deletion(r, number) for r in ours if r is not keep]
    if address is not None and keep is None:
        commands.append(["rule", "add", "from", address, "lookup", str(number)])
    return commands


def rule_deletion(rule: dict, number: int) -> list[str]:
    """Deletes ``rule`` (as ``ip -j rule show`` shows it): the kernel deletes
    the first rule into the table with its priority and source."""
    src = rule.get("src", "all")
    selector = [] if src == "all" else [
        "from", f"{src}/{rule['srclen']}" if "srclen" in rule else src]
    return ["rule", "del", "priority", str(rule.get("priority")), *selector,
            "lookup", str(number)]

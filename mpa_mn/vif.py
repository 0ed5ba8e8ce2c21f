"""Virtual interfaces for nCoAs, and the few questions the MN asks ``ip``.

RFC 6252 §7.3.3: an nCoA obtained before the move must not disturb the MN's
current address and routes, so it goes on a virtual interface, never on the
physical one.  Each CTN gets a TUN device (this kernel has no dummy
interfaces; a TUN device nobody opens works as well) named after the
network, holding the nCoA as ADDRESS/32, so no route to the CTN's prefix
goes through it before the move.

While the MN holds an MN-terminated proactive handover tunnel for the
nCoA, the device by that name is the tunnel's VXLAN end instead, with its
policy routing (:mod:`mpa_mn.vxlan_end`); a TUN device replaces it when the
tunnel is over, and either kind goes with everything it routes.

Everything runs ``ip`` through an injected ``run`` (``subprocess.run``'s
signature), so the tests use a fake.  Every operation is idempotent: it
looks first and changes only what differs.
"""

from __future__ import annotations

import hashlib
import json
import subprocess
from typing import Callable

from mpa_mn import vxlan_end
from mpa_mn.vxlan_end import VxlanEnd
from mpa_protocol.program_output import not_utf8

PREFIX = "mpa-"
IFNAMSIZ = 15          # Linux interface names: at most 15 bytes
IP_TIMEOUT_S = 10.0


def vif_name(network: str) -> str:
    """``mpa-<network>``; a longer one keeps a readable head and a hash of the whole."""
    name = PREFIX + network
    if len(name) <= IFNAMSIZ:
        return name
    digest = hashlib.sha256(network.encode()).hexdigest()[:4]
    return f"{PREFIX}{network[:IFNAMSIZ - len(PREFIX) - 5]}-{digest}"


class VifError(Exception):
    """``ip`` failed, or an interface is not what it should be."""


def ipv4_addresses(link: dict | None) -> list[tuple[str, int]]:
    """(address, prefix length) of each IPv4 address ``ip -j addr`` shows on a link."""
    return [(a["local"], a["prefixlen"]) for a in (link or {}).get("addr_info", [])
            if a.get("family") == "inet"]


OWN_KINDS = ("tun", vxlan_end.VXLAN)


def own_vif(name: str, link: dict | None) -> dict | None:
    """``link`` (None: there is no such device), if it is a TUN or VXLAN
    device: anything else by that name is not ours to change."""
    if link is not None and link.get("linkinfo", {}).get("info_kind") not in OWN_KINDS:
        raise VifError(f"{name} exists and is neither a TUN nor a VXLAN device; "
                       "leaving it alone")
    return link


class Command:
    """One program run through ``run`` (``subprocess.run``'s signature), with
    a clear ``error`` when it cannot run or fails; ``package``: what
    installs it."""

    error = VifError
    package = "iproute2"

    def __init__(self, run: Callable = subprocess.run, command: str = "ip",
                 timeout: float = IP_TIMEOUT_S):
        self._run, self.command, self.timeout = run, command, timeout

    def __call__(self, *args: str, missing_ok: bool = False,
                 input: str | None = None) -> str | None:
        """stdout; None if ``missing_ok`` and the device does not exist."""
        argv = [self.command, *args]
        try:
            # Bytes that are not UTF-8 come out as lone surrogates, never as
            # an exception from inside subprocess that names nothing.
            result = self._run(argv, capture_output=True, text=True, encoding="utf-8",
                               errors="surrogateescape", timeout=self.timeout, check=False,
                               input=input)
        except FileNotFoundError:
            raise self.error(f"`{self.command}` not found: install {self.package}") from None
        except subprocess.TimeoutExpired:
            raise self.error(f"`{' '.join(argv)}` did not finish in {self.timeout:g} s") \
                from None
        except OSError as exc:
            raise self.error(f"`{' '.join(argv)}` could not run: {exc.strerror}") from None
        if result.returncode != 0:
            # A message to show: a byte that is not UTF-8 is shown as U+FFFD.
            stderr = _escaped_as_replacement((result.stderr or "").strip())
            if missing_ok and "does not exist" in stderr:
                return None
            raise self.error(f"`{' '.join(argv)}` failed (exit {result.returncode}): "
                             f"{stderr or 'no message'}")
        return self._utf8(argv, result.stdout)

    def _utf8(self, argv: list[str], out: str) -> str:
        """``out``, which callers parse: strictly UTF-8, or a clear error."""
        data = out.encode("utf-8", "surrogateescape")   # the bytes it printed
        try:
            return data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise self.error(f"`{' '.join(argv)}` {not_utf8(data, exc)}") from None


def _escaped_as_replacement(text: str) -> str:
    return text.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


class Ip(Command):
    """``ip`` commands, with a clear error when one fails."""

    def json(self, *args: str, missing_ok: bool = False):
        out = self("-j", *args, missing_ok=missing_ok)
        if out is None:
            return None
        try:
            return json.loads(out) if out.strip() else []
        except ValueError:
            raise VifError(f"`{self.command} -j {' '.join(args)}` gave no JSON") from None

    def batch(self, commands: list[str]) -> None:
        """Several commands in one run of ``ip`` (``-batch``): it stops at the first
        that fails, and says which."""
        self("-batch", "-", input="".join(f"{c}\n" for c in commands))

    # -- what the MN needs to know about its host ------------------------------

    def link(self, name: str) -> dict | None:
        found = self.json("-d", "addr", "show", "dev", name, missing_ok=True)
        return found[0] if found else None

    def links(self) -> dict[str, dict]:
        """Every interface, by name, in one run of ``ip``."""
        return {link["ifname"]: link for link in self.json("-d", "addr", "show")}

    def interface(self, name: str) -> tuple[str | None, str | None]:
        """The interface's MAC and its address in the network it is attached to:
        the first IPv4 address shorter than /32 (a /32 is the home address), else
        the first."""
        link = self.link(name)
        if link is None:
            raise VifError(f"no interface {name}")
        addresses = sorted(ipv4_addresses(link), key=lambda a: a[1] == 32)
        return link.get("address"), (addresses[0][0] if addresses else None)

    def default_route(self, interface: str | None = None) -> tuple[str | None, str | None]:
        """(gateway, device) of the default route, on ``interface`` if given."""
        routes = [r for r in self.json("route", "show", "default")
                  if interface is None or r.get("dev") == interface]
        if not routes:
            return None, None
        return routes[0].get("gateway"), routes[0].get("dev")


class Vifs:
    """One device per CTN holding its nCoA: a TUN device, or the VXLAN end of
    the tunnel the MN holds for it."""

    enabled = True

    def __init__(self, ip: Ip | None = None):
        self.ip = ip or Ip()

    def _own(self, network: str) -> tuple[str, dict | None]:
        name = vif_name(network)
        return name, own_vif(name, self.ip.link(name))

    def ensure(self, network: str, address: str,
               end: VxlanEnd | None = None) -> tuple[str, bool]:
        """The network's device holds ``address``/32 and nothing else, and is
        up: the VXLAN end ``end`` with its routing, else a TUN device.

        Returns (device name, whether anything changed)."""
        if end is not None:
            return self._ensure_vxlan(network, address, end)
        name, link = self._own(network)
        changed = False
        if vxlan_end.is_vxlan(link):      # the tunnel is over: its routing goes with it
            changed = self._unroute(name) | self._delete(name)
            link = None
        if link is None:
            self.ip("tuntap", "add", "dev", name, "mode", "tun")
            link, changed = {}, True
        return name, self._hold(name, link, address) or changed

    def _ensure_vxlan(self, network: str, address: str, end: VxlanEnd) -> tuple[str, bool]:
        links = self.ip.links()
        name = vif_name(network)
        link = own_vif(name, links.get(name))
        physical = vxlan_end.outer_interface(links, end.outer)
        if physical is None:
            raise VifError(f"no interface holds {end.outer}, where the tunnel from "
                           f"{end.endpoint} ends (has the MN moved since it asked?)")
        changed = False
        if link is not None and not vxlan_end.device_ok(link, end, physical):
            changed = self._delete(name)
            link = None
        if link is None:
            self._run(vxlan_end.device_commands(name, end, physical))
            link, changed = {}, True
        changed = self._hold(name, link, address) or changed
        number = vxlan_end.table(name)
        return name, self._run(
            vxlan_end.neighbour_commands(self.ip.json("neigh", "show", "dev", name), name, end)
            + vxlan_end.route_commands(self._routes(number), number, name, end.router)
            + vxlan_end.rule_commands(self._rules(number), number, address)) or changed

    def _hold(self, name: str, link: dict, address: str) -> bool:
        """``address``/32 the only address of ``link`` (as ``ip`` showed it; {}:
        just made), which is up; whether anything changed."""
        changed = False
        held = ipv4_addresses(link)
        for local, length in held:
            if (local, length) != (address, 32):   # an old nCoA: replaced
                self.ip("addr", "del", f"{local}/{length}", "dev", name)
                changed = True
        if (address, 32) not in held:
            self.ip("addr", "add", f"{address}/32", "dev", name)
            changed = True
        if "UP" not in link.get("flags", []):
            self.ip("link", "set", "dev", name, "up")
            changed = True
        return changed

    def remove(self, network: str) -> bool:
        """The network's device is gone, and its tunnel's rules and table with
        it; whether there was any of them."""
        name, link = self._own(network)
        unrouted = self._unroute(name)
        return (link is not None and self._delete(name)) or unrouted

    def address(self, network: str) -> str | None:
        """The nCoA the device holds now (None: no device, or no address)."""
        held = ipv4_addresses(self._own(network)[1])
        return held[0][0] if held else None

    def _unroute(self, name: str) -> bool:
        """No rule into the vif's table and nothing in it: the rules first, so
        nothing is steered into a table being emptied."""
        number = vxlan_end.table(name)
        return self._run(vxlan_end.rule_commands(self._rules(number), number, None)
                         + vxlan_end.flush_commands(self._routes(number), number))

    def _rules(self, number: int) -> list[dict]:
        return self.ip.json("rule", "show", "table", str(number))

    def _routes(self, number: int) -> list[dict]:
        # A table with no route does not exist for the kernel: `ip` fails.
        return self.ip.json("route", "show", "table", str(number), missing_ok=True) or []

    def _delete(self, name: str) -> bool:
        self.ip("link", "del", "dev", name)
        return True

    def _run(self, commands: list[list[str]]) -> bool:
        for argv in commands:
            self.ip(*argv)
        return bool(commands)


class NoVifs:
    """``--no-vif``: the nCoA is only reported (unprivileged use, tests)."""

    enabled = False

    def ensure(self, network: str, address: str,
               end: VxlanEnd | None = None) -> tuple[None, bool]:
        return None, False

    def remove(self, network: str) -> bool:
        return False

    def address(self, network: str) -> str | None:
        return None

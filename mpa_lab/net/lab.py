"""Build the Mininet lab from the neighbourhood graph.

Switches, links and points of attachment come from the same graph the
controller reads, so the lab and the controller's flows cannot disagree.
Switches run Open vSwitch's userspace datapath (the kernel has no OVS
module), speak OpenFlow 1.3 and connect to the remote controller in
``secure`` fail mode: without the controller nothing is forwarded.  With
one controller per administrative domain, each switch connects to its own
domain's alone.  Access routers with a ``pht_port`` get the VXLAN endpoint
native tunnelling needs (mpa_lab/net/native_tunnelling.py).

Mininet must run in a process that has not been monkey-patched by eventlet,
i.e. never inside the controller; this module imports no Ryu app machinery.
"""

from __future__ import annotations

import fcntl
import logging
import os
import shutil
import socket
import struct
import subprocess
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mininet.link import Link
from mininet.net import Mininet
from mininet.node import OVSSwitch

# Importing mininet.log makes every logger created afterwards in this process
# a MininetLogger (level 25, a stderr handler of its own), which would drop
# the INFO lines of the project's loggers created later (the controller's
# core, when a test or a benchmark runs it beside the lab).  Mininet's own
# logger keeps its class.
logging.setLoggerClass(logging.Logger)

from mpa_lab.net import native_tunnelling, tunnel_setup
from mpa_lab.net.host_output import LabHost, LabRemoteController, LenientOutput
from mpa_protocol.schema import ConfigError
from mpa_sdn.domain_view import domain_of_switches
from mpa_sdn.interface_names import host_name, port_name
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.topology import MobileNode, Network, PoA, Topology

LOG = logging.getLogger("mpa_lab.net.lab")


class LabSwitch(LenientOutput, OVSSwitch):
    """An OVS switch one of whose interfaces can be moved to another switch.

    This is the link-layer handover: the MN keeps its interface (and its
    sockets); only the switch end of its veth changes switch and port.
    """

    def __init__(self, name, domain_controller: str | None = None, **params):
        # The name of the one controller this switch connects to (the lab
        # per domain); None: every controller of the net, Mininet's way.
        self.domain_controller = domain_controller
        params.setdefault("datapath", "user")
        params.setdefault("protocols", "OpenFlow13")
        params.setdefault("failMode", "secure")
        params.setdefault("reconnectms", 1000)
        super().__init__(name, **params)

    def start(self, controllers):
        if self.domain_controller is not None:
            controllers = [c for c in controllers if c.name == self.domain_controller]
        super().start(controllers)

    def give(self, intf, other: "LabSwitch", port: int, up: bool = True) -> tuple:
        """Move ``intf`` (this switch's end of a host's link) to ``other``'s
        ``port``: the lab's link-layer handover.  Returns when it went down
        and when it was up on ``other``: (monotonic ns, monotonic ns, wall
        ns, wall ns); without ``up`` it stays down there, and the times of
        its coming up are None.

        The interface must be down to be renamed, and ``other`` must hold it
        before it comes up again, or the host's first frames are lost.  In
        between runs one ovs-vsctl transaction (delete and add, numbered
        with ofport_request), which returns once ovs-vswitchd holds the
        port; that is most of the outage.  Deleting the old port only after
        the link is up again would be quicker, but until then the old port,
        bound to the same device, would take the host's frames too.  The
        rest is ioctls, not ``ip`` commands: each command costs
        milliseconds of outage.
        """
        new_name = port_name(other.name, port)
        _set_link_up(intf.name, False)
        down_ns, down_wall_ns = time.monotonic_ns(), time.time_ns()
        _rename_link(intf.name, new_name)
        moved = subprocess.run(
            ["ovs-vsctl", "--timeout=10", "del-port", self.name, intf.name,
             "--", "add-port", other.name, new_name,
             "--", "set", "Interface", new_name, f"ofport_request={port}"],
            stdin=subprocess.DEVNULL, capture_output=True, text=True)
        if moved.returncode != 0:
            _rename_link(new_name, intf.name)
            _set_link_up(intf.name, True)
            raise RuntimeError(f"cannot move {intf.name} to {other.name} port {port}: "
                               f"{moved.stderr.strip()}")
        up_ns = up_wall_ns = None
        if up:
            _set_link_up(new_name, True)
            up_ns, up_wall_ns = time.monotonic_ns(), time.time_ns()
        self.delIntf(intf)
        intf.name = new_name
        intf.node = other
        OVSSwitch.addIntf(other, intf, port=port)
        return down_ns, up_ns, down_wall_ns, up_wall_ns


# Interface flags and names through ioctls (what ifconfig uses): struct ifreq
# is a 16-byte name and a 24-byte union (flags, or the new name).
_SIOCGIFFLAGS, _SIOCSIFFLAGS, _SIOCSIFNAME = 0x8913, 0x8914, 0x8923
_IFF_UP = 0x1
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFREQ_NAME = struct.Struct("16s16s8x")


def _set_link_up(name: str, up: bool) -> None:
    """``ip link set NAME up|down`` in this process's namespace."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        request = _IFREQ_FLAGS.pack(name.encode(), 0)
        _, flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock, _SIOCGIFFLAGS, request))
        flags = flags | _IFF_UP if up else flags & ~_IFF_UP
        fcntl.ioctl(sock, _SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name.encode(), flags))


def _rename_link(name: str, new_name: str) -> None:
    """``ip link set NAME name NEW_NAME``; the link must be down."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        fcntl.ioctl(sock, _SIOCSIFNAME, _IFREQ_NAME.pack(name.encode(), new_name.encode()))


@dataclass(frozen=True)
class LinkSwitch:
    """One link-layer switch of a host: the switch end of its link down at
    one PoA and up at another (or left down there: None).  Times are ns,
    monotonic and wall-clock (both clocks are shared by every host of the
    lab)."""

    host: str
    from_poa: str
    to_poa: str
    down_ns: int
    up_ns: int | None
    down_wall_ns: int
    up_wall_ns: int | None

    @property
    def duration_ms(self) -> float | None:
        return None if self.up_ns is None else (self.up_ns - self.down_ns) / 1e6


@dataclass(frozen=True)
class ExtraHost:
    """A host the topology file does not name, for experiments: a DHCP client
    (``address`` None: it starts unaddressed) or a squatter (a static address)."""

    name: str
    mac: str
    poa: str
    address: str | None = None


@dataclass(frozen=True)
class LabController:
    """A remote controller the lab's switches connect to."""

    name: str                    # Mininet's
    ip: str
    port: int                    # its OpenFlow port
    domain: str | None = None    # the one domain it serves (the lab per domain)

    def __str__(self) -> str:
        whose = f"{self.domain}'s controller" if self.domain else "the controller"
        return f"{whose} ({self.ip}:{self.port})"


def controller_name(domain: str) -> str:
    """The Mininet name of a domain's controller in the lab per domain."""
    return f"c-{domain}"


# Management links: each MN gets a veth to the root namespace, its other
# interface, over which it reaches the controller's REST API (the REST
# signalling channel).  MN number i has 172.31.i.2/30, the root side .1.
MANAGEMENT_PREFIX = "172.31"
# Packet-ins each switch may queue for the controller (OVS's default is 100,
# its maximum 512): a buffering AR punts a whole stream while the MN moves.
CONTROLLER_QUEUE_SIZE = 512
# On an MN: answer ARP only for addresses on the interface asked (not for an
# nCoA on a virtual interface: the target AR answers for it), announce with
# the best local source, and accept packets whatever their source's route
# (the home address is on no network).
MN_SYSCTLS = {"arp_ignore": 1, "arp_announce": 2, "rp_filter": 0}


class Lab:
    """The topology in Mininet, on one remote controller (``controller_ip``,
    ``controller_port``) or, given ``controllers`` (domain id -> (ip,
    OpenFlow port)), each switch on its own domain's controller alone: the
    lab of one controller per administrative domain."""

    def __init__(self, topology: Topology, controller_ip: str = "127.0.0.1",
                 controller_port: int | None = None, *, extra_hosts=(),
                 management: bool = False,
                 controllers: Mapping[str, tuple[str, int]] | None = None):
        self.topology = topology
        self.graph = NeighbourhoodGraph(topology)
        self.controller_ip = controller_ip
        self.controller_port = controller_port or topology.controller.openflow_port
        # Mininet's controller name -> the controller, and each switch's name of it.
        self.controllers, self.controller_of = self._controllers(controllers)
        # Refused here, before anything is built, if the one OVS cannot do it.
        self.tunnelling = native_tunnelling.plan(topology)
        self.extra_hosts = tuple(extra_hosts)
        self.management = management
        self.net: Mininet | None = None
        self.location: dict[str, PoA] = {}  # host id -> its PoA now
        self.second: dict[str, tuple[str, PoA]] = {}  # MN id -> (its second interface, PoA)
        self.link_switches: list[LinkSwitch] = []  # every move, in order

    def _controllers(self, per_domain) -> tuple[dict[str, LabController], dict[str, str]]:
        if per_domain is None:
            return ({"c0": LabController("c0", self.controller_ip, self.controller_port)},
                    dict.fromkeys(self.graph.switch_ids(), "c0"))
        try:
            owner = domain_of_switches(self.topology)
        except ConfigError as exc:
            raise ValueError("; ".join(exc.lines())) from None
        missing = sorted(set(owner.values()) - set(per_domain))
        if missing:
            raise ValueError(f"no controller given for {', '.join(missing)}, whose switches "
                             f"need one")
        controllers = {controller_name(d): LabController(controller_name(d), *per_domain[d], d)
                       for d in sorted(set(owner.values()))}
        return controllers, {sid: controller_name(domain) for sid, domain in owner.items()}

    def switches_of(self, domain: str | None) -> list[str]:
        """The switches on ``domain``'s controller (None: on the one controller)."""
        name = "c0" if domain is None else controller_name(domain)
        return sorted(s for s, on in self.controller_of.items() if on == name)

    # -- addresses --------------------------------------------------------

    def address_of(self, mn: MobileNode, network: Network) -> str:
        """The lab's static address for an MN in a network.

        Until the MN obtains addresses from the Configuration Agent, the lab
        gives each MN a fixed address at the top of the network's pool
        (the last address for the first MN, and so on), so runs repeat.
        """
        index = sorted(self.topology.mobile_nodes).index(mn.id)
        if index >= len(network.pool):
            raise ValueError(f"{network.id}'s pool ({network.pool}) has no lab address for "
                             f"mobile node {mn.id} (the {index + 1}th)")
        return str(network.pool.last - index)

    def _ip_with_length(self, address: str, network: Network) -> str:
        return f"{address}/{network.prefix.prefixlen}"

    # -- life cycle -------------------------------------------------------

    def _clear_leftovers(self) -> None:
        """Remove what a run killed before its teardown left of this lab.

        Only this topology's own bridges and switch ports: another lab or
        anything else on the machine is left alone (unlike ``mn -c``).
        """
        names = {port_name(end.switch, end.port) for link in self.topology.links
                 for end in (link.a, link.b)}
        names |= {port_name(p.switch, p.port) for p in self.topology.poas.values()}
        names |= {self._management_names(i)[0] for i in range(len(self.topology.mobile_nodes))}
        for switch in self.graph.switch_ids():
            subprocess.run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", switch],
                           stdin=subprocess.DEVNULL, capture_output=True)
        tunnel_setup.tear_down(self.tunnelling)
        for name in sorted(names):
            if os.path.exists(f"/sys/class/net/{name}"):
                LOG.warning("removing %s, left over from an earlier run", name)
                subprocess.run(["ip", "link", "del", name], capture_output=True)

    def start(self, wait_s: float = 30.0) -> None:
        self._clear_leftovers()
        tunnel_setup.check_addresses_free(self.tunnelling)
        net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                      autoStaticArp=False, waitConnected=False)
        self.net = net
        for c in self.controllers.values():
            net.addController(c.name, controller=LabRemoteController, ip=c.ip, port=c.port)
        for switch in self.graph.switch_ids():
            net.addSwitch(switch, cls=LabSwitch, dpid=f"{self.graph.dpid(switch):016x}",
                          domain_controller=self.controller_of[switch])
        # Mininet would make the same names; given, they are the ones the
        # configuration check measured.
        for link in sorted(self.topology.links, key=lambda l: (str(l.a), str(l.b))):
            net.addLink(link.a.switch, link.b.switch, port1=link.a.port, port2=link.b.port,
                        intfName1=port_name(link.a.switch, link.a.port),
                        intfName2=port_name(link.b.switch, link.b.port), cls=Link)
        for cn in sorted(self.topology.correspondents.values(), key=lambda c: c.id):
            poa = self.graph.poa(cn.poa)
            self._add_host(cn.id, cn.mac, str(cn.address), poa)
        for mn in sorted(self.topology.mobile_nodes.values(), key=lambda m: m.id):
            poa = self.graph.poa(mn.attach)
            self._add_host(mn.id, mn.mac, self.address_of(mn, self.graph.network(poa.network)), poa)
        for extra in self.extra_hosts:
            self._add_host(extra.name, extra.mac, extra.address, self.graph.poa(extra.poa))
        net.build()
        net.start()
        self._raise_controller_queues()
        tunnel_setup.set_up(self.tunnelling)
        for host in net.hosts:
            self._tune(host)
        for mn in self.topology.mobile_nodes.values():
            self._prepare_mobile_node(mn)
        if self.management:
            self._add_management_links()
        self.wait_connected(wait_s)

    def _add_host(self, name: str, mac: str, address: str | None, poa: PoA) -> None:
        network = self.graph.network(poa.network)
        if address is None:  # a DHCP client: no address, no route until it gets a lease
            self.net.addHost(name, cls=LabHost, ip=None, mac=mac)
        else:
            self.net.addHost(name, cls=LabHost, ip=self._ip_with_length(address, network),
                             mac=mac, defaultRoute=f"via {network.gateway}")
        self.net.addLink(name, poa.switch, port2=poa.port, intfName1=host_name(name, 0),
                         intfName2=port_name(poa.switch, poa.port), cls=Link)
        self.location[name] = poa

    # -- management links (the MNs' way to the REST API) -------------------

    @staticmethod
    def _management_names(index: int) -> tuple[str, str]:
        return f"mpa-mgmt{index}", "mgmt0"

    def management_addresses(self, mn_id: str) -> tuple[str, str]:
        """(root side, MN side) of the MN's management link."""
        index = sorted(self.topology.mobile_nodes).index(mn_id)
        return f"{MANAGEMENT_PREFIX}.{index}.1", f"{MANAGEMENT_PREFIX}.{index}.2"

    def _add_management_links(self) -> None:
        for index, mn_id in enumerate(sorted(self.topology.mobile_nodes)):
            root_name, mn_name = self._management_names(index)
            root_ip, mn_ip = self.management_addresses(mn_id)
            host = self.host(mn_id)
            commands = [
                ["ip", "link", "add", root_name, "type", "veth", "peer", "name", mn_name,
                 "netns", str(host.pid)],
                ["ip", "addr", "add", f"{root_ip}/30", "dev", root_name],
                ["ip", "link", "set", root_name, "up"],
            ]
            for command in commands:
                subprocess.run(command, check=True, capture_output=True)
            host.cmd(f"ip addr add {mn_ip}/30 dev {mn_name} && ip link set {mn_name} up")

    def _remove_management_links(self) -> None:
        for index in range(len(self.topology.mobile_nodes)):
            name = self._management_names(index)[0]
            if os.path.exists(f"/sys/class/net/{name}"):
                subprocess.run(["ip", "link", "del", name], capture_output=True)

    @staticmethod
    def _tune(host, names=None) -> None:
        """``names`` (default: all) of the host's interfaces, made fit for the lab."""
        for intf in names or host.intfNames():
            # The userspace datapath does not complete TCP checksums that a
            # veth left to offload: without this, ping works and TCP stalls.
            host.cmd("ethtool -K", intf, "tx off >/dev/null 2>&1")
            # Stay quiet on IPv6: the lab routes IPv4 only.
            host.cmd(f"sysctl -qw net.ipv6.conf.{intf}.disable_ipv6=1")

    def _raise_controller_queues(self) -> None:
        """CONTROLLER_QUEUE_SIZE on the Controller records of this lab's
        bridges (and no others): one ovs-vsctl to read them, one to set."""
        def vsctl(*args: str) -> str:
            return subprocess.run(["ovs-vsctl", "--timeout=10", *args], check=True,
                                  stdin=subprocess.DEVNULL, capture_output=True, text=True,
                                  errors="replace").stdout
        uuids = sorted(set(vsctl("--bare", "--columns=controller", "list", "Bridge",
                                 *self.graph.switch_ids()).split()))
        settings = [arg for uuid in uuids
                    for arg in ("--", "set", "Controller", uuid,
                                f"controller_queue_size={CONTROLLER_QUEUE_SIZE}")]
        if settings:
            vsctl(*settings)

    def _prepare_mobile_node(self, mn: MobileNode) -> None:
        host = self.host(mn.id)
        # "all" and "default" too: the kernel takes the larger of "all" and
        # an interface's value, and interfaces made later start from "default".
        host.cmd("sysctl -qw", *(f"net.ipv4.conf.{intf}.{name}={value}"
                                 for intf in ("all", "default", *host.intfNames())
                                 for name, value in MN_SYSCTLS.items()))
        self._add_home_address(mn, host)

    @staticmethod
    def _add_home_address(mn: MobileNode, host) -> None:
        """The home address, /32 on the MN's interface: its sockets use it
        wherever the MN is; the controller rewrites it on the wire."""
        if mn.home_address is not None:
            host.cmd(f"ip addr replace {mn.home_address}/32 dev {host.defaultIntf()}")

    def wait_connected(self, timeout_s: float) -> None:
        """Until each switch is connected to its controller; the timeout
        names, per controller, the switches it does not have."""
        deadline = time.monotonic() + timeout_s
        pending = list(self.net.switches)
        while pending:
            pending = [s for s in pending if not s.connected()]
            if not pending:
                return
            if time.monotonic() > deadline:
                missing = {}
                for switch in pending:
                    missing.setdefault(self.controller_of[switch.name], []).append(switch.name)
                raise TimeoutError("switches not connected: " + "; ".join(
                    f"to {self.controllers[name]}: {', '.join(sorted(switches))}"
                    for name, switches in sorted(missing.items())))
            time.sleep(0.2)

    def stop(self) -> None:
        if self.net is not None:
            net, self.net = self.net, None
            if self.management:
                self._remove_management_links()
            tunnel_setup.tear_down(self.tunnelling)
            net.stop()

    def __enter__(self):
        try:
            self.start()
        except BaseException:
            self.stop()  # what start() built before it failed
            raise
        return self

    def __exit__(self, *exc):
        self.stop()

    # -- hosts ------------------------------------------------------------

    def host(self, name: str):
        return self.net.get(name)

    def address(self, name: str) -> str:
        return self.host(name).IP()

    def move(self, mn_id: str, poa_id: str, readdress: bool = True,
             link_up: bool = True) -> str | None:
        """Move an MN's link to another PoA: the link-layer handover.

        ``readdress``: within its network the MN keeps its address; moving
        to another network it takes that network's lab address and gateway
        (the reactive path: no MPA).  Either way it then announces itself
        with a gratuitous ARP, as a host does when its link comes up.
        Returns the MN's address after the move.

        Without ``readdress`` (MPA: the MN's client addresses the interface
        itself once its link is back) only the link moves, nothing is
        announced, and the result is None.  Without ``link_up`` the link
        reaches the target but stays down there, as when an association
        with the target never completes; nothing is announced either.

        Each move's link-layer switch is appended to ``link_switches``.
        """
        mn = self.topology.mobile_nodes[mn_id]
        target = self.graph.poa(poa_id)
        current = self.location[mn_id]
        if target == current:
            return self.address(mn_id) if readdress else None
        self._check_free(target)
        old_switch, new_switch = self.net.get(current.switch), self.net.get(target.switch)
        times = old_switch.give(self._switch_end(mn_id), new_switch, target.port, up=link_up)
        self.link_switches.append(LinkSwitch(mn_id, current.id, target.id, *times))
        self.location[mn_id] = target
        if not readdress:
            return None
        if target.network != current.network:
            self.readdress(mn_id, self.address_of(mn, self.graph.network(target.network)))
        if link_up:
            self.announce(mn_id)
        return self.address(mn_id)

    def _holder(self, poa: PoA) -> str | None:
        """What holds ``poa``'s one port: a host's link, or an MN's second
        interface (named so); None if it is free."""
        held = sorted([h for h, p in self.location.items() if p == poa]
                      + [f"{mn}'s second interface" for mn, (_, p) in self.second.items()
                         if p == poa])
        return held[0] if held else None

    def _check_free(self, poa: PoA) -> None:
        holder = self._holder(poa)
        if holder is not None:
            raise ValueError(f"PoA {poa.id} already holds {holder}")

    @property
    def last_link_switch(self) -> LinkSwitch | None:
        return self.link_switches[-1] if self.link_switches else None

    def _switch_end(self, host_id: str):
        """The switch's end of the host's link to its PoA."""
        host_intf = self.host(host_id).defaultIntf()
        link = host_intf.link
        return link.intf2 if link.intf1 is host_intf else link.intf1

    def readdress(self, mn_id: str, address: str) -> None:
        """Give the MN ``address`` in the network of its PoA, with that
        network's gateway as its default route, instead of every address it
        has (its home address stays); forget its neighbours."""
        mn = self.topology.mobile_nodes[mn_id]
        network = self.graph.network(self.location[mn_id].network)
        host = self.host(mn_id)
        intf = host.defaultIntf()
        host.cmd("ip addr flush dev", intf)
        host.cmd("ip neigh flush dev", intf, "nud all")
        host.setIP(address, prefixLen=network.prefix.prefixlen, intf=intf)
        self._add_home_address(mn, host)
        host.cmd("ip route replace default via", network.gateway, "dev", intf)

    def note_address(self, mn_id: str, address: str) -> None:
        """The MN gave itself ``address`` in the network of its PoA (an
        nCoA): keep the lab's record of it, changing nothing in the host."""
        network = self.graph.network(self.location[mn_id].network)
        intf = self.host(mn_id).defaultIntf()
        intf.ip, intf.prefixLen = address, network.prefix.prefixlen

    def cut_link(self, host_id: str) -> int:
        """Sudden link loss: the switch end of the host's link goes down;
        the host stays where it is.  Returns when (wall-clock ns)."""
        _set_link_up(self._switch_end(host_id).name, False)
        return time.time_ns()

    def add_interface(self, mn_id: str, poa_id: str, mac: str) -> str:
        """Give an MN a second interface, attached to ``poa_id`` (RFC 6252
        §7.6.2's multi-interface MN), unaddressed: the MN prepares it.
        Returns its name in the MN's host."""
        if mn_id in self.second:
            raise ValueError(f"{mn_id} already has a second interface")
        poa = self.graph.poa(poa_id)
        self._check_free(poa)
        host = self.host(mn_id)
        name, peer = host_name(mn_id, len(host.intfList())), port_name(poa.switch, poa.port)
        for command in (["ip", "link", "add", peer, "type", "veth", "peer", "name", name,
                         "netns", str(host.pid)],
                        ["ip", "link", "set", peer, "up"],
                        ["ovs-vsctl", "--timeout=10", "add-port", poa.switch, peer, "--", "set",
                         "Interface", peer, f"ofport_request={poa.port}"]):
            subprocess.run(command, check=True, capture_output=True, stdin=subprocess.DEVNULL)
        host.cmd(f"ip link set {name} address {mac} && ip link set {name} up")
        # Like the lab's own interfaces (the MN's sysctls hold for it through
        # "default"); the switch side's offload too, as Mininet's are.
        self._tune(host, [name])
        subprocess.run(["ethtool", "-K", peer, "tx", "off"], capture_output=True)
        self.second[mn_id] = (name, poa)
        return name

    def remove_interface(self, mn_id: str) -> None:
        """Take the second interface away again (its port goes: the
        controller forgets what it learned there)."""
        name, poa = self.second.pop(mn_id)
        peer = port_name(poa.switch, poa.port)
        subprocess.run(["ovs-vsctl", "--timeout=10", "--if-exists", "del-port", poa.switch, peer],
                       capture_output=True, stdin=subprocess.DEVNULL)
        subprocess.run(["ip", "link", "del", peer], capture_output=True)

    def announce(self, name: str) -> None:
        host = self.host(name)
        if shutil.which("arping"):
            host.cmd("arping -q -U -c 1 -w 1 -I", host.defaultIntf(), host.IP())

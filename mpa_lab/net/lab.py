"""Build the Mininet lab from the neighbourhood graph.

Switches, links and points of attachment come from the same graph the
controller reads, so the lab and the controller's flows cannot disagree.
The MNs reach their PoAs through the modelled link layer of
mpa_lab/net/link_layer.py: every free PoA's port exists from the start, and
a link-layer switch is a few ioctls and a deliberate outage.
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

import logging
import os
import shutil
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
from mpa_lab.net.host_output import LabHost, LabNode, LabRemoteController, LenientOutput
from mpa_lab.net.link_layer import (MAX_LINK_LAYER_MS, PER_STATION, STAY_UP, Attachment,
                                    LinkSwitch, NamespaceIoctls, bridge_name,
                                    checked_poa_ports, cut_plan, execute, imposed_outage_ms,
                                    mn_end_name, stub_name, switch_plan)
from mpa_protocol.schema import ConfigError
from mpa_sdn.domain_view import domain_of_switches
from mpa_sdn.interface_names import host_name, port_name
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.topology import MobileNode, Network, PoA, Topology

LOG = logging.getLogger("mpa_lab.net.lab")


class LabSwitch(LenientOutput, OVSSwitch):
    """An OVS switch of the lab: userspace datapath, OpenFlow 1.3, secure
    fail mode, on its own domain's controller."""

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
# The Mininet node whose namespace holds the link layer (link_layer.py);
# Mininet's cleanup (mpa-lab cleanup) ends its shell like a host's.
LINK_LAYER_NODE = "mpa-link-layer"


class Lab:
    """The topology in Mininet, on one remote controller (``controller_ip``,
    ``controller_port``) or, given ``controllers`` (domain id -> (ip,
    OpenFlow port)), each switch on its own domain's controller alone: the
    lab of one controller per administrative domain.  ``link_layer_ms``:
    the outage every link-layer switch imposes, in place of the topology's
    ``l2_handover_ms`` (None: the topology's); ``poa_ports``: what a PoA's
    port does as MNs come and go (``per_station`` or ``stay_up``; see
    link_layer.py)."""

    def __init__(self, topology: Topology, controller_ip: str = "127.0.0.1",
                 controller_port: int | None = None, *, extra_hosts=(),
                 management: bool = False,
                 controllers: Mapping[str, tuple[str, int]] | None = None,
                 link_layer_ms: float | None = None, poa_ports: str = PER_STATION):
        self.poa_ports = checked_poa_ports(poa_ports)
        if link_layer_ms is not None and not 0 <= link_layer_ms <= MAX_LINK_LAYER_MS:
            raise ValueError(f"link_layer_ms must be from 0 to {MAX_LINK_LAYER_MS:g}, "
                             f"not {link_layer_ms!r}")
        self.link_layer_ms = link_layer_ms
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
        # The link layer's namespace (a Mininet node of no net's), the
        # ioctls on it, and each MN interface's way in: (MN id, 0 or 1).
        self.link_node: LabNode | None = None
        self.ioctls: NamespaceIoctls | None = None
        self.attachments: dict[tuple[str, int], Attachment] = {}
        self._stubs: list[str] = []   # every PoA's stub (_start_link_layer)

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
        # After the switches: the first node of a class sets up its classes
        # (OVS's version for LabSwitch), and a Node first would stand for them.
        self.link_node = LabNode(LINK_LAYER_NODE)
        # Mininet would make the same names; given, they are the ones the
        # configuration check measured.
        for link in sorted(self.topology.links, key=lambda l: (str(l.a), str(l.b))):
            net.addLink(link.a.switch, link.b.switch, port1=link.a.port, port2=link.b.port,
                        intfName1=port_name(link.a.switch, link.a.port),
                        intfName2=port_name(link.b.switch, link.b.port), cls=Link)
        for cn in sorted(self.topology.correspondents.values(), key=lambda c: c.id):
            poa = self.graph.poa(cn.poa)
            self._add_host(cn.id, cn.mac, str(cn.address), poa)
        for extra in self.extra_hosts:
            self._add_host(extra.name, extra.mac, extra.address, self.graph.poa(extra.poa))
        # Every PoA no fixed host holds gets its stub, for good.
        for poa in sorted(set(self.topology.poas.values()) - set(self.location.values()),
                          key=lambda p: p.id):
            net.addLink(self.link_node, poa.switch, port2=poa.port,
                        intfName1=stub_name(poa.switch, poa.port),
                        intfName2=port_name(poa.switch, poa.port), cls=Link)
        for index, mn in enumerate(sorted(self.topology.mobile_nodes.values(),
                                          key=lambda m: m.id)):
            poa = self.graph.poa(mn.attach)
            address = self.address_of(mn, self.graph.network(poa.network))
            net.addHost(mn.id, cls=LabHost,
                        ip=self._ip_with_length(address, self.graph.network(poa.network)),
                        mac=mn.mac, defaultRoute=f"via {self.graph.network(poa.network).gateway}")
            net.addLink(mn.id, self.link_node, intfName1=host_name(mn.id, 0),
                        intfName2=mn_end_name(index, 0), cls=Link)
            self.attachments[(mn.id, 0)] = Attachment(bridge_name(index, 0),
                                                      mn_end_name(index, 0), None)
            self.location[mn.id] = poa
        net.build()
        net.start()
        self._raise_controller_queues()
        tunnel_setup.set_up(self.tunnelling)
        for host in net.hosts:
            self._tune(host)
        self._start_link_layer()
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

    # -- the link layer (link_layer.py) -------------------------------------

    def _start_link_layer(self) -> None:
        """Each MN's bridge, with its end and its PoA's stub; the other stubs
        in no bridge, down per station (their ports LINK_DOWN, as a PoA
        nobody is at) or up if ports stay up.  Every veth of
        the link layer without transmit checksum offload, as the hosts'
        (see _tune), and the namespace without IPv6 and without the
        host's bridge netfilter (not every kernel lets a namespace turn it
        off: then it has no rules to meet)."""
        stubs = [i.name for i in self.link_node.intfList() if i.name != "lo"
                 and i.name not in {a.mn_end for a in self.attachments.values()}]
        self._stubs = stubs   # every PoA's, for good
        script = ["sysctl -qw net.ipv6.conf.all.disable_ipv6=1 "
                  "net.ipv6.conf.default.disable_ipv6=1",
                  *(f"sysctl -qw net.bridge.bridge-nf-call-{table}=0 2>/dev/null || true"
                    for table in ("iptables", "ip6tables", "arptables")),
                  *(f"ethtool -K {name} tx off >/dev/null" for name in stubs),
                  *(f"ip link set {name} {'up' if self.poa_ports == STAY_UP else 'down'}"
                    for name in stubs)]
        for (mn_id, _), attachment in sorted(self.attachments.items()):
            poa = self.location[mn_id]
            script += self._bridge_script(attachment, stub_name(poa.switch, poa.port))
        self._in_link_layer(script)
        ends = [port_name(p.switch, p.port) for p in self.topology.poas.values()
                if stub_name(p.switch, p.port) in stubs]
        subprocess.run(["sh", "-c", "; ".join(f"ethtool -K {name} tx off >/dev/null 2>&1"
                                               for name in ends) or "true"],
                       capture_output=True, stdin=subprocess.DEVNULL)
        self.ioctls = NamespaceIoctls(self.link_node.pid)
        for (mn_id, _), attachment in self.attachments.items():
            poa = self.location[mn_id]
            attachment.stub = stub_name(poa.switch, poa.port)

    def use_poa_ports(self, model: str) -> None:
        """From now on, PoA ports behave as ``model`` says (link_layer.py):
        the stubs no MN is at go up or down accordingly."""
        self.poa_ports = checked_poa_ports(model)
        held = {a.stub for a in self.attachments.values()}
        for stub in [s for s in self._stubs if s not in held]:
            self.ioctls.set_up(stub, model == STAY_UP)

    @staticmethod
    def _bridge_script(attachment: Attachment, stub: str) -> list[str]:
        """The commands that make ``attachment``'s bridge (stp off: a port
        forwards once up; forward delay 0 should STP ever be turned on) and
        join its end and ``stub``, all up, the stub last but one.  A bridge
        of two members never delivers to a wrong port, and the kernel
        flushes what it learned at a stub when the stub leaves."""
        bridge, end = attachment.bridge, attachment.mn_end
        return [f"ip link add {bridge} type bridge stp_state 0 forward_delay 0 "
                f"mcast_snooping 0",
                f"ethtool -K {end} tx off >/dev/null",
                f"ip link set {end} master {bridge}", f"ip link set {bridge} up",
                f"ip link set {stub} master {bridge}", f"ip link set {stub} up",
                f"ip link set {end} up"]

    def _in_link_layer(self, commands: list[str]) -> None:
        """``commands`` in the link layer's namespace, stopping at the first
        that fails (an error naming it)."""
        run = subprocess.run(["nsenter", f"--net=/proc/{self.link_node.pid}/ns/net",
                              "sh", "-exc", "\n".join(commands)],
                             capture_output=True, text=True, stdin=subprocess.DEVNULL)
        if run.returncode != 0:
            raise RuntimeError(f"the lab's link layer: {run.stderr.strip()[-500:]}")

    def _switch(self, mn_id: str, current: PoA, target: PoA, link_up: bool) -> LinkSwitch:
        """The MN's link-layer switch from ``current`` to ``target``."""
        attachment = self.attachments[(mn_id, 0)]
        new_stub = stub_name(target.switch, target.port)
        imposed = (imposed_outage_ms(self.graph, current, target, self.link_layer_ms)
                   if link_up else 0.0)
        try:
            done = execute(switch_plan(attachment, new_stub, link_up, self.poa_ports),
                           self.ioctls, imposed)
        except OSError as exc:
            raise RuntimeError(f"cannot switch {mn_id}'s link from {current.id} to "
                               f"{target.id}: {exc}") from exc
        attachment.stub = new_stub
        return LinkSwitch(mn_id, current.id, target.id, done.down_ns, done.up_ns,
                          done.down_wall_ns, done.up_wall_ns, imposed, done.ioctl_ns / 1e6)

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
        if self.ioctls is not None:
            self.ioctls, ioctls = None, self.ioctls
            ioctls.close()
        if self.link_node is not None:
            # Its bridges and what is left of its veths go with its namespace.
            self.link_node, node = None, self.link_node
            node.terminate()

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

        The link is held down for the imposed outage (link_layer.py): the
        lab's ``link_layer_ms``, else the topology's ``l2_handover_ms``.
        Each move's link-layer switch is appended to ``link_switches``.
        """
        mn = self.topology.mobile_nodes[mn_id]
        target = self.graph.poa(poa_id)
        current = self.location[mn_id]
        if target == current:
            return self.address(mn_id) if readdress else None
        self._check_free(target)
        self.link_switches.append(self._switch(mn_id, current, target, link_up))
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

    def cut_link(self, mn_id: str) -> int:
        """Sudden link loss: the MN's link and its PoA's port go down; the
        MN stays where it is.  Returns when (wall-clock ns)."""
        return execute(cut_plan(self.attachments[(mn_id, 0)]), self.ioctls, 0.0).down_wall_ns

    def add_interface(self, mn_id: str, poa_id: str, mac: str) -> str:
        """Give an MN a second interface, attached to ``poa_id`` (RFC 6252
        §7.6.2's multi-interface MN), unaddressed: the MN prepares it.
        Returns its name in the MN's host.  Like the first, it reaches its
        PoA through a bridge of its own in the link layer."""
        if mn_id in self.second:
            raise ValueError(f"{mn_id} already has a second interface")
        poa = self.graph.poa(poa_id)
        self._check_free(poa)
        host = self.host(mn_id)
        name = host_name(mn_id, len(host.intfList()))
        index = sorted(self.topology.mobile_nodes).index(mn_id)
        attachment = Attachment(bridge_name(index, 1), mn_end_name(index, 1), None)
        self._in_link_layer([f"ip link add {attachment.mn_end} type veth peer name {name} "
                             f"netns {host.pid}"])
        host.cmd(f"ip link set {name} address {mac} && ip link set {name} up")
        # Like the lab's own interfaces (the MN's sysctls hold for it through
        # "default").  Its PoA's port comes up last, once the MN's end is up.
        self._tune(host, [name])
        self._in_link_layer(self._bridge_script(attachment, stub_name(poa.switch, poa.port)))
        attachment.stub = stub_name(poa.switch, poa.port)
        self.attachments[(mn_id, 1)] = attachment
        self.second[mn_id] = (name, poa)
        return name

    def remove_interface(self, mn_id: str) -> None:
        """Take the second interface away again (its PoA's port goes down:
        the controller forgets what it learned there)."""
        self.second.pop(mn_id)
        attachment = self.attachments.pop((mn_id, 1))
        self._in_link_layer([f"ip link set {attachment.stub} nomaster",
                             f"ip link set {attachment.stub} down",
                             f"ip link del {attachment.mn_end}",
                             f"ip link del {attachment.bridge}"])
        self.ioctls.forget(attachment.mn_end)

    def announce(self, name: str) -> None:
        host = self.host(name)
        if shutil.which("arping"):
            host.cmd("arping -q -U -c 1 -w 1 -I", host.defaultIntf(), host.IP())

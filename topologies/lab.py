"""Build the Mininet lab from the neighbourhood graph.

Switches, links and points of attachment come from the same graph the
controller reads, so the lab and the controller's flows cannot disagree.
Switches run Open vSwitch's userspace datapath (the kernel has no OVS
module), speak OpenFlow 1.3 and connect to the remote controller in
``secure`` fail mode: without the controller nothing is forwarded.

Mininet must run in a process that has not been monkey-patched by eventlet,
i.e. never inside the controller; this module imports no Ryu app machinery.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
from dataclasses import dataclass

from mininet.link import Link
from mininet.net import Mininet
from mininet.node import OVSSwitch, RemoteController

from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.topology import MobileNode, Network, PoA, Topology

LOG = logging.getLogger("topologies.lab")


class LabSwitch(OVSSwitch):
    """An OVS switch one of whose interfaces can be moved to another switch.

    This is the link-layer handover: the MN keeps its interface (and its
    sockets); only the switch end of its veth changes switch and port.
    """

    def __init__(self, name, **params):
        params.setdefault("datapath", "user")
        params.setdefault("protocols", "OpenFlow13")
        params.setdefault("failMode", "secure")
        params.setdefault("reconnectms", 1000)
        super().__init__(name, **params)

    def give(self, intf, other: "LabSwitch", port: int) -> None:
        self.detach(intf)
        old_port = self.ports.pop(intf)
        del self.intfs[old_port]
        del self.nameToIntf[intf.name]
        intf.ifconfig("down")
        new_name = f"{other.name}-eth{port}"
        intf.cmd("ip link set", intf, "name", new_name)
        intf.name = new_name
        OVSSwitch.addIntf(other, intf, port=port)
        intf.node = other
        other.vsctl("add-port", other, intf, "--", "set", "Interface", intf,
                    f"ofport_request={port}")
        intf.ifconfig("up")


@dataclass(frozen=True)
class ExtraHost:
    """A host the topology file does not name, for experiments: a DHCP client
    (``address`` None: it starts unaddressed) or a squatter (a static address)."""

    name: str
    mac: str
    poa: str
    address: str | None = None


# Management links: each MN gets a veth to the root namespace, its other
# interface, over which it reaches the controller's REST API (the REST
# signalling channel).  MN number i has 172.31.i.2/30, the root side .1.
MANAGEMENT_PREFIX = "172.31"


class Lab:
    def __init__(self, topology: Topology, controller_ip: str = "127.0.0.1",
                 controller_port: int | None = None, *, extra_hosts=(),
                 management: bool = False):
        self.topology = topology
        self.graph = NeighbourhoodGraph(topology)
        self.controller_ip = controller_ip
        self.controller_port = controller_port or topology.controller.openflow_port
        self.extra_hosts = tuple(extra_hosts)
        self.management = management
        self.net: Mininet | None = None
        self.location: dict[str, PoA] = {}  # host id -> its PoA now

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
        names = {f"{end.switch}-eth{end.port}" for link in self.topology.links
                 for end in (link.a, link.b)}
        names |= {f"{p.switch}-eth{p.port}" for p in self.topology.poas.values()}
        names |= {self._management_names(i)[0] for i in range(len(self.topology.mobile_nodes))}
        for switch in self.graph.switch_ids():
            subprocess.run(["ovs-vsctl", "--timeout=5", "--if-exists", "del-br", switch],
                           stdin=subprocess.DEVNULL, capture_output=True)
        for name in sorted(names):
            if os.path.exists(f"/sys/class/net/{name}"):
                LOG.warning("removing %s, left over from an earlier run", name)
                subprocess.run(["ip", "link", "del", name], capture_output=True)

    def start(self, wait_s: float = 30.0) -> None:
        self._clear_leftovers()
        net = Mininet(topo=None, build=False, controller=None, autoSetMacs=False,
                      autoStaticArp=False, waitConnected=False)
        self.net = net
        net.addController("c0", controller=RemoteController, ip=self.controller_ip,
                          port=self.controller_port)
        for switch in self.graph.switch_ids():
            net.addSwitch(switch, cls=LabSwitch, dpid=f"{self.graph.dpid(switch):016x}")
        for link in sorted(self.topology.links, key=lambda l: (str(l.a), str(l.b))):
            net.addLink(link.a.switch, link.b.switch, port1=link.a.port, port2=link.b.port,
                        cls=Link)
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
        for host in net.hosts:
            self._tune(host)
        if self.management:
            self._add_management_links()
        self.wait_connected(wait_s)

    def _add_host(self, name: str, mac: str, address: str | None, poa: PoA) -> None:
        network = self.graph.network(poa.network)
        if address is None:  # a DHCP client: no address, no route until it gets a lease
            self.net.addHost(name, ip=None, mac=mac)
        else:
            self.net.addHost(name, ip=self._ip_with_length(address, network), mac=mac,
                             defaultRoute=f"via {network.gateway}")
        self.net.addLink(name, poa.switch, port2=poa.port, cls=Link)
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
    def _tune(host) -> None:
        for intf in host.intfList():
            # The userspace datapath does not complete TCP checksums that a
            # veth left to offload: without this, ping works and TCP stalls.
            host.cmd("ethtool -K", intf, "tx off >/dev/null 2>&1")
            # Stay quiet on IPv6: the lab routes IPv4 only.
            host.cmd(f"sysctl -qw net.ipv6.conf.{intf}.disable_ipv6=1")

    def wait_connected(self, timeout_s: float) -> None:
        deadline = time.monotonic() + timeout_s
        pending = list(self.net.switches)
        while pending:
            pending = [s for s in pending if not s.connected()]
            if not pending:
                return
            if time.monotonic() > deadline:
                raise TimeoutError("switches not connected to the controller: "
                                   + ", ".join(s.name for s in pending))
            time.sleep(0.2)

    def stop(self) -> None:
        if self.net is not None:
            net, self.net = self.net, None
            if self.management:
                self._remove_management_links()
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

    def move(self, mn_id: str, poa_id: str) -> str:
        """Move an MN's link to another PoA: the link-layer handover.

        Within its network the MN keeps its address.  Moving to another
        network it takes that network's lab address and gateway (the
        reactive path: no MPA).  Either way it announces itself with a
        gratuitous ARP, as a host does when its link comes up.  Returns the
        MN's address after the move.
        """
        mn = self.topology.mobile_nodes[mn_id]
        target = self.graph.poa(poa_id)
        current = self.location[mn_id]
        if target == current:
            return self.address(mn_id)
        occupant = [h for h, p in self.location.items() if p == target]
        if occupant:
            raise ValueError(f"PoA {poa_id} already holds {occupant[0]}")
        host = self.host(mn_id)
        host_intf = host.defaultIntf()
        old_switch, new_switch = self.net.get(current.switch), self.net.get(target.switch)
        switch_intf = host_intf.link.intf2 if host_intf.link.intf1 is host_intf else host_intf.link.intf1
        old_switch.give(switch_intf, new_switch, target.port)
        self.location[mn_id] = target
        network = self.graph.network(target.network)
        address = self.address(mn_id)
        if target.network != current.network:
            address = self.address_of(mn, network)
            host.cmd("ip addr flush dev", host_intf)
            host.cmd("ip neigh flush dev", host_intf)
            host.setIP(address, prefixLen=network.prefix.prefixlen, intf=host_intf)
            host.cmd("ip route replace default via", network.gateway, "dev", host_intf)
        self.announce(mn_id)
        return address

    def announce(self, name: str) -> None:
        host = self.host(name)
        if shutil.which("arping"):
            host.cmd("arping -q -U -c 1 -w 1 -I", host.defaultIntf(), host.IP())

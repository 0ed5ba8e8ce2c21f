"""The MN's world around the real controller core: the core where the MN's fakes
expect a service, the MN's raw sockets and carrier, its in-band sockets
passing the source check at its PoA, and mpa-mn handing over on the command
line."""

import ipaddress
import json

from mpa_mn.channels import InbandChannel, RestChannel
from mpa_mn.mobile_node import MobileNode
from mpa_mn.vif import Ip, Vifs
from mpa_protocol import messages
from mpa_sdn import packets
from mpa_sdn.config import load_topology
from mpa_sdn.controller import Controller
from mpa_sdn.openflow import Send
from mpa_sdn.store import MemoryStore
from mpa_sdn.tables import Table
from support.mn_fakes import (CREDENTIALS, MN_ADDRESS, Cli, FakeIp, Gateways, RestLayer,
                              ticking_sleep)
from support.paths import DEFAULT_TOPOLOGY
from support.aaa import FakeRadius, radius_servers
from support.service_rig import IDENTITY, MN_MAC, counter_entropy, reconcile_all

HOME = "10.255.0.1"          # mn1's home address in the default lab
NCOA = "10.2.1.100"          # the first address net-b1's CA gives
B1_ROUTER, B1_MAC = "10.2.1.1", "02:4a:bb:3a:62:79"
WALL_OFFSET = 1_700_000_000.0


class Core:
    """The real controller core where mn_fakes' fakes expect a service
    (``handle``, ``tick``) and a rig (``topology``, ``now``, ``service``)."""

    def __init__(self):
        self.topology = load_topology(DEFAULT_TOPOLOGY)
        self.now = 1000.0
        self.core = Controller(self.topology, store=MemoryStore(), wall_offset=WALL_OFFSET,
                               entropy=counter_entropy(b"core"),
                               radius_servers=radius_servers(self.topology))
        self.radius = FakeRadius(self.topology)
        self.service = self
        self.poa = None          # where the MN's link is (None: between PoAs)
        self.frames = []         # what the MN sent on its link with a raw socket
        self.sockets = []        # those raw sockets
        reconcile_all(self.core, self.now)
        for _ in range(10):      # DAD: every reserve probed, nobody answering
            self.run(self.core.mpa_tick(self.now))
            self.now += 0.1

    def handle(self, data, origin, now, expect=messages.REQUESTS):
        answers = self.core.mpa.handle(data, origin, now, expect)
        self.run(self.core.mobility.drain())
        return answers

    def tick(self, now):
        return self.core.mpa.tick(now)

    def pana(self, data, origin, port, now):
        return self.core.mpa.pana(data, origin, port, now)

    def radius_answer(self, data, source):
        return self.core.mpa.radius(data, source, self.now)

    def wall(self, now):
        return self.core.mpa.wall(now)

    def run(self, sends):
        """The switches: whatever comes, every barrier is answered at once."""
        for send in sends:
            if isinstance(send, Send) and send.confirm:
                self.run(self.core.flows_confirmed(send.dpid, send.confirm, self.now))

    def packet_in(self, table, frame):
        self.packet_in_at(self.poa, table, frame)

    def packet_in_at(self, poa_id, table, frame):
        poa = self.core.graph.poa(poa_id)
        self.run(self.core.packet_in(self.core.graph.dpid(poa.switch), poa.port, table, frame,
                                     self.now))

    def poa_of(self, interface):
        """Where a frame the MN sends out of ``interface`` enters (None: nowhere)."""
        return self.poa

    def attach(self, poa_id, address=MN_ADDRESS):
        """The MN's link at ``poa_id`` and its first packet there."""
        self.poa = poa_id
        self.sent_from(address)

    def sent_from(self, address):
        """The MN sends a packet from ``address``: the source check at its PoA
        punts it if the controller does not know it there yet (a packet from
        another network's address is the tunnel's, which takes it first)."""
        if self.poa is None:
            return
        poa = self.core.graph.poa(self.poa)
        network = self.core.graph.network(poa.network)
        host = self.core.hosts.get(address)
        if ipaddress.IPv4Address(address) not in network.prefix or (
                host is not None and (host.mac, host.poa) == (MN_MAC, poa)):
            return
        self.packet_in(Table.INGRESS, packets.udp_frame(
            src_mac=MN_MAC, dst_mac=network.gateway_mac, src_ip=address,
            dst_ip=str(network.gateway), src_port=40000, dst_port=9, payload=b"hello"))

    def raw_socket(self, interface):
        return RawSocket(self, interface)

    # what the controller holds for mn1
    def tunnel(self):
        tunnel = self.core.mobility.tunnels.get(NCOA)
        return tunnel and (tunnel.address, tunnel.poa.id)

    def binding(self):
        binding = self.core.mobility.bindings.get(HOME)
        return binding and binding.care_of

    def handover(self):
        return self.core.mobility.handovers.get(IDENTITY)


class RawSocket:
    """A packet socket on one of the MN's interfaces: a frame reaches the
    controller at that interface's PoA (ARP punted to it, as the ARP table
    does)."""

    def __init__(self, world, interface):
        self.world, self.interface, self.closed = world, interface, False
        world.sockets.append(self)

    def send(self, frame):
        self.world.frames.append((self.interface, frame))
        poa = self.world.poa_of(self.interface)
        if poa is not None:
            self.world.packet_in_at(poa, Table.ARP, frame)
        return len(frame)

    def close(self):
        self.closed = True


class Sysfs:
    """/sys/class/net/eth0's carrier, and the driver that switches the link: on
    the MN's ``down_at``-th sleep the carrier drops, ``up_after`` sleeps later it
    is back at ``to_poa``.  Each sleep moves every clock on (``ns``: the wall
    clock, in whole nanoseconds)."""

    def __init__(self, root, world, clock, to_poa="ap-b1-1", down_at=3, up_after=20):
        self.dir = root / "eth0"
        self.dir.mkdir()
        self.world, self.clock, self.to_poa = world, clock, to_poa
        self.down_at, self.up_after = down_at, up_after
        self.sleeps, self.changes, self.ns = 0, 7, int(WALL_OFFSET + world.now) * 10**9
        self.set(up=True)

    def set(self, up):
        (self.dir / "carrier_changes").write_text(f"{self.changes}\n")
        (self.dir / "carrier").write_text("1\n" if up else "0\n")

    def sleep(self, seconds):
        self.sleeps += 1
        self.clock.now += seconds
        self.world.now += seconds
        self.ns += round(seconds * 1e9)
        if self.down_at is None:
            return
        if self.sleeps == self.down_at:
            self.changes += 1
            self.set(up=False)
            self.world.poa = None
        elif self.sleeps == self.down_at + self.up_after:
            self.changes += 1
            self.set(up=True)
            self.world.poa = self.to_poa


class OnTheLink:
    """The in-band socket factory: mn_fakes' gateways, with each datagram
    first passing the source check at the MN's PoA; ``used`` is the address
    each socket sent from."""

    def __init__(self, gateways, world):
        self.gateways, self.world, self.used = gateways, world, []
        self.clock = gateways.clock

    def __call__(self, local):
        self.used.append(local)
        sock = self.gateways(local)
        send = sock.sendto

        def sendto(data, address):
            self.world.sent_from(local)
            return send(data, address)
        sock.sendto = sendto
        return sock


def node(world, channel="rest", tamper=None, ip=None):
    gateways = Gateways(world)
    gateways.tamper = tamper
    sources = OnTheLink(gateways, world)

    def inband(source, gateway=None):
        return InbandChannel(source, gateway=gateway, socket_factory=sources,
                             clock=sources.clock, sleep=ticking_sleep(world, []))
    main = RestChannel("http://controller:8080", opener=RestLayer(world, tamper=tamper),
                       sleep=ticking_sleep(world, [])) if channel == "rest" else \
        inband(MN_ADDRESS, "10.1.1.1")
    # PANA through the same gateways, on sockets of its own (``sources.used``
    # lists the signalling channel's).
    mn = MobileNode(CREDENTIALS, MN_MAC, MN_ADDRESS, main, vifs=Vifs(Ip(ip or FakeIp())),
                    entropy=counter_entropy(b"mn"), wall=lambda: world.wall(world.now),
                    inband=inband, pana_socket=OnTheLink(gateways, world), clock=sources.clock)
    return mn, sources


class HandoverCli(Cli):
    """mpa-mn in the MN's host (eth0 with its address and its /32 home address),
    attached at ap-a1-1, with a link that a driver switches to ap-b1-1
    (``link``: how, a Sysfs)."""

    def __init__(self, world, tmp_path, credentials, channel="rest", link=Sysfs,
                 **link_script):
        super().__init__(world, tmp_path, credentials, channel)
        self.ip.links["eth0"]["addrs"].append((HOME, 32))
        (tmp_path / "sys").mkdir()
        self.link = link(tmp_path / "sys", world, self.world.clock, **link_script)
        self.system = {"raw_socket": world.raw_socket, "sysfs": str(tmp_path / "sys"),
                       "socket_factory": OnTheLink(self.world, world),
                       "sleep": self.link.sleep, "wall_ns": lambda: self.link.ns,
                       "perf_ns": lambda: self.link.ns}

    def events(self, *argv, options=()):
        """(exit status, the lines before the document, the document, stderr)."""
        rc, out, err = self(*argv, "--home", HOME, json_out=False,
                            options=["--json", *options])
        first, _, rest = out.partition("\n")
        if first.startswith('{"'):
            return rc, [json.loads(first)], json.loads(rest), err
        return rc, [], json.loads(out), err


ATTACH_BATCH = (
    f"addr replace {NCOA}/24 dev eth0\n"
    f"addr del {MN_ADDRESS}/24 dev eth0\n"
    f"route replace default via {B1_ROUTER} dev eth0\n"
    f"neigh replace {B1_ROUTER} lladdr {B1_MAC} dev eth0 nud permanent\n")


def bound_where_it_is(run):
    """The MN's first binding: home address -> its address in net-a1."""
    for argv in (["preauth", "net-a1"], ["bind", "net-a1", "--home", HOME]):
        rc, doc, err = run(*argv)
        assert rc == 0, err

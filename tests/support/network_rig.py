"""The core controller wired to a fake network of OpenFlow switches.

``Rig`` plays Ryu (it applies the core's messages to fake switches, answers
flow-stats requests and barriers, feeds punted packets back as packet-ins)
and the hosts (each answers ARP requests for its own address), so a test can
say "mn1 pings cn1" and look at where the packets went.

Barrier replies a batch asked to hear of (``Send.confirm``) are reported at
once, or, with ``hold_confirmations``, kept until the test releases them:
the switches already hold the new flows, and the core has not heard so.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field, fields

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from support.aaa import FakeRadius, radius_servers
from support.fakeoftable import (
    FakeNetwork, arp_packet, from_bytes, ipv4_packet, on_the_wire, to_bytes, udp_packet)
from mpa_sdn.controller import Controller, RadiusDatagram
from mpa_sdn.flow_templates import decoded
from mpa_sdn.openflow import is_delete

MAX_EVENTS = 500


@dataclass
class FakeHost:
    name: str
    mac: str
    ip: str
    switch: str
    port: int
    received: list = field(default_factory=list)


@dataclass
class Outcome:
    delivered: list = field(default_factory=list)   # (host name, pkt)
    punts: int = 0
    lost: list = field(default_factory=list)        # (switch, port, pkt) with no host there
    frames: list = field(default_factory=list)      # (switch, port, pkt): all that left at an edge
    punted_at: list = field(default_factory=list)   # (switch, in_port, table_id) of each punt
    hops: list = field(default_factory=list)        # (switch, next switch, pkt) over each link
    radius: list = field(default_factory=list)      # the RADIUS requests the core sent

    def to(self, host: str) -> list[dict]:
        return [p for h, p in self.delivered if h == host]

    def __iadd__(self, other: "Outcome") -> "Outcome":
        """What became of this and then of ``other``."""
        for name in (f.name for f in fields(self)):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        return self


class Rig:
    def __init__(self, topology, now: float = 1000.0, hold_confirmations: bool = False,
                 **core_options):
        # core_options: the Controller's keyword arguments (store, entropy,
        # wall_offset) for a core with its AA and CA.  Every domain's RADIUS
        # server is a FakeRadius, answering at once (``radius.down`` silences one).
        core_options.setdefault("radius_servers", radius_servers(topology))
        self.topology, self.core_options = topology, core_options
        self.radius = FakeRadius(topology)
        self.core = Controller(topology, **core_options)
        self.graph = self.core.graph
        self.net = FakeNetwork(self.graph)
        self.now = now
        self.hold_confirmations = hold_confirmations
        self.held: list[tuple[int, str]] = []   # (dpid, tag) of barrier replies not yet told
        self.sent: list[tuple[int, object]] = []  # (dpid, message): all the core sent
        self.hosts: dict[str, FakeHost] = {}
        for cn in topology.correspondents.values():
            poa = self.graph.poa(cn.poa)
            self.add_host(cn.id, cn.mac, str(cn.address), poa.id)

    # -- hosts ------------------------------------------------------------

    def add_host(self, name, mac, ip, poa_id) -> FakeHost:
        poa = self.graph.poa(poa_id)
        host = FakeHost(name, mac, ip, poa.switch, poa.port)
        self.hosts[name] = host
        return host

    def host_at(self, switch, port) -> FakeHost | None:
        for host in self.hosts.values():
            if (host.switch, host.port) == (switch, port):
                return host
        return None

    def gateway(self, host: FakeHost):
        return self.graph.network_of_address(host.ip)

    def move(self, name, poa_id, ip=None, port_down=True) -> Outcome:
        """Link-layer move: the old port goes down (unless ``port_down`` is
        False: an access point's port, which stays up when a station leaves),
        the host appears elsewhere."""
        host = self.hosts[name]
        old_dpid = self.graph.dpid(host.switch)
        outcome = Outcome() if not port_down else self.run(
            self.core.port_status(old_dpid, host.port, True, self.now))
        poa = self.graph.poa(poa_id)
        host.switch, host.port = poa.switch, poa.port
        if ip is not None:
            host.ip = ip
        return outcome

    def port_up(self, poa_id) -> Outcome:
        poa = self.graph.poa(poa_id)
        return self.run(self.core.port_status(self.graph.dpid(poa.switch), poa.port, False,
                                              self.now))

    # -- driving ----------------------------------------------------------

    def connect_all(self) -> None:
        for switch in self.graph.switch_ids():
            if self.graph.dpid(switch) >= 0:   # not another domain's stand-in
                self.connect(switch)

    def connect(self, switch: str) -> None:
        self.run(self.core.switch_connected(self.graph.dpid(switch), self.now, "fake"))

    def restart(self, **overrides) -> None:
        """The controller restarted: a new core (the same options, ``overrides``
        replacing some) that every switch, still holding its flows, connects to."""
        self.core = Controller(self.topology, **{**self.core_options, **overrides})
        self.graph = self.core.graph
        self.held = []
        self.connect_all()

    def release_confirmations(self, count: int | None = None) -> Outcome:
        """Tell the core of the oldest ``count`` held barrier replies (all by
        default), and run what it sends back."""
        count = len(self.held) if count is None else count
        released, self.held = self.held[:count], self.held[count:]
        outcome = Outcome()
        for dpid, tag in released:
            self.run(self.core.flows_confirmed(dpid, tag, self.now), outcome)
        return outcome

    def ping(self, src: str, dst_ip: str, seq: int = 1, src_ip: str | None = None) -> Outcome:
        """An echo request from a host (from ``src_ip`` instead of its address)."""
        host = self.hosts[src]
        gw = self.gateway(host)
        pkt = ipv4_packet(host.mac, gw.gateway_mac, src_ip or host.ip, dst_ip, seq=seq)
        return self.inject(host.switch, host.port, pkt)

    def arp_request(self, src: str, target_ip: str, probe: bool = False) -> Outcome:
        host = self.hosts[src]
        pkt = arp_packet(1, host.mac, "0.0.0.0" if probe else host.ip, target_ip)
        return self.inject(host.switch, host.port, pkt)

    def udp(self, src: str, dst_ip: str, dst_port: int, payload: bytes,
            src_port: int = 40000, src_ip: str | None = None) -> Outcome:
        """A datagram from a host, sent to its gateway's MAC as any routed packet."""
        host = self.hosts[src]
        gw = self.gateway(host)
        pkt = udp_packet(host.mac, gw.gateway_mac, src_ip or host.ip, dst_ip, src_port,
                         dst_port, payload)
        return self.inject(host.switch, host.port, pkt)

    def inject_frame(self, switch, port, data: bytes) -> Outcome:
        """A frame given as bytes (e.g. built by mpa_sdn.dhcp), entering at a port."""
        return self.inject(switch, port, from_bytes(data))

    def inject(self, switch, port, pkt, table=0) -> Outcome:
        outcome = Outcome()
        self._drain(collections.deque([("trace", switch, port, pkt, table)]), outcome)
        return outcome

    def run(self, sends, outcome: Outcome | None = None) -> Outcome:
        outcome = outcome or Outcome()
        self._drain(collections.deque([("sends", sends)]), outcome)
        return outcome

    def _drain(self, work: collections.deque, outcome: Outcome) -> None:
        events = 0
        while work:
            events += 1
            assert events < MAX_EVENTS, "the controller and the network keep talking"
            item = work.popleft()
            if item[0] == "sends":
                for send in item[1]:
                    self._apply(send, work, outcome)
            elif item[0] == "caught up":
                for send in self.core.packet_ins_handled(self.now):
                    self._apply(send, work, outcome)
            elif item[0] == "deliver":
                self._deliver(*item[1:], work, outcome)
            else:
                _, switch, port, pkt, table = item
                trace = self.net.send(switch, port, pkt, table)
                outcome.hops += trace.hops
                for sw, in_port, table_id, punted in trace.punts:
                    outcome.punts += 1
                    outcome.punted_at.append((sw, in_port, table_id))
                    work.append(("sends", self.core.packet_in(
                        self.graph.dpid(sw), in_port, table_id, to_bytes(punted), self.now)))
                if trace.punts:
                    # As the shell does once its packet-in queue is empty.
                    work.append(("caught up",))
                for d in trace.deliveries:
                    self._deliver(d.switch, d.port, d.pkt, work, outcome)

    def _apply(self, send, work, outcome) -> None:
        if isinstance(send, RadiusDatagram):
            # The shell's RADIUS socket: the domain's server answers, the core hears it.
            outcome.radius.append(send)
            answer = self.radius.handle(send)
            if answer is not None:
                work.append(("sends", self.core.radius(answer, (send.address, send.port),
                                                       self.now)))
            return
        switch = self.net.by_dpid[send.dpid]
        # The shell orders deletes first; the rig does the same.
        messages = sorted(send.messages, key=lambda m: 0 if is_delete(m) else 1)
        for msg in messages:
            self.sent.append((send.dpid, msg))
            switch.apply(msg)
            msg = decoded(msg)   # as the switch read it
            if isinstance(msg, parser.OFPFlowStatsRequest):
                work.append(("sends", self.core.flow_stats(send.dpid, switch.flow_stats(), False)))
            elif isinstance(msg, parser.OFPPacketOut):
                # The switch applies the packet-out's actions, as it would.
                outputs, punts = [], []
                switch._apply_actions(msg.actions, from_bytes(msg.data), msg.in_port, None,
                                      outputs, punts)
                assert not punts, "a packet-out back to the controller"
                for port, pkt in outputs:
                    if port == ofp.OFPP_TABLE:
                        work.append(("trace", switch.name, msg.in_port, pkt, 0))
                    elif (switch.name, port) in self.net.peer:
                        peer, peer_port = self.net.peer[(switch.name, port)]
                        outcome.hops.append((switch.name, peer, on_the_wire(pkt)))
                        work.append(("trace", peer, peer_port, pkt, 0))
                    else:
                        work.append(("deliver", switch.name, port, pkt))
        if send.confirm and self.hold_confirmations:
            self.held.append((send.dpid, send.confirm))
        elif send.confirm:
            # What the core sends on hearing it (deferred deletes, a flush) goes out too.
            work.append(("sends", self.core.flows_confirmed(send.dpid, send.confirm, self.now)))

    def _deliver(self, switch, port, pkt, work, outcome) -> None:
        outcome.frames.append((switch, port, pkt))
        host = self.host_at(switch, port)
        if host is None:
            outcome.lost.append((switch, port, pkt))
            return
        host.received.append(pkt)
        outcome.delivered.append((host.name, pkt))
        if pkt.get("arp_op") == 1 and pkt["arp_tpa"] == host.ip:
            reply = arp_packet(2, host.mac, host.ip, pkt["arp_spa"], tha=pkt["arp_sha"])
            work.append(("trace", host.switch, host.port, reply, 0))

"""A handover's packet buffer, kept in the controller (RFC 6252 §6.3 step 4,
§7.6.1): the nAR's punts (the buffering module at the next access router),
the bounded buffer, and what is delivered from it to the MN (step 6).

OVS never buffers packets in the switch (LAB.md), so a buffering flow punts
whole frames and the controller keeps them until the MN can take them.  One
buffer per handover, bounded three ways (``mpa.buffer_packets``,
``buffer_bytes``, ``buffer_time_s``).

Overflow rule: the newest packet is dropped (tail drop).  The MN then loses
a packet at the end of its outage, never one in the middle of what it gets,
so nothing it receives is out of order, and TCP sees one loss it recovers
from as usual.  Packets older than ``buffer_time_s`` are dropped when the
buffer is flushed or ticked: a packet that waited that long is of no use to
real-time traffic, and a bounded age bounds the delay the buffer adds.

Counters (the controller's, ``buffer_*``): buffered, flushed, and dropped by
reason (full_packets, full_bytes, expired, no_destination).
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field

from ryu.ofproto import ether

from mpa_sdn import openflow as of
from mpa_sdn.domain_view import is_foreign_switch
from mpa_sdn.forwarding import Host, last_hop_actions
from mpa_sdn.mobility import tunnels as tn
from mpa_sdn.mobility.flowsync import RECEIVE, WITHDRAW
from mpa_sdn.mobility.records import (BICAST, BUFFERING, COPY, FLUSHING, SWITCHING,
                                      Handover)
from mpa_sdn.openflow import Send
from mpa_sdn.tables import PRIO_BUFFER, Feature, Table, address_cookie


@dataclass
class Buffered:
    src: str | None       # its IPv4 source
    address: str          # the destination it was punted for
    data: bytes
    at: float             # when the controller got it (monotonic)


@dataclass
class PacketBuffer:
    max_packets: int
    max_bytes: int
    max_age_s: float
    counters: collections.Counter
    queue: collections.deque = field(default_factory=collections.deque)
    bytes: int = 0
    buffered: int = 0     # in this buffer's life
    flushed: int = 0
    dropped: int = 0
    max_delay_s: float = 0.0
    total_delay_s: float = 0.0

    def __len__(self) -> int:
        return len(self.queue)

    def add(self, src: str | None, address: str, data: bytes, now: float) -> bool:
        if len(self.queue) >= self.max_packets:
            return self._drop("full_packets")
        if self.bytes + len(data) > self.max_bytes:
            return self._drop("full_bytes")
        self.queue.append(Buffered(src, address, bytes(data), now))
        self.bytes += len(data)
        self.buffered += 1
        self.counters["buffer_buffered"] += 1
        return True

    def prepend(self, items: list[tuple]) -> None:
        """Older packets (src, address, data, at) in front of the queue, in
        their order; outside the bounds, which their source kept."""
        for src, address, data, at in reversed(items):
            self.queue.appendleft(Buffered(src, address, bytes(data), at))
            self.bytes += len(data)
        self.buffered += len(items)
        self.counters["buffer_buffered"] += len(items)

    def _drop(self, reason: str, n: int = 1) -> bool:
        self.dropped += n
        self.counters[f"buffer_dropped_{reason}"] += n
        return False

    def expire(self, now: float) -> None:
        while self.queue and now - self.queue[0].at > self.max_age_s:
            self.bytes -= len(self.queue.popleft().data)
            self._drop("expired")

    def take(self, n: int, now: float) -> list[Buffered]:
        """The oldest ``n`` packets, in the order they came."""
        self.expire(now)
        out = []
        while self.queue and len(out) < n:
            item = self.queue.popleft()
            self.bytes -= len(item.data)
            delay = now - item.at
            self.max_delay_s = max(self.max_delay_s, delay)
            self.total_delay_s += delay
            self.flushed += 1
            out.append(item)
        self.counters["buffer_flushed"] += len(out)
        return out

    def view(self) -> dict:
        return {"packets": len(self.queue), "bytes": self.bytes, "buffered": self.buffered,
                "flushed": self.flushed, "dropped": self.dropped,
                "max_delay_ms": round(self.max_delay_s * 1000, 3),
                "mean_delay_ms": round(self.total_delay_s / self.flushed * 1000, 3)
                if self.flushed else None}


def buffer_flow(address: str, punt: bool = True):
    """The nAR's flow over ``address`` while a handover buffers it: a punt;
    or (a bicast's target leg before the MN arrives) a drop, rather than
    the tunnel, whose end already gets the old leg."""
    return of.flow_add(Table.ROUTE, PRIO_BUFFER,
                       of.match(eth_type=ether.ETH_TYPE_IP, ipv4_dst=address),
                       of.apply(of.to_controller()) if punt else [],
                       address_cookie(Feature.BUFFER, address))


def buffer_points(graph, network_id: str) -> list[str]:
    """Where a handover to ``network_id`` buffers: the network's AR; for
    another domain's network (a copy-and-forward whose standby care-of is
    there), this domain's border switches towards it, the last switches of
    ours its packets cross.  No switch of ours is nearer the MN, and the
    home domain still holds what the correspondents sent after the loss
    until the copies the MN missed have gone ahead of it."""
    router = graph.network(network_id).access_router
    if not is_foreign_switch(router):
        return [router]
    return sorted(graph.switch_graph.neighbors(router))


class BufferFlows:
    """The buffering punts at the nARs, for the make-before-break engine."""

    feature = Feature.BUFFER

    def __init__(self, graph, buffering: dict[str, Handover]):
        self.graph, self.buffering = graph, buffering

    def subjects(self):
        return self.buffering.keys()

    def flows(self, address: str) -> dict[str, list]:
        handover = self.buffering.get(address)
        if handover is None or handover.phase not in BUFFERING:
            return {}
        flow = buffer_flow(address, punt=handover.mode != BICAST)
        return {point: [flow] for point in buffer_points(self.graph, handover.network)}

    def stage(self, mod) -> str:
        # A buffering flow that drops (buffer_flow(punt=False)) goes last:
        # until the edge sends the other leg, the tunnel is the MN's only way.
        return WITHDRAW if not mod.instructions else RECEIVE


class Buffering:
    """Punted packets into a handover's buffer, and out of it to the MN (a
    part of :class:`~mpa_sdn.mobility.Mobility`, on its state)."""

    def _new_buffer(self, network: str) -> PacketBuffer:
        """The buffer of a handover to ``network``, with that network's bounds."""
        p = self.policy_of(network)
        return PacketBuffer(p.buffer_packets, p.buffer_bytes, p.buffer_time_s, self.counters)

    def takes(self, address: str) -> Handover | None:
        return self._buffering.get(address)

    def packet_in(self, handover: Handover, frame, data: bytes, now: float) -> None:
        """A punted packet for an address being buffered: queued, or (once
        the buffer is empty) delivered at once."""
        if self._abroad(handover) and self._from_our_gateway(frame.ip_src):
            # The controller's own answer to the MN abroad (a link-lost's),
            # routed into the border's buffering punt: an answer is never
            # held behind the traffic it is about.
            self.counters["buffer_passed_answer"] += 1
            self._deliver(handover, frame.ip_src, frame.ip_dst, data, now)
            return
        handover.last_punt = now
        self._answer_check(handover, now)
        early = handover.phase == SWITCHING and handover.mode != COPY and not handover.buffer
        if handover.phase in BUFFERING and not handover.relaying and not early:
            handover.buffer.add(frame.ip_src, frame.ip_dst, data, now)
            return
        if handover.phase in (SWITCHING, FLUSHING):
            # Nothing older is held (the buffer is empty): it goes at once.
            self.counters["buffer_relayed"] += 1
            handover.relayed += 1
            self._current.relay_due(handover)
        else:
            self.counters["buffer_late_delivered"] += 1
            handover.late_delivered(now)
        self._deliver(handover, frame.ip_src, frame.ip_dst, data, now)

    def _from_our_gateway(self, address: str | None) -> bool:
        network = self.graph.network_of_address(address) if address else None
        return (network is not None and str(network.gateway) == address
                and self.graph.topology.serves(network))

    def _abroad(self, handover: Handover) -> bool:
        """Whether the handover is to another domain's network (its buffer is
        at our border, see :func:`buffer_points`)."""
        return is_foreign_switch(self.graph.network(handover.network).access_router)

    def caught_up(self, now: float) -> None:
        """The controller has handled every packet-in it has been given: a
        relaying handover's punts go now, right behind the packet it relayed
        last."""
        for handover in self._current.take_relay_due():
            if handover.phase == FLUSHING and handover.relaying:
                self._drain(handover, now)

    def _back_into_tunnel(self, handover: Handover, data: bytes) -> bool:
        """A switch-back with the MN in another domain (at no PoA of ours):
        the buffer goes back into its MN-terminated tunnel, which still
        reaches it where it stayed.  Whether it went."""
        tunnel = self.tunnels.get(handover.address)
        if tunnel is None or tunnel.encapsulation != tn.VXLAN:
            return False
        nar = self.graph.dpid(self.graph.network(tunnel.network).access_router)
        if not self.connected(nar):
            return False
        self._flowsync.out.append(Send(nar, [of.packet_out(data,
                                                           tn.vxlan_into(self.graph, tunnel))]))
        self.counters["buffer_returned_to_tunnel"] += 1
        return True

    def _deliver_batch(self, handover: Handover, now: float) -> None:
        """The oldest ``flush_batch`` buffered packets to the MN, and when the
        next batch may go."""
        s = self.settings
        for item in handover.buffer.take(s.flush_batch, now):
            self._deliver(handover, item.src, item.address, item.data, now)
        handover.next_flush = now + s.flush_batch / s.flush_rate_pps

    def _deliver_abroad(self, handover: Handover, dst: str, data: bytes) -> bool:
        """A copy-and-forward whose standby care-of is in another domain:
        out of a border switch of ours towards it, addressed to the care-of
        (a copy was made as delivered, to the home address), for that
        domain to route to the MN, which restores its home address itself.
        Whether it went."""
        if not self._abroad(handover):
            return False
        router = self.graph.network(handover.network).access_router
        for point in buffer_points(self.graph, handover.network):
            if self.connected(self.graph.dpid(point)):
                readdress = [] if dst == handover.address else [
                    of.set_field(ipv4_dst=handover.address)]
                out = of.output(self.graph.port_to(point, router))
                self._flowsync.out.append(Send(self.graph.dpid(point),
                                               [of.packet_out(data, readdress + [out])]))
                self.counters["buffer_delivered_abroad"] += 1
                return True
        return False

    def _deliver(self, handover: Handover, src: str | None, dst: str, data: bytes,
                 now: float) -> None:
        if handover.first_delivered_at is None:
            handover.first_delivered_at = now
        poa = handover.flush_to
        if poa is None and (self._back_into_tunnel(handover, data)
                            or self._deliver_abroad(handover, dst, data)):
            return
        if poa is None or not self.connected(self.graph.dpid(poa.switch)):
            self.counters["buffer_dropped_no_destination"] += 1
            return
        binding = self.bindings.get(handover.home) if handover.home else None
        rewrite = self.protocol.deliver_actions(binding, src, dst, frozenset(
            handover.buffered_addresses())) if binding and src else []
        host = Host(dst, handover.mac, poa)
        actions = rewrite + last_hop_actions(host, self.graph.network(poa.network))
        self._flowsync.out.append(Send(self.graph.dpid(poa.switch), [of.packet_out(data, actions)]))

"""Address resolution at the gateway: packets for an address no host is
learned at are held while the gateway asks, by ARP out of every PoA of the
address's network, who has it; they go to the host once it is learned.

Every bound is the topology's (``pending_addresses``, ``pending_per_address``,
``pending_lifetime_s``, ``arp_resolve_interval_s``) and counted: a packet that
finds its address's queue full, or no room for another address, is dropped
(``pending_dropped_full``), one held longer than its lifetime is dropped
(``pending_dropped_expired``).
"""

from __future__ import annotations

import collections

from mpa_sdn import openflow as of
from mpa_sdn import packets
from mpa_sdn.openflow import Send


def out_of_poas(graph, switches, outs: list) -> list[Send]:
    """Frames (PoA, bytes) sent out of their PoAs, one batch per connected switch."""
    by_switch: dict[int, list] = {}
    for poa, frame in outs:
        by_switch.setdefault(graph.dpid(poa.switch), []).append(
            of.packet_out(frame, [of.output(poa.port)]))
    return [Send(dpid, msgs) for dpid, msgs in sorted(by_switch.items()) if dpid in switches]


class Resolution:
    """The held packets (``pending``: address -> (expires, frame)) and when
    each address was last asked for."""

    def __init__(self, graph, settings, counters, switches):
        self.graph, self.settings, self.counters, self.switches = (graph, settings, counters,
                                                                    switches)
        self.pending: dict[str, collections.deque] = {}
        self._arp_sent: dict[str, float] = {}

    def hold(self, address: str, data: bytes, now: float) -> list[Send]:
        """Hold a packet for ``address`` (an address of one of our networks)
        and ask who has it."""
        queue = self.pending.get(address)
        if (queue is None and self.settings.pending_per_address
                and len(self.pending) < self.settings.pending_addresses):
            queue = self.pending[address] = collections.deque()
        if queue is None or len(queue) >= self.settings.pending_per_address:
            self.counters["pending_dropped_full"] += 1
        else:
            queue.append((now + self.settings.pending_lifetime_s, data))
            self.counters["pending_held"] += 1
        return self.ask(address, now)

    def ask(self, address: str, now: float) -> list[Send]:
        """Ask the address's network, from its gateway, who has it."""
        last = self._arp_sent.get(address)
        if last is not None and now - last < self.settings.arp_resolve_interval_s:
            self.counters["arp_resolve_suppressed"] += 1
            return []
        network = self.graph.network_of_address(address)
        if network is None:
            return []
        self._arp_sent[address] = now
        self.counters["arp_resolve_sent"] += 1
        request = packets.arp_request(sender_mac=network.gateway_mac,
                                      sender_ip=str(network.gateway), target_ip=address)
        return out_of_poas(self.graph, self.switches,
                           [(poa, request) for poa in network.poas])

    def release(self, address: str, now: float) -> list[bytes]:
        """The packets held for ``address`` that are still fresh, now that it is learned."""
        queue = self.pending.pop(address, None)
        if not queue:
            return []
        fresh = [data for expires, data in queue if expires >= now]
        self.counters["pending_dropped_expired"] += len(queue) - len(fresh)
        return fresh

    def tick(self, now: float) -> None:
        """Expire held packets and old resolution records."""
        for address in [a for a, q in self.pending.items() if q and q[-1][0] < now]:
            self.counters["pending_dropped_expired"] += len(self.pending.pop(address))
        horizon = now - max(self.settings.arp_resolve_interval_s, self.settings.pending_lifetime_s)
        for address in [a for a, t in self._arp_sent.items() if t < horizon]:
            del self._arp_sent[address]
        for address in [a for a, q in self.pending.items() if not q]:
            del self.pending[address]

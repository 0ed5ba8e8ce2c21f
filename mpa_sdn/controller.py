"""The controller's core: state in, OpenFlow messages out.

``Controller`` receives events from the Ryu shell (a switch connected, a
flow-stats reply, a packet-in, a port status, a flow removed, a timer tick),
each with ``now``, and returns :class:`Send` batches for the shell to put on
the wire.  It never sends, sleeps or reads the clock itself, so every
decision can be replayed in a unit test against fake switches.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
from dataclasses import dataclass, field

from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_sdn import forwarding, packets, reconcile
from mpa_sdn import openflow as of
from mpa_sdn.forwarding import Host
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import EXACT_MASK, FEATURE_SHIFT, Feature, Table, host_cookie, is_ours
from mpa_sdn.topology import PoA, Topology

LOG = logging.getLogger("mpa_sdn.controller")

# Packets to an address being resolved wait for its ARP reply, within bounds.
PENDING_PER_ADDRESS = 8
PENDING_ADDRESSES = 1024
PENDING_LIFETIME_S = 2.0


@dataclass
class Send:
    """Messages for one switch; ``barrier`` asks the shell to confirm them."""

    dpid: int
    messages: list
    barrier: bool = False


@dataclass
class SwitchState:
    dpid: int
    switch: str
    connected_at: float
    address: str | None = None
    stats: list = field(default_factory=list)
    reconciling: bool = False          # flows sent, barrier not yet answered
    reconciled_at: float | None = None


class Controller:
    def __init__(self, topology: Topology, counters: collections.Counter | None = None):
        self.topology = topology
        self.graph = NeighbourhoodGraph(topology)
        self.settings = topology.controller
        self.counters = counters if counters is not None else collections.Counter()
        self.switches: dict[int, SwitchState] = {}
        self.hosts: dict[str, Host] = {h.address: h for h in forwarding.correspondent_hosts(self.graph)}
        self._poa_at = {(self.graph.dpid(p.switch), p.port): p for p in topology.poas.values()}
        self._gateways = {str(n.gateway): n for n in topology.networks.values()}
        self._arp_sent: dict[str, float] = {}
        self._pending: dict[str, collections.deque] = {}

    # -- switches ---------------------------------------------------------

    def switch_connected(self, dpid: int, now: float, address: str | None = None) -> list[Send]:
        switch = self.graph.switch_of_dpid(dpid)
        if switch is None:
            self.counters["switch_unknown"] += 1
            LOG.warning("dpid=%016x connected but is not in the topology; leaving it alone", dpid)
            return []
        self.counters["switch_connected"] += 1
        self.switches[dpid] = SwitchState(dpid, switch, now, address)
        LOG.info("dpid=%016x switch=%s connected from %s; reading its flows", dpid, switch, address)
        return [Send(dpid, [of.flow_stats_request()])]

    def switch_disconnected(self, dpid: int, now: float) -> None:
        state = self.switches.pop(dpid, None)
        if state is not None:
            self.counters["switch_disconnected"] += 1
            LOG.info("dpid=%016x switch=%s disconnected", dpid, state.switch)

    def flow_stats(self, dpid: int, entries: list, more: bool) -> list[Send]:
        """A part of a flow-stats reply; the last part triggers reconciliation."""
        state = self.switches.get(dpid)
        if state is None:
            return []
        state.stats.extend(entries)
        if more:
            return []
        existing, state.stats = state.stats, []
        result = reconcile.plan(existing, self.desired_flows(dpid))
        self.counters["reconcile_deleted"] += len(result.deletes)
        self.counters["reconcile_added"] += len(result.adds)
        self.counters["reconcile_kept"] += result.kept
        state.reconciling = True
        LOG.info("dpid=%016x switch=%s reconcile: %d deleted, %d added, %d kept",
                 dpid, state.switch, len(result.deletes), len(result.adds), result.kept)
        return [Send(dpid, result.messages, barrier=True)]

    def flows_confirmed(self, dpid: int, now: float) -> None:
        state = self.switches.get(dpid)
        if state is not None and state.reconciling:
            state.reconciling, state.reconciled_at = False, now

    def desired_flows(self, dpid: int) -> list:
        switch = self.graph.switch_of_dpid(dpid)
        if switch is None:
            return []
        flows = forwarding.static_flows(self.graph, switch)
        for address in sorted(self.hosts, key=lambda a: ipaddress.IPv4Address(a)):
            flows += forwarding.host_flows(self.graph, switch, self.hosts[address],
                                           self.settings.host_idle_timeout_s)
        return flows

    # -- hosts ------------------------------------------------------------

    def _learn(self, mac: str, address: str, poa: PoA, now: float) -> list[Send]:
        network = self.graph.network(poa.network)
        ip = ipaddress.IPv4Address(address)
        if (ip not in network.prefix or ip == network.gateway
                or ip in (network.prefix.network_address, network.prefix.broadcast_address)):
            self.counters["learn_rejected_address"] += 1
            LOG.warning("host mac=%s ip=%s at poa=%s: not a host address of %s; not learned",
                        mac, address, poa.id, network.id)
            return []
        old = self.hosts.get(address)
        if old is not None and old.static:
            if (old.mac, old.poa) != (mac, poa):
                self.counters["learn_rejected_static"] += 1
                LOG.warning("host mac=%s claims %s of correspondent at %s; ignored",
                            mac, address, old.poa.id)
            return []
        new = Host(address, mac, poa)
        sends = []
        if old == new:
            # Known, yet its source check missed: the switch lost the flow
            # (it idled out as the packet came).  Put it back where it belongs.
            self.counters["learn_refreshed"] += 1
            dpid = self.graph.dpid(poa.switch)
            if dpid in self.switches:
                sends.append(Send(dpid, forwarding.host_flows(
                    self.graph, poa.switch, new, self.settings.host_idle_timeout_s), barrier=True))
            return sends
        if old is None and len(self.hosts) >= self.settings.max_hosts:
            self.counters["learn_rejected_full"] += 1
            LOG.warning("host table full (%d); mac=%s ip=%s not learned", self.settings.max_hosts,
                        mac, address)
            return []
        self.hosts[address] = new
        if old is None:
            self.counters["host_learned"] += 1
            LOG.info("host mac=%s ip=%s learned at poa=%s", mac, address, poa.id)
        else:
            self.counters["host_moved" if old.mac == mac else "host_address_taken"] += 1
            LOG.info("host mac=%s ip=%s now at poa=%s (was mac=%s at poa=%s)",
                     mac, address, poa.id, old.mac, old.poa.id)
        # Make before break: new routes overwrite the old ones in place, then
        # the old source check goes.
        for dpid, state in sorted(self.switches.items()):
            msgs = forwarding.host_flows(self.graph, state.switch, new,
                                         self.settings.host_idle_timeout_s)
            if old is not None and state.switch == old.poa.switch:
                msgs.append(forwarding.source_check_delete(old))
            sends.append(Send(dpid, msgs, barrier=True))
        sends += self._release_pending(address, now)
        return sends

    def forget_host(self, address: str, reason: str) -> list[Send]:
        host = self.hosts.get(address)
        if host is None or host.static:
            return []
        del self.hosts[address]
        self.counters[f"host_forgotten_{reason}"] += 1
        LOG.info("host mac=%s ip=%s at poa=%s forgotten (%s)", host.mac, address, host.poa.id, reason)
        return [Send(dpid, [of.flow_delete_cookie(host_cookie(address), EXACT_MASK)])
                for dpid in sorted(self.switches)]

    def port_status(self, dpid: int, port: int, gone: bool, now: float) -> list[Send]:
        """A port was deleted or lost its link: hosts learned there have left."""
        poa = self._poa_at.get((dpid, port))
        if poa is None or not gone:
            return []
        sends = []
        for address in sorted(a for a, h in self.hosts.items() if h.poa == poa):
            sends += self.forget_host(address, "link_down")
        return sends

    def flow_removed(self, dpid: int, cookie: int, reason: int, now: float) -> list[Send]:
        if reason != ofp.OFPRR_IDLE_TIMEOUT or not is_ours(cookie):
            return []
        if (cookie >> FEATURE_SHIFT) & 0xFF != Feature.HOST:
            return []
        address = str(ipaddress.IPv4Address(cookie & ((1 << 32) - 1)))
        host = self.hosts.get(address)
        if host is None or self.graph.dpid(host.poa.switch) != dpid:
            return []
        return self.forget_host(address, "idle")

    # -- packet-ins -------------------------------------------------------

    def packet_in(self, dpid: int, in_port: int, table_id: int, data: bytes,
                  now: float) -> list[Send]:
        self.counters["packet_in"] += 1
        if dpid not in self.switches:
            self.counters["packet_in_unknown_switch"] += 1
            return []
        frame = packets.decode(data)
        if frame is None:
            self.counters["packet_in_malformed"] += 1
            return []
        if table_id == Table.INGRESS and frame.ip_src is not None:
            return self._unknown_source(dpid, in_port, frame, data, now)
        if table_id == Table.ARP and frame.arp is not None:
            return self._arp(dpid, in_port, frame, now)
        if table_id == Table.ROUTE and frame.ip_dst is not None:
            if frame.ip_dst in self._gateways:
                return self._to_gateway(dpid, frame)
            return self._unresolved(dpid, frame, data, now)
        self.counters["packet_in_unexpected"] += 1
        return []

    def _unknown_source(self, dpid, in_port, frame, data, now) -> list[Send]:
        poa = self._poa_at.get((dpid, in_port))
        if poa is None:
            self.counters["packet_in_unexpected"] += 1
            return []
        sends = self._learn(frame.eth_src, frame.ip_src, poa, now)
        if frame.ip_src in self.hosts and self.hosts[frame.ip_src].poa == poa:
            # The packet that taught us the host goes on its way too.
            sends.append(Send(dpid, [self._reinject(data)]))
        return sends

    @staticmethod
    def _reinject(data: bytes):
        return of.packet_out(data, [of.output(ofp.OFPP_TABLE)])

    def _arp(self, dpid, in_port, frame, now) -> list[Send]:
        poa = self._poa_at.get((dpid, in_port))
        a = frame.arp
        if poa is None or a.src_mac != frame.eth_src:
            self.counters["arp_rejected"] += 1
            return []
        network = self.graph.network(poa.network)
        sends = []
        if a.src_ip == str(network.gateway):
            self.counters["arp_gateway_conflict"] += 1
            LOG.warning("mac=%s at poa=%s claims gateway %s", a.src_mac, poa.id, a.src_ip)
            return []
        if a.src_ip != packets.UNSPECIFIED:
            sends += self._learn(a.src_mac, a.src_ip, poa, now)
        if a.opcode != 1:
            return sends
        target = self.hosts.get(a.dst_ip)
        answer = a.dst_ip == str(network.gateway) or (
            target is not None and target.poa.network == network.id and target.mac != a.src_mac)
        if answer:
            # Local proxy ARP: every destination is reached through the gateway.
            self.counters["arp_proxy_reply"] += 1
            reply = packets.arp_reply(sender_mac=network.gateway_mac, sender_ip=a.dst_ip,
                                      target_mac=a.src_mac,
                                      target_ip=a.src_ip if a.src_ip != packets.UNSPECIFIED
                                      else a.dst_ip)
            sends.append(Send(dpid, [of.packet_out(reply, [of.output(in_port)])]))
        elif target is None and ipaddress.IPv4Address(a.dst_ip) in network.prefix:
            sends += self._resolve(a.dst_ip, now)
        return sends

    def _to_gateway(self, dpid, frame) -> list[Send]:
        network = self._gateways[frame.ip_dst]
        source = self.hosts.get(frame.ip_src)
        if frame.icmp_echo is None or source is None:
            self.counters["gateway_packet_ignored"] += 1
            return []
        self.counters["gateway_echo_reply"] += 1
        reply = packets.icmp_echo_reply(src_mac=network.gateway_mac, dst_mac=source.mac,
                                        src_ip=frame.ip_dst, dst_ip=frame.ip_src,
                                        echo=frame.icmp_echo)
        return [Send(dpid, [self._reinject(reply)])]

    def _unresolved(self, dpid, frame, data, now) -> list[Send]:
        if frame.ip_dst in self.hosts:
            # Raced with the host's routes being installed: route it now.
            return [Send(dpid, [self._reinject(data)])]
        if self.graph.network_of_address(frame.ip_dst) is None:
            self.counters["packet_in_unexpected"] += 1
            return []
        queue = self._pending.get(frame.ip_dst)
        if queue is None:
            if len(self._pending) >= PENDING_ADDRESSES:
                self.counters["pending_dropped_full"] += 1
                return self._resolve(frame.ip_dst, now)
            queue = self._pending[frame.ip_dst] = collections.deque()
        if len(queue) >= PENDING_PER_ADDRESS:
            self.counters["pending_dropped_full"] += 1
        else:
            queue.append((now + PENDING_LIFETIME_S, data))
            self.counters["pending_held"] += 1
        return self._resolve(frame.ip_dst, now)

    def _resolve(self, address: str, now: float) -> list[Send]:
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
        by_switch: dict[int, list] = {}
        for poa in network.poas:
            by_switch.setdefault(self.graph.dpid(poa.switch), []).append(
                of.packet_out(request, [of.output(poa.port)]))
        return [Send(dpid, msgs) for dpid, msgs in sorted(by_switch.items()) if dpid in self.switches]

    def _release_pending(self, address: str, now: float) -> list[Send]:
        queue = self._pending.pop(address, None)
        if not queue:
            return []
        host = self.hosts[address]
        dpid = self.graph.dpid(host.poa.switch)
        if dpid not in self.switches:
            self.counters["pending_dropped_expired"] += len(queue)
            return []
        fresh = [data for expires, data in queue if expires >= now]
        self.counters["pending_dropped_expired"] += len(queue) - len(fresh)
        self.counters["pending_released"] += len(fresh)
        return [Send(dpid, [self._reinject(data) for data in fresh])] if fresh else []

    def tick(self, now: float) -> None:
        """Expire held packets and old resolution records."""
        for address in [a for a, q in self._pending.items() if q and q[-1][0] < now]:
            self.counters["pending_dropped_expired"] += len(self._pending.pop(address))
        horizon = now - max(self.settings.arp_resolve_interval_s, PENDING_LIFETIME_S)
        for address in [a for a, t in self._arp_sent.items() if t < horizon]:
            del self._arp_sent[address]

    # -- read-only views for the REST layer ---------------------------------

    def switch_summary(self) -> list[dict]:
        rows = []
        for switch in self.graph.switch_ids():
            dpid = self.graph.dpid(switch)
            state = self.switches.get(dpid)
            rows.append({
                "id": switch, "dpid": dpid, "dpid_hex": f"{dpid:016x}",
                "connected": state is not None,
                "address": state.address if state else None,
                "connected_at": state.connected_at if state else None,
                "reconciled_at": state.reconciled_at if state else None,
                "trunk_ports": {str(p): other for p, other in sorted(self.graph.trunk_ports(switch).items())},
                "poas": [{"id": p.id, "port": p.port, "network": p.network}
                         for p in self.graph.poas_on(switch)],
                "expected_flows": len(self.desired_flows(dpid)),
            })
        return rows

"""The controller's core: state in, OpenFlow messages out.

``Controller`` receives events from the Ryu shell (a switch connected, a
flow-stats reply, a barrier reply, a packet-in, a port status, a flow removed,
an OpenFlow error, a timer tick), each with ``now`` from a monotonic clock,
and returns :class:`Send` batches for the shell to put on the wire.  It never
sends, sleeps or reads the clock itself, so every decision can be replayed in
a unit test against fake switches.  The shell hands it one event at a time,
in the order they arrived.
"""

from __future__ import annotations

import collections
import ipaddress
import logging
import os
from dataclasses import dataclass, field

from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_sdn import dhcp, forwarding, packets, reconcile
from mpa_sdn.aa import EXPIRED
from mpa_sdn.actions import ActionRefused, Actions
from mpa_sdn.events import EventLog
from mpa_sdn.metrics import Metrics
from mpa_sdn.netpolicy import Policies
from mpa_sdn import openflow as of
from mpa_sdn.forwarding import Host
from mpa_sdn.indexing import HostTable
from mpa_sdn.mobility import Mobility
from mpa_sdn.openflow import Send  # noqa: F401  (the shell and tests take it from here)
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.service import INBAND, Answer, MpaService, Origin
from mpa_sdn.store import MemoryStore
from mpa_sdn.tables import EXACT_MASK, Feature, Table, feature_of, host_cookie, subject_of
from mpa_sdn.topology import PoA, Topology

LOG = logging.getLogger("mpa_sdn.controller")
RECONCILE = "reconcile"
LEASE_ENDS = ("released", "expired", "declined")   # what the CA says of a lease that ends


@dataclass
class SwitchState:
    dpid: int
    switch: str
    connected_at: float
    address: str | None = None
    stats: list = field(default_factory=list)
    reconciling: bool = False          # flows sent, barrier not yet answered
    reconciled_at: float | None = None
    last_reconcile: dict | None = None
    errors: int = 0                    # OpenFlow errors since it connected


class Controller:
    """The core.  ``credentials`` (domain -> store), ``store`` (persistence),
    ``entropy`` (n -> n random bytes) and ``wall_offset`` (wall clock minus
    the monotonic ``now``) are the AA's and CA's, injected."""

    def __init__(self, topology: Topology, counters: collections.Counter | None = None, *,
                 credentials: dict | None = None, store=None, entropy=os.urandom,
                 wall_offset: float = 0.0, first_event_id: int = 1):
        self.topology = topology
        self.graph = NeighbourhoodGraph(topology)
        self.settings = topology.controller
        self.counters = counters if counters is not None else collections.Counter()
        store = store if store is not None else MemoryStore()
        self.mpa = MpaService(topology, self.graph, credentials or {}, store, self.counters,
                              entropy, wall_offset, self._address_user, self._mac_attached)
        self.switches: dict[int, SwitchState] = {}
        self.hosts: dict[str, Host] = HostTable()
        self._host_paths: dict[str, frozenset] = {}
        correspondents = forwarding.correspondent_hosts(self.graph)
        for host in correspondents:
            self._remember(host)
        self.mobility = Mobility(self.graph, topology.mpa, self.counters, correspondents,
                                 self.hosts, self.switches.__contains__, store)
        self.mpa.mobility = self.mobility
        self.metrics = Metrics(self)
        # What a policy engine follows (events), sets (policies) and asks (actions).
        self.events = EventLog(wall_offset, first_id=first_event_id)
        self.policies = Policies(topology.networks, topology.mpa, store, self.events)
        for part in (self.mpa.aa, self.mpa.ca, self.mobility):
            part.policy_of = self.policies.of
        self.actions = Actions(self.mpa, self.mobility, self.graph, self.policies, self.events,
                               store, self.counters)
        self.mpa.instructions = self.actions.poll
        self.mobility.on_ended = self._handover_ended
        self.mobility.on_change = self._mobility_changed
        self.mpa.aa.on_change = self._sa_changed
        self.mpa.ca.on_change = self._lease_changed
        self._gated: dict[str, list] = {}  # confirmation tag -> the answers waiting for it
        self._poa_at = {(self.graph.dpid(p.switch), p.port): p for p in topology.poas.values()}
        self._gateways = {str(n.gateway): n for n in topology.networks.values()}
        self._gateway_macs = {n.gateway_mac for n in topology.networks.values()}
        self._static_counts: dict[str, int] = {}
        self._arp_sent: dict[str, float] = {}
        self._pending: dict[str, collections.deque] = {}
        self._probing: dict[str, float] = {}  # address -> when to give up on it
        self._rejected: dict[tuple, float] = {}  # (dpid, port, mac, address) -> drop ends

    # -- switches ---------------------------------------------------------

    # -- what a policy engine follows and asks ------------------------------

    def _handover_ended(self, view: dict, now: float) -> None:
        self.metrics.handover_ended(view)
        self.actions.handover_ended(view, now)

    def _mobility_changed(self, kind: str, fields: dict) -> None:
        self.events.emit(kind, identity=fields.get("identity"), network=fields.get("network"),
                         data=fields)

    def _sa_changed(self, sa, state: str) -> None:
        self.events.emit("sa", identity=sa.identity, network=sa.network, data={
            "sa": sa.id, "state": state, "mn_mac": sa.mn_mac})
        if state == EXPIRED:
            self.mobility.sa_ended(sa.identity, sa.network)

    def _lease_changed(self, lease, what: str) -> None:
        self.events.emit("lease", identity=lease.identity, network=lease.network, data={
            "address": lease.address, "mac": lease.mac, "state": what})
        if what in LEASE_ENDS:
            self.mobility.lease_ended(lease.address, what)

    def act(self, kind: str, identity: str, params: dict, by: str, origin: Origin,
            now: float) -> list:
        """A policy engine's request (mpa_sdn/actions.py); its answer to ``origin``
        is the action's view (status 202) or the refusal (``problem``, ``detail``)."""
        self.events.at(now)
        try:
            action, answers = self.actions.request(kind, identity, params, by, now)
        except ActionRefused as exc:
            self.counters[f"action_refused_{exc.problem.replace('-', '_')}"] += 1
            return [Answer(origin, {"problem": exc.problem, "detail": str(exc)}, 409)]
        return self._outputs(answers + [Answer(origin, action.view(), 202)])

    def switch_connected(self, dpid: int, now: float, address: str | None = None) -> list[Send]:
        self.events.at(now)
        switch = self.graph.switch_of_dpid(dpid)
        if switch is None:
            self.counters["switch_unknown"] += 1
            LOG.warning("dpid=%016x connected but is not in the topology; leaving it alone", dpid)
            return []
        self.counters["switch_connected"] += 1
        self.switches[dpid] = SwitchState(dpid, switch, now, address)
        self.events.emit("switch", dpid=dpid, data={"switch": switch, "connected": True,
                                                    "address": address})
        # Reconciliation removes its temporary drops: a refused source that
        # is still there is refused, and dropped, anew.
        for key in [k for k in self._rejected if k[0] == dpid]:
            del self._rejected[key]
        LOG.info("dpid=%016x switch=%s connected from %s; reading its flows", dpid, switch, address)
        return [Send(dpid, [of.flow_stats_request()])]

    def switch_disconnected(self, dpid: int, now: float) -> list[Send]:
        self.events.at(now)
        state = self.switches.pop(dpid, None)
        if state is not None:
            self.counters["switch_disconnected"] += 1
            LOG.info("dpid=%016x switch=%s disconnected", dpid, state.switch)
            self.events.emit("switch", dpid=dpid, data={"switch": state.switch,
                                                        "connected": False})
        self.mobility.switch_gone(dpid, now)
        return self.mobility.drain() + self._ungated()

    def _ungated(self) -> list:
        """The held answers whose flows are confirmed (or whose switches left)."""
        out = []
        if not self._gated:   # the usual case, on every punted packet
            return out
        for tag in [t for t in self._gated if not self.mobility.awaiting(t)]:
            out += self._gated.pop(tag)
        return out

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
        state.last_reconcile = {"deleted": len(result.deletes), "added": len(result.adds),
                                "kept": result.kept}
        LOG.info("dpid=%016x switch=%s reconcile: %d deleted, %d added, %d kept",
                 dpid, state.switch, len(result.deletes), len(result.adds), result.kept)
        return [Send(dpid, result.messages, barrier=True, confirm=RECONCILE)]

    def flows_confirmed(self, dpid: int, tag: str, now: float) -> list[Send]:
        """The barrier after a batch sent with ``confirm=tag`` was answered."""
        self.events.at(now)
        if tag != RECONCILE:
            self.mobility.flows_confirmed(dpid, tag, now)
            return self.mobility.drain() + self._ungated()
        state = self.switches.get(dpid)
        if state is not None and tag == RECONCILE and state.reconciling:
            state.reconciling, state.reconciled_at = False, now
            if state.errors:
                LOG.warning("dpid=%016x switch=%s reconciled with %d OpenFlow errors",
                            dpid, state.switch, state.errors)
        return []

    def openflow_error(self, dpid: int, err_type: int, code: int, now: float) -> None:
        self.counters["openflow_error"] += 1
        self.counters[f"openflow_error_type_{err_type}"] += 1
        state = self.switches.get(dpid)
        if state is not None:
            state.errors += 1

    def desired_flows(self, dpid: int) -> list:
        switch = self.graph.switch_of_dpid(dpid)
        if switch is None:
            return []
        flows = forwarding.static_flows(self.graph, switch)
        for address in sorted(self.hosts, key=ipaddress.IPv4Address):
            if switch in self._host_paths[address]:
                flows += self._host_flows(self.hosts[address]).get(switch, [])
        return flows + self.mobility.flows_for(switch)

    def expected_flow_count(self, dpid: int) -> int:
        """len(desired_flows(dpid)), without building any flow-mod."""
        switch = self.graph.switch_of_dpid(dpid)
        if switch not in self._static_counts:
            self._static_counts[switch] = len(forwarding.static_flows(self.graph, switch))
        routes = sum(switch in path for path in self._host_paths.values())
        checks = sum(h.poa.switch == switch for h in self.hosts.values())
        return self._static_counts[switch] + routes + checks + self.mobility.flow_count(switch)

    # -- hosts ------------------------------------------------------------

    def _host_flows(self, host: Host) -> dict[str, list]:
        return forwarding.host_flows(self.graph, host, self.settings.host_idle_timeout_s)

    def _remember(self, host: Host) -> None:
        self.hosts[host.address] = host
        self._host_paths[host.address] = frozenset(forwarding.host_path(self.graph, host))

    def _refusal(self, mac: str, address: str, poa: PoA) -> str | None:
        """Why a host may not be learned at this PoA, or None."""
        network = self.graph.network(poa.network)
        if int(mac[:2], 16) & 1 or mac in self._gateway_macs:
            return "mac"
        ip = ipaddress.IPv4Address(address)
        if (ip not in network.prefix or ip == network.gateway
                or ip in (network.prefix.network_address, network.prefix.broadcast_address)):
            return "address"
        old = self.hosts.get(address)
        if old is not None and old.static and (old.mac, old.poa) != (mac, poa):
            return "static"
        if old is None and len(self.hosts) >= self.settings.max_hosts:
            return "full"
        lease = self.mpa.ca.lease_at(address)
        if lease is not None and lease.mac != mac:
            return "leased"  # the CA gave it to someone else
        if old is not None and old.mac != mac:
            # The address belongs to a host we know.  It keeps it until it is
            # gone (its port went down, or it did not answer a poll), so that
            # no one can take a live host's address by sending from it.
            return "conflict"
        return None

    def _reject(self, mac: str, address: str, poa: PoA, reason: str, now: float) -> list[Send]:
        dpid = self.graph.dpid(poa.switch)
        key = (dpid, poa.port, mac, address)
        if self._rejected.get(key, 0) > now:
            # Already dropped in the switch; this one was on its way meanwhile.
            self.counters["learn_rejected_again"] += 1
            return []
        self.counters[f"learn_rejected_{reason}"] += 1
        LOG.warning("host mac=%s identity=%s ip=%s at poa=%s refused (%s); dropped for %d s",
                    mac, self.mpa.aa.identity_of(mac), address, poa.id, reason,
                    self.settings.reject_hold_s)
        sends = []
        if reason == "conflict" and address not in self._probing:
            sends += self._poll(self.hosts[address], now)
        if dpid in self.switches:
            self._rejected[key] = now + self.settings.reject_hold_s
            sends.append(Send(dpid, forwarding.reject_flows(poa.port, mac, address,
                                                             self.settings.reject_hold_s)))
        return sends

    def _poll(self, host: Host, now: float) -> list[Send]:
        """Ask a known host, by unicast ARP from its gateway, whether it is still there."""
        self._probing[host.address] = now + self.settings.host_probe_s
        self.counters["host_probe_sent"] += 1
        dpid = self.graph.dpid(host.poa.switch)
        if dpid not in self.switches:
            return []
        network = self.graph.network(host.poa.network)
        poll = packets.arp_request(sender_mac=network.gateway_mac, sender_ip=str(network.gateway),
                                   target_ip=host.address, eth_dst=host.mac)
        return [Send(dpid, [of.packet_out(poll, [of.output(host.poa.port)])])]

    def _learn(self, mac: str, address: str, poa: PoA, now: float,
               source_check_missed: bool = False, how: str = "arp") -> list[Send]:
        """Learn a host, or move it (same MAC and address, another PoA).

        ``source_check_missed``: the packet came through the unknown-source
        punt, so the switch has lost the host's source check if we know it.
        """
        # Whoever sends from an address uses it, refused or not: the CA's DAD hears of it.
        self.mpa.address_used(address, now)
        reason = self._refusal(mac, address, poa)
        if reason is not None:
            return self._reject(mac, address, poa, reason, now)
        old = self.hosts.get(address)
        new = Host(address, mac, poa, static=bool(old and old.static))
        if old == new:
            # Still there: an MN seen here is attached here (RFC 6252 C.2).
            self.mpa.host_seen(mac, poa.network, now)
            answered = self._probing.pop(address, None) is not None
            if answered:
                self.counters["host_probe_answered"] += 1
            self.mobility.host_seen(mac, address, poa, "refresh", now)
            if not (answered or source_check_missed):
                return self.mobility.drain()  # an ARP from a host we know where it is
            # Its source check is gone: it idled out (the host has just
            # answered our poll) or it idled out as this packet came.
            self.counters["learn_refreshed"] += 1
            dpid = self.graph.dpid(poa.switch)
            if dpid not in self.switches:
                return []
            return [Send(dpid, self._host_flows(new)[poa.switch], barrier=True)
                    ] + self.mobility.drain()
        self._remember(new)
        self._probing.pop(address, None)
        self.mpa.host_seen(mac, poa.network, now)
        if old is None:
            self.counters["host_learned"] += 1
            LOG.info("host mac=%s identity=%s ip=%s learned at poa=%s", mac,
                     self.mpa.aa.identity_of(mac), address, poa.id)
        else:  # the same MAC: _refusal keeps an address from changing hands
            self.counters["host_moved"] += 1
            LOG.info("host mac=%s identity=%s ip=%s moved to poa=%s from old_poa=%s", mac,
                     self.mpa.aa.identity_of(mac), address, poa.id, old.poa.id)
        by_switch = self._host_flows(new)
        if old is not None:
            # Routes on switches the host's new path shares are overwritten in
            # place; the rest of the old path loses them, and the old source
            # check goes.
            for switch in forwarding.host_path(self.graph, old):
                if switch not in by_switch:
                    by_switch[switch] = [forwarding.host_route_delete(old)]
            by_switch.setdefault(old.poa.switch, []).append(forwarding.source_check_delete(old))
        sends = [Send(self.graph.dpid(sw), msgs, barrier=True)
                 for sw, msgs in sorted(by_switch.items()) if self.graph.dpid(sw) in self.switches]
        # The MN's tunnels, binding and handover follow it (after its routes,
        # whose barriers a handover waits for).
        self.mobility.host_seen(mac, address, poa, how, now)
        return sends + self.mobility.drain() + self._release_pending(address, now)

    def forget_host(self, address: str, reason: str, now: float) -> list[Send]:
        host = self.hosts.get(address)
        if host is None or host.static:
            return []
        path = self._host_paths.pop(address)
        del self.hosts[address]
        self._probing.pop(address, None)
        self.counters[f"host_forgotten_{reason}"] += 1
        LOG.info("host mac=%s identity=%s ip=%s at poa=%s forgotten (%s)", host.mac,
                 self.mpa.aa.identity_of(host.mac), address, host.poa.id, reason)
        self.mpa.host_left(host.mac, host.poa.network, now)
        delete = of.flow_delete_cookie(host_cookie(address), EXACT_MASK)
        sends = [Send(self.graph.dpid(sw), [delete]) for sw in sorted(path)
                 if self.graph.dpid(sw) in self.switches]
        self.mobility.host_gone(host.mac, address, host.poa, now)
        return sends + self.mobility.drain()

    def port_status(self, dpid: int, port: int, gone: bool, now: float) -> list[Send]:
        """A port was deleted or lost its link: hosts learned there have left."""
        self.events.at(now)
        poa = self._poa_at.get((dpid, port))
        if poa is None:
            return []
        if not gone:
            # A PoA came up: if one MN is pre-switching to its network, that
            # is the MN arriving (RFC 6252 §6.3 step 5), before it says so.
            handover = self.mobility.expecting(poa)
            if handover is None or any(True for _ in self.hosts.at_poa(poa)):
                return []
            return self._learn(handover.mac, handover.address, poa, now, how="port")
        sends = []
        for address in sorted(h.address for h in self.hosts.at_poa(poa)):
            sends += self.forget_host(address, "link_down", now)
        return sends

    def flow_removed(self, dpid: int, cookie: int, reason: int, match: dict,
                     now: float) -> list[Send]:
        """A source check idled out: the host has sent nothing for a while.

        A host that only receives (a one-way stream) is still there, so it is
        polled with a unicast ARP request rather than forgotten: an answer
        restores its source check, silence for ``host_probe_s`` forgets it.
        Only the host's current source check counts: a move may have replaced
        it with another one the switch has not removed.
        """
        self.events.at(now)
        if reason != ofp.OFPRR_IDLE_TIMEOUT or feature_of(cookie) != Feature.HOST:
            return []
        address = str(ipaddress.IPv4Address(subject_of(cookie) & 0xFFFFFFFF))
        host = self.hosts.get(address)
        if host is None or host.static or self.graph.dpid(host.poa.switch) != dpid:
            return []
        if (match.get("in_port"), str(match.get("eth_src", "")).lower()) != (host.poa.port, host.mac):
            self.counters["flow_removed_stale"] += 1
            return []
        return self._poll(host, now)

    # -- packet-ins -------------------------------------------------------

    def packet_in(self, dpid: int, in_port: int, table_id: int, data: bytes,
                  now: float) -> list[Send]:
        self.events.at(now)
        self.counters["packet_in"] += 1
        if dpid not in self.switches:
            self.counters["packet_in_unknown_switch"] += 1
            return []
        frame = packets.decode(data)
        if frame is None:
            self.counters["packet_in_malformed"] += 1
            return []
        if (table_id == Table.INGRESS and frame.udp is not None
                and frame.udp[1] == dhcp.SERVER_PORT):
            # A DHCP release or decline may end a lease, and its tunnel.
            return self._dhcp(dpid, in_port, data, now) + self.mobility.drain()
        if table_id == Table.INGRESS and frame.ip_src is not None:
            return self._unknown_source(dpid, in_port, frame, data, now)
        if table_id == Table.ARP and frame.arp is not None:
            return self._arp(dpid, in_port, frame, now)
        if table_id == Table.ROUTE and frame.ip_dst is not None:
            if (frame.ip_dst in self._gateways and frame.udp is not None
                    and frame.udp[1] == self.topology.mpa.signalling_port):
                return self._signal_in_band(dpid, in_port, frame, now)
            if frame.ip_dst in self._gateways:
                return self._to_gateway(frame)
            if self.mobility.copied(dpid, frame, data, now):
                # Copy-and-forward: the MN's active PoA copied what it delivered.
                return self.mobility.drain()
            handover = self.mobility.takes(frame.ip_dst)
            if handover is not None:
                # A handover's buffer: queued here and flushed by mpa_tick
                # (relayed at once when the buffer is already empty).
                self.mobility.packet_in(handover, frame, data, now)
                return self.mobility.drain() + self._ungated()
            return self._unresolved(frame, data, now)
        self.counters["packet_in_unexpected"] += 1
        return []

    def _unknown_source(self, dpid, in_port, frame, data, now) -> list[Send]:
        poa = self._poa_at.get((dpid, in_port))
        if poa is None:
            self.counters["packet_in_unexpected"] += 1
            return []
        if frame.ip_src == packets.UNSPECIFIED:
            # A host with no address yet (a DHCP client): nothing to learn,
            # and no drop flow either, which would also catch its ARP probes.
            self.counters["packet_in_unaddressed"] += 1
            return []
        sends = self._learn(frame.eth_src, frame.ip_src, poa, now, source_check_missed=True,
                            how="packet")
        host = self.hosts.get(frame.ip_src)
        if host is not None and (host.mac, host.poa) == (frame.eth_src, poa):
            # The packet that taught us the host goes on its way too: routed
            # from the top of the pipeline, now that its routes are in place.
            sends.append(Send(dpid, [of.packet_out(data, [of.output(ofp.OFPP_TABLE)])]))
        return sends

    def _deliver(self, host: Host, data: bytes, forwarded: bool) -> list[Send]:
        """Send a frame straight out of the host's PoA, as its last hop would.

        Never back through the flow table: if a route were missing there, the
        packet would come straight back to the controller.
        """
        dpid = self.graph.dpid(host.poa.switch)
        if dpid not in self.switches:
            self.counters["deliver_disconnected"] += 1
            return []
        actions = forwarding.last_hop_actions(host, self.graph.network(host.poa.network), forwarded)
        return [Send(dpid, [of.packet_out(data, actions)])]

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
            LOG.warning("host mac=%s identity=%s at poa=%s claims gateway %s", a.src_mac,
                        self.mpa.aa.identity_of(a.src_mac), poa.id, a.src_ip)
            return []
        if a.src_ip != packets.UNSPECIFIED:
            sends += self._learn(a.src_mac, a.src_ip, poa, now)
            host = self.hosts.get(a.src_ip)
            if host is None or (host.mac, host.poa) != (a.src_mac, poa):
                return sends  # refused: it gets no answers from us either
        if a.opcode != packets.ARP_REQUEST:
            return sends
        target = self.hosts.get(a.dst_ip)
        tunnel = self.mobility.tunnels.get(a.dst_ip)
        answer = a.dst_ip == str(network.gateway) or (
            target is not None and target.poa.network == network.id and target.mac != a.src_mac
        ) or (
            # Proxy ARP for an nCoA while its tunnel is up (RFC 6252 §7.4):
            # the MN is not here yet, its address is.
            target is None and tunnel is not None and tunnel.network == network.id)
        if answer:
            # Local proxy ARP: every destination is reached through the
            # gateway.  A probe (RFC 5227, sender 0.0.0.0) for an address in
            # use is answered too, so the prober knows it is taken.
            self.counters["arp_proxy_reply"] += 1
            reply = packets.arp_reply(sender_mac=network.gateway_mac, sender_ip=a.dst_ip,
                                      target_mac=a.src_mac,
                                      target_ip=a.src_ip if a.src_ip != packets.UNSPECIFIED
                                      else a.dst_ip)
            sends.append(Send(dpid, [of.packet_out(reply, [of.output(in_port)])]))
        elif target is None and ipaddress.IPv4Address(a.dst_ip) in network.prefix:
            sends += self._resolve(a.dst_ip, now)
        return sends

    def _to_gateway(self, frame) -> list[Send]:
        network = self._gateways[frame.ip_dst]
        source = self.hosts.get(frame.ip_src)
        if frame.icmp_echo is None or source is None:
            self.counters["gateway_packet_ignored"] += 1
            return []
        self.counters["gateway_echo_reply"] += 1
        reply = packets.icmp_echo_reply(src_mac=network.gateway_mac, dst_mac=source.mac,
                                        src_ip=frame.ip_dst, dst_ip=frame.ip_src,
                                        echo=frame.icmp_echo)
        return self._deliver(source, reply, forwarded=False)

    # -- the AA and CA: signalling, DHCP, DAD ---------------------------------

    def _address_user(self, address: str) -> str | None:
        host = self.hosts.get(address)
        return host.mac if host is not None else None

    def _mac_attached(self, mac: str, network: str) -> bool:
        return any(h.poa.network == network for h in self.hosts.of_mac(mac))

    def _signal_in_band(self, dpid, in_port, frame, now) -> list[Send]:
        network = self._gateways[frame.ip_dst]
        origin = Origin(INBAND, frame.ip_src, network.id, frame.eth_src,
                        reply_to=(dpid, frame.eth_src, frame.ip_dst, frame.ip_src, frame.udp[0]))
        return self._outputs(self.mpa.handle(frame.udp[2], origin, now))

    def signal(self, data: bytes, origin: Origin, expect: tuple, now: float) -> list:
        """A message from the REST channel: the answers come back as :class:`Answer`."""
        self.events.at(now)
        return self._outputs(self.mpa.handle(data, origin, now, expect))

    def _outputs(self, answers: list[Answer]) -> list:
        """In-band answers become packet-outs; REST answers go back to the caller."""
        out = []
        for answer in answers:
            if answer.origin.channel != INBAND:
                sends = [answer]
            else:
                dpid, mac, gateway, address, port = answer.origin.reply_to
                sends = self._reply_in_band(dpid, mac, gateway, address, port, answer.body)
            if answer.after is not None and self.mobility.awaiting(answer.after):
                # Held until the flows it speaks of work (Mobility.answer_gate).
                self.counters["signal_answer_held"] += 1
                self._gated.setdefault(answer.after, []).extend(sends)
            else:
                out += sends
        return self.mobility.drain() + out

    def packet_ins_handled(self, now: float) -> list[Send]:
        """The shell has handed over every packet-in it holds."""
        self.events.at(now)
        self.mobility.caught_up(now)
        return self.mobility.drain()

    def _reply_in_band(self, dpid, mac, gateway, address, port, payload) -> list[Send]:
        """A datagram from the gateway back to the sender: straight out of its
        PoA if we know it there, else routed from the switch it came in at."""
        self.counters["signal_inband_answer"] += 1
        host = self.hosts.get(address)
        frame = packets.udp_frame(
            src_mac=self._gateways[gateway].gateway_mac, dst_mac=mac, src_ip=gateway,
            dst_ip=address, src_port=self.topology.mpa.signalling_port, dst_port=port,
            payload=payload)
        if host is not None and host.mac == mac:
            return self._deliver(host, frame, forwarded=False)
        tunnel = self.mobility.tunnels.get(address)
        if tunnel is not None and tunnel.mac == mac:
            # Straight to the tunnel's end, where the MN is: the answer to
            # pre-switch goes after the nAR's punt, which would catch it.
            return self._deliver(Host(address, mac, tunnel.poa), frame, forwarded=False)
        if dpid not in self.switches:
            self.counters["deliver_disconnected"] += 1
            return []
        return [Send(dpid, [of.packet_out(frame, [of.output(ofp.OFPP_TABLE)])])]

    def _dhcp(self, dpid, in_port, data, now) -> list[Send]:
        """DHCP at a PoA: for the PoA's network, or (RFC 6252 §7.3.3) unicast
        from an MN's current address to a candidate target network's gateway."""
        poa = self._poa_at.get((dpid, in_port))
        request = dhcp.decode_request(data)
        if poa is None or request is None:
            self.counters["dhcp_malformed" if request is None else "packet_in_unexpected"] += 1
            return []
        self.counters["dhcp_request"] += 1
        here = self.graph.network(poa.network)
        target = self._gateways.get(request.ip_dst)
        proactive = (target is not None and target.id != here.id
                     and request.ip_src != packets.UNSPECIFIED)
        # The DHCP punt comes before the source check: is this the host
        # learned at this PoA, or just someone using its MAC?
        host = self.hosts.get(request.ip_src)
        # chaddr too: the service finds leases by it.
        learned = (host is not None and (host.mac, host.poa) == (request.eth_src, poa)
                   and request.chaddr == request.eth_src)
        if proactive and not learned:
            # Only the host itself may ask for (or give back) its nCoA.
            self.counters["dhcp_proactive_unknown_source"] += 1
            return []
        network = target if proactive else here
        decision = self.mpa.dhcp(request, network.id, proactive, now, learned)
        if decision is None:
            return []
        # RFC 2131 Table 3: a NAK carries no configuration.
        configuration = {} if decision.message_type == dhcp.NAK else {
            "subnet_mask": str(network.prefix.netmask), "router": str(network.gateway),
            "dns": tuple(str(a) for a in network.dns)}
        reply = dhcp.build_reply(
            request, message_type=decision.message_type, server_ip=str(network.gateway),
            # The reply reaches the MN from its own router, as routed traffic would.
            server_mac=here.gateway_mac, yiaddr=decision.address,
            lease_time=decision.lease_time, message=decision.message, **configuration)
        self.counters["dhcp_reply"] += 1
        return [Send(dpid, [of.packet_out(reply, [of.output(in_port)])])]

    def _dad_probes(self, probes: list[tuple[str, str]]) -> list[Send]:
        """ARP probes (RFC 5227: sender address 0.0.0.0) at every PoA of the network."""
        outs = []
        for network_id, address in probes:
            network = self.graph.network(network_id)
            probe = packets.arp_request(sender_mac=network.gateway_mac,
                                        sender_ip=packets.UNSPECIFIED, target_ip=address)
            outs += [(poa, probe) for poa in network.poas]
        self.counters["dad_probe_sent"] += len(probes)
        return self._out_of_poas(outs)

    def _out_of_poas(self, outs: list) -> list[Send]:
        """Frames (PoA, bytes) sent out of their PoAs, one batch per connected switch."""
        by_switch: dict[int, list] = {}
        for poa, frame in outs:
            by_switch.setdefault(self.graph.dpid(poa.switch), []).append(
                of.packet_out(frame, [of.output(poa.port)]))
        return [Send(dpid, msgs) for dpid, msgs in sorted(by_switch.items())
                if dpid in self.switches]

    def mpa_tick(self, now: float) -> list:
        """Advance the AA and CA: expiries, DAD probes, answers DAD held back."""
        self.events.at(now)
        probes, answers = self.mpa.tick(now, self._network_ready)
        self.mobility.step(now)
        answers += self.actions.tick(self.mpa.wall(now))
        return self._dad_probes(probes) + self._outputs(answers) + self._ungated()

    def _network_ready(self, network_id: str) -> bool:
        """Every PoA switch of the network connected and reconciled: probes go
        out everywhere and answers come back through our ARP punts."""
        for poa in self.graph.network(network_id).poas:
            state = self.switches.get(self.graph.dpid(poa.switch))
            if state is None or state.reconciled_at is None:
                return False
        return True

    def next_mpa_tick(self, now: float) -> float | None:
        """When :meth:`mpa_tick` next has work (a probe due), if sooner than a tick."""
        due = [d for d in (self.mpa.next_deadline(), self.mobility.next_due()) if d is not None]
        return min(due) if due else None

    def _unresolved(self, frame, data, now) -> list[Send]:
        host = self.hosts.get(frame.ip_dst)
        if host is not None:
            # Raced with the host's routes being installed.
            return self._deliver(host, data, forwarded=True)
        if self.graph.network_of_address(frame.ip_dst) is None:
            self.counters["packet_in_unexpected"] += 1
            return []
        queue = self._pending.get(frame.ip_dst)
        if (queue is None and self.settings.pending_per_address
                and len(self._pending) < self.settings.pending_addresses):
            queue = self._pending[frame.ip_dst] = collections.deque()
        if queue is None or len(queue) >= self.settings.pending_per_address:
            self.counters["pending_dropped_full"] += 1
        else:
            queue.append((now + self.settings.pending_lifetime_s, data))
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
        return self._out_of_poas([(poa, request) for poa in network.poas])

    def _release_pending(self, address: str, now: float) -> list[Send]:
        queue = self._pending.pop(address, None)
        if not queue:
            return []
        fresh = [data for expires, data in queue if expires >= now]
        self.counters["pending_dropped_expired"] += len(queue) - len(fresh)
        sends = [s for data in fresh for s in self._deliver(self.hosts[address], data, True)]
        self.counters["pending_released"] += len(sends)  # the rest: deliver_disconnected
        return sends

    def tick(self, now: float) -> list[Send]:
        """Expire held packets, old resolution records and unanswered polls."""
        self.events.at(now)
        for address in [a for a, q in self._pending.items() if q and q[-1][0] < now]:
            self.counters["pending_dropped_expired"] += len(self._pending.pop(address))
        horizon = now - max(self.settings.arp_resolve_interval_s, self.settings.pending_lifetime_s)
        for address in [a for a, t in self._arp_sent.items() if t < horizon]:
            del self._arp_sent[address]
        for key in [k for k, ends in self._rejected.items() if ends <= now]:
            del self._rejected[key]
        for address in [a for a, q in self._pending.items() if not q]:
            del self._pending[address]
        sends = []
        for address in sorted(a for a, deadline in self._probing.items() if deadline < now):
            del self._probing[address]
            sends += self.forget_host(address, "idle", now)
        self.mobility.tick(now, self.mpa.wall(now))
        return sends + self.mpa_tick(now)

    # -- read-only views for the REST layer ---------------------------------

    def switch_summary(self, now: float) -> list[dict]:
        rows = []
        for switch in self.graph.switch_ids():
            dpid = self.graph.dpid(switch)
            state = self.switches.get(dpid)
            rows.append({
                "id": switch, "dpid": dpid, "dpid_hex": f"{dpid:016x}",
                "connected": state is not None,
                "address": state.address if state else None,
                "connected_for_s": round(now - state.connected_at, 3) if state else None,
                "reconciled": bool(state and state.reconciled_at is not None),
                "last_reconcile": state.last_reconcile if state else None,
                "openflow_errors": state.errors if state else 0,
                "trunk_ports": {str(p): other for p, other in sorted(self.graph.trunk_ports(switch).items())},
                "poas": [{"id": p.id, "port": p.port, "network": p.network}
                         for p in self.graph.poas_on(switch)],
                "expected_flows": self.expected_flow_count(dpid),
            })
        return rows

"""The controller's core: state in, OpenFlow messages out.

``Controller`` receives events from the Ryu shell (a switch connected, a
flow-stats reply, a barrier reply, a packet-in, a port status, a flow removed,
an OpenFlow error, a timer tick), each with ``now`` from a monotonic clock,
and returns :class:`Send` batches for the shell to put on the wire.  It never
sends, sleeps or reads the clock itself, so every decision can be replayed in
a unit test against fake switches.  The shell hands it one event at a time,
in the order they arrived.

The controller dispatches: it classifies each packet-in and hands each
event to the parts it concerns (built in :mod:`mpa_sdn.assembly`): the
router (:mod:`mpa_sdn.routing`: hosts, ARP, held packets), the AA and CA
(:mod:`mpa_sdn.service`), mobility (:mod:`mpa_sdn.mobility`) and the policy
engine's actions (:mod:`mpa_sdn.actions`).  It keeps the switches'
lifecycle (connection, reconciliation) and the answers held until the
flows they speak of are confirmed.
"""

from __future__ import annotations

import collections
import logging
import os
from dataclasses import dataclass, field

from mpa_protocol import pana
from mpa_sdn import dhcp, forwarding, packets, reconcile
from mpa_sdn import openflow as of
from mpa_sdn.action_record import ActionRefused
from mpa_sdn.assembly import assemble
from mpa_sdn.forwarding import Host
from mpa_sdn.openflow import Send  # noqa: F401  (the shell and tests take it from here)
from mpa_sdn.pana_agent import PanaReply
from mpa_sdn.radius_client import Datagram as RadiusDatagram
from mpa_sdn.resolution import out_of_poas
from mpa_sdn.service import INBAND, Answer, Origin
from mpa_sdn.tables import Table
from mpa_sdn.topology import Topology

LOG = logging.getLogger("mpa_sdn.controller")
RECONCILE = "reconcile"


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
    """The core.  ``radius_servers`` (domain -> its RADIUS servers), ``store`` (persistence),
    ``entropy`` (n -> n random bytes) and ``wall_offset`` (wall clock minus
    the monotonic ``now``) are the AA's and CA's, injected.  The parts are
    built by :func:`mpa_sdn.assembly.assemble`; the controller hands each
    event to the parts it concerns."""

    def __init__(self, topology: Topology, counters: collections.Counter | None = None, *,
                 radius_servers: dict | None = None, store=None, entropy=os.urandom,
                 wall_offset: float = 0.0, first_event_id: int = 1):
        core = assemble(topology, counters, radius_servers=radius_servers, store=store,
                        entropy=entropy, wall_offset=wall_offset, first_event_id=first_event_id)
        self.topology = topology
        self.settings = topology.controller
        self.graph, self.counters, self.switches = core.graph, core.counters, core.switches
        self.hosts, self.router, self.mobility = core.hosts, core.router, core.mobility
        self.mpa, self.actions, self.metrics = core.mpa, core.actions, core.metrics
        # What a policy engine follows (events), sets (policies) and asks (actions).
        self.events, self.policies = core.events, core.policies
        self._gated: dict[str, list] = {}  # confirmation tag -> the answers waiting for it
        self._switch_rows: list[dict] | None = None   # the topology's part of each switch's view

    # -- what a policy engine asks ----------------------------------------------

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

    def update_policy(self, network: str, changes: dict, by: str, origin: Origin,
                      now: float) -> list:
        """An admin's change of a network's policy (mpa_sdn/netpolicy.py); its
        answer to ``origin`` is the policy's view, or (status 400) the refusal
        of a field no policy has."""
        self.events.at(now)
        try:
            policy = self.policies.update(network, changes)
        except ValueError as exc:
            self.counters["policy_refused_unknown_field"] += 1
            return [Answer(origin, {"problem": "bad-request", "detail": str(exc)}, 400)]
        self.counters["policy_updated"] += 1
        LOG.info("network=%s policy changed by %s: %s", network, by, changes)
        return [Answer(origin, policy.view())]

    # -- switches ---------------------------------------------------------------

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
        self.router.switch_connected(dpid)
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
            for answer in self._gated.pop(tag):
                out += self._answered(answer)
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
        return (forwarding.static_flows(self.graph, switch) + self.router.flows_for(switch)
                + self.mobility.flows_for(switch))

    def expected_flow_count(self, dpid: int) -> int:
        """len(desired_flows(dpid)), without building any flow-mod."""
        switch = self.graph.switch_of_dpid(dpid)
        return self.router.flow_count(switch) + self.mobility.flow_count(switch)

    # -- hosts (the router's) ---------------------------------------------------

    def forget_host(self, address: str, reason: str, now: float) -> list[Send]:
        return self.router.forget_host(address, reason, now)

    def port_status(self, dpid: int, port: int, gone: bool, now: float) -> list[Send]:
        """A port was deleted or lost its link: hosts learned there have left."""
        self.events.at(now)
        return self.router.port_status(dpid, port, gone, now)

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
        return self.router.source_check_removed(dpid, cookie, reason, match, now)

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
            return self.router.unknown_source(dpid, in_port, frame, data, now)
        if table_id == Table.ARP and frame.arp is not None:
            return self.router.arp(dpid, in_port, frame, now)
        if table_id == Table.ROUTE and frame.ip_dst is not None:
            if frame.ip_dst in self.router.gateways:
                if frame.udp is not None and frame.udp[1] == self.topology.mpa.signalling_port:
                    return self._signal_in_band(dpid, frame, now)
                if frame.udp is not None and frame.udp[1] == pana.PANA_PORT:
                    return self._pana_in_band(dpid, frame, now)
                return self.router.to_gateway(dpid, frame)
            if self.mobility.copied(dpid, frame, data, now):
                # Copy-and-forward: the MN's active PoA copied what it delivered.
                return self.mobility.drain()
            handover = self.mobility.takes(frame.ip_dst)
            if handover is not None:
                # A handover's buffer: queued here and flushed by mpa_tick
                # (relayed at once when the buffer is already empty).
                self.mobility.packet_in(handover, frame, data, now)
                return self.mobility.drain() + self._ungated()
            return self.router.unresolved(frame, data, now)
        self.counters["packet_in_unexpected"] += 1
        return []

    # -- the AA and CA: signalling, DHCP, DAD ---------------------------------

    def _in_band_origin(self, dpid, frame) -> Origin:
        network = self.router.gateways[frame.ip_dst]
        # A frame's source MAC names its sender only on a link of ours: from
        # another domain it is the last router's, and proves nothing.
        source = self.graph.network_of_address(frame.ip_src)
        local = source is not None and self.topology.serves(source)
        return Origin(INBAND, frame.ip_src, network.id, frame.eth_src if local else None,
                      reply_to=(dpid, frame.eth_src, frame.ip_dst, frame.ip_src, frame.udp[0],
                                frame.udp[1]))

    def _signal_in_band(self, dpid, frame, now) -> list[Send]:
        origin = self._in_band_origin(dpid, frame)
        answers = self.mpa.handle(frame.udp[2], origin, now)
        return self.router.left_behind_by_tunnels(now) + self._outputs(answers)

    def _pana_in_band(self, dpid, frame, now) -> list[Send]:
        """PANA to a network's AA (RFC 5191 on UDP 716), from an MN on one of
        our links or routed from anywhere: what to send back, and RADIUS."""
        self.events.at(now)
        origin = self._in_band_origin(dpid, frame)
        return self._outputs(self.mpa.pana(frame.udp[2], origin, frame.udp[0], now))

    def radius(self, data: bytes, source: tuple, now: float) -> list:
        """A datagram from a RADIUS server (the shell's socket)."""
        self.events.at(now)
        return self._outputs(self.mpa.radius(data, source, now))

    def signal(self, data: bytes, origin: Origin, expect: tuple, now: float) -> list:
        """A message from the REST channel: the answers come back as :class:`Answer`."""
        self.events.at(now)
        answers = self.mpa.handle(data, origin, now, expect)
        return self.router.left_behind_by_tunnels(now) + self._outputs(answers)

    def _outputs(self, answers: list[Answer]) -> list:
        """In-band answers become packet-outs; REST answers go back to the caller."""
        out = []
        for answer in answers:
            if isinstance(answer, RadiusDatagram):
                out.append(answer)       # the shell's RADIUS socket sends it
                continue
            if isinstance(answer, PanaReply):
                dpid, mac, gateway, address, port, local = answer.origin.reply_to
                out += self._reply_in_band(dpid, mac, gateway, address, port, answer.data,
                                           local)
                continue
            if answer.after is not None and self.mobility.awaiting(answer.after):
                # Held until the flows it speaks of work (Mobility.answer_gate);
                # its way to the MN is chosen when it goes.
                self.counters["signal_answer_held"] += 1
                self._gated.setdefault(answer.after, []).append(answer)
            else:
                out += self._answered(answer)
        return self.mobility.drain() + out

    def _answered(self, answer: Answer) -> list:
        """A signalling answer on its way: back to the REST caller, or in-band."""
        if answer.origin.channel != INBAND:
            return [answer]
        dpid, mac, gateway, address, port, local = answer.origin.reply_to
        return self._reply_in_band(dpid, mac, gateway, address, port, answer.body, local,
                                   behind=answer.after)

    def packet_ins_handled(self, now: float) -> list[Send]:
        """The shell has handed over every packet-in it holds."""
        self.events.at(now)
        self.mobility.caught_up(now)
        return self.mobility.drain()

    def _reply_in_band(self, dpid, mac, gateway, address, port, payload,
                       local_port: int, behind: str | None = None) -> list[Send]:
        """A datagram from the gateway back to the sender: straight out of its
        PoA if we know it there, else routed from the switch it came in at.
        An answer gated on ``behind`` (a pre-switch's) goes down the MN's
        tunnel instead when it ends there and its nAR is connected
        (Mobility.behind_tunnel), which is looked at when it goes."""
        self.counters["signal_inband_answer"] += 1
        host = self.hosts.get(address)
        frame = packets.udp_frame(
            src_mac=self.router.gateways[gateway].gateway_mac, dst_mac=mac, src_ip=gateway,
            dst_ip=address, src_port=local_port, dst_port=port,
            payload=payload)
        tunnel = self.mobility.tunnels.get(address)
        if host is not None and host.mac == mac:
            direct = self.router.deliver(host, frame, forwarded=False)
        elif tunnel is not None and tunnel.mac == mac and tunnel.poa is not None:
            # Straight to the tunnel's end, where the MN is (the nAR's punt
            # would catch it routed).
            host = Host(address, mac, tunnel.poa)
            direct = self.router.deliver(host, frame, forwarded=False)
        else:
            return self.router.routed(dpid, frame)
        through = (self.mobility.behind_tunnel(behind, mac, host.poa, frame)
                   if behind is not None else None)
        if through is None:
            return direct
        self.counters["signal_answer_behind_tunnel"] += 1
        return [through]

    def _dhcp(self, dpid, in_port, data, now) -> list[Send]:
        """DHCP at a PoA: for the PoA's network, or (RFC 6252 §7.3.3) unicast
        from an MN's current address to a candidate target network's gateway."""
        poa = self.router.poa_at.get((dpid, in_port))
        request = dhcp.decode_request(data)
        if poa is None or request is None:
            self.counters["dhcp_malformed" if request is None else "packet_in_unexpected"] += 1
            return []
        self.counters["dhcp_request"] += 1
        here = self.graph.network(poa.network)
        target = self.router.gateways.get(request.ip_dst)
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
        return out_of_poas(self.graph, self.switches, outs)

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

    def tick(self, now: float) -> list[Send]:
        """Expire held packets, old resolution records and unanswered polls;
        then the mobility's and the AA's and CA's time."""
        self.events.at(now)
        sends = self.router.tick(now)
        self.mobility.tick(now, self.mpa.wall(now))
        return sends + self.mpa_tick(now)

    # -- read-only views for the REST layer ---------------------------------

    def switch_summary(self, now: float) -> list[dict]:
        """Every switch's row: what the topology says of it (built once), its
        connection's state and its expected flows (counted, never built)."""
        if self._switch_rows is None:
            self._switch_rows = [self._switch_row(s) for s in self.graph.switch_ids()
                                 # another domain's stand-in (mpa_sdn.domain_view): not a switch
                                 if self.graph.dpid(s) >= 0]
        rows = []
        for fixed in self._switch_rows:
            dpid = fixed["dpid"]
            state = self.switches.get(dpid)
            rows.append({
                **fixed,
                "connected": state is not None,
                "address": state.address if state else None,
                "connected_for_s": round(now - state.connected_at, 3) if state else None,
                "reconciled": bool(state and state.reconciled_at is not None),
                "last_reconcile": state.last_reconcile if state else None,
                "openflow_errors": state.errors if state else 0,
                "expected_flows": self.expected_flow_count(dpid),
            })
        return rows

    def _switch_row(self, switch: str) -> dict:
        dpid = self.graph.dpid(switch)
        return {"id": switch, "dpid": dpid, "dpid_hex": f"{dpid:016x}",
                "trunk_ports": {str(p): other
                                for p, other in sorted(self.graph.trunk_ports(switch).items())},
                "poas": [{"id": p.id, "port": p.port, "network": p.network}
                         for p in self.graph.poas_on(switch)]}

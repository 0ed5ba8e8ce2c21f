"""The lab's router: which host is where, and how packets reach it.

Each access network's gateway is the controller.  A host is learned at its
PoA from the first packet it sends (the unknown-source punt) or its ARP, and
gets a route on every switch of its path and a source check at its PoA; a
host that may not have that address there is refused, and its packets are
dropped for a while.  A host whose source check idles out, or whose MAC shows
up in another network, is polled with a unicast ARP from its gateway before
it is forgotten (a host that only receives is still there); an MN that
arrives where it pre-switched to, or that a tunnel now reaches elsewhere, is
forgotten where it was at once.  ARP for the gateway, for a known host of the
same network and for an nCoA whose tunnel is up (RFC 6252 §7.4) is answered by
proxy; a packet for an address not learned yet is held while the address is
resolved, within bounds (``pending_*``), and released once its host is
learned.

The router decides and returns :class:`~mpa_sdn.openflow.Send` batches, as
the rest of the core does; :mod:`mpa_sdn.controller` hands it the events.
"""

from __future__ import annotations

import collections
import ipaddress
import logging

from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_sdn import forwarding, packets
from mpa_sdn import openflow as of
from mpa_sdn.forwarding import Host
from mpa_sdn.departures import Departures
from mpa_sdn.openflow import Send
from mpa_sdn.resolution import Resolution
from mpa_sdn.tables import EXACT_MASK, Feature, address_of, feature_of, host_cookie
from mpa_sdn.topology import PoA

LOG = logging.getLogger("mpa_sdn.controller")   # the router's lines were the controller's


def address_user(hosts, address: str) -> str | None:
    """The MAC of the learned host using ``address``, or None (the CA's DAD asks)."""
    host = hosts.get(address)
    return host.mac if host is not None else None


def mac_attached(hosts, mac: str, network: str) -> bool:
    """A host with ``mac`` is learned in ``network`` now (the AA asks)."""
    return any(h.poa.network == network for h in hosts.of_mac(mac))


class Router(Departures):
    """Hosts learned, refused and polled; ARP; held packets.  ``hosts`` (the
    host table, correspondents already in it) and ``switches`` (dpid -> the
    connected switch) are shared with the rest of the core; ``mpa`` is the AA
    and CA (told who uses which address), ``mobility`` follows each MN's
    moves."""

    def __init__(self, graph, settings, counters, hosts, switches, mpa, mobility):
        self.graph, self.settings, self.counters = graph, settings, counters
        self.hosts, self.switches, self.mpa, self.mobility = hosts, switches, mpa, mobility
        # Each host's path, and per switch the hosts routed through it and
        # the source checks it holds: a switch's flows and their count cost
        # its own hosts, not every host (the views and reconciliation ask per switch).
        self._host_paths: dict[str, frozenset] = {}
        self._routed: dict[str, set[str]] = collections.defaultdict(set)
        self._checks: collections.Counter = collections.Counter()
        for host in list(hosts.values()):
            self._remember(host)
        topology = graph.topology
        self.poa_at = {(graph.dpid(p.switch), p.port): p for p in topology.poas.values()}
        # The gateways this controller answers for: another domain's are routed there.
        self.gateways = {str(n.gateway): n for n in topology.networks.values()
                         if topology.serves(n)}
        self._gateway_macs = {n.gateway_mac for n in topology.networks.values()}
        self._static_counts: dict[str, int] = {}
        self._static_shared = forwarding.StaticShape(graph)  # what every switch's count shares
        self.resolution = Resolution(graph, settings, counters, switches)
        self.probing: dict[str, float] = {}  # address -> when to give up on it
        self.answered: dict[str, float] = {}  # address -> when it answered a poll (departures)
        self._rejected: dict[tuple, float] = {}  # (dpid, port, mac, address) -> drop ends

    # -- flows ----------------------------------------------------------------

    def flows_for(self, switch: str) -> list:
        """The routes and source checks of every host on ``switch``, by address."""
        flows = []
        for address in sorted(self._routed.get(switch, ()), key=ipaddress.IPv4Address):
            flows += self._host_flows(self.hosts[address]).get(switch, [])
        return flows

    def flow_count(self, switch: str) -> int:
        """len(static flows + flows_for(switch)), without building any flow-mod."""
        return (self._static_count(switch) + len(self._routed.get(switch, ()))
                + self._checks[switch])

    def _static_count(self, switch: str) -> int:
        count = self._static_counts.get(switch)
        if count is None:
            count = self._static_counts[switch] = forwarding.static_flow_count(
                self.graph, switch, self._static_shared)
        return count

    def switch_connected(self, dpid: int) -> None:
        # Reconciliation removes its temporary drops: a refused source that
        # is still there is refused, and dropped, anew.
        for key in [k for k in self._rejected if k[0] == dpid]:
            del self._rejected[key]

    # -- hosts ------------------------------------------------------------

    def _host_flows(self, host: Host) -> dict[str, list]:
        return forwarding.host_flows(self.graph, host, self.settings.host_idle_timeout_s)

    def _remember(self, host: Host) -> None:
        self._unindex(host.address)
        self.hosts[host.address] = host
        path = self._host_paths[host.address] = frozenset(forwarding.host_path(self.graph, host))
        for switch in path:
            self._routed[switch].add(host.address)
        self._checks[host.poa.switch] += 1

    def _unindex(self, address: str) -> frozenset:
        """The host's path, taken out of the per-switch indexes (empty if unknown)."""
        path = self._host_paths.pop(address, frozenset())
        for switch in path:
            routed = self._routed[switch]
            routed.discard(address)
            if not routed:
                del self._routed[switch]
        old = self.hosts.get(address)
        if path and old is not None:
            self._checks[old.poa.switch] -= 1
            if not self._checks[old.poa.switch]:
                del self._checks[old.poa.switch]
        return path

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
        if reason == "conflict" and address not in self.probing:
            sends += self._poll(self.hosts[address], now)
        if dpid in self.switches:
            self._rejected[key] = now + self.settings.reject_hold_s
            sends.append(Send(dpid, forwarding.reject_flows(poa.port, mac, address,
                                                             self.settings.reject_hold_s)))
        return sends

    def _poll(self, host: Host, now: float) -> list[Send]:
        """Ask a known host, by unicast ARP from its gateway, whether it is still there."""
        self.probing[host.address] = now + self.settings.host_probe_s
        self.counters["host_probe_sent"] += 1
        dpid = self.graph.dpid(host.poa.switch)
        if dpid not in self.switches:
            return []
        network = self.graph.network(host.poa.network)
        poll = packets.arp_request(sender_mac=network.gateway_mac, sender_ip=str(network.gateway),
                                   target_ip=host.address, eth_dst=host.mac)
        return [Send(dpid, [of.packet_out(poll, [of.output(host.poa.port)])])]

    def learn(self, mac: str, address: str, poa: PoA, now: float,
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
            return self._seen_again(new, now, source_check_missed)
        self._remember(new)
        self.probing.pop(address, None)
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
        _, left = self.mobility.host_seen(mac, address, poa, how, now)
        return (self.mobility.take_deliveries() + sends   # deliveries need no routes: first
                + self.mobility.drain() + self._release_pending(address, now)
                + self._left_behind(new, left, now))

    def _seen_again(self, host: Host, now: float, source_check_missed: bool) -> list[Send]:
        """A host where we know it is: still there.  Back from elsewhere (its
        MN was last seen at another PoA), the hosts it left are looked at."""
        # An MN seen here is attached here (RFC 6252 C.2).
        self.mpa.host_seen(host.mac, host.poa.network, now)
        answered = self.probing.pop(host.address, None) is not None
        if answered:
            self.counters["host_probe_answered"] += 1
            self.answered[host.address] = now
        back, left = self.mobility.host_seen(host.mac, host.address, host.poa, "refresh", now)
        sends = []
        dpid = self.graph.dpid(host.poa.switch)
        if (answered or source_check_missed) and dpid in self.switches:
            # Its source check is gone: it idled out (the host has just
            # answered our poll) or it idled out as this packet came.
            self.counters["learn_refreshed"] += 1
            sends.append(Send(dpid, self._host_flows(host)[host.poa.switch], barrier=True))
        # What it left behind last: its deletes and polls follow its routes.
        return sends + self.mobility.drain() + (
            self._left_behind(host, left, now) if back else [])

    def forget_host(self, address: str, reason: str, now: float) -> list[Send]:
        host = self.hosts.get(address)
        if host is None or host.static:
            return []
        path = self._unindex(address)
        del self.hosts[address]
        self.probing.pop(address, None)
        self.answered.pop(address, None)
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
        poa = self.poa_at.get((dpid, port))
        if poa is None:
            return []
        if not gone:
            # A PoA came up: if one MN is pre-switching to its network, that
            # is the MN arriving (RFC 6252 §6.3 step 5), before it says so.
            handover = self.mobility.expecting(poa)
            if handover is None or any(True for _ in self.hosts.at_poa(poa)):
                return []
            return self.learn(handover.mac, handover.address, poa, now, how="port")
        sends = []
        for address in sorted(h.address for h in self.hosts.at_poa(poa)):
            sends += self.forget_host(address, "link_down", now)
        return sends

    def source_check_removed(self, dpid: int, cookie: int, reason: int, match: dict,
                             now: float) -> list[Send]:
        """A flow removed: if a host's current source check idled out, poll it
        (see Controller.flow_removed)."""
        if reason != ofp.OFPRR_IDLE_TIMEOUT or feature_of(cookie) != Feature.HOST:
            return []
        host = self.hosts.get(address_of(cookie))
        if host is None or host.static or self.graph.dpid(host.poa.switch) != dpid:
            return []
        seen = (match.get("in_port"), str(match.get("eth_src", "")).lower())
        if seen != (host.poa.port, host.mac):
            self.counters["flow_removed_stale"] += 1
            return []
        return self._poll(host, now)

    # -- packet-ins -------------------------------------------------------

    def unknown_source(self, dpid, in_port, frame, data, now) -> list[Send]:
        """A packet from a source its PoA's switch has no check for."""
        poa = self.poa_at.get((dpid, in_port))
        if poa is None:
            self.counters["packet_in_unexpected"] += 1
            return []
        if frame.ip_src == packets.UNSPECIFIED:
            # A host with no address yet (a DHCP client): nothing to learn,
            # and no drop flow either, which would also catch its ARP probes.
            self.counters["packet_in_unaddressed"] += 1
            return []
        binding = self.mobility.bindings.get(frame.ip_src)
        if (binding is not None and binding.mac == frame.eth_src
                and self._refusal(frame.eth_src, frame.ip_src, poa) == "address"):
            return self._home_address_seen(binding, poa, data, now)
        sends = self.learn(frame.eth_src, frame.ip_src, poa, now, source_check_missed=True,
                           how="packet")
        host = self.hosts.get(frame.ip_src)
        if host is not None and (host.mac, host.poa) == (frame.eth_src, poa):
            # The packet that taught us the host goes on its way too: routed
            # from the top of the pipeline, now that its routes are in place.
            sends.append(Send(dpid, [of.packet_out(data, [of.output(ofp.OFPP_TABLE)])]))
        return sends

    def _home_address_seen(self, binding, poa: PoA, data: bytes, now: float) -> list[Send]:
        """The MN's first packets from its home address where its binding's flows are
        not yet (its ACKs): pre-switching here, it has arrived; and from its care-of
        here, the packet goes on, as those flows will send it.  No drop flow."""
        self.counters["learn_home_address"] += 1
        care_of = self.mobility.arriving(binding.mac, poa.network)
        dpid = self.graph.dpid(poa.switch)
        sends = [] if care_of is None else self.learn(binding.mac, care_of, poa, now, how="home")
        if self.hosts.get(binding.care_of) == Host(binding.care_of, binding.mac, poa) \
                and dpid in self.switches:
            self.counters["learn_home_address_forwarded"] += 1
            sends.append(Send(dpid, [of.packet_out(data, [of.set_field(
                ipv4_src=binding.care_of), of.output(ofp.OFPP_TABLE)])]))
        return sends

    def deliver(self, host: Host, data: bytes, forwarded: bool) -> list[Send]:
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

    def arp(self, dpid, in_port, frame, now) -> list[Send]:
        poa = self.poa_at.get((dpid, in_port))
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
            sends += self.learn(a.src_mac, a.src_ip, poa, now)
            host = self.hosts.get(a.src_ip)
            if host is None or (host.mac, host.poa) != (a.src_mac, poa):
                return sends  # refused: it gets no answers from us either
        if a.opcode != packets.ARP_REQUEST:
            return sends
        target = self.hosts.get(a.dst_ip)
        if self._answers(a, network, target):
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
            sends += self.resolution.ask(a.dst_ip, now)
        return sends

    def _answers(self, a, network, target: Host | None) -> bool:
        """Whether the gateway answers the ARP request ``a`` by proxy."""
        tunnel = self.mobility.tunnels.get(a.dst_ip)
        return a.dst_ip == str(network.gateway) or (
            target is not None and target.poa.network == network.id and target.mac != a.src_mac
        ) or (
            # Proxy ARP for an nCoA while its tunnel is up (RFC 6252 §7.4):
            # the MN is not here yet, its address is.
            target is None and tunnel is not None and tunnel.network == network.id)

    def routed(self, dpid: int, frame: bytes) -> list[Send]:
        """A frame the controller sends, routed by the switch it gives it to
        (an answer to another domain, whose hosts it does not know)."""
        if dpid not in self.switches:
            self.counters["deliver_disconnected"] += 1
            return []
        return [Send(dpid, [of.packet_out(frame, [of.output(ofp.OFPP_TABLE)])])]

    def to_gateway(self, dpid: int, frame) -> list[Send]:
        """A packet for a gateway itself: echo requests are answered."""
        network = self.gateways[frame.ip_dst]
        source = self.hosts.get(frame.ip_src)
        there = self.graph.network_of_address(frame.ip_src)
        # From another domain (its prefix is routed, its hosts are not ours):
        # the reply is routed back from where the request came in.
        foreign = source is None and there is not None and not self.graph.topology.serves(there)
        if frame.icmp_echo is None or (source is None and not foreign):
            self.counters["gateway_packet_ignored"] += 1
            return []
        self.counters["gateway_echo_reply"] += 1
        reply = packets.icmp_echo_reply(src_mac=network.gateway_mac,
                                        dst_mac=frame.eth_src if foreign else source.mac,
                                        src_ip=frame.ip_dst, dst_ip=frame.ip_src,
                                        echo=frame.icmp_echo)
        if foreign:
            return self.routed(dpid, reply)
        return self.deliver(source, reply, forwarded=False)

    # -- resolution and held packets (mpa_sdn.resolution) --------------------------

    def unresolved(self, frame, data, now) -> list[Send]:
        """A packet for an address with no route: held while it is resolved."""
        host = self.hosts.get(frame.ip_dst)
        if host is not None:
            # Raced with the host's routes being installed.
            return self.deliver(host, data, forwarded=True)
        if self.graph.network_of_address(frame.ip_dst) is None:
            self.counters["packet_in_unexpected"] += 1
            return []
        return self.resolution.hold(frame.ip_dst, data, now)

    def _release_pending(self, address: str, now: float) -> list[Send]:
        sends = [s for data in self.resolution.release(address, now)
                 for s in self.deliver(self.hosts[address], data, True)]
        self.counters["pending_released"] += len(sends)  # the rest: deliver_disconnected
        return sends

    def tick(self, now: float) -> list[Send]:
        """Expire held packets, old resolution records, refusals and unanswered polls."""
        self.resolution.tick(now)
        for key in [k for k, ends in self._rejected.items() if ends <= now]:
            del self._rejected[key]
        for address in [a for a, t in self.answered.items()
                        if now - t >= self.settings.host_probe_s]:
            del self.answered[address]
        sends = []
        for address in sorted(a for a, deadline in self.probing.items() if deadline < now):
            del self.probing[address]
            sends += self.forget_host(address, "idle", now)
        return sends

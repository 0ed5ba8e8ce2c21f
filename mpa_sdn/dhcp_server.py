"""The DHCP server's decisions: which lease a DHCP client gets, or none.

Ordinary hosts get ordinary DHCP.  An MN speaks DHCP too (RFC 6252 §7.3.3):
unicast from its current address to a candidate network's gateway, once
pre-authenticated for that network, or at its new PoA with its nCoA; either
way it is the same client as over the MPA signalling, and its lease is the
one the CA gave it.  What the server decides is a :class:`DhcpDecision`;
the controller builds the frame (mpa_sdn/dhcp.py).
"""

from __future__ import annotations

import ipaddress
import logging
from dataclasses import dataclass

from mpa_sdn import dhcp as d
from mpa_sdn.ca import BOUND, OFFERED, Lease, mpa_client

LOG = logging.getLogger("mpa_sdn.service")   # the service's lines, as they were


@dataclass(frozen=True)
class DhcpDecision:
    """What the DHCP server answers; the caller builds the frame."""

    message_type: int
    address: str = "0.0.0.0"
    lease_time: int | None = None
    message: str | None = None


@dataclass(frozen=True)
class _Client:
    """Who asks, as the CA knows it."""

    key: str                  # the CA's client key
    identity: str | None      # the MN's, if it is one
    by_mac: bool              # its MAC alone finds its lease
    same_mac: Lease | None    # a lease of the same MAC (an MN's first)


class DhcpServer:
    """Every network's DHCP server, deciding from the AA's MPA-SAs and the
    CA's pools (``wall`` seconds throughout, as the agents keep them)."""

    def __init__(self, topology, aa, ca, counters):
        self.topology, self.aa, self.ca, self.counters = topology, aa, ca, counters

    def serve(self, request, network_id: str, proactive: bool, wall: float,
              learned: bool = False) -> DhcpDecision | None:
        """Serve one DHCP request for ``network_id``; None means no answer.

        ``proactive``: a unicast request from an address outside the network
        (RFC 6252 §7.3.3), served only to an MN pre-authenticated for it.
        ``learned``: it came from the host the controller knows at that PoA
        (address, MAC and port), not just from someone using its MAC.
        """
        network = self.topology.networks[network_id]
        if network_id not in self.ca.pools:
            self.counters["dhcp_not_served"] += 1
            return None
        identity = None
        if proactive:
            sa = self.aa.sa_for_mac(request.chaddr, network_id, wall)
            if sa is None or request.flags_broadcast or request.eth_src != request.chaddr:
                self.counters["dhcp_proactive_refused"] += 1
                LOG.info("unicast DHCP for network=%s from %s mac=%s identity=%s refused: "
                         "not pre-authenticated", network_id, request.ip_src, request.chaddr,
                         self.aa.identity_of(request.chaddr))
                return None
            identity = sa.identity
            self.counters["dhcp_proactive"] += 1
        client = self._client(request, network_id, identity, learned)
        kind = request.message_type
        if kind == d.DISCOVER:
            return self._discover(request, network, client, wall)
        if kind == d.REQUEST:
            return self._request(request, network, client, wall)
        if kind in (d.RELEASE, d.DECLINE):
            return self._release(request, network, client, learned, wall)
        if kind == d.INFORM:
            return DhcpDecision(d.ACK)
        self.counters["dhcp_unexpected_type"] += 1
        return None

    def _client(self, request, network_id: str, identity: str | None,
                learned: bool) -> _Client:
        pool = self.ca.pools[network_id]
        mn_lease = next((l for l in pool.leases_of_mac(request.chaddr)
                         if l.identity is not None), None)
        if identity is None and learned and mn_lease is not None:
            # The MN itself, at its PoA with its nCoA, speaking DHCP (§7.3.3:
            # the same client, whichever protocol it asks with).
            identity = mn_lease.identity
        key = mpa_client(identity, request.chaddr) if identity else request.client_key()
        # A lease of the same MAC is the client's own only if it is an
        # ordinary DHCP lease, or the sender is the host we know there: an
        # MN's lease does not go to whoever borrows its MAC.
        same_mac = mn_lease or pool.lease_of_mac(request.chaddr)
        by_mac = learned or (same_mac is not None and same_mac.identity is None)
        return _Client(key, identity, by_mac, same_mac)

    def _lease_time(self, network) -> int:
        return self.ca.policy_of(network.id).lease_time_s   # the network's policy

    def _discover(self, request, network, client: _Client, wall: float) -> DhcpDecision | None:
        result = self.ca.allocate(network.id, client.key, request.chaddr, wall, state=OFFERED,
                                  identity=client.identity, hostname=request.hostname,
                                  requested=request.requested_ip, by_mac=client.by_mac)
        if not isinstance(result, Lease):
            self.counters["dhcp_no_offer"] += 1   # the client will retry; DAD is running
            return None
        return DhcpDecision(d.OFFER, result.address, self._lease_time(network))

    def _request(self, request, network, client: _Client, wall: float) -> DhcpDecision | None:
        if request.server_id not in (None, str(network.gateway)):
            self.counters["dhcp_request_other_server"] += 1
            return None
        wanted = request.requested_ip or (request.ciaddr if request.ciaddr != "0.0.0.0"
                                          else None)
        mac = request.chaddr if client.by_mac else None
        lease = self.ca.lease_for(network.id, client.key, mac)
        if lease is None or (wanted is not None and wanted != lease.address):
            if request.server_id is None and lease is None:
                # INIT-REBOOT for an address we never gave: not ours to refuse
                # unless it is outside the network.
                if wanted and ipaddress.IPv4Address(wanted) in network.prefix:
                    self.counters["dhcp_request_unknown"] += 1
                    return None
            self.counters["dhcp_nak"] += 1
            return DhcpDecision(d.NAK, message="no such lease; start again")
        lease = self.ca.allocate(network.id, client.key, request.chaddr, wall, state=BOUND,
                                 identity=client.identity, hostname=request.hostname,
                                 by_mac=client.by_mac)
        self.counters["dhcp_ack"] += 1
        return DhcpDecision(d.ACK, lease.address, self._lease_time(network))

    def _release(self, request, network, client: _Client, learned: bool,
                 wall: float) -> None:
        """A DHCPRELEASE or DHCPDECLINE: neither is answered."""
        release = request.message_type == d.RELEASE
        lease = self.ca.lease_for(network.id, client.key,
                                  request.chaddr if client.by_mac else None)
        address = request.ciaddr if release else request.requested_ip
        if lease is None and client.same_mac is not None and not client.by_mac:
            lease = client.same_mac  # an MN's lease, asked for with its MAC: refused below
        if lease is None or lease.address != address:
            return None
        if lease.identity is not None and not learned:
            # An MN's lease ends only at the word of the host we know at
            # that PoA: a MAC alone is easily borrowed.
            self.counters["dhcp_release_refused"] += 1
            return None
        if release:
            self.ca.release(network.id, lease.client, wall)
        else:
            self.ca.declined(network.id, lease.address, wall)
        return None

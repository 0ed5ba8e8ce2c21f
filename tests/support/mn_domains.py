"""mn1's world with one controller per domain (topologies/inter_domain.yaml):
domain-a's and domain-b's controllers, each alone on its own fake switches
(network_rig's Rig over serve_domain), and mn1 attached in net-a1 at
ap-a1-1 with its oCoA.

The MN reaches them as it would: over REST, each domain's controller at its
own URL (an urllib opener that records where each request went); in-band,
each datagram enters the domain of the gateway it is for where it would: at
mn1's PoA when it is sent from an address of that domain's networks, else
across the border (from another domain, or through that domain's
MN-terminated tunnel); the answer is the datagram that comes back to it the
same way.  Nothing here runs ``ip`` or ``nft``: mn_fakes' fakes do.
"""

from __future__ import annotations

import io
import re
import socket
import urllib.error
import urllib.parse

from mpa_mn.binding_rewrite import Nft, Rewrites
from mpa_mn.channels import Controllers, InbandChannel, RestChannel
from mpa_mn.mobile_node import MobileNode
from mpa_mn.vif import Ip, Vifs
from mpa_protocol import messages
from mpa_sdn.config import load_topology
from mpa_sdn.domain_view import is_foreign_switch, serve_domain
from mpa_sdn.service import REST, Origin
from mpa_sdn.store import MemoryStore
from support.fakeoftable import udp_packet
from support.handover_rig import PORT, WALL_OFFSET, settle_dad
from support.mn_fakes import CREDENTIALS, Clock, FakeIp, FakeNft, Response
from support.network_rig import Rig
from support.paths import ROOT
from support.aaa import radius_servers
from support.service_rig import IDENTITY, MN_MAC, counter_entropy

OCOA = "10.1.1.50"             # mn1's address in net-a1
HOME = "10.255.0.1"
CN = "10.0.0.10"               # cn1, domain-a's correspondent
URLS = {"domain-a": "http://domain-a:8080", "domain-b": "http://domain-b:8081"}
BORDER = {"domain-a": ("core-a", 9), "domain-b": ("core-b", 9)}
ROUTER_MAC = "02:00:00:00:aa:01"    # the other side of a border
SOURCE_PORT = 40001


class Domains:
    def __init__(self):
        whole = load_topology(str(ROOT / "topologies" / "inter_domain.yaml"))
        self.rigs = {}
        for domain in ("domain-a", "domain-b"):
            own = serve_domain(whole, domain)
            rig = Rig(own, store=MemoryStore(), radius_servers=radius_servers(own),
                      entropy=counter_entropy(b"core" + domain.encode()),
                      wall_offset=WALL_OFFSET)
            rig.connect_all()
            settle_dad(rig)
            self.rigs[domain] = rig
        self.a = self.rigs["domain-a"]
        self.a.add_host("mn1", MN_MAC, OCOA, "ap-a1-1")
        assert len(self.a.ping("mn1", CN).to("cn1")) == 1
        self.requests = []     # (domain, path) of each REST request

    def domain_of_address(self, address: str) -> str | None:
        for domain, rig in self.rigs.items():
            network = rig.graph.network_of_address(address)
            if network is not None and rig.topology.serves(network):
                return domain
        return None

    def wall(self) -> float:
        return self.a.core.mpa.wall(self.a.now)

    # -- REST -------------------------------------------------------------------------

    def open(self, request, timeout=None):
        """The urllib opener: each domain's REST layer at its URL."""
        parts = urllib.parse.urlsplit(request.full_url)
        [domain] = [d for d, url in URLS.items() if urllib.parse.urlsplit(url).netloc
                    == parts.netloc]
        self.requests.append((domain, parts.path))
        match = re.fullmatch(r"/mpa/v1/networks/([^/]+)/(\w+)", parts.path)
        network, kinds = ((None, ("discover",)) if parts.path == "/mpa/v1/discover"
                          else (match[1], messages.SIGNAL_ENDPOINTS[match[2]]))
        rig = self.rigs[domain]
        # As mn_world's core: the answer at once, what the core sends to its switches.
        [answer] = rig.core.mpa.handle(request.data, Origin(REST, "192.0.2.9", network),
                                       rig.now, kinds)
        rig.run(rig.core.mobility.drain())
        if answer.status >= 400:
            raise urllib.error.HTTPError(request.full_url, answer.status, "", {},
                                         io.BytesIO(answer.body))
        return Response(answer.status, answer.body)

    # -- in-band ------------------------------------------------------------------------

    def sockets(self, clock: Clock):
        """The in-band channel's socket factory; silence is ``clock``'s time passing."""
        return lambda local: Datagrams(self, local, clock)

    def datagram(self, source: str, gateway: str, port: int, data: bytes) -> list[tuple]:
        """``data`` from ``source`` to ``gateway``:``port``, entering the
        gateway's domain where it would; the answers that come back (as
        :meth:`_answers`)."""
        domain = self.domain_of_address(gateway)
        rig = self.rigs[domain]
        network = rig.graph.network_of_address(gateway)
        if self.domain_of_address(source) == domain and source == OCOA:
            outcome = rig.udp("mn1", gateway, port, data, SOURCE_PORT, src_ip=source)
        else:
            switch, border_port = BORDER[domain]
            outcome = rig.inject(switch, border_port, udp_packet(
                ROUTER_MAC, network.gateway_mac, source, gateway, SOURCE_PORT, port, data))
        return self._answers(outcome, source)

    def wait(self, seconds: float, source: str) -> list[tuple]:
        """Time passing in every domain; the answers to ``source`` it lets out
        (one held until its flows work)."""
        answers = []
        for rig in self.rigs.values():
            rig.now += seconds
            answers += self._answers(rig.run(rig.core.tick(rig.now)), source)
        return answers

    @staticmethod
    def _answers(outcome, source: str) -> list[tuple]:
        """The datagrams to ``source``'s port, delivered to mn1 or leaving the
        domain by its border: (data, where from)."""
        return [(p["payload"], (p["ipv4_src"], p["udp_src"])) for p in outcome.to("mn1") + [
                    p for sw, peer, p in outcome.hops if is_foreign_switch(peer)]
                if p.get("ipv4_dst") == source and p.get("udp_dst") == SOURCE_PORT]

    # -- mn1 ----------------------------------------------------------------------------

    def node(self, channel="rest", ip=None, nft=None, domain_controllers=True,
             credentials=CREDENTIALS) -> MobileNode:
        """mn1 at its oCoA, over ``channel``, its REST requests to each
        domain's controller (``domain_controllers``), else all to domain-a's."""
        clock = Clock()

        def inband(source, gateway=None):
            return InbandChannel(source, gateway=gateway, socket_factory=self.sockets(clock),
                                 clock=clock, sleep=lambda s: None)
        if ip is None:
            ip = FakeIp()
            ip.links["eth0"]["addrs"] = [(OCOA, 24), (HOME, 32)]
        controllers = Controllers.of(URLS["domain-a"],
                                     dict(URLS) if domain_controllers else {})
        main = (RestChannel(controllers, opener=self, sleep=lambda s: None)
                if channel == "rest" else inband(OCOA, "10.1.1.1"))
        return MobileNode(credentials, MN_MAC, OCOA, main, vifs=Vifs(Ip(ip)),
                          entropy=counter_entropy(b"mn"), wall=self.wall, inband=inband,
                          pana_socket=self.sockets(clock), clock=clock,
                          rewrites=Rewrites(Nft(nft if nft is not None else FakeNft())))


class Datagrams:
    """A UDP socket of the MN's: what it sends goes through :meth:`Domains.datagram`."""

    def __init__(self, domains: Domains, local: str, clock: Clock):
        self.domains, self.local, self.clock = domains, local, clock
        self.queue, self.closed, self.timeout = [], False, None

    def sendto(self, data, address):
        self.queue += self.domains.datagram(self.local, address[0], address[1], data)

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        if not self.queue:
            self.clock.now += self.timeout
            self.queue += self.domains.wait(self.timeout, self.local)
            raise socket.timeout()
        return self.queue.pop(0)

    def close(self):
        self.closed = True

"""An AA/CA service on the default topology, with a memory store and a
deterministic clock, and an MN speaking to it through the real codec."""

from __future__ import annotations

import collections
import hashlib
import itertools

from support.aaa import FakeRadius, preauthenticate, radius_servers
from support.paths import DEFAULT_TOPOLOGY
from mpa_mn import protocol
from mpa_mn.credentials import EAP_TLS
from mpa_sdn.assembly import domains_aaa
from mpa_sdn.config import load_topology
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.service import INBAND, REST, MpaService, Origin
from mpa_sdn.store import MemoryStore

TOPOLOGY = DEFAULT_TOPOLOGY
MN_MAC = "02:00:00:00:01:01"
IDENTITY = "mn1@domain-a"
EVE = "eve@domain-b"   # another subscriber of domain-b
PANA_SOURCE_PORT = 40716


def counter_entropy(seed=b"rig"):
    """Deterministic 'random' bytes: every run of a test sees the same nonces."""
    counter = itertools.count()

    def entropy(n):
        out = b""
        while len(out) < n:
            out += hashlib.sha256(seed + next(counter).to_bytes(8, "big")).digest()
        return out[:n]
    return entropy


class Rig:
    def __init__(self, store=None, in_use=None, topology=None):
        self.topology = topology or load_topology(TOPOLOGY)
        self.graph = NeighbourhoodGraph(self.topology)
        self.store = store if store is not None else MemoryStore()
        self.counters = collections.Counter()
        self.now = 1000.0
        self.used = set(in_use or ())
        self.location: dict[str, str] = {}  # MAC -> the network it is attached to
        self.users: dict[str, str] = {}     # address -> MAC of the learned host using it
        self.mn_entropy = counter_entropy(b"mn")
        self.service = self._service()

    def _service(self):
        entropy = counter_entropy(b"aa%d" % id(self))
        self.radius = FakeRadius(self.topology)
        return MpaService(self.topology, self.graph,
                          domains_aaa(self.topology, radius_servers(self.topology),
                                      self.counters, entropy),
                          self.store, self.counters, entropy, 1_700_000_000.0,
                          lambda address: self.users.get(address) or (
                              "02:00:00:00:99:99" if address in self.used else None),
                          lambda mac, network: self.location.get(mac) == network)

    def seen(self, mac: str, address: str, network: str) -> None:
        """The core learned the host at a PoA of ``network``."""
        self.location[mac] = network
        self.service.address_used(address, self.now)
        self.service.host_seen(mac, network, self.now)

    def left(self, mac: str, network: str) -> None:
        if self.location.get(mac) == network:
            del self.location[mac]
        self.service.host_left(mac, network, self.now)

    def restart(self):
        self.counters = collections.Counter()
        self.service = self._service()

    def send(self, data: bytes, network: str | None, channel=REST, source="10.1.1.199",
             mac=None):
        origin = Origin(channel, source, network, mac if channel == INBAND else None)
        return self.service.handle(data, origin, self.now)

    def one(self, data, network, **kw):
        answers = self.send(data, network, **kw)
        assert len(answers) == 1, answers
        return answers[0]

    def configure(self, state) -> dict:
        """A config-request; if DAD holds it back, its answer once the probes ran."""
        data, seq = protocol.request(state, "config-request")
        answers = self.send(data, state.network) or self.settle_dad()
        assert len(answers) == 1, answers
        return protocol.check_answer(state, answers[0].body, seq, "config")

    def bind(self, state, **kw) -> None:
        """The MN's first signed message (instructions, which the service
        alone refuses), whose ``mn_mac`` binds the SA to its MAC: PANA names none."""
        data, _ = protocol.request(state, "instructions")
        self.send(data, state.network, **kw)

    def settle_dad(self, rounds=20, step=0.1):
        """Let the CA's probes run out unanswered (nobody squats)."""
        answers = []
        for _ in range(rounds):
            probes, ready = self.service.tick(self.now)
            answers += ready
            self.now += step
        return answers

    def pana(self, data: bytes, network: str, source="10.1.1.199", mac=None,
             port=PANA_SOURCE_PORT) -> list:
        """A PANA message to ``network``'s AA; ``mac``: the frame's source MAC
        (on a link of ours), None when routed from elsewhere."""
        origin = Origin(INBAND, source, network, mac)
        return self.service.pana(data, origin, port, self.now)

    def radius_answer(self, data: bytes, source) -> list:
        return self.service.radius(data, source, self.now)

    def preauth(self, network="net-b1", domain="domain-b", identity=IDENTITY, mac=MN_MAC,
                source="10.1.1.199", seen_mac=None, method=EAP_TLS, pre=True):
        """mn1 pre-authenticates with ``network``'s AA by PANA (``seen_mac``:
        the source MAC the AA sees, when the MN is on a link of ours)."""
        return preauthenticate(lambda data: self.pana(data, network, source, seen_mac),
                               self.radius_answer, self.radius, network, domain, identity,
                               mac, pre, method, self.mn_entropy)


def preauth_with(service, radius: FakeRadius, now: float, network="net-b1", domain="domain-b",
                 identity=IDENTITY, mac=MN_MAC, source="10.1.1.199", entropy=None):
    """An MN routed to ``network``'s AA (no MAC seen) pre-authenticates by
    PANA with an MpaService (a Controller's ``mpa``) whose RADIUS requests
    ``radius`` answers."""
    origin = Origin(INBAND, source, network, None)
    return preauthenticate(lambda data: service.pana(data, origin, PANA_SOURCE_PORT, now),
                           lambda answer, server: service.radius(answer, server, now), radius,
                           network, domain, identity, mac,
                           entropy=entropy or counter_entropy(b"mn"))


def reconcile_all(core, now: float) -> None:
    """Every switch of the core's topology connected and reconciled (with no
    flows of its own): what DAD waits for before it probes."""
    for dpid in [core.graph.dpid(s) for s in core.graph.switch_ids()]:
        if dpid not in core.switches:
            core.switch_connected(dpid, now)
            core.flow_stats(dpid, [], False)
            core.flows_confirmed(dpid, "reconcile", now)

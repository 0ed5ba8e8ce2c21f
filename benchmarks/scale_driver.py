"""Many MNs through the Ryu application, with fake switches and no Mininet.

:class:`Driver` runs ``apps.mpa_app.MpaApp`` as the controller process would,
minus the sockets: its event handlers are called with fake events, its one
worker is run here (``pump``: every queued event through ``MpaApp.handle``,
timed), and the ticker is emulated (``tick`` every ``TICK_S``, ``mpa tick``
when the core says work is due).  Each switch is a ``fakedatapath.FakeDatapath``
(tests/): it serializes what the application sends, as Ryu's datapath does,
and keeps it in an outbox; the switch side here then applies the outbox to
a flow table and answers barriers and flow-stats requests through the
application's handlers.

Each MN is a generator (:func:`prepare`, :func:`hand_over`) that yields what
it does: a REST signalling request (the facade's call, with the MN's signed
message), a frame its PoA punts (its PANA messages among them, answered by
packet-outs the driver hands back to it), or a condition to wait for.  The
driver keeps ``window`` MNs in flight at once.  Each domain's RADIUS server
is tests/support's FakeRadius (EAP-TTLS/PAP), in place of the application's
RADIUS socket.

The clock and sleep are injected (the real ones by default): a test that
moves its own clock on in its sleep runs the controller's timers without
waiting.  The application reads ``time.monotonic`` itself (``MpaApp.handle``
gives the core its ``now``), so such a test puts the same clock there.
``perf_counter`` only measures (the time in the application, a run's wall
time), never decides.
"""

from __future__ import annotations

import dataclasses
import os
import time
import types
from typing import Callable

from ryu.controller.handler import MAIN_DISPATCHER
from ryu.ofproto import ofproto_v1_3_parser as parser

from apps import mpa_app, runtime
from mpa_mn import protocol
from mpa_mn.credentials import EAP_TTLS_PAP
from mpa_mn.pana_client import PanaClient
from mpa_protocol.pana import PANA_PORT
from mpa_sdn import openflow as of
from mpa_sdn import packets
from mpa_sdn.config import parse_topology
from mpa_sdn.packets import udp_frame
from mpa_sdn.service import REST, Origin
from mpa_sdn.tables import Table
from mpa_lab.topogen import generate, network_id, poa_id

from support.aaa import FakeRadius, peer, radius_servers  # noqa: E402  (tests/ is on the path)
from support.fakedatapath import FakeDatapath, KeyedTable  # noqa: E402

CN_ADDRESS, CN_MAC = "10.0.0.10", "02:00:00:00:0c:01"   # generate()'s correspondent
STALL_S = 0.020   # an event that keeps the worker longer is a stall (the bound)
STEPS = ("attach", "preauth", "configure", "tunnel", "bind", "pre-switch",
         "arrival-to-flows", "complete")


# -- the topology and the MNs' keys ------------------------------------------------

@dataclasses.dataclass(frozen=True)
class Mn:
    index: int                # 1-based
    identity: str
    mac: str
    home: str
    poa: str                  # where it starts
    address: str              # its address there (outside the pool)
    target: str               # the network it hands over to
    target_poa: str           # where it arrives


def scale_topology(mobile_nodes: int, domains: int = 10, networks: int = 20,
                   extra: dict | None = None):
    """A generated topology (ring neighbours) with one MN per PoA, each with
    a home address, and the limits raised for that many MNs; and the MNs.

    MN k starts at the k-th PoA (networks taken in turn) and hands over to
    the next network of the ring, at the PoA of the same number."""
    per_network = -(-mobile_nodes // (domains * networks))
    raw = generate(domains, networks, per_network, neighbours="ring")
    access = [(d, i) for d in range(1, domains + 1) for i in range(1, networks + 1)]
    raw["controller"] = {"max_hosts": 2 * mobile_nodes + 1000}
    # Tunnels outlive the prepare phase (two minutes at 10,000 MNs, more on a
    # loaded machine): the first MNs' would expire before their handover.
    raw["mpa"] = {"max_tunnels": mobile_nodes + 1000, "tunnel_lifetime_s": 3600,
                  "max_pana_sessions": mobile_nodes + 1000, **(extra or {})}
    # Each domain's RADIUS server (answered in-process: see Driver).
    for index, domain in enumerate(sorted(raw["domains"])):
        raw["domains"][domain]["radius"] = {"servers": [
            {"address": "127.0.0.1", "port": 20000 + index, "secret_file": "/unused"}]}
    mns, entries = [], {}
    for k in range(mobile_nodes):
        slot, port = k % len(access), k // len(access) + 1
        d, i = access[slot]
        td, ti = access[(slot + 1) % len(access)]
        number = k + 1
        mac = "02:00:01:" + ":".join(f"{(number >> s) & 0xff:02x}" for s in (16, 8, 0))
        identity = f"mn{number}@domain-{d}"
        home = f"10.255.{number // 250}.{number % 250 + 1}"
        mns.append(Mn(number, identity, mac, home, poa_id(d, i, port),
                      f"10.{d}.{i}.{port + 1}", network_id(td, ti), poa_id(td, ti, port)))
        entries[f"mn{number}"] = {"mac": mac, "attach": poa_id(d, i, port),
                                  "identity": identity, "home_address": home}
    raw["mobile_nodes"] = entries
    topology = parse_topology(raw)
    return topology, FakeRadius(topology, users=[mn.identity for mn in mns], keep=False), mns


# -- the driver -----------------------------------------------------------------------

@dataclasses.dataclass
class Post:
    """A REST signalling request; ``Await(post)`` gives its answer."""
    mn: Mn
    network: str
    data: bytes
    kind: str
    posted: float = 0.0
    answer: object = None
    answered: float = 0.0


@dataclasses.dataclass
class Await:
    post: Post


@dataclasses.dataclass
class Punt:
    """A frame a switch sends to the controller."""
    dpid: int
    port: int
    table: int
    data: bytes


@dataclasses.dataclass
class Until:
    ready: object  # () -> bool


class RadiusWire:
    """The application's RADIUS socket, answered at once by each domain's
    FakeRadius: its answers go to the worker as the socket's would."""

    def __init__(self, app, radius: FakeRadius):
        self.app, self.radius = app, radius

    def send(self, datagram) -> None:
        answer = self.radius.handle(datagram)
        if answer is not None:
            self.app._radius_answer(answer, (datagram.address, datagram.port))

    def handled(self) -> None:
        pass


class Driver:
    def __init__(self, topology, radius: FakeRadius, store, tables=None,
                 clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep):
        self.clock, self.sleep = clock, sleep
        runtime.configure(topology, "mn-scale.yaml", radius_servers(topology), store)
        self.app = mpa_app.MpaApp()
        self.app.radius = RadiusWire(self.app, radius)
        # PANA messages the AAs sent (packet-outs), by the MN's address.
        self.pana_inbox: dict[str, list[bytes]] = {}
        self.core = self.app.core
        self.graph = self.core.graph
        tables = tables or {}
        self.datapaths = {dpid: FakeDatapath(dpid, tables.get(dpid) or KeyedTable())
                          for dpid in (self.graph.dpid(s) for s in self.graph.switch_ids())}
        self.busy = 0.0           # seconds in the application (handlers, worker)
        self.events = 0
        # The longest the worker spent on one event (no other event could
        # go meanwhile), what that event was, and how many took over STALL_S.
        self.longest_event, self.longest_what, self.stalls = 0.0, None, 0
        self.stalls_by: dict[str, int] = {}   # what the stalls were, by the event's name
        # The same by the CPU time this thread spent on the event: on a shared
        # machine an event's wall time also holds the time it waited for a core.
        self.longest_cpu, self.longest_cpu_what, self.stalls_cpu = 0.0, None, 0
        # Flow-mods and packet-outs the switches received (their bytes): a
        # count, and the first ``capture_limit`` of them when capture is a list.
        self.sent, self.capture, self.capture_limit = 0, None, 5000
        self.next_tick = clock() + mpa_app.TICK_S
        self.samples: dict[str, list] = {step: [] for step in STEPS}
        self.record = True

    # -- the application's side --

    def _shell(self, handler, ev) -> None:
        t0 = time.perf_counter()
        handler(ev)
        self.busy += time.perf_counter() - t0

    def pump(self) -> bool:
        """Every queued event through the worker; the switches answer; the
        ticker posts what is due.  False: nothing happened."""
        app, work = self.app, self.app.work
        did = False
        while True:
            self._ticker()
            if not work.qsize():
                break
            did = True
            item = work.get()
            c0, t0 = time.thread_time(), time.perf_counter()
            app.handle(item)
            took, cpu = time.perf_counter() - t0, time.thread_time() - c0
            self.busy += took
            self.events += 1
            if took > self.longest_event:
                self.longest_event, self.longest_what = took, item[0]
            if cpu > self.longest_cpu:
                self.longest_cpu, self.longest_cpu_what = cpu, item[0]
            self.stalls_cpu += cpu > STALL_S
            if took > STALL_S:
                self.stalls += 1
                self.stalls_by[item[0]] = self.stalls_by.get(item[0], 0) + 1
            self._switches()
        return did

    def _ticker(self) -> None:
        """What ``MpaApp._ticker`` posts, checked between events."""
        app, now = self.app, self.clock()
        if now >= self.next_tick:
            self.next_tick = now + mpa_app.TICK_S
            app._post("tick", None, self.core.tick)
        elif not app._mpa_tick_queued:
            due = self.core.next_mpa_tick(now)
            if due is not None and due <= now:
                app._mpa_tick_queued = True
                app._post("mpa tick", None, app._mpa_tick)

    def settle(self, seconds: float) -> None:
        """Run the controller ``seconds`` with nothing new from the MNs."""
        end = self.clock() + seconds
        while self.clock() < end:
            if not self.pump():
                self.sleep(0.002)

    def next_wake(self) -> float:
        due = self.core.next_mpa_tick(self.clock())
        return self.next_tick if due is None else min(self.next_tick, due)

    def _switches(self) -> None:
        for dp in self.datapaths.values():
            if not dp.outbox:
                continue
            messages, dp.outbox = dp.outbox, []
            for msg in messages:
                dp.table.apply(msg)
                for part in of.messages_in(msg):
                    if of.message_name(part) == "OFPPacketOut":
                        self._pana_out(part.data)
                    if of.message_name(part) in ("OFPFlowMod", "OFPPacketOut"):
                        self.sent += 1
                        if self.capture is not None and len(self.capture) < self.capture_limit:
                            self.capture.append(part)
                if isinstance(msg, parser.OFPBarrierRequest):
                    reply = types.SimpleNamespace(datapath=dp, xid=msg.xid)
                    self._shell(self.app._barrier, types.SimpleNamespace(msg=reply))
                elif isinstance(msg, parser.OFPFlowStatsRequest):
                    reply = types.SimpleNamespace(datapath=dp, flags=0,
                                                  body=dp.table.flow_stats())
                    self._shell(self.app._flow_stats, types.SimpleNamespace(msg=reply))

    def _pana_out(self, data) -> None:
        frame = packets.decode(bytes(data or b""))
        if frame is not None and frame.udp is not None and frame.udp[0] == PANA_PORT \
                and frame.ip_dst in self.pana_inbox:
            self.pana_inbox[frame.ip_dst].append(frame.udp[2])

    def connect_all(self) -> None:
        """Every switch connects and is reconciled; DAD fills each reserve."""
        for dp in self.datapaths.values():
            self._shell(self.app._state_change,
                        types.SimpleNamespace(datapath=dp, state=MAIN_DISPATCHER))
        self.pump()
        assert all(s.reconciled_at is not None for s in self.core.switches.values())
        deadline = self.clock() + 60
        while not self._reserves_full():
            assert self.clock() < deadline, "DAD never filled the reserves"
            if not self.pump():
                self.sleep(max(0.0, min(0.01, self.next_wake() - self.clock())))

    def _reserves_full(self) -> bool:
        want = self.core.topology.mpa.dad_reserve
        return all(len(p.verified) >= want and not p.probing
                   for p in self.core.mpa.ca.pools.values())

    # -- the MNs' side --

    def run(self, scripts, window: int) -> float:
        """Run the MNs' generators, ``window`` at a time; the wall time taken."""
        scripts = iter(scripts)
        live: list[list] = []        # [generator, what it waits for]
        started = time.perf_counter()
        exhausted = False
        while live or not exhausted:
            while not exhausted and len(live) < window:
                gen = next(scripts, None)
                if gen is None:
                    exhausted = True
                    break
                live.append([gen, None])
            progressed = False
            for entry in live:
                progressed |= self._advance(entry)
            live = [e for e in live if e[0] is not None]
            if not self.pump() and not progressed:
                self.sleep(max(0.0, min(0.002, self.next_wake() - self.clock())))
        return time.perf_counter() - started

    def _advance(self, entry) -> bool:
        """Step a generator as long as what it waits for is there."""
        gen, waiting = entry
        moved, value = False, None
        while True:
            if isinstance(waiting, Await):
                if waiting.post.answer is None:
                    return moved
                value = waiting.post
            elif isinstance(waiting, Until) and not waiting.ready():
                return moved
            try:
                action = gen.send(value)
            except StopIteration:
                entry[0] = None
                return True
            moved, value, waiting = True, None, None
            if isinstance(action, Post):
                self._post(action)
                value = action
            elif isinstance(action, Punt):
                self._punt(action)
            else:
                waiting = action
            entry[1] = waiting

    def _post(self, post: Post) -> None:
        """What the facade does for a REST request: the core's call on the worker."""
        def reply(answer):
            if post.answer is None:
                # Without its origin, which holds this closure, which holds
                # the post: that cycle would wait for a full collection.
                post.answer = dataclasses.replace(answer, origin=None)
                post.answered = self.clock()
        origin = Origin(REST, post.mn.address, post.network, reply_to=reply)
        post.posted = self.clock()
        core, data, expect = self.core, post.data, (post.kind,)
        self.app._post("rest signal", None,
                       lambda now: core.signal(data, origin, expect, now))

    def _punt(self, punt: Punt) -> None:
        msg = types.SimpleNamespace(datapath=self.datapaths[punt.dpid],
                                    match={"in_port": punt.port}, table_id=punt.table,
                                    data=punt.data)
        self._shell(self.app._packet_in, types.SimpleNamespace(msg=msg))

    def sample(self, step: str, seconds: float) -> None:
        if self.record:
            self.samples[step].append(seconds * 1000)


# -- what each MN does ------------------------------------------------------------------

def preauthenticate(driver: Driver, mn: Mn, domain: str):
    """PANA with the target network's AA from the MN's PoA (UDP 716 to its
    gateway, punted there), EAP-TTLS/PAP relayed to the domain's RADIUS:
    the MN's SaState."""
    graph = driver.graph
    poa, here = graph.poa(mn.poa), graph.network_of_address(mn.address)
    gateway = str(graph.network(mn.target).gateway)
    inbox = driver.pana_inbox.setdefault(mn.address, [])
    client = PanaClient(peer(domain, mn.identity, EAP_TTLS_PAP), pre=True)

    def punt(data: bytes) -> Punt:
        return Punt(graph.dpid(poa.switch), poa.port, Table.ROUTE, udp_frame(
            src_mac=mn.mac, dst_mac=here.gateway_mac, src_ip=mn.address, dst_ip=gateway,
            src_port=40716, dst_port=PANA_PORT, payload=data))
    data = client.initiation()
    while not client.done:
        if data is not None:
            yield punt(data)
        yield Until(lambda: bool(inbox))
        data = client.receive(inbox.pop(0))
    if data is not None:   # the final PAN
        yield punt(data)
    del driver.pana_inbox[mn.address]
    if client.result != "success":
        raise RuntimeError(f"{mn.identity} pre-authentication: {client.result}")
    sa_id, keys = client.established.sa(mn.identity, mn.target)
    return protocol.SaState(mn.target, domain, mn.identity, mn.mac, sa_id, keys,
                            client.established.lifetime)


def _answer(post: Post, expected: str, state=None, seq=None) -> dict:
    answer = post.answer
    if answer.status != 200:
        raise RuntimeError(f"{post.mn.identity} {post.kind}: {answer.status} {answer.fields}")
    if state is None:
        return answer.fields
    return protocol.check_answer(state, answer.body, seq, expected)


def _frame(src_mac, dst_mac, src, dst) -> bytes:
    return udp_frame(src_mac=src_mac, dst_mac=dst_mac, src_ip=src, dst_ip=dst,
                     src_port=40000, dst_port=5001, payload=b"x" * 64)


def prepare(driver: Driver, mn: Mn, states: dict):
    """Attach, pre-authenticate and pre-configure in the target network,
    get a tunnel and bind the home address to the nCoA."""
    graph, core = driver.graph, driver.core
    poa, here = graph.poa(mn.poa), graph.network_of_address(mn.address)
    t0 = driver.clock()
    yield Punt(graph.dpid(poa.switch), poa.port, Table.INGRESS,
               _frame(mn.mac, here.gateway_mac, mn.address, CN_ADDRESS))
    yield Until(lambda: mn.address in core.hosts)
    driver.sample("attach", driver.clock() - t0)

    domain = core.topology.networks[mn.target].served_by
    t0 = driver.clock()
    state = yield from preauthenticate(driver, mn, domain)
    driver.sample("preauth", driver.clock() - t0)

    steps = (("configure", "config-request", "config", {}),
             ("tunnel", "tunnel-request", "tunnel", {}),
             ("bind", "binding-update", "binding-ack", None))
    ncoa = None
    for step, kind, expected, fields in steps:
        if fields is None:
            fields = {"home_address": mn.home, "care_of": ncoa}
        data, seq = protocol.request(state, kind, **fields)
        post = yield Post(mn, mn.target, data, kind)
        yield Await(post)
        answer = _answer(post, expected, state, seq)
        ncoa = ncoa or answer["address"]
        driver.sample(step, post.answered - post.posted)
    states[mn.index] = (state, ncoa)


def hand_over(driver: Driver, mn: Mn, states: dict):
    """Pre-switch (a correspondent's packet for the nCoA is punted at the nAR
    meanwhile and buffered), arrive at the target PoA (the MN's first packet
    there), and wait for the handover to complete."""
    graph, core = driver.graph, driver.core
    state, ncoa = states.pop(mn.index)
    target = graph.network(mn.target)
    nar = graph.dpid(target.access_router)
    data, seq = protocol.request(state, "handover", phase="pre-switch")
    post = yield Post(mn, mn.target, data, "handover")
    # The nAR's trunk port: where a packet from the correspondent comes in.
    yield Punt(nar, 1, Table.ROUTE, _frame(CN_MAC, target.gateway_mac, CN_ADDRESS, ncoa))
    yield Await(post)
    answer = _answer(post, "handover-state", state, seq)
    assert answer["phase"] == "pre-switching", answer
    driver.sample("pre-switch", post.answered - post.posted)

    poa = graph.poa(mn.target_poa)
    handover = core.mobility.handovers[mn.identity]
    yield Punt(graph.dpid(poa.switch), poa.port, Table.INGRESS,
               _frame(mn.mac, target.gateway_mac, ncoa, CN_ADDRESS))
    yield Until(lambda: handover.phase == "completed")
    driver.sample("arrival-to-flows", handover.confirmed_at - handover.arrived_at)
    driver.sample("complete", handover.ended_at - handover.arrived_at)


def check_completed(driver: Driver, mns) -> None:
    """Every MN's handover completed (none switched back) and its binding
    points at its nCoA, learned at the target PoA."""
    core = driver.core
    assert core.counters["handover_completed"] >= len(mns), core.counters
    assert not core.counters["handover_switched_back"], core.counters
    assert not core.counters["handler_error"], core.counters
    for mn in mns:
        binding = core.mobility.bindings[mn.home]
        host = core.hosts[binding.care_of]
        assert (host.mac, host.poa.id) == (mn.mac, mn.target_poa), (mn, host)


def of_the_controller(obj) -> bool:
    """An instance of one of the controller's classes, or one of its
    functions (the cycles a full collection finds are told apart by it)."""
    module = getattr(obj, "__module__", None) if callable(obj) and not isinstance(obj, type) \
        else type(obj).__module__
    return isinstance(module, str) and module.split(".")[0] in (
        "apps", "mpa_sdn", "mpa_protocol", "rest_api")


def state_store(directory: str):
    """The controller's state file, as mpa-controller opens it."""
    from mpa_sdn.store import open_store
    return open_store(os.path.join(directory, "state.db"), grouped=True)

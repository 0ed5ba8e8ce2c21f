"""The scale benchmark's driver (benchmarks/scale_driver.py) with a handful
of MNs, on switches that forward: every handover completes through the Ryu
application, and each MN's traffic then goes where it now is.  Times are
not looked at.

Time is the test's: the driver and the application read one clock, which
only the driver's sleep moves on, so the controller's timers (DAD, a
handover's quiet time and linger) run without waiting and the same on a
loaded machine."""

from __future__ import annotations

import contextlib
import gc
import os
import sys
import types

import pytest

from apps import mpa_app
from support.fakeoftable import FakeNetwork, ipv4_packet
from mpa_sdn.mobility import LINGER_S
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import Feature, feature_of
from support.paths import ROOT

sys.path.insert(0, os.path.join(ROOT, "benchmarks"))

from scale_driver import (CN_ADDRESS, CN_MAC, Driver, check_completed, hand_over,  # noqa: E402
                          of_the_controller, prepare, scale_topology, state_store)

MNS = 6
WALL_OFFSET = 1_700_000_000.0


class Clock:
    """Monotonic time that passes only when someone sleeps."""

    def __init__(self):
        self.now = 1000.0
        self.slept = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds
        self.slept += seconds


@contextlib.contextmanager
def _driven(directory, before_mns=lambda: None):
    """A driver whose MNs have prepared and handed over, on the test's clock;
    ``before_mns`` is called once the switches are up, before the MNs."""
    clock = Clock()
    with pytest.MonkeyPatch.context() as patch:
        # The application's own reads of the clock (its worker's ``now``).
        patch.setattr(mpa_app, "time", types.SimpleNamespace(
            monotonic=clock, time=lambda: WALL_OFFSET + clock()))
        topology, radius, mns = scale_topology(MNS, domains=1, networks=3)
        net = FakeNetwork(NeighbourhoodGraph(topology))
        store = state_store(directory)
        driver = Driver(topology, radius, store, tables=net.by_dpid, clock=clock,
                        sleep=clock.sleep)
        driver.connect_all()
        before_mns()
        states: dict = {}
        driver.run((prepare(driver, mn, states) for mn in mns), window=4)
        driver.capture = []
        driver.run((hand_over(driver, mn, states) for mn in mns), window=4)
        # Past the last handover's linger, and the deletes that settle after it.
        driver.settle(LINGER_S + 0.2)
        yield driver, net, mns, clock
        store.close()


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    with _driven(str(tmp_path_factory.mktemp("mn-scale"))) as driven:
        yield driven


def test_every_mn_hands_over_through_the_application(run):
    driver, net, mns, clock = run
    check_completed(driver, mns)
    counters = driver.core.counters
    assert counters["handover_completed"] == MNS
    assert counters["buffer_flushed"] == MNS        # each MN's buffered packet
    assert not counters["send_to_disconnected"] and not counters["send_failed"]
    assert not driver.app.confirmations, "every barrier was answered"
    assert all(len(samples) == MNS for samples in driver.samples.values())
    # The controller's timers ran on the test's clock.
    assert clock.slept >= LINGER_S and driver.core.counters["dad_probe_sent"] > 0


def test_the_switches_send_each_mn_its_traffic_where_it_arrived(run):
    driver, net, mns, _ = run
    graph = driver.graph
    cn = graph.poa(next(iter(driver.core.topology.correspondents.values())).poa)
    for mn in mns:
        # To the home address: rewritten to the nCoA at the correspondent's
        # edge, routed to the target PoA, restored to the home address there.
        trace = net.send(cn.switch, cn.port, ipv4_packet(CN_MAC, "02:00:00:00:00:01",
                                                         CN_ADDRESS, mn.home))
        [delivery] = trace.deliveries
        poa = graph.poa(mn.target_poa)
        assert (delivery.switch, delivery.port) == (poa.switch, poa.port), mn
        assert (delivery.pkt["ipv4_dst"], delivery.pkt["eth_dst"]) == (mn.home, mn.mac)
        assert not trace.punts, "no buffer left punting"
        # From it: the home address goes out as the nCoA and comes back home.
        gateway = graph.network(mn.target).gateway_mac
        trace = net.send(poa.switch, poa.port, ipv4_packet(mn.mac, gateway, mn.home, CN_ADDRESS))
        [delivery] = trace.deliveries
        assert (delivery.switch, delivery.port) == (cn.switch, cn.port)
        assert delivery.pkt["ipv4_src"] == mn.home


def test_no_tunnel_or_buffer_flow_is_left_behind(run):
    driver, net, mns, _ = run
    left = {feature_of(e.cookie) for sw in net.switches.values() for e in sw.entries}
    assert Feature.TUNNEL not in left and Feature.BUFFER not in left
    assert Feature.BINDING in left
    assert driver.core.mobility.tunnels == {}


def test_the_messages_of_the_handovers_are_built_again_the_same_by_ryu_and_by_templates(run):
    """mn_scale's floor: every flow-mod and packet-out the switches got is
    built again by Ryu's builders and by the templates, to the same bytes
    (message_floor.floor checks that before timing)."""
    import message_floor
    driver, *_ = run
    captured = driver.capture
    assert captured and len(captured) <= driver.sent
    kinds = {msg.name for msg in captured}
    assert kinds == {"OFPFlowMod", "OFPPacketOut"}
    floor = message_floor.floor(captured, rounds=1)
    assert set(floor) == {"ryu_us_per_message", "ryu_with_match_us_per_message",
                          "templates_us_per_message"}


def test_an_mns_whole_life_through_the_application_makes_no_cycle(tmp_path):
    """The full collection (gc_full_every_s) is off by default because the
    controller makes no reference cycles: every cycle the collector finds
    while MNs attach, pre-authenticate, configure, get tunnels, bind, hand
    over and settle is kept (DEBUG_SAVEALL) and none holds the
    controller's objects.  Such a cycle, frozen alive (apps/heap.py), would
    stay in memory until a full collection."""
    found = []

    def watch():
        gc.collect()
        gc.set_debug(gc.DEBUG_SAVEALL)
    try:
        with _driven(str(tmp_path), before_mns=watch) as (driver, *_):
            check_completed(driver, [])
            gc.collect()
            found = [repr(o)[:200] for o in gc.garbage if of_the_controller(o)]
    finally:
        gc.set_debug(0)
        gc.garbage.clear()
    assert found == []

"""A reconnecting switch ends with exactly the flows it should have."""

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_sdn import openflow as of
from mpa_sdn import reconcile
from mpa_sdn.tables import PRIO_HOST, Table, cookie, Feature
from rig import Rig

CN_IP = "10.0.0.10"


@pytest.fixture
def rig(topology):
    rig = Rig(topology)
    rig.connect_all()
    rig.add_host("mn1", "02:00:00:00:01:01", "10.1.1.199", "ap-a1-1")
    rig.ping("mn1", CN_IP)
    return rig


def desired(rig, switch):
    return {of.record_of(m) for m in rig.core.desired_flows(rig.graph.dpid(switch))}


def reconnect(rig, switch):
    dpid = rig.graph.dpid(switch)
    rig.core.switch_disconnected(dpid, rig.now)
    rig.connect(switch)


def test_learned_hosts_are_part_of_the_desired_flows(rig):
    assert rig.net.switches["ar-a1"].records() == desired(rig, "ar-a1")
    host_flows = [r for r in desired(rig, "ar-a1") if r.key.priority == PRIO_HOST]
    assert len(host_flows) == 3  # routes to cn1 and mn1, mn1's source check


def test_reconnect_removes_foreign_and_restores_missing_flows(rig):
    switch = rig.net.switches["core"]
    foreign = of.flow_add(Table.ROUTE, 999, of.match(eth_type=0x0800, ipv4_dst="192.0.2.1"),
                          of.apply(of.output(1)), cookie=0x1234)
    stale = of.flow_add(Table.ROUTE, 999, of.match(eth_type=0x0800, ipv4_dst="192.0.2.2"),
                        of.apply(of.output(1)), cookie=cookie(Feature.HOST, 0xc0000202))
    switch.apply(foreign)
    switch.apply(stale)
    victim = switch.entries[5]
    switch.entries.remove(victim)
    changed = [e for e in switch.entries if e.priority == PRIO_HOST][0]
    changed.instructions = of.apply(of.output(4))

    reconnect(rig, "core")

    assert switch.records() == desired(rig, "core")
    counters = rig.core.counters
    assert counters["reconcile_deleted"] == 2
    assert counters["reconcile_added"] >= 2  # the missing one and the changed one


def test_reconnect_of_a_correct_switch_sends_no_flow_mods(rig):
    before = [(e.table_id, e.priority, e.cookie, e.packet_count) for e in rig.net.switches["ar-a1"].entries]
    plan = reconcile.plan(rig.net.switches["ar-a1"].flow_stats(),
                          rig.core.desired_flows(rig.graph.dpid("ar-a1")))
    assert plan.messages == []
    assert plan.kept == len(desired(rig, "ar-a1"))
    reconnect(rig, "ar-a1")
    after = [(e.table_id, e.priority, e.cookie, e.packet_count) for e in rig.net.switches["ar-a1"].entries]
    assert after == before, "flows already right keep their counters"


def test_reapplying_the_same_flows_changes_nothing(rig):
    switch = rig.net.switches["ap-b1"]
    before = switch.records()
    for msg in rig.core.desired_flows(switch.dpid):
        switch.apply(msg)
    assert switch.records() == before
    assert len(switch.entries) == len(before)


def test_foreign_flow_with_our_key_is_replaced(rig):
    switch = rig.net.switches["cn-ar"]
    miss = [e for e in switch.entries if e.priority == 0 and e.table_id == Table.ROUTE][0]
    miss.cookie = 0x42  # someone else's cookie on a flow we want
    reconnect(rig, "cn-ar")
    assert switch.records() == desired(rig, "cn-ar")


def test_multipart_replies_are_collected_before_reconciling(rig):
    dpid = rig.graph.dpid("core")
    rig.core.switch_disconnected(dpid, rig.now)
    [send] = rig.core.switch_connected(dpid, rig.now)
    stats = rig.net.switches["core"].flow_stats()
    assert rig.core.flow_stats(dpid, stats[:3], more=True) == []
    [result] = rig.core.flow_stats(dpid, stats[3:], more=False)
    assert result.barrier
    assert [m for m in result.messages if m.command == ofp.OFPFC_DELETE_STRICT] == []

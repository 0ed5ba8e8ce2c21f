"""A reconnecting switch ends with exactly the flows it should have."""

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_sdn import openflow as of
from mpa_sdn import reconcile
from mpa_sdn.tables import PRIO_HOST, Table, cookie, Feature
from support.network_rig import Rig

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
    assert len(host_flows) == 2  # mn1's route and source check (cn1's route lives at cn-ar)


def test_reconnect_removes_foreign_and_restores_missing_flows(rig):
    switch = rig.net.switches["core"]
    foreign = of.flow_add(Table.ROUTE, 999, of.match(eth_type=0x0800, ipv4_dst="192.0.2.1"),
                          of.apply(of.output(1)), cookie=0x1234)
    stale = of.flow_add(Table.ROUTE, 999, of.match(eth_type=0x0800, ipv4_dst="192.0.2.2"),
                        of.apply(of.output(1)), cookie=cookie(Feature.HOST, 0xc0000202))
    switch.install_foreign(foreign)
    switch.install_foreign(stale)
    victim = next(e for e in switch.entries
                  if e.table_id == Table.ROUTE and e.match.get("ipv4_dst") == "10.1.1.1")
    switch.entries.remove(victim)
    changed = next(e for e in switch.entries
                   if e.table_id == Table.ROUTE and e.match.get("ipv4_dst") == ("10.2.1.0", "255.255.255.0"))
    changed.instructions = of.apply(of.output(2))
    counters = rig.core.counters
    before = {k: counters[k] for k in ("reconcile_deleted", "reconcile_added", "reconcile_kept")}

    reconnect(rig, "core")

    assert switch.records() == desired(rig, "core")
    assert counters["reconcile_deleted"] - before["reconcile_deleted"] == 2
    assert counters["reconcile_added"] - before["reconcile_added"] == 2  # missing + changed
    assert counters["reconcile_kept"] - before["reconcile_kept"] == len(desired(rig, "core")) - 2
    dpid = rig.graph.dpid("core")
    assert rig.core.switches[dpid].last_reconcile == {
        "deleted": 2, "added": 2, "kept": len(desired(rig, "core")) - 2}


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


def test_ovs_style_stats_need_no_changes(rig):
    """Stats decoded from the wire (Nicira names in register moves) match our flows."""
    switch = rig.net.switches["ar-a1"]
    stats = switch.flow_stats()
    moves = [a for s in stats for i in s.instructions for a in getattr(i, "actions", [])
             if type(a).__name__ == "NXActionRegMove"]
    assert moves and all(m.src_field.endswith("_nxm") for m in moves)
    assert reconcile.plan(stats, rig.core.desired_flows(switch.dpid)).messages == []


def test_host_learned_while_a_switch_is_being_read(rig):
    dpid = rig.graph.dpid("ar-a2")
    rig.core.switch_disconnected(dpid, rig.now)
    rig.core.switch_connected(dpid, rig.now)          # stats requested, not yet answered
    snapshot = rig.net.switches["ar-a2"].flow_stats()
    rig.add_host("h2", "02:00:00:00:00:a2", "10.1.2.150", "ap-a2-1")
    rig.ping("h2", CN_IP)                              # its flows reach ar-a2 now
    assert rig.core.switches[dpid].reconciled_at is None, "a learn's barrier does not count"
    rig.run(rig.core.flow_stats(dpid, snapshot, more=False))  # the old snapshot
    assert rig.net.switches["ar-a2"].records() == desired(rig, "ar-a2")
    assert rig.core.switches[dpid].reconciled_at == rig.now


def test_only_the_reconcile_barrier_marks_a_switch_reconciled(rig):
    dpid = rig.graph.dpid("ar-a2")
    rig.core.switch_disconnected(dpid, rig.now)
    rig.core.switch_connected(dpid, rig.now)
    [send] = rig.core.flow_stats(dpid, rig.net.switches["ar-a2"].flow_stats(), more=False)
    assert send.confirm
    rig.core.flows_confirmed(dpid, "something-else", rig.now)
    assert rig.core.switches[dpid].reconciled_at is None
    rig.core.flows_confirmed(dpid, send.confirm, rig.now)
    assert rig.core.switches[dpid].reconciled_at == rig.now


def test_multipart_replies_are_collected_before_reconciling(rig):
    dpid = rig.graph.dpid("core")
    rig.core.switch_disconnected(dpid, rig.now)
    [send] = rig.core.switch_connected(dpid, rig.now)
    stats = rig.net.switches["core"].flow_stats()
    assert rig.core.flow_stats(dpid, stats[:3], more=True) == []
    [result] = rig.core.flow_stats(dpid, stats[3:], more=False)
    assert result.barrier
    assert [m for m in result.messages if m.command == ofp.OFPFC_DELETE_STRICT] == []

"""Copy-and-forward (RFC 6252 §7.6.2) and bicasting (§7.6.1, C.1) through
fake switches, checked by where packets go.

Copy-and-forward: mn1 is attached at ap-a1-1 with its home address bound to
its address there; its second interface ("mn1b", another MAC) is attached
at ap-b1-1 with an nCoA of net-b1, prepared over REST (the MN's other way to
the controller).  A standby binding update arms the copying; the first
interface's link is then lost suddenly.
"""

from __future__ import annotations

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp

from support.fakeoftable import to_bytes
from mpa_mn import protocol
from support.service_rig import IDENTITY
from mpa_protocol import messages
from mpa_sdn.mobility import COMPLETED, SETTLE_S
from mpa_sdn.store import MemoryStore
from mpa_sdn.tables import Feature, Table, feature_of
from support.handover_rig import (CN_IP, HOME, MN_IP, NCOA, arrive, bound, echoes, flows_of,
                                  holders, later, make_rig, pings, variant, settle_dad)
from support.network_rig import Outcome
from mpa_sdn.openflow import record_of as of_record
from support.standby_rig import (MAC2, rest, send_rest, second_interface, bound_here, standing_by,
                                 copying_switches)


def rest_refusal(rig, state, kind, **fields) -> str:
    with pytest.raises(protocol.ProtocolError) as err:
        rest(rig, state, kind, "an error", **fields)
    return err.value.code


def lose_link(rig):
    """mn1's first link goes: nothing reaches it any more, and (later) the
    switch says so."""
    rig.hosts["mn1"].switch, rig.hosts["mn1"].port = "nowhere", 0


def port_down(rig):
    return rig.run(rig.core.port_status(rig.graph.dpid("ar-a1"), 3, True, rig.now))


def digests(packets) -> list[str]:
    return [messages.frame_digest(to_bytes(p)) for p in packets]


@pytest.fixture
def rig(topology):
    return make_rig(topology)


# -- copying -------------------------------------------------------------------------

def test_a_standby_copies_what_the_active_pa_delivers_and_moves_nothing(rig):
    standing_by(rig)
    outcome = pings(rig, "cn1", HOME, [1, 2, 3], quiet=False)
    assert echoes(outcome) == [1, 2, 3] and not outcome.to("mn1b")
    assert [(s, t) for s, _, t in outcome.punted_at] == [("ar-a1", Table.ROUTE)] * 3
    assert copying_switches(rig) == {"ar-a1"}
    assert rig.core.counters["copy_made"] == 3
    [view] = [v for v in rig.core.mobility.views(rig.now, {}) if v["identity"] == IDENTITY]
    assert view["binding"]["care_of"] == MN_IP
    assert view["standby"]["care_of"] == NCOA and view["standby"]["copies"] == 3


def test_the_lost_link_gets_exactly_the_copies_the_mn_said_it_missed(rig):
    """1-3 reached mn1; 4-5 went out of a port whose link was already gone
    (copied all the same); the port-status comes; 6-7 go to the nCoA and
    wait at net-b1's AR; the MN's word names 1-3: 4-7 reach mn1b, in order,
    and nothing twice."""
    state = standing_by(rig)
    got = pings(rig, "cn1", HOME, [1, 2, 3], quiet=False).to("mn1")
    lose_link(rig)
    assert echoes(pings(rig, "cn1", HOME, [4, 5], quiet=False), "mn1b") == []
    port_down(rig)
    assert rig.core.mobility.bindings[HOME].care_of == NCOA
    assert echoes(pings(rig, "cn1", HOME, [6, 7], quiet=False), "mn1b") == []   # buffered
    outcome = Outcome()
    answer = rest(rig, state, "handover", "handover-state", outcome, phase="link-lost",
                  delivered=digests(got))
    assert answer["phase"] == "flushing"      # waiting for the MN's word, which came
    outcome += later(rig, SETTLE_S)
    outcome += later(rig, 1.0)
    assert echoes(outcome, "mn1b") == [4, 5, 6, 7]
    assert all(p["ipv4_dst"] == HOME and p["eth_dst"] == MAC2
               for p in outcome.to("mn1b") if "ipv4_dst" in p)
    c = rig.core.counters
    assert (c["copy_sorted_by_marker"], c["copy_forwarded"], c["copy_skipped"]) == (1, 2, 3)
    assert echoes(pings(rig, "cn1", HOME, [8]), "mn1b") == [8]


def test_without_the_mns_word_the_copies_since_just_before_the_loss_go(rig):
    standing_by(rig)
    pings(rig, "cn1", HOME, [1, 2], quiet=False)
    rig.now += 1.0                   # long before the loss: surely delivered
    lose_link(rig)
    pings(rig, "cn1", HOME, [3], quiet=False)
    port_down(rig)
    outcome = later(rig, SETTLE_S)
    assert echoes(outcome, "mn1b") == []      # waiting for the MN's word ...
    outcome += later(rig, rig.topology.mpa.copy_wait_s)
    assert echoes(outcome, "mn1b") == [3]     # ... then copy_guard_s before the loss
    assert rig.core.counters["copy_sorted_by_guard"] == 1


def test_the_mns_signal_alone_starts_the_switch(rig):
    state = standing_by(rig)
    got = pings(rig, "cn1", HOME, [1], quiet=False).to("mn1")
    lose_link(rig)
    pings(rig, "cn1", HOME, [2], quiet=False)
    outcome = Outcome()
    rest(rig, state, "handover", "handover-state", outcome, phase="link-lost",
         delivered=digests(got))
    outcome += later(rig, SETTLE_S)
    outcome += later(rig, 1.0)
    assert echoes(outcome, "mn1b") == [2]
    assert rig.core.counters["handover_link_lost_signal"] == 1
    port_down(rig)     # the port-status, later: nothing more happens
    assert rig.core.counters["handover_link_lost_port"] == 0


def test_nothing_delivered_forwards_every_copy(rig):
    state = standing_by(rig)
    lose_link(rig)
    pings(rig, "cn1", HOME, [1, 2], quiet=False)
    port_down(rig)
    outcome = Outcome()
    rest(rig, state, "handover", "handover-state", outcome, phase="link-lost")
    outcome += later(rig, SETTLE_S)
    outcome += later(rig, 1.0)
    assert echoes(outcome, "mn1b") == [1, 2]
    assert rig.core.counters["copy_sorted_by_nothing_delivered"] == 1


def test_after_a_copy_and_forward_nothing_is_left_behind(rig):
    state = standing_by(rig)
    lose_link(rig)
    port_down(rig)
    rest(rig, state, "handover", "handover-state", phase="link-lost", delivered=[])
    later(rig, SETTLE_S)
    later(rig, 2.0)
    mobility = rig.core.mobility
    [done] = [h for h in mobility.history if h["mode"] == "copy-and-forward"]
    assert done["phase"] == COMPLETED
    assert not mobility.standbys and not mobility._rings and not mobility._buffering
    assert not flows_of(rig, Feature.BUFFER)
    assert "ar-a1" not in flows_of(rig, Feature.BINDING)
    assert copying_switches(rig) == set()


# -- refusals: a clear error, no state changed ------------------------------------------

def test_a_standby_needs_a_prepared_interface_and_a_binding_to_copy(rig):
    bound_here(rig)
    settle_dad(rig)
    state = second_interface(rig)
    rig.hosts["mn1b"].ip = "10.2.1.150"
    before = dict(rig.core.mobility.standbys)
    assert rest_refusal(rig, state, "binding-update", home_address=HOME,
                        care_of="10.2.1.150", standby=True) == "binding-refused"
    assert rest_refusal(rig, state, "binding-update", home_address="10.255.0.9",
                        care_of=NCOA, standby=True) == "binding-refused"
    assert rig.core.mobility.standbys == before == {}


def test_a_standby_without_a_binding_is_wrong_state(rig):
    state = second_interface(rig)
    assert rest_refusal(rig, state, "binding-update", home_address=HOME, care_of=NCOA,
                        standby=True) == "wrong-state"
    assert rest_refusal(rig, state, "handover", phase="link-lost") == "wrong-state"
    assert not rig.core.mobility.standbys and not rig.core.mobility.handovers


def test_malformed_digests_are_refused_by_the_codec(rig):
    state = standing_by(rig)
    for bad in (["xyz"], ["00" * 9], ["00" * 8] * 17, "00" * 8):
        data, _ = protocol.request(state, "handover", phase="link-lost")
        raw = messages.decode(data, 1400).fields
        raw = {**raw, "delivered": bad}
        [answer] = send_rest(rig, messages.encode(raw), "net-b1")
        assert answer.fields["code"] == "malformed"
    assert rig.core.mobility.standbys and not rig.core.mobility.handovers


def test_binding_the_home_address_itself_ends_the_standby(rig):
    state = standing_by(rig)
    rest(rig, state, "binding-update", "binding-ack", home_address=HOME, care_of=NCOA)
    assert not rig.core.mobility.standbys
    assert rig.core.counters["standby_ended_rebound"] == 1
    later(rig, SETTLE_S)
    assert echoes(pings(rig, "cn1", HOME, [1]), "mn1b") == [1]
    assert rig.core.counters["copy_made"] == 0


def test_removing_the_binding_ends_the_standby(rig):
    here = bound_here(rig)
    state = second_interface(rig)
    rest(rig, state, "binding-update", "binding-ack", home_address=HOME, care_of=NCOA,
         standby=True)
    assert rig.core.mobility.standbys
    here.ask("binding-update", "binding-ack", source=MN_IP, home_address=HOME, care_of=MN_IP,
             lifetime=0)
    assert not rig.core.mobility.standbys and not rig.core.mobility._rings
    assert rig.core.counters["standby_ended_unbound"] == 1


def test_a_standby_survives_a_restart(topology):
    store = MemoryStore()
    rig = make_rig(topology, store=store)
    standing_by(rig)
    rig.restart()
    assert HOME in rig.core.mobility.standbys
    assert rig.ping("mn1", CN_IP).to("cn1")
    outcome = pings(rig, "cn1", HOME, [1], quiet=False)
    assert echoes(outcome) == [1] and outcome.punts == 1


# -- the copy ring -------------------------------------------------------------------

def test_the_ring_prefers_the_longest_run_of_the_mns_digests():
    import collections
    from mpa_sdn.mobility.copy_forward import CopyRing
    from support.fakeoftable import ipv4_packet
    frames = [to_bytes(ipv4_packet("02:00:00:00:00:01", "02:00:00:00:00:02", CN_IP, HOME,
                                   seq=n % 3)) for n in range(9)]
    ring = CopyRing(100, 10.0, collections.Counter())
    for n, frame in enumerate(frames):
        ring.add(frame, float(n))
    d = [messages.frame_digest(f) for f in frames]
    # Frames repeat every three, so the run d0, d1 ends at frames 1, 4 and 7:
    # the newest wins, and only frame 8 may not have been delivered.
    copies, how = ring.undelivered([d[0], d[1]], 0.0)
    assert how == "marker" and [c.data for c in copies] == frames[8:]
    copies, how = ring.undelivered([d[2], d[0], d[1]], 0.0)   # a longer run: frames 5-7
    assert how == "marker" and len(copies) == 1
    copies, how = ring.undelivered(["ff" * 8], 0.0)
    assert how == "unmatched" and len(copies) == 9
    copies, how = ring.undelivered(None, 4.0)
    assert how == "guard" and len(copies) == 5


def test_the_ring_is_bounded_in_packets_and_age():
    import collections
    from mpa_sdn.mobility.copy_forward import CopyRing
    counters = collections.Counter()
    ring = CopyRing(3, 1.0, counters)
    for n in range(5):
        ring.add(bytes([n]) * 40, float(n) * 0.1)
    assert len(ring) == 3 and counters["copy_aged"] == 2
    ring.add(b"x" * 40, 10.0)
    assert len(ring) == 1 and counters["copy_aged"] == 5


# -- bicasting ------------------------------------------------------------------------

def bicasting(rig):
    mn = bound(rig)
    data, seq = protocol.request(mn.state, "handover", phase="pre-switch", mode="bicast")
    mn.send(data)
    outcome = later(rig, SETTLE_S)
    return mn, outcome


def test_a_bicast_sends_to_both_networks_and_the_mn_gets_each_packet_once(rig):
    bicasting(rig)
    outcome = pings(rig, "cn1", HOME, [1, 2], quiet=False)
    assert echoes(outcome) == [1, 2]                   # the old leg, at ap-a1-1
    assert outcome.punts == 0                           # the nAR drops the other
    assert {following for _, following, _ in outcome.hops} >= {"ar-a1", "ar-b1"}
    arrive(rig)
    later(rig, SETTLE_S)
    outcome = pings(rig, "cn1", HOME, [3, 4])
    assert echoes(outcome) == [3, 4] and not outcome.lost


def holders_of_drop(rig) -> set[str]:
    """The switches holding a buffer flow that drops (a bicast's target leg)."""
    return {name for name, switch in rig.net.switches.items()
            for e in switch.entries
            if feature_of(e.cookie) == Feature.BUFFER and not e.instructions}


def test_a_bicast_drops_at_the_nar_only_once_the_edge_sends_the_other_leg(rig):
    """Stage by stage, as the switches confirm: a packet sent at any point
    reaches mn1 (through the tunnel until the edge bicasts)."""
    mn = bound(rig)
    rig.hold_confirmations = True
    data, _ = protocol.request(mn.state, "handover", phase="pre-switch", mode="bicast")
    mn.send(data)
    stages = 0
    while rig.held:
        stages += 1
        assert stages <= 5
        seq = 10 + stages
        assert seq in echoes(pings(rig, "cn1", HOME, [seq], quiet=False)), stages
        rig.release_confirmations()
    assert stages == 2      # receive, steer ...
    # ... and the nAR's drop SETTLE_S later: the edge's datapath may still
    # send a packet the old way (only to the nCoA) until then.
    assert not holders_of_drop(rig)
    assert 15 in echoes(pings(rig, "cn1", HOME, [15], quiet=False))
    later(rig, SETTLE_S)
    assert rig.held and holders_of_drop(rig) == {"ar-b1"}
    rig.release_confirmations()
    assert 20 in echoes(pings(rig, "cn1", HOME, [20], quiet=False))


def test_a_bicast_cancelled_before_its_barriers_leaves_no_flow_of_it(rig):
    """Cancelled while the switches still hold its first stage: the stages
    held behind it must not land afterwards (the edge's second leg, the
    nAR's drop), or they would stay, unknown to the controller."""
    mn = bound(rig)
    rig.hold_confirmations = True
    data, _ = protocol.request(mn.state, "handover", phase="pre-switch", mode="bicast")
    mn.send(data)
    data, _ = protocol.request(mn.state, "handover", phase="cancel")
    mn.send(data)
    rig.hold_confirmations = False
    for _ in range(5):
        rig.release_confirmations()
    later(rig, SETTLE_S)
    assert holders(rig, Feature.BUFFER) == set()
    mine = (Feature.BINDING, Feature.BUFFER, Feature.TUNNEL)
    held = flows_of(rig, *mine)
    for switch in rig.graph.switch_ids():
        wanted = {of_record(m) for m in rig.core.mobility.flows_for(switch)
                  if feature_of(m.cookie) in mine}
        assert held.get(switch, set()) == wanted, switch
    assert 30 in echoes(pings(rig, "cn1", HOME, [30], quiet=False))


def test_a_bicast_loses_what_the_link_switch_drops_and_duplicates_nothing(rig):
    bicasting(rig)
    rig.move("mn1", "ap-b1-1", ip=NCOA)
    lost = pings(rig, "cn1", HOME, [1], quiet=False)
    assert echoes(lost) == []                          # the RFC says as much
    rig.arp_request("mn1", NCOA)
    later(rig, SETTLE_S)
    assert echoes(pings(rig, "cn1", HOME, [2])) == [2]


def test_the_old_leg_ends_after_the_bicast_period(topology):
    rig = make_rig(variant(bicast_period_s=1.0))
    bicasting(rig)
    mobility = rig.core.mobility
    assert HOME in mobility.bicasts
    arrive(rig)
    later(rig, SETTLE_S)
    rig.now += 1.0
    assert mobility.next_due() <= rig.now        # the leg's end is due ...
    rig.run(rig.core.mpa_tick(rig.now))          # ... and the step that is run for it ends it
    assert HOME not in mobility.bicasts
    assert rig.core.counters["bicast_ended"] == 1
    assert mobility.next_due() is None or mobility.next_due() > rig.now
    # The correspondent's edge goes back to one destination.
    [edge] = [m for m in rig.core.mobility.flows_for("cn-ar")
              if m.table_id == Table.INGRESS and m.cookie == mobility.bindings[HOME].cookie]
    assert [i.type for i in edge.instructions] == [ofp.OFPIT_APPLY_ACTIONS,
                                                   ofp.OFPIT_GOTO_TABLE]


def test_a_bicast_switch_back_ends_the_second_leg(topology):
    rig = make_rig(variant(switch_deadline_s=1.0))
    bicasting(rig)
    later(rig, 1.5)
    assert not rig.core.mobility.bicasts
    assert rig.core.counters["handover_switch_back_deadline"] == 1
    assert echoes(pings(rig, "cn1", HOME, [1])) == [1]

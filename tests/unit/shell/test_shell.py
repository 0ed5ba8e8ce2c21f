"""The Ryu shell's own duties: the send point, the ordered work queue, its bounds."""

import dataclasses
import gc
import weakref
import struct
import types

import pytest
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from apps import mpa_app, runtime
from mpa_sdn import openflow as of
from mpa_sdn.controller import RECONCILE, Send
from mpa_sdn.facade import Busy
from mpa_sdn.flow_templates import decoded
from mpa_sdn.tables import Table

DPID = 0x11  # ar-a1


class FakeDatapath:
    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid, fail_after=None):
        self.id = dpid
        self.address = ("127.0.0.1", 40000)
        self.sent = []
        self.fail_after = fail_after
        self.xid = 0

    def send_msg(self, msg):
        if self.fail_after is not None and len(self.sent) >= self.fail_after:
            return False
        # As Ryu's Datapath.send_msg: an xid, then the bytes.
        self.xid += 1
        msg.set_xid(self.xid)
        msg.serialize()
        self.sent.append(msg)
        return True


@pytest.fixture
def app(topology):
    settings = dataclasses.replace(topology.controller, packet_in_queue=2)
    runtime.configure(dataclasses.replace(topology, controller=settings), "test.yaml")
    return mpa_app.MpaApp()


def flow(command=ofp.OFPFC_ADD, priority=10):
    if command == ofp.OFPFC_ADD:
        return of.flow_add(Table.ROUTE, priority, of.match(), [], 0)
    return of.flow_delete_strict(Table.ROUTE, priority, of.match())


def test_deletes_go_first_and_a_tagged_barrier_is_remembered(app):
    dp = app.datapaths[DPID] = FakeDatapath(DPID)
    app.send([Send(DPID, [flow(priority=1), flow(ofp.OFPFC_DELETE_STRICT), flow(priority=2)],
                   confirm=RECONCILE)])
    kinds = [(of.message_name(m), getattr(decoded(m), "command", None))
             for sent in dp.sent for m in of.messages_in(sent)]
    assert kinds == [("OFPFlowMod", ofp.OFPFC_DELETE_STRICT), ("OFPFlowMod", ofp.OFPFC_ADD),
                     ("OFPFlowMod", ofp.OFPFC_ADD), ("OFPBarrierRequest", None)]
    assert all(m.datapath is dp for m in dp.sent)
    assert app.confirmations == {(DPID, dp.sent[-1].xid): RECONCILE}
    assert app.counters["sent_OFPFlowMod"] == 3


def test_the_bytes_sent_carry_the_xids_the_datapath_gave_and_the_barrier_s_reply_pairs(app):
    """Flow-mods and packet-outs go as bytes packed by the core, a run of
    them in one write with the xid the datapath gave it; the barrier after
    them has its own, and its reply is paired by it."""
    dp = app.datapaths[DPID] = FakeDatapath(DPID)
    mod, out = flow(priority=7), of.packet_out(b"frame", [of.output(2)], 1)
    app.send([Send(DPID, [mod, out, mod], confirm=RECONCILE)])
    app.send([Send(DPID, [mod], barrier=True)])
    # Two writes each: the run of ours in one, then the barrier.
    assert [of.message_name(m) for m in dp.sent] == ["batch", "OFPBarrierRequest",
                                                     "OFPFlowMod", "OFPBarrierRequest"]
    stream = b"".join(bytes(m.buf) for m in dp.sent)
    headers, at = [], 0
    while at < len(stream):      # the bytes as the switch reads them, message by message
        headers.append(struct.unpack_from("!BBHI", stream, at))
        at += headers[-1][2]
    assert at == len(stream)
    assert [(h[1], h[3]) for h in headers] == [
        (ofp.OFPT_FLOW_MOD, 1), (ofp.OFPT_PACKET_OUT, 1), (ofp.OFPT_FLOW_MOD, 1),
        (ofp.OFPT_BARRIER_REQUEST, 2), (ofp.OFPT_FLOW_MOD, 3), (ofp.OFPT_BARRIER_REQUEST, 4)]
    # The message the core built is left as it was: xid 0, sent again as often as asked.
    assert struct.unpack_from("!I", mod, 4) == (0,)
    assert stream[len(mod) + len(out) + 8:2 * len(mod) + len(out)] == mod[8:]
    assert app.confirmations == {(DPID, 2): RECONCILE}
    assert app.counters["sent_OFPFlowMod"] == 3 and app.counters["sent_OFPPacketOut"] == 1
    app._barrier(types.SimpleNamespace(msg=types.SimpleNamespace(datapath=dp, xid=2)))
    assert app.work.get()[0] == "barrier" and app.confirmations == {}


def test_a_disconnected_switch_gets_nothing_and_it_is_counted(app):
    app.send([Send(DPID, [flow(), flow()])])
    assert app.counters["send_to_disconnected"] == 2


def test_a_failed_send_stops_the_batch(app):
    dp = app.datapaths[DPID] = FakeDatapath(DPID, fail_after=1)
    app.send([Send(DPID, [flow(priority=1), flow(priority=2)], confirm=RECONCILE)])
    assert len(dp.sent) == 1
    assert app.counters["send_failed"] == 1
    assert app.confirmations == {}, "no confirmation for a barrier that was never sent"


def packet_in_event(dpid=DPID):
    dp = FakeDatapath(dpid)
    msg = types.SimpleNamespace(datapath=dp, match={"in_port": 3}, table_id=0, data=b"\x00" * 60)
    return types.SimpleNamespace(msg=msg)


def test_packet_ins_beyond_the_bound_are_dropped_and_counted(app):
    for _ in range(3):
        app._packet_in(packet_in_event())
    assert app.work.qsize() == 2
    assert app.counters["packet_in_queue_full"] == 1
    app.handle(app.work.get())
    assert app.packet_ins_waiting == 1


def test_the_reconcile_barrier_reply_marks_the_switch(app):
    dp = app.datapaths[DPID] = FakeDatapath(DPID)
    app.handle(("switch connect", DPID, lambda now: app.core.switch_connected(DPID, now), ()))
    assert isinstance(dp.sent[0], parser.OFPFlowStatsRequest)
    app.handle(("flow stats", DPID, lambda now: app.core.flow_stats(DPID, [], False), ()))
    [(key, tag)] = app.confirmations.items()
    reply = types.SimpleNamespace(msg=types.SimpleNamespace(datapath=dp, xid=key[1]))
    app._barrier(reply)
    app.handle(app.work.get())
    assert app.core.switches[DPID].reconciled_at is not None
    assert app.confirmations == {}


def test_a_failing_core_call_is_counted_not_fatal(app):
    def broken(now):
        raise RuntimeError("bug")
    app.handle(("tick", None, broken, ()))
    assert app.counters["handler_error"] == 1


def state_event(dp, state):
    return types.SimpleNamespace(datapath=dp, state=state)


def test_connect_and_disconnect_reach_the_core_in_order(app):
    from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER
    dp = FakeDatapath(DPID)
    app._state_change(state_event(dp, MAIN_DISPATCHER))
    app.handle(app.work.get())
    assert DPID in app.core.switches and app.datapaths[DPID] is dp
    app.confirmations[(DPID, 99)] = RECONCILE
    newer = FakeDatapath(DPID)
    app._state_change(state_event(newer, MAIN_DISPATCHER))   # reconnect before the old end
    assert app.confirmations == {}, "the old connection's barriers will never be answered"
    app.handle(app.work.get())
    app._state_change(state_event(dp, DEAD_DISPATCHER))      # the old end: ignored
    assert app.work.qsize() == 0 and app.datapaths[DPID] is newer
    app._state_change(state_event(newer, DEAD_DISPATCHER))
    app.handle(app.work.get())
    assert DPID not in app.core.switches and DPID not in app.datapaths


def test_stop_wakes_the_long_rest_requests_and_refuses_new_ones(app):
    from ryu.lib import hub
    last = app.core.events.last_id
    stream = hub.spawn(app._wait_events, last, 60)           # an event stream, no event due
    held = hub.spawn(app._exchange, lambda reply: None,
                     lambda origin, now: [], 60)             # a request the core never answers
    hub.sleep(0)                                             # both are waiting now
    assert len(app._waits) == 2
    app.stop()
    with hub.Timeout(5):
        assert (stream.wait(), held.wait()) == (False, None)
    assert app._waits == set()
    assert app._wait_events(last, 60) is False
    queued = app.work.qsize()
    with pytest.raises(Busy, match="stopping"):
        app._exchange(lambda reply: None, lambda origin, now: [], 60)
    assert app.work.qsize() == queued, "a refused call is never queued"
    assert app.counters["rest_refused_stopping"] == 1
    assert app.counters["rest_signal_queue_full"] == 0, "stopping is not a full queue"


def never_answered(origin, now):
    return []


@pytest.fixture
def bounded_app(topology):
    settings = dataclasses.replace(topology.controller, rest_max_waiting=2, rest_max_held=3,
                                   rest_held_per_source=2)
    runtime.configure(dataclasses.replace(topology, controller=settings), "test.yaml")
    return mpa_app.MpaApp()


def waiting(app, count, **where):
    """``count`` REST calls the core never answers, each waiting in its own green thread."""
    from ryu.lib import hub
    threads = [hub.spawn(app._exchange, lambda reply: None, never_answered, 60, **where)
               for _ in range(count)]
    hub.sleep(0)
    return threads


def test_held_questions_have_their_own_bound_and_one_per_source(bounded_app):
    app = bounded_app
    waiting(app, 2, held_from="10.2.0.7")
    # A third from that address is refused at once, and nothing is queued for it...
    with pytest.raises(Busy, match="from this address"):
        app._exchange(lambda reply: None, never_answered, 60, held_from="10.2.0.7")
    assert app.counters["rest_held_source_full"] == 1
    # ... while another MN's question, and every short call, still get through.
    waiting(app, 1, held_from="10.2.0.8")
    waiting(app, 2)
    assert app.work.qsize() == 5
    with pytest.raises(Busy, match="too busy"):
        app._exchange(lambda reply: None, never_answered, 60, held_from="10.2.0.9")
    assert app.counters["rest_held_full"] == 1
    with pytest.raises(Busy, match="too busy"):
        app._exchange(lambda reply: None, never_answered, 60)
    assert app.counters["rest_signal_queue_full"] == 1
    assert app.work.qsize() == 5


def test_an_answered_or_timed_out_call_gives_its_slot_back(bounded_app):
    from ryu.lib import hub
    app = bounded_app
    assert app._exchange(lambda reply: None, never_answered, 0.01,
                         held_from="10.2.0.7") is None
    waiting(app, 2, held_from="10.2.0.7")
    assert app._held.held == 2 and app._held.of("10.2.0.7") == 2
    app.stop()
    hub.sleep(0)
    assert app._held.held == 0 and app._waiting.held == 0


def test_an_answer_handed_back_leaves_no_cycle_behind(app):
    """The answer holds its origin, whose reply_to holds the box it was
    put in: once handed back it is freed by reference counting alone, with
    no collection (a cycle would wait for the hourly full one, frozen)."""
    from mpa_sdn.service import REST, Answer, Origin

    def make_origin(reply):
        return Origin(REST, "10.2.0.7", None, reply_to=reply)
    app._post = lambda what, dpid, call, *args: app.send(call(0.0))
    answer = app._exchange(make_origin, lambda origin, now: [Answer(origin, {"ok": True})], 60)
    assert answer.fields == {"ok": True}
    gone = weakref.ref(answer)
    gc.disable()
    try:
        del answer
        assert gone() is None
    finally:
        gc.enable()


def test_ryu_s_own_datapath_sends_a_run_of_ours_with_its_xid():
    """Ryu's Datapath.send_msg (the real method, on a datapath without a
    socket) takes the run as a message, gives it the next xid and sends its
    bytes as they are but for the xid in each header."""
    from ryu.controller.controller import Datapath
    written = []
    dp = types.SimpleNamespace(ofproto=ofp, ofproto_parser=parser, xid=41,
                               send=lambda buf, close_socket=False: written.append(buf) or True)
    dp.set_xid = lambda msg: Datapath.set_xid(dp, msg)
    mod, out = flow(priority=3), of.packet_out(b"frame", [of.output(2)], 1)
    [run] = of.on_the_wire([mod, out], dp)
    assert Datapath.send_msg(dp, run) is True
    [buf] = written
    assert bytes(buf) == mod[:4] + (42).to_bytes(4, "big") + mod[8:] + \
        out[:4] + (42).to_bytes(4, "big") + out[8:]
    assert run.xid == 42 == dp.xid


@pytest.mark.parametrize("reason, state, gone", [
    # The lab's modelled link layer: a PoA's port stays, its link goes down
    # (the MN left) and comes up (an MN arrived), as a real access point's.
    (ofp.OFPPR_MODIFY, ofp.OFPPS_LINK_DOWN, True),
    (ofp.OFPPR_MODIFY, ofp.OFPPS_LIVE, False),
    # A port taken away, or added without its link.
    (ofp.OFPPR_DELETE, 0, True),
    (ofp.OFPPR_ADD, ofp.OFPPS_LINK_DOWN, True),
    (ofp.OFPPR_ADD, 0, False),
])
def test_a_port_whose_link_is_down_or_gone_is_gone_to_the_core(app, reason, state, gone):
    dp = FakeDatapath(DPID)
    desc = types.SimpleNamespace(port_no=3, state=state)
    app._port_status(types.SimpleNamespace(msg=types.SimpleNamespace(datapath=dp, reason=reason,
                                                                     desc=desc)))
    what, dpid, call, args = app.work.get()
    assert (what, dpid, call, args) == ("port status", DPID, app.core.port_status,
                                        (DPID, 3, gone))


class SendLoopDatapath(FakeDatapath):
    """As Ryu's: what is sent is queued, and its own green thread writes it
    (to ``written``) when the worker lets it run."""

    def __init__(self, dpid, written):
        from ryu.lib import hub
        super().__init__(dpid)
        self.queue, self.written = hub.Queue(), written
        self.loop = hub.spawn(self._send_loop)

    def send_msg(self, msg):
        self.queue.put(msg)
        return super().send_msg(msg)

    def _send_loop(self):
        while True:
            self.queue.get()
            self.written.append("written")


def test_what_an_event_sent_is_written_before_the_next_event_is_handled(app):
    """A queue of packet-ins never yields by itself: without the worker's
    pause a handover's first deliveries waited behind every one of them."""
    from ryu.lib import hub
    order = []
    dp = app.datapaths[DPID] = SendLoopDatapath(DPID, order)
    packet_out = of.packet_out(b"\0" * 60, [of.output(1)])
    app._post("first", DPID, lambda now: [Send(DPID, [packet_out])])
    app._post("second", DPID, lambda now: order.append("second") or [])
    app._post("third", DPID, lambda now: order.append("third") or [])
    worker = hub.spawn(app._worker)
    try:
        with hub.Timeout(5):
            while len(order) < 3:
                hub.sleep(0)
    finally:
        hub.kill(worker)
        hub.kill(dp.loop)
    assert order == ["written", "second", "third"]


class Stop(Exception):
    pass


class FakeWake:
    """The ticker's event on a fake clock: a wait lets its timeout pass,
    unless the worker woke the ticker (``woken``: per wait, in turn); the
    ticker stops after ``waits`` waits."""

    def __init__(self, clock: list, woken: list, waits: int):
        self.clock, self.woken, self.left = clock, list(woken), waits

    def clear(self):
        pass

    def wait(self, timeout):
        if not self.left:
            raise Stop
        self.left -= 1
        if not (self.woken and self.woken.pop(0)):
            self.clock[0] += timeout


def run_ticker(app, monkeypatch, due: float, woken: list, waits: int) -> list:
    """The ticker on a fake clock from 100 s, the core's AA and CA work due
    at 100 + ``due``: what it posted, and when."""
    clock, posted = [100.0], []
    monkeypatch.setattr(mpa_app.time, "monotonic", lambda: clock[0])
    app.core.next_mpa_tick = lambda now: 100.0 + due
    app._wake = FakeWake(clock, woken, waits)
    app._post = lambda what, dpid, call, *args: posted.append((what, round(clock[0], 6)))
    with pytest.raises(Stop):
        app._ticker()
    return posted


def test_work_due_later_is_not_ticked_before_it_is_due(app, monkeypatch):
    """Woken by the worker for work due sooner than the regular tick, the
    ticker waits until it is due.  Ticking at once made the worker wake it
    again, a loop of empty ticks while a DAD probe or a PANA timer was
    pending, which starved the switches' connections."""
    assert mpa_app.TICK_S > 0.3                 # no regular tick meanwhile
    posted = run_ticker(app, monkeypatch, 0.3, woken=[True, True, True], waits=3)
    assert posted == []
    posted = run_ticker(app, monkeypatch, 0.3, woken=[True, False], waits=2)
    assert posted == [("mpa tick", 100.3)]

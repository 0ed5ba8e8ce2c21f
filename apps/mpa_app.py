"""The Ryu application: the only code that talks to switches.

Event handlers only queue the event.  One worker green thread takes events in
the order they came, hands each to the core (:mod:`mpa_sdn.controller`) with
the current monotonic time, and sends what the core returns through
``send``, the one send point.  One worker means the core sees one event at a
time and its batches reach each switch whole and in order, even when a send
blocks on a full connection.
"""

from __future__ import annotations

import collections
import logging
import math
import os
import time

from apps import compat

compat.patch_eventlet()

from ryu.base import app_manager  # noqa: E402  (after the patch)
from ryu.controller import ofp_event  # noqa: E402
from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls  # noqa: E402
from ryu.lib import hub  # noqa: E402
from ryu.ofproto import ofproto_v1_3  # noqa: E402

from apps import heap, runtime  # noqa: E402
from apps.checkpoint import Checkpointer  # noqa: E402
from apps.radius_socket import RadiusSocket  # noqa: E402
from apps.rest_server import RestServer  # noqa: E402
from mpa_sdn import openflow as of  # noqa: E402
from mpa_sdn.controller import Controller  # noqa: E402
from mpa_sdn.controller import RadiusDatagram  # noqa: E402
from mpa_sdn.facade import Busy, Facade  # noqa: E402
from mpa_sdn.service import Answer  # noqa: E402
from mpa_sdn.store import MemoryStore, StoreError  # noqa: E402
from rest_api.app import WAIT_FOR_DAD_S, RestApi  # noqa: E402
from rest_api.limits import Slots  # noqa: E402

LOG = logging.getLogger("apps.mpa_app")
TICK_S = 0.5
PACKET_IN = "packet-in"
RADIUS = "radius answer"


def settle_heap(counters=None, every_events: int = heap.EVENTS) -> None:
    """What start-up loaded (the topology, the state file's SAs, leases,
    tunnels and bindings) lives as long as the process: take it out of the
    cyclic collector's scans, and keep every collection after to what was
    made since the last (:mod:`apps.heap`)."""
    heap.settle(counters, every_events)


class MpaApp(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime.current()
        self.counters = collections.Counter()
        self.core = Controller(
            self.runtime.topology, self.counters, radius_servers=self.runtime.radius_servers,
            store=self.runtime.store,
            entropy=os.urandom, wall_offset=time.time() - time.monotonic(),
            # Event ids go on rising across restarts: 10 µs steps of the wall
            # clock (15 digits, as the API's Last-Event-ID, until 2286).
            first_event_id=int(time.time() * 100_000))
        self.settings = self.runtime.topology.controller
        self.datapaths = {}
        # Our own queue (RyuApp already has self.events). Control events are
        # never dropped; packet-ins are, beyond their bound.
        self.work = hub.Queue()
        self.packet_ins_waiting = 0
        self.confirmations = {}  # (dpid, barrier xid) -> tag the core asked for
        self._mpa_tick_queued = False
        self._written = False     # the last event sent something to a switch
        self._ticker_wake = 0.0   # when the ticker will next look
        self._wake = hub.Event()  # set to make it look sooner
        # REST calls waiting for the worker, bounded apart: the MN's held
        # instructions questions (long waits, per source too) and the rest.
        self._waiting = Slots(self.settings.rest_max_waiting, None, self.counters,
                              "rest_signal_queue")
        self._held = Slots(self.settings.rest_max_held, self.settings.rest_held_per_source,
                           self.counters, "rest_held")
        self._waits = set()       # what REST requests wait on: set at stop, so none holds it up
        self.rest = RestApi(Facade(self.core, time.monotonic, self._exchange, self._wait_events),
                            self.counters, tokens=self.runtime.tokens,
                            max_streams=self.settings.rest_max_streams,
                            streams_per_token=self.settings.rest_streams_per_token,
                            pause=lambda: hub.sleep(0))
        self.rest_server = None
        self._own_threads = []
        self.store = self.runtime.store if self.runtime.store is not None else MemoryStore()
        self._unwritten_since = None   # when the oldest change not yet written was made
        self.checkpointer = Checkpointer(self.store, self.counters,
                                         self.settings.state_checkpoint_s)
        self.radius = RadiusSocket(self._radius_answer, self.counters,
                                   self.settings.radius_queue)

    def start(self):
        settle_heap(self.counters, self.settings.gc_every_events)
        self._full_collection_due = self._next_full_collection(time.monotonic())
        thread = super().start()
        host, port = self.settings.rest_host, self.settings.rest_port
        # Listen here, not in the thread: if the port is taken, start-up fails.
        self.rest_server = RestServer((host, port), self.rest, self.settings, self.counters,
                                      self.runtime.tls["rest"] if self.settings.rest_tls else None)
        LOG.info("REST API on %s://%s:%d/mpa/v1", "https" if self.settings.rest_tls else "http",
                 host, port)
        self._own_threads = [hub.spawn(self._worker), hub.spawn(self._ticker),
                             hub.spawn(self.rest_server.serve_forever), self.radius.start()]
        self.threads.extend(self._own_threads)
        self.checkpointer.start()
        return thread

    def stop(self):
        # eventlet's server waits for every request in progress before it
        # ends: wake the long ones (held instructions, event streams) first.
        self.rest.facade.closed = True
        for waiting in list(self._waits):
            waiting.set()
        # Ryu's stop() joins every thread in self.threads; ours loop forever,
        # so end them first.
        for thread in self._own_threads:
            hub.kill(thread)
        if self.rest_server is not None:
            self.rest_server.close()
        self.radius.close()
        self.checkpointer.stop()
        self._write_state(time.monotonic(), at_once=True)
        super().stop()

    # -- the one send point -----------------------------------------------------

    def send(self, sends) -> None:
        for batch in sends:
            if isinstance(batch, Answer):  # a REST request is waiting for it
                batch.origin.reply_to(batch)
                continue
            if isinstance(batch, RadiusDatagram):
                self.radius.send(batch)
                continue
            datapath = self.datapaths.get(batch.dpid)
            if datapath is None:
                self.counters["send_to_disconnected"] += len(batch.messages)
                LOG.debug("dpid=%016x switch=%s not connected; %d messages dropped",
                          batch.dpid, self.core.graph.switch_of_dpid(batch.dpid),
                          len(batch.messages))
                continue
            # Deletes first: a batch may re-add what the deletes would hit.
            messages = sorted(batch.messages, key=lambda m: 0 if of.is_delete(m) else 1)
            barrier = None
            if batch.barrier or batch.confirm:
                barrier = datapath.ofproto_parser.OFPBarrierRequest(datapath)
                messages.append(barrier)
            # The core's flow-mods and packet-outs are bytes already: each
            # run of them goes in one write.
            self._written = True
            for msg in of.on_the_wire(messages, datapath):
                carried = of.messages_in(msg)
                if not datapath.send_msg(msg):
                    self.counters["send_failed"] += len(carried)
                    LOG.warning("dpid=%016x switch=%s send of %s failed (connection closing)",
                                batch.dpid, self.core.graph.switch_of_dpid(batch.dpid),
                                of.message_name(msg))
                    break
                for part in carried:
                    self.counters[f"sent_{of.message_name(part)}"] += 1
            else:
                if batch.confirm:
                    self.confirmations[(batch.dpid, barrier.xid)] = batch.confirm

    # -- the worker ---------------------------------------------------------------

    def _post(self, what, dpid, call, *args):
        self.work.put((what, dpid, call, args))

    def _worker(self):
        while True:
            self.handle(self.work.get())
            if self._written:
                # The datapaths' send loops write what this event sent before
                # the next event is handled: a queue of packet-ins never
                # yields by itself, and a handover's first deliveries waited
                # behind every packet-in queued after its arrival (2 ms at
                # 1,000 packets/s, docs/benchmarks.md).
                self._written = False
                hub.sleep(0)

    def handle(self, item) -> None:
        """One queued event: the core decides, the result is sent."""
        what, dpid, call, args = item
        if what == PACKET_IN:
            self.packet_ins_waiting -= 1
        elif what == RADIUS:
            self.radius.handled()
        try:
            now = time.monotonic()
            self.send(call(*args, now) or [])
            if what == PACKET_IN and self.packet_ins_waiting == 0:
                self.send(self.core.packet_ins_handled(now))
            self._write_state(now)
            if not self._mpa_tick_queued:
                # The event may have made work due sooner than the ticker
                # sleeps (a handover's flush): wake it.
                due = self.core.next_mpa_tick(now)
                if due is not None and due < self._ticker_wake:
                    self._ticker_wake = due
                    self._wake.set()
        except Exception:
            self.counters["handler_error"] += 1
            LOG.exception("dpid=%s switch=%s handling %s failed",
                          None if dpid is None else f"{dpid:016x}",
                          None if dpid is None else self.core.graph.switch_of_dpid(dpid), what)
        heap.after_event()

    def _write_state(self, now: float, at_once: bool = False) -> None:
        """What the events so far changed, to the state file in one
        transaction, once their flows and answers have gone out: when no
        event waits and no checkpoint runs (a burst is one write), or sooner
        past either bound (state_write_records, state_write_delay_s).  A failed write keeps
        the records for the next one (mpa_sdn/store.py)."""
        pending = self.store.pending
        if not pending:
            return
        if self._unwritten_since is None:
            self._unwritten_since = now
        # While a checkpoint runs, a write would keep it from catching up
        # (the WAL could then never start over): wait, within the same bounds.
        if (self.work.qsize() or self.store.checkpointing) and not at_once:
            if pending >= self.settings.state_write_records:
                self.counters["state_write_by_records"] += 1
            elif now - self._unwritten_since >= self.settings.state_write_delay_s:
                self.counters["state_write_by_delay"] += 1
            else:
                return
        try:
            written = self.store.flush()
        except StoreError:
            self.counters["state_write_failed"] += 1
            LOG.exception("%d records not written to the state file; tried again after "
                          "the next event", pending)
            return
        self._unwritten_since = None
        self.counters["state_write"] += 1
        self.counters["state_records_written"] += written

    def _ticker(self):
        """The core's tick every TICK_S; the AA's and CA's sooner when a DAD
        probe is due (probes are tenths of a second apart)."""
        next_tick = time.monotonic() + TICK_S
        while True:
            now = time.monotonic()
            due = None if self._mpa_tick_queued else self.core.next_mpa_tick(now)
            wake = next_tick if due is None else min(next_tick, due)
            self._ticker_wake = wake
            self._wake.clear()
            self._wake.wait(timeout=max(0.0005, wake - now))
            now = time.monotonic()
            if now >= next_tick:
                next_tick = now + TICK_S
                self._post("tick", None, self.core.tick)
                if now >= self._full_collection_due:
                    self._full_collection_due = self._next_full_collection(now)
                    self._post("full collection", None, self._full_collection)
            elif not self._mpa_tick_queued and self._mpa_tick_due(now):
                # One at a time: a worker that fell behind gets no pile of ticks.
                self._mpa_tick_queued = True
                self._post("mpa tick", None, self._mpa_tick)

    def _mpa_tick_due(self, now: float) -> bool:
        """Whether the AA's, CA's or mobility's work is due now.  The ticker
        is also woken when an event made work due sooner than it slept
        (handle): ticking then, before it is due, made the worker wake it
        again at once, a loop of empty ticks every 30 us while a DAD probe
        or a PANA timer was pending, which starved the switches'
        connections (handovers waited milliseconds for their packet-ins)."""
        due = self.core.next_mpa_tick(now)
        return due is not None and now >= due

    def _next_full_collection(self, now: float) -> float:
        """When the next full collection is due: never if gc_full_every_s is 0."""
        every = self.settings.gc_full_every_s
        return now + every if every else math.inf

    def _full_collection(self, now):
        heap.collect_everything(self.counters)
        return []

    def _mpa_tick(self, now):
        self._mpa_tick_queued = False
        return self.core.mpa_tick(now)

    def _wait_events(self, after: int, timeout: float) -> bool:
        """An event stream's wait: until the core has an event after ``after``."""
        events = self.core.events
        if events.last_id > after or self.rest.facade.closed:
            return events.last_id > after
        woken = hub.Event()
        events.listeners.append(woken.set)
        self._waits.add(woken)
        try:
            woken.wait(timeout=timeout)
        finally:
            events.listeners.remove(woken.set)
            self._waits.discard(woken)
        return events.last_id > after

    def _exchange(self, make_origin, call, timeout=WAIT_FOR_DAD_S, held_from=None):
        """Run a REST request's core call in the worker and wait (``timeout`` s)
        for its answer; raise Busy, having queued nothing, past a bound."""
        if self.rest.facade.closed:
            self.counters["rest_refused_stopping"] += 1
            raise Busy("the controller is stopping; nothing was done")
        slots, key = (self._waiting, "") if held_from is None else (self._held, held_from)
        refused = slots.take(key)
        if refused is not None:
            raise Busy("too many questions held from this address; nothing was done"
                       if refused == "key" else
                       "the controller is too busy to take it now; nothing was done")
        done = hub.Event()
        box = []

        def reply(answer):
            if not box:
                box.append(answer)
                done.set()
        origin = make_origin(reply)
        self._waits.add(done)
        try:
            self._post("rest signal", None, lambda now: call(origin, now))
            done.wait(timeout=timeout)
        finally:
            slots.give(key)
            self._waits.discard(done)
        # Popped: the answer holds its origin, whose reply_to holds the box;
        # left in the box, that cycle would wait for the full collection.
        return box.pop() if box else None

    # -- events (each only queues) -----------------------------------------------

    def _radius_answer(self, data: bytes, source: tuple) -> None:
        self._post(RADIUS, None, self.core.radius, data, source)

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev):
        datapath = ev.datapath
        if datapath.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            if self.datapaths.get(datapath.id) not in (None, datapath):
                # A new connection before the old one's end: its barriers
                # will never be answered.
                self._drop_confirmations(datapath.id)
            self.datapaths[datapath.id] = datapath
            address = "%s:%s" % datapath.address[:2] if datapath.address else None
            self._post("switch connect", datapath.id,
                       lambda now: self.core.switch_connected(datapath.id, now, address))
        elif self.datapaths.get(datapath.id) is datapath:
            del self.datapaths[datapath.id]
            self._drop_confirmations(datapath.id)
            self._post("switch disconnect", datapath.id, self.core.switch_disconnected,
                       datapath.id)

    def _drop_confirmations(self, dpid) -> None:
        for key in [k for k in self.confirmations if k[0] == dpid]:
            del self.confirmations[key]

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev):
        msg = ev.msg
        more = bool(msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE)
        self._post("flow stats", msg.datapath.id,
                   lambda now: self.core.flow_stats(msg.datapath.id, msg.body, more))

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier(self, ev):
        dpid = ev.msg.datapath.id
        tag = self.confirmations.pop((dpid, ev.msg.xid), None)
        if tag is not None:
            self._post("barrier", dpid, self.core.flows_confirmed, dpid, tag)

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        if self.packet_ins_waiting >= self.settings.packet_in_queue:
            self.counters["packet_in_queue_full"] += 1
            return
        self.packet_ins_waiting += 1
        self._post(PACKET_IN, msg.datapath.id, self.core.packet_in, msg.datapath.id,
                   msg.match.get("in_port"), msg.table_id, msg.data)

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        gone = (msg.reason == ofp.OFPPR_DELETE
                or bool(msg.desc.state & ofp.OFPPS_LINK_DOWN))
        self._post("port status", msg.datapath.id, self.core.port_status,
                   msg.datapath.id, msg.desc.port_no, gone)

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev):
        msg = ev.msg
        self._post("flow removed", msg.datapath.id, self.core.flow_removed,
                   msg.datapath.id, msg.cookie, msg.reason, dict(msg.match.items()))

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _error(self, ev):
        msg = ev.msg
        LOG.error("dpid=%016x switch=%s OpenFlow error type=%d code=%d data=%s",
                  msg.datapath.id, self.core.graph.switch_of_dpid(msg.datapath.id), msg.type,
                  msg.code, bytes(msg.data[:64]).hex())
        self._post("openflow error", msg.datapath.id, self.core.openflow_error,
                   msg.datapath.id, msg.type, msg.code)

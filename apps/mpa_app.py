"""The Ryu application: the only code that talks to switches.

Each event handler hands the event to the core (:mod:`mpa_sdn.controller`)
with the current time and sends what the core returns through ``send``, the
one send point.  Packet-ins are only decoded and queued here; a worker green
thread feeds them to the core, so a burst never blocks the OpenFlow channel.
"""

from __future__ import annotations

import collections
import logging
import time

from eventlet import queue as eventlet_queue
from ryu.base import app_manager
from ryu.controller import ofp_event
from ryu.controller.handler import DEAD_DISPATCHER, MAIN_DISPATCHER, set_ev_cls
from ryu.lib import hub
from ryu.ofproto import ofproto_v1_3

from apps import runtime
from mpa_sdn import openflow as of
from mpa_sdn.controller import Controller
from mpa_sdn.facade import Facade
from rest_api.app import RestApi

LOG = logging.getLogger("apps.mpa_app")
TICK_S = 0.5


class MpaApp(app_manager.RyuApp):
    OFP_VERSIONS = [ofproto_v1_3.OFP_VERSION]

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.runtime = runtime.current()
        self.counters = collections.Counter()
        self.core = Controller(self.runtime.topology, self.counters)
        self.settings = self.runtime.topology.controller
        self.datapaths = {}
        self.packet_ins = hub.Queue(self.settings.packet_in_queue)
        self.rest = RestApi(Facade(self.core), self.counters)
        self.rest_server = None

    def start(self):
        thread = super().start()
        self._own_threads = [hub.spawn(self._packet_in_worker), hub.spawn(self._ticker),
                             hub.spawn(self._serve_rest)]
        self.threads.extend(self._own_threads)
        return thread

    def stop(self):
        # Ryu's stop() joins every thread in self.threads; ours loop forever,
        # so end them first.
        for thread in self._own_threads:
            hub.kill(thread)
        if self.rest_server is not None:
            self.rest_server.server.close()
        super().stop()

    def _serve_rest(self):
        host, port = self.settings.rest_host, self.settings.rest_port
        try:
            self.rest_server = hub.WSGIServer((host, port), self.rest)
        except OSError as exc:
            LOG.error("REST: cannot listen on %s:%d (%s); stopping", host, port, exc.strerror)
            raise SystemExit(2) from None
        LOG.info("REST API on http://%s:%d/mpa/v1", host, port)
        self.rest_server.serve_forever()

    # -- the one send point -----------------------------------------------------

    def send(self, sends) -> None:
        for batch in sends:
            datapath = self.datapaths.get(batch.dpid)
            if datapath is None:
                self.counters["send_to_disconnected"] += len(batch.messages)
                LOG.debug("dpid=%016x not connected; %d messages dropped",
                          batch.dpid, len(batch.messages))
                continue
            # Deletes first: a batch may replace flows the deletes would hit.
            messages = sorted(batch.messages, key=lambda m: 0 if of.is_delete(m) else 1)
            if batch.barrier:
                messages.append(datapath.ofproto_parser.OFPBarrierRequest(datapath))
            for msg in messages:
                msg.datapath = datapath
                if not datapath.send_msg(msg):
                    self.counters["send_failed"] += 1
                    LOG.warning("dpid=%016x send of %s failed (connection closing)",
                                batch.dpid, type(msg).__name__)
                    break
                self.counters[f"sent_{type(msg).__name__}"] += 1

    def _guard(self, what, dpid, call, *args):
        """Run a core call; a bug there is logged and counted, never fatal."""
        try:
            self.send(call(*args))
        except Exception:
            self.counters["handler_error"] += 1
            LOG.exception("dpid=%s: %s failed", f"{dpid:016x}" if dpid else "-", what)

    # -- events -------------------------------------------------------------------

    @set_ev_cls(ofp_event.EventOFPStateChange, [MAIN_DISPATCHER, DEAD_DISPATCHER])
    def _state_change(self, ev):
        datapath = ev.datapath
        if datapath.id is None:
            return
        if ev.state == MAIN_DISPATCHER:
            self.datapaths[datapath.id] = datapath
            address = "%s:%s" % datapath.address[:2] if datapath.address else None
            self._guard("switch connect", datapath.id, self.core.switch_connected,
                        datapath.id, time.time(), address)
        elif self.datapaths.get(datapath.id) is datapath:
            del self.datapaths[datapath.id]
            self.core.switch_disconnected(datapath.id, time.time())

    @set_ev_cls(ofp_event.EventOFPFlowStatsReply, MAIN_DISPATCHER)
    def _flow_stats(self, ev):
        msg = ev.msg
        more = bool(msg.flags & msg.datapath.ofproto.OFPMPF_REPLY_MORE)
        self._guard("flow stats", msg.datapath.id, self.core.flow_stats,
                    msg.datapath.id, msg.body, more)

    @set_ev_cls(ofp_event.EventOFPBarrierReply, MAIN_DISPATCHER)
    def _barrier(self, ev):
        self.core.flows_confirmed(ev.msg.datapath.id, time.time())

    @set_ev_cls(ofp_event.EventOFPPacketIn, MAIN_DISPATCHER)
    def _packet_in(self, ev):
        msg = ev.msg
        try:
            self.packet_ins.put_nowait((msg.datapath.id, msg.match.get("in_port"),
                                        msg.table_id, msg.data))
        except eventlet_queue.Full:
            self.counters["packet_in_queue_full"] += 1

    def _packet_in_worker(self):
        while True:
            dpid, in_port, table_id, data = self.packet_ins.get()
            self._guard("packet-in", dpid, self.core.packet_in,
                        dpid, in_port, table_id, data, time.time())

    def _ticker(self):
        while True:
            hub.sleep(TICK_S)
            try:
                self.core.tick(time.time())
            except Exception:
                self.counters["handler_error"] += 1
                LOG.exception("tick failed")

    @set_ev_cls(ofp_event.EventOFPPortStatus, MAIN_DISPATCHER)
    def _port_status(self, ev):
        msg = ev.msg
        ofp = msg.datapath.ofproto
        gone = (msg.reason == ofp.OFPPR_DELETE
                or bool(msg.desc.state & ofp.OFPPS_LINK_DOWN))
        self._guard("port status", msg.datapath.id, self.core.port_status,
                    msg.datapath.id, msg.desc.port_no, gone, time.time())

    @set_ev_cls(ofp_event.EventOFPFlowRemoved, MAIN_DISPATCHER)
    def _flow_removed(self, ev):
        msg = ev.msg
        self._guard("flow removed", msg.datapath.id, self.core.flow_removed,
                    msg.datapath.id, msg.cookie, msg.reason, time.time())

    @set_ev_cls(ofp_event.EventOFPErrorMsg, MAIN_DISPATCHER)
    def _error(self, ev):
        msg = ev.msg
        self.counters["openflow_error"] += 1
        LOG.error("dpid=%016x OpenFlow error type=%d code=%d data=%s",
                  msg.datapath.id, msg.type, msg.code, bytes(msg.data[:64]).hex())

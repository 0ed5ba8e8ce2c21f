"""A fake Ryu datapath and a fast flow table, for driving the Ryu
application at scale (benchmarks/mn_scale.py and its smoke test).

``FakeDatapath`` is what Ryu's ``Datapath`` is to the application: sending
serializes the message, as Ryu's does, and queues it in ``outbox`` for the
switch side to take.  ``KeyedTable`` holds a switch's flows by key, so that
ten thousand MNs' flows cost little to keep; ``fakeoftable.FakeSwitch`` has
the same ``apply`` and forwards packets, for small runs.
"""

from __future__ import annotations

import collections

from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from mpa_sdn import openflow as of


class KeyedTable:
    """A flow table kept by (table, priority, match), with the delete
    semantics the controller uses: strict by key and cookie, or by cookie
    alone.  Holds keys and cookies only."""

    def __init__(self):
        self.flows: dict[tuple, int] = {}
        self.by_cookie: dict[int, set] = collections.defaultdict(set)
        self.packet_outs = 0

    def apply(self, sent) -> None:
        for msg in of.messages_in(sent):   # the bytes the core packed, as sent
            self._apply(msg)

    def _apply(self, msg) -> None:
        if of.message_name(msg) == "OFPPacketOut":
            self.packet_outs += 1
        elif of.message_name(msg) == "OFPFlowMod":
            key = of.flow_key(msg)
            if msg.command == ofp.OFPFC_ADD:
                self._drop(key)
                self.flows[key] = msg.cookie
                self.by_cookie[msg.cookie].add(key)
            elif msg.command == ofp.OFPFC_DELETE_STRICT:
                cookie = self.flows.get(key)
                if cookie is not None and cookie & msg.cookie_mask == msg.cookie & msg.cookie_mask:
                    self._drop(key)
            elif len(key) == 3 and msg.cookie_mask == (1 << 64) - 1:   # no match fields
                for key in list(self.by_cookie.get(msg.cookie, ())):
                    self._drop(key)
            else:
                raise NotImplementedError("a non-strict delete with a match")

    def _drop(self, key) -> None:
        cookie = self.flows.pop(key, None)
        if cookie is not None:
            self.by_cookie[cookie].discard(key)

    def flow_stats(self) -> list:
        assert not self.flows, "the benchmark's switches connect empty"
        return []


class FakeDatapath:
    """A switch's connection as the application sees it."""

    ofproto = ofp
    ofproto_parser = parser

    def __init__(self, dpid: int, table):
        self.id = dpid
        self.address = ("127.0.0.1", 40000 + dpid % 20000)
        self.table = table
        self.outbox: list = []
        self.xid = 0

    def send_msg(self, msg) -> bool:
        self.xid += 1
        msg.set_xid(self.xid)
        msg.serialize()
        self.outbox.append(msg)
        return True

"""Mobility's desired flows, kept by subject and changed a subject at a time.

A subject is what one flow cookie names (:mod:`mpa_sdn.tables`): a tunnel
(its nCoA), a binding (its home address) or a handover's buffer (the
buffered address).  Every flow of a subject carries that cookie.  When a
subject changes, only its flows are built again, and :meth:`update` says
which flows of the whole desired state that changed, so a change costs the
same with one MN or ten thousand.

Where two subjects want a flow with the same key (table, priority, match),
the one that comes later in the order tunnels, bindings, buffers (each by
address, as text) holds it, as when the whole state is built in that order;
the others' wishes are kept and come back if it lets go.
"""

from __future__ import annotations

import ipaddress

from mpa_sdn import openflow as of
from mpa_sdn.tables import feature_of, subject_of


def order_of(cookie: int) -> tuple:
    """Where a subject comes in the whole state's build order."""
    return feature_of(cookie), str(ipaddress.IPv4Address(subject_of(cookie) & 0xFFFFFFFF))


class DesiredFlows:
    def __init__(self):
        # switch -> {FlowKey: (FlowRecord, flow-mod)}: what reconnecting
        # switches are reconciled against.
        self.installed: dict[str, dict] = {}
        self._parts: dict[int, tuple] = {}     # cookie -> its (switch, key)s
        self._shadowed: dict[tuple, dict] = {}  # (switch, key) -> {order: (record, mod)}

    def update(self, cookie: int, by_switch: dict[str, list]) -> list[tuple]:
        """The subject's flows are now ``by_switch``.  Returns what changed
        in the whole state: (switch, key, before, after), each of before
        and after a (record, mod) or None."""
        new: dict[tuple, tuple] = {}
        for switch, mods in by_switch.items():
            for mod in mods:
                record = of.record_of(mod)
                new[(switch, record.key)] = (record, mod)
        touched = dict.fromkeys(self._parts.pop(cookie, ()))
        touched.update(dict.fromkeys(new))
        if new:
            self._parts[cookie] = tuple(new)
        changes = []
        for place in touched:
            switch, key = place
            table = self.installed.setdefault(switch, {})
            before = table.get(key)
            after = new.get(place)
            others = self._shadowed.pop(place, None)
            if others is not None or (before is not None and before[0].cookie != cookie):
                after = self._contend(place, cookie, before, after, others or {})
            if after is None:
                table.pop(key, None)
                if not table:
                    del self.installed[switch]
            else:
                table[key] = after
            if before is not after:
                changes.append((switch, key, before, after))
        return changes

    def _contend(self, place, cookie, before, mine, others: dict):
        """Several subjects want the flow at ``place``: the last in order
        holds it; the rest wait in the shadow."""
        others.pop(order_of(cookie), None)
        if before is not None and before[0].cookie != cookie:
            others[order_of(before[0].cookie)] = before
        if mine is not None:
            others[order_of(cookie)] = mine
        if not others:
            return None
        winner = others.pop(max(others))
        if others:
            self._shadowed[place] = others
        return winner

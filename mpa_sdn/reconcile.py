"""Bring a switch's flow table to exactly what it should hold.

Given the flows a switch reports (flow stats) and the flows it should have,
return the deletes for every flow we do not recognise (a foreign cookie, or a
key we would not install) followed by the adds for every flow that is
missing or differs.  Flows that are already right are left alone, so their
counters survive a reconnect and traffic is never interrupted.  Temporary
drops of refused sources are not part of what a switch should hold: a
reconnect clears them, and a source still misbehaving is refused again.
"""

from __future__ import annotations

from dataclasses import dataclass

from mpa_sdn import openflow as of
from mpa_sdn.tables import is_ours


@dataclass(frozen=True)
class Plan:
    deletes: list
    adds: list
    kept: int

    @property
    def messages(self) -> list:
        return self.deletes + self.adds


def plan(existing_stats, desired_flow_mods) -> Plan:
    # Compared as bytes (of.flow_key, of.flow_record): the desired flows are
    # kept in wire form, and a switch's report is put in the same form.
    desired = {}
    for mod in desired_flow_mods:
        desired[of.flow_key(mod)] = (of.flow_record(mod), mod)
    present = {}
    deletes = []
    for stat in sorted(existing_stats, key=lambda s: (s.table_id, -s.priority, s.cookie)):
        key = of.flow_key(stat)
        wanted = desired.get(key)
        if wanted is None or not is_ours(stat.cookie):
            deletes.append(of.flow_delete_strict(stat.table_id, stat.priority, stat.match))
            continue
        present[key] = of.flow_record(stat)
    adds = [mod for key, (record, mod) in desired.items() if present.get(key) != record]
    return Plan(deletes=deletes, adds=adds, kept=len(desired) - len(adds))

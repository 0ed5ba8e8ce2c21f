"""Mobility's tick takes the tunnels, bindings and standbys whose time is
over from heaps of their ends: it walks none of its tables, an entry renewed
ends at its new time and not its old, and the heaps stay within twice the
entries however often they are renewed."""

from __future__ import annotations

import pytest

from support.handover_rig import HOME, NCOA, bound, later, make_rig, variant

TABLES = ("tunnels", "bindings", "pending", "standbys")


@pytest.fixture
def rig():
    return make_rig(variant(tunnel_lifetime_s=600))


def unwalkable(mobility, monkeypatch):
    def walked(*args):
        raise AssertionError("the tick walked a table")
    for name in TABLES:
        table = getattr(mobility, name)
        for method in ("values", "items", "__iter__"):
            monkeypatch.setattr(table, method, walked, raising=False)


def test_a_tick_walks_no_table_and_still_ends_what_is_over(rig, monkeypatch):
    bound(rig)
    mobility = rig.core.mobility
    tunnel = mobility.tunnels[NCOA]
    unwalkable(mobility, monkeypatch)
    later(rig, 1)
    assert mobility.tunnels.get(NCOA) is tunnel
    later(rig, 600)
    assert mobility.tunnels.get(NCOA) is None
    assert rig.core.counters["tunnel_expired"] == 1


def test_a_renewed_binding_ends_at_its_new_time(rig):
    mn = bound(rig)
    mn.bind(lifetime=100)
    mobility = rig.core.mobility
    first = mobility.bindings[HOME].expires
    later(rig, 10)
    mn.bind(lifetime=100)                                  # renewed: it ends later
    assert mobility.bindings[HOME].expires > first
    rig.now = first - rig.core.mpa.wall_offset + 1
    rig.run(rig.core.tick(rig.now))
    assert HOME in mobility.bindings and not rig.core.counters["binding_expired"]
    rig.now = mobility.bindings[HOME].expires - rig.core.mpa.wall_offset + 1
    rig.run(rig.core.tick(rig.now))
    assert HOME not in mobility.bindings and rig.core.counters["binding_expired"] == 1


def test_the_heaps_of_ends_stay_within_twice_their_entries(rig):
    mn = bound(rig)
    mobility = rig.core.mobility
    for _ in range(300):
        rig.now += 0.01
        mn.bind(lifetime=100)
    for name in TABLES:
        assert len(mobility._ends[name]) <= 2 * len(getattr(mobility, name)) + 64, name

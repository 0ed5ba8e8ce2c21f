"""A state file written before mobility became a package loads after it.

The fixtures under tests/data/state-before-mobility-split were written by the
controller at commit 39f392a, running the same steps the tests below run
again (handover_rig.bound: a tunnel to net-b1 and a binding through it;
standby_rig.standing_by: a binding where mn1 is and a standby
interface in net-b1).  A controller started on a copy of each must find the
same tunnels, bindings and standbys, put the same flows on the switches as
the controller that made them, and write its own records in the same form.
"""

from __future__ import annotations

import os
import shutil

import pytest

from mpa_sdn.store import MemoryStore, SqliteStore
from mpa_sdn.tables import Feature
from support.standby_rig import copying_switches, standing_by
from support.handover_rig import CN_IP, HOME, MN_IP, NCOA, bound, flows_of, make_rig
from support.paths import DATA

FIXTURES = DATA / "state-before-mobility-split"
KINDS = ("tunnel", "binding", "standby")
MOBILITY = (Feature.TUNNEL, Feature.BINDING, Feature.BUFFER)


def records(store) -> dict:
    return {kind: store.load(kind) for kind in KINDS}


def from_fixture(topology, tmp_path, name: str):
    """A controller started on a copy of the fixture ``name``, and its store."""
    path = str(tmp_path / "state.db")
    shutil.copyfile(os.path.join(FIXTURES, f"{name}.db"), path)
    store = SqliteStore(path)
    return make_rig(topology, store=store), store


@pytest.mark.parametrize("name, build", [("tunnel-and-binding", bound),
                                         ("standby", standing_by)])
def test_a_state_file_written_before_loads_with_its_records_and_flows(topology, tmp_path,
                                                                      name, build):
    rig, store = from_fixture(topology, tmp_path, name)
    assert not [k for k in rig.core.counters if k.endswith("_record_invalid")]
    fresh_store = MemoryStore()
    fresh = make_rig(topology, store=fresh_store)
    build(fresh)
    # Today's controller writes the records the file holds, field for field...
    assert records(fresh_store) == records(store)
    assert {kind: len(held) for kind, held in records(store).items()} == {
        "tunnel": name == "tunnel-and-binding", "binding": 1, "standby": name == "standby"}
    # ... and, loading them, wants the flows the controller that wrote them had.
    assert flows_of(rig, *MOBILITY) == flows_of(fresh, *MOBILITY)
    assert rig.core.mobility.bindings == fresh.core.mobility.bindings
    assert rig.core.mobility.tunnels == fresh.core.mobility.tunnels
    assert rig.core.mobility.standbys == fresh.core.mobility.standbys


def test_the_loaded_tunnel_and_binding_carry_the_home_address(topology, tmp_path):
    rig, _ = from_fixture(topology, tmp_path, "tunnel-and-binding")
    assert rig.core.mobility.bindings[HOME].care_of == NCOA
    assert rig.core.mobility.tunnels[NCOA].poa.id == "ap-a1-1"
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert down["ipv4_dst"] == HOME


def test_the_loaded_standby_copies_what_the_active_poa_delivers(topology, tmp_path):
    rig, _ = from_fixture(topology, tmp_path, "standby")
    assert rig.core.mobility.bindings[HOME].care_of == MN_IP
    assert rig.core.mobility.standbys[HOME].care_of == NCOA
    [down] = rig.ping("cn1", HOME).to("mn1")
    assert down["ipv4_dst"] == HOME and down["ipv4_src"] == CN_IP
    assert copying_switches(rig) == {"ar-a1"}
    assert rig.core.counters["copy_made"] == 1

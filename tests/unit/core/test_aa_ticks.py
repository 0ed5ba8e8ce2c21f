"""The AA holds an SA whose MN left and did not come back within the grace,
from a heap of those graces' ends: a tick looks at no SA still within its
grace, and an MN that came back and left again is held at its second
grace's end, not its first."""

from __future__ import annotations

from mpa_sdn.aa import LEAVE_GRACE_S
from mpa_sdn.mpa_sa import AUTHORIZED, HELD
from support.service_rig import MN_MAC, Rig


class Unwalkable(dict):
    def items(self):
        raise AssertionError("the tick walked every SA leaving")

    def __iter__(self):
        raise AssertionError("the tick walked every SA leaving")


def authorized(rig):
    state = rig.preauth()
    rig.configure(state)     # the first signed message binds the SA to the MAC
    rig.seen(MN_MAC, "10.2.1.150", "net-b1")
    sa = rig.service.aa.sas[state.sa]
    assert sa.state == AUTHORIZED
    return sa


def test_a_tick_within_the_grace_looks_at_no_sa():
    rig = Rig()
    sa = authorized(rig)
    rig.left(MN_MAC, "net-b1")
    aa = rig.service.aa
    aa._leaving = Unwalkable(aa._leaving)
    rig.now += LEAVE_GRACE_S / 2
    rig.service.tick(rig.now)
    assert sa.state == AUTHORIZED
    rig.now += LEAVE_GRACE_S
    rig.service.tick(rig.now)
    assert sa.state == HELD


def test_an_mn_back_and_gone_again_is_held_at_its_second_graces_end():
    rig = Rig()
    sa = authorized(rig)
    rig.left(MN_MAC, "net-b1")
    rig.now += LEAVE_GRACE_S / 2
    rig.seen(MN_MAC, "10.2.1.150", "net-b1")    # back within the grace
    rig.now += 1
    rig.left(MN_MAC, "net-b1")                   # and gone again
    second = rig.now
    rig.now += LEAVE_GRACE_S / 2 + 0.5           # past the first grace's end
    rig.service.tick(rig.now)
    assert sa.state == AUTHORIZED
    rig.now = second + LEAVE_GRACE_S
    rig.service.tick(rig.now)
    assert sa.state == HELD

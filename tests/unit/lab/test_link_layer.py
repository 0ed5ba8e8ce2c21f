"""The lab's modelled link layer (mpa_lab/net/link_layer.py): how long a
switch holds the link down, and what the switch does to the bridges, the
stubs and the MN's carrier, run against a model of the kernel's interfaces
and a fake clock."""

from __future__ import annotations

from types import SimpleNamespace

import networkx as nx
import pytest

from mpa_lab.net.link_layer import (STAY_UP, Attachment, Clock, cut_plan, execute,
                                    imposed_outage_ms, stub_name, switch_plan)
from mpa_sdn.interface_names import port_name
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.topology import PoA


@pytest.fixture
def graph(topology):
    return NeighbourhoodGraph(topology)


def test_the_outage_is_the_topology_s_l2_handover_time_between_the_two_networks(graph):
    a1, a2, b1 = graph.poa("ap-a1-1"), graph.poa("ap-a2-1"), graph.poa("ap-b1-1")
    assert imposed_outage_ms(graph, a1, a2) == 50.0
    assert imposed_outage_ms(graph, a2, a1) == 50.0          # the relation is bidirectional
    assert imposed_outage_ms(graph, a1, b1) == 200.0


def test_within_one_network_or_without_a_time_the_outage_is_zero(graph):
    assert imposed_outage_ms(graph, graph.poa("ap-a1-1"), graph.poa("ap-a1-2")) == 0.0
    bare = SimpleNamespace(network_graph=nx.DiGraph([("n1", "n2", {"l2_handover_ms": None}),
                                                     ("n1", "n1", {"l2_handover_ms": 3})]))
    n1, n2 = PoA("p1", "n1", "s1", 1), PoA("p2", "n2", "s2", 1)
    assert imposed_outage_ms(bare, n1, n2) == 0.0
    assert imposed_outage_ms(bare, n2, n1) == 0.0             # no relation that way
    assert imposed_outage_ms(bare, n1, PoA("p3", "n1", "s1", 2)) == 3.0


def test_an_experiment_s_link_layer_time_overrides_the_topology_s(graph):
    a1, b1, a12 = graph.poa("ap-a1-1"), graph.poa("ap-b1-1"), graph.poa("ap-a1-2")
    assert imposed_outage_ms(graph, a1, b1, 4) == 4.0
    assert imposed_outage_ms(graph, a1, a12, 16) == 16.0
    assert imposed_outage_ms(graph, a1, b1, 0) == 0.0


def test_a_stub_s_name_is_as_long_as_its_poa_s_port_s():
    assert len(stub_name("ar-a1", 3)) == len(port_name("ar-a1", 3))
    assert stub_name("ar-a1", 3) != port_name("ar-a1", 3)


class Kernel:
    """Interfaces and bridges as the switch sees them: who is up, who is in
    which bridge, and what each side observes (the MN's carrier changes,
    the PoAs' port status as Open vSwitch reports it), each with the fake
    clock's time."""

    def __init__(self, clock, mn_end: str, stubs: dict[str, str], bridges: dict[str, set]):
        self.clock = clock
        self.mn_end = mn_end
        self.stubs = stubs                      # stub -> its PoA
        self.up = {mn_end: True, **{stub: False for stub in stubs}}
        self.bridges = bridges
        self.carrier: list[tuple[int, bool]] = []     # the MN's
        self.ports: list[tuple[int, str, bool]] = []  # (when, PoA, link up)
        self.ioctl_cost_ns = 20_000
        self.polls: dict[str, int] = {}
        self.watch_polls = 0

    def set_up(self, name, up):
        self.clock.now += self.ioctl_cost_ns
        if self.up[name] != up:
            self.up[name] = up
            if name == self.mn_end:
                self.carrier.append((self.clock.now, up))
            else:
                self.ports.append((self.clock.now, self.stubs[name], up))

    def running(self, name):
        """Up, and the link watch has run (``watch_polls`` looks after it came up)."""
        self.clock.now += self.ioctl_cost_ns
        if not self.up[name]:
            return False
        self.polls[name] = self.polls.get(name, 0) + 1
        return self.polls[name] > self.watch_polls

    def join(self, bridge, name):
        self.clock.now += self.ioctl_cost_ns
        assert all(name not in members for members in self.bridges.values())
        self.bridges[bridge].add(name)

    def leave(self, bridge, name):
        self.clock.now += self.ioctl_cost_ns
        self.bridges[bridge].remove(name)

    def delivers(self, bridge) -> set[str]:
        """Where the MN's frames can go: the bridge's other members that are up,
        if the MN's own end is."""
        members = self.bridges[bridge]
        if not self.up[self.mn_end]:
            return set()
        return {m for m in members - {self.mn_end} if self.up[m]}


class FakeClock:
    def __init__(self):
        self.now = 1_000_000_000
        self.slept: list[float] = []

    def clock(self) -> Clock:
        return Clock(monotonic_ns=lambda: self.now, time_ns=lambda: self.now + 7,
                     sleep=self.sleep)

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += int(seconds * 1e9) + 50_000      # a sleep overshoots


@pytest.fixture
def at_old():
    fake = FakeClock()
    kernel = Kernel(fake, "mn0-0", {"s1-stb3": "old", "s2-stb4": "new"},
                    {"br0-0": {"mn0-0", "s1-stb3"}})
    kernel.up["s1-stb3"] = True
    return fake, kernel, Attachment("br0-0", "mn0-0", "s1-stb3")


def test_a_switch_moves_the_mn_s_frames_to_the_new_poa_with_one_carrier_drop(at_old):
    fake, kernel, attachment = at_old
    assert kernel.delivers("br0-0") == {"s1-stb3"}
    done = execute(switch_plan(attachment, "s2-stb4"), kernel, 16.0, fake.clock())
    assert kernel.delivers("br0-0") == {"s2-stb4"}
    assert kernel.bridges["br0-0"] == {"mn0-0", "s2-stb4"}
    assert [up for _, up in kernel.carrier] == [False, True]
    assert [(poa, up) for _, poa, up in kernel.ports] == [("old", False), ("new", True)]
    assert (done.down_ns, done.up_ns) == (kernel.carrier[0][0], kernel.carrier[1][0])
    assert done.down_wall_ns == done.down_ns + 7 and done.up_wall_ns == done.up_ns + 7


def test_the_link_stays_down_for_the_imposed_outage_and_the_new_port_comes_up_only_then(at_old):
    fake, kernel, attachment = at_old
    done = execute(switch_plan(attachment, "s2-stb4"), kernel, 16.0, fake.clock())
    (down, _), (up, _) = kernel.carrier
    old_port_down = next(t for t, poa, u in kernel.ports if poa == "old" and not u)
    new_port_up = next(t for t, poa, u in kernel.ports if poa == "new" and u)
    # The old PoA loses the MN within the outage; the new one sees it when
    # its link comes up, not before (the controller takes that for arrival).
    assert down < old_port_down < down + 16_000_000 <= new_port_up <= up
    assert up - down >= 16_000_000
    # The measured outage is the imposed one (and the sleep's overshoot: 50 us
    # here) plus the ioctls after it; the old PoA's ioctls are within the
    # hold.  The ioctls are counted apart from it (one of them the look
    # at whether the new stub is operational).
    assert done.ioctl_ns == 7 * kernel.ioctl_cost_ns
    beyond = done.up_ns - done.down_ns - 16_000_000 - 4 * kernel.ioctl_cost_ns
    assert 0 <= beyond <= 50_000


def test_without_an_outage_nothing_sleeps(at_old):
    fake, kernel, attachment = at_old
    done = execute(switch_plan(attachment, "s2-stb4"), kernel, 0.0, fake.clock())
    assert fake.slept == [] and done.held_ns == 0
    assert done.up_ns - done.down_ns == 6 * kernel.ioctl_cost_ns


def test_a_link_that_never_comes_up_leaves_both_ports_down_and_holds_nothing(at_old):
    fake, kernel, attachment = at_old
    done = execute(switch_plan(attachment, "s2-stb4", link_up=False), kernel, 16.0,
                   fake.clock())
    assert done.up_ns is None and done.up_wall_ns is None and fake.slept == []
    assert [up for _, up in kernel.carrier] == [False]
    assert [(poa, up) for _, poa, up in kernel.ports] == [("old", False)]
    assert kernel.bridges["br0-0"] == {"mn0-0", "s2-stb4"} and kernel.delivers("br0-0") == set()
    # ... and it can go back where it was (the "return" failure).
    attachment.stub = "s2-stb4"
    execute(switch_plan(attachment, "s1-stb3"), kernel, 0.0, fake.clock())
    assert kernel.delivers("br0-0") == {"s1-stb3"}
    assert [up for _, up in kernel.carrier] == [False, True]


def test_a_sudden_loss_takes_the_mn_s_link_and_its_poa_s_port_down_where_they_are(at_old):
    fake, kernel, attachment = at_old
    done = execute(cut_plan(attachment), kernel, 0.0, fake.clock())
    assert done.up_ns is None
    assert [up for _, up in kernel.carrier] == [False]
    assert [(poa, up) for _, poa, up in kernel.ports] == [("old", False)]
    assert kernel.bridges["br0-0"] == {"mn0-0", "s1-stb3"}


@pytest.fixture
def access_points(at_old):
    """PoA ports that stay up: every stub is up from the start."""
    fake, kernel, attachment = at_old
    kernel.up["s2-stb4"] = True
    return fake, kernel, attachment


def test_with_ports_that_stay_up_a_switch_changes_no_port(access_points):
    fake, kernel, attachment = access_points
    done = execute(switch_plan(attachment, "s2-stb4", poa_ports=STAY_UP), kernel, 16.0,
                   fake.clock())
    assert kernel.delivers("br0-0") == {"s2-stb4"}
    assert kernel.bridges["br0-0"] == {"mn0-0", "s2-stb4"}
    assert [up for _, up in kernel.carrier] == [False, True]
    assert kernel.ports == [], "an access point's port stays up as stations come and go"
    assert done.up_ns - done.down_ns >= 16_000_000
    # Its ioctls: the MN's end down, the leave, the join, the new stub's up
    # (already up: no change) and look, the MN's end up.
    assert done.ioctl_ns == 6 * kernel.ioctl_cost_ns


def test_with_ports_that_stay_up_a_stub_a_sudden_loss_took_down_comes_up_on_the_join(
        access_points):
    fake, kernel, attachment = access_points
    execute(cut_plan(attachment), kernel, 0.0, fake.clock())
    assert [(poa, up) for _, poa, up in kernel.ports] == [("old", False)]
    elsewhere = Attachment("br0-0", "mn0-0", "s2-stb4")
    kernel.bridges["br0-0"] = {"mn0-0", "s2-stb4"}
    execute(switch_plan(elsewhere, "s1-stb3", poa_ports=STAY_UP), kernel, 0.0, fake.clock())
    assert kernel.delivers("br0-0") == {"s1-stb3"}
    assert [(poa, up) for _, poa, up in kernel.ports] == [("old", False), ("old", True)]


def test_an_ioctl_that_fails_stops_the_switch(at_old):
    fake, kernel, attachment = at_old

    def refuse(bridge, name):
        raise OSError(19, "No such device")
    kernel.join = refuse
    with pytest.raises(OSError):
        execute(switch_plan(attachment, "s2-stb4"), kernel, 0.0, fake.clock())
    assert [up for _, up in kernel.carrier] == [False]      # the MN's link stays down


def test_the_mn_s_link_comes_up_only_once_the_new_stub_is_operational(at_old):
    """A bridge port forwards once the kernel has made it operational; the
    MN's gratuitous ARP, sent as soon as its link is up, must not be
    dropped there."""
    fake, kernel, attachment = at_old
    kernel.watch_polls = 3
    execute(switch_plan(attachment, "s2-stb4"), kernel, 0.0, fake.clock())
    new_port_up = next(t for t, poa, u in kernel.ports if poa == "new" and u)
    (_, _), (mn_up, _) = kernel.carrier
    assert kernel.polls["s2-stb4"] == 4 and mn_up > new_port_up
    assert fake.slept.count(0.0001) == 3

"""Mobility keeps its flows a subject at a time, and its handovers indexed by
phase: after any sequence of operations, what it holds must be what the
whole state gives when built from scratch, the switches must hold it, and
every index must answer as a scan of everything would."""

from __future__ import annotations

import random
import types

import pytest

from mpa_sdn import openflow as of
from mpa_sdn.mobility import (tunnels as tn, ACTIVE, BICAST, FLUSHING, PRE_SWITCHING, SETTLE_S,
                              Refused)
from mpa_sdn.tables import Feature, Table, feature_of
from support.fakeoftable import ipv4_packet, to_bytes
from support.network_rig import Rig

NETWORKS = ("net-a1", "net-a2", "net-b1")
POAS = ("ap-a1-1", "ap-a1-2", "ap-a2-1", "ap-b1-1", "ap-b1-2")
MOBILITY = (Feature.TUNNEL, Feature.BINDING, Feature.BUFFER)
WALL = 1_700_000_000.0
CN = "10.0.0.10"


class Mn:
    def __init__(self, n: int):
        self.identity = f"mn{n}@domain-a"
        self.mac = f"02:00:00:00:01:{n:02x}"
        self.home = f"10.255.0.{n}"
        self.n = n

    def address(self, network: str) -> str:      # where it is attached (outside the pool)
        return f"10.{1 if network != 'net-b1' else 2}.{network[-1]}.{10 + self.n}"

    def ncoa(self, network: str) -> str:         # its nCoA there (in the pool)
        return self.address(network).rsplit(".", 1)[0] + f".{100 + self.n}"

    def sa(self, network: str):
        return types.SimpleNamespace(identity=self.identity, network=network, mn_mac=self.mac,
                                     expires=WALL + 10_000)

    def lease(self, network: str):
        return types.SimpleNamespace(address=self.ncoa(network), expires=WALL + 10_000)


def records(tables: dict) -> dict:
    """Desired flows ({switch: {key: flow-mod}}) in the form the fake switches report."""
    return {s: {r.key: r for r in map(of.record_of, t.values())} for s, t in tables.items() if t}


def on_switches(rig) -> dict:
    out = {}
    for name, switch in rig.net.switches.items():
        held = {r.key: r for r in switch.records() if feature_of(r.cookie) in MOBILITY}
        if held:
            out[name] = held
    return out


def check_indexes(mobility) -> None:
    current = list(mobility.handovers.values())
    assert all(mobility._current.by_id(h.id) is h for h in current)
    assert {h.id: h for h in mobility._current.live()} == {
        h.id: h for h in current if h.phase in ACTIVE}
    due = [h.quiet_until if h.relaying else h.next_flush for h in current if h.phase == FLUSHING]
    due += [h.deadline for h in current if h.phase == PRE_SWITCHING]
    due += [when for when, _, _ in mobility._breaks]
    due += [when for when, _ in mobility._flowsync._withdrawals]
    due += [b.until for b in mobility.bicasts.values() if b.until is not None]
    due += [h.punt_confirmed_at + SETTLE_S for h in current if h.phase == PRE_SWITCHING
            and h.punt_confirmed_at is not None and not h.answer_ready]
    assert mobility.next_due() == (min(due) if due else None)
    for poa_id in POAS:
        poa = mobility.graph.poa(poa_id)
        waiting = [h for h in current if h.phase == PRE_SWITCHING and h.network == poa.network]
        assert mobility.expecting(poa) is (waiting[0] if len(waiting) == 1 else None)
    for tunnel in mobility.tunnels.values():
        assert mobility._tunnels_of_mac.get(tunnel.mac).count(tunnel.address) == 1
    used = {label for t in mobility.tunnels.values() for label in (t.down_label, t.up_label)}
    free = (n for n in range(tn.FIRST_LABEL, tn.LAST_LABEL + 1) if n not in used)
    assert mobility._labels() == (next(free), next(free))


class World:
    """Three MNs doing whatever a random sequence says, on fake switches
    that answer every barrier."""

    def __init__(self, topology, seed: int):
        self.rig = Rig(topology, now=1000.0)
        self.rig.connect_all()
        self.core, self.mobility = self.rig.core, self.rig.core.mobility
        self.rng = random.Random(seed)
        self.mns = [Mn(n) for n in (1, 2, 3)]
        self.at: dict[str, str] = {}     # identity -> the PoA it was last put at

    def run(self, sends) -> None:
        self.rig.run(sends)
        self.rig.run(self.mobility.drain())

    def wall(self) -> float:
        return WALL + self.rig.now

    def step(self) -> None:
        rng, mn = self.rng, self.rng.choice(self.mns)
        network = rng.choice(NETWORKS)
        now = self.rig.now
        action = rng.choice(["attach", "attach", "forget", "tunnel", "release", "bind",
                             "bind", "unbind", "standby", "pre-switch", "pre-switch",
                             "arrive", "arrived", "cancel", "punt", "time", "time",
                             "end"])
        try:
            if action == "attach":
                poa = self.mobility.graph.poa(rng.choice(POAS))
                address = rng.choice([mn.address(poa.network), mn.ncoa(poa.network)])
                self.at[mn.identity] = poa.id
                self.run(self.core.router.learn(mn.mac, address, poa, now, how="packet"))
            elif action == "forget":
                hosts = [h for h in self.core.hosts.values() if h.mac == mn.mac]
                if hosts:
                    self.run(self.core.forget_host(rng.choice(hosts).address, "idle", now))
            elif action == "tunnel":
                self.mobility.tunnel_request(mn.sa(network), mn.lease(network), None, None,
                                             self.wall())
            elif action == "release":
                self.mobility.tunnel_release(mn.sa(network), mn.lease(network))
            elif action == "end":   # the nCoA's lease, or the MPA-SA with the network, ended
                if rng.random() < 0.5:
                    self.mobility.lease_ended(mn.ncoa(network), "expired")
                else:
                    self.mobility.sa_ended(mn.identity, network)
            elif action in ("bind", "unbind", "standby"):
                # Mostly what it may bind to: an nCoA with a tunnel, or where it is.
                held = [(t.network, t.address) for t in self.mobility.tunnels.values()
                        if t.mac == mn.mac]
                held += [(h.poa.network, h.address) for h in self.core.hosts.values()
                         if h.mac == mn.mac]
                network, care_of = rng.choice(held) if held and rng.random() < 0.8 else (
                    network, rng.choice([mn.ncoa(network), mn.address(network)]))
                msg = {"home_address": mn.home, "care_of": care_of,
                       "lifetime": 0 if action == "unbind" else None,
                       "standby": action == "standby"}
                self.mobility.binding_update(mn.sa(network), mn.home, msg, None,
                                             mn.lease(network), self.wall())
            elif action == "pre-switch":
                self.mobility.handover(mn.sa(network), mn.lease(network), "pre-switch",
                                       rng.random() < 0.3, now,
                                       BICAST if rng.random() < 0.3 else "buffer")
            elif action in ("arrived", "cancel"):
                self.mobility.handover(mn.sa(network), mn.lease(network), action, False, now)
            elif action == "arrive":
                handover = self.mobility.handovers.get(mn.identity)
                if handover is not None and handover.phase == PRE_SWITCHING:
                    poa = next(p for p in self.mobility.graph.network(handover.network).poas)
                    self.run(self.core.router.learn(mn.mac, handover.address, poa, now,
                                                    how="packet"))
            elif action == "punt":
                handover = self.mobility.handovers.get(mn.identity)
                if handover is not None:
                    nar = self.mobility.graph.network(handover.network).access_router
                    frame = to_bytes(ipv4_packet("02:00:00:00:0c:01", "02:00:00:00:00:01",
                                                 CN, handover.address))
                    self.run(self.core.packet_in(self.mobility.graph.dpid(nar), 1, Table.ROUTE,
                                                 frame, now))
                    self.run(self.core.packet_ins_handled(now))
            else:
                self.rig.now += rng.choice([0.005, SETTLE_S, 0.06, 1.1, 6.0])
                self.run(self.core.tick(self.rig.now))
        except Refused:
            pass
        self.run([])

    def settle(self) -> None:
        """Long enough for every handover to end and every delete to go."""
        for _ in range(3):
            self.rig.now += 6.0
            self.run(self.core.tick(self.rig.now))


@pytest.mark.parametrize("seed", range(16))
def test_incremental_flows_equal_the_whole_state_built_again(topology, seed, monkeypatch):
    world = World(topology, seed)
    mobility = world.mobility
    syncs = []
    sync = mobility._sync

    def checked(*args, **kwargs):
        # Flows follow the state at each sync (between two, as before, a
        # change waits for the next).
        sync(*args, **kwargs)
        assert {s: t for s, t in mobility._installed.items() if t} == mobility.desired()
        syncs.append(1)
    monkeypatch.setattr(mobility, "_sync", checked)
    for _ in range(200):
        world.step()
        check_indexes(mobility)
    world.settle()
    assert len(syncs) > 20
    assert on_switches(world.rig) == records(mobility._installed)
    mobility._sync()
    for switch in world.rig.net.switches:
        wanted = {of.record_of(m) for m in mobility.flows_for(switch)}
        assert wanted == set(records(mobility._installed).get(switch, {}).values())
        assert mobility.flow_count(switch) == len(wanted)


def test_a_key_two_subjects_want_goes_to_the_later_and_back():
    from mpa_sdn.mobility.flowsync import DesiredFlows
    from mpa_sdn.tables import address_cookie

    def punt(cookie):
        return of.flow_add(Table.ROUTE, 360, of.match(eth_type=0x0800, ipv4_dst="10.2.1.100"),
                           of.apply(of.to_controller()), cookie)
    flows = DesiredFlows()
    tunnel = address_cookie(Feature.TUNNEL, "10.2.1.100")
    buffer = address_cookie(Feature.BUFFER, "10.2.1.100")
    [(_, _, before, after)] = flows.update(tunnel, {"ar": [punt(tunnel)]})
    assert before is None and after.cookie == tunnel
    [(_, _, before, after)] = flows.update(buffer, {"ar": [punt(buffer)]})
    assert after.cookie == buffer                         # later in the build order
    assert flows.update(tunnel, {"ar": [punt(tunnel)]}) == []
    assert flows.installed["ar"][after.key].cookie == buffer
    [(_, _, before, after)] = flows.update(buffer, {})
    assert after.cookie == tunnel                         # the tunnel's wish comes back
    [(_, _, before, after)] = flows.update(tunnel, {})
    assert after is None and flows.installed == {}

"""The make-before-break engine knows no feature: any provider's flows are
built a subject at a time and sent in the stages the provider names, each
after the barriers of the one before, the deletes after the last has settled."""

from __future__ import annotations

import collections
import types

from mpa_sdn import openflow as of
from mpa_sdn.mobility.flowsync import RECEIVE, STEER, WITHDRAW, FlowSync
from mpa_sdn.mobility.records import SETTLE_S
from mpa_sdn.tables import Feature, Table, address_cookie

SWITCHES = {"edge": 1, "core": 2, "ar": 3}


class Toy:
    """A feature the engine has never heard of: one flow per subject, on
    the switches ``wanted`` says, in ``stage``."""

    def __init__(self, feature: Feature, stage: str, priority: int):
        self.feature, self._stage, self.priority = feature, stage, priority
        self.wanted: dict[str, tuple[str, ...]] = {}   # address -> switches

    def subjects(self):
        return self.wanted.keys()

    def flows(self, address: str) -> dict[str, list]:
        return {switch: [of.flow_add(Table.ROUTE, self.priority,
                                     of.match(eth_type=0x0800, ipv4_dst=address),
                                     of.apply(of.output(SWITCHES[switch])),
                                     address_cookie(self.feature, address))]
                for switch in self.wanted.get(address, ())}

    def stage(self, mod) -> str:
        return self._stage


def engine(*providers) -> FlowSync:
    graph = types.SimpleNamespace(dpid=SWITCHES.__getitem__,
                                  switch_of_dpid={d: s for s, d in SWITCHES.items()}.get)
    return FlowSync(graph, lambda dpid: True, collections.Counter(), providers)


def sent(sync: FlowSync) -> list[tuple[str, int, str | None]]:
    """What went out: (switch, flow-mods' command or 'barrier only', tag)."""
    names = {d: s for s, d in SWITCHES.items()}
    return [(names[s.dpid], s.messages[0].command if s.messages else "barrier only", s.confirm)
            for s in sync.drain()]


def records(tables: dict) -> dict:
    """{switch: {key: flow-mod}}, switches with no flows left out."""
    return {s: dict(t) for s, t in tables.items() if t}


def test_each_stage_waits_for_the_barriers_of_the_one_before_whatever_the_feature():
    receive, steer, withdraw = (Toy(Feature.TUNNEL, RECEIVE, 300), Toy(Feature.BINDING, STEER, 310),
                                Toy(Feature.BUFFER, WITHDRAW, 320))
    sync = engine(receive, steer, withdraw)
    receive.wanted["10.2.1.100"] = ("core", "ar")
    steer.wanted["10.255.0.1"] = ("edge",)
    withdraw.wanted["10.2.1.100"] = ("ar",)
    for toy in (receive, steer, withdraw):
        for address in toy.wanted:
            sync.mark(toy.feature, address)
    sync.sync(confirm="move", also=("edge",))
    add = of.ofp.OFPFC_ADD
    assert sent(sync) == [("ar", add, "move"), ("core", add, "move"),
                          ("edge", "barrier only", "move")]
    assert not sync.confirmed(SWITCHES["ar"], "move", 1.0)
    assert not sync.confirmed(SWITCHES["core"], "move", 1.0) and sent(sync) == []
    assert not sync.confirmed(SWITCHES["edge"], "move", 1.0)
    assert sent(sync) == [("edge", add, "move")]                   # the steering stage
    assert not sync.confirmed(SWITCHES["edge"], "move", 1.0)
    # The withdrawing stage SETTLE_S later: the steering switch's datapath
    # may still send a packet the old way until then.
    assert sent(sync) == [] and sync.next_due() == 1.0 + SETTLE_S
    sync.release_breaks(1.0 + SETTLE_S / 2)
    assert sent(sync) == []
    sync.release_breaks(1.0 + SETTLE_S)
    assert sent(sync) == [("ar", add, "move")]                     # then the withdrawing one
    assert sync.confirmed(SWITCHES["ar"], "move", 1.0 + SETTLE_S)
    assert records(sync.installed) == records(sync.desired())


def test_the_deletes_go_once_the_adds_are_confirmed_and_settled():
    old, new = Toy(Feature.TUNNEL, RECEIVE, 300), Toy(Feature.BINDING, STEER, 310)
    sync = engine(old, new)
    old.wanted["10.2.1.100"] = ("core",)
    sync.mark(Feature.TUNNEL, "10.2.1.100")
    sync.sync()
    assert sent(sync) == [("core", of.ofp.OFPFC_ADD, None)]        # nothing to wait for
    del old.wanted["10.2.1.100"]
    new.wanted["10.255.0.1"] = ("edge",)
    sync.mark(Feature.TUNNEL, "10.2.1.100")
    sync.mark(Feature.BINDING, "10.255.0.1")
    sync.sync()
    [(switch, _, tag)] = sent(sync)
    assert switch == "edge" and tag.startswith("mobility:")
    assert sync.confirmed(SWITCHES["edge"], tag, 1.0) and sent(sync) == []
    assert sync.next_due() == 1.0 + SETTLE_S
    sync.release_breaks(1.0 + SETTLE_S / 2)
    assert sent(sync) == []
    sync.release_breaks(1.0 + SETTLE_S)
    assert sent(sync) == [("core", of.ofp.OFPFC_DELETE_STRICT, None)]
    assert sync.next_due() is None and records(sync.installed) == records(sync.desired())


def test_the_engine_imports_no_feature():
    """A new feature plugs in as a provider: the engine names none of them."""
    import ast
    import inspect

    from mpa_sdn.mobility import flowsync
    tree = ast.parse(inspect.getsource(flowsync))
    imported = {node.module for node in ast.walk(tree) if isinstance(node, ast.ImportFrom)}
    imported |= {a.name for node in ast.walk(tree) if isinstance(node, ast.Import)
                 for a in node.names}
    features = {f"mpa_sdn.mobility.{m}" for m in ("tunnels", "bindings", "buffer", "copy_forward",
                                                 "phases", "state", "core")}
    assert imported and not imported & features
    names = {node.id for node in ast.walk(tree) if isinstance(node, ast.Name)}
    assert not {"TUNNEL", "BINDING", "BUFFER"} & names     # no Feature.X anywhere
    attributes = {node.attr for node in ast.walk(tree) if isinstance(node, ast.Attribute)}
    assert not {"TUNNEL", "BINDING", "BUFFER"} & attributes

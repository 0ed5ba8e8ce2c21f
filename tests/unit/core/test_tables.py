"""Each table's declaration, and the check of a flow against it."""

import dataclasses

import pytest
from ryu.ofproto import ether
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser

from support.fakeoftable import FakeSwitch
from support.paths import ROOT
from mpa_sdn import forwarding
from mpa_sdn import openflow as of
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import (
    EXACT_MASK, PIPELINE, PRIO_BINDING, PRIO_HOST, PRIO_MISS, PRIO_REJECT, PRIO_TUNNEL,
    PRIO_TUNNEL_END, Action, Feature, Rule, Table, TableSpec, address_cookie, address_of,
    check_flow, cookie, host_cookie)

MN = "10.2.1.100"
IPV4 = ether.ETH_TYPE_IP


def rules(msg) -> set:
    return {breach.rule for breach in check_flow(msg)}


def host_route(**changes):
    """A host's route in ROUTE, as forwarding builds it, with ``changes``."""
    fields = dict(table=Table.ROUTE, priority=PRIO_HOST,
                  match_=of.match(eth_type=IPV4, ipv4_dst=MN),
                  instructions=of.apply(of.output(1)), cookie=host_cookie(MN))
    return of.flow_add(**(fields | changes))


def test_a_flow_as_the_core_builds_it_breaks_nothing():
    assert check_flow(host_route()) == []


def test_every_static_flow_of_every_switch_keeps_to_its_table(topology):
    graph = NeighbourhoodGraph(topology)
    for switch in graph.switch_ids():
        for msg in forwarding.static_flows(graph, switch):
            assert check_flow(msg) == [], (switch, msg)


def test_a_match_field_the_table_does_not_match_is_caught():
    msg = host_route(match_=of.match(in_port=3, eth_type=IPV4, ipv4_dst=MN))
    [breach] = check_flow(msg)
    assert breach.rule == Rule.MATCH and "ROUTE does not match in_port" in str(breach)


def test_a_mask_on_a_field_matched_exactly_is_caught():
    masked = of.match(in_port=3, eth_type=IPV4, ipv4_src=("10.2.1.0", "255.255.255.0"))
    msg = of.flow_add(Table.INGRESS, PRIO_HOST, masked, of.goto(Table.ROUTE), host_cookie(MN))
    assert rules(msg) == {Rule.MASK}
    # ROUTE declares its destination maskable: network routes match prefixes.
    assert rules(host_route(match_=of.match(eth_type=IPV4,
                                            ipv4_dst=("10.2.1.0", "255.255.255.0")))) == set()


def test_a_field_without_its_prerequisite_is_caught():
    assert rules(host_route(match_=of.match(ipv4_dst=MN))) == {Rule.PREREQUISITE}
    no_udp = of.match(eth_type=IPV4, ipv4_dst="10.2.1.1", udp_dst=4000)
    [breach] = check_flow(of.flow_add(Table.ROUTE, 410, no_udp, of.apply(of.to_controller()),
                                      cookie(Feature.SIGNALLING, 1)))
    assert breach.rule == Rule.PREREQUISITE and "udp_dst needs ip_proto 0x11" in str(breach)


def test_a_goto_to_a_table_not_allowed_is_caught():
    arp = of.flow_add(Table.ARP, 100, of.match(eth_type=ether.ETH_TYPE_ARP),
                      of.goto(Table.ROUTE), cookie(Feature.PIPELINE))
    [breach] = check_flow(arp)
    assert breach.rule == Rule.GOTO and "ARP does not go to table 2" in str(breach)
    assert rules(host_route(instructions=of.goto(5))) == {Rule.GOTO}


def test_a_set_field_not_allowed_is_caught():
    [breach] = check_flow(host_route(instructions=of.apply(of.set_field(arp_op=2),
                                                           of.output(1))))
    assert breach.rule == Rule.SET_FIELD and "ROUTE does not set arp_op" in str(breach)


def test_a_nicira_write_counts_as_a_set_field():
    load = of.reg_load("in_port_nxm", 16, 0xFFFE)
    move = of.reg_move("ipv4_src_nxm", "ipv4_dst_nxm", 32)
    arp = of.match(in_port=1, eth_type=ether.ETH_TYPE_ARP, arp_op=1, arp_tpa="10.2.1.1")
    msg = of.flow_add(Table.ARP, 200, arp, of.apply(load, move, of.output(ofp.OFPP_IN_PORT)),
                      cookie(Feature.ARP_RESPONDER, 1))
    assert [str(b) for b in check_flow(msg)] == ["set_field: ARP does not set in_port",
                                                 "set_field: ARP does not set ipv4_dst"]


def test_an_address_cookie_gives_its_address_back():
    for address in ("0.0.0.0", "10.1.1.100", "255.255.255.255"):
        for feature in (Feature.HOST, Feature.TUNNEL, Feature.BINDING):
            assert address_of(address_cookie(feature, address)) == address


def test_a_cookie_of_another_feature_is_caught():
    tunnel = address_cookie(Feature.TUNNEL, MN)
    arp = of.flow_add(Table.ARP, 100, of.match(eth_type=ether.ETH_TYPE_ARP),
                      of.apply(of.to_controller()), tunnel)
    [breach] = check_flow(arp)
    assert breach.rule == Rule.FEATURE and "TUNNEL has no flows in ARP" in str(breach)


def test_a_priority_of_another_feature_is_caught():
    msg = host_route(cookie=address_cookie(Feature.BINDING, MN))
    [breach] = check_flow(msg)
    assert breach.rule == Rule.PRIORITY
    assert str(breach) == f"priority: BINDING flows in ROUTE have priority {PRIO_BINDING}, not 300"


def test_a_cookie_not_ours_or_of_no_feature_is_caught():
    assert rules(host_route(cookie=0x1234)) == {Rule.COOKIE}
    assert rules(host_route(cookie=cookie(Feature.HOST) & ~(0xFF << 48) | (0x7F << 48))) == {
        Rule.COOKIE}


def test_an_action_the_table_does_not_do_is_caught():
    [breach] = check_flow(host_route(instructions=of.apply(of.pop_mpls(), of.output(1))))
    assert breach.rule == Rule.ACTION and "ROUTE's flows do not pop mpls" in str(breach)
    back = host_route(instructions=of.apply(of.output(ofp.OFPP_IN_PORT)))
    assert rules(back) == {Rule.ACTION}
    flood = host_route(instructions=of.apply(of.output(ofp.OFPP_FLOOD)))
    assert rules(flood) == {Rule.ACTION}


def test_groups_and_meters_are_declared_nowhere():
    group = host_route(instructions=of.apply(parser.OFPActionGroup(1)))
    assert [str(b) for b in check_flow(group)] == ["action: ROUTE's flows do not group"]
    meter = host_route(instructions=[parser.OFPInstructionMeter(1)] + of.apply(of.output(1)))
    assert [str(b) for b in check_flow(meter)] == ["action: ROUTE's flows do not meter"]


def test_an_instruction_no_table_uses_is_caught():
    write = [parser.OFPInstructionActions(ofp.OFPIT_WRITE_ACTIONS, [parser.OFPActionOutput(1)])]
    assert rules(host_route(instructions=write)) == {Rule.INSTRUCTION}
    metadata = [parser.OFPInstructionWriteMetadata(1, 1)] + of.apply(of.output(1))
    assert rules(host_route(instructions=metadata)) == {Rule.INSTRUCTION}


def test_a_flow_that_neither_outputs_nor_goes_on_is_a_drop():
    # A drop is declared in every table (the table-miss), so a rewrite
    # that goes nowhere passes as one; an undeclared drop would not.
    assert all(Action.DROP in spec.actions for spec in PIPELINE.values())
    assert check_flow(host_route(instructions=of.apply(of.set_field(eth_dst="02:00:00:00:00:01")))
                      ) == []


def test_a_timeout_where_the_feature_declares_none_is_caught():
    # A route that idled out would leave the desired state wrong unnoticed.
    [breach] = check_flow(host_route(idle_timeout=300))
    assert str(breach) == "expiry: HOST flows in ROUTE take no idle timeout"
    source_check = of.match(in_port=3, eth_type=IPV4, eth_src="02:00:00:00:00:01", ipv4_src=MN)
    learned = of.flow_add(Table.INGRESS, PRIO_HOST, source_check, of.goto(Table.ROUTE),
                          host_cookie(MN), idle_timeout=300, notify_removal=True)
    assert check_flow(learned) == []
    held = of.flow_add(Table.INGRESS, PRIO_HOST, source_check, of.goto(Table.ROUTE),
                       host_cookie(MN), hard_timeout=30)
    assert [str(b) for b in check_flow(held)] == [
        "expiry: HOST flows in INGRESS take no hard timeout"]
    refused = of.flow_add(Table.INGRESS, PRIO_REJECT, source_check, [], cookie(Feature.REJECT),
                          idle_timeout=30, notify_removal=True)
    assert [str(b) for b in check_flow(refused)] == [
        "expiry: REJECT flows in INGRESS take no idle timeout",
        "expiry: REJECT flows in INGRESS take no removal notice"]


def test_a_table_not_in_the_pipeline_is_caught():
    assert rules(host_route(table=7)) == {Rule.TABLE}


def test_a_table_miss_matches_nothing():
    miss = of.flow_add(Table.ROUTE, PRIO_MISS, of.match(eth_type=IPV4), [],
                       cookie(Feature.PIPELINE))
    assert rules(miss) == {Rule.MATCH}


def test_a_delete_by_one_of_our_cookies_names_only_what_its_feature_installs():
    ours = of.flow_delete_strict(Table.ROUTE, PRIO_TUNNEL, of.match(eth_type=IPV4, ipv4_dst=MN),
                                 address_cookie(Feature.TUNNEL, MN), EXACT_MASK)
    assert check_flow(ours) == []
    wrong = of.flow_delete_strict(Table.ARP, PRIO_TUNNEL, of.match(eth_type=IPV4, ipv4_dst=MN),
                                  address_cookie(Feature.TUNNEL, MN), EXACT_MASK)
    assert rules(wrong) == {Rule.FEATURE, Rule.MATCH}
    assert rules(of.flow_delete_cookie(0x1234, EXACT_MASK)) == {Rule.COOKIE}
    assert check_flow(of.flow_delete_cookie(host_cookie(MN), EXACT_MASK)) == []


def test_a_purge_of_what_we_do_not_recognise_is_not_bound_by_a_declaration():
    # Reconciliation deletes another controller's flows wherever they are.
    purge = of.flow_delete_strict(9, 999, of.match(in_port=1, vlan_vid=5))
    assert check_flow(purge) == []


def test_a_declaration_goes_only_to_later_tables_and_gives_each_priority_one_feature():
    route = PIPELINE[Table.ROUTE]
    with pytest.raises(AssertionError, match="ROUTE goes back"):
        dataclasses.replace(route, next_tables=frozenset({Table.INGRESS}))
    clash = dict(route.features) | {Feature.REJECT: {PRIO_HOST}}
    with pytest.raises(AssertionError, match="at 300"):
        TableSpec(Table.ROUTE, dict(route.match), route.set_fields, route.actions,
                  route.next_tables, clash)
    assert route.priorities == (PRIO_MISS, PRIO_TUNNEL_END)
    with pytest.raises(TypeError):
        route.match["in_port"] = False   # a declaration stays as written


def test_the_fake_switch_refuses_a_flow_with_the_rule_it_breaks():
    switch = FakeSwitch(1, "ar")
    wrong = host_route(match_=of.match(in_port=3, eth_type=IPV4, ipv4_dst=MN))
    with pytest.raises(AssertionError, match=r"switch ar: table 2 priority 300 cookie 0x4d04"
                                             r".* breaks its table's declaration: "
                                             r"match: ROUTE does not match in_port"):
        switch.apply(wrong)
    assert switch.entries == []
    switch.install_foreign(wrong)    # what someone else left is not ours to judge
    assert len(switch.entries) == 1


def test_the_architecture_doc_gives_every_table_as_declared():
    doc = (ROOT / "docs" / "architecture.md").read_text()
    header = "| table | matches | sets | does | goes to | features and their priorities |\n"
    rows = doc.split(header, 1)[1].split("\n\n", 1)[0].splitlines()[1:]
    documented = {}
    for row in rows:
        name, matches, sets, does, goes, features = (c.strip() for c in row.strip("|").split("|"))
        listed = [f.strip() for f in matches.split(",")]
        documented[Table[name.strip("`")]] = (
            {f.rstrip("/"): f.endswith("/") for f in listed},
            {f.strip() for f in sets.split(",")},
            {Action(a.strip()) for a in does.split(",")},
            {Table[t.strip()] for t in goes.split(",") if t.strip()},
            {Feature["_".join(words).upper()]: {int(p) for p in prios}
             for words, prios in (_words_and_numbers(f) for f in features.split(";"))})
    assert documented == {
        table: (dict(spec.match), set(spec.set_fields), set(spec.actions),
                set(spec.next_tables), {f: set(p) for f, p in spec.features.items()})
        for table, spec in PIPELINE.items()}


def _words_and_numbers(text: str) -> tuple[list, list]:
    parts = text.split()
    return [p for p in parts if not p.isdigit()], [p for p in parts if p.isdigit()]

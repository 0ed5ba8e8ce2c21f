"""The MN's side of a binding its home domain keeps to a care-of in another
domain: the nftables rewriting (mpa_mn.binding_rewrite), where each binding
goes (MobileNode.bind_care_of, the handover's step 3), what removes the
rewriting, the REST requests routed to each network's domain's controller,
and what the state file keeps.

Most of it runs against the real controllers of topologies/inter_domain.yaml,
one per domain, each on its own fake switches (support.mn_domains); ``nft``
is mn_fakes' FakeNft, which applies each transaction all or nothing.
"""

import dataclasses
import io
import json

import pytest

from mpa_mn import cli, report
from mpa_mn.binding_rewrite import (REMOVAL, NoRewrites, Nft, Rewrite, RewriteError, Rewrites,
                                    replacement, ruleset)
from mpa_mn.channels import Controllers
from mpa_mn.follow import Follower
from mpa_mn.handover import Handover, plan_attach
from mpa_mn.home_binding import abroad
from mpa_mn.mobile_node import MnError, MobileNode
from mpa_mn.protocol import ProtocolError
from mpa_mn.credentials import MnCredentials
from mpa_mn.state_file import StateError, StateFile
from mpa_protocol import messages
from support.mn_domains import CN, HOME, OCOA, URLS, Domains
from support.mn_fakes import Clock, FakeIp, FakeNft
from support.mn_world import NCOA, node
from support.aaa import mn_credentials, pkis
from support.service_rig import IDENTITY, MN_MAC, counter_entropy

TABLE = ("ip", "mpa_binding")
A2_NCOA = "10.1.2.100"           # the first address net-a2's CA gives


def rewrite(*correspondents, care_of=NCOA):
    return Rewrite.of(HOME, care_of, correspondents or (CN,))


# -- the ruleset -------------------------------------------------------------------------

def test_the_ruleset_rewrites_the_two_ways_the_home_domain_does_not_for_its_correspondents():
    assert ruleset(rewrite(CN, "10.0.0.11")) == (
        "table ip mpa_binding {\n"
        "\tchain restore {\n"
        "\t\ttype filter hook prerouting priority raw; policy accept;\n"
        "\t\tip saddr { 10.0.0.10, 10.0.0.11 } ip daddr 10.2.1.100 ip daddr set 10.255.0.1\n"
        "\t}\n"
        "\tchain rewrite {\n"
        "\t\ttype route hook output priority mangle; policy accept;\n"
        "\t\tip saddr 10.255.0.1 ip daddr { 10.0.0.10, 10.0.0.11 } ip saddr set 10.2.1.100\n"
        "\t}\n"
        "}\n")


def test_each_correspondent_is_listed_once_in_address_order():
    assert rewrite("10.0.0.9", "10.0.0.10", "10.0.0.9", "10.0.0.100").correspondents == (
        "10.0.0.9", "10.0.0.10", "10.0.0.100")


def test_with_no_correspondents_the_table_is_there_and_rewrites_nothing():
    text = ruleset(Rewrite.of(HOME, NCOA, []))
    assert "chain restore" in text and "chain rewrite" in text and " set " not in text


def test_a_replacement_is_one_transaction_that_works_whether_the_table_is_there_or_not():
    nft = FakeNft()
    rewrites = Rewrites(Nft(nft))
    rewrites.install(rewrite())
    assert nft.tables == {TABLE: ruleset(rewrite())}
    rewrites.install(rewrite())                      # again: the same table
    assert nft.tables == {TABLE: ruleset(rewrite())}
    rewrites.install(rewrite(care_of="10.2.1.101"))  # another care-of: replaced whole
    assert nft.tables == {TABLE: ruleset(rewrite(care_of="10.2.1.101"))}
    rewrites.remove()
    rewrites.remove()                                # nothing there: nothing to fail
    assert nft.tables == {}
    assert nft.inputs[:1] == [replacement(rewrite())] and nft.inputs[-1] == REMOVAL
    assert all(text.startswith(REMOVAL) for text in nft.inputs)


def test_a_failing_nft_is_a_clear_error_and_changes_nothing():
    nft = FakeNft(fail="Error: Could not process rule: Operation not permitted")
    with pytest.raises(RewriteError, match=r"`nft -f -` failed \(exit 1\): Error: Could not "
                                           "process rule: Operation not permitted"):
        Rewrites(Nft(nft)).install(rewrite())

    def missing(argv, **kw):
        raise FileNotFoundError(argv[0])
    with pytest.raises(RewriteError, match="`nft` not found: install nftables"):
        Rewrites(Nft(missing)).remove()


# -- where the binding goes ----------------------------------------------------------------

@pytest.fixture
def domains():
    return Domains()


def bindings(domains):
    """Each domain's binding of mn1's home address, as its care-of."""
    return {domain: getattr(rig.core.mobility.bindings.get(HOME), "care_of", None)
            for domain, rig in domains.rigs.items()}


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_a_handover_to_another_domain_binds_at_home_and_rewrites_for_its_correspondents(
        domains, channel):
    mn = domains.node(channel)
    ready = Handover(mn, mn.vifs.ip).prepare("net-b1", HOME)
    assert ready["tunnel"]["encapsulation"] == "vxlan" and ready["address"] == NCOA
    assert ready["binding"] == {"care_of": NCOA, "lifetime": 3600, "bound_at": "net-a1",
                                "rewrite_at_mn": True, "correspondents": [CN],
                                "rewrite_installed": True}
    # Kept by domain-a (under mn1's MPA-SA with net-a1, the network it is in),
    # sent from the nCoA: it entered domain-a across the border.
    assert bindings(domains) == {"domain-a": NCOA, "domain-b": None}
    assert domains.a.core.counters["binding_updated_abroad"] == 1
    assert set(mn.state.entries) == {"net-a1", "net-b1"}
    # The pre-switch still went to net-b1's AR, under the SA with net-b1.
    assert ready["pre_switch"]["phase"] == "pre-switching"
    assert domains.rigs["domain-b"].core.mobility.handovers.get(IDENTITY) is not None
    nft = mn.rewrites.nft._run
    assert nft.tables == {TABLE: ruleset(rewrite())}
    assert mn.state.rewrite == {"home_address": HOME, "care_of": NCOA, "correspondents": [CN],
                                "network": "net-a1"}
    assert mn.counters["binding_at_home"] == mn.counters["binding_rewrite_installed"] == 1


def test_a_handover_within_the_home_domain_binds_at_the_target_as_before(domains):
    mn = domains.node()
    ready = Handover(mn, mn.vifs.ip).prepare("net-a2", HOME)
    assert ready["tunnel"]["encapsulation"] == "mpls"
    assert ready["binding"] == {"care_of": A2_NCOA, "lifetime": 3600, "bound_at": "net-a2"}
    assert bindings(domains) == {"domain-a": A2_NCOA, "domain-b": None}
    assert set(mn.state.entries) == {"net-a2"} and mn.counters["binding_at_home"] == 0
    assert mn.rewrites.nft._run.inputs == [] and mn.state.rewrite is None


def bound_abroad(domains, channel="rest", **kw):
    mn = domains.node(channel, **kw)
    Handover(mn, mn.vifs.ip).before_pre_switch("net-b1", HOME)
    return mn, mn.rewrites.nft._run


def test_a_binding_at_home_without_rewrite_at_mn_removes_the_rewriting(domains):
    mn, nft = bound_abroad(domains)
    result = mn.bind_care_of("net-a1", HOME, OCOA)      # back to its address at home
    assert result == {"network": "net-a1", "home_address": HOME, "care_of": OCOA,
                      "lifetime": 3600, "rewrite_removed": True, "bound_at": "net-a1"}
    assert bindings(domains)["domain-a"] == OCOA
    assert nft.tables == {} and nft.inputs[-1] == REMOVAL and mn.state.rewrite is None
    assert mn.counters["binding_rewrite_removed"] == 1
    mn.bind_care_of("net-a1", HOME, OCOA)               # nothing installed: nft not run
    assert len(nft.inputs) == 2


def test_removing_the_binding_abroad_removes_the_rewriting(domains):
    mn, nft = bound_abroad(domains)
    result = mn.bind_care_of("net-b1", HOME, NCOA, lifetime=0)
    assert (result["lifetime"], result["bound_at"], result["rewrite_removed"]) == (
        0, "net-a1", True)
    assert bindings(domains)["domain-a"] is None and nft.tables == {}


@pytest.mark.parametrize("release", [
    lambda mn: mn.release("net-b1"),
    lambda mn: mn.release("net-b1", all=True),
    lambda mn: mn.forget("net-b1", "lease"),     # follow's forget instruction
])
def test_the_care_of_going_removes_the_rewriting(domains, release):
    mn, nft = bound_abroad(domains)
    release(mn)
    assert nft.tables == {} and mn.state.rewrite is None


def test_another_network_going_leaves_the_rewriting(domains):
    mn, nft = bound_abroad(domains)
    mn.release("net-a1", all=True)
    assert nft.tables == {TABLE: ruleset(rewrite())} and mn.state.rewrite is not None


def test_a_rewriting_that_cannot_be_removed_stays_known_for_a_later_run(domains):
    mn, nft = bound_abroad(domains)
    nft.fail = "Error: Operation not permitted"
    with pytest.raises(RewriteError):
        mn.forget("net-b1", "lease")
    assert mn.state.rewrite is not None and mn.state.entries["net-b1"].sa.config is not None
    nft.fail = None
    mn.forget("net-b1", "lease")
    assert nft.tables == {} and mn.state.rewrite is None


def test_without_vifs_the_rewriting_is_only_reported(domains):
    mn = domains.node()
    mn.rewrites = NoRewrites()
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    result = mn.bind_care_of("net-b1", HOME, NCOA)
    assert (result["rewrite_at_mn"], result["correspondents"], result["rewrite_installed"]) \
        == (True, [CN], False)
    assert mn.state.rewrite is None and "binding_rewrite_installed" not in mn.counters


def test_a_rewriting_nft_refuses_leaves_the_binding_where_it_was_and_nothing_recorded(
        domains):
    nft = FakeNft(fail="Error: Could not process rule: Operation not permitted")
    mn = domains.node(nft=nft)
    with pytest.raises(RewriteError, match=f"{HOME} stays bound where it was: net-a1 moves "
                                           f"it to {NCOA} only once the MN rewrites for its "
                                           "correspondents, and the MN's rewriting is not "
                                           "installed, so it did not send the binding-update "
                                           "again: `nft -f -` failed"):
        Handover(mn, mn.vifs.ip).before_pre_switch("net-b1", HOME)
    # Asked once, answered pending, never asked again: the binding has not moved.
    assert bindings(domains)["domain-a"] is None and mn.state.rewrite is None
    assert (mn.counters["binding_ack_pending"], mn.counters["binding_rewrite_failed"]) == (1, 1)
    assert "binding_rewriting_sent" not in mn.counters


# -- the two steps: pending, then rewriting -------------------------------------------------

class Spy:
    """The MN's in-band channels, each binding-update noted as it leaves:
    its seq, its ``rewriting``, the MN's nftables tables and domain-a's
    binding at that moment."""

    def __init__(self, domains, mn):
        self.domains, self.real, self.sent = domains, mn.inband, []
        self.nft = mn.rewrites.nft._run
        mn.inband = self.channel

    def channel(self, source):
        real = self.real(source)
        spy = self

        class Channel:
            def exchange(self, target, kind, data):
                if kind == "binding-update":
                    msg = messages.decode(data, 65536)
                    spy.sent.append((msg["seq"], msg.get("rewriting"), dict(spy.nft.tables),
                                     bindings(spy.domains)["domain-a"]))
                return real.exchange(target, kind, data)

            def close(self):
                real.close()
        return Channel()


def ready_abroad(domains, channel="rest", **kw):
    """mn1 in net-a1 with net-b1's nCoA and its VXLAN tunnel, not bound yet."""
    mn = domains.node(channel, **kw)
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    mn.tunnel("net-b1")
    return mn


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_a_binding_abroad_moves_only_once_the_mn_rewrites_for_it(domains, channel):
    mn = ready_abroad(domains, channel)
    spy = Spy(domains, mn)
    result = mn.bind_care_of("net-b1", HOME, NCOA)
    (first, plain, before, unmoved), (second, rewriting, rewrites, still) = spy.sent
    # The first update finds nothing rewritten and moves nothing; the second
    # says rewriting, under a new number, once the table is in place, and
    # moves the binding.
    assert (plain, before, unmoved) == (None, {}, None)
    assert (rewriting, rewrites, still) == (True, {TABLE: ruleset(rewrite())}, None)
    assert second > first
    assert bindings(domains) == {"domain-a": NCOA, "domain-b": None}
    assert (result["rewrite_at_mn"], result["rewrite_installed"], "pending" in result) == (
        True, True, False)
    steps = ("binding_ack_pending", "binding_rewriting_sent", "binding_moved_after_rewriting",
             "binding_rewrite_installed")      # installed once, not again for the second ack
    assert [mn.counters[k] for k in steps] == [1, 1, 1, 1]


def test_a_refresh_of_the_care_of_bound_to_takes_one_update(domains):
    mn = ready_abroad(domains)
    mn.bind_care_of("net-b1", HOME, NCOA)
    spy = Spy(domains, mn)
    mn.bind_care_of("net-b1", HOME, NCOA, lifetime=600)
    assert [rewriting for _, rewriting, _, _ in spy.sent] == [None]
    assert mn.counters["binding_ack_pending"] == mn.counters["binding_rewriting_sent"] == 1
    assert spy.nft.tables == {TABLE: ruleset(rewrite())}


def test_without_vifs_the_second_update_is_sent_all_the_same(domains):
    mn = ready_abroad(domains)
    spy = Spy(domains, mn)
    mn.rewrites = NoRewrites()
    result = mn.bind_care_of("net-b1", HOME, NCOA)
    assert [rewriting for _, rewriting, _, _ in spy.sent] == [None, True]
    assert bindings(domains)["domain-a"] == NCOA and result["rewrite_installed"] is False
    assert mn.counters["binding_moved_after_rewriting"] == 1
    assert mn.state.rewrite is None and "binding_rewrite_installed" not in mn.counters
    assert spy.nft.inputs == []


def test_a_second_pending_is_a_protocol_error_and_the_rewriting_stays_known(domains):
    mn = domains.node()
    sa = mn.preauthenticate("net-a1")
    mn.inband = lambda source: Acks(sa, {"rewrite_at_mn": True, "correspondents": [CN],
                                         "pending": True})
    with pytest.raises(ProtocolError, match=f"net-a1 answered the binding-update with "
                                            f"rewriting still pending: {HOME} is not moved "
                                            f"to {NCOA}") as err:
        mn.bind("net-a1", HOME, NCOA)
    assert err.value.code == "unexpected"
    assert mn.counters["binding_ack_pending_again"] == 1
    # Installed before the second update: kept known, so release removes it.
    assert mn.rewrites.nft._run.tables == {TABLE: ruleset(rewrite())}
    assert mn.state.rewrite["care_of"] == NCOA


def test_a_held_home_mpa_sa_is_made_again_and_the_binding_sent_again(domains):
    mn = domains.node()
    mn.preauthenticate("net-a1")
    first = mn.state.entries["net-a1"].sa.sa
    aa = domains.a.core.mpa.aa          # mn1 seen in net-a1, then in net-a2: held
    # (its MAC bound, as its first signed message would)
    aa.bind_mac(aa.sas[first], MN_MAC, MN_MAC, domains.a.core.mpa.wall(domains.a.now))
    aa.attached(MN_MAC, "net-a1", domains.a.now)
    aa.attached(MN_MAC, "net-a2", domains.a.now)
    assert aa.sas[first].state == "held"
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    mn.tunnel("net-b1")
    assert mn.bind_care_of("net-b1", HOME, NCOA)["bound_at"] == "net-a1"
    assert mn.state.entries["net-a1"].sa.sa != first
    assert mn.counters["binding_home_sa_renewed"] == 1
    assert bindings(domains)["domain-a"] == NCOA


def test_an_mn_abroad_binds_at_a_home_network_it_holds_an_mpa_sa_with(domains):
    """Attached in net-b1 (the nCoA on its interface): its own network is
    domain-b's, so the binding goes to net-a1, whose SA it still holds."""
    mn, nft = bound_abroad(domains)
    mn.address = NCOA
    mn.state.discovery = {"address": NCOA, "network": "net-b1", "at": 0, "candidates": []}
    result = mn.bind_care_of("net-b1", HOME, NCOA)
    assert (result["bound_at"], result["rewrite_at_mn"]) == ("net-a1", True)
    assert nft.tables == {TABLE: ruleset(rewrite())}


def test_a_first_bind_at_its_own_network_is_not_counted_as_kept_at_home(domains):
    """No discovery yet: the MN learns only while binding that net-a1 is a
    home network, where the binding is kept at its own network's AR."""
    mn = domains.node()
    assert mn.state.discovery is None
    assert mn.bind_care_of("net-a1", HOME, OCOA)["bound_at"] == "net-a1"
    assert bindings(domains)["domain-a"] == OCOA and "binding_at_home" not in mn.counters


# -- arriving home: the home domain's switches rewrite --------------------------------------

class Arrived:
    """An ``arrived`` made ready, answered with ``phase``."""

    def __init__(self, phase):
        self.phase = phase

    def send(self):
        return {"phase": self.phase}

    def close(self):
        pass


def no_socket(interface):
    raise OSError(1, "Operation not permitted")


def arrive(mn, network, router, arrived=None):
    """mn1 attached in ``network`` with its oCoA's neighbour for an address
    (step 6; the gratuitous ARP cannot go: reported, as on a host without
    the right)."""
    config = {"address": "10.1.1.77" if network == "net-a1" else "10.2.1.77",
              "prefix_len": 24, "router": router, "gateway_mac": "02:00:00:00:aa:01"}
    plan = plan_attach(mn.vifs.ip, network, config, "eth0")
    return Handover(mn, mn.vifs.ip, raw_socket=no_socket).attach(
        plan, arrived=arrived, arrive=arrived is not None)


def test_arriving_in_a_home_network_removes_the_rewriting_left_from_abroad(domains):
    mn, nft = bound_abroad(domains)
    attached = arrive(mn, "net-a1", "10.1.1.1")
    assert attached["rewrite_removed"] is True
    assert nft.tables == {} and mn.state.rewrite is None
    assert mn.counters["binding_rewrite_removed"] == 1


@pytest.mark.parametrize("network,router,arrived", [
    ("net-b1", "10.2.1.1", None),                           # abroad: still needed
    ("net-a1", "10.1.1.1", Arrived("switched-back")),       # the binding may be abroad
])
def test_arriving_abroad_or_switched_back_keeps_the_rewriting(domains, network, router,
                                                              arrived):
    mn, nft = bound_abroad(domains)
    attached = arrive(mn, network, router, arrived)
    assert "rewrite_removed" not in attached
    assert nft.tables == {TABLE: ruleset(rewrite())} and mn.state.rewrite is not None


def test_a_rewriting_that_cannot_be_removed_on_arrival_is_reported_and_kept_known(domains):
    mn, nft = bound_abroad(domains)
    nft.fail = "Error: Operation not permitted"
    attached = arrive(mn, "net-a1", "10.1.1.1", Arrived("completed"))
    assert (attached["rewrite_removed"], attached["arrived"]) == (False, {"phase": "completed"})
    assert "Operation not permitted" in attached["rewrite_error"]
    assert mn.state.rewrite is not None


# -- what the MN believes of a binding-ack ---------------------------------------------------

@pytest.mark.parametrize("fields,says", [
    ({"rewrite_at_mn": True}, "lists no correspondents"),
    ({"correspondents": [CN]}, "without rewrite_at_mn"),
    ({"pending": True}, "pending without rewrite_at_mn"),
])
def test_a_binding_ack_that_says_half_of_rewrite_at_mn_is_malformed(fields, says):
    with pytest.raises(ProtocolError, match=says) as err:
        abroad(fields)
    assert err.value.code == "malformed"


class Acks:
    """An in-band channel whose binding-update is answered with a binding-ack
    with ``extra`` fields, signed with the SA's key (``later``: the fields of
    the next answers, the last one again after them)."""

    def __init__(self, sa, extra, *later):
        self.sa, self.extras, self.counters = sa, [extra, *later], {}

    def exchange(self, target, kind, data):
        request = messages.decode(data, 65536)
        extra = self.extras.pop(0) if len(self.extras) > 1 else self.extras[0]
        ack = messages.build("binding-ack", network=self.sa.network, sa=self.sa.sa,
                             seq=request["seq"], home_address=request["home_address"],
                             care_of=request["care_of"], lifetime=60, **extra)
        return messages.encode(messages.sign(ack, self.sa.keys.for_purpose("signalling")))

    def close(self):
        pass


def test_a_malformed_binding_ack_is_counted_and_changes_nothing(domains):
    mn = domains.node()
    sa = mn.preauthenticate("net-a1")
    mn.inband = lambda source: Acks(sa, {"rewrite_at_mn": True})
    with pytest.raises(ProtocolError) as err:
        mn.bind("net-a1", HOME, NCOA)
    assert err.value.code == "malformed"
    assert mn.counters["binding_ack_refused_malformed"] == 1
    assert mn.rewrites.nft._run.inputs == [] and mn.state.rewrite is None


def test_an_empty_correspondents_list_still_marks_the_binding_abroad(domains):
    mn = domains.node()
    sa = mn.preauthenticate("net-a1")
    mn.inband = lambda source: Acks(sa, {"rewrite_at_mn": True, "correspondents": []})
    assert mn.bind("net-a1", HOME, NCOA)["correspondents"] == []
    assert mn.rewrites.nft._run.tables == {TABLE: ruleset(Rewrite.of(HOME, NCOA, []))}


# -- one controller for both domains --------------------------------------------------------

def test_with_one_controller_for_both_domains_an_mpls_tunnel_binds_at_the_target(world):
    """It holds both ends of the tunnel, so it serves the home domain too."""
    mn, _ = node(world)
    ready = Handover(mn, mn.vifs.ip).prepare("net-b1", HOME)
    assert ready["binding"]["bound_at"] == "net-b1" and world.binding() == NCOA
    assert "binding_at_home" not in mn.counters and set(mn.state.entries) == {"net-b1"}


def test_with_one_controller_for_both_domains_a_refusal_at_home_binds_at_the_care_of_s(world):
    mn, _ = node(world)
    mn.discover()
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    mn.tunnel("net-b1")
    result = mn.bind_care_of("net-b1", HOME, NCOA)      # no tunnel said: home first
    assert result["bound_at"] == "net-b1" and world.binding() == NCOA
    assert mn.counters["binding_home_refused"] == 1


def test_refused_at_home_and_at_the_care_of_s_network_both_refusals_are_said(world):
    mn, _ = node(world)
    mn.discover()
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    mn.tunnel("net-b1")
    with pytest.raises(ProtocolError) as err:
        mn.bind_care_of("net-b1", "10.255.0.9", NCOA)
    assert err.value.code == "binding-refused"
    assert "(and net-a1, of the home domain, refused too: binding-refused: 10.255.0.9 is " \
           "not this MN's home address)" in err.value.message


def test_moving_from_one_care_of_to_another_the_old_one_is_restored_until_the_next(domains):
    """Make before break: what cn1 sent to the old care-of before the binding
    moved is still on its way when it moves, and must reach the home address."""
    mn = domains.node()
    sa = mn.preauthenticate("net-a1")
    abroad = {"rewrite_at_mn": True, "correspondents": [CN]}
    nft = mn.rewrites.nft._run
    mn.inband = lambda source: Acks(sa, {**abroad, "pending": True}, abroad)
    mn.bind("net-a1", HOME, NCOA)
    assert nft.tables == {TABLE: ruleset(rewrite())}           # nothing before it
    seen = []
    mn.inband = lambda source: Acks(sa, {**abroad, "pending": True}, abroad)
    real = mn.rewrites.install
    mn.rewrites.install = lambda r: (seen.append(r), real(r))
    mn.bind("net-a1", HOME, A2_NCOA)
    both = Rewrite.of(HOME, A2_NCOA, [CN], [NCOA])
    assert seen == [both] and nft.tables == {TABLE: ruleset(both)}
    assert f"ip daddr {{ {A2_NCOA}, {NCOA} }} ip daddr set {HOME}" in ruleset(both)
    assert mn.state.rewrite["restoring"] == [NCOA]
    mn.inband = lambda source: Acks(sa, abroad)                 # a refresh: the old one goes
    mn.bind("net-a1", HOME, A2_NCOA)
    assert nft.tables == {TABLE: ruleset(rewrite(care_of=A2_NCOA))}
    assert "restoring" not in mn.state.rewrite


def test_status_says_the_care_of_still_restored():
    line = report.rewrite_line({**Rewrite.of(HOME, A2_NCOA, [CN], [NCOA]).record(),
                                "network": "net-a1"})
    assert line == (f"{HOME} bound to care-of {A2_NCOA} at net-a1, the MN rewriting for "
                    f"correspondents {CN} (nftables table mpa_binding); restoring also {NCOA}, "
                    "the care-of it moved from")


def test_a_second_answer_with_other_correspondents_keeps_restoring_the_old_care_of(domains):
    mn, nft = bound_abroad(domains)
    sa = mn.state.entries["net-a1"].sa
    mn.inband = lambda source: Acks(sa, {"rewrite_at_mn": True, "correspondents": [CN],
                                         "pending": True},
                                    {"rewrite_at_mn": True, "correspondents": [CN, "10.0.0.11"]})
    mn.bind("net-a1", HOME, A2_NCOA)
    assert nft.tables == {TABLE: ruleset(Rewrite.of(HOME, A2_NCOA, [CN, "10.0.0.11"],
                                                    [NCOA]))}
    assert mn.counters["binding_rewrite_installed"] == 3


# -- the home domain -------------------------------------------------------------------------

def _filed(identities: dict) -> MnCredentials:
    """Credentials with ``identities`` (domain -> NAI), the test PKI's files."""
    return MnCredentials({d: dataclasses.replace(pkis()[d].credentials("mn1@domain-a"),
                                                 identity=identity)
                          for d, identity in identities.items()})


@pytest.mark.parametrize("identities,home", [
    ({"domain-a": "mn1@domain-a", "domain-b": "mn1@domain-a"}, "domain-a"),
    ({"domain-a": "mn1@domain-a", "domain-b": "roamer@domain-b"}, None),
    ({"domain-b": "mn1@domain-a"}, None),
])
def test_the_home_domain_is_the_realm_of_the_identity_filed_under_it(identities, home):
    assert MobileNode(_filed(identities), MN_MAC, OCOA, None).home_domain() == home


def test_an_mn_with_no_home_domain_binds_where_the_care_of_is(domains):
    mn = domains.node(credentials=mn_credentials(IDENTITY, domains=("domain-b",)))
    sa = mn.preauthenticate("net-b1", {"network": "net-b1", "domain": "domain-b",
                                       "served_by": "domain-b", "aa": {"address": "10.2.1.1"}})
    mn.inband = lambda source: Acks(sa, {})
    assert mn.bind_care_of("net-b1", HOME, NCOA)["bound_at"] == "net-b1"
    assert mn.counters["binding_home_unknown"] == 1
    with pytest.raises(MnError) as err:
        mn.home_network()
    assert err.value.code == "no-home-domain"


# -- REST, one controller per domain ------------------------------------------------------

def test_each_rest_request_goes_to_the_controller_of_its_network_s_domain(domains):
    mn = domains.node("rest")
    Handover(mn, mn.vifs.ip).prepare("net-b1", HOME)
    by_network = {}
    for domain, path in domains.requests:
        network = path.split("/")[4] if path.startswith("/mpa/v1/networks/") else None
        by_network.setdefault(network, set()).add(domain)
    # (PANA goes over UDP to each AA, and the binding update in-band: no REST
    # request names net-a1.)
    assert by_network == {None: {"domain-a"}, "net-b1": {"domain-b"}}
    # After the move, discovery from the nCoA goes to domain-b's.
    domains.requests.clear()
    mn.address = NCOA
    assert mn.discover()["network"] == "net-b1"
    assert domains.requests == [("domain-b", "/mpa/v1/discover")]


def test_without_domain_controllers_every_request_goes_to_the_one_given(domains):
    mn = domains.node("rest", domain_controllers=False)
    mn.discover()
    mn.preauthenticate("net-b1")               # PANA, to net-b1's AA itself
    with pytest.raises(ProtocolError):
        mn.configure("net-b1")                 # domain-a's controller does not serve it
    assert {domain for domain, _ in domains.requests} == {"domain-a"}


def test_the_controller_of_a_domain_not_named_is_the_default():
    controllers = Controllers.of("http://a:8080/", {"domain-b": "http://b:8081/"})
    assert controllers.url("domain-b") == "http://b:8081"
    assert controllers.url("domain-c") == controllers.url(None) == "http://a:8080"


# -- the state file ----------------------------------------------------------------------------

def test_the_state_file_keeps_the_rewriting_and_each_network_s_domain(domains, tmp_path):
    mn, _ = bound_abroad(domains)
    path = StateFile(str(tmp_path / "mn.json"))
    path.save(mn.state)
    loaded = path.load()
    assert loaded.record() == mn.state.record()
    assert loaded.rewrite == mn.state.rewrite
    mn.state.rewrite["restoring"] = [A2_NCOA]        # the care-of it moved from, kept
    path.save(mn.state)
    assert path.load().rewrite == mn.state.rewrite
    assert {n: e.domain for n, e in loaded.entries.items()} == {"net-a1": "domain-a",
                                                                 "net-b1": "domain-b"}
    record = mn.state.record()
    del record["rewrite"]                    # an mpa-mn that never bound abroad wrote it
    (tmp_path / "old.json").write_text(json.dumps(record))
    assert StateFile(str(tmp_path / "old.json")).load().rewrite is None


@pytest.mark.parametrize("domain", [None, 5, ""])
def test_a_bad_domain_of_a_network_in_the_state_file_is_a_clear_error(domains, tmp_path,
                                                                       domain):
    mn, _ = bound_abroad(domains)
    record = mn.state.record()
    record["networks"]["net-b1"]["candidate"]["domain"] = domain
    path = tmp_path / "mn.json"
    path.write_text(json.dumps(record))
    with pytest.raises(StateError, match="networks.net-b1: bad candidate"):
        StateFile(str(path)).load()


@pytest.mark.parametrize("bad", [{"care_of": "10.2.1"}, {"correspondents": "10.0.0.10"},
                                 {"correspondents": ["10.0.0.10"] * 65}, {"extra": 1},
                                 {"network": None}, {"restoring": "10.1.1.100"},
                                 {"restoring": ["10.1.1.100", "10.1.1.101"]},
                                 {"restoring": ["10.1.1"]}])
def test_a_bad_rewriting_in_the_state_file_is_a_clear_error(domains, tmp_path, bad):
    mn, _ = bound_abroad(domains)
    record = mn.state.record()
    record["rewrite"].update(bad)
    path = tmp_path / "mn.json"
    path.write_text(json.dumps(record))
    with pytest.raises(StateError, match="is corrupt \\(bad rewrite\\)"):
        StateFile(str(path)).load()


# -- the command line ----------------------------------------------------------------------

class MpaMn:
    """mpa-mn run in-process in mn1's host, in net-a1 (its oCoA on eth0, its
    home address beside it), each domain's controller given."""

    def __init__(self, domains, tmp_path, credentials):
        self.domains, self.tmp_path, self.credentials = domains, tmp_path, credentials
        self.ip, self.nft, self.clock = FakeIp(), FakeNft(), Clock()
        self.ip.links["eth0"]["addrs"] = [(OCOA, 24), (HOME, 32)]

    def __call__(self, *argv, json_out=True):
        out, err = io.StringIO(), io.StringIO()
        system = cli.System(run=self.ip, nft=self.nft, opener=self.domains,
                            socket_factory=self.domains.sockets(self.clock), clock=self.clock,
                            sleep=lambda s: None, wall=self.domains.wall,
                            entropy=counter_entropy(b"cli"), stdout=out, stderr=err)
        rc = cli.main(["--credentials", self.credentials, "--state",
                       str(self.tmp_path / "state.json"), "--interface", "eth0",
                       "--controller", URLS["domain-a"],
                       "--domain-controller", f"domain-b={URLS['domain-b']}",
                       *(["--json"] if json_out else []), *argv], system)
        text = out.getvalue()
        return rc, json.loads(text) if json_out else text, err.getvalue()


def test_cli_bind_for_a_care_of_in_another_domain(domains, tmp_path, credentials_file):
    run = MpaMn(domains, tmp_path, credentials_file())
    for argv in (["up", "net-b1"], ["tunnel", "net-b1"]):
        rc, doc, err = run(*argv)
        assert rc == 0, err
    rc, out, err = run("bind", "net-b1", "--home", HOME, json_out=False)
    assert (rc, out) == (0, f"net-b1: {HOME} bound to care-of {NCOA}, lifetime 3600 s, kept "
                            f"by the home domain at net-a1; the MN rewrites for "
                            f"correspondents {CN}\n"), err
    assert run.nft.tables == {TABLE: ruleset(rewrite())}
    rc, out, err = run("status", json_out=False)
    assert out.endswith(f"{HOME} bound to care-of {NCOA} at net-a1, the MN rewriting for "
                        f"correspondents {CN} (nftables table mpa_binding)\n")
    rc, doc, err = run("bind", "net-b1", "--home", HOME)
    assert doc["counters"]["binding_at_home"] == 1
    assert doc["counters"]["binding_rewrite_installed"] == 1
    rc, doc, err = run("release", "net-b1")
    assert rc == 0 and run.nft.tables == {} and run("status")[1]["rewrite"] is None
    assert doc["counters"]["binding_rewrite_removed"] == 1


def test_cli_bind_with_no_vif_installs_nothing(domains, tmp_path, credentials_file):
    run = MpaMn(domains, tmp_path, credentials_file())
    for argv in (["up", "net-b1"], ["tunnel", "net-b1"]):
        assert run(*argv, "--no-vif")[0] == 0
    rc, out, err = run("bind", "net-b1", "--home", HOME, "--no-vif", json_out=False)
    assert rc == 0 and out.endswith(f"the MN rewrites for correspondents {CN} (not "
                                    "installed: --no-vif)\n"), err
    assert run.nft.inputs == []


def test_cli_an_nft_failure_has_its_own_code(domains, tmp_path, credentials_file):
    run = MpaMn(domains, tmp_path, credentials_file())
    run.nft.fail = "Error: Operation not permitted"
    for argv in (["up", "net-b1"], ["tunnel", "net-b1"]):
        assert run(*argv)[0] == 0
    rc, doc, err = run("bind", "net-b1", "--home", HOME)
    assert rc == 1 and doc["results"][0]["error"]["code"] == "nftables"
    assert "mpa-mn: net-b1: nftables: 10.255.0.1 stays bound where it was" in err


@pytest.mark.parametrize("value,says", [("domain-b", "is not DOMAIN=URL"),
                                        ("domain b=http://b", "is not DOMAIN=URL"),
                                        ("domain-b=ftp://b", "is not an http:// or https://")])
def test_cli_a_bad_domain_controller_is_a_usage_error(value, says, capsys):
    assert cli.main(["--domain-controller", value, "status"]) == 2
    assert says in capsys.readouterr().err


def test_cli_a_domain_given_two_controllers_is_a_usage_error(domains, tmp_path,
                                                             credentials_file):
    run = MpaMn(domains, tmp_path, credentials_file())
    rc, doc, err = run("--domain-controller", "domain-b=http://elsewhere:1", "discover")
    assert rc == 2 and "--domain-controller gives domain-b two URLs" in err


def test_cli_handover_says_where_the_binding_is_kept(domains, tmp_path, credentials_file):
    run = MpaMn(domains, tmp_path, credentials_file())
    rc, out, err = run("handover", "net-b1", "--home", HOME, json_out=False)
    ready, line = out.splitlines()
    assert rc == 0 and json.loads(ready)["binding"]["bound_at"] == "net-a1", err
    assert f"{HOME} bound to it, kept by the home domain at net-a1; the MN rewrites for " \
           f"correspondents {CN}, handover pre-switching" in line
    assert run.nft.tables == {TABLE: ruleset(rewrite())}


# -- follow -------------------------------------------------------------------------------

def test_follow_prepares_a_network_of_another_domain_binding_at_home_and_forgets_it(domains):
    """The policy engine's instructions, as the controller would give them."""
    mn = domains.node()
    nft = mn.rewrites.nft._run
    script = [[{"id": 1, "do": "prepare", "networks": ["net-b1"]}],
              [{"id": 2, "do": "forget", "network": "net-b1", "scope": "lease"}]]
    mn.instructions = lambda network, wait, reports: script.pop(0) if script else []
    seen = {}

    def emit(event):
        if event["event"] == "reported":
            seen[event["id"]] = (event["ok"], dict(nft.tables), bindings(domains)["domain-a"])
    follower = Follower(mn, Handover(mn, mn.vifs.ip), HOME, "eth0", emit,
                        sleep=lambda s: None)
    follower.run("net-a1", count=2)
    assert seen == {1: (True, {TABLE: ruleset(rewrite())}, NCOA), 2: (True, {}, NCOA)}
    assert mn.state.rewrite is None


# -- bicasting steered by the home domain -----------------------------------------------------

@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_a_bicast_handover_abroad_has_the_home_domain_send_the_other_leg_first(domains,
                                                                                channel):
    mn = domains.node(channel)
    ready = Handover(mn, mn.vifs.ip).prepare("net-b1", HOME, mode="bicast")
    # Asked at home before the pre-switch: to mn1 where it is, its oCoA.
    assert ready["bicast"] == {"at": "net-a1", "to": OCOA}
    assert list(ready["timings_ms"]).index("bicast") < list(ready["timings_ms"]).index(
        "pre_switch")
    [bicast] = domains.a.core.mobility.bicasts.values()
    assert (bicast.home, bicast.address, bicast.poa.id) == (HOME, OCOA, "ap-a1-1")
    # net-b1's AR drops the target leg until mn1 arrives.
    handover = domains.rigs["domain-b"].core.mobility.handovers[IDENTITY]
    assert (handover.mode, handover.phase) == ("bicast", "pre-switching")
    # Both ways now: to mn1 at ap-a1-1, and across the border to the nCoA.
    outcome = domains.a.ping("cn1", HOME)
    assert [p["ipv4_dst"] for p in outcome.to("mn1") if p.get("icmp_type") == 8] == [HOME]
    assert [p["ipv4_dst"] for _, peer, p in outcome.hops
            if peer == "@domain-b" and p.get("icmp_type") == 8] == [NCOA]
    assert mn.counters["bicast_steered"] == 1
    # The MN's rewriting is the binding's, untouched by the bicast.
    assert mn.rewrites.nft._run.tables == {TABLE: ruleset(rewrite())}


# -- copy-and-forward with the second interface abroad -------------------------------------------

IF2_MAC = "02:00:00:00:02:02"


def standing_by_abroad(domains, channel):
    """mn1 bound at home to its oCoA, its second interface (eth1) ready in
    net-b1 with domain-b's nCoA, and the standby bound at home."""
    mn = domains.node(channel)
    mn.bind_care_of("net-a1", HOME, OCOA)
    mn.preauthenticate("net-b1", mac=IF2_MAC)
    assert mn.configure("net-b1", vif=False)["address"] == NCOA
    domains.rigs["domain-b"].add_host("mn1b", IF2_MAC, NCOA, "ap-b1-1")
    domains.rigs["domain-b"].arp_request("mn1b", NCOA)
    return mn, mn.bind_standby("net-b1", HOME, NCOA, "eth1")


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_a_standby_abroad_is_bound_at_home_with_the_rewriting_for_its_interface(domains,
                                                                               channel):
    mn, bound = standing_by_abroad(domains, channel)
    assert (bound["bound_at"], bound["standby"], bound["rewrite_at_mn"],
            bound["correspondents"]) == ("net-a1", True, True, [CN])
    standby = domains.a.core.mobility.standbys[HOME]
    assert (standby.care_of, standby.network) == (NCOA, "net-b1")
    assert bindings(domains) == {"domain-a": OCOA, "domain-b": None}
    # Installed now: what arrives at the nCoA is restored, and what leaves by
    # eth1 (nothing, until eth0 is lost) is rewritten; eth0's leaves as it is.
    table = mn.rewrites.nft._run.tables[TABLE]
    assert f'oifname "eth1" ip saddr {HOME} ip daddr {{ {CN} }} ip saddr set {NCOA}' in table
    assert f"ip saddr {{ {CN} }} ip daddr {NCOA} ip daddr set {HOME}" in table
    assert mn.state.rewrite["interface"] == "eth1"
    assert mn.counters["binding_standby_at_home"] == 1


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_the_loss_said_at_home_moves_the_binding_abroad(domains, channel):
    mn, _ = standing_by_abroad(domains, channel)
    answer = mn.switch("net-a1", "link-lost", source=NCOA if channel == "inband" else None)
    assert answer["phase"] in ("switching", "flushing")
    assert bindings(domains)["domain-a"] == NCOA
    [handover] = domains.a.core.mobility.handovers.values()
    assert (handover.mode, handover.network) == ("copy-and-forward", "net-b1")


def test_a_state_file_keeps_the_standbys_rewriting_interface(tmp_path):
    path = tmp_path / "state.json"
    store = StateFile(str(path))
    state = store.load()
    state.rewrite = {"home_address": HOME, "care_of": NCOA, "correspondents": [CN],
                     "network": "net-a1", "interface": "eth1"}
    store.save(state)
    assert StateFile(str(path)).load().rewrite["interface"] == "eth1"
    raw = json.loads(path.read_text())
    raw["rewrite"]["interface"] = "eth 1/x"
    path.write_text(json.dumps(raw))
    with pytest.raises(StateError):
        StateFile(str(path)).load()

"""mn1 standing by (RFC 6252 §7.6): bound where it is, with a second interface
pre-authenticated and configured in net-b1 over REST and bound there as a
standby; and the switches that copy its traffic to the controller."""

from __future__ import annotations

from ryu.ofproto import ofproto_v1_3 as ofp

from mpa_mn import protocol
from mpa_protocol import messages
from mpa_sdn.service import REST, Answer, Origin
from mpa_sdn.tables import Feature, feature_of
from support.aaa import preauthenticate
from support.handover_rig import B1_GATEWAY, HOME, MN_IP, NCOA, authenticated, pana_exchange, \
    settle_dad
from support.network_rig import Outcome
from support.service_rig import IDENTITY, counter_entropy

MAC2 = "02:00:00:00:01:02"      # mn1's second interface


def rest(rig, state, kind, expected, outcome: Outcome | None = None, **fields) -> dict:
    """An authenticated request over REST; its checked answer (what the
    controller sent meanwhile joins ``outcome``)."""
    data, seq = protocol.request(state, kind, **fields)
    answers = send_rest(rig, data, state.network, outcome)
    [answer] = answers
    return protocol.check_answer(state, messages.encode(answer.fields), seq, expected)


def send_rest(rig, data: bytes, network: str, outcome: Outcome | None = None) -> list[Answer]:
    out = rig.core.signal(data, Origin(REST, "172.31.0.2", network), messages.REQUESTS,
                          rig.now)
    rig.run([s for s in out if not isinstance(s, Answer)], outcome)
    return [a for a in out if isinstance(a, Answer)]


def second_interface(rig):
    """mn1b: pre-authenticated with net-b1 by PANA (from mn1's interface in
    net-a1), configured over REST for its own MAC (its first signed message
    binds it), and attached at ap-b1-1 with its nCoA."""
    settle_dad(rig)
    state = preauthenticate(lambda data: pana_exchange(rig, data, B1_GATEWAY), None,
                            rig.radius, "net-b1", "domain-b", IDENTITY, MAC2,
                            entropy=counter_entropy(b"mn1b"))
    config = rest(rig, state, "config-request", "config")
    assert config["address"] == NCOA
    rig.add_host("mn1b", MAC2, NCOA, "ap-b1-1")
    rig.arp_request("mn1b", NCOA)
    return state


def bound_here(rig):
    here = authenticated(rig, "net-a1", "domain-a")
    rig.arp_request("mn1", MN_IP)
    here.ask("binding-update", "binding-ack", source=MN_IP, home_address=HOME, care_of=MN_IP)
    return here


def standing_by(rig):
    bound_here(rig)
    state = second_interface(rig)
    ack = rest(rig, state, "binding-update", "binding-ack", home_address=HOME, care_of=NCOA,
               standby=True)
    assert ack["standby"] is True and ack["care_of"] == NCOA
    return state


def copying_switches(rig) -> set[str]:
    """The switches holding a binding flow that copies to the controller."""
    return {name for name, switch in rig.net.switches.items()
            for e in switch.entries if feature_of(e.cookie) == Feature.BINDING and any(
                a.type == ofp.OFPAT_OUTPUT and a.port == ofp.OFPP_CONTROLLER
                for i in e.instructions for a in getattr(i, "actions", []))}

"""mpa-mn, the MN's library and CLI, against the real AA/CA service in-process.

The channels are the real ones; only their transports are fakes that hand
the bytes to ``MpaService.handle`` (an urllib opener playing the REST layer,
sockets playing the gateway), plus one test on real UDP sockets on localhost.
"""

import dataclasses
import io
import json
import os
import selectors
import socket
import stat
import threading
import urllib.error
import urllib.parse

import pytest

from mpa_mn import channels, cli, protocol
from mpa_mn.channels import ChannelError, InbandChannel, RestChannel, RetryPolicy, Target
from mpa_mn.mobile_node import MnError, MobileNode
from mpa_mn.protocol import ProtocolError
from mpa_mn.state_file import MnState, StateError, StateFile, default_path
from mpa_mn.vif import Ip, VifError, Vifs, vif_name
from mpa_protocol import messages
from mpa_mn.credentials import EAP_TTLS_PAP, MnCredentials
from mpa_protocol import pana
from mpa_sdn.service import INBAND, Origin
from support.aaa import FakeRadius, PanaSockets, mn_credentials, radius_servers, settled
from support.service_rig import IDENTITY, MN_MAC, Rig, counter_entropy, reconcile_all
from support.mn_fakes import (MN_ADDRESS, CREDENTIALS, Clock, ticking_sleep, Response, RestLayer,
                              Gateways, FakeIp, Cli)


# -- fake transports ------------------------------------------------------------------


def rest_node(rig, store=None, vifs=None, credentials=CREDENTIALS, waits=None, world=None,
              **kw):
    """Over REST; PANA still goes over UDP to the AA (``world``'s gateways)."""
    world = world or Gateways(rig)
    channel = RestChannel("http://controller:8080", opener=RestLayer(rig, **kw),
                          sleep=ticking_sleep(rig, waits if waits is not None else []))
    return MobileNode(credentials, MN_MAC, MN_ADDRESS, channel, store, vifs,
                      entropy=counter_entropy(b"mn"), wall=lambda: rig.service.wall(rig.now),
                      pana_socket=world, clock=world.clock)


def inband_node(rig, world=None, store=None, vifs=None):
    world = world or Gateways(rig)
    channel = InbandChannel(MN_ADDRESS, gateway="10.1.1.1", socket_factory=world,
                            clock=world.clock, sleep=ticking_sleep(rig, []))
    return MobileNode(CREDENTIALS, MN_MAC, MN_ADDRESS, channel, store, vifs,
                      entropy=counter_entropy(b"mn"), wall=lambda: rig.service.wall(rig.now),
                      pana_socket=world, clock=world.clock)


# -- the library over both channels ---------------------------------------------------------

@pytest.mark.parametrize("make", [rest_node, inband_node], ids=["rest", "inband"])
def test_two_ctns_in_two_domains_each_give_an_sa_and_an_ncoa_on_its_own_vif(make):
    rig, ip = Rig(), FakeIp()
    node = make(rig, vifs=Vifs(Ip(ip)))
    found = node.discover()
    assert found["network"] == "net-a1"
    assert [c["network"] for c in found["candidates"]] == ["net-a2", "net-b1"]
    b1, a2 = node.preauthenticate("net-b1"), node.preauthenticate("net-a2")
    sas = rig.service.aa.sas
    assert (sas[b1.sa].domain, sas[a2.sa].domain) == ("domain-b", "domain-a")
    assert sas[b1.sa].keys.as_hex() == b1.keys.as_hex()
    # Nothing was probed yet: the CA holds the answer back until DAD is done.
    assert node.configure("net-b1")["address"] == "10.2.1.100"
    config = node.configure("net-a2")
    assert config["address"] == "10.1.2.100" and config["interface"] == "mpa-net-a2"
    assert config["router"] == "10.1.2.1" and config["prefix_len"] == 24
    assert ip.links["mpa-net-b1"]["addrs"] == [("10.2.1.100", 32)]
    assert ip.links["mpa-net-a2"] == {"kind": "tun", "addrs": [("10.1.2.100", 32)], "up": True}
    assert ip.links["eth0"]["addrs"] == [(MN_ADDRESS, 24)], "the physical one is untouched"
    status = node.status()
    assert [(n["network"], n["config"]["address"], n["next_seq"]) for n in status["networks"]] \
        == [("net-a2", "10.1.2.100", 2), ("net-b1", "10.2.1.100", 2)]


def test_rest_waits_for_dad_as_the_answer_says_and_resends_the_same_bytes():
    rig, waits = Rig(), []
    node = rest_node(rig, waits=waits)
    node.preauthenticate("net-b1")
    assert node.configure("net-b1")["address"] == "10.2.1.100"
    assert waits and set(waits) == {1}
    sent = [data for path, data in node.channel.opener.requests if path.endswith("/config")]
    assert len(sent) == len(waits) + 1 and len(set(sent)) == 1
    assert rig.counters["config_given"] == 1


def test_inband_retransmits_the_same_datagram_until_dad_is_done():
    rig = Rig()
    world = Gateways(rig)
    node = inband_node(rig, world)
    node.preauthenticate("net-b1")
    world.sent.clear()
    assert node.configure("net-b1")["address"] == "10.2.1.100"
    assert len(world.sent) >= 2 and len({data for data, _ in world.sent}) == 1
    assert {to for _, to in world.sent} == {("10.2.1.1", 7664)}
    assert node.channel.counters["retransmissions"] == len(world.sent) - 1


def test_inband_silence_is_no_answer_after_four_sends_of_the_same_bytes():
    rig = Rig()
    world = Gateways(rig)
    world.drop = 100
    node = inband_node(rig, world)
    with pytest.raises(ChannelError) as err:
        node.discover()
    assert err.value.code == "no-answer"
    assert "no answer from AA at 10.1.1.1:7664" in err.value.message
    assert len(world.sent) == 4 and len(set(world.sent)) == 1
    assert world.clock.now == pytest.approx(channels.DEFAULT_TIMEOUT_S)  # 0.5+1+2+4


def test_inband_ignores_datagrams_from_anyone_but_the_gateway_port():
    rig = Rig()
    world = Gateways(rig)
    forged = messages.encode(messages.error("sa-expired", "forged"))
    world.strangers = [(forged, ("10.6.6.6", 7664)), (forged, ("10.2.1.1", 7665)),
                       (forged, ("10.2.1.1", 716))]
    node = inband_node(rig, world)
    assert node.preauthenticate("net-b1").network == "net-b1"   # PANA ignores them too
    assert node.configure("net-b1")["address"] == "10.2.1.100"
    assert node.channel.counters["ignored_wrong_source"] >= 3


def test_inband_a_lost_request_is_sent_again_and_answered_once():
    rig = Rig()
    world = Gateways(rig)
    node = inband_node(rig, world)
    node.discover()
    world.drop = 1
    node.preauthenticate("net-b1")
    pana_sent = [data for data, address in world.sent if address[1] == pana.PANA_PORT]
    assert pana_sent[0] == pana_sent[1]   # the lost PANA-Client-Initiation, sent again
    assert rig.counters["pana_sessions_started"] == 1 and rig.counters["sa_created"] == 1


def test_inband_a_socket_opened_ahead_serves_every_try_until_closed():
    rig = Rig()
    world = Gateways(rig)
    sockets = []

    def factory(local):
        sockets.append(world(local))
        return sockets[-1]
    channel = InbandChannel(MN_ADDRESS, gateway="10.1.1.1", socket_factory=factory,
                            clock=world.clock, sleep=ticking_sleep(rig, []))
    channel.open()
    assert [s.local for s in sockets] == [MN_ADDRESS]
    world.drop = 1
    data = protocol.discover(address=MN_ADDRESS)
    answer = channel.discover(data)
    assert protocol.check_neighbours(answer)[0] == "net-a1"
    assert channel.counters["retransmissions"] == 1 and world.sent[0] == world.sent[1]
    assert len(sockets) == 1 and not sockets[0].closed
    channel.close()
    assert sockets[0].closed
    channel.discover(data)          # its own socket again, closed after
    assert len(sockets) == 2 and sockets[1].closed


def test_inband_a_socket_that_cannot_be_opened_ahead_fails_when_sending():
    def refused(local):
        raise OSError(99, "Cannot assign requested address")
    channel = InbandChannel("10.2.1.100", gateway="10.1.1.1", socket_factory=refused)
    channel.open()
    with pytest.raises(ChannelError) as err:
        channel.discover(protocol.discover(address=MN_ADDRESS))
    assert (err.value.code, err.value.message) == (
        "transport", "cannot send from 10.2.1.100: Cannot assign requested address")


# -- what the client believes ----------------------------------------------------------

def _tamper_config(field, value):
    def tamper(body):
        fields = json.loads(body)
        if fields.get("type") == "config":
            fields[field] = value
        return messages.encode(fields)
    return tamper


@pytest.mark.parametrize("field,value", [("mac", "00" * 32), ("address", "10.2.1.66")])
def test_a_config_answer_without_a_valid_mac_is_not_believed(field, value):
    rig, ip = Rig(), FakeIp()
    rig.settle_dad()
    node = rest_node(rig, vifs=Vifs(Ip(ip)), tamper=_tamper_config(field, value))
    node.preauthenticate("net-b1")
    with pytest.raises(ProtocolError) as err:
        node.configure("net-b1")
    assert err.value.code == "bad-mac"
    assert node.state.entries["net-b1"].sa.config is None
    assert "mpa-net-b1" not in ip.links


def test_a_final_request_whose_auth_is_wrong_is_not_believed():
    rig = Rig()
    world = Gateways(rig)

    def tamper(body):
        message = pana.PanaMessage.decode(body, 65535)
        if message.has(pana.FLAG_C):
            return body[:-1] + bytes([body[-1] ^ 1])   # the AUTH AVP is last
        return body
    world.pana_tamper = tamper
    node = rest_node(rig, world=world)
    with pytest.raises(ProtocolError) as err:
        node.preauthenticate("net-b1")
    assert err.value.code == "aa-not-authenticated" and node.state.entries == {}
    # The AA made the SA with its final PAR; without the MN's answer or any
    # use of it, it goes when the session does.
    rig.now += rig.topology.mpa.pana_session_s + 1
    rig.service.tick(rig.now)
    assert rig.service.aa.sas == {} and rig.counters["sa_abandoned"] == 1


def test_a_revoked_certificate_is_refused_with_authentication_rejected():
    rig = Rig()
    rig.radius.revoked.add(IDENTITY)
    with pytest.raises(ProtocolError) as err:
        rest_node(rig).preauthenticate("net-b1")
    assert err.value.code == "authentication-rejected" and rig.service.aa.sas == {}


def test_a_wrong_password_is_refused_with_authentication_rejected(tmp_path):
    rig = Rig()
    wrong = tmp_path / "password"
    wrong.write_text("not the password\n")
    wrong.chmod(0o600)
    entry = mn_credentials(IDENTITY, EAP_TTLS_PAP).for_domain("domain-b")
    credentials = MnCredentials({"domain-b": dataclasses.replace(entry,
                                                                 password_file=str(wrong))})
    with pytest.raises(ProtocolError) as err:
        rest_node(rig, credentials=credentials).preauthenticate("net-b1")
    assert err.value.code == "authentication-rejected" and rig.service.aa.sas == {}


def test_the_password_method_gives_an_sa_too():
    rig = Rig()
    node = rest_node(rig, credentials=mn_credentials(IDENTITY, EAP_TTLS_PAP))
    assert node.preauthenticate("net-b1").network == "net-b1"
    assert node.configure("net-b1")["address"] == "10.2.1.100"


def test_a_domain_without_credentials_is_a_clear_error():
    rig = Rig()
    node = rest_node(rig, credentials=mn_credentials(IDENTITY, domains=("domain-a",)))
    with pytest.raises(MnError) as err:
        node.preauthenticate("net-b1")
    assert err.value.code == "no-credentials" and "domain-b" in err.value.message
    assert rig.service.paa.sessions == {}


def test_only_candidates_of_the_current_network_are_pre_authenticated():
    node = rest_node(Rig())
    with pytest.raises(ProtocolError) as err:
        node.preauthenticate("net-cn")
    assert err.value.code == "not-a-candidate"


def configured_node():
    """An MN (REST, real interfaces faked) with an nCoA from net-b1."""
    rig, ip = Rig(), FakeIp()
    rig.settle_dad()
    node = rest_node(rig, vifs=Vifs(Ip(ip)))
    node.preauthenticate("net-b1")
    node.configure("net-b1")
    return rig, ip, node


def test_release_gives_the_lease_back_and_all_ends_the_sa():
    rig, ip, node = configured_node()
    assert node.release("net-b1") == {"network": "net-b1", "scope": "lease",
                                      "interface_removed": True}
    assert rig.service.ca.views(0) == [] and "mpa-net-b1" not in ip.links
    assert node.state.entries["net-b1"].sa.config is None
    node.configure("net-b1")
    assert node.release("net-b1", all=True)["scope"] == "all"
    assert node.state.entries == {} and rig.service.aa.sas == {}


def test_forget_drops_what_the_network_released_without_asking_it():
    """mpa-mn follow's ``forget``: the network has released the nCoA (or the
    SA too) itself; the MN drops them and tells it nothing."""
    rig, ip, node = configured_node()
    saved = []
    node.store.save = saved.append
    assert node.forget("net-a2", "all") is False and saved == []   # nothing held there
    assert node.forget("net-b1", "lease") is True
    assert node.state.entries["net-b1"].sa.config is None and "mpa-net-b1" not in ip.links
    assert node.forget("net-b1", "all") is False   # no vif left to remove
    assert node.state.entries == {} and len(saved) == 2
    assert len(rig.service.aa.sas) == 1 and len(rig.service.ca.views(0)) == 1, "nothing sent"


def test_errors_change_nothing_but_a_release_of_a_dead_sa_goes_ahead_locally():
    rig, ip, node = configured_node()
    rig.service.aa.sas.clear()
    with pytest.raises(ProtocolError) as err:
        node.configure("net-b1")
    assert err.value.code == "unknown-sa"
    assert node.state.entries["net-b1"].sa.config["address"] == "10.2.1.100"   # unauthenticated
    with pytest.raises(ProtocolError) as err:
        node.release("net-b1")
    assert err.value.code == "unknown-sa" and "released here" in err.value.message
    assert node.state.entries["net-b1"].sa.config is None and "mpa-net-b1" not in ip.links
    with pytest.raises(ProtocolError):
        node.release("net-b1", all=True)
    assert node.state.entries == {}
    with pytest.raises(MnError) as err:
        node.configure("net-b1")
    assert err.value.code == "not-pre-authenticated"


def test_resume_proves_possession_of_a_held_sa():
    rig = Rig()
    rig.settle_dad()
    node = rest_node(rig)
    b1 = node.preauthenticate("net-b1")
    node.configure("net-b1")   # the SA's first signed message: its MAC is bound
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    rig.seen(MN_MAC, "10.1.1.10", "net-a1")
    assert rig.service.aa.sas[b1.sa].state == "held"
    with pytest.raises(ProtocolError) as err:   # proof counts only back in the network
        node.resume("net-b1")
    assert err.value.code == "wrong-state"
    rig.seen(MN_MAC, "10.2.1.100", "net-b1")
    assert rig.service.aa.sas[b1.sa].state == "held"
    assert node.resume("net-b1") == {"network": "net-b1", "state": "authorized"}


def test_sequence_numbers_go_on_across_runs(tmp_path):
    rig = Rig()
    rig.settle_dad()
    store = StateFile(str(tmp_path / "mn.json"))
    rest_node(rig, store).preauthenticate("net-b1")
    rest_node(rig, store).configure("net-b1")
    again = rest_node(rig, store)
    assert again.configure("net-b1")["address"] == "10.2.1.100"
    assert again.state.entries["net-b1"].sa.next_seq == 3
    assert rig.service.aa.sas[again.state.entries["net-b1"].sa.sa].high == 2


# -- channels on their own --------------------------------------------------------------------

class Canned:
    """An opener answering every request with the same status and body."""

    def __init__(self, status, body, headers=None, error=None):
        self.status, self.body, self.headers, self.error = status, body, headers or {}, error
        self.sent = []

    def open(self, request, timeout=None):
        self.sent.append(request.data)
        if self.error:
            raise self.error
        if self.status >= 400:
            raise urllib.error.HTTPError(request.full_url, self.status, "", self.headers,
                                         io.BytesIO(self.body))
        return Response(self.status, self.body)


PENDING = messages.encode(messages.error("address-pending", "wait", retry_after=2))
TARGET = Target("net-b1", "10.2.1.1")


def test_rest_retries_are_bounded_and_long_waits_are_not_waited_for():
    waits = []
    channel = RestChannel("http://c", opener=Canned(503, PENDING), sleep=waits.append,
                          retry=RetryPolicy(retries=3))
    assert protocol.retry_hint(channel.exchange(TARGET, "config-request", b"{}")) == \
        ("address-pending", 2)
    assert waits == [2, 2, 2] and len(channel.opener.sent) == 4
    slow = messages.encode(messages.error("busy", "later", retry_after=60))
    channel = RestChannel("http://c", opener=Canned(503, slow), sleep=waits.append)
    channel.exchange(TARGET, "config-request", b"{}")
    assert len(channel.opener.sent) == 1


def test_rest_takes_retry_after_from_the_header_when_the_message_has_none():
    waits = []
    body = messages.encode(messages.error("busy", "busy"))
    channel = RestChannel("http://c", opener=Canned(503, body, {"Retry-After": "3"}),
                          sleep=waits.append, retry=RetryPolicy(retries=1))
    channel.exchange(TARGET, "config-request", b"{}")
    assert waits == [3.0]


def test_rest_answers_that_are_not_messages_and_unreachable_controllers():
    channel = RestChannel("http://c", opener=Canned(404, b'{"error": {"status": 404, '
                                                        b'"message": "no such resource"}}'))
    with pytest.raises(ChannelError) as err:
        channel.discover(b"{}")
    assert (err.value.code, err.value.message) == ("http-404", "http://c/mpa/v1/discover: "
                                                   "no such resource")
    refused = urllib.error.URLError(ConnectionRefusedError(111, "Connection refused"))
    with pytest.raises(ChannelError) as err:
        RestChannel("http://c:1", opener=Canned(200, b"", error=refused)).discover(b"{}")
    assert err.value.code == "no-answer" and "Connection refused" in err.value.message
    with pytest.raises(ChannelError) as err:
        RestChannel("http://c", opener=Canned(200, b"", error=TimeoutError())).discover(b"{}")
    assert err.value.code == "no-answer"


def test_rest_posts_to_the_endpoint_of_each_kind():
    rig = Rig()
    rig.settle_dad()
    node = rest_node(rig)
    node.preauthenticate("net-b1")
    node.configure("net-b1")
    node.release("net-b1")
    # Pre-authentication is PANA over UDP, never REST.
    assert [p for p, _ in node.channel.opener.requests] == [
        "/mpa/v1/discover", "/mpa/v1/networks/net-b1/config",
        "/mpa/v1/networks/net-b1/release"]
    assert json.loads(node.channel.opener.requests[0][1]) == {
        "v": 1, "type": "discover", "address": MN_ADDRESS}


# -- in-band on real sockets ------------------------------------------------------------

class UdpGateways(threading.Thread):
    """Each network's gateway as a UDP socket on 127.0.0.1, feeding the service.

    Discovery's answer is rewritten so candidates point at these sockets.  The
    first datagram of every message is lost, and a stranger's datagram arrives
    before each answer: the channel must send again and ignore the stranger."""

    def __init__(self, rig, networks):
        super().__init__(daemon=True)
        self.rig, self.stop = rig, threading.Event()
        self.selector = selectors.DefaultSelector()
        self.sockets, self.ports = {}, {}
        for network in networks:
            sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind(("127.0.0.1", 0))
            self.sockets[network], self.ports[network] = sock, sock.getsockname()[1]
            self.selector.register(sock, selectors.EVENT_READ, network)
        # net-b1's AA speaks PANA on a socket of its own (716 needs root).
        self.pana = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.pana.bind(("127.0.0.1", 0))
        self.selector.register(self.pana, selectors.EVENT_READ, None)
        self.stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.stranger.bind(("127.0.0.1", 0))
        self.seen, self.received = set(), []

    def run(self):
        while not self.stop.is_set():
            events = self.selector.select(timeout=0.02)
            if not events:
                self.rig.now += 0.05
                self.answer(self.rig.service.tick(self.rig.now)[1])
            for key, _ in events:
                data, source = key.fileobj.recvfrom(65536)
                if key.fileobj is self.pana:
                    self.serve_pana(data, source)
                    continue
                self.received.append(data)
                if data not in self.seen:
                    self.seen.add(data)
                    continue   # lost on the way
                origin = Origin(INBAND, source[0], key.data, MN_MAC,
                                reply_to=(key.fileobj, source))
                self.answer(self.rig.service.handle(data, origin, self.rig.now))

    def serve_pana(self, data, source):
        rig = self.rig
        origin = Origin(INBAND, source[0], "net-b1", MN_MAC, reply_to=(self.pana, source))
        for reply in settled(rig.service.pana(data, origin, source[1], rig.now),
                             rig.radius, rig.radius_answer):
            self.pana.sendto(reply.data, source)

    def answer(self, answers):
        for answer in answers:
            sock, source = answer.origin.reply_to
            body = answer.fields
            if body["type"] == "neighbours":
                body = {**body, "candidates": [
                    {**c, "aa": {"address": "127.0.0.1", "port": self.ports[c["network"]]}}
                    for c in body["candidates"]]}
            self.stranger.sendto(b'{"v":1,"type":"error"}', source)
            sock.sendto(messages.encode(body), source)

    def close(self):
        self.stop.set()
        self.join(5)
        for sock in [*self.sockets.values(), self.pana, self.stranger]:
            sock.close()


def test_inband_over_real_udp_sockets():
    rig = Rig()
    gateways = UdpGateways(rig, ["net-a1", "net-a2", "net-b1"])
    gateways.start()
    try:
        channel = InbandChannel("127.0.0.1", gateway="127.0.0.1", port=gateways.ports["net-a1"],
                                timeout=3.0)
        node = MobileNode(CREDENTIALS, MN_MAC, "127.0.0.1", channel,
                          pana_port=gateways.pana.getsockname()[1])
        assert [c["network"] for c in node.discover()["candidates"]] == ["net-a2", "net-b1"]
        node.preauthenticate("net-b1")
        assert node.configure("net-b1")["address"] == "10.2.1.100"
    finally:
        gateways.close()
    # Two exchanges on the channel (discover, config-request; PANA has its own
    # socket), each first send lost, each answer with a stranger's before it.
    assert channel.counters["retransmissions"] >= 2
    assert channel.counters["ignored_wrong_source"] >= 2
    assert channel.counters["datagrams_received"] == 2


def test_inband_real_socket_silence_times_out():
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        channel = InbandChannel("127.0.0.1", timeout=0.15, tries=3)
        with pytest.raises(ChannelError) as err:
            channel.exchange(Target("net-b1", "127.0.0.1", silent.getsockname()[1]),
                             "auth-init", b"hello")
        assert err.value.code == "no-answer"
        assert [silent.recvfrom(100)[0] for _ in range(3)] == [b"hello"] * 3
    finally:
        silent.close()


# -- state file ----------------------------------------------------------------------------

def test_state_file_round_trip_is_private_and_atomic(tmp_path):
    rig = Rig()
    path = tmp_path / "run" / "mn.json"
    node = rest_node(rig, StateFile(str(path)))
    node.preauthenticate("net-b1")
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert stat.S_IMODE(os.stat(path.parent).st_mode) == 0o700
    assert [p.name for p in path.parent.iterdir()] == ["mn.json"]   # no temporary left
    loaded = StateFile(str(path)).load()
    assert loaded.record() == node.state.record()
    keys = loaded.entries["net-b1"].sa.keys
    assert keys.as_hex() == node.state.entries["net-b1"].sa.keys.as_hex()
    assert StateFile(str(tmp_path / "none.json")).load().record() == MnState().record()


@pytest.mark.parametrize("text", ["{", "[]", '{"version": 2}', '{"version": 1, "networks": '
                                  '{"net-b1": {"sa": {}}}}', "\xff"])
def test_a_corrupt_state_file_is_a_clear_error(tmp_path, text):
    path = tmp_path / "mn.json"
    path.write_bytes(text.encode("latin-1"))
    with pytest.raises(StateError) as err:
        StateFile(str(path)).load()
    assert str(path) in str(err.value) and "corrupt" in str(err.value)


def test_the_default_state_path_is_named_after_the_identity():
    assert default_path(["mn1@domain-a"]) == "/run/mpa-mn/mn1@domain-a.json"
    assert default_path(["b@x", "a/../@y"]) == "/run/mpa-mn/a_.._@y.json"


# -- virtual interfaces ---------------------------------------------------------------------------

def test_vif_names_fit_the_kernel_and_stay_apart():
    assert vif_name("net-b1") == "mpa-net-b1"
    long_names = [vif_name("a-very-long-network-name"), vif_name("a-very-long-network-game")]
    assert all(len(n) <= 15 and n.startswith("mpa-a-very") for n in long_names)
    assert long_names[0] != long_names[1]
    assert vif_name("a-very-long-network-name") == long_names[0]
    assert vif_name("n" * 11) == "mpa-" + "n" * 11


def test_vifs_are_idempotent_and_a_new_address_replaces_the_old():
    ip = FakeIp()
    vifs = Vifs(Ip(ip))
    assert vifs.ensure("net-b1", "10.2.1.100") == ("mpa-net-b1", True)
    assert ip.changes() == [["tuntap", "add", "dev", "mpa-net-b1", "mode", "tun"],
                            ["addr", "add", "10.2.1.100/32", "dev", "mpa-net-b1"],
                            ["link", "set", "dev", "mpa-net-b1", "up"]]
    ip.calls.clear()
    assert vifs.ensure("net-b1", "10.2.1.100") == ("mpa-net-b1", False)
    assert ip.changes() == []
    assert vifs.ensure("net-b1", "10.2.1.105") == ("mpa-net-b1", True)
    assert ip.links["mpa-net-b1"]["addrs"] == [("10.2.1.105", 32)]
    assert vifs.address("net-b1") == "10.2.1.105"
    assert vifs.remove("net-b1") is True and vifs.remove("net-b1") is False


def test_vif_errors_say_what_failed():
    ip = FakeIp(fail="tuntap")
    with pytest.raises(VifError) as err:
        Vifs(Ip(ip)).ensure("net-b1", "10.2.1.100")
    assert "ip tuntap add dev mpa-net-b1 mode tun" in str(err.value)
    assert "Operation not permitted" in str(err.value)
    ip = FakeIp()
    ip.links["mpa-net-b1"] = {"kind": "veth", "addrs": [], "up": True}
    with pytest.raises(VifError, match="neither a TUN nor a VXLAN device"):
        Vifs(Ip(ip)).remove("net-b1")

    def missing(argv, **kw):
        raise FileNotFoundError(argv[0])
    with pytest.raises(VifError, match="not found"):
        Vifs(Ip(missing)).ensure("net-b1", "10.2.1.100")


# -- the command line ---------------------------------------------------------------------------



@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_cli_up_json_output(tmp_path, credentials_file, channel):
    rig = Rig()
    run = Cli(rig, tmp_path, credentials_file(), channel)
    rc, doc, err = run("up", "net-b1", "net-a2")
    assert rc == 0, err
    assert doc["command"] == "up" and doc["ok"] is True and doc["channel"] == channel
    b1, a2 = doc["results"]
    assert (b1["network"], b1["ok"], b1["domain"], b1["identity"]) == \
        ("net-b1", True, "domain-b", IDENTITY)
    assert b1["config"]["address"] == "10.2.1.100" and b1["config"]["interface"] == "mpa-net-b1"
    assert a2["config"]["address"] == "10.1.2.100"
    assert run.ip.links["mpa-net-b1"]["addrs"] == [("10.2.1.100", 32)]
    # The next run goes on from the state file.
    rc, doc, _ = run("configure", "net-b1")
    assert rc == 0 and doc["results"][0]["address"] == "10.2.1.100"
    rc, doc, _ = run("status")
    assert [(n["network"], n["next_seq"]) for n in doc["networks"]] == \
        [("net-a2", 2), ("net-b1", 3)]
    state = (tmp_path / "state.json").read_text()
    everything = json.dumps(doc)
    for key in json.loads(state)["networks"]["net-b1"]["sa"]["keys"].values():
        assert key not in everything


def test_cli_human_output_and_options_after_the_command(tmp_path, credentials_file):
    rig = Rig()
    run = Cli(rig, tmp_path, credentials_file())
    rc, out, err = run("discover", json_out=False)
    assert rc == 0, err
    assert out.splitlines()[0] == "net-a1 (10.1.1.10): 2 candidate target network(s)"
    assert "  net-b1: served by domain-b, prefix 10.2.1.0/24, AA 10.2.1.1:7664" in out
    rc, out, err = run("up", "net-b1", "--no-vif", json_out=False)
    assert rc == 0, err
    assert out.startswith("net-b1: pre-authenticated with domain-b as mn1@domain-a by eap-tls "
                          "(PANA session ")
    assert "nCoA 10.2.1.100 (/24), router 10.2.1.1" in out
    assert "mpa-net-b1" not in run.ip.links
    rc, out, err = run("release", "net-b1", "--all", json_out=False)
    assert (rc, out) == (0, "net-b1: released the nCoA and the MPA-SA\n")
    rc, out, _ = run("status", json_out=False)
    assert out == "no MPA-SAs\n"


def test_cli_reads_mac_and_address_from_the_interface(tmp_path, credentials_file):
    rig = Rig()
    run = Cli(rig, tmp_path, credentials_file(), "inband")
    rc, doc, err = run("discover")
    assert rc == 0, err
    assert doc["address"] == MN_ADDRESS and doc["network"] == "net-a1"
    assert ["-j", "-d", "addr", "show", "dev", "eth0"] in run.ip.calls
    assert ["-j", "route", "show", "default"] in run.ip.calls    # the gateway for discovery
    assert run.world.sent[0][1] == ("10.1.1.1", 7664)


def test_cli_a_refused_certificate_exits_1_naming_network_and_code(tmp_path,
                                                                   credentials_file):
    rig = Rig()
    rig.radius.revoked.add(IDENTITY)
    run = Cli(rig, tmp_path, credentials_file(("domain-b",)), "inband")
    rc, doc, err = run("up", "net-b1")
    assert rc == 1
    assert "mpa-mn: net-b1: authentication-rejected: " in err
    assert doc["ok"] is False and doc["results"][0]["error"]["code"] == "authentication-rejected"
    assert rig.service.aa.sas == {}


def test_cli_configuration_errors_exit_2(tmp_path, credentials_file):
    rig = Rig()
    run = Cli(rig, tmp_path, credentials_file(("domain-a",)))
    rc, doc, err = run("preauth", "net-b1")
    assert rc == 2 and "no-credentials" in err
    run.credentials = str(tmp_path / "missing.yaml")
    rc, doc, err = run("preauth", "net-b1")
    assert rc == 2 and "cannot read" in err and doc["error"]["code"] == "credentials"
    (tmp_path / "state.json").write_text("{not json")
    run.credentials = credentials_file()
    rc, doc, err = run("status", json_out=False)
    assert rc == 2 and "corrupt" in err and "Traceback" not in err
    rc, _, err = run("configure", "net-b1")
    assert rc == 2
    (tmp_path / "state.json").unlink()
    rc, doc, err = run("discover", options=["--interface", "nope"])
    assert rc == 2 and doc["error"]["code"] == "interface" and "no interface nope" in err


@pytest.mark.parametrize("argv", [[], ["dance"], ["preauth"], ["preauth", "9net"],
                                  ["--address", "10.1.1", "discover"],
                                  ["--timeout", "0", "status"], ["--channel", "udp", "status"],
                                  ["--controller", "ftp://x", "status"],
                                  ["--mac", "02:00:00", "status"], ["status", "net-b1"],
                                  ["configure", "net-b1", "--all"]])
def test_cli_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: mpa-mn" in capsys.readouterr().err


def test_cli_no_answer_exits_1(tmp_path, credentials_file):
    rig = Rig()
    run = Cli(rig, tmp_path, credentials_file(), "inband")
    run.world.drop = 100
    rc, doc, err = run("discover")
    assert rc == 1 and "no-answer" in err and "10.1.1.1:7664" in err
    assert doc["error"]["code"] == "no-answer" and doc["counters"]["retransmissions"] == 3


# -- against the real REST layer (rest_api.app over WSGI, no sockets) ---------------------------

class WsgiOpener:
    """An urllib opener that hands each request to a WSGI application."""

    def __init__(self, app):
        self.app = app

    def open(self, request, timeout=None):
        from webob import Request
        blank = Request.blank(urllib.parse.urlsplit(request.full_url).path,
                              method=request.get_method(), body=request.data,
                              content_type=request.get_header("Content-type"),
                              remote_addr="172.31.0.2")
        response = blank.get_response(self.app)
        if response.status_int >= 400:
            raise urllib.error.HTTPError(request.full_url, response.status_int, "",
                                         dict(response.headers), io.BytesIO(response.body))
        return Response(response.status_int, response.body)


def test_the_client_speaks_the_real_rest_layer(topology):
    from mpa_sdn.controller import Controller
    from mpa_sdn.facade import Facade
    from mpa_sdn.store import MemoryStore
    from rest_api.app import RestApi
    clock = Clock()
    core = Controller(topology, radius_servers=radius_servers(topology), store=MemoryStore(),
                      entropy=counter_entropy(b"rest"))
    waits = []

    def sleep(seconds):   # the switches come up while the MN waits: then DAD can run
        waits.append(seconds)
        reconcile_all(core, clock.now)
        for _ in range(10):
            core.mpa_tick(clock.now)
            clock.now += 0.1

    channel = RestChannel("http://controller:8080/", opener=WsgiOpener(
        RestApi(Facade(core, clock), core.counters)), sleep=sleep)
    node = MobileNode(CREDENTIALS, MN_MAC, MN_ADDRESS, channel, clock=clock,
                      pana_socket=PanaSockets(core.mpa, FakeRadius(topology), topology, clock))
    assert node.discover()["network"] == "net-a1"
    node.preauthenticate("net-b1")
    assert node.configure("net-b1")["address"] == "10.2.1.100"
    assert waits == [1]          # one 503 address-pending, Retry-After: 1
    assert node.release("net-b1", all=True)["scope"] == "all"
    assert core.mpa.aa.sas == {}


def test_an_aa_that_never_answers_is_no_answer_with_pana_s_counters():
    rig = Rig()
    world = Gateways(rig)
    node = inband_node(rig, world)
    node.discover()
    world.drop = 100
    with pytest.raises(ProtocolError) as err:
        node.preauthenticate("net-b1")
    assert err.value.code == "no-answer" and node.state.entries == {}
    assert node.counters["pana_no_answer"] == 1
    assert node.counters["pana_pci_retransmitted"] >= 3   # 1, 2, 4 s apart within 15 s

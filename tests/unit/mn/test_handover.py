"""The MN's proactive handover (mpa_mn.handover, the tunnel, bind, switch,
attach and handover commands) against the real controller core.

The core is the whole of it (AA, CA and mobility), behind the fake
transports of support/mn_fakes.py: REST bodies and in-band datagrams go to its
service, every barrier it asks for is answered at once, and the frames the
MN puts on its link reach it as packet-ins at the PoA the MN is attached
to.  The MN's host is faked around it: ``ip`` (mn_fakes' FakeIp),
a sysfs directory with the interface's carrier, the raw socket for the
gratuitous ARP, and clocks that only move when the MN sleeps.
"""

import errno
import io
import json

import pytest

from mpa_mn import cli, link, protocol, vxlan_end
from mpa_mn.handover import Handover, plan_attach
from mpa_mn.link import Carrier, LinkError
from mpa_mn.mobile_node import MnError
from mpa_mn.protocol import ProtocolError
from mpa_mn.vif import Ip
from support.service_rig import IDENTITY, MN_MAC
from mpa_protocol import messages
from mpa_sdn import packets
from mpa_sdn.service import REST, Origin
from support.mn_fakes import MN_ADDRESS, Clock, FakeIp
from support.mn_world import ATTACH_BATCH, B1_MAC, B1_ROUTER, HOME, NCOA, HandoverCli, Sysfs, node


# -- the MN, as a library -----------------------------------------------------------------




@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_steps_1_to_4_leave_the_controller_pre_switching_through_the_tunnel(world, channel):
    mn, sources = node(world, channel)
    ip = mn.vifs.ip._run
    ready = Handover(mn, mn.vifs.ip).prepare("net-b1", HOME)
    assert (ready["address"], ready["prefix_len"], ready["router"], ready["gateway_mac"]) == \
        (NCOA, 24, B1_ROUTER, B1_MAC)
    assert ready["tunnel"]["poa"] == "ap-a1-1" and ready["binding"]["care_of"] == NCOA
    assert ready["pre_switch"]["phase"] == "pre-switching"
    assert set(ready["timings_ms"]) == {"preauth", "configure", "tunnel", "bind", "pre_switch"}
    assert world.tunnel() == (NCOA, "ap-a1-1") and world.binding() == NCOA
    assert world.handover().phase == "pre-switching"
    assert ip.links["mpa-net-b1"]["addrs"] == [(NCOA, 32)]
    # The binding update went in-band from the nCoA (the controller refuses it
    # from anywhere else), and nothing else did.
    assert sources.used.count(NCOA) == 1
    assert set(sources.used) <= {NCOA, MN_ADDRESS}


def test_a_handover_always_starts_with_a_new_sa(world):
    mn, _ = node(world)
    handover = Handover(mn, mn.vifs.ip)
    first = handover.prepare("net-b1", HOME)["sa"]
    mn.switch("net-b1", "cancel")
    assert handover.prepare("net-b1", HOME)["sa"] != first
    assert list(world.core.mpa.aa.sas) == [mn.state.entries["net-b1"].sa.sa]


def test_tunnel_switch_and_untunnel_go_to_their_rest_endpoints(world):
    mn, sources = node(world)
    mn.discover()
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    assert mn.tunnel("net-b1", lifetime=30) == {"network": "net-b1", "address": NCOA,
                                                "encapsulation": "mpls", "poa": "ap-a1-1",
                                                "lifetime": 30}
    with pytest.raises(ProtocolError) as err:      # no handover yet
        mn.switch("net-b1", "cancel")
    assert err.value.code == "wrong-state"
    assert mn.switch("net-b1", "pre-switch", buffer_old=True) == {
        "network": "net-b1", "phase": "pre-switching", "buffered": 0}
    mn.switch("net-b1", "cancel")
    assert world.handover().reason == "cancelled"
    assert mn.untunnel("net-b1") == {"network": "net-b1"}
    assert world.tunnel() is None
    assert [p for p, _ in mn.channel.opener.requests][-5:] == [
        "/mpa/v1/networks/net-b1/tunnel", *["/mpa/v1/networks/net-b1/handover"] * 3,
        "/mpa/v1/networks/net-b1/tunnel"]
    assert sources.used == []


def test_the_care_of_is_the_address_held_in_the_network_else_the_ncoa(world):
    mn, _ = node(world)
    mn.discover()
    mn.preauthenticate("net-b1")
    with pytest.raises(MnError) as err:
        mn.care_of("net-b1", [MN_ADDRESS])
    assert err.value.code == "not-configured"
    assert mn.care_of("net-b1", [MN_ADDRESS, "10.2.1.7"]) == "10.2.1.7"   # candidate's prefix
    mn.configure("net-b1")
    assert mn.care_of("net-b1", [MN_ADDRESS, HOME]) == NCOA
    assert mn.care_of("net-b1", ["10.2.1.7"]) == "10.2.1.7"


# -- what the MN believes -------------------------------------------------------------

ACK = {"home_address": HOME, "care_of": NCOA, "lifetime": 60}


@pytest.mark.parametrize("change,code", [
    ({}, None),
    ({"seq": 8}, "unexpected"),
    ({"care_of": "10.2.1.101"}, "unexpected"),
    ({"home_address": "10.255.0.2"}, "unexpected"),
    ({"network": "net-a2"}, "unexpected"),
    ({"sa": "00" * 16}, "unexpected"),
    ({"mac": "00" * 32}, "bad-mac"),
])
def test_a_binding_ack_is_believed_only_for_what_was_asked(world, change, code):
    mn, _ = node(world)
    mn.discover()
    sa = mn.preauthenticate("net-b1")
    fields = {"network": sa.network, "sa": sa.sa, "seq": 7, **ACK, **change}
    mac = fields.pop("mac", None)
    answer = messages.sign(messages.build("binding-ack", **fields),
                           sa.keys.for_purpose("signalling"))
    data = messages.encode({**answer, **({"mac": mac} if mac else {})})
    echo = {"home_address": HOME, "care_of": NCOA}
    if code is None:
        assert protocol.check_answer(sa, data, 7, "binding-ack", echo)["lifetime"] == 60
        return
    with pytest.raises(ProtocolError) as err:
        protocol.check_answer(sa, data, 7, "binding-ack", echo)
    assert err.value.code == code


@pytest.mark.parametrize("kind,changes", [("tunnel", {"address": "10.2.1.150"}),
                                          ("binding-ack", {"care_of": "10.2.1.150"}),
                                          ("binding-ack", {"seq": 1})])
def test_a_signed_answer_for_something_else_is_refused(world, kind, changes):
    """Changed and signed again with the right key: only the MN's check of the
    fields can refuse it."""
    mn = None

    def tamper(body):
        fields = json.loads(body)
        if fields.get("type") != kind:
            return body
        sa = mn.state.entries["net-b1"].sa
        fields.update(changes)
        return messages.encode(messages.sign(
            {k: v for k, v in fields.items() if k != "mac"},
            sa.keys.for_purpose(messages.PURPOSE[kind])))
    mn, _ = node(world, tamper=tamper)
    with pytest.raises(ProtocolError) as err:
        Handover(mn, mn.vifs.ip).prepare("net-b1", HOME)
    assert err.value.code == "unexpected" and kind in err.value.message
    assert world.handover() is None, "no pre-switch after a refused answer"


def test_an_unsigned_handover_state_is_not_believed(world):
    def tamper(body):
        fields = json.loads(body)
        return messages.encode({**fields, "buffered": 999}) \
            if fields.get("type") == "handover-state" else body
    mn, _ = node(world, tamper=tamper)
    with pytest.raises(ProtocolError) as err:
        Handover(mn, mn.vifs.ip).prepare("net-b1", HOME)
    assert err.value.code == "bad-mac"


def test_the_controller_s_refusal_names_its_code(world):
    mn, _ = node(world)
    with pytest.raises(ProtocolError) as err:
        Handover(mn, mn.vifs.ip).prepare("net-b1", "10.255.0.9")
    assert err.value.code == "binding-refused"


# -- the link ---------------------------------------------------------------------------

def test_the_gratuitous_arp_announces_the_ncoa_to_everyone():
    frame = link.gratuitous_arp("02:00:00:00:01:01", NCOA)
    assert frame.hex() == (
        "ffffffffffff" "020000000101" "0806"          # broadcast, from the MN, ARP
        "0001" "0800" "06" "04" "0001"                # Ethernet/IPv4, a request
        "020000000101" "0a020164"                     # sender: the MN, the nCoA
        "000000000000" "0a020164"                     # target: the nCoA
        + "00" * 18)                                  # padded to 60 bytes
    parsed = packets.decode(frame)
    assert parsed.eth_dst == "ff:ff:ff:ff:ff:ff"


class Lines:
    """A carrier whose reads are scripted: (carrier changes, up) per read."""

    interface = "eth0"

    def __init__(self, reads):
        self.reads = list(reads)

    def read(self):
        return self.reads.pop(0) if len(self.reads) > 1 else self.reads[0]


def test_waiting_for_the_switch_sees_the_carrier_drop_and_come_back():
    clock, marks = Clock(), iter(range(1, 100))
    carrier = Lines([(5, True), (6, False), (6, False), (7, True)])
    switched = link.wait_for_switch(carrier, (5, True), 1.0, clock, lambda: next(marks),
                                    lambda s: None)
    assert (switched.down_at, switched.up_at) == (1, 2)
    # A switch quicker than one poll: two changes seen at once.
    switched = link.wait_for_switch(Lines([(7, True)]), (5, True), 1.0, clock,
                                    lambda: next(marks), lambda s: None)
    assert switched.down_at == switched.up_at - 1


def test_waiting_for_the_switch_gives_up_at_the_timeout():
    clock = Clock()

    def sleep(seconds):
        clock.now += seconds
    with pytest.raises(LinkError) as err:
        link.wait_for_switch(Lines([(5, True)]), (5, True), 0.05, clock, lambda: 0, sleep)
    assert err.value.code == "link-timeout" and "never dropped" in err.value.message
    with pytest.raises(LinkError) as err:
        link.wait_for_switch(Lines([(6, False)]), (5, True), 0.05, clock, lambda: 0, sleep)
    assert "never came back" in err.value.message
    assert clock.now == pytest.approx(0.1, abs=0.005)


def test_waiting_for_the_drop_passes_each_interval_with_the_wait_given():
    clock, waits = Clock(), []

    def wait(seconds):
        waits.append(seconds)
        clock.now += seconds
    link.wait_for_drop(Lines([(5, True), (5, True), (5, False)]), (5, True), 1.0, clock, wait)
    assert waits == [link.POLL_INTERVAL_S] * 2
    # Down and back between two looks is a drop too.
    link.wait_for_drop(Lines([(7, True)]), (5, True), 1.0, clock, wait)
    assert len(waits) == 2
    clock.now, waits[:] = 0.0, []
    with pytest.raises(LinkError) as err:
        link.wait_for_drop(Lines([(5, True)]), (5, True), 0.05, clock, wait)
    assert (err.value.code, err.value.message) == (
        "link-timeout", "the carrier of eth0 never dropped within 0.05 s")
    assert len(waits) == 50


def test_the_carrier_s_files_stay_open_until_it_is_closed(tmp_path):
    (tmp_path / "eth0").mkdir()
    changes, up = tmp_path / "eth0" / "carrier_changes", tmp_path / "eth0" / "carrier"
    changes.write_text("12\n")
    up.write_text("1\n")
    carrier = Carrier("eth0", str(tmp_path))
    assert carrier.read() == (12, True)
    changes.write_text("13\n")          # the same files, new text: as sysfs gives it
    up.write_text("0\n")
    assert carrier.read() == (13, False)
    changes.write_text("14\n")
    up.write_text("1\n")
    changes.unlink()                    # gone by name, still open here
    up.unlink()
    assert carrier.read() == (14, True)
    carrier.close()
    with pytest.raises(LinkError):
        carrier.read()


def test_the_carrier_is_read_from_sysfs(tmp_path):
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "carrier_changes").write_text("12\n")
    (tmp_path / "eth0" / "carrier").write_text("1\n")
    assert Carrier("eth0", str(tmp_path)).read() == (12, True)
    (tmp_path / "eth0" / "carrier").unlink()      # what EINVAL (admin down) also gives
    assert Carrier("eth0", str(tmp_path)).read() == (12, False)
    with pytest.raises(LinkError) as err:
        Carrier("eth1", str(tmp_path)).read()
    assert err.value.code == "link" and "eth1" in err.value.message


def test_the_link_is_back_once_the_kernel_made_it_operational(tmp_path):
    """The carrier shows at once; frames go only once the kernel's link
    watch has set the interface operational (a gratuitous ARP sent before
    is dropped without an error), so the MN waits for that too."""
    (tmp_path / "eth0").mkdir()
    (tmp_path / "eth0" / "carrier_changes").write_text("14\n")
    (tmp_path / "eth0" / "carrier").write_text("1\n")
    (tmp_path / "eth0" / "operstate").write_text("lowerlayerdown\n")
    with Carrier("eth0", str(tmp_path)) as carrier:
        assert carrier.read() == (14, False)
        (tmp_path / "eth0" / "operstate").write_text("up\n")
        assert carrier.read() == (14, True)


def test_after_the_switch_no_state_is_saved_and_no_socket_opened(world, tmp_path):
    """arrived's sequence number is taken and saved, and its socket opened,
    before the link goes: after the switch there is one datagram to send."""
    mn, sources = node(world)
    saves, at_switch = [], {}
    save = mn.store.save
    mn.store.save = lambda state: (saves.append(state), save(state))
    (tmp_path / "sys").mkdir()
    sysfs = Sysfs(tmp_path / "sys", world, sources.clock)

    def sleep(seconds):
        sysfs.sleep(seconds)
        if sysfs.sleeps == sysfs.down_at:
            at_switch.update(saves=len(saves), sockets=len(sources.used),
                             sent=len(sources.gateways.sent))
    at_ready = {}

    def ready(event):
        at_ready.update(saves=len(saves))
    handover = Handover(mn, mn.vifs.ip, sysfs=str(tmp_path / "sys"),
                        raw_socket=world.raw_socket, clock=sources.clock, sleep=sleep)
    result = handover.run("net-b1", HOME, ready, interface="eth0", mac=MN_MAC,
                          link_timeout_s=30)
    assert result["arrived"]["phase"] == "completed"
    assert (len(saves), len(sources.used)) == (at_switch["saves"], at_switch["sockets"])
    [(arrived, _)] = sources.gateways.sent[at_switch["sent"]:]
    assert (json.loads(arrived)["phase"], sources.used[-1]) == ("arrived", NCOA)
    # Pre-switch (the AR buffers from its answer on) is the last thing done
    # before the ready line: arrived's number was taken and saved before
    # pre-switch took the next one, and nothing was saved after that.
    assert mn.state.entries["net-b1"].sa.next_seq == json.loads(arrived)["seq"] + 2
    assert at_ready["saves"] == at_switch["saves"]


# -- the command line ---------------------------------------------------------------------

# The vif removed once the MN is attached: it is looked at, with its table's
# rules and routes (none: the tunnel was MPLS), and deleted.
TABLE = str(vxlan_end.table("mpa-net-b1"))
REMOVE_VIF = [["-j", "-d", "addr", "show", "dev", "mpa-net-b1"],
              ["-j", "rule", "show", "table", TABLE], ["-j", "route", "show", "table", TABLE],
              ["link", "del", "dev", "mpa-net-b1"]]


def test_cli_handover_waits_for_the_link_then_attaches(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    rc, [ready], doc, err = run.events("handover", "net-b1", "--wait-link")
    assert rc == 0, err
    assert ready["event"] == "ready" and ready["network"] == "net-b1"
    assert ready["address"] == NCOA and ready["pre_switch"]["phase"] == "pre-switching"
    [result] = doc["results"]
    assert result["ok"] and result["address"] == NCOA and result["interface"] == "eth0"
    assert result["removed"] == [f"{MN_ADDRESS}/24"] and result["vif_removed"] is True
    assert result["gratuitous_arp"] is True
    # The controller saw the MN arrive (its gratuitous ARP at ap-b1-1) before
    # arrived came: the handover had already finished.
    assert result["arrived"]["phase"] == "completed"
    assert world.handover().arrival == "arp" and world.tunnel() is None
    assert world.core.hosts[NCOA].poa.id == "ap-b1-1"
    assert result["link_down_at"] < result["link_up_at"] <= result["attached_at"] \
        <= result["arrived_at"]
    assert result["link_up_at"] - result["link_down_at"] == 20 * 1_000_000  # 20 polls of 1 ms
    assert set(result["timings_ms"]) == {"preauth", "configure", "tunnel", "bind",
                                         "pre_switch", "link_wait", "ip", "gratuitous_arp",
                                         "arrived", "remove_vif"}
    # After the switch: one ip run, one frame, one signal; then the vif goes.
    assert run.ip.batches == [ATTACH_BATCH]
    assert run.ip.calls[-5:] == [["-batch", "-"], *REMOVE_VIF]
    assert world.frames == [("eth0", link.gratuitous_arp(MN_MAC, NCOA))]
    assert [sock.closed for sock in world.sockets] == [True]
    assert run.ip.links["eth0"]["addrs"] == [(HOME, 32), (NCOA, 24)]
    assert "mpa-net-b1" not in run.ip.links
    assert run.ip.default == (B1_ROUTER, "eth0")
    assert run.ip.neighbours == {(B1_ROUTER, "eth0"): (B1_MAC, "permanent")}


def test_cli_handover_without_the_link_cancels_at_the_timeout(world, tmp_path,
                                                              credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file(), down_at=None)
    rc, [ready], doc, err = run.events("handover", "net-b1", "--wait-link",
                                       "--link-timeout", "0.5")
    assert rc == 1
    assert ready["event"] == "ready"
    assert "mpa-mn: net-b1: link-timeout: the carrier of eth0 never dropped within 0.5 s; " \
           "the handover is cancelled" in err
    assert doc["results"][0]["error"]["code"] == "link-timeout"
    assert world.handover().back and world.handover().reason == "cancelled"
    assert run.ip.batches == [] and world.frames == []
    assert run.ip.links["eth0"]["addrs"] == [(MN_ADDRESS, 24), (HOME, 32)]


class LateLink(Sysfs):
    """The link comes back at the target only after the controller gave up on
    the MN: past ``mpa.switch_deadline_s`` the handover is switched back and,
    with ``forgotten``, over and forgotten too (it lingers a second)."""

    def __init__(self, root, world, clock, forgotten=False, **script):
        super().__init__(root, world, clock, **script)
        self.forgotten = forgotten

    def sleep(self, seconds):
        if self.sleeps + 1 == self.down_at + self.up_after:
            self.world.now = self.world.handover().deadline
            for _ in range(30 if self.forgotten else 1):
                self.world.now += 0.1
                self.world.run(self.world.core.mpa_tick(self.world.now))
            assert (self.world.handover() is None) == self.forgotten
        super().sleep(seconds)


@pytest.mark.parametrize("forgotten, answer", [
    (False, "it answered arrived with switched-back"),
    (True, "it answered arrived with wrong-state: no handover to net-b1"),
], ids=["switched-back", "forgotten"])
def test_cli_handover_switched_back_fails_the_same_however_the_controller_says_so(
        world, tmp_path, credentials_file, forgotten, answer):
    """A handover the controller switched back failed, whether its answer to
    arrived says so (switched-back) or the handover is already gone
    (wrong-state): ok false, the same code, exit status 1.  The MN is attached
    in the target network all the same, and the result says how."""
    run = HandoverCli(world, tmp_path, credentials_file(), link=LateLink, forgotten=forgotten)
    rc, [ready], doc, err = run.events("handover", "net-b1", "--wait-link")
    assert rc == 1, err
    assert doc["ok"] is False
    [result] = doc["results"]
    assert result["ok"] is False
    assert result["error"] == {
        "code": "switched-back",
        "message": f"the controller switched the handover to net-b1 back ({answer})"}
    assert f"mpa-mn: net-b1: switched-back: the controller switched the handover to net-b1 " \
           f"back ({answer})" in err
    assert result["address"] == NCOA and result["vif_removed"] is True
    assert world.core.mobility.counters["handover_switch_back_deadline"] == 1


def test_cli_handover_with_a_link_it_cannot_watch_asks_nothing(world, tmp_path,
                                                               credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    (run.link.dir / "carrier_changes").unlink()
    rc, events, doc, err = run.events("handover", "net-b1", "--wait-link")
    assert (rc, events) == (1, [])
    assert "mpa-mn: net-b1: link: cannot read the carrier changes of eth0" in err
    assert world.core.mpa.aa.sas == {} and world.handover() is None


def test_cli_handover_then_attach_as_two_commands(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file(), channel="inband")
    rc, [ready], doc, err = run.events("handover", "net-b1", "--buffer-old")
    assert rc == 0, err
    assert doc["results"][0]["tunnel"] == ready["tunnel"] and "link_up_at" not in ready
    assert world.handover().phase == "pre-switching"
    world.poa = "ap-b1-1"                     # the driver moved the link
    run.ip.calls.clear()
    rc, events, doc, err = run.events("attach", "net-b1")
    assert (rc, events) == (0, []), err
    assert doc["channel"] == "inband"
    assert run.ip.calls == [["-j", "-d", "addr", "show"], ["-batch", "-"], *REMOVE_VIF]
    assert doc["results"][0]["arrived"]["phase"] == "completed"
    assert doc["counters"]["datagrams_sent"] == 1


def test_cli_attach_after_the_controller_switched_back_fails(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    rc, [ready], doc, err = run.events("handover", "net-b1")
    assert rc == 0, err
    world.now = world.handover().deadline + 0.1   # the MN is late: the controller gives up
    world.run(world.core.mpa_tick(world.now))
    world.poa = "ap-b1-1"                         # then the driver moves the link
    rc, events, doc, err = run.events("attach", "net-b1")
    assert (rc, doc["ok"]) == (1, False), err
    [result] = doc["results"]
    assert result["error"] == {"code": "switched-back", "message": "the controller switched "
                               "the handover to net-b1 back (it answered arrived with "
                               "switched-back)"}
    assert result["arrived"]["phase"] == "switched-back" and result["address"] == NCOA


def test_cli_human_lines_of_the_handover_commands(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    rc, out, err = run("up", "net-b1", json_out=False)
    assert rc == 0, err
    rc, out, err = run("tunnel", "net-b1", "--lifetime", "60", json_out=False)
    assert (rc, out) == (0, f"net-b1: MPLS tunnel for {NCOA} to PoA ap-a1-1, "
                            "lifetime 60 s\n"), err
    rc, out, err = run("bind", "net-b1", "--home", HOME, json_out=False)
    assert rc == 0 and out.startswith(f"net-b1: {HOME} bound to care-of {NCOA}, lifetime "), err
    rc, out, err = run("switch", "net-b1", "--phase", "pre-switch", json_out=False)
    assert (rc, out) == (0, "net-b1: handover pre-switching, 0 packet(s) buffered\n"), err
    rc, out, err = run("switch", "net-b1", "--phase", "cancel", json_out=False)
    assert rc == 0 and "switched-back" in out
    rc, out, err = run("untunnel", "net-b1", json_out=False)
    assert (rc, out) == (0, "net-b1: tunnel released\n")


def test_cli_switch_passes_the_mode(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    for argv in (["up", "net-b1"], ["tunnel", "net-b1"], ["bind", "net-b1", "--home", HOME]):
        rc, doc, err = run(*argv)
        assert rc == 0, err
    rc, doc, err = run("switch", "net-b1", "--phase", "pre-switch", "--mode", "bicast")
    assert rc == 0, err
    assert doc["results"][0]["phase"] == "pre-switching"
    assert world.handover().mode == "bicast"


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_cli_the_first_binding_is_to_the_address_the_mn_has_where_it_is(
        world, tmp_path, credentials_file, channel):
    """The network the MN is in is no candidate of its own: its MPA-SA's AA is
    found in a candidate's discovery."""
    run = HandoverCli(world, tmp_path, credentials_file(), channel)
    rc, doc, err = run("preauth", "net-a1")
    assert rc == 0, err
    assert doc["results"][0]["domain"] == "domain-a"
    rc, doc, err = run("bind", "net-a1", "--home", HOME)
    assert rc == 0, err
    # --channel applies to what bind may need first (a home network's MPA-SA);
    # the binding itself goes in-band from the care-of whatever it says.
    assert doc["results"][0]["care_of"] == MN_ADDRESS and doc["channel"] == channel
    assert doc["results"][0]["bound_at"] == "net-a1"
    assert run.system["socket_factory"].used[-1] == MN_ADDRESS
    assert world.binding() == MN_ADDRESS


def test_cli_bind_needs_the_home_address_and_a_configuration(world, tmp_path,
                                                             credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    run("preauth", "net-b1")
    rc, doc, err = run("bind", "net-b1")
    assert rc == 2 and "give --home" in err and doc["results"][0]["error"]["code"] == "usage"
    rc, doc, err = run("bind", "net-b1", "--home", HOME)
    assert rc == 2 and "mpa-mn: net-b1: not-configured" in err
    rc, doc, err = run("attach", "net-b1")
    assert rc == 2 and "not-configured" in err
    rc, doc, err = run("handover", "net-b1", "--home", HOME, "--no-vif")
    assert rc == 2 and "drop --no-vif" in err and world.handover() is None


def test_cli_attach_goes_on_without_the_gratuitous_arp(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())

    def refused(interface):
        raise PermissionError(errno.EPERM, "Operation not permitted")
    run.system["raw_socket"] = refused
    assert run.events("handover", "net-b1")[0] == 0
    world.poa = "ap-b1-1"
    rc, _, doc, err = run.events("attach", "net-b1")
    assert rc == 0, err
    [result] = doc["results"]
    assert result["gratuitous_arp"] is False
    assert result["gratuitous_arp_error"] == (f"cannot send the gratuitous ARP for {NCOA} on "
                                              "eth0: Operation not permitted")
    # arrived, the first packet from the nCoA at the new PoA, tells the controller.
    assert result["arrived"]["phase"] == "completed"
    assert world.handover().arrival == "packet"


def test_cli_attach_reports_a_vif_it_could_not_remove(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    assert run.events("handover", "net-b1")[0] == 0
    world.poa = "ap-b1-1"
    run.ip.fail = "link del"
    rc, _, doc, err = run.events("attach", "net-b1")
    assert rc == 0, err
    [result] = doc["results"]
    assert result["vif_removed"] is False and "Operation not permitted" in result["vif_error"]
    assert result["arrived"]["phase"] == "completed"


def test_cli_attach_reports_a_failed_ip_batch(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    assert run.events("handover", "net-b1")[0] == 0
    run.ip.fail = "route replace"
    rc, _, doc, err = run.events("attach", "net-b1")
    assert rc == 1
    assert "mpa-mn: net-b1: interface: `ip -batch -` failed (exit 1)" in err
    assert "Command failed -:3" in err
    assert world.handover().phase == "pre-switching"    # nothing was sent


@pytest.mark.parametrize("argv", [["switch", "net-b1"], ["switch", "net-b1", "--phase", "go"],
                                  ["tunnel", "net-b1", "--lifetime", "0"],
                                  ["bind", "net-b1", "--lifetime", "-1"],
                                  ["bind", "net-b1", "net-a2"], ["attach"],
                                  ["handover", "net-b1", "--link-timeout", "0"],
                                  ["bind", "net-b1", "--care-of", "10.2.1"],
                                  ["status", "--home", "home"]])
def test_cli_handover_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: mpa-mn" in capsys.readouterr().err


def test_attach_plans_from_one_look_at_the_interfaces():
    ip = FakeIp()
    ip.links["eth0"]["addrs"] += [(HOME, 32), ("10.1.2.7", 24)]
    ip.links["eth9"] = {"kind": "veth", "mac": "02:00:00:00:09:09", "addrs": [("192.168.0.2", 24)],
                        "up": True}
    config = {"address": NCOA, "prefix_len": 24, "router": B1_ROUTER, "gateway_mac": B1_MAC}
    plan = plan_attach(Ip(ip), "net-b1", config, "eth0")
    assert ip.calls == [["-j", "-d", "addr", "show"]]
    assert plan.commands() == [
        f"addr replace {NCOA}/24 dev eth0", f"addr del {MN_ADDRESS}/24 dev eth0",
        "addr del 10.1.2.7/24 dev eth0", f"route replace default via {B1_ROUTER} dev eth0",
        f"neigh replace {B1_ROUTER} lladdr {B1_MAC} dev eth0 nud permanent"]
    assert plan.mac == "02:00:00:00:01:01"


def test_the_ready_line_is_flushed_before_the_wait(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    seen = []

    class Out(io.StringIO):
        def flush(self):
            seen.append(self.getvalue())

    out = Out()
    run.system["stdout"] = out
    polls = []
    run.system["sleep"] = lambda s: (polls.append(seen[:]), run.link.sleep(s))
    assert run("handover", "net-b1", "--wait-link", "--home", HOME)[0] == 0
    assert polls and polls[0] and polls[0][-1].startswith('{"address": "10.2.1.100"')


def test_a_failure_before_the_pre_switch_cancels_nothing(world, tmp_path):
    """The attachment cannot be planned (the interface has no MAC): the
    pre-switch never went out, so there is no handover to cancel."""
    ip = FakeIp()
    del ip.links["eth0"]["mac"]
    mn, sources = node(world, ip=ip)
    (tmp_path / "sys").mkdir()
    sysfs = Sysfs(tmp_path / "sys", world, sources.clock)
    handover = Handover(mn, mn.vifs.ip, sysfs=str(tmp_path / "sys"),
                        raw_socket=world.raw_socket, clock=sources.clock, sleep=sysfs.sleep)
    with pytest.raises(LinkError) as err:
        handover.run("net-b1", HOME, lambda event: None, interface="eth0", link_timeout_s=30)
    assert err.value.message.endswith("the binding stays on the tunnel"), err.value.message
    assert world.handover() is None


# -- told to switch: the network pre-switched (a policy engine's action) ------------------

def pre_switched_by_the_network(world, tmp_path, **link_script):
    """mn1 prepared for net-b1 (steps 1-3), and a policy engine's pre-switch
    at the controller: net-b1's AR buffers, the MN has sent no pre-switch."""
    mn, sources = node(world)
    (tmp_path / "sys").mkdir()
    sysfs = Sysfs(tmp_path / "sys", world, sources.clock, **link_script)
    handover = Handover(mn, mn.vifs.ip, sysfs=str(tmp_path / "sys"),
                        raw_socket=world.raw_socket, clock=sources.clock, sleep=sysfs.sleep,
                        wall_ns=lambda: sysfs.ns)
    handover.before_pre_switch("net-b1", HOME)
    sends = world.core.act("pre-switch", IDENTITY, {"network": "net-b1", "poa": "ap-b1-1"},
                           "engine", Origin(REST, "engine", None), world.now)
    world.run(sends)
    assert world.handover().phase == "pre-switching"
    return handover, sources


def test_told_to_switch_the_mn_says_so_waits_for_the_link_and_arrives(world, tmp_path):
    handover, sources = pre_switched_by_the_network(world, tmp_path)
    events = []
    result = handover.switch_told("net-b1", events.append, "eth0", MN_MAC, 30, "ap-b1-1")
    [told] = events
    assert (told["event"], told["network"], told["poa"]) == ("switch", "net-b1", "ap-b1-1")
    assert told["at"] <= result["link_down_at"] < result["link_up_at"] <= result["attached_at"]
    assert result["address"] == NCOA and result["arrived"]["phase"] == "completed"
    assert world.core.hosts[NCOA].poa.id == "ap-b1-1" and world.tunnel() is None
    assert set(result["timings_ms"]) == {"link_wait", "ip", "gratuitous_arp", "arrived",
                                         "remove_vif"}
    assert [sock.closed for sock in world.sockets] == [True]


def test_told_to_switch_without_the_link_the_mn_cancels_nothing(world, tmp_path):
    """The handover is the network's: the MN's failure is reported to it, not
    turned into a cancel."""
    handover, sources = pre_switched_by_the_network(world, tmp_path, down_at=None)
    sent = len(sources.gateways.sent)
    with pytest.raises(LinkError) as err:
        handover.switch_told("net-b1", lambda event: None, "eth0", MN_MAC, 0.5, "ap-b1-1")
    assert err.value.code == "link-timeout"
    assert world.handover().phase == "pre-switching"
    assert len(sources.gateways.sent) == sent, "arrived was made ready, never sent"
    assert [sock.closed for sock in world.sockets] == [True]


def test_the_gratuitous_arp_goes_before_the_ip_run(world, tmp_path, credentials_file,
                                                   monkeypatch):
    """The controller learns the MN at its new PoA from the announcement and
    delivers the buffer then: the ip run (a process) must not delay it."""
    from support import mn_world
    run = HandoverCli(world, tmp_path, credentials_file())
    batches_at_send = []
    send = mn_world.RawSocket.send

    def recording(self, frame):
        batches_at_send.append(len(run.ip.batches))
        return send(self, frame)

    monkeypatch.setattr(mn_world.RawSocket, "send", recording)
    rc, _, doc, err = run.events("handover", "net-b1", "--wait-link")
    assert rc == 0, err
    assert batches_at_send == [0]
    assert run.ip.batches == [ATTACH_BATCH]
    assert doc["results"][0]["arrived"]["phase"] == "completed"

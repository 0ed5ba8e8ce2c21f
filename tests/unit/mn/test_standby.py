"""Copy-and-forward for a two-interface MN (mpa_mn.standby, the standby
command), against the real controller core of support/mn_world.py.

The MN's host has eth0 (the active interface, at ap-a1-1, its home address
bound to its address there first) and eth1 (at ap-b1-1, in net-b1).  The
controller is the real core throughout: it pre-authenticates and configures
eth1, learns it from its gratuitous ARP, arms the standby binding (copying
at eth0's PoA) and, at ``link-lost``, moves the binding to the nCoA and
sorts the copies by what the MN says eth0 received.  Around it: ``ip``
(mn_fakes' FakeIp), the raw socket of the gratuitous ARP, and eth0's
downlink as its packet socket sees it, which also cuts eth0's carrier in a
sysfs directory.  Each poll that finds no frame is a millisecond on every
clock; nothing waits for real.
"""

import dataclasses
import errno
import io
import json
import socket

import pytest

from mpa_mn import cli, link
from mpa_mn.channels import InbandChannel, RestChannel
from mpa_mn.link import PACKET_OUTGOING, LinkError
from mpa_mn.mobile_node import MobileNode
from mpa_mn.protocol import ProtocolError
from mpa_mn.standby import Delivered, Standby
from mpa_mn.vif import Ip, VifError, Vifs
from support.service_rig import MN_MAC, counter_entropy
from mpa_protocol import messages
from mpa_sdn import packets
from mpa_sdn.service import INBAND, REST
from mpa_sdn.tables import Table
from support.mn_fakes import (CREDENTIALS, MN_ADDRESS, Cli, Clock, FakeIp, Gateways, RestLayer,
                              ticking_sleep)
from support.mn_world import (B1_MAC, B1_ROUTER, HOME, NCOA, WALL_OFFSET, Core, OnTheLink, node,
                              bound_where_it_is as cli_bound_where_it_is)

IF2_MAC = "02:00:00:00:02:02"
A1_ROUTER = "10.1.1.1"
CN = "10.9.9.9"

STANDBY_BATCH = (f"addr replace {NCOA}/24 dev eth1\n"
                 f"neigh replace {B1_ROUTER} lladdr {B1_MAC} dev eth1 nud permanent\n")
LOSS_BATCH = f"route replace default via {B1_ROUTER} dev eth1\n"


# -- the controller ------------------------------------------------------------------

class World(Core):
    """The core, and each of the MN's interfaces at its PoA.  ``signals``: the
    standby binding updates and handover messages the core was sent (type,
    channel, source, fields); ``events``: the ip runs and those signals, in
    the order they happened.  ``ack_without_standby``: the binding-ack of a
    standby binding update loses its ``standby`` (signed again, with the
    SA's key), as an AR that made it an ordinary binding would answer."""

    def __init__(self, ack_without_standby=False):
        super().__init__()
        self.at = {"eth0": "ap-a1-1", "eth1": "ap-b1-1"}
        self.ack_without_standby = ack_without_standby
        self.signals = []
        self.events = []

    def handle(self, data, origin, now, expect=messages.REQUESTS):
        msg = messages.decode(data, 65536, expect=expect)
        if msg.type == "handover" or (msg.type == "binding-update" and msg.get("standby")):
            self.signals.append({"type": msg.type, "channel": origin.channel,
                                 "source": origin.source, "fields": msg.fields})
            self.events.append(("signal", msg.type))
        answers = super().handle(data, origin, now, expect)
        if self.ack_without_standby and msg.get("standby"):
            answers = [self._without_standby(answer) for answer in answers]
        return answers

    def _without_standby(self, answer):
        sa = self.core.mpa.aa.sas[answer.fields["sa"]]
        fields = {k: v for k, v in answer.fields.items() if k not in ("standby", "mac")}
        key = sa.keys.for_purpose(messages.PURPOSE[fields["type"]])
        return dataclasses.replace(answer, fields=messages.sign(fields, key))

    def poa_of(self, interface):
        return self.at[interface]

    # what the controller holds for the MN
    def standby(self):
        standby = self.core.mobility.standbys.get(HOME)
        return standby and (standby.care_of, standby.network, standby.mac)

    def binding(self):
        binding = self.core.mobility.bindings.get(HOME)
        return binding and (binding.care_of, self.core.mobility.reach(binding).poa.id)


class HostIp(FakeIp):
    """The MN's host: eth0 active, eth1 up in net-b1 with no address yet."""

    def __init__(self, world, fail=None):
        super().__init__(fail)
        self.world = world
        self.links["eth0"]["addrs"].append((HOME, 32))
        self.links["eth1"] = {"kind": "veth", "mac": IF2_MAC, "addrs": [], "up": True}

    def __call__(self, argv, **kw):
        if argv[1:] == ["-batch", "-"]:
            self.world.events.append(("ip", kw["input"]))
        return super().__call__(argv, **kw)


# -- eth0's downlink ----------------------------------------------------------------------

def frame(dst, payload=b"x", src=CN):
    return packets.udp_frame(src_mac=B1_MAC, dst_mac=MN_MAC, src_ip=src, dst_ip=dst,
                             src_port=5001, dst_port=5001, payload=payload)


def home_frame(n):
    return frame(HOME, payload=n.to_bytes(4, "big"))


def digest(f):
    return messages.frame_digest(f)


class Downlink:
    """eth0's packet socket (the factory and the socket) and the link under it:
    ``script`` maps a poll number to what happens then: frames (as (frame,
    pkttype)) arrive, an OSError is what the next read raises, ``"lost"``
    drops the carrier, ``"flap"`` drops it and brings it back before the next
    look.  A poll that finds no frame moves
    the clocks on by its timeout; ``ns`` is the wall clock."""

    def __init__(self, root, clock, script=None):
        self.dir = root / "eth0"
        self.dir.mkdir(parents=True)
        self.clock, self.script = clock, dict(script or {})
        self.changes, self.polls, self.ns = 3, 0, int(WALL_OFFSET) * 10**9
        self.queue, self.timeout, self.opened, self.closed = [], None, [], False
        self.timeouts = []       # each settimeout
        self.on_poll = None
        self.set(up=True)

    def set(self, up):
        (self.dir / "carrier_changes").write_text(f"{self.changes}\n")
        (self.dir / "carrier").write_text("1\n" if up else "0\n")

    def __call__(self, interface):
        self.opened.append(interface)
        return self

    def settimeout(self, seconds):
        self.timeout = seconds
        self.timeouts.append(seconds)

    def recvfrom(self, size):
        if self.queue:
            item = self.queue.pop(0)
            if isinstance(item, OSError):
                raise item
            data, pkttype = item
            return data[:size], ("eth0", 0x0800, pkttype, 1, bytes.fromhex("02004abb3a62"))
        if not self.timeout:
            raise BlockingIOError(11, "Resource temporarily unavailable")
        self.polls += 1
        self.clock.now += self.timeout
        self.ns += round(self.timeout * 1e9)
        if self.on_poll:
            self.on_poll()
        for item in self.script.get(self.polls, []):
            if item in ("lost", "flap"):
                self.changes += 1 if item == "lost" else 2
                self.set(up=item == "flap")
            else:
                self.queue.append(item)
        raise socket.timeout("timed out")

    def close(self):
        self.closed = True


# -- the MN, as a library ------------------------------------------------------------

@pytest.fixture
def world():
    world = World()
    world.attach("ap-a1-1")
    return world


def bound_where_it_is(mn, world):
    """The MN's first binding: home address -> its address at ap-a1-1."""
    mn.preauthenticate("net-a1")
    mn.bind("net-a1", HOME, MN_ADDRESS)
    assert world.binding() == (MN_ADDRESS, "ap-a1-1")


def standby(world, tmp_path, script=None, ip=None, sniff=None):
    """The run, over REST, and the downlink it watches; the home address is
    bound to the MN's address at ap-a1-1 first."""
    ip = ip or HostIp(world)
    downlink = Downlink(tmp_path / "sys", Clock(), script)
    channel = RestChannel("http://controller:8080", opener=RestLayer(world),
                          sleep=ticking_sleep(world, []))
    gateways = Gateways(world)

    def inband(source, gateway=None):
        return InbandChannel(source, gateway=gateway, socket_factory=OnTheLink(gateways, world),
                             clock=gateways.clock, sleep=ticking_sleep(world, []))
    mn = MobileNode(CREDENTIALS, MN_MAC, MN_ADDRESS, channel, vifs=Vifs(Ip(ip)),
                    entropy=counter_entropy(b"mn"), wall=lambda: world.wall(world.now),
                    inband=inband, pana_socket=OnTheLink(gateways, world),
                    clock=gateways.clock)
    bound_where_it_is(mn, world)
    run = Standby(mn, Ip(ip), sysfs=str(tmp_path / "sys"), raw_socket=world.raw_socket,
                  sniff_socket=sniff or downlink, clock=downlink.clock,
                  wall_ns=lambda: downlink.ns, perf_ns=lambda: downlink.ns)
    return run, downlink, ip


def networks_with_an_sa(world):
    return sorted(sa.network for sa in world.core.mpa.aa.sas.values())


def moved(world, delivered):
    """The core after link-lost: the binding on the nCoA at eth1's PoA, no
    standby, and a copy-and-forward handover that took the MN's word."""
    assert world.binding() == (NCOA, "ap-b1-1")
    assert world.standby() is None
    handover = world.handover()
    assert (handover.mode, handover.arrival, handover.address) == \
        ("copy-and-forward", "link-lost-signal", NCOA)
    assert handover.delivered == delivered
    return handover


def test_standby_makes_eth1_ready_and_binds_the_home_address_to_it_in_standby(world, tmp_path):
    run, downlink, ip = standby(world, tmp_path)
    events = []
    ready = run.run("net-b1", HOME, events.append, "eth1", "eth0")
    assert events == [{"event": "ready", **ready}]
    assert (ready["address"], ready["interface"], ready["old_interface"], ready["mac"]) == \
        (NCOA, "eth1", "eth0", IF2_MAC)
    assert ready["binding"] == {"care_of": NCOA, "lifetime": 3600, "standby": True,
                                "bound_at": "net-a1"}
    assert ready["gratuitous_arp"] is True and "ready_at" in ready
    assert set(ready["timings_ms"]) == {"preauth", "configure", "ip", "gratuitous_arp", "bind"}
    # The MPA-SA names eth1's MAC, not the MN's active interface's.
    assert world.core.mpa.aa.sas[ready["sa"]].mn_mac == IF2_MAC
    # The nCoA on eth1 with its router's MAC, the default route left on eth0.
    assert ip.batches == [STANDBY_BATCH]
    assert (NCOA, 24) in ip.links["eth1"]["addrs"]
    assert not [name for name in ip.links if name.startswith("mpa-")], "no vif beside IF2"
    assert ip.default == (A1_ROUTER, "eth0")
    assert ip.neighbours == {(B1_ROUTER, "eth1"): (B1_MAC, "permanent")}
    # The gratuitous ARP went out of eth1, and the controller learned eth1 in net-b1.
    assert world.frames == [("eth1", link.gratuitous_arp(IF2_MAC, NCOA))]
    assert world.core.hosts[NCOA].mac == IF2_MAC
    assert world.core.hosts[NCOA].poa.id == "ap-b1-1"
    # The controller stands by: the home address stays on eth0's address at
    # ap-a1-1, to go to the nCoA on eth1 if eth0's link is lost.
    assert world.standby() == (NCOA, "net-b1", IF2_MAC)
    assert world.binding() == (MN_ADDRESS, "ap-a1-1")
    [bind] = world.signals
    assert bind["type"] == "binding-update" and bind["channel"] == REST
    assert world.events == [("ip", STANDBY_BATCH), ("signal", "binding-update")]
    # Without waiting for the loss nothing watches eth0, and every socket is closed.
    assert downlink.opened == [] and [s.closed for s in world.sockets] == [True]


def test_the_loss_moves_the_route_then_says_what_eth0_received(world, tmp_path):
    a, d, e = home_frame(1), home_frame(2), home_frame(3)
    script = {2: [(a, 0), (frame("10.1.1.99"), 0), (home_frame(9), PACKET_OUTGOING)],
              5: [(d, 0)],
              8: ["lost", (e, 0)]}     # queued as the carrier goes: read after the drop
    run, downlink, ip = standby(world, tmp_path, script)
    result = run.run("net-b1", HOME, lambda event: None, "eth1", "eth0",
                     loss_timeout_s=30)
    assert downlink.opened == ["eth0"] and downlink.polls == 8
    lost = world.signals[-1]
    assert lost["type"] == "handover" and lost["channel"] == REST
    assert lost["fields"]["phase"] == "link-lost"
    assert lost["fields"]["delivered"] == [digest(a), digest(d), digest(e)]
    assert "mode" not in lost["fields"]
    # The route moved before link-lost went; nothing else happened in between.
    assert world.events == [("ip", STANDBY_BATCH), ("signal", "binding-update"),
                            ("ip", LOSS_BATCH), ("signal", "handover")]
    assert ip.default == (B1_ROUTER, "eth1")
    # The binding moved to the nCoA, and the core took the MN's word on what
    # eth0 received.
    moved(world, [digest(a), digest(d), digest(e)])
    assert result["link_lost"] == {"phase": "switching", "buffered": 0}
    assert (result["delivered"], result["received"]) == (3, 3)
    assert result["ready_at"] < result["loss_detected_at"] <= result["signalled_at"]
    assert result["loss_detected_at"] - result["ready_at"] == 8 * 1_000_000   # 8 polls
    assert set(result["timings_ms"]) >= {"loss_wait", "route", "link_lost"}
    # The poll interval is set once, not at every poll; then the drain's zero.
    assert downlink.timeouts == [link.POLL_INTERVAL_S, 0]
    assert downlink.closed and all(s.closed for s in world.sockets)


def test_no_state_is_saved_between_the_loss_and_link_lost(world, tmp_path):
    """link-lost's sequence number is taken and saved before the wait; only
    signing it waits for the digests."""
    run, downlink, _ = standby(world, tmp_path, {4: [(home_frame(1), 0)], 6: ["lost"]})
    saved = []      # (carrier changes, the SA's next sequence number) at each save
    save = run.node.store.save

    def counted(state):
        entry = state.entries.get("net-a1")   # link-lost goes where the standby is bound
        saved.append((downlink.changes, entry and entry.sa.next_seq))
        save(state)
    run.node.store.save = counted
    run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=30)
    moved(world, [digest(home_frame(1))])
    assert {changes for changes, _ in saved} == {3}, "a save after the carrier dropped"
    lost = world.signals[-1]["fields"]
    assert lost["phase"] == "link-lost" and saved[-1][1] == lost["seq"] + 1


def test_a_carrier_that_flaps_between_two_looks_is_a_loss(world, tmp_path):
    run, downlink, _ = standby(world, tmp_path, {3: ["flap"]})
    result = run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=30)
    assert downlink.polls == 3
    # Nothing received: the field is left out, and the core has an empty word.
    moved(world, [])
    assert "delivered" not in world.signals[-1]["fields"] and result["delivered"] == 0


def test_without_the_loss_it_gives_up_at_the_timeout_and_the_binding_stands_by(
        world, tmp_path):
    run, downlink, ip = standby(world, tmp_path)
    with pytest.raises(LinkError) as err:
        run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=0.05)
    assert err.value.code == "link-timeout"
    assert err.value.message == ("the carrier of eth0 never dropped within 0.05 s; the "
                                 "standby binding stays")
    assert downlink.polls == 50
    assert [s["type"] for s in world.signals] == ["binding-update"]
    assert world.standby() == (NCOA, "net-b1", IF2_MAC)
    assert world.binding() == (MN_ADDRESS, "ap-a1-1") and world.handover() is None
    assert ip.default == (A1_ROUTER, "eth0")
    assert downlink.closed and all(s.closed for s in world.sockets)


def enetdown():
    return OSError(errno.ENETDOWN, "Network is down")


def test_a_socket_that_fails_as_the_link_goes_still_signals_the_loss(world, tmp_path):
    """The kernel reports the link going to the next read, once; the frames
    queued before it are read after it."""
    a, b = home_frame(1), home_frame(2)
    run, downlink, _ = standby(world, tmp_path, {2: [(a, 0)], 4: ["lost", enetdown(), (b, 0)]})
    result = run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=30)
    moved(world, [digest(a), digest(b)])
    assert (result["delivered"], result["read_errors"]) == (2, 1)
    assert result["read_error"] == "eth0: cannot read frames: Network is down"
    assert downlink.closed


def test_a_socket_that_keeps_failing_ends_the_drain_and_the_loss_is_still_signalled(
        world, tmp_path):
    a = home_frame(1)
    run, downlink, _ = standby(world, tmp_path, {
        2: [enetdown()],                       # while waiting: the carrier decides
        3: [(a, 0)],
        5: ["lost", enetdown(), enetdown(), (home_frame(2), 0)]})
    result = run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=30)
    assert downlink.polls == 5
    moved(world, [digest(a)])
    assert (result["delivered"], result["read_errors"]) == (1, 3)


def test_a_failed_route_still_signals_the_loss(world, tmp_path):
    ip = HostIp(world, fail="route replace")
    run, _, _ = standby(world, tmp_path, {1: ["lost"]}, ip=ip)
    with pytest.raises(VifError) as err:
        run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=30)
    assert "Command failed -:1" in str(err.value)
    assert "link-lost was sent all the same (the handover is switching)" in str(err.value)
    moved(world, [])


def test_an_eth0_that_cannot_be_watched_fails_before_the_binding(world, tmp_path):
    def refused(interface):
        raise PermissionError(1, "Operation not permitted")
    run, _, _ = standby(world, tmp_path, sniff=refused)
    with pytest.raises(LinkError) as err:
        run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=30)
    assert err.value.code == "link"
    assert err.value.message == ("cannot watch the frames eth0 receives: "
                                 "Operation not permitted")
    assert world.signals == [] and world.standby() is None
    assert all(s.closed for s in world.sockets)


def test_a_carrier_that_cannot_be_read_fails_before_anything_is_asked(world, tmp_path):
    run, downlink, ip = standby(world, tmp_path)
    (downlink.dir / "carrier_changes").unlink()
    with pytest.raises(LinkError) as err:
        run.run("net-b1", HOME, lambda event: None, "eth1", "eth0", loss_timeout_s=30)
    assert err.value.code == "link"
    assert networks_with_an_sa(world) == ["net-a1"] and ip.calls == []


def test_an_ack_that_is_not_in_standby_is_not_believed(tmp_path):
    world = World(ack_without_standby=True)
    world.attach("ap-a1-1")
    run, _, _ = standby(world, tmp_path)
    with pytest.raises(ProtocolError) as err:
        run.run("net-b1", HOME, lambda event: None, "eth1", "eth0")
    assert err.value.code == "unexpected" and "standby" in err.value.message


# -- what eth0's socket records ----------------------------------------------------------

def test_only_frames_eth0_received_for_the_home_address_count_the_last_16_oldest_first(
        tmp_path):
    downlink = Downlink(tmp_path, Clock())
    frames = [home_frame(n) for n in range(20)]
    truncated = home_frame(99)[:30 + 4]                # the header only: no digest
    downlink.queue = [(f, 0) for f in frames[:10]] + [
        (frame("10.1.1.99"), 0), (frame(HOME, src="10.1.1.98")[:-1] + b"y", PACKET_OUTGOING),
        (truncated, 0)] + [(f, 0) for f in frames[10:]]
    delivered = Delivered("eth0", HOME, downlink)
    delivered.drain()
    assert list(delivered.digests) == [digest(f) for f in frames[4:]]
    assert delivered.received == 20 and downlink.queue == []
    delivered.poll(0.001)                               # nothing queued: one poll's wait
    assert downlink.polls == 1 and len(delivered.digests) == messages.DELIVERED_MAX


# -- the messages themselves ---------------------------------------------------------------

def test_in_band_the_standby_messages_go_from_the_ncoa(world):
    mn, _ = node(world, "inband")
    bound_where_it_is(mn, world)
    # In-band, auth-init must come from the MAC it names (the MN's own, out of
    # eth0); the controller then learns the nCoA with that MAC at ap-b1-1.
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    world.packet_in_at("ap-b1-1", Table.ARP, link.gratuitous_arp(MN_MAC, NCOA))
    assert mn.bind("net-b1", HOME, NCOA, standby=True)["standby"] is True
    assert world.standby() == (NCOA, "net-b1", MN_MAC)
    mn.switch("net-b1", "link-lost", source=NCOA, delivered=[digest(home_frame(1))])
    moved(world, [digest(home_frame(1))])
    bind, lost = world.signals
    assert (bind["channel"], bind["source"]) == (INBAND, NCOA)
    assert (lost["channel"], lost["source"]) == (INBAND, NCOA)
    assert "mode" not in lost["fields"]


def test_over_rest_the_standby_binding_goes_over_rest(world):
    mn, sources = node(world)
    bound_where_it_is(mn, world)
    mn.preauthenticate("net-b1", mac=IF2_MAC)
    mn.configure("net-b1")
    world.packet_in_at("ap-b1-1", Table.ARP, link.gratuitous_arp(IF2_MAC, NCOA))
    assert mn.bind("net-b1", HOME, NCOA, standby=True)["standby"] is True
    assert world.standby() == (NCOA, "net-b1", IF2_MAC)
    # In-band only the first binding, from its care-of.
    assert world.signals[0]["channel"] == REST and sources.used == [MN_ADDRESS]
    assert mn.state.entries["net-b1"].sa.mn_mac == IF2_MAC


# -- the command line -----------------------------------------------------------------------

class StandbyCli(Cli):
    """mpa-mn in the MN's host, its home address bound at ap-a1-1 first."""

    def __init__(self, world, tmp_path, credentials, script=None, **kw):
        super().__init__(world, tmp_path, credentials, **kw)
        self.ip = HostIp(world)
        self.downlink = Downlink(tmp_path / "sys", self.world.clock, script)
        self.system = {"raw_socket": world.raw_socket, "sniff_socket": self.downlink,
                       "sysfs": str(tmp_path / "sys"), "wall_ns": lambda: self.downlink.ns,
                       "perf_ns": lambda: self.downlink.ns}
        cli_bound_where_it_is(self)
        self.interface = None   # standby's --interface is the one to prepare

    def events(self, *argv):
        """(exit status, the ready events, the document, stderr)."""
        rc, out, err = self(*argv, json_out=False, options=["--json"])
        lines = out.splitlines(keepends=True)
        events = [json.loads(line) for line in lines if line.startswith('{"')]
        rest = "".join(line for line in lines if not line.startswith('{"'))
        return rc, events, json.loads(rest), err


def test_cli_standby_waits_for_the_loss(world, tmp_path, credentials_file):
    run = StandbyCli(world, tmp_path, credentials_file(), {4: [(home_frame(1), 0)],
                                                           6: ["lost"]})
    rc, [ready], doc, err = run.events("standby", "net-b1", "--interface", "eth1",
                                       "--old-interface", "eth0", "--home", HOME,
                                       "--wait-loss")
    assert rc == 0, err
    assert ready["event"] == "ready" and ready["address"] == NCOA
    assert (ready["interface"], ready["old_interface"]) == ("eth1", "eth0")
    [result] = doc["results"]
    assert result["ok"] and result["link_lost"]["phase"] == "switching"
    assert result["delivered"] == 1 and result["ready_at"] == ready["ready_at"]
    moved(world, [digest(home_frame(1))])
    assert world.core.mpa.aa.sas[result["sa"]].mn_mac == IF2_MAC
    assert run.ip.batches == [STANDBY_BATCH, LOSS_BATCH]


def test_cli_standby_takes_the_old_interface_from_the_default_route_and_prints_a_line(
        world, tmp_path, credentials_file):
    run = StandbyCli(world, tmp_path, credentials_file())
    rc, out, err = run("standby", "net-b1", "--interface", "eth1", "--home", HOME,
                       json_out=False)
    assert rc == 0, err
    ready, line = out.splitlines()
    assert json.loads(ready)["old_interface"] == "eth0"
    assert line == (f"net-b1: eth1 standing by with nCoA {NCOA}/24, {HOME} bound to it "
                    "if eth0 is lost")
    assert world.standby() == (NCOA, "net-b1", IF2_MAC)


def test_cli_standby_gives_up_at_the_loss_timeout(world, tmp_path, credentials_file):
    run = StandbyCli(world, tmp_path, credentials_file())
    rc, [ready], doc, err = run.events("standby", "net-b1", "--interface", "eth1",
                                       "--home", HOME, "--wait-loss", "--loss-timeout", "0.5")
    assert rc == 1
    assert "mpa-mn: net-b1: link-timeout: the carrier of eth0 never dropped within 0.5 s" in err
    assert doc["results"][0]["error"]["code"] == "link-timeout"


def test_cli_the_ready_line_is_flushed_before_the_wait(world, tmp_path, credentials_file):
    run = StandbyCli(world, tmp_path, credentials_file(), {3: ["lost"]})
    seen, polls = [], []

    class Out(io.StringIO):
        def flush(self):
            seen.append(self.getvalue())

    run.system["stdout"] = Out()
    run.downlink.on_poll = lambda: polls.append(seen[:])
    assert run("standby", "net-b1", "--interface", "eth1", "--home", HOME, "--wait-loss")[0] == 0
    assert polls[0] and json.loads(polls[0][-1])["event"] == "ready"


@pytest.mark.parametrize("argv,code,message", [
    (["--home", HOME], "usage", "give --interface"),
    (["--interface", "eth1"], "usage", "give --home"),
    (["--interface", "eth0", "--home", HOME], "usage",
     "eth0 is the old interface: give another --interface or --old-interface"),
    (["--interface", "eth7", "--home", HOME], "interface", "no interface eth7"),
])
def test_cli_standby_refuses_what_it_cannot_do(world, tmp_path, credentials_file, argv, code,
                                               message):
    run = StandbyCli(world, tmp_path, credentials_file())
    rc, doc, err = run("standby", "net-b1", *argv)
    assert rc == (2 if code == "usage" else 1)
    assert doc["results"][0]["error"]["code"] == code and message in err
    assert world.signals == [] and networks_with_an_sa(world) == ["net-a1"]


def test_cli_switch_says_link_lost_without_digests(world, tmp_path, credentials_file):
    """A standby armed without --wait-loss; the loss said by hand."""
    run = StandbyCli(world, tmp_path, credentials_file())
    assert run.events("standby", "net-b1", "--interface", "eth1", "--home", HOME)[0] == 0
    rc, doc, err = run("switch", "net-b1", "--phase", "link-lost")
    assert rc == 0, err
    assert doc["results"][0]["phase"] == "switching"
    moved(world, [])
    assert world.signals[-1]["fields"]["phase"] == "link-lost"
    assert not {"mode", "delivered"} & set(world.signals[-1]["fields"])


@pytest.mark.parametrize("argv", [["standby"], ["standby", "net-b1", "net-a2"],
                                  ["standby", "net-b1", "--loss-timeout", "0"],
                                  ["standby", "net-b1", "--loss-timeout", "soon"],
                                  ["standby", "net-b1", "--wait-loss", "yes"],
                                  ["switch", "net-b1", "--phase", "pre-switch", "--mode", "copy"]])
def test_cli_standby_usage_errors_exit_2(argv, capsys):
    assert cli.main(argv) == 2
    assert "usage: mpa-mn" in capsys.readouterr().err

"""A handover without MPA (mpa_mn.reactive, the reactive command) against the
real controller core of support/mn_world.py, which is also the networks' DHCP
server.

The MN's packet sockets are on a fake wire: what the MN sends reaches the
core as a packet-in at the PoA its link is at (DHCP at INGRESS, where the
switch punts it; ARP from the ARP table), and every frame the core sends out
of that PoA comes back to the MN's sockets of its ethertype.  A socket that
finds nothing within its timeout moves every clock on by that much, so DHCP's
retransmissions, DAD's waits and the wait after a DECLINE take no real time.
The link switches as in test_handover: the carrier drops on the MN's 3rd
look and is back 20 looks later, at ap-b1-1 (net-b1).
"""

import json
import socket

import pytest

from mpa_mn.binding_rewrite import Rewrite
from mpa_mn.dad import DadSettings, probe_frame
from mpa_mn.dhcp_client import DhcpSettings
from mpa_mn.link import LinkError
from mpa_mn.reactive import Reactive, ReactiveSettings
from support.service_rig import MN_MAC, counter_entropy
from mpa_sdn import dhcp, packets
from mpa_sdn import openflow as of
from mpa_sdn.openflow import Send
from mpa_sdn.tables import Table
from support.fakeoftable import from_bytes, to_bytes, udp_packet
from support.mn_domains import CN, OCOA, SOURCE_PORT, Domains
from support.mn_fakes import MN_ADDRESS, Clock
from support.mn_world import HOME, Core, HandoverCli, Sysfs, node

B1_ROUTER, B1_MAC = "10.2.1.1", "02:4a:bb:3a:62:79"
FIRST, SECOND = "10.2.1.100", "10.2.1.101"           # the addresses net-b1's CA gives first
FAST = DadSettings(probe_wait_s=0.5, probe_num=2, probe_min_s=0.2, probe_max_s=0.4,
                   announce_wait_s=0.5, announce_num=2, announce_interval_s=1.0)


class Sockets:
    """The MN's packet sockets (``wire(interface, ethertype)``): a frame put
    on the wire (:meth:`queue`) reaches those of its ethertype; ``idle(s)``:
    nothing came within s seconds."""

    def __init__(self):
        self.sockets = []

    def __call__(self, interface, ethertype):
        assert interface == "eth0"
        self.sockets.append(WireSocket(self, ethertype))
        return self.sockets[-1]

    def queue(self, frames):
        for frame in frames:
            ethertype = int.from_bytes(frame[12:14], "big")
            for sock in self.sockets:
                if sock.ethertype == ethertype and not sock.closed:
                    sock.frames.append(frame)


class Wire(Sockets):
    """The MN's packet sockets on the core's PoA where the MN's link is.
    ``answer(frame)`` may add frames of its own for each the MN sends (a
    squatter's); ``sent`` is every frame sent."""

    def __init__(self, world):
        super().__init__()
        self.world, self.sent = world, []
        self.advance = None        # seconds -> every clock moved on (the link's sleep)
        self.answer = lambda frame: []
        self.to_controller = True  # False: what the MN sends reaches no one
        world.deliver = self.deliver

    def idle(self, seconds):
        self.advance(seconds)
        self.world.run(self.world.core.mpa_tick(self.world.now))

    def send(self, frame):
        self.sent.append(frame)
        self.queue(self.answer(frame))    # before the controller's answer
        parsed = packets.decode(frame)
        if self.to_controller and self.world.poa is not None:
            if parsed.arp is not None:
                self.world.packet_in(Table.ARP, frame)
            elif parsed.udp is not None and parsed.udp[1] == dhcp.SERVER_PORT:
                self.world.packet_in(Table.INGRESS, frame)

    def deliver(self, sends):
        """Packet-outs out of the MN's PoA reach its sockets."""
        if self.world.poa is None:
            return
        poa = self.world.core.graph.poa(self.world.poa)
        dpid = self.world.core.graph.dpid(poa.switch)
        for send in sends:
            if not isinstance(send, Send) or send.dpid != dpid:
                continue
            for msg in send.messages:
                if of.message_name(msg) == "OFPPacketOut" and any(
                        getattr(a, "port", None) == poa.port for a in msg.actions):
                    self.queue([msg.data])

    def frames(self, kind):
        """What the MN sent: DHCP message types, or ARP (sender, target)."""
        out = []
        for frame in self.sent:
            parsed = packets.decode(frame)
            if kind == "dhcp" and parsed.udp is not None:
                out.append(dhcp.decode_request(frame).message_type)
            elif kind == "arp" and parsed.arp is not None:
                out.append((parsed.arp.src_ip, parsed.arp.dst_ip))
        return out


class WireSocket:
    def __init__(self, wire, ethertype):
        self.wire, self.ethertype = wire, ethertype
        self.frames, self.timeout, self.closed = [], None, False

    def send(self, frame):
        self.wire.send(frame)
        return len(frame)

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        if self.frames:
            return self.frames.pop(0), ("eth0", self.ethertype, 0, 1, b"")
        if self.timeout:
            self.wire.idle(self.timeout)
        raise socket.timeout()

    def close(self):
        self.closed = True


class LinkedCore(Core):
    """The core whose packet-outs reach the wire."""

    deliver = None

    def run(self, sends):
        super().run(sends)
        if self.deliver is not None:
            self.deliver(sends)


@pytest.fixture
def world():
    world = LinkedCore()
    world.attach("ap-a1-1")
    return world


def reactive(world, tmp_path, channel="rest", **link_script):
    """The MN (eth0: its address in net-a1 and its /32 home address), its
    wire and its link, and a Reactive run on them."""
    mn, sources = node(world, channel)
    ip = mn.vifs.ip
    ip._run.links["eth0"]["addrs"].append((HOME, 32))
    (tmp_path / "sys").mkdir()
    sysfs = Sysfs(tmp_path / "sys", world, sources.clock, **link_script)
    wire = Wire(world)
    wire.advance = sysfs.sleep
    run = Reactive(mn, ip, sysfs=str(tmp_path / "sys"), packet_socket=wire,
                   clock=sources.clock, sleep=sysfs.sleep, wall_ns=lambda: sysfs.ns,
                   perf_ns=lambda: sysfs.ns, entropy=counter_entropy(b"reactive"))
    return run, wire, sources, sysfs


def go(run, settings=ReactiveSettings(dad=FAST), link_timeout_s=30, events=None):
    return run.run("net-b1", HOME, (events if events is not None else []).append, "eth0",
                   settings=settings, link_timeout_s=link_timeout_s)


def binding(world):
    b = world.core.mobility.bindings.get(HOME)
    return b and (b.care_of, world.core.mobility.reach(b).poa.id)


# -- the run ------------------------------------------------------------------------------

def test_over_rest_it_gets_checks_attaches_then_authenticates_and_binds(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path)
    events = []
    result = go(run, events=events)
    [ready] = events
    assert ready["event"] == "ready"
    assert "address" not in ready, "nothing is known of the target before the move"
    assert (result["address"], result["prefix_len"], result["router"], result["server"]) == \
        (FIRST, 24, B1_ROUTER, B1_ROUTER)
    # DISCOVER, REQUEST; two probes for the address, then its announcements.
    assert wire.frames("dhcp") == [dhcp.DISCOVER, dhcp.REQUEST]
    assert wire.frames("arp") == [("0.0.0.0", FIRST)] * 2 + [(FIRST, FIRST)] * 2
    assert result["dad"]["probes"] == 2 and result["dad"]["announcements"] == 2
    # The address on eth0 instead of the old one, the home address kept; the
    # router is found by ARP (no permanent entry: DHCP gives no MAC).
    assert run.ip._run.batches == [f"addr replace {FIRST}/24 dev eth0\n"
                                   f"addr del {MN_ADDRESS}/24 dev eth0\n"
                                   f"route replace default via {B1_ROUTER} dev eth0\n"]
    assert run.ip._run.links["eth0"]["addrs"] == [(HOME, 32), (FIRST, 24)]
    assert run.ip._run.neighbours == {}
    # The controller: the MN learned at ap-b1-1 with its address, a new SA
    # there (authorized: it is attached), the home address bound to it.
    assert world.core.hosts[FIRST].poa.id == "ap-b1-1"
    assert binding(world) == (FIRST, "ap-b1-1")
    sa = world.core.mpa.aa.sas[result["sa"]]
    assert (sa.network, sa.state) == ("net-b1", "authorized")
    assert result["binding"]["care_of"] == FIRST
    # PANA went from the new address (its own sockets), the binding update
    # in-band from it too; nothing else in-band.  net-b1 is of another domain than mn1's home (mn1@domain-a):
    # it went to domain-a's net-a1 first, which the one controller of both
    # domains refused (it holds net-b1 as its own), then to net-b1's AR.
    assert sources.used == [FIRST, FIRST]
    assert result["binding"]["bound_at"] == "net-b1"
    assert run.node.counters["binding_home_refused"] == 1
    marks = [result[k] for k in ("ready_at", "link_down_at", "link_up_at", "attached_at",
                                 "authenticated_at", "bound_at")]
    assert marks == sorted(marks)
    assert result["bound_at"] - result["link_down_at"] >= FAST.minimum_s * 1e9
    assert result["dad"]["minimum_ms"] == FAST.minimum_s * 1000
    assert set(result["timings_ms"]) == {"link_wait", "auth", "dhcp", "dad", "ip", "announce",
                                         "bind"}
    assert result["timings_ms"]["dad"] >= FAST.minimum_s * 1000
    assert result["dhcp"] == {"transactions": 1, "sent": {"discover": 1, "request": 1},
                              "received": {"offer": 1, "ack": 1}, "declined": []}
    assert result["ignored"] == {} and all(s.closed for s in wire.sockets)


def test_in_band_it_authenticates_once_it_has_its_address(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path, channel="inband")
    result = go(run)
    assert result["attached_at"] <= result["authenticated_at"] <= result["bound_at"]
    # Discovery went from the old address before the move; from the new one
    # after it, on one socket, the exchange with the AA and what binding at
    # home needs (where the MN is now, an MPA-SA with a home network), then
    # the binding update, refused at the home domain's net-a1 (one
    # controller holds net-b1 as its own) and sent to net-b1's AR.
    assert sources.used[-3:] == [FIRST] * 3 and FIRST not in sources.used[:-3]
    assert binding(world) == (FIRST, "ap-b1-1")


def test_rfc_5227_timing_by_default(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path)
    result = go(run, ReactiveSettings())
    assert wire.frames("arp")[:3] == [("0.0.0.0", FIRST)] * 3
    assert result["dad"]["settings"]["probe_num"] == 3
    assert 4000 <= result["timings_ms"]["dad"] <= 7000
    assert result["bound_at"] - result["link_down_at"] > 4e9


def test_a_conflict_declines_the_address_and_dhcp_starts_again(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path)
    # Someone the controller does not know answers the first probe for FIRST
    # as the controller would for a host it knows there.
    squatted = packets.arp_reply(sender_mac="02:00:00:00:09:09", sender_ip=FIRST,
                                 target_mac=MN_MAC, target_ip=FIRST)
    wire.answer = lambda frame: [squatted] if frame == probe_frame(MN_MAC, FIRST) else []
    result = go(run)
    assert result["address"] == SECOND
    assert result["dhcp"]["declined"] == [FIRST]
    assert result["dad"]["conflicts"] == [{"address": FIRST, "kind": "in-use",
                                           "mac": "02:00:00:00:09:09", "after_probes": 1}]
    assert wire.frames("dhcp") == [dhcp.DISCOVER, dhcp.REQUEST, dhcp.DECLINE,
                                   dhcp.DISCOVER, dhcp.REQUEST]
    # RFC 2131's ten seconds before starting again.
    assert result["timings_ms"]["decline_wait"] == 10000
    # The CA heard the DECLINE: the lease is gone and the address not offered again.
    assert world.core.counters["lease_declined"] == 1
    assert FIRST not in [lease.address for lease in
                         world.core.mpa.ca.pools["net-b1"].leases.values()]
    assert binding(world) == (SECOND, "ap-b1-1")


def test_it_gives_up_at_the_last_conflict_it_allows(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path)

    def squat(frame):
        arp = packets.decode(frame).arp
        if arp is None or arp.src_ip != "0.0.0.0":
            return []
        return [probe_frame("02:00:00:00:09:09", arp.dst_ip)]   # probing for it too
    wire.answer = squat
    settings = ReactiveSettings(dad=DadSettings(**{**FAST.__dict__, "max_conflicts": 2}),
                                decline_wait_s=1)
    with pytest.raises(LinkError) as err:
        go(run, settings)
    assert err.value.code == "dad-conflict"
    assert f"({FIRST}, {SECOND})" in err.value.message
    assert wire.frames("dhcp").count(dhcp.DECLINE) == 2
    assert binding(world) is None and run.ip._run.batches == []


def test_bad_frames_on_the_wire_are_ignored_and_counted(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path)
    other = dhcp.build_request(dhcp.DISCOVER, chaddr="02:00:00:00:09:09", xid=7)
    someone_elses = dhcp.build_reply(dhcp.decode_request(other), message_type=dhcp.OFFER,
                                     server_ip=B1_ROUTER, server_mac=B1_MAC,
                                     yiaddr="10.2.1.150")
    not_dhcp = packets.udp_frame(src_mac=B1_MAC, dst_mac=MN_MAC, src_ip=B1_ROUTER,
                                 dst_ip=HOME, src_port=5001, dst_port=5001, payload=b"x")

    def noise(frame):
        """Before each answer: on the IPv4 socket, a reply cut short, a reply
        to someone else, a datagram that is no DHCP and a header cut short; on
        the ARP socket, ARP cut short and ARP of another protocol."""
        parsed = packets.decode(frame)
        if parsed.udp is not None:
            return [someone_elses[:-200], someone_elses, not_dhcp,
                    not_dhcp[:14] + b"\x45" + b"\x00" * 5]
        if parsed.arp is not None and parsed.arp.src_ip == "0.0.0.0":
            return [frame[:30], frame[:14] + b"\x00\x06" + frame[16:]]
        return []
    wire.answer = noise
    result = go(run)
    assert result["address"] == FIRST and binding(world) == (FIRST, "ap-b1-1")
    # Twice each: DISCOVER's and REQUEST's noise; each probe's.
    assert result["ignored"] == {"malformed": 2, "not_ours": 2, "other": 4,
                                 "arp_malformed": 4}


def test_without_the_switch_it_gives_up_having_asked_nothing(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path, down_at=None)
    with pytest.raises(LinkError) as err:
        go(run, link_timeout_s=0.5)
    assert err.value.code == "link-timeout"
    assert wire.sent == [] and world.core.mpa.aa.sas == {}
    assert all(s.closed for s in wire.sockets)


def test_without_a_dhcp_server_it_gives_up_at_its_timeout(world, tmp_path):
    run, wire, sources, sysfs = reactive(world, tmp_path)
    wire.to_controller = False
    settings = ReactiveSettings(DhcpSettings(timeout_s=20), FAST)
    with pytest.raises(LinkError) as err:
        go(run, settings)
    assert err.value.code == "dhcp-timeout"
    assert wire.frames("dhcp") == [dhcp.DISCOVER] * 3      # at 0, ~4 and ~12 s


# -- the command ----------------------------------------------------------------------------

FAST_OPTIONS = ["--probe-wait", "0.5", "--probe-num", "2", "--probe-min", "0.2", "--probe-max",
                "0.4", "--announce-wait", "0.5", "--announce-interval", "1"]


def cli(world, tmp_path, credentials, channel="rest"):
    run = HandoverCli(world, tmp_path, credentials, channel)
    wire = Wire(world)
    wire.advance = run.link.sleep
    run.system["packet_socket"] = wire
    return run, wire


def test_cli_reactive_prints_ready_then_its_report(world, tmp_path, credentials_file):
    run, wire = cli(world, tmp_path, credentials_file())
    rc, [ready], doc, err = run.events("reactive", "net-b1", "--wait-link", *FAST_OPTIONS)
    assert rc == 0, err
    assert ready["event"] == "ready" and ready["network"] == "net-b1"
    [result] = doc["results"]
    assert result["ok"] and result["address"] == FIRST and result["removed"] == [
        f"{MN_ADDRESS}/24"]
    assert result["dad"]["settings"] == {**FAST.__dict__, "max_conflicts": 10}
    assert binding(world) == (FIRST, "ap-b1-1")
    # The binding update, at home (refused: one controller for both domains)
    # then at net-b1.
    assert doc["counters"]["datagrams_sent"] == 2


def test_cli_reactive_human_line(world, tmp_path, credentials_file):
    run, wire = cli(world, tmp_path, credentials_file())
    rc, out, err = run("reactive", "net-b1", "--home", HOME, "--wait-link", *FAST_OPTIONS,
                       "--probe-num", "0", json_out=False)
    assert rc == 0, err
    lines = out.splitlines()
    assert json.loads(lines[0])["event"] == "ready"
    assert lines[1].startswith(f"net-b1: link down 20.0 ms; {FIRST}/24 by DHCP from "
                               f"{B1_ROUTER}, no DAD; authenticated by PANA, MPA-SA ")
    assert f"; router {B1_ROUTER}, {HOME} " \
           "bound to it, lifetime " in lines[1]
    assert lines[1].endswith(" ms after the link went down")


def test_cli_reactive_without_a_lease_exits_1(world, tmp_path, credentials_file):
    run, wire = cli(world, tmp_path, credentials_file())
    wire.to_controller = False
    rc, _, doc, err = run.events("reactive", "net-b1", "--wait-link", "--dhcp-timeout", "3",
                                 "--dhcp-retry", "1")
    assert rc == 1
    assert "mpa-mn: net-b1: dhcp-timeout: no DHCP lease within 3 s" in err
    assert doc["results"][0]["error"]["code"] == "dhcp-timeout"


@pytest.mark.parametrize("argv,message", [
    (["--probe-min", "3"], "the least wait between probes is at most the most"),
])
def test_cli_reactive_settings_that_do_not_fit_exit_2(world, tmp_path, credentials_file, argv,
                                                      message):
    run, wire = cli(world, tmp_path, credentials_file())
    rc, _, doc, err = run.events("reactive", "net-b1", "--wait-link", *argv)
    assert rc == 2 and message in err
    assert wire.sent == []


@pytest.mark.parametrize("argv", [["reactive"], ["reactive", "net-b1", "--probe-num", "-1"],
                                  ["reactive", "net-b1", "--probe-wait", "x"],
                                  ["reactive", "net-b1", "--announce-num", "0"],
                                  ["reactive", "net-b1", "--dhcp-retry", "0"],
                                  ["reactive", "net-b1", "net-a2"]])
def test_cli_reactive_usage_errors_exit_2(argv, capsys):
    from mpa_mn import cli as mn_cli
    assert mn_cli.main(argv) == 2
    assert "usage: mpa-mn" in capsys.readouterr().err


# -- one controller per domain --------------------------------------------------------------
# A handover without MPA (mpa_mn.reactive) with one controller per domain
# (support.mn_domains: topologies/inter_domain.yaml's two controllers, each on
# its own fake switches): into a network of another domain, the binding is
# kept by the MN's home domain (mpa_mn.home_binding, as for an MPA handover),
# the only controller that knows its home address; within the home domain it
# is kept by the target's AR, as before.
#
# The MN's packet sockets are on the target PoA's port: what it sends enters
# that switch of the target's domain, and what leaves that port comes back to
# the sockets of its ethertype.  A socket that finds nothing within its timeout
# moves every clock on by that much.  The MN authenticates over REST (its
# management link) or in-band from its new address at that port; its binding
# update goes in-band from its new address, to a home network's gateway across
# the border.

A2_FIRST = "10.1.2.100"       # the first address net-a2's CA gives
TABLE = ("ip", "mpa_binding")


class PortWire(Sockets):
    """Packet sockets on ``switch``:``port`` of ``domain``'s fake network."""

    def __init__(self, domains, domain: str, switch: str, port: int, clock: Clock):
        super().__init__()
        self.domains, self.rig = domains, domains.rigs[domain]
        self.at, self.clock = (switch, port), clock

    def send(self, frame: bytes) -> None:
        self.queue_out(self.rig.inject(*self.at, from_bytes(frame)))

    def idle(self, seconds: float) -> None:
        self.clock.now += seconds
        for rig in self.domains.rigs.values():
            rig.now += seconds
            outcome = rig.run(rig.core.tick(rig.now))
            if rig is self.rig:
                self.queue_out(outcome)

    def queue_out(self, outcome) -> None:
        """What left the network at the port."""
        self.queue([to_bytes(pkt) for switch, port, pkt in outcome.frames
                    if (switch, port) == self.at])


class MovedDomains(Domains):
    """mn1's world once its link is at ``here`` (domain, switch, port): a
    datagram from a new address of that domain to a gateway of that domain
    enters at that port; the rest as support.mn_domains routes it."""

    here = None

    def datagram(self, source, gateway, port, data):
        if self.here is None or source == OCOA or not (
                self.domain_of_address(source) == self.domain_of_address(gateway)
                == self.here[0]):
            return super().datagram(source, gateway, port, data)
        domain, switch, at = self.here
        rig = self.rigs[domain]
        network = rig.graph.network_of_address(gateway)
        outcome = rig.inject(switch, at, udp_packet(MN_MAC, network.gateway_mac, source,
                                                    gateway, SOURCE_PORT, port, data))
        return [(p["payload"], (p["ipv4_src"], p["udp_src"])) for sw, out, p in outcome.frames
                if (sw, out) == (switch, at) and p.get("ipv4_dst") == source
                and p.get("udp_dst") == SOURCE_PORT]


@pytest.fixture
def domains():
    return MovedDomains()


def moved(domains, domain, switch, port, channel="rest"):
    """mn1, holding its MPA-SA with net-a1 and its home address bound to its
    oCoA there, its link now at ``switch``:``port`` of ``domain``; a
    reactive run for it."""
    mn = domains.node(channel)
    mn.discover()                       # before the move, as reactive's candidate needs
    mn.bind_care_of("net-a1", HOME, OCOA)
    mn.counters.clear()
    domains.here = (domain, switch, port)
    clock = Clock()
    wire = PortWire(domains, domain, switch, port, clock)
    run = Reactive(mn, mn.vifs.ip, packet_socket=wire, clock=clock, sleep=wire.idle,
                   wall_ns=lambda: int(clock.now * 1e9), perf_ns=lambda: int(clock.now * 1e9),
                   entropy=counter_entropy(b"reactive"))
    return mn, run


def bindings(domains):
    """Each domain's binding of mn1's home address: (care-of, the network it names)."""
    return {domain: (lambda b: b and (b.care_of, b.network))(
        rig.core.mobility.bindings.get(HOME)) for domain, rig in domains.rigs.items()}


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_into_another_domain_it_binds_at_its_home_domain_and_rewrites(domains, channel):
    mn, run = moved(domains, "domain-b", "ap-b1", 2, channel)   # ap-b1-1, in net-b1
    before = mn.channel
    result = run.run("net-b1", HOME, [].append, "eth0", settings=ReactiveSettings(dad=FAST))
    assert result["address"] == FIRST and result["router"] == "10.2.1.1"
    # The MPA-SA of the move is domain-b's; the binding is domain-a's, under
    # the MPA-SA with net-a1 (the home network it holds one with).
    assert domains.rigs["domain-b"].core.mpa.aa.sas[result["sa"]].network == "net-b1"
    assert {k: v for k, v in result["binding"].items() if k != "lifetime"} == {
        "care_of": FIRST, "bound_at": "net-a1", "rewrite_at_mn": True,
        "correspondents": [CN], "rewrite_installed": True}
    assert bindings(domains) == {"domain-a": (FIRST, "net-b1"), "domain-b": None}
    assert domains.a.core.counters["binding_updated_abroad"] == 1
    # The MN restores its home address for cn1 itself: no switch of domain-a
    # sees the packets between the care-of and the MN.
    assert TABLE in mn.rewrites.nft._run.tables
    assert mn.state.rewrite["care_of"] == FIRST
    assert mn.counters["binding_at_home"] == 1
    assert "binding_home_refused" not in mn.counters
    # Its address is the new one; its channel is the one it came with.
    assert mn.address == FIRST and mn.channel is before


def test_within_its_home_domain_it_binds_at_the_target_as_before(domains):
    mn, run = moved(domains, "domain-a", "ar-a2", 3)          # ap-a2-1, in net-a2
    result = run.run("net-a2", HOME, [].append, "eth0", settings=ReactiveSettings(dad=FAST))
    assert result["address"] == A2_FIRST
    assert {k: v for k, v in result["binding"].items() if k != "lifetime"} == {
        "care_of": A2_FIRST, "bound_at": "net-a2"}
    assert bindings(domains) == {"domain-a": (A2_FIRST, "net-a2"), "domain-b": None}
    assert mn.counters["binding_at_home"] == 0
    assert mn.rewrites.nft._run.tables == {} and mn.state.rewrite is None


def test_arriving_in_a_home_network_it_drops_the_rewriting_left_from_abroad(domains):
    """The table a binding abroad left (a run before this one recorded it):
    net-a2's switches rewrite for the MN attached there."""
    mn, run = moved(domains, "domain-a", "ar-a2", 3)          # ap-a2-1, in net-a2
    left = Rewrite.of(HOME, FIRST, [CN])
    mn.rewrites.install(left)
    mn.state.rewrite = {**left.record(), "network": "net-a1"}
    result = run.run("net-a2", HOME, [].append, "eth0", settings=ReactiveSettings(dad=FAST))
    assert result["binding"]["bound_at"] == "net-a2" and result["binding"]["rewrite_removed"]
    assert mn.rewrites.nft._run.tables == {} and mn.state.rewrite is None
    assert mn.counters["binding_rewrite_removed"] == 1

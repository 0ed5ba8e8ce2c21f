"""The MN's end of an MN-terminated proactive handover tunnel (mpa_mn.vxlan_end,
the vif becoming a VXLAN device, and what MobileNode, the handover and the
CLI do with a VXLAN tunnel answer).

The answers come from the real controller core, which holds an MPLS tunnel;
:class:`Nar` turns its ``tunnel`` answers into VXLAN ones, signed again with
the SA's key, as the nAR's controller in another domain answers (RFC 6252
§7.4); the last test takes the real answer of domain-b's own controller
(topologies/inter_domain.yaml) across the border.  ``ip`` is mn_fakes'
FakeIp, which keeps devices, rules, tables and neighbour entries as the
kernel does.
"""

import json
import socket

import pytest

from mpa_mn import protocol, vxlan_end
from mpa_mn.handover import Handover, plan_attach
from mpa_mn.mobile_node import MobileNode
from mpa_mn.protocol import ProtocolError
from mpa_mn.state_file import Entry, StateError, StateFile
from mpa_mn.vif import Ip, VifError, Vifs
from mpa_mn.vxlan_end import VxlanEnd
from mpa_protocol import messages
from mpa_sdn.config import load_topology
from mpa_sdn.domain_view import foreign_switch, serve_domain
from mpa_sdn.store import MemoryStore
from mpa_protocol.pana import PANA_PORT
from support.fakeoftable import udp_packet
from support.handover_rig import PORT, WALL_OFFSET, settle_dad
from support.mn_fakes import CREDENTIALS, MN_ADDRESS, Clock, FakeIp, RestLayer
from support.mn_world import ATTACH_BATCH, B1_MAC, B1_ROUTER, HOME, NCOA, HandoverCli, node
from support.network_rig import Rig
from support.paths import ROOT
from support.service_rig import MN_MAC, counter_entropy

VIF = "mpa-net-b1"
TABLE = vxlan_end.table(VIF)
NAR, KEY = "10.2.0.1", 4242                  # the nAR's address, the tunnel's VNI
VXLAN = {"encapsulation": "vxlan", "key": KEY, "endpoint": NAR, "outer": MN_ADDRESS,
         "udp_port": 4789, "router_mac": B1_MAC}
END = VxlanEnd(KEY, NAR, MN_ADDRESS, 4789, B1_ROUTER, B1_MAC, MN_MAC)

# What a VXLAN answer makes of the nCoA's vif, in order, from nothing.
MADE = [["link", "add", VIF, "type", "vxlan", "id", str(KEY), "remote", NAR,
         "local", MN_ADDRESS, "dstport", "4789", "dev", "eth0"],
        ["link", "set", "dev", VIF, "address", MN_MAC],      # the MPA-SA's
        ["addr", "add", f"{NCOA}/32", "dev", VIF],
        ["link", "set", "dev", VIF, "up"],
        ["neigh", "replace", B1_ROUTER, "lladdr", B1_MAC, "dev", VIF, "nud", "permanent"],
        ["route", "replace", "default", "via", B1_ROUTER, "dev", VIF, "onlink",
         "table", str(TABLE)],
        ["rule", "add", "from", NCOA, "lookup", str(TABLE)]]
# And of a TUN device holding the nCoA.
TUN = [["tuntap", "add", "dev", VIF, "mode", "tun"],
       ["addr", "add", f"{NCOA}/32", "dev", VIF],
       ["link", "set", "dev", VIF, "up"]]


class Nar:
    """The core's ``tunnel`` answers as the nAR's controller in another domain
    gives them: ``fields`` in place of the ``poa`` (None: the core's own MPLS
    answer), signed again with the key of the SA ``keys(network)`` gives."""

    def __init__(self, keys=None, **changes):
        self.keys = keys
        self.fields = {**VXLAN, **changes}

    def __call__(self, body):
        answer = json.loads(body)
        if answer.get("type") != "tunnel" or self.fields is None:
            return body
        answer = {k: v for k, v in {**answer, "poa": None, **self.fields}.items()
                  if v is not None and k != "mac"}
        key = self.keys(answer["network"]).for_purpose(messages.PURPOSE["tunnel"])
        return messages.encode(messages.sign(answer, key))


def vxlan_node(world, channel="rest", **changes):
    """An MN whose tunnels are VXLAN ones, pre-authenticated with net-b1 and
    configured (the nCoA on a TUN device)."""
    nar = Nar(**changes)
    mn, sources = node(world, channel, tamper=nar)
    nar.keys = lambda network: mn.state.entries[network].sa.keys
    mn.discover()
    mn.preauthenticate("net-b1")
    mn.configure("net-b1")
    return mn, nar, mn.vifs.ip._run, sources


def routing(ip):
    """What the host routes for the nCoA's tunnel: the rules into its table,
    the table, and the neighbour entries on the vif."""
    return ([(r["src"], r["table"]) for r in ip.rules], ip.tables.get(TABLE, []),
            {k: v for k, v in ip.neighbours.items() if k[1] == VIF})


TUNNELLED = ([(NCOA, str(TABLE))],
             [{"dst": "default", "gateway": B1_ROUTER, "dev": VIF, "flags": ["onlink"]}],
             {(B1_ROUTER, VIF): (B1_MAC, "permanent")})
UNTUNNELLED = ([], [], {})


# -- the answer -----------------------------------------------------------------------------

def test_the_table_is_the_network_s_own_and_in_the_range_said():
    assert vxlan_end.TABLE_FIRST <= TABLE <= vxlan_end.TABLE_LAST
    assert (vxlan_end.TABLE_FIRST, vxlan_end.TABLE_LAST) == (268435456, 285212671)
    assert vxlan_end.table(VIF) == TABLE != vxlan_end.table("mpa-net-a2")


@pytest.mark.parametrize("answer,described", [
    ({"poa": "ap-a1-1"}, {"encapsulation": "mpls", "poa": "ap-a1-1"}),
    ({"encapsulation": "mpls", "poa": "ap-a1-1"}, {"encapsulation": "mpls", "poa": "ap-a1-1"}),
    (VXLAN, VXLAN),
])
def test_a_tunnel_answer_is_mpls_to_a_poa_or_vxlan_to_the_mn(answer, described):
    assert protocol.tunnel_described(answer, MN_ADDRESS) == described


@pytest.mark.parametrize("answer,code,says", [
    ({}, "malformed", "names no poa"),
    ({"encapsulation": "mpls"}, "malformed", "names no poa"),
    ({"poa": "ap-a1-1", "key": KEY}, "malformed", "MPLS tunnel answer has VXLAN fields (key)"),
    ({**VXLAN, "key": None, "router_mac": None}, "malformed", "has no key, router_mac"),
    ({**VXLAN, "poa": "ap-a1-1"}, "malformed", "names a poa"),
    ({**VXLAN, "outer": "10.1.1.11"}, "unexpected", "outer 10.1.1.11, not 10.1.1.10"),
])
def test_a_tunnel_answer_that_is_neither_or_both_is_refused(answer, code, says):
    answer = {k: v for k, v in answer.items() if v is not None}
    with pytest.raises(ProtocolError) as err:
        protocol.tunnel_described(answer, MN_ADDRESS)
    assert err.value.code == code and says in err.value.message


@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_every_tunnel_request_names_the_mn_s_current_address(world, channel):
    """``outer``: where a VXLAN tunnel would end; the MPLS answer changes nothing."""
    mn, nar, ip, sources = vxlan_node(world, channel)
    nar.fields = None
    ip.calls.clear()
    assert mn.tunnel("net-b1")["encapsulation"] == "mpls"
    assert mn.tunnel("net-b1", lifetime=30)["lifetime"] == 30
    if channel == "rest":
        sent = [data for path, data in mn.channel.opener.requests if path.endswith("/tunnel")]
    else:
        sent = [data for data, (_, port) in sources.gateways.sent if port != PANA_PORT]
    requests = [json.loads(data) for data in sent]
    requests = [r for r in requests if r["type"] == "tunnel-request"]
    assert [r["outer"] for r in requests] == [MN_ADDRESS, MN_ADDRESS]
    assert ip.changes() == [] and mn.state.entries["net-b1"].tunnel is None


# -- the vif becomes the tunnel's end --------------------------------------------------------

@pytest.mark.parametrize("channel", ["rest", "inband"])
def test_a_vxlan_answer_makes_the_ncoa_s_vif_the_tunnel_s_end(world, channel):
    mn, _, ip, _ = vxlan_node(world, channel)
    ip.calls.clear()
    assert mn.tunnel("net-b1", lifetime=30) == {
        "network": "net-b1", "address": NCOA, **VXLAN, "lifetime": 30, "interface": VIF}
    assert ip.changes() == [["link", "del", "dev", VIF], *MADE]    # the TUN device replaced
    assert ip.links[VIF]["kind"] == "vxlan" and ip.links[VIF]["mac"] == MN_MAC
    assert ip.links[VIF]["addrs"] == [(NCOA, 32)] and ip.links[VIF]["up"]
    assert routing(ip) == TUNNELLED
    held = mn.state.entries["net-b1"].tunnel
    assert held == {k: v for k, v in {**VXLAN, "address": NCOA, "lifetime": 30,
                                      "at": held["at"]}.items() if k != "encapsulation"}


def test_the_tunnel_s_end_is_made_once(world):
    """Asked again (a renewal), configured again, or ensured again: nothing changes."""
    mn, _, ip, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    ip.calls.clear()
    mn.tunnel("net-b1")
    assert mn.configure("net-b1")["interface"] == VIF
    assert Vifs(Ip(ip)).ensure("net-b1", NCOA, END) == (VIF, False)
    assert ip.changes() == [] and routing(ip) == TUNNELLED


def test_what_differs_is_put_right_and_nothing_else():
    ip = FakeIp()
    vifs = Vifs(Ip(ip))
    vifs.ensure("net-b1", NCOA, END)
    ip.rules.append({"priority": 100, "src": "10.2.1.99", "table": str(TABLE)})  # an old nCoA
    ip.tables[TABLE][0]["gateway"] = "10.2.1.254"
    del ip.neighbours[(B1_ROUTER, VIF)]
    ip.calls.clear()
    assert vifs.ensure("net-b1", NCOA, END) == (VIF, True)
    assert ip.changes() == [MADE[4], MADE[5], ["rule", "del", "priority", "100", "from",
                                               "10.2.1.99", "lookup", str(TABLE)]]
    assert routing(ip) == TUNNELLED


def test_a_tunnel_to_another_end_makes_the_device_again():
    """The VXLAN device's key and ends cannot be changed in place: the MN
    moved (another outer address) or the nAR gave another key."""
    ip = FakeIp()
    ip.links["eth0"]["addrs"].append(("10.1.2.10", 24))
    vifs = Vifs(Ip(ip))
    vifs.ensure("net-b1", NCOA, END)
    ip.calls.clear()
    moved = VxlanEnd(KEY + 1, NAR, "10.1.2.10", 4789, B1_ROUTER, B1_MAC, MN_MAC)
    assert vifs.ensure("net-b1", NCOA, moved) == (VIF, True)
    assert ip.changes()[:2] == [["link", "del", "dev", VIF], [
        "link", "add", VIF, "type", "vxlan", "id", str(KEY + 1), "remote", NAR, "local",
        "10.1.2.10", "dstport", "4789", "dev", "eth0"]]
    assert ip.links[VIF]["data"]["local"] == "10.1.2.10" and routing(ip) == TUNNELLED


def test_the_device_takes_the_mac_the_mn_pre_authenticated_with():
    """The nAR sends the inner frames to the MPA-SA's MAC, which need not be
    the physical interface's (mpa-mn --mac); a device up with another MAC is
    made again, as its MAC cannot change while it is up."""
    ip = FakeIp()
    vifs = Vifs(Ip(ip))
    vifs.ensure("net-b1", NCOA, END)
    other = VxlanEnd(KEY, NAR, MN_ADDRESS, 4789, B1_ROUTER, B1_MAC, "02:00:00:00:0b:0b")
    ip.calls.clear()
    assert vifs.ensure("net-b1", NCOA, other) == (VIF, True)
    assert ip.changes()[:3] == [["link", "del", "dev", VIF], MADE[0],
                                ["link", "set", "dev", VIF, "address", "02:00:00:00:0b:0b"]]
    assert ip.links[VIF]["mac"] == "02:00:00:00:0b:0b" and ip.links["eth0"]["mac"] == MN_MAC


def test_no_end_without_the_outer_address_and_nothing_else_is_ours():
    ip = FakeIp()
    with pytest.raises(VifError, match="no interface holds 10.1.9.9"):
        Vifs(Ip(ip)).ensure("net-b1", NCOA, VxlanEnd(KEY, NAR, "10.1.9.9", 4789, B1_ROUTER,
                                                     B1_MAC, MN_MAC))
    ip.links[VIF] = {"kind": "gre", "addrs": [], "up": True}
    with pytest.raises(VifError, match="neither a TUN nor a VXLAN device"):
        Vifs(Ip(ip)).ensure("net-b1", NCOA, END)
    assert ip.changes() == [] and ip.links[VIF]["kind"] == "gre"


# -- and back ----------------------------------------------------------------------------

def test_tun_then_vxlan_then_tun_again(world):
    """An MPLS answer after a VXLAN one: the nCoA back on a TUN device, the
    rule and the table gone; so too after tunnel-release."""
    mn, nar, ip, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    nar.fields = None
    ip.calls.clear()
    result = mn.tunnel("net-b1")
    assert (result["encapsulation"], "interface" in result) == ("mpls", False)
    assert ip.changes() == [["rule", "del", "priority", "32765", "from", NCOA, "lookup",
                             str(TABLE)], ["route", "flush", "table", str(TABLE)],
                            ["link", "del", "dev", VIF], *TUN]
    assert ip.links[VIF]["kind"] == "tun" and routing(ip) == UNTUNNELLED
    assert mn.state.entries["net-b1"].tunnel is None
    nar.fields = dict(VXLAN)
    mn.tunnel("net-b1")
    assert ip.links[VIF]["kind"] == "vxlan" and routing(ip) == TUNNELLED
    assert mn.untunnel("net-b1") == {"network": "net-b1"}
    assert ip.links[VIF]["kind"] == "tun" and ip.links[VIF]["addrs"] == [(NCOA, 32)]
    assert routing(ip) == UNTUNNELLED and mn.state.entries["net-b1"].tunnel is None
    assert world.tunnel() is None


def test_releasing_the_ncoa_takes_the_tunnel_s_end(world):
    mn, _, ip, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    mn.release("net-b1")
    assert VIF not in ip.links and routing(ip) == UNTUNNELLED
    assert mn.state.entries["net-b1"].tunnel is None
    mn.configure("net-b1")
    assert ip.links[VIF]["kind"] == "tun"


def test_a_new_ncoa_leaves_the_tunnel_of_the_old_one(world):
    mn, _, ip, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    mn.state.entries["net-b1"].tunnel["address"] = "10.2.1.99"   # held for an older nCoA
    mn.configure("net-b1")
    assert ip.links[VIF]["kind"] == "tun" and routing(ip) == UNTUNNELLED
    assert mn.state.entries["net-b1"].tunnel is None


@pytest.mark.parametrize("scope", ["lease", "all"])
def test_forgetting_the_ncoa_takes_the_tunnel_s_end(world, scope):
    mn, _, ip, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    assert mn.forget("net-b1", scope) is True
    assert VIF not in ip.links and routing(ip) == UNTUNNELLED
    assert mn.state.entries.get("net-b1") is None or \
        mn.state.entries["net-b1"].tunnel is None


def test_what_a_crash_left_is_removed_without_the_state():
    """The table is the network's own: its rules are found without the state
    file, with or without the device."""
    ip = FakeIp()
    vifs = Vifs(Ip(ip))
    vifs.ensure("net-b1", NCOA, END)
    Ip(ip)("link", "del", "dev", VIF)              # the device gone, its rule not
    assert routing(ip) == ([(NCOA, str(TABLE))], [], {})
    assert vifs.remove("net-b1") is True
    assert routing(ip) == UNTUNNELLED
    assert vifs.remove("net-b1") is False


# -- a refused answer changes nothing ----------------------------------------------------------

@pytest.mark.parametrize("changes,code", [
    ({"key": None}, "malformed"),
    ({"encapsulation": None}, "malformed"),        # VXLAN fields in an MPLS answer
    ({"poa": "ap-a1-1"}, "malformed"),
    ({"outer": "10.1.1.11"}, "unexpected"),
])
def test_a_malformed_tunnel_answer_is_refused_with_nothing_changed(world, changes, code):
    mn, nar, ip, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    before = (json.dumps(ip.links, sort_keys=True), routing(ip),
              dict(mn.state.entries["net-b1"].tunnel))
    ip.calls.clear()
    nar.fields.update(changes)
    if changes.get("encapsulation", 0) is None:      # an MPLS answer, with VXLAN fields
        nar.fields["poa"] = "ap-a1-1"
    with pytest.raises(ProtocolError) as err:
        mn.tunnel("net-b1")
    assert err.value.code == code
    assert mn.counters == {"tunnel_vxlan": 1, f"tunnel_refused_{code}": 1}
    assert ip.changes() == []
    assert (json.dumps(ip.links, sort_keys=True), routing(ip),
            mn.state.entries["net-b1"].tunnel) == before


def test_no_vif_reports_the_tunnel_and_changes_nothing(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    nar = Nar(keys=lambda network: state(tmp_path).entries[network].sa.keys)
    run.system["opener"] = RestLayer(world, tamper=nar)
    assert run("up", "net-b1", options=["--no-vif"])[0] == 0
    rc, doc, err = run("tunnel", "net-b1", options=["--no-vif"])
    assert rc == 0, err
    assert doc["results"] == [{"network": "net-b1", "ok": True, "address": NCOA, **VXLAN,
                               "lifetime": 120, "interface": None}]
    assert doc["counters"]["tunnel_vxlan"] == 1
    assert run.ip.changes() == []


# -- the handover: the tunnel ends when the MN arrives --------------------------------------

def state(tmp_path):
    return StateFile(str(tmp_path / "state.json")).load()


def test_the_mn_arriving_ends_its_end_of_the_tunnel(world, tmp_path, credentials_file):
    """Step 6: the rule goes in the attachment's one ip run, before the nCoA's
    packets would leave from the physical interface; the device and its table
    once arrived is answered."""
    run = HandoverCli(world, tmp_path, credentials_file())
    nar = Nar(keys=lambda network: state(tmp_path).entries[network].sa.keys)
    run.system["opener"] = RestLayer(world, tamper=nar)
    rc, [ready], doc, err = run.events("handover", "net-b1")
    assert rc == 0, err
    assert ready["tunnel"] == {**VXLAN, "lifetime": 120, "interface": VIF}
    assert run.ip.links[VIF]["kind"] == "vxlan" and routing(run.ip) == TUNNELLED
    assert state(tmp_path).entries["net-b1"].tunnel["key"] == KEY
    world.poa = "ap-b1-1"                         # the driver moved the link
    run.ip.calls.clear()
    rc, events, doc, err = run.events("attach", "net-b1")
    assert (rc, events) == (0, []), err
    assert run.ip.batches[-1] == (f"rule del priority 32765 from {NCOA} lookup {TABLE}\n"
                                  + ATTACH_BATCH)
    assert run.ip.calls[:3] == [["-j", "-d", "addr", "show"],
                                ["-j", "rule", "show", "table", str(TABLE)], ["-batch", "-"]]
    assert doc["results"][0]["vif_removed"] is True
    assert VIF not in run.ip.links and routing(run.ip) == UNTUNNELLED
    assert state(tmp_path).entries["net-b1"].tunnel is None


def test_attaching_plans_no_rule_to_delete_without_a_vxlan_end():
    ip = FakeIp()
    config = {"address": NCOA, "prefix_len": 24, "router": B1_ROUTER, "gateway_mac": B1_MAC}
    assert plan_attach(Ip(ip), "net-b1", config, "eth0").unsteer == ()
    Vifs(Ip(ip)).ensure("net-b1", NCOA, END)
    ip.calls.clear()
    plan = plan_attach(Ip(ip), "net-b1", config, "eth0")
    assert plan.commands()[0] == f"rule del priority 32765 from {NCOA} lookup {TABLE}"
    assert ip.changes() == []


def test_after_attaching_the_mn_asks_from_the_ncoa(world):
    """Its current address is the nCoA now: the next tunnel-request's outer."""
    mn, _ = node(world)
    ready = Handover(mn, mn.vifs.ip).prepare("net-b1", HOME)
    world.poa = "ap-b1-1"
    plan = plan_attach(mn.vifs.ip, "net-b1", mn.config("net-b1"), "eth0", MN_MAC)
    Handover(mn, mn.vifs.ip, raw_socket=world.raw_socket).attach(plan)
    assert (ready["address"], mn.address) == (NCOA, NCOA)


# -- what the MN remembers and says ----------------------------------------------------------

def test_the_state_file_keeps_the_tunnel_and_a_restart_keeps_its_end(world, tmp_path):
    mn, _, ip, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    path = StateFile(str(tmp_path / "mn.json"))
    path.save(mn.state)
    loaded = path.load()
    assert loaded.record() == mn.state.record()
    record = loaded.entries["net-b1"].record()
    assert Entry.from_record("net-b1", {k: v for k, v in record.items()
                                        if k != "tunnel"}).tunnel is None   # an older file
    mn.state = loaded
    ip.calls.clear()
    mn.configure("net-b1")
    assert ip.changes() == [] and routing(ip) == TUNNELLED


@pytest.mark.parametrize("bad", [{"key": 0}, {"endpoint": "nar"}, {"udp_port": "4789"},
                                 {"at": None}, {"extra": 1}])
def test_a_bad_tunnel_in_the_state_file_is_a_clear_error(world, tmp_path, bad):
    mn, _, _, _ = vxlan_node(world)
    mn.tunnel("net-b1")
    record = mn.state.record()
    record["networks"]["net-b1"]["tunnel"].update(bad)
    path = tmp_path / "mn.json"
    path.write_text(json.dumps(record))
    with pytest.raises(StateError, match="networks.net-b1: bad tunnel"):
        StateFile(str(path)).load()


def test_cli_tunnel_and_status_say_the_encapsulation(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    nar = Nar(keys=lambda network: state(tmp_path).entries[network].sa.keys)
    run.system["opener"] = RestLayer(world, tamper=nar)
    assert run("up", "net-b1")[0] == 0
    rc, out, err = run("tunnel", "net-b1", "--lifetime", "60", json_out=False)
    assert (rc, out) == (0, f"net-b1: VXLAN tunnel for {NCOA}, key {KEY}, from the nAR at "
                            f"{NAR} to {MN_ADDRESS} (UDP 4789), ended on {VIF}, lifetime "
                            "60 s\n"), err
    rc, doc, err = run("status")
    [network] = doc["networks"]
    assert network["tunnel"] == {**VXLAN, "address": NCOA, "lifetime": 60, "expires_in": 60}
    rc, out, err = run("status", json_out=False)
    assert out.endswith(f"; VXLAN tunnel, key {KEY}, from the nAR at {NAR} to {MN_ADDRESS} "
                        "(UDP 4789), ends in 60 s\n")
    rc, doc, err = run("untunnel", "net-b1")
    assert rc == 0 and run.ip.links[VIF]["kind"] == "tun"
    assert run("status")[1]["networks"][0]["tunnel"] is None


# -- against the real answer of another domain's controller ------------------------------------

OCOA = "10.1.1.50"                  # mn1's address in net-a1, domain-a
BORDER = ("core-b", 9)              # where domain-a's traffic enters domain-b
BORDER_ROUTER_MAC = "02:00:00:00:aa:01"


class AcrossTheBorder:
    """mn1's in-band channel from domain-a: each message a datagram routed over
    the border to net-b1's gateway, on domain-b's fake switches under domain-b's
    controller alone; the answer, as it leaves by the same border."""

    def __init__(self, rig):
        self.rig, self.counters = rig, {}

    def exchange(self, target, kind, data):
        network = self.rig.graph.network(target.network)
        pkt = udp_packet(BORDER_ROUTER_MAC, network.gateway_mac, OCOA, target.address,
                         40001, target.port, data)
        outcome = self.rig.inject(*BORDER, pkt)
        [answer] = [p for sw, peer, p in outcome.hops
                    if (sw, peer) == ("core-b", foreign_switch("domain-a"))]
        return answer["payload"]


class BorderSocket:
    """mn1's PANA socket in domain-a: each datagram routed over the border as
    the channel's are; what leaves by the border for it waits here.  Silence
    is ``clock`` moving on."""

    def __init__(self, rig, clock):
        self.rig, self.clock, self.queue, self.timeout = rig, clock, [], None

    def __call__(self, local):
        return self

    def sendto(self, data, address):
        network = self.rig.graph.network_of_address(address[0])
        pkt = udp_packet(BORDER_ROUTER_MAC, network.gateway_mac, OCOA, address[0], 40002,
                         address[1], data)
        outcome = self.rig.inject(*BORDER, pkt)
        self.queue += [(p["payload"], (p["ipv4_src"], p["udp_src"])) for sw, peer, p in
                       outcome.hops if (sw, peer) == ("core-b", foreign_switch("domain-a"))]

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        if not self.queue:
            self.clock.now += self.timeout
            raise socket.timeout()
        return self.queue.pop(0)

    def close(self):
        pass


def test_the_mn_ends_the_tunnel_another_domain_s_controller_gives_it():
    whole = load_topology(str(ROOT / "topologies" / "inter_domain.yaml"))
    rig = Rig(serve_domain(whole, "domain-b"), store=MemoryStore(), wall_offset=WALL_OFFSET,
              entropy=counter_entropy(b"core"))
    rig.connect_all()
    settle_dad(rig)
    ip = FakeIp()
    ip.links["eth0"]["addrs"] = [(OCOA, 24)]
    clock = Clock()
    mn = MobileNode(CREDENTIALS, MN_MAC, OCOA, AcrossTheBorder(rig), vifs=Vifs(Ip(ip)),
                    entropy=counter_entropy(b"mn"), pana_socket=BorderSocket(rig, clock),
                    clock=clock)
    b1 = rig.graph.network("net-b1")
    mn.preauthenticate("net-b1", {"network": "net-b1", "served_by": "domain-b",
                                  "aa": {"address": str(b1.gateway), "port": PORT}})
    ncoa = mn.configure("net-b1")["address"]
    ip.calls.clear()
    tunnel = mn.tunnel("net-b1")
    assert (tunnel["encapsulation"], tunnel["endpoint"], tunnel["outer"]) == (
        "vxlan", str(b1.gateway), OCOA)
    number = str(vxlan_end.table(VIF))
    assert ip.changes() == [
        ["link", "del", "dev", VIF],
        ["link", "add", VIF, "type", "vxlan", "id", str(tunnel["key"]), "remote",
         str(b1.gateway), "local", OCOA, "dstport", "4789", "dev", "eth0"],
        ["link", "set", "dev", VIF, "address", MN_MAC],
        ["addr", "add", f"{ncoa}/32", "dev", VIF], ["link", "set", "dev", VIF, "up"],
        ["neigh", "replace", str(b1.gateway), "lladdr", b1.gateway_mac, "dev", VIF, "nud",
         "permanent"],
        ["route", "replace", "default", "via", str(b1.gateway), "dev", VIF, "onlink",
         "table", number],
        ["rule", "add", "from", ncoa, "lookup", number]]
    assert mn.untunnel("net-b1") == {"network": "net-b1"}
    assert ip.links[VIF]["kind"] == "tun" and routing(ip) == UNTUNNELLED

"""Unit tests for the topology loader/validator (mpa_sdn.config).

No root, no network, no switches: every bad topology is built from the
shipped ``topologies/two_domains.yaml`` with exactly one defect, and the
tests check the key path the error is reported on plus a meaningful part of
its message.  The last section runs the ``mpa-controller`` CLI.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import ipaddress
import socket
import subprocess
import sys
from pathlib import Path
from types import MappingProxyType

import pytest
import yaml

from mpa_protocol.schema import MAX_FILE_BYTES, ConfigError
from mpa_sdn.config import load_or_exit, load_topology, load_topology_text, parse_topology
from mpa_sdn.topology import ControllerSettings, MpaSettings, Neighbour
from support.aaa import with_secret_files
from support.paths import ROOT as REPO

GOOD_FILE = REPO / "topologies" / "two_domains.yaml"
MPA_CONTROLLER = Path(sys.executable).parent / "mpa-controller"


# -- helpers ------------------------------------------------------------------

@functools.lru_cache(maxsize=1)
def _good_raw() -> dict:
    return yaml.safe_load(GOOD_FILE.read_text(encoding="utf-8"))


def good() -> dict:
    """A fresh, mutable copy of the shipped topology as plain YAML data."""
    return copy.deepcopy(_good_raw())


def _parent(raw, dotted: str):
    """The container holding the last element of ``dotted`` ("links.0", "a.b")."""
    *head, last = dotted.split(".")
    node = raw
    for key in head:
        node = node[int(key)] if isinstance(node, list) else node[key]
    return node, (int(last) if isinstance(node, list) else last)


def put(dotted: str, value):
    def mutate(raw):
        node, key = _parent(raw, dotted)
        node[key] = value
    return mutate


def drop(dotted: str):
    def mutate(raw):
        node, key = _parent(raw, dotted)
        del node[key]
    return mutate


def append(dotted: str, item):
    def mutate(raw):
        node, key = _parent(raw, dotted)
        node[key].append(item)
    return mutate


def rename(dotted: str, new_key: str):
    def mutate(raw):
        node, key = _parent(raw, dotted)
        node[new_key] = node.pop(key)
    return mutate


def errors_of(raw) -> list[tuple[str, str]]:
    with pytest.raises(ConfigError) as info:
        parse_topology(raw)
    assert info.value.errors, "ConfigError raised with no errors"
    return info.value.errors


def assert_error(errors: list[tuple[str, str]], path: str, fragment: str) -> None:
    """``(path, message)`` with ``fragment`` in the message is among ``errors``."""
    if not any(p == path and fragment in m for p, m in errors):
        listing = "\n".join(f"  {p!r}: {m}" for p, m in errors)
        pytest.fail(f"no error on {path!r} mentioning {fragment!r}; got:\n{listing}")


def text_error(text: str) -> str:
    """The single message of the ConfigError ``load_topology_text`` raises."""
    with pytest.raises(ConfigError) as info:
        load_topology_text(text)
    assert len(info.value.errors) == 1, info.value.errors
    path, message = info.value.errors[0]
    assert path == ""
    return message


def unresolved(topology):
    """``topology`` with every file path it resolves (MNs' credentials,
    RADIUS secrets) dropped."""
    def dropped(table):
        return {k: dataclasses.replace(v, credentials=None) for k, v in table.items()}

    def no_secrets(table):
        return {k: v if v.radius is None else dataclasses.replace(v, radius=dataclasses.replace(
            v.radius, servers=tuple(dataclasses.replace(s, secret_file="")
                                    for s in v.radius.servers))) for k, v in table.items()}
    return dataclasses.replace(topology, domains=no_secrets(topology.domains),
                               mobile_nodes=dropped(topology.mobile_nodes))


@pytest.fixture(scope="module")
def topo():
    return load_topology(str(GOOD_FILE))


# -- 1. the shipped topology --------------------------------------------------

def test_good_file_parses_the_same_from_dict_text_and_path(topo):
    from_dict = parse_topology(good())
    assert load_topology_text(GOOD_FILE.read_text(encoding="utf-8")) == from_dict
    # Only the path resolves files (secrets, credentials) against the topology's directory.
    assert unresolved(from_dict) == unresolved(topo)


def test_good_domains_and_switches(topo):
    assert set(topo.domains) == {"domain-a", "domain-b"}
    assert topo.domains["domain-a"].name == "Operator A"
    assert topo.domains["domain-b"].name == "Operator B"
    assert {s: sw.dpid for s, sw in topo.switches.items()} == {
        "core": 0x1, "cn-ar": 0x2, "ar-a1": 0x11, "ar-a2": 0x12, "ar-b1": 0x21, "ap-b1": 0x22}
    assert len(topo.links) == 6
    assert {(str(l.a), str(l.b)) for l in topo.links} >= {("core:1", "cn-ar:1"),
                                                          ("ar-b1:2", "ap-b1:1")}


def test_good_networks_roles_and_addresses(topo):
    assert set(topo.networks) == {"net-cn", "net-a1", "net-a2", "net-b1"}
    roles = {nid: n.role for nid, n in topo.networks.items()}
    assert roles == {"net-cn": "correspondent", "net-a1": "access",
                     "net-a2": "access", "net-b1": "access"}
    a1 = topo.networks["net-a1"]
    assert a1.prefix == ipaddress.IPv4Network("10.1.1.0/24")
    assert a1.gateway == ipaddress.IPv4Address("10.1.1.1")
    assert a1.access_router == "ar-a1"
    assert a1.domain == "domain-a" and a1.served_by == "domain-a"  # served_by defaults to domain
    assert topo.networks["net-b1"].domain == "domain-b"
    # Gateway MACs are generated: unicast, locally administered, distinct.
    macs = {n.gateway_mac for n in topo.networks.values()}
    assert len(macs) == 4
    assert all(int(m[:2], 16) & 0b11 == 0b10 for m in macs)


def test_good_pools(topo):
    assert topo.networks["net-cn"].pool is None
    for nid, third in (("net-a1", "1.1"), ("net-a2", "1.2"), ("net-b1", "2.1")):
        pool = topo.networks[nid].pool
        assert str(pool.first) == f"10.{third}.100"
        assert str(pool.last) == f"10.{third}.199"
        assert len(pool) == 100
        assert ipaddress.IPv4Address(f"10.{third}.150") in pool
        assert topo.networks[nid].gateway not in pool


def test_good_poas(topo):
    assert {p: (poa.network, poa.switch, poa.port) for p, poa in topo.poas.items()} == {
        "cn-port": ("net-cn", "cn-ar", 2),
        "ap-a1-1": ("net-a1", "ar-a1", 3),
        "ap-a1-2": ("net-a1", "ar-a1", 4),
        "ap-a2-1": ("net-a2", "ar-a2", 3),
        "ap-b1-1": ("net-b1", "ap-b1", 2),
        "ap-b1-2": ("net-b1", "ap-b1", 3),
    }
    assert [p.id for p in topo.networks["net-a1"].poas] == ["ap-a1-1", "ap-a1-2"]


def test_good_neighbours_are_bidirectional_by_default(topo):
    assert set(topo.neighbours) == {
        Neighbour("net-a1", "net-a2", 50.0), Neighbour("net-a2", "net-a1", 50.0),
        Neighbour("net-a2", "net-b1", 200.0), Neighbour("net-b1", "net-a2", 200.0),
        Neighbour("net-a1", "net-b1", 200.0), Neighbour("net-b1", "net-a1", 200.0),
    }
    assert len(topo.neighbours) == 6


def test_unidirectional_neighbour_gives_one_direction():
    raw = good()
    raw["neighbours"] = [{"from": "net-a1", "to": "net-a2", "bidirectional": False}]
    topo = parse_topology(raw)
    assert topo.neighbours == (Neighbour("net-a1", "net-a2", None),)


def test_good_correspondent_and_mobile_node(topo):
    assert set(topo.correspondents) == {"cn1"}
    cn1 = topo.correspondents["cn1"]
    assert cn1.address == ipaddress.IPv4Address("10.0.0.10")
    assert cn1.poa == "cn-port"
    assert cn1.mac == "02:00:00:00:0c:01"
    assert set(topo.mobile_nodes) == {"mn1"}
    mn1 = topo.mobile_nodes["mn1"]
    assert mn1.identity == "mn1@domain-a"
    assert mn1.attach == "ap-a1-1"
    assert mn1.mac == "02:00:00:00:01:01"


def test_controller_settings_are_read():
    values = dict(openflow_host="127.0.0.2", openflow_port=6633, rest_host="0.0.0.0",
                  rest_port=9090, host_idle_timeout_s=60, host_probe_s=0.5, max_hosts=50,
                  arp_resolve_interval_s=0.25, pending_per_address=2, pending_addresses=10,
                  pending_lifetime_s=5, reject_hold_s=30, packet_in_queue=77,
                  gc_every_events=20, gc_full_every_s=600,
                  state_write_records=500, state_write_delay_s=0.5, state_checkpoint_s=5,
                  rest_max_connections=500, rest_connections_per_source=20,
                  rest_header_timeout_s=2.5, rest_body_timeout_s=3, rest_idle_timeout_s=30,
                  rest_max_streams=40, rest_streams_per_token=4, rest_max_waiting=50,
                  rest_max_held=60, rest_held_per_source=6,
                  rest_tls_cert="rest.pem", rest_tls_key="rest-key.pem",
                  openflow_tls_cert="ofp.pem", openflow_tls_key="ofp-key.pem",
                  openflow_tls_ca="switch-ca.pem", api_tokens="tokens.yaml", radius_queue=64)
    raw = good()
    raw["controller"] = values
    settings = parse_topology(raw).controller
    assert settings == ControllerSettings(**values)
    assert settings.rest_tls and settings.openflow_tls
    assert set(values) == {f.name for f in dataclasses.fields(ControllerSettings)}, \
        "a key is untested"


def test_controller_section_is_optional():
    raw = good()
    del raw["controller"]
    settings = parse_topology(raw).controller
    assert settings == ControllerSettings()
    assert not settings.rest_tls and not settings.openflow_tls and settings.api_tokens is None


def test_mpa_section_is_optional_and_defaults(topo):
    assert topo.mpa == MpaSettings()
    raw = good()
    raw["mpa"] = None
    assert parse_topology(raw).mpa == MpaSettings()
    raw["mpa"] = {}
    assert parse_topology(raw).mpa == MpaSettings()


def test_mpa_settings_are_read():
    values = dict(signalling_port=9000, max_message_bytes=256, state_db=":memory:",
                  pana_session_s=5, max_pana_sessions=10, sa_lifetime_s=7200, sa_hold_s=60,
                  pana_sessions_per_source=3, pana_max_bytes=2048, held_per_mn=1,
                  radius_initial_rt_s=1, radius_max_rt_s=8, radius_max_count=2,
                  radius_max_duration_s=5, radius_max_outstanding=16, radius_dead_time_s=30,
                  replay_window=1024, retransmit_s=0.5, failures_per_identity=3,
                  failures_per_source=1, failure_window_s=30, lockout_s=120,
                  lease_time_s=60, offer_hold_s=10, dad_probes=3, dad_interval_s=0.01,
                  dad_wait_s=0.05, dad_reserve=0, dad_valid_s=1, dad_probes_per_tick=7,
                  dad_packet_outs_per_tick=70,
                  tunnel_lifetime_s=30,
                  max_tunnels_per_mn=2, max_tunnels=10, binding_lifetime_s=90,
                  switch_deadline_s=1.5, buffer_packets=100, buffer_bytes=65536,
                  buffer_time_s=2, flush_rate_pps=5000, flush_batch=8, copy_packets=64,
                  copy_time_s=0.5, copy_wait_s=0, copy_guard_s=0.01, bicast_period_s=0)
    raw = good()
    raw["mpa"] = values
    mpa = parse_topology(raw).mpa
    assert mpa == MpaSettings(**values)
    assert isinstance(mpa.pana_session_s, float) and isinstance(mpa.sa_lifetime_s, int)
    assert set(values) == {f.name for f in dataclasses.fields(MpaSettings)}, "a key is untested"


def test_dad_valid_must_outlast_the_probing():
    raw = good()
    raw["mpa"] = {"dad_probes": 3, "dad_interval_s": 1, "dad_wait_s": 1, "dad_valid_s": 3}
    assert_error(errors_of(raw), "mpa.dad_valid_s", "not longer than probing an address takes (3 s")
    raw["mpa"]["dad_valid_s"] = 3.5
    assert parse_topology(raw).mpa.dad_valid_s == 3.5


def test_an_invalid_dad_setting_is_not_reported_again_by_the_cross_check():
    raw = good()
    raw["mpa"] = {"dad_probes": 11, "dad_valid_s": 0.01}
    assert [p for p, _ in errors_of(raw)] == ["mpa.dad_probes"]


def test_network_dns_and_lease_time(topo):
    assert all(n.dns == () and n.lease_time_s is None for n in topo.networks.values())
    raw = good()
    raw["networks"]["net-a1"]["dns"] = ["10.0.0.53", "192.0.2.53"]
    raw["networks"]["net-a1"]["lease_time_s"] = 2**31 - 1
    raw["networks"]["net-a2"]["dns"] = []
    networks = parse_topology(raw).networks
    assert networks["net-a1"].dns == (ipaddress.IPv4Address("10.0.0.53"),
                                      ipaddress.IPv4Address("192.0.2.53"))
    assert networks["net-a1"].lease_time_s == 2**31 - 1
    assert networks["net-a2"].dns == () and networks["net-a2"].lease_time_s is None


def secret_files(domains) -> dict:
    return {did: [s.secret_file for s in d.radius.servers] for did, d in domains.items()}


def test_radius_secret_paths_stay_as_given_without_a_file():
    raw = good()
    raw["domains"]["domain-a"]["radius"] = {"servers": [
        {"address": "127.0.0.1", "secret_file": "secrets/a"},
        {"address": "127.0.0.2", "port": 11812, "secret_file": "/etc/mpa/a2"}]}
    domains = parse_topology(raw).domains
    assert secret_files(domains)["domain-a"] == ["secrets/a", "/etc/mpa/a2"]
    assert [s.port for s in domains["domain-a"].radius.servers] == [1812, 11812]
    del raw["domains"]["domain-a"]["radius"]
    assert parse_topology(raw).domains["domain-a"].radius is None


@pytest.mark.parametrize("load", [load_topology, load_or_exit], ids=["load_topology",
                                                                     "load_or_exit"])
def test_radius_secret_paths_are_resolved_against_the_topology_file(tmp_path, monkeypatch,
                                                                     load):
    raw = good()
    raw["domains"]["domain-a"]["radius"] = {"servers": [
        {"address": "127.0.0.1", "secret_file": "../keys/./a"}]}
    raw["domains"]["domain-b"]["radius"] = {"servers": [
        {"address": "127.0.0.1", "secret_file": "/etc/mpa/b"}]}
    (tmp_path / "lab").mkdir()
    (tmp_path / "lab" / "topo.yaml").write_text(yaml.safe_dump(raw), encoding="utf-8")
    monkeypatch.chdir(tmp_path / "lab")
    assert secret_files(load("topo.yaml").domains) == {
        "domain-a": [str(tmp_path / "keys" / "a")], "domain-b": ["/etc/mpa/b"]}


def test_shipped_radius_servers_are_each_domains_own(topo):
    files = secret_files(topo.domains)
    for did, domain in topo.domains.items():
        assert files[did] == [f"/run/mpa-lab/aaa/{did}/secret"]
    ports = {did: [s.port for s in d.radius.servers] for did, d in topo.domains.items()}
    assert ports == {"domain-a": [18121], "domain-b": [18122]}


def test_mac_is_normalised_to_lower_case():
    raw = good()
    raw["mobile_nodes"]["mn1"]["mac"] = "02:00:00:00:AB:CD"
    assert parse_topology(raw).mobile_nodes["mn1"].mac == "02:00:00:00:ab:cd"


@pytest.mark.parametrize("obj, attr, value", [
    (lambda t: t, "links", ()),
    (lambda t: t.controller, "rest_port", 1),
    (lambda t: t.networks["net-a1"], "gateway", ipaddress.IPv4Address("10.1.1.2")),
    (lambda t: t.networks["net-a1"].pool, "last", ipaddress.IPv4Address("10.1.1.250")),
    (lambda t: t.switches["core"], "dpid", 99),
    (lambda t: t.poas["ap-a1-1"], "port", 9),
    (lambda t: t.mobile_nodes["mn1"], "identity", "x@y"),
    (lambda t: t.correspondents["cn1"], "address", ipaddress.IPv4Address("10.0.0.11")),
    (lambda t: t.neighbours[0], "source", "net-b1"),
], ids=["topology", "controller", "network", "pool", "switch", "poa", "mobile_node",
        "correspondent", "neighbour"])
def test_objects_are_frozen(topo, obj, attr, value):
    target = obj(topo)
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(target, attr, value)


@pytest.mark.parametrize("name", ["domains", "switches", "networks", "correspondents",
                                  "mobile_nodes", "poas"])
def test_mapping_fields_are_read_only(topo, name):
    mapping = getattr(topo, name)
    assert isinstance(mapping, MappingProxyType)
    key = next(iter(mapping))
    with pytest.raises(TypeError):
        mapping[key] = None
    with pytest.raises(TypeError):
        del mapping[key]
    with pytest.raises(TypeError):
        mapping["new-id"] = None


def test_topology_does_not_share_state_with_the_input_dict():
    raw = good()
    topo = parse_topology(raw)
    raw["switches"]["core"]["dpid"] = 0x99
    raw["mobile_nodes"].clear()
    assert topo.switches["core"].dpid == 0x1
    assert set(topo.mobile_nodes) == {"mn1"}


# -- 2. one defect per file ---------------------------------------------------

ONE_DEFECT = [
    # top level
    pytest.param(put("colour", "blue"), "colour", "unknown key", id="unknown-top-level-key"),
    pytest.param(drop("networks"), "networks", "is required", id="missing-networks"),
    pytest.param(put("version", 2), "version", "not a supported version", id="version-2"),
    pytest.param(put("version", "1"), "version", "not a supported version",
                 id="version-string"),
    pytest.param(put("domains", {}), "domains", "at least one", id="no-domains"),
    pytest.param(put("networks", []), "networks", "must be a mapping", id="networks-list"),
    # ids
    pytest.param(rename("networks.net-b1", "1net"), "networks.1net", "must start with a letter",
                 id="network-id-starts-with-digit"),
    pytest.param(put("domains." + "d" * 33, {}), "domains." + "d" * 33, "at most 32",
                 id="domain-id-too-long"),
    # switches
    pytest.param(put("switches.core.dpid", "zz"), "switches.core.dpid", "not a datapath id",
                 id="dpid-not-hex"),
    pytest.param(put("switches.core.dpid", 0), "switches.core.dpid", "out of range",
                 id="dpid-zero"),
    pytest.param(put("switches.core.dpid", -5), "switches.core.dpid", "out of range",
                 id="dpid-negative"),
    pytest.param(put("switches.core.dpid", 1 << 64), "switches.core.dpid", "out of range",
                 id="dpid-too-big"),
    pytest.param(put("switches.core.dpid", True), "switches.core.dpid", "must be an integer",
                 id="dpid-bool"),
    pytest.param(put("switches.core.dpid", 1.5), "switches.core.dpid", "must be an integer",
                 id="dpid-float"),
    pytest.param(put("switches.ar-a2.dpid", 0x11), "switches.ar-a2.dpid",
                 "already the dpid of switch ar-a1", id="duplicate-dpid"),
    pytest.param(put("switches.ar-a2.dpid", "00:00:00:00:00:00:00:11"), "switches.ar-a2.dpid",
                 "already the dpid of switch ar-a1", id="duplicate-dpid-as-hex-string"),
    pytest.param(drop("switches.core.dpid"), "switches.core.dpid", "is required",
                 id="missing-dpid"),
    # networks
    pytest.param(put("networks.net-a1.vlan", 10), "networks.net-a1.vlan", "unknown key",
                 id="unknown-network-key"),
    pytest.param(drop("networks.net-a1.gateway"), "networks.net-a1.gateway", "is required",
                 id="missing-gateway"),
    pytest.param(put("networks.net-a1.role", "transit"), "networks.net-a1.role",
                 "must be one of access, correspondent", id="unknown-role"),
    pytest.param(put("networks.net-a1.domain", "domain-z"), "networks.net-a1.domain",
                 "unknown domain 'domain-z'", id="unknown-domain"),
    pytest.param(put("networks.net-a1.access_router", "ar-zz"), "networks.net-a1.access_router",
                 "unknown switch 'ar-zz'", id="unknown-access-router"),
    pytest.param(put("networks.net-a1.gateway", "10.9.9.9"), "networks.net-a1.gateway",
                 "not a host address of 10.1.1.0/24", id="gateway-outside-prefix"),
    pytest.param(put("networks.net-a1.gateway", "10.1.1.0"), "networks.net-a1.gateway",
                 "not a host address", id="gateway-is-network-address"),
    pytest.param(put("networks.net-a1.gateway", "10.1.1.255"), "networks.net-a1.gateway",
                 "not a host address", id="gateway-is-broadcast"),
    pytest.param(put("networks.net-a1.gateway", "10.1.1"), "networks.net-a1.gateway",
                 "not an IPv4 address", id="gateway-malformed"),
    pytest.param(put("networks.net-a1.prefix", "10.1.1.5/24"), "networks.net-a1.prefix",
                 "host bits set", id="prefix-not-strict"),
    pytest.param(put("networks.net-a1.prefix", "10.1.1.0/31"), "networks.net-a1.prefix",
                 "too small", id="prefix-too-small"),
    pytest.param(put("networks.net-a1.pool", "10.1.2.100-10.1.2.199"), "networks.net-a1.pool",
                 "not inside the host addresses of 10.1.1.0/24", id="pool-outside-prefix"),
    pytest.param(put("networks.net-a1.pool", "10.1.1.200-10.1.1.255"), "networks.net-a1.pool",
                 "not inside", id="pool-includes-broadcast"),
    pytest.param(put("networks.net-a1.pool", "10.1.1.1-10.1.1.50"), "networks.net-a1.pool",
                 "contains the gateway 10.1.1.1", id="pool-contains-gateway"),
    pytest.param(put("networks.net-a1.pool", "10.1.1.199-10.1.1.100"), "networks.net-a1.pool",
                 "below the first", id="pool-reversed"),
    pytest.param(put("networks.net-a1.pool", "10.1.1.100"), "networks.net-a1.pool",
                 "must be 'first-last'", id="pool-single-address"),
    pytest.param(drop("networks.net-a1.pool"), "networks.net-a1.pool",
                 "is required for an access network", id="access-network-without-pool"),
    pytest.param(put("networks.net-a2.prefix", "10.1.0.0/16"), "networks.net-a1.prefix",
                 "10.1.1.0/24 overlaps 10.1.0.0/16 of net-a2", id="overlapping-prefixes"),
    pytest.param(put("networks.net-a2.poas", {}), "networks.net-a2.poas",
                 "at least one point of attachment", id="network-without-poas"),
    # points of attachment
    pytest.param(put("networks.net-a1.poas.ap-a1-2", "nowhere:4"),
                 "networks.net-a1.poas.ap-a1-2", "unknown switch 'nowhere'",
                 id="poa-unknown-switch"),
    pytest.param(put("networks.net-a1.poas.ap-a1-2", "ar-a1:2"),
                 "networks.net-a1.poas.ap-a1-2", "port ar-a1:2 is already used by link 4",
                 id="poa-port-used-by-link"),
    pytest.param(put("networks.net-a1.poas.ap-a1-2", "ar-a1:3"),
                 "networks.net-a1.poas.ap-a1-2", "already used by PoA ap-a1-1",
                 id="two-poas-one-port"),
    pytest.param(put("networks.net-a1.poas.ap-a1-2", "ar-a1"),
                 "networks.net-a1.poas.ap-a1-2", "must be 'switch:port'", id="poa-malformed"),
    pytest.param(put("networks.net-a2.poas.ap-a1-1", "ar-a2:4"),
                 "networks.net-a2.poas.ap-a1-1", "already used in network net-a1",
                 id="poa-id-in-two-networks"),
    # links
    pytest.param(put("links.4", ["ar-a1:2", "ar-a1:5"]), "links[4]",
                 "two different switches", id="link-to-itself"),
    pytest.param(put("links.0", ["core", "cn-ar:1"]), "links[0][0]", "must be 'switch:port'",
                 id="link-end-without-port"),
    pytest.param(put("links.0", ["core:abc", "cn-ar:1"]), "links[0][0]", "must be a number",
                 id="link-end-port-not-a-number"),
    pytest.param(put("links.0", ["core:1", "cn-ar:0"]), "links[0][1]", "must be a number",
                 id="link-end-port-zero"),
    pytest.param(put("links.0", ["core:1"]), "links[0]", "must be a pair", id="link-not-a-pair"),
    pytest.param(put("links.0", ["core:1", "nowhere:1"]), "links[0]",
                 "unknown switch 'nowhere'", id="link-unknown-switch"),
    pytest.param(append("links", ["core:1", "ar-b1:9"]), "links[6]",
                 "port core:1 is already used by link 0", id="link-port-used-twice"),
    pytest.param(put("links", {"a": 1}), "links", "must be a list", id="links-not-a-list"),
    # neighbours
    pytest.param(put("neighbours.0.to", "net-zz"), "neighbours[0].to",
                 "unknown network 'net-zz'", id="neighbour-unknown-network"),
    pytest.param(put("neighbours.0.to", "net-cn"), "neighbours[0].to",
                 "net-cn is a correspondent network", id="neighbour-correspondent-network"),
    pytest.param(put("neighbours.0.to", "net-a1"), "neighbours[0]", "not its own neighbour",
                 id="self-neighbour"),
    pytest.param(append("neighbours", {"from": "net-a2", "to": "net-a1",
                                       "bidirectional": False}),
                 "neighbours[3]", "net-a2 -> net-a1 is given twice", id="duplicate-neighbour"),
    pytest.param(put("neighbours.0.bidirectional", "yes"), "neighbours[0].bidirectional",
                 "must be true or false", id="neighbour-bidirectional-not-bool"),
    pytest.param(put("neighbours.0.l2_handover_ms", -1), "neighbours[0].l2_handover_ms",
                 "out of range", id="neighbour-negative-handover-time"),
    pytest.param(drop("neighbours.0.to"), "neighbours[0].to", "is required",
                 id="neighbour-missing-to"),
    # hosts
    pytest.param(put("mobile_nodes.mn1.mac", "03:00:00:00:01:01"), "mobile_nodes.mn1.mac",
                 "multicast", id="mac-multicast"),
    pytest.param(put("mobile_nodes.mn1.mac", "02:00:00:00:01"), "mobile_nodes.mn1.mac",
                 "not a MAC address", id="mac-too-short"),
    pytest.param(put("mobile_nodes.mn1.mac", "02-00-00-00-01-01"), "mobile_nodes.mn1.mac",
                 "not a MAC address", id="mac-dashes"),
    pytest.param(put("correspondents.cn1.mac", "02:00:00:00:0g:01"), "correspondents.cn1.mac",
                 "not a MAC address", id="mac-not-hex"),
    pytest.param(put("mobile_nodes.mn1.mac", "02:00:00:00:0c:01"), "mobile_nodes.mn1.mac",
                 "already used by correspondent cn1", id="mac-shared-by-cn-and-mn"),
    pytest.param(put("mobile_nodes.mn1.mac", "02:00:00:00:0C:01"), "mobile_nodes.mn1.mac",
                 "already used by correspondent cn1", id="mac-shared-different-case"),
    pytest.param(put("networks.net-a2.gateway_mac", "02:00:00:00:01:01"), "mobile_nodes.mn1.mac",
                 "already used by network net-a2's gateway", id="mac-shared-with-gateway"),
    pytest.param(put("correspondents.cn1.address", "10.1.1.10"), "correspondents.cn1.address",
                 "not a host address of 10.0.0.0/24", id="cn-address-outside-network"),
    pytest.param(put("correspondents.cn1.address", "10.0.0.1"), "correspondents.cn1.address",
                 "is the gateway", id="cn-address-is-gateway"),
    pytest.param(put("correspondents.cn1.poa", "cn-nowhere"), "correspondents.cn1.poa",
                 "unknown PoA 'cn-nowhere'", id="cn-unknown-poa"),
    pytest.param(put("mobile_nodes.mn1.attach", "cn-port"), "mobile_nodes.mn1.attach",
                 "not in an access network", id="mn-on-correspondent-network"),
    pytest.param(put("mobile_nodes.mn2", {"mac": "02:00:00:00:01:02", "attach": "ap-a1-1"}),
                 "mobile_nodes.mn2.attach", "PoA ap-a1-1 already holds mn1",
                 id="two-hosts-on-one-poa"),
    pytest.param(put("correspondents.cn2", {"poa": "cn-port", "address": "10.0.0.11",
                                            "mac": "02:00:00:00:0c:02"}),
                 "correspondents.cn2.poa", "PoA cn-port already holds cn1",
                 id="two-correspondents-on-one-poa"),
    pytest.param(put("mobile_nodes.cn1", {"mac": "02:00:00:00:01:02", "attach": "ap-a2-1"}),
                 "mobile_nodes", "ids also used by correspondents", id="host-id-clash"),
    pytest.param(put("mobile_nodes.mn1.identity", "mn1"), "mobile_nodes.mn1.identity",
                 "network access identifier", id="nai-without-realm"),
    pytest.param(put("mobile_nodes.mn1.identity", "mn1@a@b"), "mobile_nodes.mn1.identity",
                 "network access identifier", id="nai-two-ats"),
    pytest.param(put("mobile_nodes.mn1.identity", "mn 1@domain-a"), "mobile_nodes.mn1.identity",
                 "network access identifier", id="nai-with-space"),
    pytest.param(drop("mobile_nodes.mn1.mac"), "mobile_nodes.mn1.mac", "is required",
                 id="mn-missing-mac"),
    # home addresses: never routed, so outside every network, and one MN's only
    *[pytest.param(put("mobile_nodes.mn1.home_address", value), "mobile_nodes.mn1.home_address",
                   fragment, id=f"home-address-{name}")
      for name, value, fragment in [
          ("in-an-access-network", "10.1.2.50", "10.1.2.50 is inside network net-a2"),
          ("in-the-correspondent-network", "10.0.0.10", "inside network net-cn"),
          ("a-gateway", "10.1.1.1", "inside network net-a1"),
          ("not-an-address", "10.255.0.300", "is not an IPv4 address"),
          ("a-name", "home", "is not an IPv4 address"),
          ("a-prefix", "10.255.0.0/24", "is not an IPv4 address"),
          ("an-integer", 167772161, "must be an IPv4 address as a string"),
          ("multicast", "224.0.0.5", "cannot be a home address"),
          ("unspecified", "0.0.0.0", "cannot be a home address"),
          ("loopback", "127.0.0.1", "cannot be a home address"),
      ]],
    pytest.param(put("mobile_nodes.mn2", {"mac": "02:00:00:00:01:02", "attach": "ap-a2-1",
                                          "identity": "mn2@domain-a",
                                          "home_address": "10.255.0.1"}),
                 "mobile_nodes.mn2.home_address", "10.255.0.1 is already mn1's home address",
                 id="home-address-of-two-mns"),
    # controller settings
    pytest.param(put("controller.rest_port", 70000), "controller.rest_port",
                 "out of range 1..65535", id="rest-port-70000"),
    pytest.param(put("controller.openflow_port", 0), "controller.openflow_port",
                 "out of range", id="openflow-port-0"),
    pytest.param(put("controller.rest_port", "8080"), "controller.rest_port",
                 "must be an integer", id="rest-port-string"),
    pytest.param(put("controller.rest_host", "localhost"), "controller.rest_host",
                 "not an IP address", id="rest-host-not-ip"),
    pytest.param(put("controller.host_idle_timeout_s", -1), "controller.host_idle_timeout_s",
                 "out of range", id="idle-timeout-negative"),
    pytest.param(put("controller.arp_resolve_interval_s", 0), "controller.arp_resolve_interval_s",
                 "out of range", id="arp-interval-zero"),
    pytest.param(put("controller.colour", "blue"), "controller.colour", "unknown key",
                 id="unknown-controller-key"),
    *[pytest.param(put(f"controller.{key}", value), f"controller.{key}", "out of range",
                   id=f"controller-{key}-{value!r}")
      for key, value in [("host_probe_s", 0.05), ("max_hosts", 0), ("pending_per_address", -1),
                         ("pending_addresses", 100_001), ("pending_lifetime_s", 61),
                         ("reject_hold_s", 0), ("packet_in_queue", 0)]],
    # mpa settings
    *[pytest.param(put("mpa", {key: value}), f"mpa.{key}", fragment, id=f"mpa-{key}-{value!r}")
      for key, value, fragment in [
          ("signalling_port", 0, "out of range 1..65535"),
          ("signalling_port", 65536, "out of range 1..65535"),
          ("signalling_port", "7664", "must be an integer"),
          ("max_message_bytes", 255, "out of range 256..9000"),
          ("max_message_bytes", 9001, "out of range 256..9000"),
          ("state_db", "", "not a usable file path"),
          ("state_db", " ", "not a usable file path"),
          ("state_db", "a\0b", "not a usable file path"),
          ("state_db", 5, "must be a file path as a string"),
          ("pana_session_s", 0, "out of range 1..3600"),
          ("pana_session_s", 0.5, "out of range"),
          ("pana_session_s", 3601, "out of range"),
          ("pana_session_s", "10", "must be a number"),
          ("max_pana_sessions", 0, "out of range 1.."),
          ("pana_sessions_per_source", 0, "out of range 1.."),
          ("pana_max_bytes", 1023, "out of range 1024..65535"),
          ("pana_max_bytes", 65536, "out of range"),
          ("radius_max_count", 21, "out of range 0..20"),
          ("radius_max_outstanding", 0, "out of range 1..256"),
          ("radius_initial_rt_s", 0, "out of range"),
          ("sa_lifetime_s", 0, "out of range 1..31536000"),
          ("sa_lifetime_s", 31536001, "out of range"),
          ("sa_lifetime_s", 1.5, "must be an integer"),
          ("sa_hold_s", 0, "out of range 1..31536000"),
          ("sa_hold_s", True, "must be an integer"),
          ("replay_window", 0, "out of range 1..1024"),
          ("replay_window", 1025, "out of range 1..1024"),
          ("retransmit_s", 0, "out of range"),
          ("failures_per_identity", 0, "out of range 1.."),
          ("failures_per_source", 0, "out of range 1.."),
          ("failure_window_s", 0, "out of range 0.01..86400"),
          ("failure_window_s", 86401, "out of range"),
          ("lockout_s", -1, "out of range"),
          ("lease_time_s", 59, "out of range 60..2147483647"),
          ("lease_time_s", 2**31, "out of range"),
          ("offer_hold_s", 0, "out of range"),
          ("dad_probes", 0, "out of range 1..10"),
          ("dad_probes", 11, "out of range 1..10"),
          ("dad_interval_s", 0.001, "out of range 0.01..10"),
          ("dad_interval_s", 11, "out of range"),
          ("dad_wait_s", 0, "out of range 0.01..10"),
          ("dad_reserve", -1, "out of range 0..1000"),
          ("dad_reserve", 1001, "out of range 0..1000"),
          ("dad_valid_s", 0, "out of range"),
          ("tunnel_lifetime_s", 0, "out of range 1..86400"),
          ("max_tunnels_per_mn", 65, "out of range 1..64"),
          ("max_tunnels", 0, "out of range"),
          ("binding_lifetime_s", 1.5, "must be an integer"),
          ("switch_deadline_s", 0.01, "out of range 0.05..3600"),
          ("buffer_packets", -1, "out of range 0.."),
          ("buffer_bytes", 2**32 + 1, "out of range"),
          ("buffer_time_s", 0, "out of range"),
          ("flush_rate_pps", 0, "out of range 1.."),
          ("flush_batch", 10001, "out of range 1..10000"),
          ("copy_packets", 0, "out of range 1..1000000"),
          ("copy_time_s", 0, "out of range 0.01..3600"),
          ("copy_wait_s", -1, "out of range 0..60"),
          ("copy_guard_s", 61, "out of range 0..60"),
          ("bicast_period_s", 3601, "out of range 0..3600"),
          ("colour", "blue", "unknown key"),
      ]],
    pytest.param(put("mpa", [1]), "mpa", "must be a mapping", id="mpa-list"),
    # network dns and lease time
    pytest.param(put("networks.net-a1.dns", "10.0.0.53"), "networks.net-a1.dns",
                 "must be a list of IPv4 addresses", id="dns-not-a-list"),
    pytest.param(put("networks.net-a1.dns", [f"10.0.0.{i}" for i in range(50, 55)]),
                 "networks.net-a1.dns", "at most 4 servers, not 5", id="dns-five-servers"),
    pytest.param(put("networks.net-a1.dns", ["10.0.0.53", "dns.example"]),
                 "networks.net-a1.dns[1]", "not an IPv4 address", id="dns-name"),
    pytest.param(put("networks.net-a1.dns", [53]), "networks.net-a1.dns[0]",
                 "must be an IPv4 address as a string", id="dns-integer"),
    pytest.param(put("networks.net-a1.dns", ["224.0.0.251"]), "networks.net-a1.dns[0]",
                 "not a unicast address", id="dns-multicast"),
    pytest.param(put("networks.net-a1.dns", ["0.0.0.0"]), "networks.net-a1.dns[0]",
                 "not a unicast address", id="dns-unspecified"),
    pytest.param(put("networks.net-a1.dns", ["127.0.0.53"]), "networks.net-a1.dns[0]",
                 "not a unicast address", id="dns-loopback"),
    pytest.param(put("networks.net-a1.dns", ["255.255.255.255"]), "networks.net-a1.dns[0]",
                 "not a unicast address", id="dns-broadcast"),
    pytest.param(put("networks.net-a1.dns", ["10.0.0.53", "10.0.0.53"]),
                 "networks.net-a1.dns[1]", "10.0.0.53 is given twice", id="dns-twice"),
    pytest.param(put("networks.net-a1.lease_time_s", 59), "networks.net-a1.lease_time_s",
                 "out of range 60..2147483647", id="lease-time-too-short"),
    pytest.param(put("networks.net-a1.lease_time_s", 2**31), "networks.net-a1.lease_time_s",
                 "out of range", id="lease-time-too-long"),
    pytest.param(put("networks.net-a1.lease_time_s", "3600"), "networks.net-a1.lease_time_s",
                 "must be an integer", id="lease-time-string"),
    # domains' RADIUS servers (their secrets in files)
    pytest.param(put("domains.domain-a.radius.servers", [{"address": "127.0.0.1",
                                                          "secret_file": 5}]),
                 "domains.domain-a.radius.servers[0].secret_file",
                 "must be a file path as a string", id="secret-file-integer"),
    pytest.param(put("domains.domain-a.radius.servers", [{"address": "127.0.0.1",
                                                          "secret_file": ""}]),
                 "domains.domain-a.radius.servers[0].secret_file",
                 "not a usable file path", id="secret-file-empty"),
    pytest.param(put("domains.domain-a.radius.servers", [{"address": "127.0.0.1"}]),
                 "domains.domain-a.radius.servers[0].secret_file", "is required",
                 id="secret-file-missing"),
    pytest.param(put("domains.domain-a.radius.servers", []), "domains.domain-a.radius.servers",
                 "must be a list of 1 to 8 servers", id="no-servers"),
    pytest.param(put("domains.domain-a.radius.servers", [{"address": "radius.example",
                                                          "secret_file": "s"}]),
                 "domains.domain-a.radius.servers[0].address", "IPv4",
                 id="server-not-an-address"),
    pytest.param(put("domains.domain-a.radius.secret", "s3cr3t"), "domains.domain-a.radius.secret",
                 "unknown key", id="secret-in-the-topology"),
    pytest.param(put("domains.domain-a.credentials", "a.yaml"), "domains.domain-a.credentials",
                 "unknown key (allowed: controller, name, radius)", id="credentials-are-gone"),
    # connectivity (checked once everything else is valid)
    pytest.param(put("switches.lonely", {"dpid": 0x99}), "links", "lonely",
                 id="switch-without-links"),
    pytest.param(drop("links.5"), "links", "not all connected", id="disconnected-island"),
]


@pytest.mark.parametrize("via", ["dict", "text"])
@pytest.mark.parametrize("mutate, path, fragment", ONE_DEFECT)
def test_one_defect(mutate, path, fragment, via):
    raw = good()
    mutate(raw)
    if via == "dict":
        errors = errors_of(raw)
    else:
        with pytest.raises(ConfigError) as info:
            load_topology_text(yaml.safe_dump(raw))
        errors = info.value.errors
    assert_error(errors, path, fragment)


def test_every_error_line_is_path_colon_message():
    raw = good()
    put("networks.net-a1.gateway", "10.9.9.9")(raw)
    with pytest.raises(ConfigError) as info:
        parse_topology(raw)
    exc = info.value
    assert exc.lines() == [f"{p}: {m}" for p, m in exc.errors]
    assert str(exc) == "\n".join(exc.lines())
    assert "networks.net-a1.gateway: 10.9.9.9 is not a host address of 10.1.1.0/24" in exc.lines()


def test_disconnected_switches_name_the_islands():
    raw = good()
    del raw["links"][5]  # ar-b1:2 -- ap-b1:1, the only link of ap-b1
    assert errors_of(raw) == [
        ("links", "the switches are not all connected: "
                  "ap-b1; ar-a1, ar-a2, ar-b1, cn-ar, core")]


# -- 3. several errors at once ------------------------------------------------

def test_several_errors_are_all_reported():
    raw = good()
    raw["controller"]["rest_port"] = 70000
    raw["switches"]["ar-a2"]["dpid"] = 0
    raw["networks"]["net-b1"]["gateway"] = "10.9.9.9"
    raw["neighbours"][1]["l2_handover_ms"] = -1
    raw["correspondents"]["cn1"]["mac"] = "01:00:5e:00:00:01"
    raw["mobile_nodes"]["mn1"]["identity"] = "no-realm"
    errors = errors_of(raw)
    assert_error(errors, "controller.rest_port", "out of range")
    assert_error(errors, "switches.ar-a2.dpid", "out of range")
    assert_error(errors, "networks.net-b1.gateway", "not a host address")
    assert_error(errors, "neighbours[1].l2_handover_ms", "out of range")
    assert_error(errors, "correspondents.cn1.mac", "multicast")
    assert_error(errors, "mobile_nodes.mn1.identity", "network access identifier")


def test_several_errors_in_one_network_are_all_reported():
    raw = good()
    net = raw["networks"]["net-a1"]
    net["gateway"] = "10.9.9.9"
    net["pool"] = "10.1.1.199-10.1.1.100"
    net["access_router"] = "ar-zz"
    net["poas"]["ap-a1-2"] = "ar-a1:2"
    errors = errors_of(raw)
    assert_error(errors, "networks.net-a1.gateway", "not a host address")
    assert_error(errors, "networks.net-a1.pool", "below the first")
    assert_error(errors, "networks.net-a1.access_router", "unknown switch")
    assert_error(errors, "networks.net-a1.poas.ap-a1-2", "already used by link")


# -- the lab's interface names ------------------------------------------------------
# Mininet names interfaces <node>-eth<n>; Linux takes at most 15 bytes.

def rename_switch(raw: dict, old: str, new: str) -> dict:
    """``raw`` with switch ``old`` called ``new`` in every place that names it."""
    raw["switches"][new] = raw["switches"].pop(old)

    def end(value: str) -> str:
        switch, port = value.split(":")
        return f"{new if switch == old else switch}:{port}"
    raw["links"] = [[end(a), end(b)] for a, b in raw["links"]]
    for network in raw["networks"].values():
        if network["access_router"] == old:
            network["access_router"] = new
        network["poas"] = {pid: end(port) for pid, port in network["poas"].items()}
    return raw


def rename_mn(raw: dict, new: str) -> dict:
    raw["mobile_nodes"] = {new: raw["mobile_nodes"].pop("mn1")}
    return raw


def test_a_switch_id_too_long_for_its_ports_names_is_refused_at_each_port():
    raw = rename_switch(good(), "ar-a1", "access-router-a1")
    limit = "; Linux takes at most 15"
    assert errors_of(raw) == [
        ("links[1][1]", "the lab would name an interface access-router-a1-eth1 (21 bytes)" + limit),
        ("links[4][0]", "the lab would name an interface access-router-a1-eth2 (21 bytes)" + limit),
        ("networks.net-a1.poas.ap-a1-1",
         "the lab would name an interface access-router-a1-eth3 (21 bytes)" + limit),
        ("networks.net-a1.poas.ap-a1-2",
         "the lab would name an interface access-router-a1-eth4 (21 bytes)" + limit)]


@pytest.mark.parametrize("mutate, path, name", [
    (put("links.0.0", "core:1000000000"), "links[0][0]", "core-eth1000000000"),
    (put("networks.net-b1.poas.ap-b1-2", "ap-b1:10000000"), "networks.net-b1.poas.ap-b1-2",
     "ap-b1-eth10000000"),
    (lambda raw: rename_mn(raw, "mobile-node"), "mobile_nodes.mobile-node", "mobile-node-eth0"),
    (rename("correspondents.cn1", "correspondent1"), "correspondents.correspondent1",
     "correspondent1-eth0"),
], ids=["link-port-number", "poa-port-number", "mobile-node-id", "correspondent-id"])
def test_an_interface_name_over_15_bytes_is_refused_with_its_key_path(mutate, path, name):
    raw = good()
    mutate(raw)
    errors = errors_of(raw)
    assert errors[0] == (path, f"the lab would name an interface {name} "
                               f"({len(name.encode())} bytes); Linux takes at most 15")


def test_interface_names_of_15_bytes_are_fine():
    raw = rename_switch(good(), "ar-a2", "ar-a2-abcd")  # ar-a2-abcd-eth3
    rename_mn(raw, "mobile-n10")  # mobile-n10-eth0 and, a second interface, mobile-n10-eth1
    topology = parse_topology(raw)
    assert "ar-a2-abcd" in topology.switches and "mobile-n10" in topology.mobile_nodes


def test_interface_names_are_built_in_one_place():
    """The lab, the generator and the check share mpa_sdn.interface_names: no
    second copy of Mininet's naming rule to drift apart."""
    copies = [path.name for path in sorted((REPO / "mpa_lab").rglob("*.py"))
              if "-eth" in path.read_text(encoding="utf-8")]
    assert copies == []


# -- 4. raw text and files ----------------------------------------------------

def test_not_yaml_names_the_line():
    message = text_error("version: 1\ndomains:\n  a: b: c\n")
    assert "not valid YAML" in message
    assert "line 3" in message


def test_yaml_error_names_the_file(tmp_path):
    bad = tmp_path / "broken.yaml"
    bad.write_text("version: 1\nswitches: [core,\n", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_topology(str(bad))
    (path, message), = info.value.errors
    assert path == ""
    assert str(bad) in message and "not valid YAML" in message and "line " in message


def test_duplicate_key_is_rejected_not_last_wins():
    text = GOOD_FILE.read_text(encoding="utf-8")
    assert "  cn-ar: {dpid: 0x2}\n" in text
    text = text.replace("  cn-ar: {dpid: 0x2}\n", "  core: {dpid: 0x2}\n")
    line = text.splitlines().index("  core: {dpid: 0x2}") + 1
    message = text_error(text)
    assert "duplicate key 'core'" in message
    assert f"line {line}" in message


def test_duplicate_key_in_flow_mapping_is_rejected():
    text = GOOD_FILE.read_text(encoding="utf-8").replace(
        "core:  {dpid: 0x1}", "core:  {dpid: 0x1, dpid: 0x7}")
    assert "duplicate key 'dpid'" in text_error(text)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"],
                         ids=["nothing", "blank-lines", "comment", "document-marker", "null"])
def test_empty_file(text):
    assert text_error(text) == "the file is empty"


@pytest.mark.parametrize("text, kind", [("- a\n- b\n", "a list"), ("hello\n", "a string"),
                                        ("42\n", "an integer")], ids=["list", "string", "integer"])
def test_top_level_must_be_a_mapping(text, kind):
    assert text_error(text) == f"must be a mapping, not {kind}"


def test_python_tags_are_refused():
    message = text_error("!!python/object/apply:os.system ['true']\n")
    assert "not valid YAML" in message


def test_missing_file(tmp_path):
    missing = tmp_path / "nope.yaml"
    with pytest.raises(ConfigError) as info:
        load_topology(str(missing))
    (path, message), = info.value.errors
    assert path == ""
    assert str(missing) in message and "cannot read" in message


def test_directory_instead_of_file(tmp_path):
    with pytest.raises(ConfigError) as info:
        load_topology(str(tmp_path))
    assert "cannot read" in info.value.errors[0][1]


def test_non_utf8_file(tmp_path):
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes(GOOD_FILE.read_bytes() + "# caf\u00e9\n".encode("latin-1"))
    with pytest.raises(ConfigError) as info:
        load_topology(str(bad))
    assert info.value.errors == [("", f"{bad}: not UTF-8 text")]


def test_file_bigger_than_the_limit(tmp_path):
    big = tmp_path / "big.yaml"
    data = GOOD_FILE.read_bytes()
    big.write_bytes(data + b"#" * (MAX_FILE_BYTES + 1 - len(data)))
    assert big.stat().st_size == MAX_FILE_BYTES + 1
    with pytest.raises(ConfigError) as info:
        load_topology(str(big))
    assert info.value.errors == [("", f"{big}: larger than {MAX_FILE_BYTES} bytes")]


def test_utf8_file_with_comment_loads(tmp_path):
    fine = tmp_path / "utf8.yaml"
    fine.write_bytes(GOOD_FILE.read_bytes() + "# caf\u00e9\n".encode("utf-8"))
    assert unresolved(load_topology(str(fine))) == unresolved(load_topology(str(GOOD_FILE)))


# -- edge cases of scalars and keys --------------------------------------------

def test_unhashable_mapping_key_is_a_config_error():
    assert "not valid YAML" in text_error("{[a, b]: 1}\n")


@pytest.mark.parametrize("version", [True, 1.0])
def test_version_must_be_the_integer_1(version):
    raw = good()
    raw["version"] = version
    assert_error(errors_of(raw), "version", "not a supported version")


@pytest.mark.parametrize("mutate, path", [
    # An unused MAC: the newline alone must be what is wrong.
    (put("mobile_nodes.mn1.mac", "02:00:00:00:0a:01\n"), "mobile_nodes.mn1.mac"),
    (put("mobile_nodes.mn1.identity", "mn1@domain-a\n"), "mobile_nodes.mn1.identity"),
    (put("domains.domain-c\n", {}), "domains.domain-c\n"),
], ids=["mac", "nai", "id"])
def test_trailing_newline_is_rejected(mutate, path):
    raw = good()
    mutate(raw)
    assert [p for p, _ in errors_of(raw)] == [path]


def test_an_invalid_network_is_not_reported_again_where_it_is_referenced():
    raw = good()
    raw["networks"]["net-a1"]["gateway"] = "10.9.9.9"
    assert [p for p, _ in errors_of(raw)] == ["networks.net-a1.gateway"]


def test_an_invalid_switch_is_not_reported_again_where_it_is_referenced():
    raw = good()
    raw["switches"]["core"]["dpid"] = "zz"
    assert [p for p, _ in errors_of(raw)] == ["switches.core.dpid"]


def test_an_unknown_key_does_not_hide_the_other_errors():
    raw = good()
    raw["extra"] = 1
    raw["controller"]["foo"] = 1
    raw["controller"]["rest_port"] = 70000
    raw["networks"]["net-a2"]["gateway"] = "10.9.9.9"
    paths = [p for p, _ in errors_of(raw)]
    assert sorted(paths) == sorted(["extra", "controller.foo", "controller.rest_port",
                                    "networks.net-a2.gateway"])


def test_dpid_with_underscores_is_rejected():
    raw = good()
    raw["switches"]["core"]["dpid"] = "1_0"
    assert_error(errors_of(raw), "switches.core.dpid", "not a datapath id")


# -- 5. the mpa-controller CLI ------------------------------------------------

def _run(*args, timeout=30):
    assert MPA_CONTROLLER.exists(), f"{MPA_CONTROLLER} is not installed"
    return subprocess.run([str(MPA_CONTROLLER), *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO)


def check_config(tmp_path, raw: dict, status: int = 2) -> list[str]:
    """``mpa-controller --check-config`` on ``raw`` written to a file in
    ``tmp_path``: the lines it prints, once it exited with ``status``."""
    path = tmp_path / "t.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    result = _run("--check-config", str(path))
    assert result.returncode == status, result.stdout + result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    return result.stdout.splitlines()


def _bad_file(tmp_path) -> tuple[Path, list[str]]:
    """A file with three independent defects, and the lines config.py gives for it."""
    raw = with_secret_files(good(), tmp_path)
    raw["controller"]["rest_port"] = 70000
    raw["correspondents"]["cn1"]["mac"] = "01:00:5e:00:00:01"
    raw["mobile_nodes"]["mn1"]["identity"] = "no-realm"
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_topology(str(path))
    return path, info.value.lines()


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_cli_check_config_good_file(tmp_path):
    path = tmp_path / "good.yaml"
    path.write_text(yaml.safe_dump(with_secret_files(good(), tmp_path)), encoding="utf-8")
    result = _run("--check-config", str(path))
    assert result.returncode == 0, result.stderr
    assert result.stdout == "ok\n"
    assert "Traceback" not in result.stderr


def test_cli_check_config_bad_file(tmp_path):
    path, expected = _bad_file(tmp_path)
    result = _run("--check-config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines == expected
    assert len(lines) == 3
    assert "ok" not in lines
    prefixes = ("controller.rest_port: ", "correspondents.cn1.mac: ",
                "mobile_nodes.mn1.identity: ")
    for prefix in prefixes:
        assert sum(line.startswith(prefix) for line in lines) == 1, (prefix, lines)


def test_cli_check_config_reports_every_problem_in_one_run(tmp_path):
    """The topology's errors, then the RADIUS secrets', then the TLS and
    tokens files': the files are read although the topology has errors."""
    raw = with_secret_files(rename_mn(good(), "mobile-node"), tmp_path)
    raw["controller"].update(rest_port=70000, api_tokens="tokens.yaml")
    raw["domains"]["domain-a"]["radius"]["servers"][0]["secret_file"] = "missing"
    short = tmp_path / "domain-b.secret"
    short.write_text("short\n", encoding="utf-8")
    assert check_config(tmp_path, raw) == [
        "controller.rest_port: 70000 is out of range 1..65535",
        "mobile_nodes.mobile-node: the lab would name an interface mobile-node-eth0 "
        "(16 bytes); Linux takes at most 15",
        f"domains.domain-a.radius.servers[0].secret_file: cannot read {tmp_path / 'missing'}: "
        "No such file or directory",
        f"domains.domain-b.radius.servers[0].secret_file: {short}: a shared secret has 16 to "
        "128 bytes on its first line, not 5",
        f"controller.api_tokens: {tmp_path / 'tokens.yaml'}: cannot read "
        "(No such file or directory)"]


def test_cli_check_config_reads_the_secrets_of_the_domains_that_parsed(tmp_path):
    raw = with_secret_files(good(), tmp_path)
    raw["domains"]["domain-a"]["radius"]["servers"][0]["secret_file"] = "missing"
    raw["domains"]["domain-b"] = ["radius"]  # not read: not a domain
    assert check_config(tmp_path, raw) == [
        "domains.domain-b: must be a mapping, not a list",
        f"domains.domain-a.radius.servers[0].secret_file: cannot read {tmp_path / 'missing'}: "
        "No such file or directory"]


def test_cli_check_config_refuses_a_secret_others_can_read(tmp_path):
    raw = with_secret_files(good(), tmp_path)
    (tmp_path / "domain-a.secret").chmod(0o644)
    assert check_config(tmp_path, raw) == [
        f"domains.domain-a.radius.servers[0].secret_file: {tmp_path / 'domain-a.secret'} is "
        "readable by others (mode 644); chmod 600 it"]


def test_cli_check_config_without_a_section_still_reads_the_domains_files(tmp_path):
    """Without its switches the networks are not checked (every reference would
    be reported missing again), but the sections that need none are, and so
    are the files they name."""
    raw = with_secret_files(good(), tmp_path)
    del raw["switches"]
    raw["controller"]["rest_port"] = 0
    raw["domains"]["domain-a"]["radius"]["servers"][0]["secret_file"] = "missing"
    assert check_config(tmp_path, raw) == [
        "switches: is required",
        "controller.rest_port: 0 is out of range 1..65535",
        f"domains.domain-a.radius.servers[0].secret_file: cannot read {tmp_path / 'missing'}: "
        "No such file or directory"]


@pytest.mark.parametrize("content, fragment", [
    (b"version: 1\nswitches: [core,\n", "not valid YAML"),
    (b"\xff\xfe\x00", "not UTF-8 text"),
    (b"", "the file is empty"),
], ids=["not-yaml", "not-utf8", "empty"])
def test_cli_check_config_unreadable_content(tmp_path, content, fragment):
    path = tmp_path / "broken.yaml"
    path.write_bytes(content)
    result = _run("--check-config", str(path))
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert len(result.stdout.splitlines()) == 1
    assert fragment in result.stdout


def test_cli_check_config_missing_file(tmp_path):
    result = _run("--check-config", str(tmp_path / "nope.yaml"))
    assert result.returncode == 2
    assert "cannot read" in result.stdout
    assert "Traceback" not in result.stdout + result.stderr


def test_cli_config_bad_file_exits_without_starting(tmp_path):
    path, expected = _bad_file(tmp_path)
    port = _free_port()
    result = _run("--config", str(path), "--rest-port", str(port), timeout=20)
    assert result.returncode == 2
    assert "Traceback" not in result.stdout + result.stderr
    assert result.stderr.splitlines() == expected
    assert result.stdout == ""
    # Nothing was left listening on the REST port.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        assert s.connect_ex(("127.0.0.1", port)) != 0


def test_an_mns_credentials_path_is_resolved_against_the_topology(tmp_path):
    raw = good()
    raw["mobile_nodes"]["mn1"]["credentials"] = "credentials/mn1.yaml"
    text = yaml.safe_dump(raw)
    (tmp_path / "t.yaml").write_text(text, encoding="utf-8")
    topology = load_topology(str(tmp_path / "t.yaml"))
    assert topology.mobile_nodes["mn1"].credentials == str(tmp_path / "credentials" / "mn1.yaml")
    assert load_topology_text(text).mobile_nodes["mn1"].credentials == "credentials/mn1.yaml"


def test_an_mns_credentials_must_be_a_path():
    raw = good()
    raw["mobile_nodes"]["mn1"]["credentials"] = 7
    with pytest.raises(ConfigError) as err:
        parse_topology(raw)
    assert [path for path, _ in err.value.errors] == ["mobile_nodes.mn1.credentials"]


# -- home addresses ---------------------------------------------------------------

def test_a_home_address_is_read_and_optional(topo):
    assert topo.mobile_nodes["mn1"].home_address == ipaddress.IPv4Address("10.255.0.1")
    raw = good()
    del raw["mobile_nodes"]["mn1"]["home_address"]
    assert parse_topology(raw).mobile_nodes["mn1"].home_address is None


def test_distinct_home_addresses_outside_every_network_are_fine():
    raw = good()
    raw["mobile_nodes"]["mn2"] = {"mac": "02:00:00:00:01:02", "attach": "ap-a2-1",
                                  "identity": "mn2@domain-a", "home_address": "10.255.0.2"}
    homes = {m.id: str(m.home_address) for m in parse_topology(raw).mobile_nodes.values()}
    assert homes == {"mn1": "10.255.0.1", "mn2": "10.255.0.2"}


# -- the controller's TLS and tokens files ------------------------------------------------

@pytest.mark.parametrize("given, expected", [
    ({"rest_tls_cert": "c.pem"}, [("controller.rest_tls_key", "is required with rest_tls_cert")]),
    ({"rest_tls_key": "k.pem"}, [("controller.rest_tls_cert", "is required with rest_tls_key")]),
    ({"openflow_tls_cert": "c.pem", "openflow_tls_key": "k.pem"},
     [("controller.openflow_tls_ca", "is required with openflow_tls_cert, openflow_tls_key")]),
    ({"openflow_tls_ca": "ca.pem"},
     [("controller.openflow_tls_cert", "is required with openflow_tls_ca"),
      ("controller.openflow_tls_key", "is required with openflow_tls_ca")]),
], ids=["rest-cert-alone", "rest-key-alone", "openflow-without-ca", "openflow-ca-alone"])
def test_tls_files_are_given_all_of_a_group_or_none(given, expected):
    raw = good()
    raw["controller"].update(given)
    assert errors_of(raw) == expected


@pytest.mark.parametrize("key, value, message", [
    ("rest_tls_cert", 443, "must be a file path as a string, not an integer"),
    ("openflow_tls_ca", ["ca.pem"], "must be a file path as a string, not a list"),
    ("api_tokens", " ", "' ' is not a usable file path"),
])
def test_a_controller_file_must_be_a_path(key, value, message):
    raw = good()
    raw["controller"][key] = value
    # A key that is not a path is reported as such, not again as a group's missing half.
    assert errors_of(raw) == [(f"controller.{key}", message)]


def test_controller_files_are_resolved_against_the_topology(tmp_path):
    raw = good()
    raw["controller"].update(rest_tls_cert="tls/rest.pem", rest_tls_key="/etc/mpa/rest-key.pem",
                             api_tokens="../tokens.yaml")
    assert parse_topology(raw).controller.rest_tls_cert == "tls/rest.pem"
    path = tmp_path / "lab" / "t.yaml"
    path.parent.mkdir()
    path.write_text(yaml.safe_dump(raw), encoding="utf-8")
    settings = load_topology(str(path)).controller
    assert settings.rest_tls_cert == str(tmp_path / "lab" / "tls" / "rest.pem")
    assert settings.rest_tls_key == "/etc/mpa/rest-key.pem"
    assert settings.api_tokens == str(tmp_path / "tokens.yaml")
    assert settings.openflow_tls_cert is None


def test_cli_check_config_reads_the_tls_and_tokens_files(tmp_path):
    from support.pki import Pki
    pki = Pki(tmp_path / "pki")
    controller = pki.issue("controller", server=True)
    switch = pki.issue("switch-1")
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text("version: 1\ntokens: []\n", encoding="utf-8")
    tokens.chmod(0o644)
    raw = with_secret_files(good(), tmp_path)
    raw["controller"].update(rest_tls_cert=controller.cert, rest_tls_key=switch.key,
                             openflow_tls_cert=controller.cert, openflow_tls_key=controller.key,
                             openflow_tls_ca="missing-ca.pem", api_tokens="tokens.yaml")
    assert check_config(tmp_path, raw) == [
        f"controller.rest_tls_key: {switch.key}: is not the key of the certificate in "
        f"{controller.cert}",
        f"controller.openflow_tls_ca: {tmp_path / 'missing-ca.pem'}: cannot read "
        "(No such file or directory)",
        f"controller.api_tokens: {tokens}: readable by others (mode 644); chmod 600 {tokens}"]

    tokens.chmod(0o600)
    raw["controller"].update(rest_tls_key=controller.key, openflow_tls_ca=pki.ca)
    assert check_config(tmp_path, raw, status=0) == ["ok"]

"""The topology generator (``mpa-topogen``): shape, determinism, scale, CLI."""

from __future__ import annotations

import ipaddress
import os
import subprocess
import sys

import networkx as nx
import pytest
import yaml

from mpa_protocol.messages import ID_RE
from mpa_sdn.config import load_topology, load_topology_text, parse_topology
from mpa_sdn.controller import Controller
from mpa_sdn.interface_names import port_name, problem
from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.tables import FEATURE_SHIFT, Feature
from mpa_lab import topogen as gen


def build(domains, networks, poas, **kwargs):
    """Generated, rendered and loaded back the way a file is."""
    raw = gen.generate(domains, networks, poas, **kwargs)
    return raw, load_topology_text(gen.render(raw))


def access_graph(topology) -> nx.DiGraph:
    graph = NeighbourhoodGraph(topology).network_graph
    return graph.subgraph(n for n, data in graph.nodes(data=True) if data["role"] == "access")


SHAPES = [
    (1, 1, 1, "ring"), (1, 2, 1, "ring"), (2, 1, 1, "ring"), (1, 3, 2, "ring"),
    (3, 4, 2, "ring"), (1, 1, 1, "mesh"), (2, 1, 1, "mesh"), (3, 1, 3, "mesh"),
    (4, 5, 1, "mesh"), (1, 1, 1, "random"), (1, 2, 1, "random"), (2, 2, 2, "random"),
    (5, 7, 3, "random"),
]


@pytest.mark.parametrize("domains,networks,poas,mode", SHAPES)
def test_shapes_parse_and_counts_match(domains, networks, poas, mode):
    raw, topology = build(domains, networks, poas, neighbours=mode, seed=7)
    assert raw["version"] == 1
    assert parse_topology(raw) == topology
    access = domains * networks
    assert len(topology.domains) == domains
    assert len(topology.networks) == access + 1
    assert [n.role for n in topology.networks.values()].count("access") == access
    assert len(topology.poas) == access * poas + 1
    assert len(topology.switches) == 2 + domains + access
    assert len(topology.links) == 1 + domains + access
    assert list(topology.correspondents) == ["cn1"]
    assert topology.correspondents["cn1"].address == ipaddress.IPv4Address("10.0.0.10")
    cn = topology.networks["net-cn"]
    assert (cn.role, str(cn.prefix), cn.access_router) == ("correspondent", "10.0.0.0/24", "cn-ar")
    for network in topology.networks.values():
        if network.role == "access":
            assert network.prefix.prefixlen == 24
            assert network.gateway == network.prefix.network_address + 1
            assert len(network.poas) == poas
            assert network.pool is not None and len(network.pool) == 100
            assert network.access_router != "core"
    # Every AR is its network's, linked on port 1 to its domain's switch; PoAs follow.
    graph = NeighbourhoodGraph(topology)
    for network in topology.networks.values():
        trunks = graph.trunk_ports(network.access_router)
        assert list(trunks) == [1]
        assert sorted(p.port for p in network.poas) == list(range(2, len(network.poas) + 2))
        if network.role == "access":
            assert trunks[1] == f"d{network.domain.split('-')[1]}"


@pytest.mark.parametrize("mode", gen.NEIGHBOUR_MODES)
def test_ids_dpids_and_interface_names(mode):
    raw, topology = build(12, 15, 3, neighbours=mode)
    dpids = [s.dpid for s in topology.switches.values()]
    assert len(set(dpids)) == len(dpids)
    ports: dict[str, int] = {}
    for link in topology.links:
        for end in (link.a, link.b):
            ports[end.switch] = max(ports.get(end.switch, 0), end.port)
    for poa in topology.poas.values():
        ports[poa.switch] = max(ports.get(poa.switch, 0), poa.port)
    assert set(ports) == set(topology.switches)
    for switch, port in ports.items():
        assert ID_RE.fullmatch(switch)
        assert problem(port_name(switch, port)) is None
    # Gateway, correspondent and MN MACs are all distinct.
    macs = [n.gateway_mac for n in topology.networks.values()]
    macs += [c.mac for c in topology.correspondents.values()]
    macs += [m.mac for m in topology.mobile_nodes.values()]
    assert len(set(macs)) == len(macs)


def test_widest_sizes_keep_interface_names_short():
    # The longest switch ids with their highest ports still fit Linux's limit
    # (the whole 255 x 255 topology would not fit a topology file).
    gen._check_interface_names({"core": 256, "cn-ar": 2, "d255": 256, "ar255-255": 99})
    with pytest.raises(ValueError, match="ar255-255-eth100 .16 bytes.; Linux takes at most 15"):
        gen._check_interface_names({"ar255-255": 100})
    with pytest.raises(ValueError, match="Linux takes at most 15"):
        gen.generate(1, 100, 10000)  # ar1-100-eth10001


def test_address_plan_does_not_overlap():
    _, topology = build(7, 9, 1, neighbours="ring")
    prefixes = [n.prefix for n in topology.networks.values()]
    assert all(p.subnet_of(ipaddress.IPv4Network("10.0.0.0/8")) for p in prefixes)
    assert len(set(prefixes)) == len(prefixes)
    assert not any(a.overlaps(b) for i, a in enumerate(prefixes) for b in prefixes[i + 1:])
    assert str(topology.networks["net7-9"].prefix) == "10.7.9.0/24"
    assert str(topology.networks["net7-9"].pool) == "10.7.9.100-10.7.9.199"


def test_mobile_nodes_on_distinct_access_poas():
    _, topology = build(3, 4, 2, mobile_nodes=20)
    mns = topology.mobile_nodes
    assert sorted(mns, key=lambda m: int(m[2:])) == [f"mn{k}" for k in range(1, 21)]
    attach = [m.attach for m in mns.values()]
    assert len(set(attach)) == len(attach)
    for mn in mns.values():
        network = topology.networks[topology.poas[mn.attach].network]
        assert network.role == "access"
        assert mn.identity == f"{mn.id}@{network.domain}"
        assert int(mn.mac[:2], 16) & 0b11 == 0b10  # locally administered, unicast
    # A few MNs are spread over domains rather than packed into the first network.
    _, topology = build(3, 4, 2, mobile_nodes=3)
    assert {m.identity.split("@")[1] for m in topology.mobile_nodes.values()} == {
        "domain-1", "domain-2", "domain-3"}


@pytest.mark.parametrize("domains,networks,count", [(1, 1, 1), (3, 4, 20), (255, 1, 100)])
def test_mobile_nodes_get_home_addresses_outside_every_network(domains, networks, count):
    _, topology = build(domains, networks, 1 + count // (domains * networks),
                        mobile_nodes=count)
    homes = {mn.id: mn.home_address for mn in topology.mobile_nodes.values()}
    assert homes == {f"mn{k}": ipaddress.IPv4Address(f"10.255.0.{k}")
                     for k in range(1, count + 1)}
    assert not [(mn, n.id) for mn, home in homes.items()
                for n in topology.networks.values() if home in n.prefix]


# -- determinism ---------------------------------------------------------------

@pytest.mark.parametrize("mode", gen.NEIGHBOUR_MODES)
def test_same_arguments_give_the_same_text(mode):
    args = dict(neighbours=mode, seed=42, mobile_nodes=5)
    first = gen.render(gen.generate(4, 6, 2, **args))
    assert gen.render(gen.generate(4, 6, 2, **args)) == first
    assert yaml.safe_load(first) == gen.generate(4, 6, 2, **args)


def test_render_leaves_the_dict_alone():
    raw = gen.generate(2, 2, 1)
    snapshot = yaml.safe_dump(raw)
    gen.render(raw)
    assert yaml.safe_dump(raw) == snapshot


def test_random_seed_changes_relations_and_stays_connected():
    relations = []
    for seed in (1, 2, 3):
        raw, topology = build(3, 10, 1, neighbours="random", seed=seed)
        relations.append({(r["from"], r["to"]) for r in raw["neighbours"]})
        graph = access_graph(topology)
        assert nx.is_weakly_connected(graph)
        degrees = [d for _, d in graph.out_degree()]
        assert min(degrees) >= 3
        assert sum(degrees) / len(degrees) < 5  # about three, not a mesh
    assert relations[0] != relations[1] and relations[1] != relations[2]


# -- neighbour graph -------------------------------------------------------------

@pytest.mark.parametrize("mode", gen.NEIGHBOUR_MODES)
@pytest.mark.parametrize("domains,networks", [(1, 1), (1, 2), (2, 1), (2, 3), (4, 5)])
def test_network_graph_is_connected(mode, domains, networks):
    _, topology = build(domains, networks, 1, neighbours=mode, seed=3)
    graph = access_graph(topology)
    assert graph.number_of_nodes() == domains * networks
    assert nx.is_weakly_connected(graph)
    assert nx.is_strongly_connected(graph)  # every relation goes both ways
    for source, target, data in graph.edges(data=True):
        same = topology.networks[source].domain == topology.networks[target].domain
        assert data["l2_handover_ms"] == (50.0 if same else 200.0)
    # The correspondent network is never a handover target.
    full = NeighbourhoodGraph(topology).network_graph
    assert full.degree("net-cn") == 0


def test_ring_crosses_domains():
    _, topology = build(3, 4, 1, neighbours="ring")
    graph = NeighbourhoodGraph(topology)
    assert graph.neighbours("net1-1") == ["net1-2", "net3-4"]
    assert graph.neighbours("net1-4") == ["net1-3", "net2-1"]
    assert graph.neighbours("net2-4") == ["net2-3", "net3-1"]
    crossing = {(r.source, r.target) for r in topology.neighbours
                if topology.networks[r.source].domain != topology.networks[r.target].domain}
    assert {("net1-4", "net2-1"), ("net2-1", "net1-4"),
            ("net2-4", "net3-1"), ("net3-4", "net1-1")} <= crossing
    candidate = {c.network: c for c in graph.candidates("net1-4")}["net2-1"]
    assert candidate.l2_handover_ms == 200.0
    assert len(topology.neighbours) == 2 * 12  # a closed ring of 12 networks


def test_mesh_relates_every_pair_in_a_domain():
    _, topology = build(3, 4, 1, neighbours="mesh")
    graph = access_graph(topology)
    for d in (1, 2, 3):
        members = [f"net{d}-{i}" for i in range(1, 5)]
        assert all(graph.has_edge(a, b) for a in members for b in members if a != b)
    assert graph.has_edge("net1-4", "net2-1") and graph.has_edge("net3-4", "net1-1")
    assert graph.number_of_edges() == 2 * (3 * 6 + 3)


# -- scale -----------------------------------------------------------------------

def network_route_count(flows) -> int:
    return sum(1 for f in flows if (f.cookie >> FEATURE_SHIFT) & 0xFF == Feature.NETWORK_ROUTE)


def test_scale_ten_domains_of_thirty_networks():
    domains, networks, poas = 10, 30, 4
    _, topology = build(domains, networks, poas, neighbours="random", seed=5, mobile_nodes=20)
    assert len(topology.networks) == domains * networks + 1
    assert len(topology.poas) == domains * networks * poas + 1
    assert nx.is_weakly_connected(access_graph(topology))
    controller = Controller(topology)
    expected = 2 * len(topology.networks)  # a gateway punt and a prefix route each
    core = topology.switches["core"].dpid
    ar = topology.switches["ar7-13"].dpid
    core_flows = controller.desired_flows(core)
    ar_flows = controller.desired_flows(ar)
    assert network_route_count(core_flows) == expected
    assert network_route_count(ar_flows) == expected
    # The AR also answers ARP for its gateway at each of its PoAs.
    arp = [f for f in ar_flows if (f.cookie >> FEATURE_SHIFT) & 0xFF == Feature.ARP_RESPONDER]
    assert len(arp) == poas


# -- command line ------------------------------------------------------------------

def test_cli_writes_a_file_the_controller_accepts(tmp_path):
    path = tmp_path / "t.yaml"
    assert gen.main(["--domains", "2", "--networks-per-domain", "3", "--poas-per-network", "2",
                     "--neighbours", "mesh", "--mobile-nodes", "2", "-o", str(path)]) == 0
    topology = load_topology(str(path))
    assert len(topology.networks) == 7 and len(topology.mobile_nodes) == 2
    # The controller reads each domain's shared secret: here, files of the test's.
    text = path.read_text()
    for did in topology.domains:
        secret = tmp_path / f"{did}.secret"
        secret.write_text("a-lab-secret-of-24-bytes\n")
        secret.chmod(0o600)
        text = text.replace(f"/run/mpa-lab/aaa/t/{did}/secret", str(secret))
    path.write_text(text)
    exe = os.path.join(os.path.dirname(sys.executable), "mpa-controller")
    result = subprocess.run([exe, "--check-config", str(path)], capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.strip() == "ok"


def test_cli_writes_to_stdout(capsys):
    assert gen.main(["--domains", "1", "--networks-per-domain", "2",
                     "--poas-per-network", "1", "--neighbours", "random", "--seed", "9"]) == 0
    text = capsys.readouterr().out
    assert text.startswith("# Generated by: mpa-topogen --domains 1")
    assert yaml.safe_load(text) == gen.generate(1, 2, 1, neighbours="random", seed=9)
    assert len(load_topology_text(text).networks) == 3


BASE = ["--domains", "1", "--networks-per-domain", "1", "--poas-per-network", "1"]


@pytest.mark.parametrize("change", [
    {"--domains": "0"}, {"--domains": "-1"}, {"--domains": "256"}, {"--domains": "x"},
    {"--networks-per-domain": "0"}, {"--networks-per-domain": "256"},
    {"--poas-per-network": "0"}, {"--poas-per-network": "-3"},
    {"--poas-per-network": "70000"},
    {"--mobile-nodes": "0"}, {"--mobile-nodes": "2"}, {"--mobile-nodes": "101"},
    {"--neighbours": "star"}, {"--seed": "one"},
])
def test_cli_rejects_bad_arguments(change, capsys):
    argv = list(BASE)
    for option, value in change.items():
        if option in argv:
            argv[argv.index(option) + 1] = value
        else:
            argv += [option, value]
    with pytest.raises(SystemExit) as exc:
        gen.main(argv)
    assert exc.value.code == 2
    assert "error:" in capsys.readouterr().err


def test_cli_rejects_sizes_beyond_a_topology_file(tmp_path, capsys):
    path = tmp_path / "big.yaml"
    with pytest.raises(SystemExit) as exc:
        gen.main(["--domains", "255", "--networks-per-domain", "255",
                  "--poas-per-network", "1", "--neighbours", "mesh", "-o", str(path)])
    assert exc.value.code == 2
    assert "larger than" in capsys.readouterr().err
    assert not path.exists()


def test_cli_reports_unwritable_output(tmp_path, capsys):
    with pytest.raises(SystemExit) as exc:
        gen.main(BASE + ["-o", str(tmp_path / "missing" / "t.yaml")])
    assert exc.value.code == 2
    assert "cannot write" in capsys.readouterr().err


@pytest.mark.parametrize("kwargs", [
    dict(domains=0, networks_per_domain=1, poas_per_network=1),
    dict(domains=1, networks_per_domain=1, poas_per_network=True),
    dict(domains=1, networks_per_domain=1, poas_per_network=1, neighbours="star"),
    dict(domains=1, networks_per_domain=1, poas_per_network=1, mobile_nodes=0),
])
def test_generate_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        gen.generate(**kwargs)


def test_each_domain_names_its_radius_server_and_each_mn_its_credentials(tmp_path):
    from mpa_sdn.config import load_topology
    out = tmp_path / "scale.yaml"
    assert gen.main(["--domains", "3", "--networks-per-domain", "1", "--poas-per-network", "1",
                     "--mobile-nodes", "2", "-o", str(out)]) == 0
    topology = load_topology(str(out))
    servers = {did: d.radius.servers for did, d in topology.domains.items()}
    assert {did: [(s.address, s.port, s.secret_file) for s in found]
            for did, found in servers.items()} == {
        f"domain-{d}": [("127.0.0.1", 18120 + d, f"/run/mpa-lab/aaa/scale/domain-{d}/secret")]
        for d in (1, 2, 3)}
    assert {m: mn.credentials for m, mn in topology.mobile_nodes.items()} == {
        "mn1": "/run/mpa-lab/aaa/scale/mn1.yaml", "mn2": "/run/mpa-lab/aaa/scale/mn2.yaml"}
    # Nothing secret is written with the topology: the lab writes it when it starts.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["scale.yaml"]


def test_on_standard_output_the_paths_are_under_generated(capsys):
    import yaml
    assert gen.main(["--domains", "1", "--networks-per-domain", "1",
                     "--poas-per-network", "1"]) == 0
    raw = yaml.safe_load(capsys.readouterr().out)
    assert raw["domains"]["domain-1"]["radius"]["servers"][0]["secret_file"] == (
        "/run/mpa-lab/aaa/generated/domain-1/secret")
    assert raw["mobile_nodes"]["mn1"]["credentials"] == "/run/mpa-lab/aaa/generated/mn1.yaml"

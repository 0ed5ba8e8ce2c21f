"""The lab's AAA servers for a topology: what is written before anything
starts (the servers themselves run in tests/integration)."""

import stat

import yaml

from mpa_lab.aaa.lab_servers import LabAaa, is_local_address, local_domains, ttls_path
from mpa_mn.credentials import load_mn_credentials
from mpa_sdn.config import load_topology
from mpa_sdn.config_radius import load_radius_servers
from support.paths import DEFAULT_TOPOLOGY


def _topology(tmp_path, remote_domain: str | None = None):
    raw = yaml.safe_load(open(DEFAULT_TOPOLOGY, encoding="utf-8"))
    for did, domain in raw["domains"].items():
        server = domain["radius"]["servers"][0]
        server["secret_file"] = str(tmp_path / "aaa" / did / "secret")
        if did == remote_domain:
            server["address"] = "192.0.2.1"     # TEST-NET-1: never this host's
    raw["mobile_nodes"]["mn1"]["credentials"] = str(tmp_path / "mn" / "mn1.yaml")
    path = tmp_path / "topology.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return load_topology(str(path))


def test_local_addresses_are_told_from_others():
    assert is_local_address("127.0.0.1")
    assert not is_local_address("192.0.2.1")


def test_the_ttls_file_is_beside_the_tls_one():
    assert ttls_path("/run/x/mn1.yaml") == "/run/x/mn1-ttls.yaml"


def test_secrets_and_both_credentials_files_are_written_for_every_local_domain(tmp_path):
    topology = _topology(tmp_path)
    aaa = LabAaa(topology)
    aaa.prepare()
    assert sorted(aaa.domains) == ["domain-a", "domain-b"]
    # The controller reads the secrets as it will at start.
    servers = load_radius_servers(topology)
    assert {d: [(s.address, s.port) for s in found] for d, found in servers.items()} == {
        "domain-a": [("127.0.0.1", 18121)], "domain-b": [("127.0.0.1", 18122)]}
    for did in aaa.domains:
        secret_file = tmp_path / "aaa" / did / "secret"
        assert stat.S_IMODE(secret_file.stat().st_mode) == 0o600
        assert servers[did][0].secret.decode() == aaa.domains[did].server.settings.secret
    tls = load_mn_credentials(str(tmp_path / "mn" / "mn1.yaml"))
    ttls = load_mn_credentials(str(tmp_path / "mn" / "mn1-ttls.yaml"))
    assert {d: (c.identity, c.method) for d, c in tls.domains.items()} == {
        "domain-a": ("mn1@domain-a", "eap-tls"), "domain-b": ("mn1@domain-a", "eap-tls")}
    assert {d: c.method for d, c in ttls.domains.items()} == {
        "domain-a": "eap-ttls-pap", "domain-b": "eap-ttls-pap"}
    for did, entry in ttls.domains.items():
        # The password the MN holds is the one the domain's server checks.
        assert aaa.domains[did].server.settings.users == {
            "mn1@domain-a": open(entry.password_file).read().strip()}
        assert stat.S_IMODE((tmp_path / "mn" / f"mn1-{did}.password").stat().st_mode) == 0o600
        assert tls.domains[did].ca == str(aaa.domains[did].pki.ca)
        assert tls.domains[did].server_name == f"radius.{did}"


def test_a_domain_whose_server_is_elsewhere_is_left_alone(tmp_path):
    topology = _topology(tmp_path, remote_domain="domain-b")
    assert local_domains(topology) == ["domain-a"]
    aaa = LabAaa(topology)
    aaa.prepare()
    assert [s.settings.domain for s in aaa.servers] == ["domain-a"]
    assert not (tmp_path / "aaa" / "domain-b").exists()
    assert sorted(load_mn_credentials(str(tmp_path / "mn" / "mn1.yaml")).domains) == ["domain-a"]


def test_missing_secret_files_are_made_and_others_kept(tmp_path):
    from mpa_lab.aaa.secret_files import write_missing_secrets
    topology = _topology(tmp_path)
    kept = tmp_path / "aaa" / "domain-a" / "secret"
    kept.parent.mkdir(parents=True)
    kept.write_text("an-operator-s-own-secret\n")
    kept.chmod(0o600)
    assert write_missing_secrets(topology) == [str(tmp_path / "aaa" / "domain-b" / "secret")]
    assert write_missing_secrets(topology) == []
    servers = load_radius_servers(topology)    # the controller's own reading of them
    assert servers["domain-a"][0].secret == b"an-operator-s-own-secret"
    assert len(servers["domain-b"][0].secret) >= 16

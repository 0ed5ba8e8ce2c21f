"""``mpa-lab up``'s options, where they need no lab (mpa_lab/cli.py)."""

from support.domain_rig import add_third_domain, inter_domain_raw, write_topology
from support.paths import ROOT
from mpa_lab.cli import main as mpa_lab


def test_mpa_lab_up_per_domain_needs_each_domain_s_controller_ports(tmp_path, capsys):
    two_domains = str(ROOT / "topologies" / "two_domains.yaml")
    assert mpa_lab(["up", "--per-domain", "--topology", two_domains,
                    "--out", str(tmp_path)]) == 2
    assert capsys.readouterr().err == (
        "mpa-lab up: --per-domain needs each domain's controller ports: "
        "domains.domain-a.controller.openflow_port, domains.domain-a.controller.rest_port, "
        "domains.domain-b.controller.openflow_port, domains.domain-b.controller.rest_port "
        "not given\n")
    inter_domain = str(ROOT / "topologies" / "inter_domain.yaml")
    assert mpa_lab(["up", "--per-domain", "--topology", inter_domain, "--ofp-port", "7000",
                    "--out", str(tmp_path)]) == 2
    assert "not --ofp-port or --rest-port" in capsys.readouterr().err


def test_mpa_lab_up_refuses_a_topology_whose_tunnels_the_lab_cannot_route(tmp_path, capsys):
    # A third domain with pht ports, linked to both others: every prefix
    # would be routed two ways in OVS's one table.
    path = write_topology(tmp_path / "three.yaml",
                          raw=add_third_domain(inter_domain_raw(), pht=True))
    out = tmp_path / "run"
    assert mpa_lab(["up", "--per-domain", "--topology", path, "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("mpa-lab up: 10.0.0.0/24 would need a route for the tunnels of "
                          "domain-b and of domain-c"), err
    assert not out.exists(), "nothing was started"


class Controller:
    """What write_admin_token reads of a lab's controller process."""

    def __init__(self, domain=None):
        self.domain = domain
        self.tokens = {"reader": "r-token", "policy-engine": "p-token", "admin": "a-token"}


def test_the_lab_writes_each_controller_s_admin_token_for_its_user_alone(tmp_path):
    import os
    import stat

    from mpa_lab.cli import write_admin_token
    one = write_admin_token(Controller(), str(tmp_path))
    b = write_admin_token(Controller("domain-b"), str(tmp_path))
    assert (one, b) == (str(tmp_path / "api-token"), str(tmp_path / "api-token-domain-b"))
    assert open(one).read() == open(b).read() == "a-token\n"
    assert {stat.S_IMODE(os.stat(p).st_mode) for p in (one, b)} == {0o600}


def test_mpa_lab_up_refuses_a_link_layer_time_out_of_range_before_starting(tmp_path, capsys):
    out = tmp_path / "run"
    assert mpa_lab(["up", "--link-layer-ms", "-1", "--topology",
                    str(ROOT / "topologies" / "two_domains.yaml"), "--out", str(out)]) == 2
    assert capsys.readouterr().err == \
        "mpa-lab up: link_layer_ms must be from 0 to 60000, not -1.0\n"
    assert not out.exists(), "nothing was started"

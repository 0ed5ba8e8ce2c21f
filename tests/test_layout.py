"""The pure core stays pure: no Ryu app machinery, no eventlet, no clock."""

import ast
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
# Clock, randomness, threads and the network come into the core injected.
FORBIDDEN_MODULES = ("ryu.base", "ryu.controller", "ryu.app", "ryu.cmd", "ryu.lib.hub",
                     "eventlet", "time", "random", "socket", "threading", "subprocess")


def core_modules():
    return sorted((ROOT / "mpa_sdn").glob("*.py"))


@pytest.mark.parametrize("path", core_modules(), ids=lambda p: p.name)
def test_core_imports_no_app_machinery(path):
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        names = []
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            names = [node.module]
        for name in names:
            assert not any(name == m or name.startswith(m + ".") for m in FORBIDDEN_MODULES), \
                f"{path.name} imports {name}"


def test_only_apps_talk_to_switches():
    for path in ROOT.glob("*/*.py"):
        if path.parent.name in ("apps", ".venv", "tests"):
            continue
        assert "send_msg" not in path.read_text(), f"{path} sends to a switch"


def test_send_msg_has_one_caller():
    uses = [p for p in (ROOT / "apps").glob("*.py") if "send_msg(" in p.read_text()]
    assert [p.name for p in uses] == ["mpa_app.py"]
    assert (ROOT / "apps" / "mpa_app.py").read_text().count("send_msg(") == 1


def test_dockerfile_runs_the_same_setup_as_make():
    lines = [l.strip() for l in (ROOT / "Dockerfile").read_text().splitlines()]
    assert lines[[l.startswith("FROM") for l in lines].index(True)] == "FROM debian:bookworm"
    text = " ".join(lines)
    for script in ("scripts/install-system.sh", "scripts/install-venv.sh"):
        assert script in text and (ROOT / script).is_file()
    ignored = (ROOT / ".dockerignore").read_text().split()
    assert ".venv" in ignored, "a host's venv must not be copied into the image"


def test_readme_topology_example_is_valid():
    from mpa_sdn.config import load_topology_text
    text = (ROOT / "README.md").read_text()
    example = text.split("```yaml\n", 1)[1].split("```", 1)[0]
    topology = load_topology_text(example, "README.md")
    assert sorted(topology.networks) == ["net-a1", "net-a2", "net-cn"]


def test_readme_gives_the_two_quick_start_commands():
    text = (ROOT / "README.md").read_text()
    quick = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    assert "make demo" in quick and "make test" in quick


def test_mpa_lab_graph_prints_the_candidates(capsys):
    from topologies.cli import main
    assert main(["graph"]) == 0
    out = capsys.readouterr().out
    assert "net-a1 -> net-b1" in out and "AA 10.2.1.1" in out and "L2 handover 200 ms" in out
    assert "core:1 -- cn-ar:1" in out


def test_mpa_lab_refuses_a_bad_topology(tmp_path, capsys):
    from topologies.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["graph", "--topology", str(bad)])
    assert exit_info.value.code == 2
    assert "version: 2 is not a supported version" in capsys.readouterr().err

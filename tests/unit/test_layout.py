"""Each package imports only what its layer may, and the pure core stays pure.

The layers, from the bottom: ``mpa_protocol`` (what the MN and the controller
agree on), the controller's pure core ``mpa_sdn``, the REST layer, the Ryu
shell ``apps``; beside them the MN client and ``mpa-ctl``, which see the
protocol only, and the lab.  Imports are read from the source (ast), so a
lazy import inside a function counts as much as one at the top; a failure
names the file, the line and the rule it breaks.
"""

import ast
import pathlib
import subprocess
import sys

import pytest
from support.paths import ROOT


# Which of the project's packages each package may import, besides itself.
MAY_IMPORT = {
    "mpa_protocol": set(),
    "mpa_sdn": {"mpa_protocol"},
    "rest_api": {"mpa_protocol", "mpa_sdn"},
    "apps": {"mpa_protocol", "mpa_sdn", "rest_api"},
    "mpa_mn": {"mpa_protocol"},
    "mpa_ctl": {"mpa_protocol"},
    # The lab starts the controller as a process of its own and talks to it
    # over REST and OpenFlow: it never imports the Ryu shell.
    "mpa_lab": {"mpa_protocol", "mpa_sdn", "rest_api", "mpa_mn", "mpa_ctl"},
    # The lab's data (topologies, scenarios, credentials): a package only to be
    # installed and found; it holds no code (test_topologies_holds_data_only).
    "topologies": set(),
}
# Beyond the standard library, the protocol needs these and nothing else: the
# MN and mpa-ctl load it without Ryu or eventlet.
PROTOCOL_DEPENDENCIES = {"yaml", "cryptography"}
RYU_OR_EVENTLET = ("ryu", "eventlet", "greenlet")
# Third-party or standard modules a package must not import at all.
NEVER = {
    # Clock, randomness, threads and the network come into the core injected;
    # Ryu's ofproto parsers and lib.packet are plain libraries and fine.
    "mpa_sdn": ("ryu.base", "ryu.controller", "ryu.app", "ryu.cmd", "ryu.lib.hub",
                "eventlet", "time", "random", "socket", "threading", "subprocess"),
    "mpa_mn": RYU_OR_EVENTLET,
    "mpa_ctl": RYU_OR_EVENTLET,
}


def packages(root: pathlib.Path = ROOT) -> list[str]:
    """The project's top-level packages."""
    return sorted(p.parent.name for p in root.glob("*/__init__.py"))


def imports(path: pathlib.Path):
    """(line, module) of every absolute import in ``path``, wherever it is."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield node.lineno, alias.name
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            # "from mpa_sdn import config" imports mpa_sdn.config (and says so first)
            named = [f"{node.module}.{alias.name}" for alias in node.names]
            yield from ((node.lineno, m) for m in
                        ([*named, node.module] if "." not in node.module else
                         [node.module, *named]))


def _within(module: str, prefixes) -> bool:
    return any(module == p or module.startswith(p + ".") for p in prefixes)


def modules(root: pathlib.Path = ROOT) -> list[pathlib.Path]:
    """Every module of every package, subpackages' too."""
    return sorted(path for package in packages(root) for path in (root / package).rglob("*.py"))


def layering_problems(path: pathlib.Path, root: pathlib.Path = ROOT) -> list[str]:
    """Every import in the module at ``path`` that breaks its package's rules,
    as file:line: what and why."""
    own = set(packages(root))
    where = path.relative_to(root)
    package = where.parts[0]
    allowed = MAY_IMPORT[package]
    problems, seen = set(), set()
    for line, module in imports(path):
        top = module.split(".")[0]
        if top in own and top != package and top not in allowed:
            if (line, top) in seen:   # "from m import a, b": one import of m
                continue
            seen.add((line, top))
            problems.add(f"{where}:{line}: imports {top} ({module}); {package} may import "
                         f"{', '.join(sorted(allowed)) or 'none of the project'}")
        elif _within(module, NEVER.get(package, ())):
            problems.add(f"{where}:{line}: imports {module}, which {package} never may")
        elif (package == "mpa_protocol" and top not in own
              and top not in sys.stdlib_module_names and top not in PROTOCOL_DEPENDENCIES):
            problems.add(f"{where}:{line}: imports {module}; the protocol needs only the "
                         f"standard library, {', '.join(sorted(PROTOCOL_DEPENDENCIES))}")
    return sorted(problems)


def private_uses(package: str, root: pathlib.Path = ROOT) -> list[str]:
    """Names with a leading underscore that ``package`` takes from other modules
    of the project (by ``from m import _x`` or ``m._x``): each module's own."""
    own = set(packages(root))
    found = []
    for path in sorted((root / package).rglob("*.py")):
        where = path.relative_to(root)
        tree = ast.parse(path.read_text(), str(path))
        imported = set()
        for node in ast.walk(tree):
            if isinstance(node, ast.ImportFrom) and node.module and not node.level \
                    and node.module.split(".")[0] in own:
                for alias in node.names:
                    if alias.name.startswith("_") and not alias.name.startswith("__"):
                        found.append(f"{where}:{node.lineno}: imports {node.module}.{alias.name}")
                    imported.add(alias.asname or alias.name)
            elif isinstance(node, ast.Import):
                imported.update(a.asname or a.name.split(".")[0] for a in node.names
                               if a.name.split(".")[0] in own)
        for node in ast.walk(tree):
            if isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) \
                    and node.value.id in imported and node.attr.startswith("_") \
                    and not node.attr.startswith("__"):
                found.append(f"{where}:{node.lineno}: uses {node.value.id}.{node.attr}")
    return found


def test_every_package_has_its_import_rules():
    assert set(packages()) == set(MAY_IMPORT), \
        "give each package a row in MAY_IMPORT (and drop rows of packages that are gone)"


@pytest.mark.parametrize("path", modules(), ids=lambda p: str(p.relative_to(ROOT)))
def test_module_imports_only_what_its_layer_may(path):
    problems = layering_problems(path)
    assert not problems, "\n".join(problems)


@pytest.mark.parametrize("package", sorted(MAY_IMPORT))
def test_package_uses_no_other_module_s_private_names(package):
    uses = private_uses(package)
    assert not uses, "\n".join(uses)


@pytest.mark.parametrize("command", ["mpa_mn.cli", "mpa_ctl.cli"])
def test_a_client_loads_nothing_of_the_controller(command):
    # What the import table cannot see: a module loaded through a third party.
    loaded = subprocess.run(
        [sys.executable, "-c", f"import sys, {command}; print(*sorted(sys.modules))"],
        cwd=ROOT, capture_output=True, text=True, check=True).stdout.split()
    controller = {"mpa_sdn", "rest_api", "apps", "mpa_lab", "ryu", "eventlet", "greenlet"}
    assert command in loaded
    assert sorted(m for m in loaded if m.split(".")[0] in controller) == []


def test_the_layering_check_names_the_file_the_line_and_the_rule(tmp_path):
    for name in ("mpa_protocol", "mpa_sdn", "mpa_mn"):
        (tmp_path / name).mkdir()
        (tmp_path / name / "__init__.py").write_text("")
    (tmp_path / "mpa_mn" / "client.py").write_text(
        "import json\nfrom mpa_protocol import messages\n\n\ndef f():\n"
        "    from mpa_sdn.config import load_topology\n    import ryu.lib.packet\n")
    (tmp_path / "mpa_protocol" / "codec.py").write_text("import yaml\nimport webob\n")
    (tmp_path / "mpa_sdn" / "core.py").write_text(
        "import time\nfrom mpa_protocol.schema import _Reader\nfrom mpa_protocol import keys\n"
        "keys._info\n")
    assert layering_problems(tmp_path / "mpa_mn" / "client.py", tmp_path) == [
        "mpa_mn/client.py:6: imports mpa_sdn (mpa_sdn.config); mpa_mn may import mpa_protocol",
        "mpa_mn/client.py:7: imports ryu.lib.packet, which mpa_mn never may"]
    assert layering_problems(tmp_path / "mpa_protocol" / "codec.py", tmp_path) == [
        "mpa_protocol/codec.py:2: imports webob; the protocol needs only the standard library, "
        "cryptography, yaml"]
    assert layering_problems(tmp_path / "mpa_sdn" / "core.py", tmp_path) == [
        "mpa_sdn/core.py:1: imports time, which mpa_sdn never may"]
    assert private_uses("mpa_sdn", tmp_path) == [
        "mpa_sdn/core.py:2: imports mpa_protocol.schema._Reader",
        "mpa_sdn/core.py:4: uses keys._info"]


def test_topologies_holds_data_only():
    """topologies/ holds topology files, scenarios and credentials; its code is in mpa_lab."""
    code = sorted(str(p.relative_to(ROOT)) for p in (ROOT / "topologies").rglob("*.py"))
    assert code == ["topologies/__init__.py"]
    body = ast.parse((ROOT / "topologies" / "__init__.py").read_text()).body
    assert [type(node) for node in body] == [ast.Expr], "a docstring and nothing else"
    data = [p for p in (ROOT / "topologies").rglob("*")
            if p.is_file() and "__pycache__" not in p.parts and p.suffix != ".py"]
    assert data and all(p.suffix == ".yaml" for p in data), data


def test_only_apps_talk_to_switches():
    for path in modules():
        if path.relative_to(ROOT).parts[0] != "apps":
            assert "send_msg" not in path.read_text(), f"{path} sends to a switch"


def test_send_msg_has_one_caller():
    uses = [p for p in (ROOT / "apps").glob("*.py") if "send_msg(" in p.read_text()]
    assert [p.name for p in uses] == ["mpa_app.py"]
    assert (ROOT / "apps" / "mpa_app.py").read_text().count("send_msg(") == 1


def test_dockerfile_runs_the_same_setup_as_make():
    lines = [l.strip() for l in (ROOT / "Dockerfile").read_text().splitlines()]
    first = lines[[l.startswith("FROM") for l in lines].index(True)]
    assert first.split(" AS ")[0] == "FROM debian:bookworm", first
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
    from mpa_lab.cli import main
    assert main(["graph"]) == 0
    out = capsys.readouterr().out
    assert "net-a1 -> net-b1" in out and "AA 10.2.1.1" in out and "L2 handover 200 ms" in out
    assert "core:1 -- cn-ar:1" in out


def test_mpa_lab_refuses_a_bad_topology(tmp_path, capsys):
    from mpa_lab.cli import main
    bad = tmp_path / "bad.yaml"
    bad.write_text("version: 2\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["graph", "--topology", str(bad)])
    assert exit_info.value.code == 2
    assert "version: 2 is not a supported version" in capsys.readouterr().err


# -- the tests' own layout: shared code in support/, no test imports another ------------------

TESTS = ROOT / "tests"
TEST_FOLDERS = ("unit", "integration")   # where test modules live, by what they test


def python_files_under(tests: pathlib.Path = TESTS) -> list[pathlib.Path]:
    return sorted(p for p in tests.rglob("*.py") if "__pycache__" not in p.parts)


def breaches_of_the_tests_layout(tests: pathlib.Path = TESTS) -> list[str]:
    """Every way the tests break their layout, as file[:line]: what.

    ``tests/`` is on ``sys.path``, so anything beside the tests could be
    imported by name: a test module, a conftest, a folder of tests.  Test
    code imports the project, ``support`` and third parties only, and takes
    fixtures from conftest by name; what it shares is in ``support/``."""
    local = {p.stem for p in tests.glob("*.py")} | {
        d.name for d in tests.iterdir()
        if d.is_dir() and d.name not in ("__pycache__", "data")} - {"support"}
    problems = []
    for path in python_files_under(tests):
        where = path.relative_to(tests.parent)
        inside = path.relative_to(tests).parts
        if inside[0] != "support":
            if path.name.startswith("test_") and inside[0] not in TEST_FOLDERS:
                problems.append(f"{where}: a test module belongs in a folder by what it tests "
                                f"({', '.join(TEST_FOLDERS)})")
            elif not (path.name.startswith("test_") or path.name in ("conftest.py",
                                                                     "__init__.py")):
                problems.append(f"{where}: what tests share belongs in tests/support/")
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.ImportFrom) and node.level:
                problems.append(f"{where}:{node.lineno}: a relative import; import support.… "
                                f"or the project")
                continue
            names = ([a.name for a in node.names] if isinstance(node, ast.Import) else
                     [node.module] if isinstance(node, ast.ImportFrom) else [])
            problems += [f"{where}:{node.lineno}: imports {module}; tests import support and "
                         f"the project, never a test module or conftest"
                         for module in names if module.split(".")[0] in local]
    return sorted(set(problems))


def test_no_test_module_imports_another_and_what_tests_share_is_in_support():
    problems = breaches_of_the_tests_layout()
    assert not problems, "\n".join(problems)


def test_the_tests_layout_check_names_each_breach(tmp_path):
    tests = tmp_path / "tests"
    for folder in ("support", "unit/core", "integration"):
        (tests / folder).mkdir(parents=True)
    (tests / "conftest.py").write_text("import pytest\nfrom support.rig import Rig\n")
    (tests / "support" / "rig.py").write_text("from unit.core.test_a import make\n")
    (tests / "unit" / "core" / "test_a.py").write_text(
        "from support.rig import Rig\nfrom mpa_sdn import config\n\n\ndef make():\n"
        "    from conftest import topology\n")
    (tests / "unit" / "core" / "test_b.py").write_text("import test_a\nfrom . import test_a\n")
    (tests / "integration" / "test_c.py").write_text("from integration.conftest import PORT\n")
    (tests / "test_flat.py").write_text("")
    (tests / "unit" / "helpers.py").write_text("")
    assert breaches_of_the_tests_layout(tests) == [
        "tests/integration/test_c.py:1: imports integration.conftest; tests import support "
        "and the project, never a test module or conftest",
        "tests/support/rig.py:1: imports unit.core.test_a; tests import support and the "
        "project, never a test module or conftest",
        "tests/test_flat.py: a test module belongs in a folder by what it tests "
        "(unit, integration)",
        "tests/unit/core/test_a.py:6: imports conftest; tests import support and the "
        "project, never a test module or conftest",
        "tests/unit/core/test_b.py:2: a relative import; import support.… or the project",
        "tests/unit/helpers.py: what tests share belongs in tests/support/"]

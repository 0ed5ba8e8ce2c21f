"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a container engine.

No machine of ours runs one, so what ``docker compose`` and ``docker build`` would
refuse, or run wrongly, is checked here: the compose file against the Compose
Specification's JSON schema, and what the schema cannot know (commands, ports,
mounts, credentials) against the Makefile, setup.cfg and the controller's own
argument parser.

tests/data/compose-spec.json is the Compose Specification schema exactly as the
PyPI package docker-compose 1.29.2 ships it (compose/config/compose_spec.json),
Apache License 2.0, Copyright Docker, Inc.; its SHA-256 is pinned below so that
it cannot be loosened unnoticed. It predates the top-level ``name:`` key, which
docker-compose.yml therefore does not use.
"""

import configparser
import hashlib
import json
import pathlib
import re
import shlex
import shutil
import subprocess

import jsonschema
import pytest
import yaml
from support.paths import DATA, ROOT

SCHEMA = DATA / "compose-spec.json"
SCHEMA_SHA256 = "0dc04bd346dcfee1b1419628fff79937bbf076925f298f272a2b490e2b112bac"
OPENAPI_PATH = "/mpa/v1/openapi.json"
# The services that run Mininet and Open vSwitch, and their own controller.
LAB_SERVICES = ("lab", "demo")
# Go's time.ParseDuration, which Compose uses: the schema's "format: duration"
# means this, not ISO 8601, and no format checker enforces it.
GO_DURATION = re.compile(r"(\d+(\.\d+)?(ns|us|µs|ms|s|m|h))+")


# -- helpers -------------------------------------------------------------------

def _console_scripts() -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "setup.cfg")
    lines = cfg["options.entry_points"]["console_scripts"].strip().splitlines()
    return {line.split("=")[0].strip() for line in lines}


def _make_targets() -> set[str]:
    return set(re.findall(r"^([a-z][a-z-]*):", (ROOT / "Makefile").read_text(), re.M))


def _make_rules() -> dict[str, tuple[list[str], list[str]]]:
    """target -> (prerequisites, recipe lines), for the Makefile's simple rules."""
    rules, current = {}, None
    for line in (ROOT / "Makefile").read_text().splitlines():
        rule = re.match(r"^([a-z][a-z-]*):(?!=)(.*)$", line)
        if rule:
            current = rule.group(1)
            rules[current] = (rule.group(2).split(), [])
        elif line.startswith("\t") and current:
            rules[current][1].append(line.strip().lstrip("@-"))
        elif not line.strip() or not line.startswith("\t"):
            current = None
    return rules


def _recipe(target: str) -> list[str]:
    """Every recipe line ``make target`` runs, prerequisites first."""
    rules = _make_rules()
    prerequisites, lines = rules[target]
    return [l for p in prerequisites if p in rules for l in _recipe(p)] + lines


def _command_problem(command) -> str | None:
    """Why a container command is not one CI or a developer runs natively, or None."""
    if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
        return f"{command!r} is not a list of strings (exec form)"
    if command[0] == "make":
        if len(command) != 2 or command[1] not in _make_targets():
            return f"{command!r} is not `make TARGET` with a Makefile target"
        return None
    script = command[0].removeprefix(".venv/bin/")
    if script == command[0] or script not in _console_scripts():
        return f"{command[0]!r} is not .venv/bin/ and a console script from setup.cfg"
    return None


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


@pytest.fixture
def compose():
    return _compose()


@pytest.fixture
def services(compose):
    return compose["services"]


def _dockerfile(path=ROOT / "Dockerfile") -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) in order: comments dropped, continuations joined.

    As in Docker, a comment line inside a continuation is dropped too."""
    instructions, pending = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if line.startswith("#") or (not line and not pending):
            continue
        if line.endswith("\\"):
            pending += line[:-1].rstrip() + " "
            continue
        line, pending = pending + line, ""
        if line.strip():
            keyword, _, arguments = line.strip().partition(" ")
            instructions.append((keyword.upper(), arguments.strip()))
    assert not pending, f"{path.name} ends inside a continuation"
    return instructions


def _workdir() -> str:
    workdirs = [args for keyword, args in _dockerfile() if keyword == "WORKDIR"]
    assert workdirs and workdirs[-1].startswith("/"), "the image needs an absolute WORKDIR"
    return workdirs[-1]


def _exec_form(keyword: str, arguments: str) -> list[str]:
    try:
        value = json.loads(arguments)
    except json.JSONDecodeError:
        value = None
    assert isinstance(value, list) and all(isinstance(v, str) for v in value), \
        f"{keyword} {arguments}: not in exec form (a JSON array of strings)"
    return value


def _dockerignore_patterns() -> list[str]:
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    return [l.strip() for l in lines if l.strip() and not l.strip().startswith("#")]


def _glob_regex(pattern: str) -> re.Pattern:
    out, i = "", 0
    while i < len(pattern):
        if pattern.startswith("**/", i):
            out, i = out + "(.*/)?", i + 3
        elif pattern.startswith("**", i):
            out, i = out + ".*", i + 2
        elif pattern[i] == "*":
            out, i = out + "[^/]*", i + 1
        elif pattern[i] == "?":
            out, i = out + "[^/]", i + 1
        else:
            out, i = out + re.escape(pattern[i]), i + 1
    return re.compile(out)


def _dockerignored(path: str, patterns=None) -> bool:
    """Whether ``path`` (relative to the build context) is left out of it: a
    pattern matching a directory leaves out everything below; the last matching
    pattern wins, ``!`` patterns put files back."""
    parts = pathlib.PurePosixPath(path).parts
    prefixes = ["/".join(parts[:n]) for n in range(1, len(parts) + 1)]
    ignored = False
    for pattern in _dockerignore_patterns() if patterns is None else patterns:
        negated = pattern.startswith("!")
        regex = _glob_regex(pattern.lstrip("!").strip("/"))
        if any(regex.fullmatch(prefix) for prefix in prefixes):
            ignored = not negated
    return ignored


def _controller_arguments(command: list[str]):
    from apps.launcher import _arguments
    return _arguments(command[1:])


def _controller_settings(args):
    """The settings the controller would run with: the topology and the command's
    overrides, combined by the launcher's own code."""
    from apps.launcher import _with_overrides
    from mpa_sdn.config import load_topology
    return _with_overrides(load_topology(str(ROOT / args.config)), args)


def _named_volumes(service: dict) -> dict[str, str]:
    """Named volume -> mount target; bind mounts (paths) are not named volumes."""
    out = {}
    for volume in service.get("volumes", []):
        source, target = (volume.split(":")[:2] if isinstance(volume, str)
                          else (volume.get("source"), volume.get("target")))
        if source and not source.startswith((".", "/", "~")):
            out[source] = target
    return out


def _binds(service: dict) -> dict[str, str]:
    out = {}
    for volume in service.get("volumes", []):
        if isinstance(volume, str) and volume.startswith((".", "/", "~")):
            source, target = volume.split(":")[:2]
            out[source] = target
    return out


def _git(*args) -> subprocess.CompletedProcess:
    if shutil.which("git") is None or not (ROOT / ".git").exists():
        pytest.skip("needs git and a checkout to tell what the repository holds")
    return subprocess.run(["git", "-C", str(ROOT), *args], capture_output=True, text=True,
                          timeout=30, check=False)


# -- the compose file ------------------------------------------------------------

def test_vendored_schema_is_unchanged():
    assert hashlib.sha256(SCHEMA.read_bytes()).hexdigest() == SCHEMA_SHA256, \
        "tests/data/compose-spec.json differs from docker-compose 1.29.2's compose_spec.json"


def test_compose_file_follows_the_compose_specification(compose):
    schema = json.loads(SCHEMA.read_text())
    # The schema names its draft as "http://json-schema.org/draft/2019-09/schema#",
    # which jsonschema does not recognise: name the validator rather than let it
    # fall back to another draft.
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(compose),
                    key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors)


def test_healthcheck_durations_are_go_durations(services):
    for name, service in services.items():
        for key, value in service.get("healthcheck", {}).items():
            if key in ("interval", "timeout", "start_period"):
                assert GO_DURATION.fullmatch(value), f"{name}: healthcheck {key}: {value!r}"


def test_services_share_one_image_built_from_the_dockerfile(services):
    assert set(services) == {"controller", "lab", "demo"}
    for name, service in services.items():
        assert service.get("build") == ".", f"{name}: not built from the repository"
    assert len({s.get("image") for s in services.values()}) == 1, "one image, one tag"
    assert None not in {s.get("image") for s in services.values()}
    assert (ROOT / "Dockerfile").is_file()


def test_every_command_is_one_ci_or_a_developer_runs(services):
    for name, service in services.items():
        problem = _command_problem(service.get("command"))
        assert problem is None, f"{name}: {problem}"


def test_the_controller_command_is_accepted_by_the_controller(services):
    service = services["controller"]
    command = service["command"]
    assert command[0] == ".venv/bin/mpa-controller"
    args = _controller_arguments(command)
    assert (ROOT / args.config).is_file(), args.config
    topology = _controller_settings(args)
    assert topology.controller.rest_host == "0.0.0.0", "the REST API must answer off the host"
    state_dirs = set(_named_volumes(service).values())
    assert str(pathlib.PurePosixPath(topology.mpa.state_db).parent) in state_dirs, \
        f"{topology.mpa.state_db} is not on a volume: SAs and leases would not outlive the container"
    secrets = {f"/run/secrets/{s if isinstance(s, str) else s.get('target', s['source'])}"
               for s in service.get("secrets", [])}
    assert topology.controller.api_tokens in secrets, \
        f"API tokens {topology.controller.api_tokens}: not a secret the service mounts"


def test_the_image_runs_the_controller_by_default(services):
    cmd = [args for keyword, args in _dockerfile() if keyword == "CMD"]
    assert cmd and _exec_form("CMD", cmd[-1]) == services["controller"]["command"]


def test_referenced_volumes_and_secrets_are_declared(compose, services):
    for name, service in services.items():
        for volume in _named_volumes(service):
            assert volume in (compose.get("volumes") or {}), f"{name}: volume {volume} undeclared"
        for source in _binds(service):
            assert (ROOT / source).resolve().is_relative_to(ROOT), f"{name}: {source} outside"
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in (compose.get("secrets") or {}), f"{name}: secret {source} undeclared"


def test_lab_services_are_privileged_on_the_host_network(services):
    for name in LAB_SERVICES:
        assert services[name].get("privileged") is True, f"{name}: Mininet needs namespaces and veths"
    for name, service in services.items():
        assert service.get("network_mode") == "host", \
            f"{name}: the lab's bridges and the controller meet on the host's loopback"
    assert not services["controller"].get("privileged"), "the controller needs no privileges"


def test_only_the_controller_starts_with_a_plain_up(services):
    # The lab services start their own controller on the same host ports.
    assert [n for n, s in services.items() if not s.get("profiles")] == ["controller"]
    assert services["lab"]["profiles"] == ["lab"]
    assert services["demo"]["profiles"] == ["demo"]
    assert services["demo"].get("restart") == "no", "the demo runs once"
    assert services["controller"].get("stop_signal") == "SIGTERM"
    assert "signal.SIGTERM" in (ROOT / "apps" / "launcher.py").read_text(), \
        "the controller must stop cleanly on the signal compose sends"


def test_lab_results_land_on_the_host(services):
    results = f"{_workdir()}/results"
    for name in LAB_SERVICES:
        service = services[name]
        assert _binds(service).get("./results") == results, f"{name}: results stay in the container"
        target = service["command"][1]
        assert any("--out results/" in line for line in _recipe(target)), \
            f"make {target} does not write under results/"


def test_there_are_no_default_credentials(compose):
    secrets = compose.get("secrets") or {}
    assert "api_tokens" in secrets
    patterns = _dockerignore_patterns()
    for name, secret in secrets.items():
        path = secret.get("file")
        assert path, f"secret {name}: an operator's file, not an external store we cannot check"
        relative = pathlib.PurePosixPath(path.removeprefix("./"))
        assert relative.parts[0] == "secrets", f"secret {name}: {path} is not under secrets/"
        assert _dockerignored(str(relative), patterns), f"{path} would be copied into the image"
        assert _git("ls-files", "--", str(relative.parent)).stdout == "", \
            f"the repository holds files under {relative.parent}/"
        assert _git("check-ignore", "-q", "--no-index", str(relative)).returncode == 0, \
            f"{path} is not ignored by git"


def test_healthcheck_fetches_the_openapi_document_without_a_token(services):
    service = services["controller"]
    test = service["healthcheck"]["test"]
    assert test[0] == "CMD" and test[1:3] == [f"{_workdir()}/.venv/bin/python", "-c"], test
    code = test[3]
    compile(code, "healthcheck", "exec")
    assert "urllib.request" in code and "Authorization" not in code
    urls = re.findall(r"""['"](https?://[^'"]+)['"]""", code)
    args = _controller_arguments(service["command"])
    port = _controller_settings(args).controller.rest_port
    assert urls == [f"http://127.0.0.1:{port}{OPENAPI_PATH}"]


# -- the Dockerfile ----------------------------------------------------------------

def test_dockerfile_starts_from_debian_bookworm():
    keyword, arguments = _dockerfile()[0]
    assert keyword == "FROM"
    assert re.fullmatch(r"debian:bookworm(-[0-9]{8})?(@sha256:[0-9a-f]{64})?", arguments), arguments


def test_dockerfile_copies_only_what_exists_into_the_workdir():
    copies = [(k, a) for k, a in _dockerfile() if k in ("COPY", "ADD")]
    assert copies
    for keyword, arguments in copies:
        if arguments.startswith("["):
            words = _exec_form(keyword, arguments)
        else:
            words = shlex.split(arguments)
        assert not any(w.startswith("--from") for w in words), "one stage, from the repository"
        paths = [w for w in words if not w.startswith("--")]
        *sources, _destination = paths
        assert sources, f"{keyword} {arguments}"
        for source in sources:
            matches = list(ROOT.glob(source)) if source != "." else [ROOT]
            assert matches, f"{keyword} {source}: no such file in the repository"
            if source != ".":
                assert not _dockerignored(source), f"{keyword} {source}: left out by .dockerignore"


def test_dockerfile_commands_are_in_exec_form_and_run_what_we_ship():
    entries = [(k, a) for k, a in _dockerfile() if k in ("CMD", "ENTRYPOINT")]
    assert entries, "the image needs a default command"
    for keyword, arguments in entries:
        problem = _command_problem(_exec_form(keyword, arguments))
        assert problem is None, f"{keyword}: {problem}"


def test_dockerfile_sets_up_like_make_setup_without_starting_services():
    runs = [a for k, a in _dockerfile() if k == "RUN"]
    setup_scripts = {m for line in _recipe("setup")
                     for m in re.findall(r"scripts/[\w.-]+\.sh", line)}
    assert setup_scripts, "make setup runs no scripts/ any more"
    invocations = [shlex.split(part) for run in runs for part in re.split(r"&&|;", run)]
    invoked = {words[1]: words[2:] for words in invocations
               if len(words) >= 2 and words[0] == "bash"}
    assert setup_scripts <= set(invoked), f"the image skips {setup_scripts - set(invoked)}"
    # Building must not start Open vSwitch, and the script must know the flag.
    assert invoked["scripts/install-system.sh"] == ["--no-start"]
    assert re.search(r"^\s*[\w|-]*--no-start[\w|-]*\)", (ROOT / "scripts/install-system.sh")
                     .read_text(), re.M), "install-system.sh has no --no-start"
    assert not any(w[:1] == ["make"] for w in invocations), \
        "make setup would start Open vSwitch at build time"


def test_dockerfile_exposes_the_controller_ports(services):
    exposed = {int(p.split("/")[0]) for k, a in _dockerfile() if k == "EXPOSE" for p in a.split()}
    args = _controller_arguments(services["controller"]["command"])
    settings = _controller_settings(args).controller
    assert exposed == {settings.openflow_port, settings.rest_port}


def test_dockerignore_keeps_the_host_out_and_the_build_in():
    for path in (".venv/bin/python", ".git/HEAD", "results/demo/results.json",
                 "secrets/api-tokens.yaml", "apps/__pycache__/launcher.cpython-311.pyc"):
        assert _dockerignored(path), f"{path} would be copied into the image"
    needed = ["Makefile", "setup.cfg", "pyproject.toml", "README.md",
              *(str(p.relative_to(ROOT)) for p in (ROOT / "scripts").glob("*.sh")),
              *(str(p.relative_to(ROOT)) for p in (ROOT / "topologies").rglob("*.yaml")),
              *(str(p.relative_to(ROOT)) for d in ("mpa_sdn", "apps", "rest_api", "mpa_mn")
                for p in (ROOT / d).glob("*.py"))]
    left_out = [p for p in needed if _dockerignored(p)]
    assert not left_out, f"the build needs {left_out}"


def test_dockerignore_matching():
    assert _dockerignored("secrets/x.yaml", ["secrets/"])
    assert _dockerignored("a/b/__pycache__/c.pyc", ["**/__pycache__"])
    assert not _dockerignored("secretsx/y", ["secrets"])
    assert not _dockerignored("results/bench/a.json", ["results", "!results/bench"])
    assert not _dockerignored("apps/x.py", ["*.py"]), "* does not cross directories"

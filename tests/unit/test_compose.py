"""docker-compose.yml, the Dockerfile and .dockerignore, checked without a container engine.

A real engine runs them in ``make docker-check`` (CI) and ``make docker-demo`` /
``make podman-demo``; what ``docker compose`` and ``docker build`` would refuse, or
run wrongly, is also checked here in a second: the compose file against the Compose
Specification's JSON schema, and what the schema cannot know (commands, ports,
mounts, capabilities, credentials, layers) against the Makefile, setup.cfg, the
scripts and the controller's own argument parser.

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
    """Why a container command is not one CI or a developer runs natively, or None.

    A script of ours in front (an entry point) must exist, be executable and end
    by running what follows it."""
    if not (isinstance(command, list) and command and all(isinstance(c, str) for c in command)):
        return f"{command!r} is not a list of strings (exec form)"
    if command[0].startswith("scripts/"):
        script = ROOT / command[0]
        if not (script.is_file() and script.stat().st_mode & 0o111):
            return f"{command[0]} is not an executable script of the repository"
        if 'exec "$@"' not in script.read_text():
            return f"{command[0]} does not run the command it is given"
        return _command_problem(command[1:]) if len(command) > 1 else None
    if command[0] == "make":
        if len(command) != 2 or command[1] not in _make_targets():
            return f"{command!r} is not `make TARGET` with a Makefile target"
        return None
    script = command[0].removeprefix(".venv/bin/")
    if script == command[0] or script not in _console_scripts():
        return f"{command[0]!r} is not .venv/bin/ and a console script from setup.cfg"
    return None


# ${NAME}, ${NAME:-default}, ${NAME-default}: Compose's interpolation.
VARIABLE = re.compile(r"\$\{(\w+)(?:(:?-)([^}]*))?\}")


def _interpolate(value, environment: dict[str, str]):
    """``value`` with its variables replaced as Compose replaces them."""
    if isinstance(value, dict):
        return {k: _interpolate(v, environment) for k, v in value.items()}
    if isinstance(value, list):
        return [_interpolate(v, environment) for v in value]
    if not isinstance(value, str):
        return value

    def one(match):
        name, operator, default = match.groups()
        if name not in environment or (operator == ":-" and environment[name] == ""):
            return default or "" if operator else ""
        return environment[name]
    return VARIABLE.sub(one, value)


def _raw_compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _compose(environment: dict[str, str] | None = None) -> dict:
    """The file as Compose reads it with ``environment`` (default: none set)."""
    return _interpolate(_raw_compose(), environment or {})


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


def test_compose_file_follows_the_compose_specification():
    compose = _raw_compose()
    schema = json.loads(SCHEMA.read_text())
    # The schema names its draft as "http://json-schema.org/draft/2019-09/schema#",
    # which jsonschema does not recognise: name the validator rather than let it
    # fall back to another draft.
    jsonschema.Draft201909Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft201909Validator(schema).iter_errors(compose),
                    key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}" for e in errors)


def test_variable_interpolation():
    assert _interpolate("${A:-x}/${B-y}/${C}", {}) == "x/y/"
    assert _interpolate("${A:-x}/${B-y}", {"A": "", "B": ""}) == "x/"
    assert _interpolate(["${A-1}", {"k": "${A:-2}"}], {"A": "3"}) == ["3", {"k": "3"}]


def test_services_share_one_image_built_from_the_dockerfile(services):
    assert set(services) == {"controller", "new-token", "lab", "demo"}
    for name, service in services.items():
        assert service.get("build", {}).get("context") == ".", \
            f"{name}: not built from the repository"
    assert len({s.get("image") for s in services.values()}) == 1, "one image, one tag"
    assert None not in {s.get("image") for s in services.values()}
    assert (ROOT / "Dockerfile").is_file()


def test_the_build_passes_the_commit_and_extra_certificates(services):
    build = services["controller"]["build"]
    # Containers may have no NAT (dockerd --iptables=false): the build uses the host's network.
    assert build.get("network") == "host"
    declared = {a.split("=")[0] for k, a in _dockerfile() if k == "ARG"}
    assert set(build["args"]) == {"EXTRA_CA_CERTS", "SOURCE_COMMIT"} <= declared, declared
    built = _compose({"SOURCE_COMMIT": "abc1234", "EXTRA_CA_CERTS": "PEM"})
    assert built["services"]["controller"]["build"]["args"] == \
        {"SOURCE_COMMIT": "abc1234", "EXTRA_CA_CERTS": "PEM"}
    assert build["args"] == {"SOURCE_COMMIT": "unknown", "EXTRA_CA_CERTS": ""}, \
        "both optional"


def test_every_command_is_one_ci_or_a_developer_runs(services):
    for name, service in services.items():
        command = service.get("entrypoint", []) + service.get("command", [])
        problem = _command_problem(command)
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
    # Compose's controller first makes the RADIUS secrets that are missing
    # (the script ends by running the command); the image alone runs it as is.
    assert services["controller"]["entrypoint"] == ["scripts/controller-entrypoint.sh"]
    assert not any(keyword == "ENTRYPOINT" for keyword, _ in _dockerfile())


def test_the_controller_is_published_on_loopback_only(services):
    ports = services["controller"]["ports"]
    args = _controller_arguments(services["controller"]["command"])
    settings = _controller_settings(args).controller
    assert sorted(ports) == sorted([f"127.0.0.1:{settings.openflow_port}:{settings.openflow_port}",
                                    f"127.0.0.1:{settings.rest_port}:{settings.rest_port}"])
    # Set empty, a port is one the engine picks (make docker-check: a lab on the
    # host may hold 6653 and 8080); the address stays loopback.
    picked = _compose({"MPA_REST_PORT": "", "MPA_OPENFLOW_PORT": ""})["services"]["controller"]
    assert sorted(picked["ports"]) == ["127.0.0.1::6653", "127.0.0.1::8080"]
    elsewhere = _compose({"MPA_PUBLISH_HOST": "0.0.0.0", "MPA_REST_PORT": "18080"})
    assert "0.0.0.0:18080:8080" in elsewhere["services"]["controller"]["ports"]


def test_referenced_volumes_and_secrets_are_declared(compose, services):
    for name, service in services.items():
        for volume in _named_volumes(service):
            assert volume in (compose.get("volumes") or {}), f"{name}: volume {volume} undeclared"
        for source in _binds(service):
            assert (ROOT / source).resolve().is_relative_to(ROOT), f"{name}: {source} outside"
        for secret in service.get("secrets", []):
            source = secret if isinstance(secret, str) else secret["source"]
            assert source in (compose.get("secrets") or {}), f"{name}: secret {source} undeclared"


def test_no_service_uses_the_host_network_or_privileged(services):
    for name, service in services.items():
        assert service.get("network_mode") != "host", \
            f"{name}: a lab in the host's network meets the host's OVS, labs and controllers"
        # privileged asks for every capability, and fails where root lacks one
        # (CAP_SYS_RESOURCE on our machines: "unable to apply caps").
        assert not service.get("privileged"), f"{name}: privileged"
        assert "SYS_RESOURCE" not in service.get("cap_add", []), name
        assert "ALL" not in service.get("cap_add", []), name
    assert not services["controller"].get("cap_add"), "the controller needs no privileges"


def test_limits_are_ones_root_may_set_without_cap_sys_resource(services):
    # Podman's defaults (nofile 1048576, nproc 4194304) fail there ("error
    # setting rlimits"); the controller needs its bounds' descriptors. The
    # ceilings are our machines': root's hard nofile 20000, conmon's nproc 32768.
    from apps import descriptors
    args = _controller_arguments(services["controller"]["command"])
    needed = descriptors.needed(_controller_settings(args))
    for name, service in services.items():
        limits = service.get("ulimits", {})
        assert set(limits) == {"nofile", "nproc"}, name
        assert needed <= limits["nofile"] <= 20000, f"{name}: nofile {limits['nofile']}"
        assert limits["nproc"] <= 32768, f"{name}: nproc {limits['nproc']}"


def test_lab_services_have_their_own_network_namespace_and_what_mininet_needs(services):
    for name in LAB_SERVICES:
        service = services[name]
        assert service.get("network_mode") == "none", f"{name}: a namespace of its own"
        assert {"NET_ADMIN", "NET_RAW", "SYS_ADMIN"} <= set(service["cap_add"]), name
        assert service.get("devices") == ["/dev/net/tun"], \
            f"{name}: the userspace datapath's internal ports are tap devices"
        assert service.get("user") == "root", f"{name}: Mininet and OVS run as root"
        assert service.get("init") is True, f"{name}: make's leftovers need reaping"
        assert service.get("entrypoint") == ["scripts/container-lab.sh"], name


def test_the_lab_entry_point_opens_only_the_containers_network_settings():
    script = (ROOT / "scripts" / "container-lab.sh").read_text()
    mounts = [line.split() for line in script.splitlines() if line.strip().startswith("mount ")]
    assert mounts, "without privileged, /proc/sys is read-only and the lab sets sysctls"
    for words in mounts:
        assert words[-1] == "/proc/sys/net", f"{' '.join(words)}: more than the namespace's own"


def test_only_the_controller_starts_with_a_plain_up(services):
    # The others run once, with `run`.
    assert [n for n, s in services.items() if not s.get("profiles")] == ["controller"]
    assert services["lab"]["profiles"] == ["lab"]
    assert services["demo"]["profiles"] == ["demo"]
    assert services["new-token"]["profiles"] == ["tools"]
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


def test_new_token_writes_the_secret_the_controller_reads(compose, services):
    service = services["new-token"]
    assert service["entrypoint"] == ["make", "new-token"]
    assert service.get("network_mode") == "none" and service.get("user") == "root"
    folder, _, file_name = compose["secrets"]["api_tokens"]["file"].rpartition("/")
    assert _binds(service) == {folder: f"{_workdir()}/secrets"}
    prerequisites, recipe = _make_rules()["new-token"]
    assert "$(VENV)/bin/mpa-ctl new-token --file $(TOKENS) --role $(ROLE) --name $(NAME)" in recipe
    assert re.search(r"^TOKENS \?= secrets/api-tokens.yaml$",
                     (ROOT / "Makefile").read_text(), re.M)
    assert file_name == "api-tokens.yaml"
    # The controller runs as the image's user and the file is mode 600: it
    # must be that user's.
    assert any('chown "$$MPA_TOKENS_OWNER" $(TOKENS)' in line for line in recipe)
    env = dict(re.findall(r"(\w+)=(\S+)", " ".join(a for k, a in _dockerfile() if k == "ENV")))
    user = [a for k, a in _dockerfile() if k == "USER"][-1]
    assert env["MPA_TOKENS_OWNER"].split(":")[0] == user
    # Another folder (make docker-check's temporary one) replaces both at once.
    moved = _compose({"MPA_SECRETS": "/tmp/x"})
    assert moved["secrets"]["api_tokens"]["file"] == "/tmp/x/api-tokens.yaml"
    assert "/tmp/x" in _binds(moved["services"]["new-token"])


def test_volumes_are_named_by_the_project(compose):
    # A fixed name would be shared by every checkout on the machine.
    for name, volume in (compose.get("volumes") or {}).items():
        assert not (volume or {}).get("name"), f"volume {name} has a fixed name"
        assert not (volume or {}).get("external"), f"volume {name} is external"


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


def _healthcheck() -> tuple[dict[str, str], list[str]]:
    """The Dockerfile's HEALTHCHECK: its options, and its command (exec form)."""
    checks = [a for k, a in _dockerfile() if k == "HEALTHCHECK"]
    assert len(checks) == 1, "the image has one HEALTHCHECK"
    options, _, command = checks[0].partition(" CMD ")
    return dict(re.findall(r"--([\w-]+)=(\S+)", options)), _exec_form("HEALTHCHECK", command)


def test_healthcheck_durations_are_go_durations():
    options, _ = _healthcheck()
    for key in ("interval", "timeout", "start-period"):
        assert GO_DURATION.fullmatch(options[key]), f"HEALTHCHECK --{key}={options[key]}"


def test_the_image_checks_its_health_and_compose_keeps_it(services):
    for name, service in services.items():
        assert "healthcheck" not in service, f"{name}: the image's HEALTHCHECK is the one"


def test_healthcheck_fetches_the_openapi_document_without_a_token(services):
    service = services["controller"]
    _, test = _healthcheck()
    assert test[0:2] == [f"{_workdir()}/.venv/bin/python", "-c"], test
    code = test[2]
    compile(code, "healthcheck", "exec")
    assert "urllib.request" in code and "Authorization" not in code
    urls = re.findall(r"""['"](https?://[^'"]+)['"]""", code)
    args = _controller_arguments(service["command"])
    port = _controller_settings(args).controller.rest_port
    assert urls == [f"http://127.0.0.1:{port}{OPENAPI_PATH}"]


# -- the Dockerfile ----------------------------------------------------------------

def _stages() -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(name, base, instructions) of each build stage, in order."""
    stages = []
    for keyword, arguments in _dockerfile():
        if keyword == "FROM":
            base, _, name = arguments.partition(" AS ")
            stages.append((name.strip(), base.strip(), []))
        elif keyword != "ARG" or stages:
            stages[-1][2].append((keyword, arguments))
    return stages


def _script_runs(instructions) -> list[list[str]]:
    runs = [a for k, a in instructions if k == "RUN"]
    return [shlex.split(part) for run in runs for part in re.split(r"&&|;", run)
            if shlex.split(part)[:1] == ["bash"]]


def test_dockerfile_starts_from_debian_bookworm():
    keyword, arguments = _dockerfile()[0]
    assert keyword == "FROM"
    base = arguments.split(" AS ")[0]
    assert re.fullmatch(r"debian:bookworm(-[0-9]{8})?(@sha256:[0-9a-f]{64})?", base), arguments
    stages = _stages()
    for k, (name, base, _) in enumerate(stages[1:], start=1):
        assert base in [n for n, _, _ in stages[:k]], \
            f"stage {name} from {base}, not an earlier stage"


def test_dependencies_are_a_layer_of_their_own_before_the_sources():
    """A change to the sources rebuilds none of the dependencies."""
    instructions = [i for _, _, stage in _stages() for i in stage]
    sources = instructions.index(("COPY", ". ."))
    before = instructions[:sources]
    copied = [w for k, a in before if k == "COPY" for w in shlex.split(a)[:-1]]
    assert copied and all((ROOT / c).is_file() for c in copied), copied
    deps = [words for words in _script_runs(before) if words[1] == "scripts/install-venv.sh"]
    assert deps and "--deps-only" in deps[0], "the dependencies go in before the sources"
    assert {"setup.cfg", "pyproject.toml", "scripts/install-venv.sh"} <= set(copied)


def test_the_runtime_image_has_no_test_extras_and_runs_as_a_user():
    name, _, instructions = _stages()[-1]
    assert name == "runtime", "the default target is the last stage"
    lineage, base = [instructions], _stages()[-1][1]
    by_name = {n: (b, i) for n, b, i in _stages()}
    while base in by_name:
        lineage.append(by_name[base][1])
        base = by_name[base][0]
    every = [i for stage in lineage for i in stage]
    env = " ".join(a for k, a in every if k == "ENV")
    for words in _script_runs(every):
        if words[1] == "scripts/install-venv.sh":
            assert "--runtime" in words or "MPA_VENV=runtime" in env, words
    user = [a for k, a in instructions if k == "USER"]
    assert user and user[-1] not in ("root", "0"), "the controller does not run as root"


def test_the_commit_is_a_build_argument_given_last():
    instructions = _stages()[-1][2]
    arg = instructions.index(("ARG", "SOURCE_COMMIT=unknown"))
    assert not any(k in ("RUN", "COPY") for k, _ in instructions[arg:]), \
        "a new commit would rebuild the layers after it"
    assert any(k == "ENV" and "MPA_SOURCE_COMMIT=$SOURCE_COMMIT" in a
               for k, a in instructions[arg:])


def test_extra_certificates_are_trusted_before_anything_is_fetched():
    instructions = _stages()[0][2]
    runs = [k for k, (keyword, a) in enumerate(instructions) if keyword == "RUN"]
    first = instructions[runs[0]][1]
    assert "$EXTRA_CA_CERTS" in first and "update-ca-certificates" in first
    env = " ".join(a for k, a in instructions if k == "ENV")
    # pip's own bundle would not have them.
    assert "PIP_CERT=/etc/ssl/certs/ca-certificates.crt" in env


def test_the_controller_s_user_owns_the_directory_of_the_radius_secrets():
    runs = " ".join(a for k, a in _stages()[-1][2] if k == "RUN")
    user = [a for k, a in _stages()[-1][2] if k == "USER"][-1]
    made = re.search(rf"install -d -o {user} -g {user} -m 700 ([^&]+)", runs)
    assert made and "/run/mpa-lab" in made.group(1).split()
    assert "topologies/credentials" not in runs, "no pre-shared keys are published any more"


def test_the_secrets_script_reads_the_commands_topology(tmp_path):
    """The controller's entry point finds the topology in the command's
    --config and makes what is missing there before the controller starts."""
    import subprocess
    import sys
    import yaml
    raw = yaml.safe_load((ROOT / "topologies" / "two_domains.yaml").read_text())
    for did, domain in raw["domains"].items():
        domain["radius"]["servers"][0]["secret_file"] = str(tmp_path / did / "secret")
    topology = tmp_path / "t.yaml"
    topology.write_text(yaml.safe_dump(raw))
    (tmp_path / ".venv").symlink_to(sys.prefix)     # the script runs .venv/bin/python
    done = subprocess.run(
        [str(ROOT / "scripts" / "controller-entrypoint.sh"), "sh", "-c", "echo ran $0",
         "--config", str(topology)],
        cwd=tmp_path, capture_output=True, text=True, timeout=60,
        env={"PATH": "/usr/bin:/bin", "PYTHONPATH": str(ROOT)})
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1] == "ran --config"
    assert sorted(p.parent.name for p in tmp_path.glob("*/secret")) == ["domain-a", "domain-b"]


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
    # --image: as --no-start, without the tools only the tests use.
    assert invoked["scripts/install-system.sh"] == ["--image"]
    script = (ROOT / "scripts/install-system.sh").read_text()
    image = re.search(r"^\s*--image\) packages=\(([^)]*)\)", script, re.M)
    assert image, "install-system.sh has no --image"
    assert "test_packages" not in image.group(1) and "lab_packages" in image.group(1)
    lab = re.search(r"^lab_packages=\(([^)]*)\)", script, re.M).group(1).split()
    assert "freeradius" in lab and "tshark" not in lab
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

"""The lab of one controller per administrative domain for integration
tests: topologies/inter_domain.yaml on ports apart from the defaults (and
from lab_rig's), a controller process per domain (``--domain ID``) and the
Mininet lab with each switch on its own domain's controller."""

import contextlib
import json
import os

import yaml

from support.paths import ROOT

INTER_DOMAIN = os.path.join(ROOT, "topologies", "inter_domain.yaml")
# Per domain: (OpenFlow port, REST port).
PORTS = {"domain-a": (16663, 18090), "domain-b": (16664, 18091)}


def inter_domain_raw() -> dict:
    """inter_domain.yaml as parsed YAML, its credentials files' paths made
    absolute (so it can be written anywhere)."""
    raw = yaml.safe_load(open(INTER_DOMAIN, encoding="utf-8"))
    base = os.path.dirname(INTER_DOMAIN)
    for table in ("domains", "mobile_nodes"):
        for entry in raw[table].values():
            if "credentials" in entry:
                entry["credentials"] = os.path.join(base, entry["credentials"])
    return raw


def add_third_domain(raw: dict, pht: bool, linked_to=("core-a", "core-b")) -> dict:
    """domain-c in ``raw``: one switch, core-c (with a pht_port if ``pht``),
    the AR of net-c1 (10.3.1.0/24), linked to each of ``linked_to``."""
    raw["domains"]["domain-c"] = {"name": "Operator C",
                                  "controller": {"openflow_port": 6655, "rest_port": 8082}}
    raw["switches"]["core-c"] = {"dpid": 0x30, "domain": "domain-c",
                                 **({"pht_port": 100} if pht else {})}
    raw["links"] += [[f"{switch}:8", f"core-c:{8 + i}"] for i, switch in enumerate(linked_to)]
    raw["networks"]["net-c1"] = {"domain": "domain-c", "prefix": "10.3.1.0/24",
                                 "gateway": "10.3.1.1", "access_router": "core-c",
                                 "pool": "10.3.1.100-10.3.1.199", "poas": {"ap-c1-1": "core-c:3"}}
    return raw


def write_topology(path, ports=None, raw=None) -> str:
    """``raw`` (default: inter_domain_raw()) with each domain's controller on
    ``ports`` (domain -> (OpenFlow port, REST port); default PORTS), written
    to ``path``."""
    raw = raw or inter_domain_raw()
    for domain, (ofp_port, rest_port) in (ports or PORTS).items():
        raw["domains"][domain]["controller"] = {"openflow_port": ofp_port,
                                                "rest_port": rest_port}
    with open(path, "w", encoding="utf-8") as out:
        yaml.safe_dump(raw, out, sort_keys=False)
    return str(path)


@contextlib.contextmanager
def running_domain_controllers(log_dir, config: str):
    """domain -> its controller process (``--domain``), REST beyond loopback
    (the MN reaches it over its management link), log and state file
    ``controller-DOMAIN``.  Each stops cleanly, or was stopped by a test."""
    from mpa_lab.net.controller_process import ControllerProcess
    controllers = {}
    try:
        for domain, (ofp_port, rest_port) in PORTS.items():
            controllers[domain] = process = ControllerProcess(
                config, ofp_port=ofp_port, rest_port=rest_port, rest_host="0.0.0.0",
                state_db=str(log_dir / f"controller-{domain}.db"),
                log_path=str(log_dir / f"controller-{domain}.log"), domain=domain,
                log_level=os.environ.get("MPA_TEST_LOG_LEVEL", "INFO"))
            process.start()
        yield controllers
    finally:
        stopped = {domain: process.stop() for domain, process in controllers.items()}
        for process in controllers.values():
            process.close()
    # None: a test stopped (or killed) it itself.
    assert all(rc in (0, None) for rc in stopped.values()), \
        f"a controller did not stop cleanly: {stopped} (see {log_dir})"


@contextlib.contextmanager
def running_domain_lab(controllers, topology, **options):
    """The Mininet lab, each switch on its domain's controller, and every
    switch connected to it and reconciled."""
    from mininet.log import setLogLevel
    from mpa_lab.net.lab import Lab
    setLogLevel("error")
    lab = Lab(topology, controllers={d: ("127.0.0.1", c.ofp_port)
                                     for d, c in controllers.items()}, **options)
    try:
        lab.start()
        for domain, controller in controllers.items():
            controller.wait_switches(ids=lab.switches_of(domain))
        yield lab
    finally:
        lab.stop()


def domain_lab_fixtures(fresh: str | None = None):
    """Module fixtures ``topology_file`` (inter_domain.yaml on PORTS),
    ``topology``, ``controllers`` (running_domain_controllers) and ``lab``
    (running_domain_lab with management links, for mpa-mn's REST requests).
    Assign all four to module names.  ``fresh``: the controllers' state files
    and logs in that directory of the logs, not those of earlier modules."""
    import pytest

    @pytest.fixture(scope="module", name="topology_file")
    def topology_file(tmp_path_factory) -> str:
        return write_topology(tmp_path_factory.mktemp("topology") / "inter_domain.yaml")

    @pytest.fixture(scope="module", name="topology")
    def topology(topology_file):
        from mpa_sdn.config import load_topology
        return load_topology(topology_file)

    @pytest.fixture(scope="module", name="controllers")
    def controllers(prerequisites, log_dir, topology_file):
        where = log_dir
        if fresh is not None:
            where = log_dir / fresh
            where.mkdir(exist_ok=True)
        with running_domain_controllers(where, topology_file) as controllers:
            yield controllers

    @pytest.fixture(scope="module", name="lab")
    def lab(controllers, topology):
        with running_domain_lab(controllers, topology, management=True) as lab:
            yield lab
    return topology_file, topology, controllers, lab


def domain_mpa_mn(lab, mn: str, state_dir, *args: str, timeout_s: float | None = None,
                  channel: str = "inband") -> tuple[int, list[dict]]:
    """``mpa-mn --json --channel CHANNEL ARGS`` in ``mn``'s host, REST to each
    network's domain's controller, killed if it outlives ``timeout_s`` (exit
    137): (exit status, the JSON documents it printed, at least one)."""
    import shlex
    from mpa_lab.experiment.preconfigure import mpa_mn_command
    command = mpa_mn_command(lab, mn, PORTS["domain-a"][1], str(state_dir / f"{mn}.json"),
                             channel, *args,
                             domain_rest_ports={d: rest for d, (_, rest) in PORTS.items()})
    if timeout_s is not None:
        command = ["timeout", "-s", "KILL", str(timeout_s), *command]
    out = lab.host(mn).cmd(" ".join(shlex.quote(c) for c in command) +
                           " 2>/dev/null; echo rc=$?")
    output, _, rc = out.rpartition("rc=")
    return int(rc.strip()), json_documents(output)


def json_documents(output: str) -> list[dict]:
    """The JSON documents ``output`` holds one after another (``handover``
    prints its ready event before its result); what is not JSON ends the
    list as ``{"unparsed": ...}``; nothing at all is one empty document."""
    decoder, documents, at = json.JSONDecoder(), [], 0
    text = output.strip()
    while at < len(text):
        try:
            document, at = decoder.raw_decode(text, at)
        except ValueError:
            documents.append({"unparsed": text[at:][-600:]})
            break
        documents.append(document)
        while at < len(text) and text[at].isspace():
            at += 1
    return documents or [{}]


def nft_tables(host) -> list[str]:
    """The names of the nftables tables in ``host``'s namespace."""
    listed = host.cmd("nft list tables")
    return [words[-1] for words in map(str.split, listed.splitlines())
            if words[:1] == ["table"]]


def udp_no_ports(host) -> int:
    """UDP datagrams ``host``'s kernel refused for want of a listener
    (``Udp: NoPorts`` of its namespace's /proc/net/snmp)."""
    header, values = [line.split() for line in host.cmd("cat /proc/net/snmp").splitlines()
                      if line.startswith("Udp:")][:2]
    return int(values[header.index("NoPorts")])

"""The lab of one controller per administrative domain for integration
tests: topologies/inter_domain.yaml on ports apart from the defaults (and
from lab_rig's), a controller process per domain (``--domain ID``) and the
Mininet lab with each switch on its own domain's controller."""

import contextlib
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

"""Benchmark: pre-authentication (Tauth) and pre-configuration (Tconf) with one CTN.

Tauth is one PANA session (RFC 5191 with RFC 5873's E flag): the PCI to the
final PANA-Auth-Answer, EAP relayed by the AA to the domain's RADIUS server,
a real FreeRADIUS; Tconf is the config-request and its answer (the nCoA).
RFC 6252 C.5.3 reports 177 ms and 16 ms on its testbed (EAP-TLS, an AAA server
across the network).  Both EAP methods the MN speaks: EAP-TLS and EAP-TTLS
with PAP.  Modes:

``core``
    One process: the controller's core (its PANA agent and CA, the SQLite
    state file on disk), the MN's PaC and EAP peer, and the AA's RADIUS
    datagrams over the loopback to a FreeRADIUS the benchmark starts.
    Tauth splits into the time in the controller's core, in the MN's PaC and
    EAP peer, and waiting for FreeRADIUS.  Each run is a new client (another
    MAC) leasing a new address; the lease is released after it, untimed.
``lab``
    From the MN: the real controller process, OVS, Mininet and one
    FreeRADIUS per domain, as ``mpa-lab`` starts them; ``mpa-mn``'s library
    inside mn1 times Tauth and Tconf (the same MN each time: a new MPA-SA,
    its lease renewed), Tconf over each channel (REST over the MN's
    management link, in-band as UDP through the switches).  Needs root.
``domains``
    As ``lab``, on topologies/inter_domain.yaml with one controller and one
    FreeRADIUS per domain: mn1 in net-a1 (domain-a) gets ready for net-a2
    (its own domain) and net-b1 (domain-b's, PANA routed across the border).
    Needs root.

Writes JSON to ``--out`` and prints a Markdown table.  Run:

    .venv/bin/python benchmarks/preauth.py core --runs 300 --out results/bench/preauth-core.json
    .venv/bin/python benchmarks/preauth.py lab --runs 300 --out results/bench/preauth-lab.json
    .venv/bin/python benchmarks/preauth.py domains --runs 300 \
        --out results/bench/preauth-domains.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time

from common import ROOT, TOPOLOGY, stamped, unwind_on_sigterm, write  # noqa: E402

sys.path.insert(0, os.path.join(ROOT, "tests"))

from mpa_mn import protocol  # noqa: E402
from mpa_mn.credentials import EAP_TLS, EAP_TTLS_PAP, DomainCredentials  # noqa: E402
from mpa_mn.eap_peer import EapPeer  # noqa: E402
from mpa_mn.pana_client import PanaClient  # noqa: E402
from mpa_sdn.config import load_topology  # noqa: E402
from mpa_sdn.controller import Controller  # noqa: E402
from mpa_sdn.pana_agent import PanaReply  # noqa: E402
from mpa_sdn.radius_client import Datagram, RadiusServer  # noqa: E402
from mpa_sdn.service import INBAND, REST, Origin  # noqa: E402
from mpa_sdn.store import SqliteStore  # noqa: E402
from support.service_rig import reconcile_all  # noqa: E402

NETWORK, DOMAIN, IDENTITY = "net-b1", "domain-b", "mn1@domain-a"
METHODS = (EAP_TLS, EAP_TTLS_PAP)
RADIUS_PORT = 28122     # the benchmark's FreeRADIUS, apart from the lab's


def percentiles(samples_ms: list[float]) -> dict:
    ordered = sorted(samples_ms)
    q = statistics.quantiles(ordered, n=100, method="inclusive")
    return {"runs": len(ordered), "p50_ms": round(q[49], 3), "p99_ms": round(q[98], 3),
            "max_ms": round(ordered[-1], 3), "mean_ms": round(statistics.fmean(ordered), 3)}


def _ready(core: Controller, now: float) -> None:
    """Every switch connected and reconciled, and the CA's reserve probed."""
    reconcile_all(core, now)
    for step in range(20):
        core.mpa_tick(now + step * 0.1)


class Timed:
    """Where a run's time goes: the controller's core, the MN, FreeRADIUS."""

    def __init__(self):
        self.core = self.mn = self.radius = 0.0

    def spend(self, part: str, call, *args):
        started = time.perf_counter()
        try:
            return call(*args)
        finally:
            setattr(self, part, getattr(self, part) + time.perf_counter() - started)


def _pana_run(core: Controller, sock, client: PanaClient, mac: str, clock: float,
              timed: Timed) -> None:
    """One PANA session between ``client`` and the core, in this process;
    the core's RADIUS datagrams over ``sock`` to FreeRADIUS and back."""
    origin = Origin(INBAND, "10.1.1.10", NETWORK, mac)
    pending = timed.spend("core", core.mpa.pana, timed.spend("mn", client.initiation), origin,
                          40716, clock)
    while pending and not client.done:
        out = pending.pop(0)
        if isinstance(out, Datagram):
            sock.sendto(out.data, (out.address, out.port))
            answer, source = timed.spend("radius", sock.recvfrom, 4096)
            pending += timed.spend("core", core.mpa.radius, answer, source, clock)
        elif isinstance(out, PanaReply):
            answer = timed.spend("mn", client.receive, out.data)
            if answer is not None:
                pending += timed.spend("core", core.mpa.pana, answer, origin, 40716, clock)
    if client.result != "success":
        raise RuntimeError(f"pre-authentication failed: {client.result}")


def bench_core(runs: int) -> dict:
    import socket

    from mpa_lab.aaa.domain import DomainAaa, running

    topology = load_topology(TOPOLOGY)
    results = {"mode": "core"}
    with tempfile.TemporaryDirectory() as directory:
        spec = DomainAaa(DOMAIN, "127.0.0.1", RADIUS_PORT, "127.0.0.1",
                         tls_identities=(IDENTITY,), passwords={IDENTITY: "bench-password"})
        with running([spec], os.path.join(directory, "aaa")) as prepared, \
                socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            aaa = prepared[DOMAIN]
            sock.bind(("127.0.0.1", 0))
            sock.settimeout(5.0)
            password = os.path.join(directory, "password")
            with open(password, "w", encoding="utf-8") as f:
                f.write("bench-password\n")
            os.chmod(password, 0o600)
            issued = aaa.clients[IDENTITY]
            credentials = {
                EAP_TLS: DomainCredentials(IDENTITY, EAP_TLS, aaa.pki.ca, certificate=issued.cert,
                                           private_key=issued.key),
                EAP_TTLS_PAP: DomainCredentials(IDENTITY, EAP_TTLS_PAP, aaa.pki.ca,
                                                password_file=password)}
            secret = aaa.secret_file.read_bytes().split(b"\n")[0]
            for method in METHODS:
                store = SqliteStore(os.path.join(directory, f"state-{method}.db"))
                core = Controller(topology, store=store, wall_offset=time.time(),
                                  radius_servers={DOMAIN: [RadiusServer("127.0.0.1", RADIUS_PORT,
                                                                        secret)]})
                _ready(core, 0.0)
                results[method] = _core_runs(core, sock, credentials[method], runs)
                store.close()
    return results


def _core_runs(core: Controller, sock, credentials: DomainCredentials, runs: int) -> dict:
    answers = []
    origin = Origin(REST, "172.31.0.2", NETWORK, reply_to=answers.append)

    def call(data: bytes, expect: tuple, clock: float) -> bytes:
        answers.clear()
        for item in core.signal(data, origin, expect, clock):
            item.origin.reply_to(item)
        assert len(answers) == 1 and answers[0].status == 200, answers
        return answers[0].body

    samples = {"tauth": [], "tauth_core": [], "tauth_mn": [], "tauth_radius": [], "tconf": []}
    clock = 10.0
    for index in range(runs):
        # Each run from another MAC: a new client of the CA, as when many
        # MNs get ready one after the other.
        mac = "02:00:%02x:%02x:%02x:%02x" % tuple(index.to_bytes(4, "big"))
        timed = Timed()
        client = PanaClient(EapPeer(credentials.identity, credentials.eap_method()), True)
        started = time.perf_counter()
        _pana_run(core, sock, client, mac, clock, timed)
        samples["tauth"].append((time.perf_counter() - started) * 1000)
        for part in ("core", "mn", "radius"):
            samples[f"tauth_{part}"].append(getattr(timed, part) * 1000)
        sa_id, sa_keys = client.established.sa(credentials.identity, NETWORK)
        state = protocol.SaState(NETWORK, DOMAIN, credentials.identity, mac, sa_id, sa_keys,
                                 client.established.lifetime)
        request, seq = protocol.request(state, "config-request")
        started = time.perf_counter()
        config = call(request, ("config-request",), clock)
        samples["tconf"].append((time.perf_counter() - started) * 1000)
        protocol.check_answer(state, config, seq, "config")
        call(protocol.request(state, "release", scope="all")[0], ("release",), clock)
        # The controller's timer runs between runs (untimed), as if the runs
        # came 0.4 s apart: DAD probes the next free addresses.
        for _ in range(4):
            clock += 0.1
            core.mpa_tick(clock)
    return {name: percentiles(values) for name, values in samples.items()}


def _credentials_files(topology, mn: str = "mn1") -> dict:
    """The MN's credentials files the lab writes: EAP-TLS, and EAP-TTLS/PAP beside it."""
    from mpa_lab.aaa.lab_servers import ttls_path
    path = topology.mobile_nodes[mn].credentials
    return {EAP_TLS: path, EAP_TTLS_PAP: ttls_path(path)}


def bench_lab(runs: int, ofp_port: int, rest_port: int) -> dict:
    from mininet.log import setLogLevel

    from mpa_lab.aaa.lab_servers import LabAaa
    from mpa_lab.net.controller_process import ControllerProcess
    from mpa_lab.net.lab import Lab

    if os.geteuid() != 0:
        sys.exit("benchmarks/preauth.py lab needs root")
    setLogLevel("error")
    unwind_on_sigterm()
    topology = load_topology(TOPOLOGY)
    results = {"mode": "lab"}
    with tempfile.TemporaryDirectory() as directory, LabAaa(topology):
        controller = ControllerProcess(TOPOLOGY, ofp_port=ofp_port, rest_port=rest_port,
                                       rest_host="0.0.0.0",
                                       state_db=os.path.join(directory, "state.db"),
                                       log_path=os.path.join(directory, "controller.log"),
                                       log_level="WARNING")
        lab = Lab(topology, controller_port=ofp_port, management=True)
        with controller, lab:
            controller.wait_switches()
            host = lab.host("mn1")
            root_ip, _ = lab.management_addresses("mn1")
            rest = ["--controller", f"http://{root_ip}:{rest_port}"]
            for method, credentials in _credentials_files(topology).items():
                for channel in ("rest", "inband"):
                    results[f"{method} {channel}"] = _mn_runs(host, channel, NETWORK, runs,
                                                              rest, credentials)
    return results


def _mn_runs(host, channel: str, network: str, runs: int, rest: list[str],
             credentials: str) -> dict:
    """preauth_mn.py inside the MN's host: Tauth and Tconf percentiles (ms)."""
    out = host.cmd(
        sys.executable, os.path.join(ROOT, "benchmarks", "preauth_mn.py"),
        "--channel", channel, "--runs", str(runs), "--network", network, *rest,
        "--credentials", credentials, "--interface", host.defaultIntf().name, "2>&1")
    try:
        samples = json.loads(out.strip().splitlines()[-1])
        return {name: percentiles(values) for name, values in samples.items()}
    except (ValueError, IndexError, KeyError):
        raise RuntimeError(f"{network} {channel} run failed: {out[-2000:]}") from None


INTER_DOMAIN = os.path.join(ROOT, "topologies", "inter_domain.yaml")
# Each domain's (OpenFlow, REST) ports: apart from the defaults and the tests'.
DOMAIN_PORTS = {"domain-a": (26663, 28090), "domain-b": (26664, 28091)}


def _per_domain_topology(directory: str) -> str:
    """inter_domain.yaml with each domain's controller on DOMAIN_PORTS."""
    import yaml
    with open(INTER_DOMAIN, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    for domain, (ofp, rest) in DOMAIN_PORTS.items():
        raw["domains"][domain]["controller"] = {"openflow_port": ofp, "rest_port": rest}
    path = os.path.join(directory, "inter_domain.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return path


def bench_domains(runs: int) -> dict:
    import contextlib

    from mininet.log import setLogLevel

    from mpa_lab.aaa.lab_servers import LabAaa
    from mpa_lab.net.controller_process import ControllerProcess
    from mpa_lab.net.lab import Lab

    if os.geteuid() != 0:
        sys.exit("benchmarks/preauth.py domains needs root")
    setLogLevel("error")
    unwind_on_sigterm()
    results = {"mode": "domains"}
    with tempfile.TemporaryDirectory() as directory, contextlib.ExitStack() as stack:
        config = _per_domain_topology(directory)
        topology = load_topology(config)
        stack.enter_context(LabAaa(topology))
        controllers = {}
        for domain, (ofp, rest) in DOMAIN_PORTS.items():
            controllers[domain] = stack.enter_context(ControllerProcess(
                config, ofp_port=ofp, rest_port=rest, rest_host="0.0.0.0", domain=domain,
                state_db=os.path.join(directory, f"state-{domain}.db"),
                log_path=os.path.join(directory, f"controller-{domain}.log"),
                log_level="WARNING"))
        lab = stack.enter_context(Lab(topology, management=True, controllers={
            d: ("127.0.0.1", ofp) for d, (ofp, _) in DOMAIN_PORTS.items()}))
        for domain, controller in controllers.items():
            controller.wait_switches(ids=lab.switches_of(domain))
        host = lab.host("mn1")
        root_ip, _ = lab.management_addresses("mn1")
        rest = ["--controller", f"http://{root_ip}:{DOMAIN_PORTS['domain-a'][1]}",
                "--domain-controller", f"domain-b=http://{root_ip}:{DOMAIN_PORTS['domain-b'][1]}"]
        for method, credentials in _credentials_files(topology).items():
            for network, where in (("net-a2", "own domain"), ("net-b1", "other domain")):
                results[f"{method} {network}"] = {
                    "where": where, **_mn_runs(host, "inband", network, runs, rest, credentials)}
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("mode", choices=["core", "lab", "domains"])
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--out", help="write the results as JSON here")
    parser.add_argument("--ofp-port", type=int, default=26653)
    parser.add_argument("--rest-port", type=int, default=28080)
    args = parser.parse_args()
    result = (bench_core(args.runs) if args.mode == "core" else
              bench_domains(args.runs) if args.mode == "domains" else
              bench_lab(args.runs, args.ofp_port, args.rest_port))
    result = stamped(result)
    if args.out:
        write(args.out, result)
    print("| measured | runs | p50 (ms) | p99 (ms) | max (ms) |")
    print("|---|---|---|---|---|")
    if args.mode == "core":
        names = {"tauth": "Tauth (PCI to the final PAN)", "tauth_core": "  of which the core",
                 "tauth_mn": "  of which the MN's PaC and EAP peer",
                 "tauth_radius": "  of which waiting for FreeRADIUS",
                 "tconf": "Tconf (config-request, the controller's side)"}
        rows = [(f"{method}: {names[k]}", v) for method in METHODS
                for k, v in result[method].items()]
    else:
        rows = [(f"from mn1, {key}: {step}", value[step]) for key, value in result.items()
                if isinstance(value, dict) and "tauth" in value for step in ("tauth", "tconf")]
    for name, p in rows:
        print(f"| {name} | {p['runs']} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: pre-authentication + pre-configuration with one CTN.

One run is what an MN does to get ready for one candidate target network:
auth-init, auth-response (the MPA-SA and its keys) and config-request (its
nCoA).  Two ways of measuring:

``core``
    The controller side alone: the time spent in the core's handler (the
    code the Ryu app runs, REST channel origin), with the SQLite state file
    on disk, as the controller writes it.  Each run is a new client (another
    MAC) leasing a new address; the lease is released after it, untimed.
    No network, no root.
``lab``
    From the MN: the real controller process, OVS and Mininet; ``mpa-mn``'s
    library inside mn1 times each run over each channel (the same MN each
    time: a new MPA-SA, its lease renewed) (REST over the MN's
    management link, in-band as UDP through the switches).  Needs root.
``domains``
    As ``lab``, on topologies/inter_domain.yaml with one controller per
    domain (``--domain``): mn1 in net-a1 (domain-a) gets ready for net-a2
    (its own domain's controller) and for net-b1 (domain-b's, across the
    border: in-band routed through both domains, REST to domain-b's API).
    Needs root.

Writes JSON to ``--out`` and prints a Markdown table.  Run:

    .venv/bin/python benchmarks/preauth.py core --runs 1000 --out results/bench/preauth-core.json
    .venv/bin/python benchmarks/preauth.py lab --runs 1000 --out results/bench/preauth-lab.json
    .venv/bin/python benchmarks/preauth.py domains --runs 1000 \
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
from mpa_protocol.credentials import load_mn_credentials  # noqa: E402
from mpa_sdn.config import load_stores, load_topology  # noqa: E402
from mpa_sdn.controller import Controller  # noqa: E402
from mpa_sdn.service import REST, Origin  # noqa: E402
from mpa_sdn.store import SqliteStore  # noqa: E402
from support.service_rig import reconcile_all  # noqa: E402

MN_CREDENTIALS = os.path.join(ROOT, "topologies", "credentials", "mn1.yaml")
NETWORK, DOMAIN = "net-b1", "domain-b"


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


def bench_core(runs: int) -> dict:
    topology = load_topology(TOPOLOGY)
    identity, psk = load_mn_credentials(MN_CREDENTIALS).for_domain(DOMAIN)
    with tempfile.TemporaryDirectory() as directory:
        store = SqliteStore(os.path.join(directory, "state.db"))
        core = Controller(topology, credentials=load_stores(topology), store=store,
                          wall_offset=time.time())
        _ready(core, 0.0)
        answers = []
        origin = Origin(REST, "172.31.0.2", NETWORK, reply_to=answers.append)

        def call(data: bytes, expect: tuple) -> bytes:
            answers.clear()
            for item in core.signal(data, origin, expect, clock):
                item.origin.reply_to(item)
            assert len(answers) == 1 and answers[0].status == 200, answers
            return answers[0].body

        totals, per_message = [], {"auth-init": [], "auth-response": [], "config-request": []}
        clock = 10.0
        for index in range(runs):
            # Each run from another MAC: a new client of the CA, as when many
            # MNs get ready one after the other (one MAC would get its last
            # address back, after probing it again, since it never used it).
            mac = "02:00:%02x:%02x:%02x:%02x" % tuple(index.to_bytes(4, "big"))
            run = protocol.PreAuthentication(identity, psk, NETWORK, mac)
            spent = 0.0
            init = run.init()
            t = time.perf_counter()
            challenge = call(init, ("auth-init",))
            spent += (d := time.perf_counter() - t)
            per_message["auth-init"].append(d * 1000)
            response = run.response(challenge)
            t = time.perf_counter()
            success = call(response, ("auth-response",))
            spent += (d := time.perf_counter() - t)
            per_message["auth-response"].append(d * 1000)
            state = run.finish(success, DOMAIN)
            request, seq = protocol.request(state, "config-request")
            t = time.perf_counter()
            config = call(request, ("config-request",))
            spent += (d := time.perf_counter() - t)
            per_message["config-request"].append(d * 1000)
            protocol.check_answer(state, config, seq, "config")
            totals.append(spent * 1000)
            call(protocol.request(state, "release")[0], ("release",))
            # The controller's timer runs between runs (untimed), as if the
            # runs came 0.4 s apart: WAL checkpoints of the state file, and
            # DAD probing the next free addresses (a released address the MN
            # never used in the network is probed again before it is reused).
            for _ in range(4):
                clock += 0.1
                core.mpa_tick(clock)
        store.close()
    return {"mode": "core", "total": percentiles(totals),
            "messages": {k: percentiles(v) for k, v in per_message.items()}}


def bench_lab(runs: int, ofp_port: int, rest_port: int) -> dict:
    from mininet.log import setLogLevel

    from mpa_lab.net.controller_process import ControllerProcess
    from mpa_lab.net.lab import Lab

    if os.geteuid() != 0:
        sys.exit("benchmarks/preauth.py lab needs root")
    setLogLevel("error")
    unwind_on_sigterm()
    topology = load_topology(TOPOLOGY)
    results = {"mode": "lab"}
    with tempfile.TemporaryDirectory() as directory:
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
            for channel in ("rest", "inband"):
                rest = ["--controller", f"http://{root_ip}:{rest_port}"]
                results[channel] = percentiles(_mn_runs(host, channel, NETWORK, runs, rest))
    return results


def _mn_runs(host, channel: str, network: str, runs: int, rest: list[str]) -> list[float]:
    """preauth_mn.py inside the MN's host: its run times (ms)."""
    out = host.cmd(
        sys.executable, os.path.join(ROOT, "benchmarks", "preauth_mn.py"),
        "--channel", channel, "--runs", str(runs), "--network", network, *rest,
        "--credentials", MN_CREDENTIALS, "--interface", host.defaultIntf().name, "2>&1")
    try:
        return json.loads(out.strip().splitlines()[-1])
    except (ValueError, IndexError):
        raise RuntimeError(f"{network} {channel} run failed: {out[-2000:]}") from None


INTER_DOMAIN = os.path.join(ROOT, "topologies", "inter_domain.yaml")
# Each domain's (OpenFlow, REST) ports: apart from the defaults and the tests'.
DOMAIN_PORTS = {"domain-a": (26663, 28090), "domain-b": (26664, 28091)}


def _per_domain_topology(directory: str) -> str:
    """inter_domain.yaml with each domain's controller on DOMAIN_PORTS."""
    import yaml
    with open(INTER_DOMAIN, encoding="utf-8") as f:
        raw = yaml.safe_load(f)
    base = os.path.dirname(INTER_DOMAIN)
    for table in ("domains", "mobile_nodes"):
        for entry in raw[table].values():
            if "credentials" in entry:
                entry["credentials"] = os.path.join(base, entry["credentials"])
    for domain, (ofp, rest) in DOMAIN_PORTS.items():
        raw["domains"][domain]["controller"] = {"openflow_port": ofp, "rest_port": rest}
    path = os.path.join(directory, "inter_domain.yaml")
    with open(path, "w", encoding="utf-8") as f:
        yaml.safe_dump(raw, f, sort_keys=False)
    return path


def bench_domains(runs: int) -> dict:
    import contextlib

    from mininet.log import setLogLevel

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
        for network, where in (("net-a2", "own domain"), ("net-b1", "other domain")):
            for channel in ("rest", "inband"):
                results[f"{network} {channel}"] = {
                    "where": where, **percentiles(_mn_runs(host, channel, network, runs, rest))}
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
        rows = [("controller side, all three messages", result["total"])] + \
            [(f"controller side, {k}", v) for k, v in result["messages"].items()]
    elif args.mode == "domains":
        rows = [(f"from mn1 in net-a1 to {k} ({v['where']})", v)
                for k, v in result.items() if isinstance(v, dict) and "where" in v]
    else:
        rows = [(f"from the MN, {ch}", result[ch]) for ch in ("rest", "inband")]
    for name, p in rows:
        print(f"| {name} | {p['runs']} | {p['p50_ms']} | {p['p99_ms']} | {p['max_ms']} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())

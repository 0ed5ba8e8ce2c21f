"""``mpa-lab``: bring up the lab with the real controller, check it, tear it down.

    mpa-lab run [SCENARIO] [--out DIR] [--check] the handover experiment: every mode of the
                                                 scenario (default: topologies/scenarios/demo.yaml) in the
                                                 lab, results.json, a table and plots
    mpa-lab tour [--topology FILE] [--out DIR]   lab + controller, graph, MPA pre-authentication
                 [--per-domain]                  and pre-configuration, reachability
    mpa-lab up [--topology FILE] [--script FILE] lab + controller and Mininet's CLI,
               [--per-domain]                    with `move [--link-only] MN POA`
                                                 and `poas`
                                                 --per-domain: a controller per
                                                 administrative domain
    mpa-lab graph [--topology FILE]              print the CTN neighbourhood graph
    mpa-lab cleanup                              remove what a crashed run left behind
"""

from __future__ import annotations

import argparse
import os
import signal
import sys
import time
from importlib import resources

from mpa_lab.net.link_layer import PER_STATION, POA_PORTS
from mpa_protocol import api_tokens
from mpa_sdn.config import load_or_exit
from mpa_sdn.neighbourhood import NeighbourhoodGraph

# The lab's files are the data package topologies/ (installed with its YAML by
# `pip install .`), so the defaults are found from any working directory, in a
# checkout, an editable install or an installed copy alike.  It is a plain
# directory on disk: a scenario names its topology relative to it.
LAB_FILES = resources.files("topologies")
DEFAULT_TOPOLOGY = str(LAB_FILES / "two_domains.yaml")
DEFAULT_SCENARIO = str(LAB_FILES / "scenarios" / "demo.yaml")


def print_graph(graph: NeighbourhoodGraph, out=None) -> None:
    topo = graph.topology
    w = (out or sys.stdout).write   # looked up now: a caller may have replaced it
    w("CTN neighbourhood graph\n\n")
    w(f"  {'network':<10} {'role':<13} {'domain':<10} {'prefix':<15} {'gateway':<11} "
      f"{'AR':<7} PoAs\n")
    for n in graph.networks():
        poas = ", ".join(f"{p.id} ({p.switch}:{p.port})" for p in n.poas)
        w(f"  {n.id:<10} {n.role:<13} {n.domain:<10} {str(n.prefix):<15} "
          f"{str(n.gateway):<11} {n.access_router:<7} {poas}\n")
    w("\n  Candidates (discovery, RFC 6252 section 7.1):\n")
    for n in graph.access_networks():
        for c in graph.candidates(n.id):
            l2 = f"{c.l2_handover_ms:g} ms" if c.l2_handover_ms is not None else "unknown"
            w(f"    {n.id} -> {c.network:<8} domain {c.domain:<9} AA {c.aa_address:<10} "
              f"CA {c.ca_address:<10} AR {c.ar_address} ({c.ar_switch}), L2 handover {l2}\n")
    w("\n  Switch links:\n")
    for link in sorted(topo.links, key=lambda l: (str(l.a), str(l.b))):
        w(f"    {link.a} -- {link.b}\n")
    w("\n")


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT tear the lab down (SIGINT even when a shell started
    us in the background with it ignored)."""
    def handler(signum, frame):
        raise KeyboardInterrupt
    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _run_lab(args, body, log_level: str = "error") -> int:
    """Controller(s) and lab up, ``body(lab, controllers)``, then all down,
    whatever happens.  ``controllers``: one, or with ``--per-domain`` one per
    administrative domain (``mpa-controller --domain ID``), each switch on
    its own domain's."""
    from mininet.log import setLogLevel

    from mpa_lab.aaa.lab_servers import LabAaa

    topology = load_or_exit(args.topology)
    per_domain = args.per_domain
    lab, problem = _lab_or_problem(args, topology)
    if problem:
        print(f"mpa-lab {args.command}: {problem}", file=sys.stderr)
        return 2
    if os.geteuid() != 0:
        print(f"mpa-lab {args.command} needs root (Mininet creates namespaces and veths)",
              file=sys.stderr)
        return 2
    os.makedirs(args.out, exist_ok=True)
    controllers = (_domain_controllers(args, topology) if per_domain
                   else [_controller(args, topology)])
    _stop_on_signals()
    setLogLevel(log_level)
    aaa = LabAaa(topology)
    try:
        print(f"Topology {args.topology}")
        started = time.monotonic()
        _start_aaa(aaa)
        for controller in controllers:
            controller.start()
            print(f"{_whose(controller)} up: OpenFlow on :{controller.ofp_port}, REST on "
                  f"{controller.base_url}/mpa/v1 (log: {controller.log_path})")
            token = write_admin_token(controller, args.out)
            print(f"  its admin API token is in {token}: curl -H \"Authorization: Bearer "
                  f"$(cat {token})\" {controller.base_url}/mpa/v1/switches")
        lab.start()
        for controller in controllers:
            controller.wait_switches(ids=lab.switches_of(controller.domain))
        print(f"Lab up: {len(lab.controller_of)} switches connected and reconciled, hosts "
              f"{', '.join(sorted(h.name for h in lab.net.hosts))} "
              f"({time.monotonic() - started:.1f} s)", flush=True)
        if per_domain:
            _print_domain_apis(lab, topology, controllers)
        print(flush=True)
        return body(lab, controllers)
    except KeyboardInterrupt:
        print("\ninterrupted; tearing down", file=sys.stderr)
        return 130
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        print(f"\nmpa-lab {args.command}: {exc}; tearing down", file=sys.stderr)
        return 1
    finally:
        lab.stop()
        for controller in controllers:
            controller.close()
        aaa.stop()
        print(f"Lab, controller{'s' * (len(controllers) > 1)} and AAA servers stopped"
              + (f" (their logs: {', '.join(aaa.log_paths())})" if aaa.servers else "") + ".")


def _lab_or_problem(args, topology):
    """(the lab, unstarted, None), or (None, why it cannot be built)."""
    from mpa_lab.net.lab import Lab

    if args.per_domain and (problem := _per_domain_problem(args, topology)):
        return None, problem
    # Before anything starts: a topology the lab cannot build is a mistake
    # in the file (a switch of no domain, tunnels OVS cannot route).
    try:
        return Lab(topology, controller_port=_ofp_port(args, topology), management=True,
                   controllers=_domain_ofp_ports(topology) if args.per_domain else None,
                   link_layer_ms=args.link_layer_ms, poa_ports=args.poa_ports), None
    except ValueError as exc:
        return None, str(exc)


def _start_aaa(aaa) -> None:
    """The domains' AAA servers, before any controller: the controllers read
    the secrets the servers are given, and relay to them from the first
    pre-authentication on."""
    aaa.start()
    for line in aaa.describe():
        print(f"{line} up", flush=True)


def _print_domain_apis(lab, topology, controllers) -> None:
    """Where each MN reaches each domain's REST API, over its management link."""
    print("Each domain's REST API from an MN, over its management link:")
    for mn in sorted(topology.mobile_nodes):
        root_ip, _ = lab.management_addresses(mn)
        print(f"  {mn}: mpa-mn " + " ".join(
            f"--domain-controller {c.domain}=http://{root_ip}:{c.rest_port}"
            for c in controllers))


def _controller(args, topology, domain: str | None = None, ofp_port: int | None = None,
                rest_port: int | None = None):
    """A controller for the run, its log and a fresh state file (SAs,
    leases) of its own in the run directory: ``controller.log`` and
    ``state.db``, or ``controller-ID.log`` and ``state-ID.db`` for a domain."""
    from mpa_lab.net.controller_process import ControllerProcess

    suffix = f"-{domain}" if domain else ""
    state_db = os.path.join(args.out, f"state{suffix}.db")
    for extension in ("", "-wal", "-shm"):
        if os.path.exists(state_db + extension):
            os.unlink(state_db + extension)
    # REST listens beyond loopback so that MNs reach it over their
    # management links (the lab's hosts live in their own namespaces).
    return ControllerProcess(
        args.topology, ofp_port=ofp_port or _ofp_port(args, topology),
        rest_port=rest_port or args.rest_port or topology.controller.rest_port,
        log_path=os.path.join(args.out, f"controller{suffix}.log"), rest_host="0.0.0.0",
        state_db=state_db, domain=domain)


def _per_domain_problem(args, topology) -> str | None:
    """Why ``--per-domain`` cannot run this topology with these options, or None."""
    if args.ofp_port or args.rest_port:
        return ("--per-domain takes each controller's ports from the topology's "
                "domains.ID.controller, not --ofp-port or --rest-port")
    missing = [f"domains.{did}.controller.{key}" for did in sorted(topology.domains)
               for key in ("openflow_port", "rest_port")
               if getattr(topology.domains[did].controller, key) is None]
    if missing:
        return ("--per-domain needs each domain's controller ports: " + ", ".join(missing)
                + " not given")
    return None


def _ofp_port(args, topology) -> int:
    """The one controller's OpenFlow port."""
    return args.ofp_port or topology.controller.openflow_port


def _domain_ofp_ports(topology) -> dict[str, tuple[str, int]]:
    """Each domain's controller's OpenFlow address, for the lab per domain."""
    return {did: ("127.0.0.1", domain.controller.openflow_port)
            for did, domain in topology.domains.items()}


def _domain_controllers(args, topology) -> list:
    """One controller per domain, on the ports its ``domains.ID.controller`` names."""
    return [_controller(args, topology, d, topology.domains[d].controller.openflow_port,
                        topology.domains[d].controller.rest_port)
            for d in sorted(topology.domains)]


def write_admin_token(controller, directory: str) -> str:
    """The controller's admin API token (made for its run: the API has no
    default credentials), in a file of ``directory`` only its owner reads, so
    that whoever runs the lab can call the API; the file's path."""
    name = f"api-token-{controller.domain}" if controller.domain else "api-token"
    path = os.path.join(directory, name)
    descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
        os.fchmod(handle.fileno(), 0o600)
        handle.write(controller.tokens[api_tokens.ADMIN] + "\n")
    return path


def _whose(controller) -> str:
    return f"Controller of {controller.domain}" if controller.domain else "Controller"


def tour(args) -> int:
    from mpa_lab.experiment.preconfigure import preconfigure
    from mpa_lab.net.reachability import all_pairs, print_report

    def body(lab, controllers):
        print_graph(lab.graph)
        print("Pre-authentication and pre-configuration (RFC 6252 section 6.3 steps 1-2):")
        mpa = preconfigure(lab, controllers[0].rest_port, args.out,
                           progress=lambda line: print(line, flush=True),
                           domain_rest_ports={c.domain: c.rest_port for c in controllers
                                              if c.domain} or None)
        for line in _sa_states(controllers):
            print(f"  {line}")
        print()
        results = all_pairs(lab, progress=lambda line: print(line, flush=True))
        print()
        reachable = print_report(results)
        # The tour attached mn1 to each CTN in turn (RFC 6252 C.2: authorized
        # where it is, held where it left).
        print("After the tour:")
        for line in _sa_states(controllers):
            print(f"  {line}")
        return 0 if reachable and mpa and all(r.ok for r in mpa) else 1
    return _run_lab(args, body)


def _sa_states(controllers) -> list[str]:
    """One line per controller: the MPA-SAs it holds."""
    lines = []
    for controller in controllers:
        sas = controller.get("/mpa/v1/sas")
        whose = f"{controller.domain}'s controller" if controller.domain else "The controller"
        lines.append(f"{whose}'s MPA-SAs: " + (", ".join(
            f"{s['identity']} for {s['network']} {s['state']}" for s in sas) or "none"))
    return lines


def up(args) -> int:
    from mpa_lab.net.lab_cli import LabCLI

    def body(lab, controllers):
        print("Mininet's CLI, plus: move MN POA (a link-layer handover; only the link when "
              "an mpa-mn in the MN waits for it, or with --link-only; --when-ready FILE "
              "waits for the client's ready event first), poas. Ctrl-D or exit tears the "
              "lab down.", flush=True)
        LabCLI(lab, script=args.script)
        return 0
    return _run_lab(args, body, log_level="output")


def run(args) -> int:
    from mpa_protocol.schema import ConfigError
    from mpa_lab.experiment.scenario import load_scenario

    try:
        scenario = load_scenario(args.scenario)
    except ConfigError as exc:
        for line in exc.lines():
            print(line, file=sys.stderr)
        return 2
    if scenario.per_domain and (args.ofp_port or args.rest_port):
        print("mpa-lab run: controllers: per-domain takes each controller's ports from the "
              "topology's domains.ID.controller, not --ofp-port or --rest-port",
              file=sys.stderr)
        return 2
    out = args.out or os.path.join("results", scenario.name)
    _print_plan(scenario, out)
    if args.check:
        return 0
    if os.geteuid() != 0:
        print("mpa-lab run needs root (Mininet creates namespaces and veths)", file=sys.stderr)
        return 2
    from mininet.log import setLogLevel

    from mpa_lab.experiment.runner import Experiment
    from mpa_lab.experiment.results import table
    from mpa_lab.experiment.run_log import describe

    _stop_on_signals()
    setLogLevel("error")
    settings = scenario.topology.controller
    experiment = Experiment(scenario, out, ofp_port=args.ofp_port or settings.openflow_port,
                            rest_port=args.rest_port or settings.rest_port)
    status = 0
    try:
        results = experiment.run()
    except KeyboardInterrupt:
        print("\ninterrupted; the lab is down", file=sys.stderr)
        results, status = experiment.results, 130
    except (OSError, RuntimeError, TimeoutError, ValueError) as exc:
        # The line says where it was raised; the log has the traceback.
        results, status = experiment.results, 1
        log = results.get("log")
        print(f"\nmpa-lab run: {results.get('stopped') or describe(exc)}; the lab is down"
              + (f" (traceback in {log})" if log else ""), file=sys.stderr)
    if not results:
        return status or 1
    print()
    print(table(results))
    failed = sum(m["summary"]["failed"] for m in results["modes"].values() if m["summary"])
    if failed:
        print(f"\n{failed} handover(s) failed: see results.json's errors and {out}/logs/")
        status = status or 1
    print(f"\nResults: {results.get('path', os.path.join(out, 'results.json'))}"
          + ("" if results.get("complete") else " (incomplete)"))
    if results.get("plots"):
        print("Plots:   " + "\n         ".join(results["plots"]))
    elif results.get("plots_error"):
        print(f"Plots:   none ({results['plots_error']})")
    return status


def _print_plan(scenario, out: str) -> None:
    from mpa_lab.experiment.runner import sessions

    handovers = sum(len(s.plan) for s in sessions(scenario))
    t = scenario.traffic
    print(f"Scenario {scenario.name} ({scenario.path})")
    if scenario.description:
        print(f"  {scenario.description}")
    print(f"  topology {scenario.topology_path}")
    unit = "records" if t.protocol == "tcp" else "packets"
    print(f"  traffic: {t.protocol.upper()} from {t.source}, {t.rate_pps} {unit}/s of "
          f"{t.size} bytes, to "
          + (", ".join(f"{m.id}'s home address" for m in scenario.mobile_nodes)
             if len(scenario.mobile_nodes) <= 3
             else f"each of {len(scenario.mobile_nodes)} MNs' home address"))
    domains = scenario.topology.domains
    if scenario.per_domain:
        print("  controllers: one per domain: " + ", ".join(
            f"{did} (OpenFlow :{domains[did].controller.openflow_port}, REST "
            f":{domains[did].controller.rest_port})" for did in sorted(domains)))
    else:
        print(f"  controllers: one, for {len(domains)} domain(s)")
    crossing = False
    for mode in scenario.modes:
        moves = scenario.moves(mode)
        marks = ["*" if scenario.domain_of_poa(here) != scenario.domain_of_poa(poa) else ""
                 for _, here, poa in moves]
        crossing = crossing or any(marks)
        together = (f" in {len(scenario.moments(mode))} moments, every MN at once"
                    if scenario.together else "")
        print(f"  {mode}: {len(moves)} handover(s){together} x {scenario.repetitions}: "
              + " ".join(f"{mn}->{poa}{mark}" for (mn, _, poa), mark in zip(moves[:6], marks))
              + (" ..." if len(moves) > 6 else ""))
    if crossing:
        print("  (* from one domain to another)")
    print(f"  {handovers} handovers in all; results in {out}/\n", flush=True)


def cleanup(args) -> int:
    from mininet.clean import cleanup as mininet_cleanup

    from mpa_lab.net.tunnel_setup import remove_routes_without_bridge
    mininet_cleanup()
    # The routes a lab per domain gave OVS outlive the bridges they name.
    removed = remove_routes_without_bridge()
    if removed:
        print(f"removed {removed} route(s) of Open vSwitch's whose bridge is gone")
    return 0


def _ensure_standard_fds() -> None:
    """Give closed standard descriptors /dev/null.

    Started with no standard input (as CI does), the next file Mininet opens
    would become descriptor 0 and its tools (ovs-vsctl) abort.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            opened = os.open(os.devnull, os.O_RDWR)  # the lowest free number: fd
            os.set_inheritable(opened, True)  # children (ovs-vsctl) need it too
    if sys.stdin is None:
        sys.stdin = open(os.devnull)


def main(argv=None) -> int:
    _ensure_standard_fds()
    parser = argparse.ArgumentParser(prog="mpa-lab", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="command", required=True)
    p = sub.add_parser("run", help="run a handover experiment: every mode of a scenario, "
                       "compared")
    p.add_argument("scenario", nargs="?", default=DEFAULT_SCENARIO,
                   help="the scenario file (default: the demo's)")
    p.add_argument("--out", help="where results.json, the plots and the logs go "
                   "(default: results/SCENARIO-NAME)")
    p.add_argument("--check", action="store_true",
                   help="check the scenario and print its plan; run nothing")
    p.add_argument("--ofp-port", type=int, help="default: the topology file's (one "
                   "controller only: per domain, each domain's controller ports)")
    p.add_argument("--rest-port", type=int, help="default: the topology file's (one "
                   "controller only)")
    p.set_defaults(run=run)
    for name, run_it, text in (
            ("tour", tour, "bring up the lab and the controller, pre-authenticate, check "
                           "reachability"),
            ("up", up, "bring up the lab and the controller, open Mininet's CLI")):
        p = sub.add_parser(name, help=text)
        p.add_argument("--topology", default=DEFAULT_TOPOLOGY)
        p.add_argument("--out", default=f"results/{name}", help="where the controller log goes")
        p.add_argument("--ofp-port", type=int, help="default: the topology file's")
        p.add_argument("--rest-port", type=int, help="default: the topology file's")
        p.add_argument("--per-domain", action="store_true",
                       help="one controller per administrative domain (mpa-controller "
                            "--domain ID, on the ports of the topology's "
                            "domains.ID.controller), each switch on its own domain's")
        p.add_argument("--link-layer-ms", type=float, metavar="MS",
                       help="hold the MN's link down this long at every move (default: the "
                            "topology's l2_handover_ms between the two networks, else 0)")
        p.add_argument("--poa-ports", choices=POA_PORTS, default=PER_STATION,
                       help="what a PoA's port does as MNs come and go: per_station (down "
                            "when its MN leaves) or stay_up (an access point's: up "
                            "throughout; mpa_lab/net/link_layer.py)")
        if name == "up":
            p.add_argument("--script", help="run these CLI commands instead of reading a terminal")
        p.set_defaults(run=run_it)
    p = sub.add_parser("graph", help="print the CTN neighbourhood graph of a topology")
    p.add_argument("--topology", default=DEFAULT_TOPOLOGY)
    p.set_defaults(run=lambda a: print_graph(NeighbourhoodGraph(load_or_exit(a.topology))) or 0)
    p = sub.add_parser("cleanup", help="remove switches and links a crashed run left behind")
    p.set_defaults(run=cleanup)
    args = parser.parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())

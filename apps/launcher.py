"""``mpa-controller``: validate the configuration, then run Ryu with our app.

Stock Ryu 4.34 does not start on Python 3.11; :mod:`apps.compat` restores
what it needs before anything imports Ryu's manager.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import signal
import socket
import sys

from apps import descriptors, logs
from mpa_protocol.schema import ConfigError
from mpa_sdn.config import CONTROLLER_FILES, load_or_exit, load_topology, missing_from_group
from mpa_sdn.domain_view import serve_domain

# The flags that override the controller: section, one row each:
# (key, flag, metavar, type, help).  The flag's value lands in args.<key>.
SETTING_FLAGS = (
    ("openflow_host", "--ofp-host", "HOST", str,
     "OpenFlow listen address (default: from the file, 0.0.0.0)"),
    ("openflow_port", "--ofp-port", "PORT", int, "OpenFlow listen port (default: 6653)"),
    ("rest_host", "--rest-host", "HOST", str, "REST listen address (default: 127.0.0.1)"),
    ("rest_port", "--rest-port", "PORT", int, "REST listen port (default: 8080)"),
    ("rest_tls_cert", "--rest-cert", "FILE", str,
     "serve REST over HTTPS with this PEM certificate chain (with --rest-key)"),
    ("rest_tls_key", "--rest-key", "FILE", str, "the REST certificate's PEM private key"),
    ("openflow_tls_cert", "--ofp-cert", "FILE", str,
     "serve OpenFlow over TLS only, with this PEM certificate chain (with --ofp-key and "
     "--ofp-ca)"),
    ("openflow_tls_key", "--ofp-key", "FILE", str, "the OpenFlow certificate's PEM private key"),
    ("openflow_tls_ca", "--ofp-ca", "FILE", str,
     "PEM certificate(s) of the CA that signs switch certificates"),
    ("api_tokens", "--api-tokens", "FILE", str,
     "the REST API's tokens file (without one, every call that needs a token is refused)"),
)
FLAGS = {key: flag for key, flag, *_ in SETTING_FLAGS}


def _arguments(argv):
    parser = argparse.ArgumentParser(
        prog="mpa-controller",
        description="MPA (RFC 6252) controller for OpenFlow 1.3 switches, on Ryu.")
    parser.add_argument("--config", metavar="FILE", help="topology file (YAML) to serve")
    parser.add_argument("--check-config", metavar="FILE",
                        help="validate FILE, print 'ok' or one line per error, exit 2 on errors")
    for key, flag, metavar, kind, text in SETTING_FLAGS:
        parser.add_argument(flag, dest=key, metavar=metavar, type=kind, help=text)
    parser.add_argument("--domain", metavar="ID",
                        help="serve this administrative domain alone: its switches, networks "
                             "and RADIUS servers; of the others only their networks' prefixes and "
                             "gateways (docs/inter-domain.md). Default: every domain")
    parser.add_argument("--state-db", metavar="FILE",
                        help="SQLite file for SAs and leases (default: from the file, "
                             "/var/lib/mpa-sdn/state.db; ':memory:' keeps nothing)")
    parser.add_argument("--log-level", default="INFO",
                        choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    parser.add_argument("--log-format", default="text", choices=logs.FORMATS,
                        help="log lines as text, or as JSON objects (one per line) with the "
                             "line's identity=, dpid=, ... tokens as fields (default: text)")
    args = parser.parse_args(argv)
    if not args.config and not args.check_config:
        parser.error("one of --config FILE or --check-config FILE is required")
    return args


def _with_overrides(topology, args):
    overrides = {key: getattr(args, key) for key in FLAGS if getattr(args, key) is not None}
    for key, value in overrides.items():
        if key.endswith("_port") and not 1 <= value <= 65535:
            print(f"{FLAGS[key]}: {value} is out of range 1..65535", file=sys.stderr)
            sys.exit(2)
        if key in CONTROLLER_FILES and not value:
            print(f"{FLAGS[key]}: must not be empty", file=sys.stderr)
            sys.exit(2)
    settings = dataclasses.replace(topology.controller, **overrides)
    # The file's groups are whole (the file was checked); a flag may have
    # started one the file does not complete.
    given = {key for key in CONTROLLER_FILES if getattr(settings, key) is not None}
    labels = _labels(args)
    missing = missing_from_group(given)
    for key, partners in missing:
        print(f"{FLAGS[key]}: is required with {', '.join(labels[k] for k in partners)}",
              file=sys.stderr)
    if missing:
        sys.exit(2)
    mpa = topology.mpa
    if args.state_db is not None:
        if not args.state_db:
            print("--state-db: must not be empty", file=sys.stderr)
            sys.exit(2)
        mpa = dataclasses.replace(mpa, state_db=args.state_db)
    return dataclasses.replace(topology, controller=settings, mpa=mpa)


def _labels(args=None) -> dict:
    """How the user named each file: by its flag if given, else its key path."""
    return {key: FLAGS[key] if args is not None and getattr(args, key) else f"controller.{key}"
            for key in CONTROLLER_FILES}


def _file_problems(settings, labels: dict) -> tuple[dict, object, list[str]]:
    """The TLS servers' contexts ("rest", "openflow": those configured), the
    API tokens (None without a file), the files read here and nowhere later,
    and every problem found with them, one line each.

    Every file named is read, also one of a TLS group that misses a file
    (the topology's error says so), so one run reports all there is."""
    from apps import tls
    from mpa_protocol.api_tokens import TokenFileError, load_tokens
    tls_files = {key: getattr(settings, key) for key in CONTROLLER_FILES
                 if key != "api_tokens" and getattr(settings, key) is not None}
    contexts, problems = tls.server_contexts(tls_files, labels)
    tokens = None
    if settings.api_tokens is not None:
        try:
            tokens = load_tokens(settings.api_tokens)
        except TokenFileError as exc:
            problems.extend(f"{labels['api_tokens']}: {line}" for line in str(exc).splitlines())
    return contexts, tokens, problems


def _radius_problems(sections) -> tuple[dict, list[str]]:
    """Every domain's RADIUS servers with their secrets, and the problems with
    the secret files (one line each, then no servers).  ``sections``: a
    topology, or what parsed of an invalid one."""
    from mpa_sdn.config_radius import load_radius_servers
    try:
        return load_radius_servers(sections), []
    except ConfigError as exc:
        return {}, exc.lines()


def _exit_on(problems: list[str]) -> None:
    for line in problems:
        print(line, file=sys.stderr)
    if problems:
        sys.exit(2)


def _files_or_exit(settings, labels: dict):
    """The TLS contexts and the API tokens, or every problem printed and exit 2."""
    contexts, tokens, problems = _file_problems(settings, labels)
    _exit_on(problems)
    return contexts, tokens


def _radius_or_exit(topology) -> dict:
    servers, problems = _radius_problems(topology)
    _exit_on(problems)
    return servers


def _one_domain_or_exit(topology, domain: str | None):
    """The part of ``topology`` the controller of ``domain`` knows (all of it
    without one), or every reason it cannot serve that domain alone and exit 2."""
    if domain is None:
        return topology
    try:
        return serve_domain(topology, domain)
    except ConfigError as exc:
        _exit_on(exc.lines())


def _check_config(path: str, domain: str | None = None) -> int:
    """``--check-config``: every problem of the topology file and of the files
    it names, one line each (with its key path) and 2; or ``ok`` and 0.
    With a domain, the problems of serving that domain alone too, and only its
    files are read.

    The files are read even when the topology has errors elsewhere: those the
    sections that parsed name (the controller's settings, the domains)."""
    try:
        sections, problems = load_topology(path), []
        if domain is not None:
            sections = serve_domain(sections, domain)
    except ConfigError as exc:
        sections, problems = exc.parsed, exc.lines()
    if sections is not None:
        problems += _radius_problems(sections)[1]
        problems += _file_problems(sections.controller, _labels())[2]
    print("\n".join(problems) if problems else "ok")
    return 2 if problems else 0


def _store_or_exit(path: str):
    from mpa_sdn.store import StoreError, open_store
    try:
        # Grouped: the app writes after each batch's flows (apps/mpa_app.py).
        return open_store(path, grouped=True)
    except StoreError as exc:
        print(f"state: {exc}", file=sys.stderr)
        sys.exit(2)


def _check_free(host: str, port: int, what: str) -> None:
    """Exit 2 if another process listens on the port.

    eventlet listens with SO_REUSEPORT, so a second controller would share
    the port silently and switches would land on either; a plain bind fails
    instead while anyone listens there.
    """
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            print(f"{what}: cannot listen on {host}:{port} ({exc.strerror})", file=sys.stderr)
            sys.exit(2)


def _stop_on_signals() -> None:
    """SIGTERM and SIGINT stop the controller cleanly.

    A Python signal handler runs in whichever green thread happens to be
    running, so raising there could kill a switch's connection instead of
    stopping the manager.  The handler asks the hub to throw
    KeyboardInterrupt into the main green thread, where Ryu's manager
    catches it and closes every app (REST server and workers included).
    """
    import greenlet
    from eventlet import hubs

    main_thread = greenlet.getcurrent()

    def handler(signum, frame):
        logging.getLogger("mpa_sdn").info("signal %d: stopping", signum)
        hubs.get_hub().schedule_call_global(0, main_thread.throw, KeyboardInterrupt)

    signal.signal(signal.SIGTERM, handler)
    signal.signal(signal.SIGINT, handler)


def _openflow_listen_args(settings) -> list[str]:
    """Ryu's options for the OpenFlow listener: plain TCP, or TLS only.

    With a certificate Ryu listens on its TLS port alone, so the OpenFlow
    port is given as that.  Ryu needs its TLS options to choose that
    listener; apps.tls.use_for_openflow gives its server the context built
    from the same files at start-up (TLS 1.2 at least, a switch certificate
    the CA signed).
    """
    if not settings.openflow_tls:
        return ["--ofp-tcp-listen-port", str(settings.openflow_port)]
    return ["--ofp-ssl-listen-port", str(settings.openflow_port),
            "--ctl-privkey", settings.openflow_tls_key, "--ctl-cert", settings.openflow_tls_cert,
            "--ca-certs", settings.openflow_tls_ca]


def main(argv=None) -> int:
    args = _arguments(sys.argv[1:] if argv is None else argv)
    if args.check_config:
        return _check_config(args.check_config, args.domain)

    topology = _with_overrides(_one_domain_or_exit(load_or_exit(args.config), args.domain),
                               args)
    settings = topology.controller
    contexts, tokens = _files_or_exit(settings, _labels(args))
    _check_free(settings.openflow_host, settings.openflow_port, "OpenFlow")
    _check_free(settings.rest_host, settings.rest_port, "REST")
    logs.configure(args.log_level, args.log_format)  # Ryu sets the level too, but only later
    log = logging.getLogger("mpa_sdn")
    log.info("%s", descriptors.ensure(topology))  # REST connections and switches hold one each
    radius_servers = _radius_or_exit(topology)
    for domain in sorted(topology.domains):
        servers = radius_servers.get(domain, [])
        if servers:
            log.info("domain %s: RADIUS %s", domain,
                     ", ".join(f"{s.address}:{s.port}" for s in servers))
        else:
            log.warning("domain %s names no RADIUS server: its AA authenticates no one",
                        domain)
    if tokens is None:
        log.warning("no API tokens file (--api-tokens, controller.api_tokens): the REST API "
                    "refuses every call that needs a token")
    else:
        log.info("API tokens: %d from %s", len(tokens), settings.api_tokens)
    store = _store_or_exit(topology.mpa.state_db)

    from apps import compat, runtime
    compat.patch_eventlet()
    runtime.configure(topology, args.config, radius_servers, store, tokens=tokens,
                      tls=contexts)

    if settings.openflow_tls:  # logged first: importing Ryu's manager adds a second handler
        log.info("OpenFlow over TLS on %s:%d; switch certificates must be signed by %s",
                 settings.openflow_host, settings.openflow_port, settings.openflow_tls_ca)
    from ryu.cmd import manager
    if settings.openflow_tls:
        from apps import tls
        tls.use_for_openflow(contexts["openflow"])
    _stop_on_signals()
    try:
        manager.main(args=[
            "--nouse-stderr",
            "--default-log-level", str(logging.getLevelName(args.log_level)),
            "--ofp-listen-host", settings.openflow_host,
            *_openflow_listen_args(settings),
            "apps.mpa_app",
        ], prog="mpa-controller")
    except KeyboardInterrupt:
        pass
    except OSError as exc:  # e.g. the REST port was taken between check and bind
        logging.getLogger("mpa_sdn").error("cannot start: %s", exc)
        return 2
    finally:
        store.close()
    logging.getLogger("mpa_sdn").info("controller stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())

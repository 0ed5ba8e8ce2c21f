"""The lab's AAA servers: every domain's FreeRADIUS that the topology puts on
an address of this host, started before any controller and stopped with the
lab.

For each such domain (``domains.ID.radius.servers`` on a local address):
its CA, the server's certificate, a client certificate for every MN
identity the topology lists, a password per MN (EAP-TTLS/PAP) and the CRL
(mpa_lab/aaa/domain.py); the shared secret written to every
``secret_file`` the domain names (0600, directories created), what its
controller reads at start; one FreeRADIUS per local server entry, ready when
it answers Status-Server.  Every MN subscribes to every such domain with its
one identity: its ``mobile_nodes.ID.credentials`` file gets EAP-TLS for each,
and ``STEM-ttls.yaml`` beside it EAP-TTLS/PAP, so a test or an experiment
picks the method by picking the file.

A domain whose servers are all elsewhere is left to whoever runs them (and
its MNs get no credentials for it from here).  The files of a domain (PKI,
configuration, log) go into ``aaa-ID/`` beside the first server's
``secret_file``; the MNs' password files beside their credentials files.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import secrets
import socket
from dataclasses import dataclass
from pathlib import Path

import yaml

from mpa_lab.aaa.domain import DomainAaa, PreparedDomain, prepare
from mpa_lab.aaa.pki import write_private
from mpa_lab.aaa.server import FreeRadiusServer
from mpa_mn.credentials import EAP_TLS, EAP_TTLS_PAP

HEADER = "# Written by the lab with its domains' AAA servers; lab-only keys.\n"


def is_local_address(address: str) -> bool:
    """Whether ``address`` is one of this host's (a socket can bind it)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        try:
            s.bind((address, 0))
        except OSError:
            return False
    return True


def local_domains(topology) -> list[str]:
    """The domains whose RADIUS servers the lab runs: all on this host's addresses."""
    return [did for did, domain in sorted(topology.domains.items())
            if domain.radius is not None
            and all(is_local_address(s.address) for s in domain.radius.servers)]


def ttls_path(credentials: str) -> str:
    """Where the EAP-TTLS/PAP variant of an MN's credentials file goes."""
    stem, ext = os.path.splitext(credentials)
    return f"{stem}-ttls{ext or '.yaml'}"


def _mkdir(path: Path) -> Path:
    path.mkdir(mode=0o700, parents=True, exist_ok=True)
    return path


@dataclass
class LabAaa:
    """The lab's AAA servers for one topology; a context manager that
    prepares and starts them all, and stops them all on the way out."""

    topology: object
    domains: dict[str, PreparedDomain] = dataclasses.field(default_factory=dict)
    servers: list[FreeRadiusServer] = dataclasses.field(default_factory=list)
    passwords: dict[tuple[str, str], str] = dataclasses.field(default_factory=dict)

    def prepare(self) -> None:
        """Write every local domain's PKI, secret and configuration and every
        MN's credentials files; nothing is started."""
        topology = self.topology
        mobile_nodes = sorted(topology.mobile_nodes.items())
        for did in local_domains(topology):
            entries = topology.domains[did].radius.servers
            identities = tuple(sorted({mn.identity for _, mn in mobile_nodes}))
            passwords = {}
            for mid, mn in mobile_nodes:
                self.passwords[(mid, did)] = secrets.token_urlsafe(18)
                passwords[mn.identity] = self.passwords[(mid, did)]
            spec = DomainAaa(did, entries[0].address, entries[0].port,
                             client_address=entries[0].address, tls_identities=identities,
                             passwords=passwords)
            home = _mkdir(Path(entries[0].secret_file).parent / f"aaa-{did}")
            prepared = prepare(spec, home)
            secret = prepared.secret_file.read_bytes()
            for entry in entries:
                _mkdir(Path(entry.secret_file).parent)
                write_private(Path(entry.secret_file), secret)
            self.domains[did] = prepared
            for index, entry in enumerate(entries):
                settings = prepared.server.settings
                if index:
                    settings = dataclasses.replace(
                        settings, address=entry.address, auth_port=entry.port,
                        client_address=entry.address,
                        log_path=home / "log" / f"radius-{index}.log")
                self.servers.append(FreeRadiusServer(settings, home / f"raddb-{index}"))
        for mid, mn in mobile_nodes:
            if mn.credentials is not None and self.domains:
                self._write_credentials(mid, mn)

    def _write_credentials(self, mid: str, mn) -> None:
        path = Path(mn.credentials)
        _mkdir(path.parent)
        tls, ttls = {}, {}
        for did, prepared in sorted(self.domains.items()):
            issued = prepared.clients[mn.identity]
            common = {"identity": mn.identity, "ca": str(prepared.pki.ca),
                      "server_name": f"radius.{did}"}
            tls[did] = {**common, "method": EAP_TLS, "certificate": str(issued.cert),
                        "private_key": str(issued.key)}
            password_file = path.parent / f"{path.stem}-{did}.password"
            write_private(password_file, self.passwords[(mid, did)].encode() + b"\n")
            ttls[did] = {**common, "method": EAP_TTLS_PAP, "password_file": str(password_file)}
        for target, table in ((path, tls), (Path(ttls_path(str(path))), ttls)):
            text = HEADER + yaml.safe_dump({"version": 1, "credentials": table},
                                           sort_keys=False)
            write_private(target, text.encode())

    def log_paths(self) -> list[str]:
        return [str(server.settings.log_path) for server in self.servers]

    def describe(self) -> list[str]:
        """A line per server: its domain, where it listens and its log."""
        return [f"FreeRADIUS of {s.settings.domain} on {s.settings.address}:"
                f"{s.settings.auth_port} (log: {s.settings.log_path})" for s in self.servers]

    def start(self) -> None:
        """Prepare (once) and start every server; each answers Status-Server
        before the next starts.  On failure, those started are stopped."""
        if not self.domains:
            self.prepare()
        try:
            for server in self.servers:
                server.start()
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        for server in self.servers:
            with contextlib.suppress(OSError):
                server.stop()

    def server_of(self, domain: str, index: int = 0) -> FreeRadiusServer:
        return [s for s in self.servers if s.settings.domain == domain][index]

    def __enter__(self) -> "LabAaa":
        self.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

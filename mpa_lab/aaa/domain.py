"""One domain's AAA server, from what the lab knows of the domain: its
certificates, its FreeRADIUS configuration and the shared-secret file the
domain's controller reads; and every domain's at once, side by side."""

from __future__ import annotations

import contextlib
import secrets
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from mpa_lab.aaa.freeradius_config import ServerSettings
from mpa_lab.aaa.pki import DomainPki, Issued, write_private
from mpa_lab.aaa.server import FreeRadiusServer


@dataclass(frozen=True)
class DomainAaa:
    """What a domain's AAA server is given."""
    domain: str
    address: str
    auth_port: int
    client_address: str                               # the domain's controller
    tls_identities: tuple[str, ...] = ()              # NAIs given a client certificate
    passwords: dict[str, str] = field(default_factory=dict)   # NAI -> password (TTLS/PAP)
    revoked: tuple[str, ...] = ()                     # NAIs whose certificate is on the CRL


@dataclass
class PreparedDomain:
    """Everything written for one domain, and the server ready to start."""
    spec: DomainAaa
    directory: Path
    pki: DomainPki
    clients: dict[str, Issued]                        # NAI -> certificate and key
    secret_file: Path                                 # what the controller reads
    server: FreeRadiusServer


def prepare(spec: DomainAaa, directory: Path, secret: str | None = None) -> PreparedDomain:
    """Write the domain's PKI, shared secret and configuration under
    ``directory``; the server is returned unstarted."""
    directory = Path(directory).resolve()
    pki = DomainPki(directory / "pki", spec.domain)
    server_cert = pki.issue(f"radius.{spec.domain}", server=True)
    clients = {nai: pki.issue(nai) for nai in spec.tls_identities}
    for nai in spec.revoked:
        pki.revoke(nai)
    secret = secret or secrets.token_urlsafe(24)
    secret_file = directory / "radius-secret"
    write_private(secret_file, secret.encode() + b"\n")
    settings = ServerSettings(
        domain=spec.domain, address=spec.address, auth_port=spec.auth_port,
        client_address=spec.client_address, secret=secret, ca_and_crl=pki.ca_and_crl,
        server_cert=server_cert.cert, server_key=server_cert.key,
        log_path=directory / "log" / "radius.log", users=dict(spec.passwords))
    return PreparedDomain(spec, directory, pki, clients, secret_file,
                          FreeRadiusServer(settings, directory / "raddb"))


@contextlib.contextmanager
def running(specs: list[DomainAaa], directory: Path) -> Iterator[dict[str, PreparedDomain]]:
    """Every domain's server prepared under ``directory``/DOMAIN and started;
    all that started are stopped on the way out, also when one fails to start."""
    prepared = {spec.domain: prepare(spec, Path(directory) / spec.domain) for spec in specs}
    started = []
    try:
        for domain in prepared.values():
            domain.server.start()
            started.append(domain.server)
        yield prepared
    finally:
        for server in reversed(started):
            server.stop()

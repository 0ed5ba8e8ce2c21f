"""The MN's credentials: what it authenticates with in each domain it subscribes to.

One entry per administrative domain: the identity (NAI) the MN uses there and
its EAP method, with what the method needs (RFC 6252 §7.2 leaves the method to
the domain; the testbed of its Appendix C used EAP-TLS):

    eap-tls       RFC 5216: the MN's certificate and key, issued by the domain
    eap-ttls-pap  RFC 5281: a password, sent inside a TLS tunnel to the server

Both check the domain's AAA server against ``ca`` (and ``server_name``, when
given).  Paths are relative to the file.  The file is checked as strictly as
the topology (see docs/topology.md): errors carry key paths, and no message,
log line or repr ever shows a secret.
"""

from __future__ import annotations

import logging
import os
import stat
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from mpa_protocol import schema
from mpa_protocol.schema import (MISSING, ConfigError, Invalid, Reader, is_version_1, kind_of,
                                 load_yaml)

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 64 * 1024
MAX_PASSWORD_BYTES = 253       # RFC 2865's User-Password bound, which PAP keeps inside TTLS
EAP_TLS, EAP_TTLS_PAP = "eap-tls", "eap-ttls-pap"
METHODS = (EAP_TLS, EAP_TTLS_PAP)
_FILES = {EAP_TLS: ("certificate", "private_key"), EAP_TTLS_PAP: ("password_file",)}


@dataclass(frozen=True)
class DomainCredentials:
    """One domain's: the identity, the method and its files (absolute paths)."""

    identity: str
    method: str
    ca: str
    certificate: str | None = None
    private_key: str | None = field(default=None, repr=False)
    password_file: str | None = field(default=None, repr=False)
    server_name: str | None = None

    def eap_method(self):
        """The EAP method, ready for :class:`mpa_mn.eap_peer.EapPeer`; the
        password is read now (ConfigError if it cannot be)."""
        from mpa_mn.eap_peer import EapTls, EapTtlsPap
        if self.method == EAP_TLS:
            return EapTls(self.certificate, self.private_key, self.ca, self.server_name)
        return EapTtlsPap(self.identity, read_password(self.password_file), self.ca,
                          server_name=self.server_name)


@dataclass(frozen=True, repr=False)
class MnCredentials:
    """The MN's side: one identity and method per domain it subscribes to."""

    domains: Mapping[str, DomainCredentials]

    def __post_init__(self):
        object.__setattr__(self, "domains", MappingProxyType(dict(self.domains)))

    def for_domain(self, domain: str) -> DomainCredentials | None:
        return self.domains.get(domain)

    def __repr__(self) -> str:
        entries = ", ".join(f"{d}: {c.identity} ({c.method})"
                            for d, c in sorted(self.domains.items()))
        return f"MnCredentials({entries})"


def read_password(path: str) -> str:
    """A password file's first line (the file is readable by its owner only)."""
    data = _read(path, MAX_PASSWORD_BYTES + 2, secret=True)
    password = data.split("\n", 1)[0].rstrip("\r")
    if not password or len(password.encode()) > MAX_PASSWORD_BYTES:
        raise ConfigError([("", f"{path}: a password is 1 to {MAX_PASSWORD_BYTES} bytes on "
                                "its first line")])
    return password


def _document(raw: Any, required: set[str]) -> tuple[Reader, dict]:
    """The checked top level of a credentials file (a version 1 mapping)."""
    if isinstance(raw, dict) and "version" in raw and not is_version_1(raw["version"]):
        raise ConfigError([("version", f"{raw['version']!r} is not a supported version (1)")])
    if raw is None:
        raise ConfigError([("", "the file is empty")])
    r = Reader()
    checked = r.mapping(raw, "", required=required | {"version"})
    if checked is None:
        raise ConfigError(r.errors)
    return r, checked


def parse_mn_credentials(raw: Any, base: str = ".") -> MnCredentials:
    """Validate an MN's credentials already loaded from YAML; paths are made
    absolute against ``base``."""
    r, raw = _document(raw, {"credentials"})
    entries = r.table(raw["credentials"], "credentials")
    if not entries and not r.errors:
        r.error("credentials", "at least one domain's credentials are required")
    domains = {}
    for did, entry in entries.items():
        path = f"credentials.{did}"
        method = entry.get("method") if isinstance(entry, dict) else None
        files = _FILES.get(method, ())
        entry = r.mapping(entry, path, required={"identity", "method", "ca", *files},
                          optional={"server_name"})
        if entry is None:
            continue
        identity = r.field(entry, "identity", path, schema.nai)
        if method not in METHODS:
            r.error(f"{path}.method", f"{method!r} is not one of {', '.join(METHODS)}")
            continue
        paths = {key: r.field(entry, key, path, schema.file_path) for key in ("ca", *files)}
        server_name = r.field(entry, "server_name", path, schema.text)
        if MISSING in (identity, server_name, *paths.values()):
            continue
        domains[did] = DomainCredentials(
            identity, method, server_name=server_name,
            **{key: os.path.normpath(os.path.join(base, value)) for key, value in paths.items()})
    if r.errors:
        raise ConfigError(r.errors)
    return MnCredentials(domains)


def load_mn_credentials(path: str) -> MnCredentials:
    base = os.path.dirname(os.path.abspath(path))
    return _load(path, lambda raw: parse_mn_credentials(raw, base))


def _load(path: str, parse: Callable[[Any], Any]) -> Any:
    raw = load_yaml(_read(path), path)
    try:
        return parse(raw)
    except ConfigError as exc:
        raise ConfigError([(p, m if p else f"{path}: {m}") for p, m in exc.errors]) from None


def _read(path: str, limit: int = MAX_FILE_BYTES, secret: bool = False) -> str:
    try:
        # O_NONBLOCK: a FIFO in place of the file must not hang the controller.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read ({exc.strerror})")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError([("", f"{path}: not a regular file")])
        if secret and mode & 0o066:
            # Refusing would break every fresh checkout: git does not keep modes.
            log.warning("%s holds a secret but is readable or writable by group or "
                        "others (mode %03o): chmod 600 it", path, stat.S_IMODE(mode))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(limit + 1)
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read ({exc.strerror})")]) from None
    finally:
        os.close(fd)
    return schema.bounded_text(data, path, limit)

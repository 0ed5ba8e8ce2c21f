"""A domain's RADIUS servers (``domains.ID.radius``) and their shared secrets.

Each domain's AA relays EAP only to the servers its own domain names, with
that domain's secret (docs/topology.md).  The secret lives in a file of its
own, read once at start (:func:`load_radius_servers`), never in the topology:
the topology is shared with whoever runs the lab, the secret is the
operator's.  RFC 5080 §2.2's retransmission parameters are ``mpa.radius_*``.
"""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from mpa_protocol import schema
from mpa_protocol.schema import MISSING, ConfigError, Invalid, Reader
from mpa_sdn.config_fields import ipv4_address
from mpa_sdn.radius_client import RadiusServer, RetransmitSettings

RADIUS_PORT = 1812           # RFC 2865's authentication port
MIN_SECRET_BYTES = 16        # RFC 5080 §2.2's advice ... and BlastRADIUS's lesson
MAX_SECRET_BYTES = 128
MAX_SERVERS = 8


@dataclass(frozen=True)
class RadiusServerEntry:
    address: str
    port: int
    secret_file: str


@dataclass(frozen=True)
class DomainRadius:
    servers: tuple[RadiusServerEntry, ...]   # in order of preference (failover)
    nas_identifier: str | None = None        # default: mpa-sdn-<domain>


def parse_radius(r: Reader, raw, path: str) -> DomainRadius | None:
    entry = r.mapping(raw, path, required={"servers"}, optional={"nas_identifier"})
    if entry is None:
        return None
    servers = []
    raw_servers = entry["servers"]
    if not isinstance(raw_servers, list) or not 1 <= len(raw_servers) <= MAX_SERVERS:
        r.error(f"{path}.servers", f"must be a list of 1 to {MAX_SERVERS} servers")
        return None
    for index, item in enumerate(raw_servers):
        where = f"{path}.servers[{index}]"
        server = r.mapping(item, where, required={"address", "secret_file"},
                           optional={"port"})
        if server is None:
            continue
        # Loopback is fine: the lab's servers listen there, beside the controller.
        address = r.field(server, "address", where, ipv4_address)
        port = r.field(server, "port", where, schema.integer(1, 65535), default=RADIUS_PORT)
        secret = r.field(server, "secret_file", where, schema.file_path)
        if MISSING not in (address, port, secret):
            servers.append(RadiusServerEntry(str(address), port, secret))
    nas = r.field(entry, "nas_identifier", path, schema.text)
    if len(servers) != len(raw_servers):
        return None
    return DomainRadius(tuple(servers), None if nas in (None, MISSING) else nas)


def read_secret(path: str) -> bytes:
    """A shared secret: the file's first line, at least MIN_SECRET_BYTES; the
    file readable by its owner only (it is a password)."""
    try:
        info = os.stat(path)
        with open(path, "rb") as f:
            data = f.read(MAX_SECRET_BYTES + 2)
    except OSError as exc:
        raise Invalid(f"cannot read {path}: {exc.strerror or exc}") from None
    if stat.S_IMODE(info.st_mode) & 0o077:
        raise Invalid(f"{path} is readable by others (mode {stat.S_IMODE(info.st_mode):o}); "
                      "chmod 600 it")
    secret = data.split(b"\n", 1)[0].rstrip(b"\r")
    if not MIN_SECRET_BYTES <= len(secret) <= MAX_SECRET_BYTES:
        raise Invalid(f"{path}: a shared secret has {MIN_SECRET_BYTES} to {MAX_SECRET_BYTES} "
                      f"bytes on its first line, not {len(secret)}")
    return secret


def load_radius_servers(topology) -> dict[str, list[RadiusServer]]:
    """Every domain's RADIUS servers with their secrets read; all problems in
    one ConfigError, each on the key that names the file."""
    servers, errors = {}, []
    for did, domain in sorted(topology.domains.items()):
        if domain.radius is None:
            continue
        found = []
        for index, entry in enumerate(domain.radius.servers):
            try:
                secret = read_secret(entry.secret_file)
                found.append(RadiusServer(entry.address, entry.port, secret))
            except Invalid as exc:
                errors.append((f"domains.{did}.radius.servers[{index}].secret_file", str(exc)))
        servers[did] = found
    if errors:
        raise ConfigError(errors)
    return servers


def retransmit_settings(mpa) -> RetransmitSettings:
    return RetransmitSettings(initial_rt_s=mpa.radius_initial_rt_s, max_rt_s=mpa.radius_max_rt_s,
                              max_count=mpa.radius_max_count,
                              max_duration_s=mpa.radius_max_duration_s,
                              max_outstanding=mpa.radius_max_outstanding,
                              dead_time_s=mpa.radius_dead_time_s)

"""Pre-shared-key credentials: one store per administrative domain, and the MN's side.

A domain's Authentication Agent reads only the file its own ``domains.X.credentials``
names, and the file must say which domain it belongs to: no domain ever sees another's
keys, even when one MN subscribes to both under the same identity (the controller reads
every domain's with mpa_sdn.config.load_stores).  Files are checked
as strictly as the topology (see docs/topology.md), errors carry key paths, and no
message, log line or repr ever shows key material.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import stat
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any, Callable, Mapping

from mpa_protocol import schema
from mpa_protocol.schema import (MISSING, ConfigError, Invalid, Reader, is_version_1, kind_of,
                                 load_yaml)

log = logging.getLogger(__name__)

MAX_FILE_BYTES = 1024 * 1024  # bounds the number of identities too (~20000)
MIN_KEY_BYTES = 16
MAX_KEY_BYTES = 64
_DECODERS = {"base64": lambda text: base64.b64decode(text, validate=True),
             "hex": binascii.a2b_hex}


class CredentialStore:
    """One domain's identities (NAIs) and their keys; immutable."""

    __slots__ = ("domain", "_keys")

    def __init__(self, domain: str, keys: Mapping[str, bytes] | None = None):
        object.__setattr__(self, "domain", domain)
        object.__setattr__(self, "_keys", MappingProxyType(dict(keys or {})))

    def __setattr__(self, name, value):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def __delattr__(self, name):
        raise AttributeError(f"{type(self).__name__} is immutable")

    def key(self, identity: str) -> bytes | None:
        """The identity's key, None when the domain does not know it."""
        return self._keys.get(identity) if isinstance(identity, str) else None

    def identities(self) -> tuple[str, ...]:
        return tuple(sorted(self._keys))

    def __len__(self) -> int:
        return len(self._keys)

    def __contains__(self, identity) -> bool:
        return isinstance(identity, str) and identity in self._keys

    def __eq__(self, other):
        if not isinstance(other, CredentialStore):
            return NotImplemented
        return self.domain == other.domain and self._keys == other._keys

    __hash__ = None

    def __repr__(self) -> str:
        return f"CredentialStore(domain={self.domain!r}, identities={len(self)})"


@dataclass(frozen=True, repr=False)
class MnCredentials:
    """The MN's side: one identity and key per domain it subscribes to."""

    keys: Mapping[str, tuple[str, bytes]]  # domain -> (identity, key)

    def __post_init__(self):
        object.__setattr__(self, "keys", MappingProxyType(dict(self.keys)))

    def for_domain(self, domain: str) -> tuple[str, bytes] | None:
        return self.keys.get(domain)

    def __repr__(self) -> str:
        entries = ", ".join(f"{d}: {identity}" for d, (identity, _) in sorted(self.keys.items()))
        return f"MnCredentials({entries})"


def _key(value: Any) -> bytes:
    # The value is a secret: messages describe it, never quote it.
    if not isinstance(value, str):
        raise Invalid(f"must be a string 'base64:...' or 'hex:...', not {kind_of(value)}")
    scheme, _, text = value.partition(":")
    if scheme not in _DECODERS:
        raise Invalid("must start with 'base64:' or 'hex:'")
    try:
        key = _DECODERS[scheme](text)
    except (binascii.Error, ValueError):
        raise Invalid(f"is not valid {scheme}") from None
    if not MIN_KEY_BYTES <= len(key) <= MAX_KEY_BYTES:
        raise Invalid(f"is {len(key)} bytes long; a key has {MIN_KEY_BYTES}..{MAX_KEY_BYTES}")
    return key


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


def parse_store(raw: Any, domain: str) -> CredentialStore:
    """Validate a domain's store already loaded from YAML."""
    r, raw = _document(raw, {"domain", "identities"})

    def own_domain(value):
        if value != domain:
            raise Invalid(f"{value!r} is not {domain!r}, the domain this store is read for")
        return value

    r.field(raw, "domain", "", own_domain)
    identities = raw["identities"] if raw["identities"] is not None else {}
    if not isinstance(identities, dict):
        r.error("identities", f"must be a mapping of identity to {{key: ...}}, "
                              f"not {kind_of(identities)}")
        identities = {}
    keys = {}
    for identity, entry in identities.items():
        path = f"identities.{identity}"
        try:
            schema.nai(identity)
        except Invalid as exc:
            r.error(path, str(exc))
            continue
        entry = r.mapping(entry, path, required={"key"})
        key = MISSING if entry is None else r.field(entry, "key", path, _key)
        if key is not MISSING:
            keys[identity] = key
    if r.errors:
        raise ConfigError(r.errors)
    return CredentialStore(domain, keys)


def parse_mn_credentials(raw: Any) -> MnCredentials:
    """Validate an MN's credentials already loaded from YAML."""
    r, raw = _document(raw, {"credentials"})
    entries = r.table(raw["credentials"], "credentials")
    if not entries and not r.errors:
        r.error("credentials", "at least one domain's credentials are required")
    keys = {}
    for did, entry in entries.items():
        path = f"credentials.{did}"
        entry = r.mapping(entry, path, required={"identity", "key"})
        if entry is None:
            continue
        identity = r.field(entry, "identity", path, schema.nai)
        key = r.field(entry, "key", path, _key)
        if MISSING not in (identity, key):
            keys[did] = (identity, key)
    if r.errors:
        raise ConfigError(r.errors)
    return MnCredentials(keys)


def load_store(path: str, domain: str) -> CredentialStore:
    """``domain``'s store from ``path``; ConfigError (key paths in the file) if invalid."""
    return _load(path, lambda raw: parse_store(raw, domain))


def load_mn_credentials(path: str) -> MnCredentials:
    return _load(path, parse_mn_credentials)


def _load(path: str, parse: Callable[[Any], Any]) -> Any:
    raw = load_yaml(_read(path), path)
    try:
        return parse(raw)
    except ConfigError as exc:
        raise ConfigError([(p, m if p else f"{path}: {m}") for p, m in exc.errors]) from None


def _read(path: str) -> str:
    try:
        # O_NONBLOCK: a FIFO in place of the file must not hang the controller.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read ({exc.strerror})")]) from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError([("", f"{path}: not a regular file")])
        if mode & 0o066:
            # Refusing would break every fresh checkout: git does not keep modes.
            log.warning("%s holds secret keys but is readable or writable by group or "
                        "others (mode %03o): chmod 600 it", path, stat.S_IMODE(mode))
        with os.fdopen(fd, "rb", closefd=False) as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read ({exc.strerror})")]) from None
    finally:
        os.close(fd)
    return schema.bounded_text(data, path, MAX_FILE_BYTES)

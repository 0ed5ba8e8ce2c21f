"""The file-validation toolkit every configuration file is checked with: the
topology (mpa_sdn.config), the credentials files (mpa_protocol.credentials)
and the lab's scenarios.

A :class:`Reader` walks the loaded YAML and records every problem with the
key path where it was found (``networks.net-a1.gateway: ...``) instead of
stopping at the first, so a user can fix a file in one pass; the caller
raises one :class:`ConfigError` with all of them.  A field parser takes a
raw value and returns it checked (or converted), or raises :class:`Invalid`
with a message; :meth:`Reader.field` records that message under the field's
path and answers :data:`MISSING`.

Files are read bounded (:data:`MAX_FILE_BYTES`) and as UTF-8, and YAML is
loaded with safe tags only and duplicate keys refused (:func:`load_yaml`).
"""

from __future__ import annotations

import collections.abc
from typing import Any, Callable

import yaml

from mpa_protocol.messages import ID_RE, MAC_RE, nai_ok

MAX_FILE_BYTES = 4 * 1024 * 1024


class ConfigError(Exception):
    """A configuration file is invalid; ``errors`` lists (path, message) pairs.

    ``parsed`` holds what the caller could still use of the file despite its
    errors (for a topology file, the sections that parsed), or None.
    """

    def __init__(self, errors: list[tuple[str, str]], parsed: Any = None):
        self.errors = errors
        self.parsed = parsed
        super().__init__("\n".join(f"{p}: {m}" if p else m for p, m in errors))

    def lines(self) -> list[str]:
        return [f"{p}: {m}" if p else m for p, m in self.errors]


class Invalid(Exception):
    """Raised inside a field parser; the caller records it and moves on."""


class Quiet(Invalid):
    """A reference to an entry that is itself invalid: already reported."""


# What Reader.field answers for a value that was invalid (and reported).
MISSING = object()


class Reader:
    """Walks the raw YAML, records errors with their key path."""

    def __init__(self):
        self.errors: list[tuple[str, str]] = []
        # Entries present in the file but invalid, as (kind, id): references
        # to them are not reported again as "unknown".
        self.broken: set[tuple[str, str]] = set()

    def error(self, path: str, message: str) -> None:
        self.errors.append((path, message))

    def mapping(self, value: Any, path: str, *, required: set[str] = frozenset(),
                optional: set[str] = frozenset()) -> dict | None:
        if not isinstance(value, dict):
            self.error(path, f"must be a mapping, not {kind_of(value)}")
            return None
        for key in value:
            if not isinstance(key, str):
                self.error(path, f"key {key!r} must be a string")
            elif key not in required and key not in optional:
                allowed = ", ".join(sorted(required | optional))
                self.error(join(path, key), f"unknown key (allowed: {allowed})")
        missing = sorted(required - set(value))
        for key in missing:
            self.error(join(path, key), "is required")
        # Unknown keys are reported but do not stop the known ones from being
        # checked; a missing required key does.
        return None if missing else {k: v for k, v in value.items() if k in required | optional}

    def field(self, raw: dict, key: str, path: str, parse: Callable[[Any], Any],
              default: Any = None) -> Any:
        if key not in raw:
            return default
        try:
            return parse(raw[key])
        except Quiet:
            return MISSING
        except Invalid as exc:
            self.error(join(path, key), str(exc))
            return MISSING

    def table(self, raw: Any, path: str) -> dict:
        """A mapping of id -> entry, with ids checked."""
        if raw is None:
            return {}
        if not isinstance(raw, dict):
            self.error(path, f"must be a mapping of id to entry, not {kind_of(raw)}")
            return {}
        entries = {}
        for key, value in raw.items():
            if not isinstance(key, str) or not ID_RE.fullmatch(key):
                self.error(join(path, str(key)),
                           "id must start with a letter and hold at most 32 of "
                           "letters, digits, '_', '.', '-'")
                continue
            entries[key] = value
        return entries


def join(path: str, key: str) -> str:
    """A key's path under ``path`` (the top level's path is empty)."""
    return f"{path}.{key}" if path else key


def kind_of(value: Any) -> str:
    """What a raw YAML value is, in the words an error message uses."""
    return {dict: "a mapping", list: "a list", str: "a string", bool: "a boolean",
            int: "an integer", float: "a number", type(None): "empty"}.get(
        type(value), type(value).__name__)


def is_version_1(value: Any) -> bool:
    """A file's ``version: 1`` (not 1.0, not true)."""
    return type(value) is int and value == 1


# -- field parsers: each returns the value or raises Invalid with a message --

def integer(lo: int, hi: int) -> Callable[[Any], int]:
    def parse(value):
        if isinstance(value, bool) or not isinstance(value, int):
            raise Invalid(f"must be an integer, not {kind_of(value)}")
        if not lo <= value <= hi:
            raise Invalid(f"{value} is out of range {lo}..{hi}")
        return value
    return parse


def number(lo: float, hi: float) -> Callable[[Any], float]:
    def parse(value):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise Invalid(f"must be a number, not {kind_of(value)}")
        if not lo <= value <= hi:
            raise Invalid(f"{value} is out of range {lo}..{hi}")
        return float(value)
    return parse


def text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise Invalid(f"must be a non-empty string, not {kind_of(value)}")
    return value


def boolean(value: Any) -> bool:
    if not isinstance(value, bool):
        raise Invalid(f"must be true or false, not {kind_of(value)}")
    return value


def file_path(value: Any) -> str:
    if not isinstance(value, str):
        raise Invalid(f"must be a file path as a string, not {kind_of(value)}")
    if not value.strip() or "\0" in value:
        raise Invalid(f"{value!r} is not a usable file path")
    return value


def ident(value: Any) -> str:
    if not isinstance(value, str) or not ID_RE.fullmatch(value):
        raise Invalid(f"{value!r} is not a valid id")
    return value


def mac(value: Any) -> str:
    """A unicast MAC address, in lower case."""
    if not isinstance(value, str) or not MAC_RE.fullmatch(value.lower()):
        raise Invalid(f"{value!r} is not a MAC address like 02:00:00:00:00:01")
    address = value.lower()
    if int(address[:2], 16) & 1:
        raise Invalid(f"{value} is a multicast address")
    return address


def nai(value: Any) -> str:
    if not nai_ok(value):  # what an EAP identity may be: no entry that could never be used
        raise Invalid(f"{value!r} is not a network access identifier like mn1@domain-a")
    return value


# -- reading files -------------------------------------------------------------

class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that rejects duplicate keys instead of keeping the last."""


def _construct_mapping(loader, node, deep=False):
    seen = set()
    for key_node, _ in node.value:
        key = loader.construct_object(key_node, deep=deep)
        if not isinstance(key, collections.abc.Hashable):
            raise yaml.constructor.ConstructorError(
                None, None, "a mapping key must be a scalar", key_node.start_mark)
        if key in seen:
            raise yaml.constructor.ConstructorError(
                None, None, f"duplicate key {key!r}", key_node.start_mark)
        seen.add(key)
    return loader.construct_mapping(node, deep=deep)


_StrictLoader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _construct_mapping)


def load_yaml(text: str, source: str = "<string>") -> Any:
    """YAML text as plain data: safe tags only, duplicate keys refused."""
    try:
        return yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}, column {mark.column + 1}" if mark else source
        problem = getattr(exc, "problem", None) or str(exc)
        raise ConfigError([("", f"{source}: not valid YAML at {where}: {problem}")]) from None


def read_text(path: str) -> str:
    """A configuration file's text: bounded in size, UTF-8, or a ConfigError."""
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise ConfigError([("", f"{path}: cannot read ({exc.strerror})")]) from None
    return bounded_text(data, path, MAX_FILE_BYTES)


def bounded_text(data: bytes, path: str, max_bytes: int) -> str:
    """What was read of ``path`` (up to one byte past ``max_bytes``, to tell a
    file that is too large) as text, or a ConfigError."""
    if len(data) > max_bytes:
        raise ConfigError([("", f"{path}: larger than {max_bytes} bytes")])
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError([("", f"{path}: not UTF-8 text")]) from None

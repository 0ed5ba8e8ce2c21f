"""The REST API's bearer tokens with roles, from a secrets file
(``controller.api_tokens``, ``--api-tokens``): what ``mpa-ctl new-token``
writes and the controller reads, and the check of a presented token.

The file holds each token's SHA-256, never the token itself, so a copy of
it lets nobody in; ``mpa-ctl new-token`` makes a token, prints it once and
adds its line.  There is no default token: without a file, every call that
needs one is refused.

    version: 1
    tokens:
      - name: grafana                 # who holds it (in the log, never the token)
        role: reader                  # reader, policy-engine or admin
        sha256: 9f86d081884c7d65...   # hex SHA-256 of the token's UTF-8 bytes

Roles are ordered: a policy engine may read, an admin may do anything.  A
presented token is hashed and compared with every entry in constant time
(``hmac.compare_digest``), all entries each time, so neither the time nor
the order tells an attacker how close a guess came.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
import secrets
from dataclasses import dataclass

import yaml

VERSION = 1
READER, POLICY_ENGINE, ADMIN = "reader", "policy-engine", "admin"
ROLES = (READER, POLICY_ENGINE, ADMIN)  # each may do what the ones before it may
TOKEN_BYTES = 32                        # 256 bits of entropy, URL-safe base64
MAX_TOKEN_CHARS = 256                   # longer is refused before hashing
MAX_TOKENS = 1000
MAX_FILE_BYTES = 1 << 20                # MAX_TOKENS entries fit many times over
_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@-]{0,63}\Z")
_HEX = re.compile(r"[0-9a-f]{64}\Z")


class TokenFileError(Exception):
    """The tokens file cannot be used; ``str()`` lists every problem, one per line."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


@dataclass(frozen=True)
class Principal:
    """Who made a request: a token's name and role."""

    name: str
    role: str

    def may(self, role: str) -> bool:
        return ROLES.index(self.role) >= ROLES.index(role)


def digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return secrets.token_urlsafe(TOKEN_BYTES)


class Tokens:
    """The tokens one controller accepts."""

    def __init__(self, entries: list[tuple[str, str, str]] = ()):
        # (name, role, hex digest); digests compared as bytes
        self._entries = [(name, role, bytes.fromhex(hexdigest))
                         for name, role, hexdigest in entries]

    def __len__(self) -> int:
        return len(self._entries)

    def identify(self, token: str) -> Principal | None:
        """The principal ``token`` belongs to, or None."""
        if not token or len(token) > MAX_TOKEN_CHARS:
            return None
        presented = hashlib.sha256(token.encode("utf-8", "surrogatepass")).digest()
        found = None
        for name, role, wanted in self._entries:   # no early exit: constant in the match
            if hmac.compare_digest(presented, wanted) and found is None:
                found = Principal(name, role)
        return found


def parse(document, where: str = "tokens file") -> Tokens:
    """``document`` (the YAML, loaded) as :class:`Tokens`, or every problem at once."""
    problems: list[str] = []
    if not isinstance(document, dict):
        raise TokenFileError([f"{where}: must be a mapping with 'version' and 'tokens'"])
    unknown = sorted(set(document) - {"version", "tokens"}, key=str)   # YAML keys: any type
    if unknown:
        problems.append(f"{where}: unknown keys {', '.join(map(str, unknown))}")
    if document.get("version") != VERSION:
        problems.append(f"{where}: version: must be {VERSION}")
    items = document.get("tokens")
    if not isinstance(items, list):
        raise TokenFileError(problems + [f"{where}: tokens: must be a list"])
    if len(items) > MAX_TOKENS:
        problems.append(f"{where}: tokens: at most {MAX_TOKENS}")
    entries, names, digests = [], set(), set()
    for i, item in enumerate(items):
        at = f"{where}: tokens[{i}]"
        if not isinstance(item, dict):
            problems.append(f"{at}: must be a mapping with name, role and sha256")
            continue
        extra = sorted(set(item) - {"name", "role", "sha256"}, key=str)
        if extra:
            problems.append(f"{at}: unknown keys {', '.join(map(str, extra))}")
        name, role, hexdigest = item.get("name"), item.get("role"), item.get("sha256")
        if not isinstance(name, str) or not _NAME.match(name):
            problems.append(f"{at}.name: 1-64 characters of A-Z a-z 0-9 . _ @ -, "
                            "starting with a letter or digit")
        elif name in names:
            problems.append(f"{at}.name: {name!r} is used twice")
        if role not in ROLES:
            problems.append(f"{at}.role: one of {', '.join(ROLES)}")
        if not isinstance(hexdigest, str) or not _HEX.match(hexdigest):
            problems.append(f"{at}.sha256: 64 lowercase hex digits (the token's SHA-256, "
                            "not the token)")
        elif hexdigest in digests:
            problems.append(f"{at}.sha256: the same token is listed twice")
        if isinstance(name, str):           # a list or mapping is already a problem above
            names.add(name)
        if isinstance(hexdigest, str):
            digests.add(hexdigest)
        entries.append((name, role, hexdigest))
    if problems:
        raise TokenFileError(problems)
    return Tokens(entries)


def load_tokens(path: str) -> Tokens:
    """The tokens file at ``path``; a file others may read is refused."""
    return parse(_read(path), path)


def _read(path: str):
    """The tokens file's YAML, loaded; a file others may read is refused."""
    try:
        with open(path, "rb") as f:
            mode = os.fstat(f.fileno()).st_mode
            text = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise TokenFileError([f"{path}: cannot read ({exc.strerror})"]) from None
    if len(text) > MAX_FILE_BYTES:     # cut, it could parse and lose tokens
        raise TokenFileError([f"{path}: larger than {MAX_FILE_BYTES} bytes"])
    if mode & 0o077:
        raise TokenFileError([f"{path}: readable by others (mode {mode & 0o777:o}); "
                              f"chmod 600 {path}"])
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise TokenFileError([f"{path}: not YAML ({exc})"]) from None
    return document


def add_token(path: str, name: str, role: str) -> str:
    """A new token for ``name`` with ``role``, its digest added to the file at
    ``path`` (created, mode 600, if missing); returns the token."""
    document = {"version": VERSION, "tokens": []}
    if os.path.exists(path):
        document = _read(path)
        parse(document, path)   # a broken file is not added to
    token = new_token()
    document["tokens"].append({"name": name, "role": role, "sha256": digest(token)})
    parse(document, path)   # the name must be new, the role known
    temporary = f"{path}.new"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write("# API tokens (their SHA-256 only); add one with mpa-ctl new-token\n")
        yaml.safe_dump(document, f, sort_keys=False)
    os.replace(temporary, path)
    return token

"""The MN's memory between invocations: its MPA-SAs, in one JSON file.

Per CTN the file keeps the MPA-SA (id, derived keys, the next sequence
number, the configuration received), the CTN as discovery described it (where
its AA answers, its domain: where REST requests for it go) and when the SA
was made, the VXLAN tunnel the MN ends for its nCoA if any; the last
discovery; and the rewriting the MN installed for a binding its home domain
keeps to a care-of in another domain (:mod:`mpa_mn.binding_rewrite`), so
that a later run removes it when the binding or the care-of goes.  Consecutive ``mpa-mn`` runs go on with the same SAs and sequence
numbers, so a number is saved as used *before* the message that uses it is
sent: a run that dies in between leaves a gap, never a reuse.

The file holds keys: it is written atomically (a temporary file in the same
directory, then a rename), mode 0600, in a directory made 0700; concurrent
runs take turns on a lock file beside it.  A file that cannot be read back
is a :class:`StateError` naming the file and what is wrong, never a traceback.
"""

from __future__ import annotations

import contextlib
import copy
import errno
import fcntl
import json
import logging
import os
import re
import stat
import tempfile
import time
from dataclasses import dataclass, field

from mpa_mn.protocol import VXLAN_FIELDS, SaState
from mpa_protocol import messages

LOG = logging.getLogger("mpa_mn.state_file")

VERSION = 1
MAX_FILE_BYTES = 1024 * 1024
DEFAULT_DIRECTORY = "/run/mpa-mn"
LOCK_WAIT_S = 10.0


class StateError(Exception):
    """The state file cannot be read, written or locked."""


# A held VXLAN tunnel: the answer's fields, the nCoA it carries, its lifetime
# and when it came (wall clock).
TUNNEL_KEYS = {*VXLAN_FIELDS, "address", "lifetime", "at"}
ENTRY_KEYS = {"sa", "candidate", "established_at", "configured_at"}
# The rewriting installed: the binding's addresses, its correspondents, and
# the network whose MPA-SA bound them (the home domain's); optionally the
# care-of it moved from, still restored ("restoring", at most MAX_RESTORING);
# and for a standby abroad, the interface whose leaving traffic is rewritten
# ("interface", a Linux interface name).
REWRITE_KEYS = {"home_address", "care_of", "correspondents", "network"}
MAX_IFNAME = 15
MAX_RESTORING = 1


@dataclass
class Entry:
    """What the MN keeps about one CTN."""

    sa: SaState
    candidate: dict            # as discovery gave it: where the AA answers (aa.address, port)
    established_at: float      # wall clock: the SA's lifetime runs from here
    configured_at: float | None = None   # when the configuration (sa.config) came
    # The VXLAN tunnel the MN ends on the nCoA's vif (TUNNEL_KEYS), kept so that
    # a later run keeps its end (configure) or knows it is there (status).
    tunnel: dict | None = None

    @property
    def domain(self) -> str:
        """The network's domain, as discovery gave it: its controller answers
        REST requests for it (the SA's, for a candidate that said none)."""
        return self.candidate.get("domain") or self.sa.domain

    def record(self) -> dict:
        return {"sa": self.sa.to_record(), "candidate": self.candidate,
                "established_at": self.established_at, "configured_at": self.configured_at,
                "tunnel": self.tunnel}

    @classmethod
    def from_record(cls, network: str, raw) -> "Entry":
        # "tunnel" is left out by the files of an mpa-mn that had no VXLAN end.
        if not isinstance(raw, dict) or set(raw) - {"tunnel"} != ENTRY_KEYS:
            raise ValueError("not an entry (sa, candidate, established_at, configured_at, "
                             "tunnel)")
        sa = SaState.from_record(raw["sa"])
        if sa.network != network:
            raise ValueError(f"its SA is for {sa.network!r}")
        if type(sa.next_seq) is not int or sa.next_seq < 1 or not isinstance(sa.sa, str):
            raise ValueError("bad sa or next_seq")
        if not isinstance(raw["candidate"], dict) or not isinstance(raw["candidate"].get("aa"),
                                                                    dict) \
                or not messages.network_ok(raw["candidate"].get("domain", sa.domain)):
            raise ValueError("bad candidate")
        for name in ("established_at", "configured_at"):
            if not isinstance(raw[name], (int, float)) and not (
                    name == "configured_at" and raw[name] is None):
                raise ValueError(f"bad {name}")
        tunnel = raw.get("tunnel")
        if tunnel is not None and not _tunnel_ok(tunnel):
            raise ValueError("bad tunnel")
        return cls(sa, raw["candidate"], raw["established_at"], raw["configured_at"], tunnel)


def _tunnel_ok(raw) -> bool:
    """A held tunnel's record, each answer field checked as the answer's was."""
    checks = messages.SCHEMAS["tunnel"][1]
    return (isinstance(raw, dict) and set(raw) == TUNNEL_KEYS
            and all(checks[name](raw[name]) for name in VXLAN_FIELDS)
            and messages.ipv4_ok(raw["address"]) and type(raw["lifetime"]) is int
            and type(raw["at"]) in (int, float))


def _rewrite_ok(raw) -> bool:
    restoring = raw.get("restoring", []) if isinstance(raw, dict) else None
    interface = raw.get("interface", "lo") if isinstance(raw, dict) else None
    return (isinstance(raw, dict) and set(raw) - {"restoring", "interface"} == REWRITE_KEYS
            and isinstance(interface, str) and 0 < len(interface) <= MAX_IFNAME
            and interface.isprintable() and not any(c in interface for c in ' /"')
            and isinstance(restoring, list) and len(restoring) <= MAX_RESTORING
            and all(messages.ipv4_ok(r) for r in restoring)
            and messages.ipv4_ok(raw["home_address"]) and messages.ipv4_ok(raw["care_of"])
            and messages.network_ok(raw["network"])
            and isinstance(raw["correspondents"], list)
            and len(raw["correspondents"]) <= messages.MAX_CORRESPONDENTS
            and all(messages.ipv4_ok(c) for c in raw["correspondents"]))


@dataclass
class MnState:
    entries: dict[str, Entry] = field(default_factory=dict)   # network -> Entry
    discovery: dict | None = None  # {"address", "network", "at", "candidates"}
    rewrite: dict | None = None    # REWRITE_KEYS: the nftables table installed

    def record(self) -> dict:
        return {"version": VERSION, "discovery": self.discovery, "rewrite": self.rewrite,
                "networks": {n: e.record() for n, e in sorted(self.entries.items())}}

    @classmethod
    def from_record(cls, raw) -> "MnState":
        if not isinstance(raw, dict):
            raise ValueError("not a JSON object")
        if raw.get("version") != VERSION:
            raise ValueError(f"version {raw.get('version')!r}; this mpa-mn reads {VERSION}")
        # "rewrite" is left out by the files of an mpa-mn that never bound abroad.
        unknown = set(raw) - {"version", "discovery", "networks", "rewrite"}
        if unknown:
            raise ValueError(f"unknown keys {sorted(unknown)}")
        networks = raw.get("networks", {})
        if not isinstance(networks, dict):
            raise ValueError("networks is not an object")
        entries = {}
        for network, entry in networks.items():
            try:
                entries[network] = Entry.from_record(network, entry)
            except (TypeError, ValueError, KeyError, AttributeError) as exc:
                raise ValueError(f"networks.{network}: {exc}") from None
        discovery = raw.get("discovery")
        if discovery is not None and not (isinstance(discovery, dict)
                                          and isinstance(discovery.get("candidates"), list)):
            raise ValueError("discovery is not an object with candidates")
        rewrite = raw.get("rewrite")
        if rewrite is not None and not _rewrite_ok(rewrite):
            raise ValueError("bad rewrite")
        return cls(entries, discovery, rewrite)


def default_path(identities) -> str:
    """``/run/mpa-mn/<identity>.json``; with several identities, the first in order."""
    identity = sorted(identities)[0]
    return os.path.join(DEFAULT_DIRECTORY, re.sub(r"[^A-Za-z0-9@._+-]", "_", identity) + ".json")


class MemoryState:
    """A store that forgets everything when the process ends (library use, tests)."""

    def __init__(self):
        self._record = MnState().record()

    def load(self) -> MnState:
        return MnState.from_record(copy.deepcopy(self._record))

    def save(self, state: MnState) -> None:
        self._record = copy.deepcopy(state.record())


class StateFile:
    def __init__(self, path: str):
        self.path = path

    def load(self) -> MnState:
        """The saved state; an empty one if there is no file yet."""
        try:
            fd = os.open(self.path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOFOLLOW)
        except FileNotFoundError:
            return MnState()
        except OSError as exc:
            raise StateError(f"state file {self.path}: cannot read ({exc.strerror})") from None
        try:
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                raise StateError(f"state file {self.path}: not a regular file")
            if mode & 0o077:
                LOG.warning("state file %s holds keys but has mode %03o; it is rewritten 600",
                            self.path, stat.S_IMODE(mode))
            with os.fdopen(fd, "rb", closefd=False) as handle:
                data = handle.read(MAX_FILE_BYTES + 1)
        except OSError as exc:
            raise StateError(f"state file {self.path}: cannot read ({exc.strerror})") from None
        finally:
            os.close(fd)
        if len(data) > MAX_FILE_BYTES:
            raise StateError(f"state file {self.path}: larger than {MAX_FILE_BYTES} bytes")
        try:
            return MnState.from_record(json.loads(data.decode("utf-8")))
        except (UnicodeDecodeError, ValueError, RecursionError) as exc:
            raise StateError(f"state file {self.path} is corrupt ({exc}); move it away to "
                             "start afresh (its MPA-SAs are then lost)") from None

    def save(self, state: MnState) -> None:
        directory = os.path.dirname(os.path.abspath(self.path))
        text = json.dumps(state.record(), indent=1, sort_keys=True) + "\n"
        try:
            os.makedirs(directory, mode=0o700, exist_ok=True)
            fd, temporary = tempfile.mkstemp(dir=directory,
                                             prefix=f".{os.path.basename(self.path)}.")
        except OSError as exc:
            raise StateError(f"state file {self.path}: cannot write ({exc.strerror})") from None
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as handle:
                os.fchmod(handle.fileno(), 0o600)  # mkstemp's mode already; say it anyway
                handle.write(text)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, self.path)
        except OSError as exc:
            with contextlib.suppress(OSError):
                os.unlink(temporary)
            raise StateError(f"state file {self.path}: cannot write ({exc.strerror})") from None
        with contextlib.suppress(OSError):  # the rename itself must survive a crash
            dir_fd = os.open(directory, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)

    @contextlib.contextmanager
    def locked(self, wait_s: float = LOCK_WAIT_S, clock=time.monotonic, sleep=time.sleep):
        """Hold ``PATH.lock`` exclusively: one run at a time moves the sequence numbers."""
        path = self.path + ".lock"
        try:
            os.makedirs(os.path.dirname(os.path.abspath(path)), mode=0o700, exist_ok=True)
            fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600)
        except OSError as exc:
            raise StateError(f"state lock {path}: cannot open ({exc.strerror})") from None
        try:
            deadline = clock() + wait_s
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except OSError as exc:
                    if exc.errno not in (errno.EAGAIN, errno.EACCES):
                        raise StateError(f"state lock {path}: cannot lock "
                                         f"({exc.strerror})") from None
                    if clock() >= deadline:
                        raise StateError(f"state file {self.path} is in use by another "
                                         f"mpa-mn (waited {wait_s:g} s)") from None
                    sleep(0.05)
            yield self
        finally:
            os.close(fd)

"""Hands the validated configuration from the launcher to the Ryu app.

Ryu instantiates apps itself, by module name, so the launcher cannot pass
arguments to the constructor; it leaves them here instead.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mpa_sdn.topology import Topology


@dataclass(frozen=True)
class Runtime:
    topology: Topology
    config_path: str
    radius_servers: dict = field(default_factory=dict)  # domain -> [RadiusServer]
    store: Any = None                                 # SAs and leases (mpa_sdn.store)
    tokens: Any = None                                # api_tokens.Tokens (None: none valid)
    tls: dict = field(default_factory=dict)           # "rest", "openflow" -> ssl.SSLContext


_current: Runtime | None = None


def configure(topology: Topology, config_path: str, radius_servers: dict | None = None,
              store=None, tokens=None, tls: dict | None = None) -> None:
    global _current
    _current = Runtime(topology, config_path, radius_servers or {}, store, tokens, tls or {})


def current() -> Runtime:
    if _current is None:
        raise RuntimeError("apps.mpa_app must be started through mpa-controller (apps.launcher)")
    return _current

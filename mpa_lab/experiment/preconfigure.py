"""The demo's MPA part: each MN pre-authenticates with every candidate
target network of the network it is in and gets an nCoA from each (RFC 6252
§6.3 steps 1-2, §7.2), with ``mpa-mn`` run inside the MN's host.

Candidates are taken in turn over the two signalling channels (in-band UDP
through the switches, REST over the MN's management link), so a demo shows
both.
"""

from __future__ import annotations

import json
import os
import shlex
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

MPA_MN = os.path.join(os.path.dirname(sys.executable), "mpa-mn")
CHANNELS = ("inband", "rest")


@dataclass
class Result:
    mn: str
    network: str
    channel: str
    ok: bool
    elapsed_ms: float
    detail: dict   # the network's result from mpa-mn --json (or an error)


def mpa_mn_command(lab, mn: str, rest_port: int, state_path: str, channel: str, *args,
                   credentials: str | None = None,
                   domain_rest_ports: Mapping[str, int] | None = None) -> list[str]:
    """``mpa-mn --json ARGS`` for the MN's host, with the lab's options.
    The credentials are the MN's file from the topology unless given.  With
    one controller per domain, ``domain_rest_ports`` (domain -> REST port)
    says where each domain's REST API is (``rest_port`` is the one of the
    others)."""
    root_ip, _ = lab.management_addresses(mn)
    per_domain = [arg for domain, port in sorted((domain_rest_ports or {}).items())
                  for arg in ("--domain-controller", f"{domain}=http://{root_ip}:{port}")]
    return [MPA_MN, "--channel", channel, "--controller", f"http://{root_ip}:{rest_port}",
            *per_domain,
            "--credentials", credentials or lab.topology.mobile_nodes[mn].credentials,
            "--interface", lab.host(mn).defaultIntf().name, "--state", state_path, "--json",
            *args]


def run_mpa_mn(lab, mn: str, rest_port: int, state_path: str, channel: str, *args,
               credentials: str | None = None,
               domain_rest_ports: Mapping[str, int] | None = None) -> tuple[int, dict]:
    """``mpa-mn --json`` inside the MN's host: (exit status, its JSON document)."""
    host = lab.host(mn)
    command = mpa_mn_command(lab, mn, rest_port, state_path, channel, *args,
                             credentials=credentials, domain_rest_ports=domain_rest_ports)
    out = host.cmd(" ".join(shlex.quote(c) for c in command) + " 2>/dev/null; echo rc=$?")
    output, _, rc = out.rpartition("rc=")
    try:
        document = json.loads(output) if output.strip() else {}
    except ValueError:
        document = {"error": output.strip()[-300:]}
    return int(rc.strip()), document


def preconfigure(lab, rest_port: int, state_dir: str, progress=print,
                 domain_rest_ports: Mapping[str, int] | None = None) -> list[Result]:
    """``domain_rest_ports``: with one controller per domain, each one's REST
    port (see mpa_mn_command)."""
    results = []
    for mn in sorted(lab.topology.mobile_nodes):
        if lab.topology.mobile_nodes[mn].credentials is None:
            progress(f"  {mn}: the topology names no credentials file for it; "
                     "not pre-authenticated")
            continue
        current = lab.location[mn].network
        state = os.path.join(state_dir, f"{mn}.json")
        for index, candidate in enumerate(lab.graph.candidates(current)):
            channel = CHANNELS[index % len(CHANNELS)]
            started = time.monotonic()
            rc, document = run_mpa_mn(lab, mn, rest_port, state, channel, "up",
                                      candidate.network, domain_rest_ports=domain_rest_ports)
            elapsed = (time.monotonic() - started) * 1000
            detail = (document.get("results") or [document])[0]
            result = Result(mn, candidate.network, channel, rc == 0, elapsed, detail)
            results.append(result)
            progress(line(result, current))
    return results


def line(r: Result, current: str) -> str:
    head = f"  {r.mn} in {current} -> {r.network:<7} over {r.channel:<6}"
    if not r.ok:
        error = r.detail.get("error", {})
        if isinstance(error, dict):
            error = f"{error.get('code')}: {error.get('message')}"
        return f"{head} FAILED ({error})"
    config = r.detail.get("config", {})
    return (f"{head} MPA-SA with {r.detail.get('domain')}'s AA as {r.detail.get('identity')}; "
            f"nCoA {config.get('address')}/{config.get('prefix_len')} on "
            f"{config.get('interface')}, router {config.get('router')} "
            f"({config.get('gateway_mac')}) [{r.elapsed_ms:.0f} ms incl. mpa-mn start]")

"""The demo's MPA part: each MN pre-authenticates with every candidate
target network of the network it is in and gets an nCoA from each (RFC 6252
§6.3 steps 1-2, §7.2), with ``mpa-mn`` run inside the MN's host.

Candidates are taken in turn over the two signalling channels (in-band UDP
through the switches, REST over the MN's management link), so a demo shows
both.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass

from mpa_protocol.program_output import OutputError, json_output

MPA_MN = os.path.join(os.path.dirname(sys.executable), "mpa-mn")
CHANNELS = ("inband", "rest")
# mpa-mn bounds each of its own waits (--timeout per PANA message, a REST
# call's); this bounds one that hangs all the same.
RUN_TIMEOUT_S = 120.0
STDERR_TAIL = 500


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
    """``mpa-mn --json`` inside the MN's host: (exit status, its JSON document).

    Its output is read from pipes, not from the host's shell (whose pty
    carries whatever else runs there), and must be one JSON document in
    UTF-8: if it is not, or mpa-mn does not end within ``RUN_TIMEOUT_S``,
    the document is an error (code ``output`` or ``timeout``) naming the host
    and the command, with the end of what mpa-mn wrote on stderr."""
    command = mpa_mn_command(lab, mn, rest_port, state_path, channel, *args,
                             credentials=credentials, domain_rest_ports=domain_rest_ports)
    source = f"mpa-mn in {mn} ({' '.join(args)})"
    process = lab.host(mn).popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE)
    try:
        out, err = process.communicate(timeout=RUN_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return process.returncode, _failed("timeout", f"{source} did not end within "
                                           f"{RUN_TIMEOUT_S:g} s; killed", err)
    try:
        document = json_output(out, source)
    except OutputError as exc:
        return process.returncode, _failed("output", str(exc), err)
    if not isinstance(document, dict):
        return process.returncode, _failed("output", f"{source}: printed a JSON "
                                           f"{type(document).__name__}, not an object", err)
    return process.returncode, document


def _failed(code: str, message: str, stderr: bytes) -> dict:
    """An mpa-mn --json document saying what went wrong, with its stderr's end."""
    tail = stderr.decode("utf-8", "replace").strip()[-STDERR_TAIL:]
    return {"ok": False, "error": {"code": code, "message": message + (
        f"; its stderr ends: {tail}" if tail else "")}}


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

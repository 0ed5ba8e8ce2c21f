"""The MN's half of benchmarks/preauth.py lab: run inside the MN's host.

Times, from the MN, pre-authentication + pre-configuration with one CTN
(auth-init, auth-response, config-request, each answer checked) with the
``mpa-mn`` library over one channel, ``--runs`` times, releasing the lease
between runs (not timed).  Prints the run times in ms as one JSON list.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mpa_mn.channels import InbandChannel, RestChannel  # noqa: E402
from mpa_mn.client import MobileNode  # noqa: E402
from mpa_sdn.credentials import load_mn_credentials  # noqa: E402


def interface(name: str) -> tuple[str, str]:
    """(MAC, IPv4 address) of an interface."""
    link = json.loads(subprocess.run(["ip", "-j", "addr", "show", "dev", name],
                                     capture_output=True, text=True, check=True).stdout)[0]
    address = next(a["local"] for a in link["addr_info"] if a["family"] == "inet")
    return link["address"], address


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--channel", choices=["rest", "inband"], required=True)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--network", required=True)
    parser.add_argument("--controller", required=True, help="REST base URL")
    parser.add_argument("--credentials", required=True)
    parser.add_argument("--interface", required=True)
    args = parser.parse_args()
    mac, address = interface(args.interface)
    credentials = load_mn_credentials(args.credentials)
    rest = RestChannel(args.controller)
    # Discovery once, over REST: it tells where each CTN's AA listens.
    node = MobileNode(credentials, mac, address, rest)
    node.discover()
    candidate = node.candidate(args.network)
    if args.channel == "inband":
        node.channel = InbandChannel(address, candidate["aa"]["address"],
                                     candidate["aa"]["port"])
    samples = []
    for _ in range(args.runs):
        started = time.perf_counter()
        node.preauthenticate(args.network)
        node.configure(args.network)
        samples.append((time.perf_counter() - started) * 1000)
        node.release(args.network)
    print(json.dumps([round(s, 4) for s in samples]))
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The MN's half of benchmarks/preauth.py lab and domains: run inside the MN's host.

Times, from the MN, with the ``mpa-mn`` library, ``--runs`` times:
pre-authentication with one CTN (Tauth: a PANA session over UDP 716, EAP
with the method the credentials file names, the AA's AUTH checked) and
pre-configuration (Tconf: the config-request over ``--channel``, its answer
checked).  The MN keeps its lease: each run makes a new MPA-SA, and its
config-request renews the lease (released, an address the MN never used in
the network is probed again before anyone gets it, so each run would wait
for DAD).  Prints ``{"tauth": [ms...], "tconf": [ms...]}`` as one JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

from mpa_mn.channels import Controllers, InbandChannel, RestChannel  # noqa: E402
from mpa_mn.mobile_node import MobileNode  # noqa: E402
from mpa_mn.vif import Ip  # noqa: E402
from mpa_mn.credentials import load_mn_credentials  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--channel", choices=["rest", "inband"], required=True)
    parser.add_argument("--runs", type=int, default=1000)
    parser.add_argument("--network", required=True)
    parser.add_argument("--controller", required=True, help="REST base URL")
    parser.add_argument("--domain-controller", action="append", default=[],
                        metavar="DOMAIN=URL", help="another domain's REST base URL")
    parser.add_argument("--credentials", required=True)
    parser.add_argument("--interface", required=True)
    args = parser.parse_args()
    mac, address = Ip().interface(args.interface)
    credentials = load_mn_credentials(args.credentials)
    rest = RestChannel(Controllers.of(args.controller, dict(
        item.split("=", 1) for item in args.domain_controller)))
    # Discovery once, over REST: it tells where each CTN's AA listens.
    node = MobileNode(credentials, mac, address, rest)
    node.discover()
    node.candidate(args.network)  # a candidate of the MN's network, or an error
    if args.channel == "inband":
        node.channel = InbandChannel(address)  # each request goes to its CTN's AA
    samples = {"tauth": [], "tconf": []}
    for _ in range(args.runs):
        started = time.perf_counter()
        node.preauthenticate(args.network)
        configuring = time.perf_counter()
        node.configure(args.network)
        done = time.perf_counter()
        samples["tauth"].append(round((configuring - started) * 1000, 4))
        samples["tconf"].append(round((done - configuring) * 1000, 4))
    print(json.dumps(samples))
    return 0


if __name__ == "__main__":
    sys.exit(main())

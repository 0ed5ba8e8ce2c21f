"""EAP-TLS and EAP-TTLS/PAP conversations, the MN's peer against the test
authenticator, in one process: what each costs in Requests, octets and CPU.

For each method and fragment size: the round trips (Requests the peer
answers), the EAP octets each way, the largest EAP packet (what a PANA or
RADIUS message must carry) and the time of a whole conversation (both ends'
work, TLS included; no network), as median and 95th percentile over
``--runs`` conversations. EC P-256 keys, TLS 1.2.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

from common import ROOT, report, stamped

sys.path.insert(0, str(Path(ROOT) / "tests"))

from mpa_mn.eap_peer import EapPeer, EapTls, EapTtlsPap  # noqa: E402
from mpa_protocol import eap  # noqa: E402
from support.eap_server import EapServer, converse  # noqa: E402
from support.pki import Pki  # noqa: E402

NAI = "mn1@domain-a.example"
SERVER = "radius.domain-a.example"


def conversations(pki, server_cert, mn_cert, method: str, fragment_size: int):
    def pair():
        if method == "tls":
            peer = EapPeer(NAI, EapTls(mn_cert.cert, mn_cert.key, pki.ca, server_name=SERVER),
                           fragment_size=fragment_size, max_round_trips=500)
            server = EapServer(server_cert.cert, server_cert.key, pki.ca,
                               fragment_size=fragment_size)
        else:
            peer = EapPeer(NAI, EapTtlsPap("alice", "a password", pki.ca, server_name=SERVER),
                           fragment_size=fragment_size, max_round_trips=500)
            server = EapServer(server_cert.cert, server_cert.key, pki.ca, methods=(eap.TTLS,),
                               users={"alice": "a password"}, fragment_size=fragment_size)
        return peer, server
    return pair


def measure(pair, runs: int) -> dict:
    times = []
    for _ in range(runs):
        peer, server = pair()
        started = time.perf_counter()
        requests, responses = converse(peer, server)
        times.append((time.perf_counter() - started) * 1000)
        assert peer.result == "success" and peer.msk == server.msk
    times.sort()
    return {"round_trips": peer.round_trips,
            "octets_to_peer": sum(map(len, requests)),
            "octets_from_peer": sum(map(len, responses)),
            "largest_packet": max(map(len, requests + responses)),
            "median_ms": round(statistics.median(times), 3),
            "p95_ms": round(times[int(0.95 * (len(times) - 1))], 3)}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--output", help="JSON file for the results")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as directory:
        pki = Pki(Path(directory), "domain-a-ca")
        server_cert = pki.issue(SERVER, dns_names=(SERVER,))
        mn_cert = pki.issue(NAI)
        rows = {}
        for method in ("tls", "ttls"):
            for size in (eap.DEFAULT_FRAGMENT_SIZE, 300):
                rows[f"{method} fragment {size}"] = measure(
                    conversations(pki, server_cert, mn_cert, method, size), args.runs)
    lines = [f"{'':<22}{'trips':>6}{'to MN':>7}{'from MN':>8}{'largest':>8}"
             f"{'median ms':>10}{'p95 ms':>8}"]
    for name, row in rows.items():
        lines.append(f"{name:<22}{row['round_trips']:>6}{row['octets_to_peer']:>7}"
                     f"{row['octets_from_peer']:>8}{row['largest_packet']:>8}"
                     f"{row['median_ms']:>10}{row['p95_ms']:>8}")
    return report(args.output, stamped({"runs": args.runs, "results": rows}), "\n".join(lines))


if __name__ == "__main__":
    sys.exit(main())

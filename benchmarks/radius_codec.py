"""What one EAP round over RADIUS costs the Authentication Agent's worker:
encoding an Access-Request (pyrad, with its Message-Authenticator) and
checking an answer (Response Authenticator, Message-Authenticator, EAP
reassembled, and on Access-Accept the MS-MPPE keys decrypted).

Each case runs ``count`` times a round, ``rounds`` rounds, the fastest round
kept (what the code costs, not what the machine was doing).  Usage:

    python benchmarks/radius_codec.py [--out results/bench/radius_codec-COMMIT.json]
"""

from __future__ import annotations

import argparse
import os
import struct
import sys
import time

from common import ROOT, report, stamped
from mpa_sdn import radius

sys.path.insert(0, os.path.join(ROOT, "tests"))
from support import radius_answers  # noqa: E402

SECRET = b"benchmark-secret"
AUTH = bytes(range(16))


def _answer(code: int, attrs: list) -> bytes:
    return radius_answers.answer(code, attrs, identifier=1, secret=SECRET, request_auth=AUTH)


def _mppe(key: bytes, salt: bytes) -> bytes:
    return radius_answers.encrypt_mppe(key, SECRET, AUTH, salt)


def cases() -> dict:
    """name -> a function doing one of it."""
    identity = b"\x02\x01\x00\x12\x01mn1@a.example"
    tls = struct.pack("!BBHBB", 2, 5, 1400, 13, 0) + bytes(1394)
    challenge_eap = struct.pack("!BBHBB", 1, 6, 1024, 13, 0) + bytes(1018)
    challenge = _answer(11, [(79, challenge_eap[i:i + 253]) for i in range(0, 1024, 253)]
                        + [(24, bytes(16))])
    accept = _answer(2, [(79, b"\x03\x07\x00\x04"), ((311, 17), _mppe(bytes(32), b"\x80\x01")),
                         ((311, 16), _mppe(bytes(range(32)), b"\x80\x02"))])
    forged = challenge[:20] + bytes([challenge[20] ^ 1]) + challenge[21:]

    def request(eap):
        return lambda: radius.access_request(
            identifier=1, authenticator=AUTH, secret=SECRET, eap=eap, user_name="mn1@a.example",
            calling_station_id="02-00-00-00-00-01", nas_identifier="aa", state=bytes(16))

    def parse(data):
        def run():
            try:
                radius.parse_answer(data, identifier=1, request_authenticator=AUTH, secret=SECRET)
            except radius.RadiusError:
                pass
        return run

    return {"access_request_identity": request(identity),
            "access_request_1400_octets": request(tls),
            "parse_challenge_1024_octets": parse(challenge),
            "parse_accept_with_keys": parse(accept),
            "refuse_forged_challenge": parse(forged)}


def measure(count: int, rounds: int) -> dict:
    results = {}
    for name, run in cases().items():
        best = float("inf")
        for _ in range(rounds):
            start = time.perf_counter()
            for _ in range(count):
                run()
            best = min(best, time.perf_counter() - start)
        results[name] = round(best / count * 1e6, 2)
    return results


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out")
    parser.add_argument("--count", type=int, default=2000)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    us = measure(args.count, args.rounds)
    result = stamped({"benchmark": "radius_codec", "microseconds_each": us,
                      "count": args.count, "rounds": args.rounds})
    text = "\n".join(f"{name:32} {value:8.1f} µs" for name, value in us.items())
    return report(args.out, result, text)


if __name__ == "__main__":
    raise SystemExit(main())

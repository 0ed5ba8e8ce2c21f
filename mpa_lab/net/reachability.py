"""All-pairs reachability in the lab, with the MN visiting every PoA.

For each access PoA (starting where the MN is attached) the MN's link is
moved there, then every ordered pair of hosts is checked with ping and with a
TCP connection.  After each move we also record how long it took until the
CN's pings reached the MN again: the reactive path, before MPA.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from mpa_lab.net.probes import Result, ping, tcp

RECOVERY_DEADLINE_S = 15.0


@dataclass(frozen=True)
class PairResult:
    location: str     # the MN's PoA during the check
    source: str
    destination: str
    address: str
    ping: Result
    tcp: Result

    @property
    def ok(self) -> bool:
        return self.ping.ok and self.tcp.ok


@dataclass(frozen=True)
class Visit:
    poa: str
    address: str
    recovery_ms: float | None
    pairs: tuple[PairResult, ...]


def wait_reachable(src_host, address: str, deadline_s: float = RECOVERY_DEADLINE_S) -> float | None:
    """Milliseconds until one ping from ``src_host`` to ``address`` is answered."""
    start = time.monotonic()
    while time.monotonic() - start < deadline_s:
        if ping(src_host, address, count=1, wait_s=1).ok:
            return (time.monotonic() - start) * 1000
    return None


def check_pairs(lab, location: str) -> list[PairResult]:
    names = sorted(h.name for h in lab.net.hosts)
    results = []
    for src in names:
        for dst in names:
            if src == dst:
                continue
            address = lab.address(dst)
            results.append(PairResult(location, src, dst, address,
                                      ping(lab.host(src), address),
                                      tcp(lab.host(src), lab.host(dst), address)))
    return results


def tour(lab, mn_id: str, progress=lambda line: None) -> list[Visit]:
    graph = lab.graph
    start = lab.location[mn_id].id
    taken = {poa.id: host for host, poa in lab.location.items() if host != mn_id}
    poas = [p.id for n in graph.access_networks() for p in n.poas]
    order = [start] + [p for p in poas if p != start and p not in taken]
    skipped = [f"{p} ({h})" for p, h in sorted(taken.items()) if p in poas]
    if skipped:
        progress(f"  (not visited, other hosts are there: {', '.join(skipped)})")
    cn = sorted(lab.topology.correspondents)[0]
    visits = []
    for poa in order:
        address = lab.move(mn_id, poa)
        recovery = wait_reachable(lab.host(cn), address)
        pairs = check_pairs(lab, poa)
        visit = Visit(poa, address, recovery, tuple(pairs))
        visits.append(visit)
        progress(_visit_line(mn_id, visit))
    return visits


def all_pairs(lab, progress=lambda line: None) -> list[Visit]:
    mn_id = sorted(lab.topology.mobile_nodes)[0]
    progress(f"Reachability: {mn_id} visits every PoA; at each, every pair of hosts "
             "is checked with ping and a TCP connection")
    return tour(lab, mn_id, progress)


def _visit_line(mn_id: str, visit: Visit) -> str:
    recovery = f"{visit.recovery_ms:7.0f} ms" if visit.recovery_ms is not None else "    never"
    checks = "  ".join(
        f"{p.source}->{p.destination} ping {'ok' if p.ping.ok else 'FAIL'} "
        f"({p.ping.detail}{_ms(p.ping, ', ')}) tcp {'ok' if p.tcp.ok else 'FAIL'}{_ms(p.tcp)}"
        for p in visit.pairs)
    return f"  {mn_id} at {visit.poa:<8} {visit.address:<11} reachable after {recovery}  {checks}"


def _ms(result: Result, before: str = " ") -> str:
    return f"{before}{result.rtt_ms:.1f} ms" if result.rtt_ms is not None else ""


def print_report(visits: list[Visit]) -> bool:
    pairs = [p for v in visits for p in v.pairs]
    good = sum(p.ok for p in pairs)
    recoveries = [v.recovery_ms for v in visits if v.recovery_ms is not None]
    print(f"Result: {good}/{len(pairs)} host pairs reachable (ping and TCP) "
          f"over {len(visits)} PoAs.")
    if recoveries:
        print(f"Reachable again after a move (reactive, no MPA): median "
              f"{sorted(recoveries)[len(recoveries) // 2]:.0f} ms, max {max(recoveries):.0f} ms.")
    return bool(pairs) and good == len(pairs) and len(recoveries) == len(visits)

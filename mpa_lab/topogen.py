"""``mpa-topogen``: generate topology files of many sizes for scale tests.

The shape is a tree of switches::

                            core
               /          /       \\           \\
           cn-ar         d1        d2   ...     dD        (one switch per domain)
             |          / | \\     / \\
            cn1     ar1-1 ...  ar1-N  ar2-1 ...          (one AR per access network)
                    | | |
                    PoAs (AR ports 2..K+1)

* ``core`` (dpid 0x1) joins everything; ``cn-ar`` (dpid 0x2) is the access
  router of ``net-cn``, the correspondent network (10.0.0.0/24, owned by the
  first domain) with one correspondent ``cn1`` at 10.0.0.10.
* Domain ``d`` (``domain-<d>``, 1 <= d <= 255) has switch ``d<d>`` (dpid
  ``d << 16``), linked to ``core``.
* Access network ``i`` of domain ``d`` (``net<d>-<i>``, 1 <= i <= 255) has AR
  switch ``ar<d>-<i>`` (dpid ``d << 16 | i``) linked to its domain switch on
  the AR's port 1; its PoAs ``ap<d>-<i>-<k>`` are the AR's ports 2..K+1.
  Its prefix is ``10.<d>.<i>.0/24``, gateway ``.1`` (MAC
  ``02:00:0a:<d>:<i>:01``, hex), pool ``.100-.199``.
* Every switch's trunk ports come first, numbered from 1 in link order.

Neighbour relations (all bidirectional), on the access networks in the order
net1-1, net1-2, ..., net2-1, ...:

``ring``
    each network and the next one, so the last network of domain d and the
    first of domain d+1 are neighbours; the ring closes when it has at least
    three networks.
``mesh``
    every pair of networks within a domain, plus the ring across domains:
    last network of domain d and first of domain d+1 (closed when there are
    at least three domains).
``random``
    a random spanning tree (so the networks are always connected), then
    random extra relations until every network has about three neighbours;
    ``random.Random(seed)`` makes it repeatable.

A handover within a domain costs ``l2_handover_ms: 50``, across domains 200.

Mobile nodes ``mn1..mnM`` (MAC ``02:00:01:xx:xx:xx``) start on distinct PoAs
spread over the access networks; ``mnK@domain-<d>`` is the identity in the
domain of the network it starts in, and ``10.255.0.K`` its home address
(10.255.0.0/24 is never a generated network: network numbers start at 1).
``M`` is at most the pool size (100): the lab gives each MN its own address
counted down from the top of the pool.

Domain ``d`` names one RADIUS server, FreeRADIUS on 127.0.0.1, port
``18121 + d - 1`` (so ``domain-1`` is where the default lab's ``domain-a``
is), its shared secret in ``/run/mpa-lab/aaa/<stem>/domain-<d>/secret``;
each MN's credentials file is ``/run/mpa-lab/aaa/<stem>/mnK.yaml``, ``stem``
the output file's name without its extension (``generated`` on standard
output).  The lab writes them all when it starts the servers
(mpa_lab/aaa/lab_servers.py); nothing secret is generated here.
"""

from __future__ import annotations

import argparse
import os
import random
import sys

import yaml

from mpa_protocol.messages import ID_RE
from mpa_protocol.schema import MAX_FILE_BYTES
from mpa_sdn.interface_names import port_name, problem

NEIGHBOUR_MODES = ("ring", "mesh", "random")
MAX_DOMAINS = 255            # the second octet of 10.<d>.<i>.0/24
MAX_NETWORKS_PER_DOMAIN = 255  # the third octet
MAX_OVS_PORT = 65279         # highest port number ofport_request takes
POOL_FIRST, POOL_LAST = 100, 199
MAX_MOBILE_NODES = POOL_LAST - POOL_FIRST + 1
L2_SAME_DOMAIN_MS = 50
L2_OTHER_DOMAIN_MS = 200
RANDOM_DEGREE = 3

AAA_ROOT = "/run/mpa-lab/aaa"   # where the lab writes secrets and credentials
RADIUS_FIRST_PORT = 18121        # domain-1's FreeRADIUS; domain d's is d - 1 above
DEFAULT_STEM = "generated"
HOME_PREFIX = "10.255.0"   # mnK's home address is HOME_PREFIX.K

CORE, CN_AR = "core", "cn-ar"
CN_NETWORK, CN_POA = "net-cn", "cn-port"

# Lower bounds of the YAML bytes each item takes; used to refuse sizes that
# cannot fit in a topology file before building them.
_MIN_BYTES = {"network": 170, "poa": 20, "switch": 15, "link": 20, "relation": 45, "mn": 120,
              "domain": 120}


def domain_id(d: int) -> str:
    return f"domain-{d}"


def network_id(d: int, i: int) -> str:
    return f"net{d}-{i}"


def domain_switch_id(d: int) -> str:
    return f"d{d}"


def ar_switch_id(d: int, i: int) -> str:
    return f"ar{d}-{i}"


def poa_id(d: int, i: int, k: int) -> str:
    return f"ap{d}-{i}-{k}"


def _check_count(name: str, value, lo: int, hi: int, why: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int):
        raise ValueError(f"{name} must be an integer, not {value!r}")
    if value < lo:
        raise ValueError(f"{name} must be at least {lo}, not {value}")
    if value > hi:
        raise ValueError(f"{name} is {value}, at most {hi} fit {why}")


def _check_interface_names(max_port: dict[str, int]) -> None:
    for switch, port in max_port.items():
        if not ID_RE.fullmatch(switch):
            raise ValueError(f"switch id {switch!r} is not a valid id")
        too_long = problem(port_name(switch, port))
        if too_long:
            raise ValueError(f"switch {switch}: {too_long}; use fewer PoAs per network "
                             "or fewer networks")


def generate(domains: int, networks_per_domain: int, poas_per_network: int, *,
             neighbours: str = "ring", seed: int = 0, mobile_nodes: int = 1,
             stem: str = DEFAULT_STEM) -> dict:
    """The raw topology (as :func:`mpa_sdn.config.parse_topology` reads it);
    its secrets and credentials files are named under AAA_ROOT/``stem``.

    Raises ValueError for sizes that are not positive or do not fit the
    address plan, the switch naming or a topology file.
    """
    _check_sizes(domains, networks_per_domain, poas_per_network, neighbours, seed,
                 mobile_nodes)
    D, N, K = domains, networks_per_domain, poas_per_network
    access = [(d, i) for d in range(1, D + 1) for i in range(1, N + 1)]
    raw: dict = {"version": 1}
    aaa = f"{AAA_ROOT}/{stem}"
    raw["domains"] = {domain_id(d): {"name": f"Operator {d}", "radius": {"servers": [{
        "address": "127.0.0.1", "port": RADIUS_FIRST_PORT + d - 1,
        "secret_file": f"{aaa}/{domain_id(d)}/secret"}]}} for d in range(1, D + 1)}
    raw["switches"], raw["links"] = _switches_and_links(D, access)
    raw["networks"] = _networks(access, K)

    pairs = _PAIRS[neighbours](access, D, N, random.Random(seed))
    raw["neighbours"] = [
        {"from": network_id(*a), "to": network_id(*b),
         "l2_handover_ms": L2_SAME_DOMAIN_MS if a[0] == b[0] else L2_OTHER_DOMAIN_MS}
        for a, b in pairs]

    raw["correspondents"] = {"cn1": {"poa": CN_POA, "address": "10.0.0.10",
                                     "mac": "02:00:00:00:0c:01"}}
    raw["mobile_nodes"] = _mobile_nodes(access, K, mobile_nodes)
    for mn, entry in raw["mobile_nodes"].items():
        entry["credentials"] = f"{aaa}/{mn}.yaml"
    return raw


def _check_sizes(domains: int, networks_per_domain: int, poas_per_network: int,
                 neighbours: str, seed: int, mobile_nodes: int) -> None:
    """Raise ValueError unless the sizes fit the address plan, the switch
    naming and a topology file (estimated before anything is built)."""
    _check_count("domains", domains, 1, MAX_DOMAINS,
                 "the address plan (10.<domain>.<network>.0/24)")
    _check_count("networks per domain", networks_per_domain, 1, MAX_NETWORKS_PER_DOMAIN,
                 "the address plan (10.<domain>.<network>.0/24)")
    _check_count("PoAs per network", poas_per_network, 1, MAX_OVS_PORT - 1,
                 "an Open vSwitch bridge (PoAs are AR ports 2..K+1)")
    if neighbours not in NEIGHBOUR_MODES:
        raise ValueError(f"neighbours must be one of {', '.join(NEIGHBOUR_MODES)}, "
                         f"not {neighbours!r}")
    if isinstance(seed, bool) or not isinstance(seed, int):
        raise ValueError(f"seed must be an integer, not {seed!r}")
    D, N, K = domains, networks_per_domain, poas_per_network
    slots = D * N * K
    _check_count("mobile nodes", mobile_nodes, 1, MAX_MOBILE_NODES,
                 f"the lab's addresses (one each from the pool .{POOL_FIRST}-.{POOL_LAST})")
    if mobile_nodes > slots:
        raise ValueError(f"mobile nodes is {mobile_nodes}, but there are only {slots} PoAs "
                         "to attach them to")
    _check_interface_names({CORE: D + 1, CN_AR: 2,
                            domain_switch_id(D): N + 1, ar_switch_id(D, N): K + 1})
    access = [(d, i) for d in range(1, D + 1) for i in range(1, N + 1)]
    relation_count = _relation_estimate(neighbours, D, N)
    estimate = (len(access) * _MIN_BYTES["network"] + slots * _MIN_BYTES["poa"]
                + (len(access) + D + 2) * (_MIN_BYTES["switch"] + _MIN_BYTES["link"])
                + relation_count * _MIN_BYTES["relation"] + mobile_nodes * _MIN_BYTES["mn"]
                + D * _MIN_BYTES["domain"])
    if estimate > MAX_FILE_BYTES:
        raise ValueError(f"the topology would be larger than the {MAX_FILE_BYTES} bytes "
                         "a topology file may hold; use fewer networks or PoAs"
                         + (" (or another neighbour mode than mesh)"
                            if neighbours == "mesh" else ""))


def _switches_and_links(D: int, access: list) -> tuple[dict, list]:
    """The core, the correspondents' AR, a switch per domain and an AR per
    access network, linked as a tree."""
    switches = {CORE: {"dpid": 0x1}, CN_AR: {"dpid": 0x2}}
    links = [[f"{CORE}:1", f"{CN_AR}:1"]]
    for d in range(1, D + 1):
        ds = domain_switch_id(d)
        switches[ds] = {"dpid": d << 16}
        links.append([f"{CORE}:{d + 1}", f"{ds}:1"])
    for d, i in access:
        ar = ar_switch_id(d, i)
        switches[ar] = {"dpid": (d << 16) | i}
        links.append([f"{domain_switch_id(d)}:{i + 1}", f"{ar}:1"])
    return switches, links


def _networks(access: list, K: int) -> dict:
    """The correspondents' network and each access network with K PoAs."""
    networks = {CN_NETWORK: {
        "role": "correspondent", "domain": domain_id(1), "prefix": "10.0.0.0/24",
        "gateway": "10.0.0.1", "gateway_mac": "02:00:0a:00:00:01",
        "access_router": CN_AR, "poas": {CN_POA: f"{CN_AR}:2"}}}
    for d, i in access:
        ar = ar_switch_id(d, i)
        networks[network_id(d, i)] = {
            "domain": domain_id(d),
            "prefix": f"10.{d}.{i}.0/24",
            "gateway": f"10.{d}.{i}.1",
            "gateway_mac": f"02:00:0a:{d:02x}:{i:02x}:01",
            "access_router": ar,
            "pool": f"10.{d}.{i}.{POOL_FIRST}-10.{d}.{i}.{POOL_LAST}",
            "poas": {poa_id(d, i, k): f"{ar}:{k + 1}" for k in range(1, K + 1)},
        }
    return networks


def _relation_estimate(mode: str, D: int, N: int) -> int:
    if mode == "mesh":
        return D * N * (N - 1) // 2 + D
    if mode == "random":
        return D * N * RANDOM_DEGREE // 2
    return D * N


def _mobile_nodes(access: list, K: int, count: int) -> dict:
    """Distinct PoAs spread over the networks: first PoAs first, evenly."""
    T = len(access)
    result = {}
    for m in range(count):
        slot = m * T // count if count <= T else m
        d, i = access[slot % T]
        k = slot // T + 1
        assert k <= K
        number = m + 1
        result[f"mn{number}"] = {
            "mac": "02:00:01:" + ":".join(f"{(number >> s) & 0xff:02x}" for s in (16, 8, 0)),
            "attach": poa_id(d, i, k),
            "identity": f"mn{number}@{domain_id(d)}",
            "home_address": f"{HOME_PREFIX}.{number}",
        }
    return result


# -- neighbour relations: each returns unordered pairs (a, b), a before b in
# -- ``access`` order, sorted and without repeats.

class _Pairs:
    def __init__(self, access: list):
        self.index = {net: n for n, net in enumerate(access)}
        self.pairs: set[tuple[int, int]] = set()

    def add(self, a, b) -> bool:
        x, y = sorted((self.index[a], self.index[b]))
        if x == y or (x, y) in self.pairs:
            return False
        self.pairs.add((x, y))
        return True

    def result(self, access: list) -> list:
        return [(access[x], access[y]) for x, y in sorted(self.pairs)]


def _ring(access, D, N, rng) -> list:
    pairs = _Pairs(access)
    for a, b in zip(access, access[1:]):
        pairs.add(a, b)
    if len(access) >= 3:
        pairs.add(access[-1], access[0])
    return pairs.result(access)


def _mesh(access, D, N, rng) -> list:
    pairs = _Pairs(access)
    for d in range(1, D + 1):
        for i in range(1, N + 1):
            for j in range(i + 1, N + 1):
                pairs.add((d, i), (d, j))
    for d in range(1, D):
        pairs.add((d, N), (d + 1, 1))
    if D >= 3:
        pairs.add((D, N), (1, 1))
    return pairs.result(access)


def _random(access, D, N, rng: random.Random) -> list:
    pairs = _Pairs(access)
    count = len(access)
    degree = [0] * count

    def add(x, y):
        if pairs.add(access[x], access[y]):
            degree[x] += 1
            degree[y] += 1
            return True
        return False

    # A random recursive tree keeps every network reachable from every other.
    order = list(range(count))
    rng.shuffle(order)
    for n in range(1, count):
        add(order[n], order[rng.randrange(n)])
    # Then more relations until each network has about RANDOM_DEGREE.
    want = min(RANDOM_DEGREE, count - 1)
    for x in range(count):
        tries = 0
        while degree[x] < want:
            y = rng.randrange(count)
            if add(x, y):
                continue
            tries += 1
            if tries >= 16:
                free = [y for y in range(count)
                        if y != x and (min(x, y), max(x, y)) not in pairs.pairs]
                if not free:
                    break
                add(x, rng.choice(free))
    return pairs.result(access)


_PAIRS = {"ring": _ring, "mesh": _mesh, "random": _random}


# -- output -------------------------------------------------------------------

class _Dumper(yaml.SafeDumper):
    """Block style for the sections, flow style for the small leaf entries."""


def _flow_dict(dumper, data):
    return dumper.represent_mapping("tag:yaml.org,2002:map", data.items(), flow_style=True)


def _flow_list(dumper, data):
    return dumper.represent_sequence("tag:yaml.org,2002:seq", data, flow_style=True)


class _FlowDict(dict):
    pass


class _FlowList(list):
    pass


class _Hex(int):
    pass


def _hex(dumper, data):
    return dumper.represent_scalar("tag:yaml.org,2002:int", f"{int(data):#x}")


_Dumper.add_representer(_FlowDict, _flow_dict)
_Dumper.add_representer(_FlowList, _flow_list)
_Dumper.add_representer(_Hex, _hex)


def render(raw: dict, header: str = "") -> str:
    """YAML text for a generated topology; the same input gives the same text."""
    doc = dict(raw)
    for section in ("domains", "switches", "correspondents", "mobile_nodes"):
        if section in doc:
            doc[section] = {k: _FlowDict(v) for k, v in doc[section].items()}
    for entry in doc.get("switches", {}).values():
        if isinstance(entry.get("dpid"), int) and not isinstance(entry["dpid"], bool):
            entry["dpid"] = _Hex(entry["dpid"])
    if "links" in doc:
        doc["links"] = [_FlowList(link) for link in doc["links"]]
    if "neighbours" in doc:
        doc["neighbours"] = [_FlowDict(rel) for rel in doc["neighbours"]]
    text = yaml.dump(doc, Dumper=_Dumper, sort_keys=False, default_flow_style=False,
                     width=1000)
    lines = "".join(f"# {line}\n" if line else "#\n" for line in header.splitlines())
    return lines + text


def _arguments(argv) -> tuple[argparse.ArgumentParser, argparse.Namespace]:
    parser = argparse.ArgumentParser(
        prog="mpa-topogen",
        description="Generate an MPA topology file (a core, one switch per domain, one "
                    "access router per network, PoAs on its ports) for scale tests.")
    parser.add_argument("--domains", type=int, required=True, metavar="D",
                        help=f"administrative domains (1..{MAX_DOMAINS})")
    parser.add_argument("--networks-per-domain", type=int, required=True, metavar="N",
                        help=f"access networks in each domain (1..{MAX_NETWORKS_PER_DOMAIN})")
    parser.add_argument("--poas-per-network", type=int, required=True, metavar="K",
                        help="points of attachment of each access network")
    parser.add_argument("--neighbours", choices=NEIGHBOUR_MODES, default="ring",
                        help="how access networks are related (default: ring)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed for --neighbours random (default: 0)")
    parser.add_argument("--mobile-nodes", type=int, default=1, metavar="M",
                        help=f"mobile nodes, on distinct PoAs (1..{MAX_MOBILE_NODES}; default: 1)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="write the topology to FILE (default: standard output); its "
                             f"secrets and credentials are named under {AAA_ROOT}/STEM, STEM "
                             f"being FILE's name without its extension ({DEFAULT_STEM} on "
                             "standard output)")
    return parser, parser.parse_args(argv)


def main(argv=None) -> int:
    parser, args = _arguments(sys.argv[1:] if argv is None else argv)
    to_file = args.output not in (None, "-")
    stem = os.path.splitext(os.path.basename(args.output))[0] if to_file else DEFAULT_STEM
    try:
        raw = generate(args.domains, args.networks_per_domain, args.poas_per_network,
                       neighbours=args.neighbours, seed=args.seed,
                       mobile_nodes=args.mobile_nodes, stem=stem)
    except ValueError as exc:
        parser.error(str(exc))
    command = (f"mpa-topogen --domains {args.domains} --networks-per-domain "
               f"{args.networks_per_domain} --poas-per-network {args.poas_per_network} "
               f"--neighbours {args.neighbours} --seed {args.seed} "
               f"--mobile-nodes {args.mobile_nodes}")
    text = render(raw, f"Generated by: {command}\nSee mpa_lab/topogen.py for the layout.")
    data = text.encode("utf-8")
    if len(data) > MAX_FILE_BYTES:
        parser.error(f"the topology is {len(data)} bytes, more than the {MAX_FILE_BYTES} "
                     "a topology file may hold; use fewer networks, PoAs or relations")
    if not to_file:
        sys.stdout.write(text)
        sys.stdout.flush()
        return 0
    try:
        with open(args.output, "w", encoding="utf-8") as handle:
            handle.write(text)
    except OSError as exc:
        parser.error(f"cannot write {args.output}: {exc.strerror}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

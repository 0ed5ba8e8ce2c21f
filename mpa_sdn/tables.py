"""OpenFlow tables and cookies, declared once.

Pipeline (every switch has the same one):

``INGRESS`` (0)
    Classifies by port.  Trunk ports (switch to switch) go to ROUTE.  At a
    point of attachment ARP goes to ARP, and IPv4 goes to ROUTE only from a
    host the controller knows at that port (source check: MAC, IPv4 source
    and port must all match, so a host is routed only from where the
    controller learned it, and the controller never gives a live host's
    address to another MAC); IPv4 from an unknown source is punted so the
    controller can learn it.  Packets the controller injects (packet-out with
    in_port CONTROLLER) are routed like any other.
``ARP`` (1)
    Answers ARP requests for the gateway in the switch itself; punts every
    other ARP packet (replies to the gateway's own requests, requests for
    other hosts, gratuitous ARP, probes) to the controller.
``ROUTE`` (2)
    Routes IPv4 along the neighbourhood graph: host routes (/32) for known
    hosts, network routes towards each network's access router, and punts
    for the gateway's own address and for unresolved destinations at the AR.

Punts serve the AA and CA: at every PoA, INGRESS sends DHCP (UDP to port
67) to the controller before any source check, since a DHCP client may have
no address yet, or (RFC 6252 §7.3.3) one from another network; and ROUTE
sends UDP to a served network's gateway on the signalling port and on PANA's
(716) to the controller wherever it enters.

Cookies: every flow carries ``MAGIC | feature | subject``.  The magic byte
tells our flows from anyone else's, the feature byte which part of the
controller owns it, and the subject (48 bits) which host or network it is
for, so cleanup is a cookie-masked delete and a reconnecting switch can be
purged of flows we do not recognise.

Declarations: each table says what its flows may match (and which fields may
be masked), which fields they may set, what else they may do (output, punt,
push or pop a label, go to which later table), which features' cookies it
holds and at which priorities (``PIPELINE``).  ``check_flow`` says what a
flow-mod breaks in its table's declaration; the unit tests' fake switch
applies it to every flow-mod the core sends, as Faucet's tables check their
own flows, so a builder that strays outside its table fails a test rather
than a switch.
"""

from __future__ import annotations

import enum
import functools
import ipaddress
import types
from dataclasses import dataclass, field

from ryu.ofproto import ether, inet
from ryu.ofproto import ofproto_v1_3 as ofp
from ryu.ofproto import ofproto_v1_3_parser as parser


class Table(enum.IntEnum):
    INGRESS = 0
    ARP = 1
    ROUTE = 2


class Feature(enum.IntEnum):
    PIPELINE = 0x01      # table-miss and port classification
    ARP_RESPONDER = 0x02  # in-switch ARP replies for gateways
    NETWORK_ROUTE = 0x03  # per-network routes and punts, subject = network index
    HOST = 0x04          # a host's source check and routes, subject = its IPv4 address
    REJECT = 0x05        # temporary drops for sources the controller refused
    DHCP = 0x06          # DHCP punts at PoAs
    SIGNALLING = 0x07    # in-band MPA signalling punts, subject = network index
    TUNNEL = 0x08        # a proactive handover tunnel, subject = its nCoA
    BINDING = 0x09       # a binding's rewrites, subject = the home address
    BUFFER = 0x0A        # a handover's buffering punt, subject = the buffered address


MAGIC = 0x4D  # 'M'
MAGIC_SHIFT = 56
FEATURE_SHIFT = 48
SUBJECT_MASK = (1 << FEATURE_SHIFT) - 1
EXACT_MASK = (1 << 64) - 1


def cookie(feature: Feature, subject: int = 0) -> int:
    if not 0 <= subject <= SUBJECT_MASK:
        raise ValueError(f"cookie subject {subject} does not fit in 48 bits")
    return (MAGIC << MAGIC_SHIFT) | (int(feature) << FEATURE_SHIFT) | subject


@functools.lru_cache(maxsize=1 << 16)
def address_cookie(feature: Feature, address) -> int:
    """A cookie whose subject is an IPv4 address (a host, an nCoA, a home address)."""
    return cookie(feature, int(ipaddress.IPv4Address(address)))


def address_of(value: int) -> str:
    """The address an address cookie's subject is (address_cookie's inverse)."""
    return str(ipaddress.IPv4Address(subject_of(value) & 0xFFFFFFFF))


def host_cookie(address) -> int:
    return address_cookie(Feature.HOST, address)


def is_ours(value: int) -> bool:
    return (value >> MAGIC_SHIFT) == MAGIC


def feature_of(value: int) -> int | None:
    return (value >> FEATURE_SHIFT) & 0xFF if is_ours(value) else None


def subject_of(value: int) -> int:
    return value & SUBJECT_MASK


# Priorities, highest first within each table.
PRIO_TUNNEL_END = 420      # ROUTE: VXLAN to an nAR's own address, to its tunnel port
PRIO_SIGNALLING = 410      # ROUTE: MPA signalling to a gateway
PRIO_GATEWAY_PUNT = 400    # ROUTE: the gateways' own addresses
PRIO_BUFFER = 360          # ROUTE: a handover's buffering punt, over whatever lies below
PRIO_DHCP = 350            # INGRESS: DHCP at PoAs, before source checks
PRIO_BINDING = 350         # ROUTE: correspondent <-> care-of rewrites
PRIO_BINDING_IN = 320      # INGRESS: home address rewrites where traffic enters
PRIO_TUNNEL = 310          # ROUTE: into a tunnel; INGRESS: along it and out of it
PRIO_HOST = 300            # ROUTE: host routes; INGRESS: source checks
PRIO_REJECT = 250          # INGRESS: refused sources, dropped for a while
PRIO_NETWORK = 200         # ROUTE: network prefixes
PRIO_ARP_RESPONDER = 200   # ARP: the gateway's in-switch replies
PRIO_CLASSIFY = 100        # INGRESS: port classification
PRIO_ARP_OTHER = 100       # ARP: everything else goes to the controller
PRIO_UNKNOWN_SOURCE = 50   # INGRESS: IPv4 from an unknown host
PRIO_MISS = 0


# -- what each table may match and do -------------------------------------------

class Action(enum.Enum):
    """What a flow may do with a packet, besides its set-fields (declared apart)."""

    OUTPUT = "output"          # out of a switch port
    IN_PORT = "in_port"        # back out of the port it came in on
    CONTROLLER = "controller"  # a punt
    LOCAL = "local"            # to the bridge's own port: where OVS ends a VXLAN tunnel
    DROP = "drop"              # neither output nor goto: the packet ends here
    DEC_TTL = "dec_ttl"
    PUSH_MPLS = "push_mpls"
    POP_MPLS = "pop_mpls"
    GROUP = "group"            # no table uses groups or meters yet
    METER = "meter"


class Expiry(enum.Enum):
    """How a feature's flows may leave a table by themselves (none: they
    stay until the controller deletes them, as the desired state assumes)."""

    IDLE = "idle"   # an idle timeout, with a notice of the removal
    HARD = "hard"   # a hard timeout


@dataclass(frozen=True)
class TableSpec:
    """What the flows of one table may match and do.

    ``match`` maps each field its flows may match to whether it may be
    masked; ``set_fields`` are the fields they may write (a Nicira register
    load or move writes its destination field too); ``features`` maps each
    feature whose cookie may appear here to its priorities in this table;
    ``expiring`` the features whose flows here may time out, and how.
    """

    table: Table
    match: dict
    set_fields: frozenset
    actions: frozenset
    next_tables: frozenset
    features: dict
    expiring: dict = field(default_factory=dict)

    def __post_init__(self):
        # Read-only views, so that a declaration stays as written.
        object.__setattr__(self, "match", types.MappingProxyType(dict(self.match)))
        object.__setattr__(self, "features", types.MappingProxyType(
            {feature: frozenset(prios) for feature, prios in self.features.items()}))
        object.__setattr__(self, "expiring", types.MappingProxyType(dict(self.expiring)))
        assert set(self.expiring) <= set(self.features), f"{self.table.name} expiring"
        # OpenFlow only lets a flow go to a later table.
        assert all(t > self.table for t in self.next_tables), f"{self.table.name} goes back"
        owners: dict[int, Feature] = {}
        for feature, prios in self.features.items():
            for prio in prios:
                assert 0 <= prio <= 0xFFFF, f"{feature.name} priority {prio}"
                # A priority says which feature a flow belongs to: two
                # features at one priority could overwrite each other's flow.
                assert prio not in owners, \
                    f"{self.table.name}: {feature.name} and {owners[prio].name} at {prio}"
                owners[prio] = feature

    @property
    def priorities(self) -> tuple[int, int]:
        """The lowest and highest priority of the table's flows."""
        every = [p for prios in self.features.values() for p in prios]
        return min(every), max(every)


PIPELINE = types.MappingProxyType({spec.table: spec for spec in (
    TableSpec(
        Table.INGRESS,
        match={"in_port": False, "eth_type": False, "eth_src": False, "ipv4_src": False,
               "ipv4_dst": False, "ip_proto": False, "udp_dst": False, "arp_spa": False,
               "mpls_label": False, "tunnel_id": False, "tun_ipv4_src": False},
        # Bindings rewrite addresses where traffic enters; a tunnel's end
        # rewrites the last hop's MACs, its entry pushes a label, its nAR
        # end loads in_port (the hairpin).
        set_fields=frozenset({"ipv4_src", "ipv4_dst", "eth_src", "eth_dst", "mpls_label",
                              "in_port"}),
        actions=frozenset({Action.OUTPUT, Action.CONTROLLER, Action.DROP, Action.PUSH_MPLS,
                           Action.POP_MPLS}),
        next_tables=frozenset({Table.ARP, Table.ROUTE}),
        features={Feature.PIPELINE: {PRIO_MISS, PRIO_UNKNOWN_SOURCE, PRIO_CLASSIFY},
                  Feature.DHCP: {PRIO_DHCP},
                  Feature.BINDING: {PRIO_BINDING_IN},
                  Feature.TUNNEL: {PRIO_TUNNEL},
                  Feature.HOST: {PRIO_HOST},
                  Feature.REJECT: {PRIO_REJECT}},
        # A learned host's source check idles out and tells the controller,
        # which forgets the host; a refused source's drop lasts reject_hold_s.
        expiring={Feature.HOST: Expiry.IDLE, Feature.REJECT: Expiry.HARD}),
    TableSpec(
        Table.ARP,
        match={"in_port": False, "eth_type": False, "arp_op": False, "arp_tpa": False},
        # The responder turns a request into its reply in place.
        set_fields=frozenset({"eth_src", "eth_dst", "arp_op", "arp_sha", "arp_spa",
                              "arp_tha", "arp_tpa"}),
        actions=frozenset({Action.IN_PORT, Action.CONTROLLER, Action.DROP}),
        next_tables=frozenset(),
        features={Feature.PIPELINE: {PRIO_MISS, PRIO_ARP_OTHER},
                  Feature.ARP_RESPONDER: {PRIO_ARP_RESPONDER}}),
    TableSpec(
        Table.ROUTE,
        # Network routes match a prefix; everything else is exact.
        match={"eth_type": False, "ipv4_src": False, "ipv4_dst": True, "ip_proto": False,
               "udp_dst": False},
        # The last hop's MACs, a binding's address rewrites, and a tunnel's
        # entry at the nAR (its label and the hairpin, or its VXLAN key and
        # outer destination).
        set_fields=frozenset({"eth_src", "eth_dst", "ipv4_src", "ipv4_dst", "mpls_label",
                              "in_port", "tunnel_id", "tun_ipv4_dst"}),
        actions=frozenset({Action.OUTPUT, Action.CONTROLLER, Action.DROP, Action.DEC_TTL,
                           Action.PUSH_MPLS, Action.LOCAL}),
        next_tables=frozenset(),
        features={Feature.PIPELINE: {PRIO_MISS, PRIO_TUNNEL_END},
                  Feature.SIGNALLING: {PRIO_SIGNALLING},
                  Feature.NETWORK_ROUTE: {PRIO_GATEWAY_PUNT, PRIO_NETWORK},
                  Feature.BUFFER: {PRIO_BUFFER},
                  Feature.BINDING: {PRIO_BINDING},
                  Feature.TUNNEL: {PRIO_TUNNEL},
                  Feature.HOST: {PRIO_HOST}}),
)})
assert set(PIPELINE) == set(Table), "every table is declared"


class Rule(enum.Enum):
    """The part of a table's declaration a flow can break."""

    TABLE = "table"                # a table the pipeline does not have
    COOKIE = "cookie"              # not ours, or no feature we have
    FEATURE = "feature"            # a feature that has no flows in this table
    PRIORITY = "priority"          # not one of the feature's priorities here
    MATCH = "match"                # a field the table does not match on
    MASK = "mask"                  # a mask on a field the table matches exactly
    PREREQUISITE = "prerequisite"  # a field whose OpenFlow prerequisite is not matched
    SET_FIELD = "set_field"        # a field the table does not write
    ACTION = "action"              # something the table's flows do not do
    INSTRUCTION = "instruction"    # an instruction no table uses
    GOTO = "goto"                  # a table this one does not go to
    EXPIRY = "expiry"              # a timeout or removal notice the feature's flows lack


@dataclass(frozen=True)
class Breach:
    rule: Rule
    detail: str

    def __str__(self) -> str:
        return f"{self.rule.value}: {self.detail}"


# OpenFlow 1.3's match prerequisites (§7.2.3.8): the field's name prefix,
# the field the flow must also match and its value.  A switch refuses a
# flow that matches a field without its prerequisite.
PREREQUISITES = (("ipv4_", "eth_type", ether.ETH_TYPE_IP),
                 ("ip_", "eth_type", ether.ETH_TYPE_IP),
                 ("arp_", "eth_type", ether.ETH_TYPE_ARP),
                 ("mpls_", "eth_type", ether.ETH_TYPE_MPLS),
                 ("udp_", "ip_proto", inet.IPPROTO_UDP),
                 ("tcp_", "ip_proto", inet.IPPROTO_TCP),
                 ("icmpv4_", "ip_proto", inet.IPPROTO_ICMP))
OWNER_MASK = 0xFFFF << FEATURE_SHIFT  # the magic and feature bytes of a cookie


def check_flow(msg) -> list[Breach]:
    """What a flow-mod breaks in its table's declaration (nothing: [])."""
    if msg.command in (ofp.OFPFC_DELETE, ofp.OFPFC_DELETE_STRICT):
        return _check_delete(msg)
    spec = PIPELINE.get(msg.table_id)
    if spec is None:
        return [Breach(Rule.TABLE, f"table {msg.table_id} is not in the pipeline")]
    return (_check_owner(spec, msg.cookie, msg.priority) + _check_match(spec, msg.match)
            + _check_instructions(spec, msg.instructions) + _check_expiry(spec, msg)
            + ([Breach(Rule.MATCH, "a table-miss flow (priority 0) matches nothing")]
               if msg.priority == PRIO_MISS and list(msg.match.items()) else []))


def _check_delete(msg) -> list[Breach]:
    """A delete scoped by one of our cookies may only name what that
    feature installs; one that is not (reconciliation's purge of flows we
    do not recognise) removes what is there, declared or not."""
    if msg.cookie_mask & OWNER_MASK != OWNER_MASK:
        return []
    if msg.table_id == ofp.OFPTT_ALL:
        return _check_cookie(msg.cookie)
    spec = PIPELINE.get(msg.table_id)
    if spec is None:
        return [Breach(Rule.TABLE, f"table {msg.table_id} is not in the pipeline")]
    strict = msg.command == ofp.OFPFC_DELETE_STRICT
    return (_check_owner(spec, msg.cookie, msg.priority if strict else None)
            + _check_match(spec, msg.match))


def _check_cookie(value: int) -> list[Breach]:
    if not is_ours(value):
        return [Breach(Rule.COOKIE, f"cookie {value:#x} is not ours")]
    if feature_of(value) not in set(Feature):
        return [Breach(Rule.COOKIE, f"cookie {value:#x} names no feature")]
    return []


def _check_owner(spec: TableSpec, value: int, priority: int | None) -> list[Breach]:
    """The cookie's feature has flows in this table, at this priority."""
    breaches = _check_cookie(value)
    if breaches:
        return breaches
    feature = Feature(feature_of(value))
    if feature not in spec.features:
        return [Breach(Rule.FEATURE, f"{feature.name} has no flows in {spec.table.name}")]
    prios = spec.features[feature]
    if priority is not None and priority not in prios:
        return [Breach(Rule.PRIORITY, f"{feature.name} flows in {spec.table.name} have "
                                      f"priority {_listed(prios)}, not {priority}")]
    return []


def _check_expiry(spec: TableSpec, msg) -> list[Breach]:
    feature = feature_of(msg.cookie)
    expiry = spec.expiring.get(feature)
    who = Feature(feature).name if feature in set(Feature) else f"cookie {msg.cookie:#x}"
    asked = [(msg.idle_timeout, Expiry.IDLE, "idle timeout"),
             (msg.hard_timeout, Expiry.HARD, "hard timeout"),
             (msg.flags & ofp.OFPFF_SEND_FLOW_REM, Expiry.IDLE, "removal notice")]
    return [Breach(Rule.EXPIRY, f"{who} flows in {spec.table.name} take no {what}")
            for value, needs, what in asked if value and expiry != needs]


def _check_match(spec: TableSpec, match) -> list[Breach]:
    fields = dict(match.items())
    breaches = []
    for name, value in fields.items():
        if name not in spec.match:
            breaches.append(Breach(Rule.MATCH, f"{spec.table.name} does not match {name}"))
        elif isinstance(value, tuple) and not spec.match[name]:
            breaches.append(Breach(Rule.MASK, f"{spec.table.name} matches {name} exactly"))
        for prefix, needed, value_needed in PREREQUISITES:
            if name.startswith(prefix) and fields.get(needed) != value_needed:
                breaches.append(Breach(Rule.PREREQUISITE,
                                       f"{name} needs {needed} {value_needed:#x}"))
    return breaches


def _check_instructions(spec: TableSpec, instructions) -> list[Breach]:
    breaches, does, goes_on = [], set(), False
    for inst in instructions:
        if isinstance(inst, parser.OFPInstructionGotoTable):
            goes_on = True
            if inst.table_id not in spec.next_tables:
                breaches.append(Breach(Rule.GOTO, f"{spec.table.name} does not go to "
                                                  f"table {inst.table_id}"))
        elif isinstance(inst, parser.OFPInstructionMeter):
            does.add(Action.METER)
        elif (isinstance(inst, parser.OFPInstructionActions)
              and inst.type == ofp.OFPIT_APPLY_ACTIONS):
            for action in inst.actions:
                written, kind = _written(action), _kind(action)
                if written is not None:
                    if written not in spec.set_fields:
                        breaches.append(Breach(Rule.SET_FIELD,
                                               f"{spec.table.name} does not set {written}"))
                elif kind is not None:
                    does.add(kind)
                else:
                    breaches.append(Breach(Rule.ACTION, f"{action}: no table does that"))
        else:
            breaches.append(Breach(Rule.INSTRUCTION, f"{type(inst).__name__} (type "
                                                     f"{inst.type}): no table uses it"))
    if not goes_on and not does & PASSES_ON:
        does.add(Action.DROP)
    for kind in sorted(does - spec.actions, key=lambda a: a.value):
        breaches.append(Breach(Rule.ACTION, f"{spec.table.name}'s flows do not "
                                            f"{kind.value.replace('_', ' ')}"))
    return breaches


# What sends a packet on; a flow with none of these and no goto drops it.
PASSES_ON = frozenset({Action.OUTPUT, Action.IN_PORT, Action.CONTROLLER, Action.LOCAL,
                       Action.GROUP})
_RESERVED_PORTS = {ofp.OFPP_CONTROLLER: Action.CONTROLLER, ofp.OFPP_IN_PORT: Action.IN_PORT,
                   ofp.OFPP_LOCAL: Action.LOCAL}
_KINDS = {parser.OFPActionDecNwTtl: Action.DEC_TTL, parser.OFPActionPushMpls: Action.PUSH_MPLS,
          parser.OFPActionPopMpls: Action.POP_MPLS, parser.OFPActionGroup: Action.GROUP}


def _written(action) -> str | None:
    """The field an action writes: a set-field's, or a Nicira register
    load's or move's destination."""
    if isinstance(action, parser.OFPActionSetField):
        return action.key
    if isinstance(action, parser.NXActionRegLoad):
        return oxm_name(action.dst)
    if isinstance(action, parser.NXActionRegMove):
        return oxm_name(action.dst_field)
    return None


def _kind(action) -> Action | None:
    """What an action does (None: nothing any table declares)."""
    if isinstance(action, parser.OFPActionOutput):
        if action.port <= ofp.OFPP_MAX:
            return Action.OUTPUT
        return _RESERVED_PORTS.get(action.port)
    return _KINDS.get(type(action))


def oxm_name(field_name: str) -> str:
    """Nicira field names (eth_src_nxm) name the same header as OXM ones."""
    return field_name[:-4] if field_name.endswith("_nxm") else field_name


def _listed(prios) -> str:
    return " or ".join(str(p) for p in sorted(prios))

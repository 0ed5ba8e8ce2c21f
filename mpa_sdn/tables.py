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

Two punts serve the AA and CA (MPA signalling): at every PoA, INGRESS sends
DHCP (UDP to port 67) to the controller before any source check, since a
DHCP client may have no address yet, or (RFC 6252 §7.3.3) one from another
network; and ROUTE sends UDP to a served network's gateway on the
signalling port to the controller wherever it enters.

Cookies: every flow carries ``MAGIC | feature | subject``.  The magic byte
tells our flows from anyone else's, the feature byte which part of the
controller owns it, and the subject (48 bits) which host or network it is
for, so cleanup is a cookie-masked delete and a reconnecting switch can be
purged of flows we do not recognise.
"""

from __future__ import annotations

import enum
import functools
import ipaddress


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


def host_cookie(address) -> int:
    return address_cookie(Feature.HOST, address)


def is_ours(value: int) -> bool:
    return (value >> MAGIC_SHIFT) == MAGIC


def feature_of(value: int) -> int | None:
    return (value >> FEATURE_SHIFT) & 0xFF if is_ours(value) else None


def subject_of(value: int) -> int:
    return value & SUBJECT_MASK


# Priorities, highest first within each table.
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

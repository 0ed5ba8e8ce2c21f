"""OpenFlow tables and cookies, declared once.

Pipeline (every switch has the same one):

``INGRESS`` (0)
    Classifies by port.  Trunk ports (switch to switch) go to ROUTE.  At a
    point of attachment ARP goes to ARP, and IPv4 goes to ROUTE only from a
    host the controller knows at that port (source check: MAC, IPv4 source
    and port must all match, so a host cannot spoof another or be routed
    from a place it is not); IPv4 from an unknown source is punted so the
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

Cookies: every flow carries ``MAGIC | feature | subject``.  The magic byte
tells our flows from anyone else's, the feature byte which part of the
controller owns it, and the subject (48 bits) which host or network it is
for, so cleanup is a cookie-masked delete and a reconnecting switch can be
purged of flows we do not recognise.
"""

from __future__ import annotations

import enum
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


MAGIC = 0x4D  # 'M'
MAGIC_SHIFT = 56
FEATURE_SHIFT = 48
SUBJECT_MASK = (1 << FEATURE_SHIFT) - 1
MAGIC_MASK = 0xFF << MAGIC_SHIFT
FEATURE_MASK = MAGIC_MASK | (0xFF << FEATURE_SHIFT)
EXACT_MASK = (1 << 64) - 1


def cookie(feature: Feature, subject: int = 0) -> int:
    if not 0 <= subject <= SUBJECT_MASK:
        raise ValueError(f"cookie subject {subject} does not fit in 48 bits")
    return (MAGIC << MAGIC_SHIFT) | (int(feature) << FEATURE_SHIFT) | subject


def host_cookie(address) -> int:
    return cookie(Feature.HOST, int(ipaddress.IPv4Address(address)))


def is_ours(value: int) -> bool:
    return (value >> MAGIC_SHIFT) == MAGIC


def describe(value: int) -> str:
    """Human-readable cookie, for logs and the flow listing."""
    if not is_ours(value):
        return f"foreign({value:#x})"
    feature = (value >> FEATURE_SHIFT) & 0xFF
    subject = value & SUBJECT_MASK
    try:
        name = Feature(feature).name.lower()
    except ValueError:
        return f"unknown-feature({value:#x})"
    if feature == Feature.HOST:
        return f"{name}:{ipaddress.IPv4Address(subject)}"
    return f"{name}:{subject}"


# Priorities, highest first within each table.
PRIO_GATEWAY_PUNT = 400
PRIO_HOST = 300
PRIO_NETWORK = 200
PRIO_CLASSIFY = 100
PRIO_UNKNOWN_SOURCE = 50
PRIO_MISS = 0

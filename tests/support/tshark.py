"""Captures for tshark: frames (Ryu's packet library) written to a pcap by
hand (stdlib only), read back with ``tshark -T pdml``, the fields of one
protocol per packet.

PDML rather than JSON: it keeps repeated fields (every AVP's code) and gives
each field's raw bytes next to what tshark shows, so a test can check what
was sent even where a dissector shows a field wrongly (Wireshark 4.0's PANA
registers the 16-bit Flags as 8 bits: only ``showname`` has all of them).

Debian package: ``tshark`` (Wireshark 4.0 in Debian 12).
"""

from __future__ import annotations

import shutil
import struct
import subprocess
import xml.etree.ElementTree as ElementTree
from dataclasses import dataclass, field
from pathlib import Path

from ryu.lib.packet import ether_types, ethernet, in_proto, ipv4, udp
from ryu.lib.packet import packet as ryu_packet

TSHARK = shutil.which("tshark")
LINKTYPE_ETHERNET = 1
TIMEOUT_S = 60


def udp_frame(payload: bytes, src: str, dst: str, sport: int, dport: int,
              src_mac: str = "02:00:00:00:00:02", dst_mac: str = "02:00:00:00:00:01") -> bytes:
    """An Ethernet/IPv4/UDP frame; Ryu's serializer fills in the IPv4 and UDP
    checksums (checksums_good() has tshark check them)."""
    frame = ryu_packet.Packet()
    frame.add_protocol(ethernet.ethernet(dst=dst_mac, src=src_mac, ethertype=ether_types.ETH_TYPE_IP))
    frame.add_protocol(ipv4.ipv4(src=src, dst=dst, proto=in_proto.IPPROTO_UDP, ttl=64))
    frame.add_protocol(udp.udp(src_port=sport, dst_port=dport))
    frame.add_protocol(payload)
    frame.serialize()
    return bytes(frame.data)


def write_pcap(path: Path, frames: list[bytes]) -> Path:
    """A classic pcap (microsecond stamps, one second apart)."""
    out = [struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 0xFFFF, LINKTYPE_ETHERNET)]
    for number, frame in enumerate(frames):
        out.append(struct.pack("<IIII", number, 0, len(frame), len(frame)) + frame)
    path.write_bytes(b"".join(out))
    return path


@dataclass
class Packet:
    """One packet as tshark dissected it: the protocol's fields by name (each
    a list, in order), their raw bytes as hex, their full text, and what
    tshark warned about anywhere in the packet."""
    number: int
    protocols: str
    present: bool = False
    fields: dict[str, list[str]] = field(default_factory=dict)
    raw: dict[str, list[str]] = field(default_factory=dict)
    text: dict[str, list[str]] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    malformed: bool = False

    def first(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None


def _walk(node: ElementTree.Element, prefix: str, packet: Packet, inside: bool) -> None:
    for child in node:
        name = child.get("name", "")
        if name.startswith("_ws.malformed"):
            packet.malformed = True
        if name == "_ws.expert.message":
            packet.warnings.append(child.get("show", ""))
        elif name.startswith("_ws.expert") and child.get("showname") and not len(child):
            packet.warnings.append(child.get("showname", ""))
        here = inside or (child.tag == "proto" and name == prefix)
        if child.tag == "proto" and name == prefix:
            packet.present = True
        if here and name.startswith(prefix + "."):
            packet.fields.setdefault(name, []).append(child.get("show", ""))
            packet.raw.setdefault(name, []).append(child.get("value", ""))
            packet.text.setdefault(name, []).append(child.get("showname", ""))
        _walk(child, prefix, packet, here)


def dissect(pcap: Path, protocol: str, *, decode_as: tuple[str, ...] = (),
            prefs: dict[str, str] | None = None, two_pass: bool = False) -> list[Packet]:
    """Run tshark over ``pcap`` and return every packet with the fields of
    ``protocol`` (e.g. "pana", "radius").  ``decode_as`` takes tshark's
    ``-d`` rules ("udp.port==716,pana"); ``prefs`` its ``-o`` settings
    ("radius.shared_secret": "..."); checksums are always verified."""
    if TSHARK is None:
        raise RuntimeError("tshark is not installed (Debian package: tshark)")
    settings = {"ip.check_checksum": "TRUE", "udp.check_checksum": "TRUE", **(prefs or {})}
    command = [TSHARK, "-n", "-r", str(pcap), "-T", "pdml"]
    if two_pass:
        command.append("-2")
    for rule in decode_as:
        command += ["-d", rule]
    for key, value in settings.items():
        command += ["-o", f"{key}:{value}"]
    done = subprocess.run(command, capture_output=True, timeout=TIMEOUT_S, check=True)
    packets = []
    for number, node in enumerate(ElementTree.fromstring(done.stdout).iter("packet"), 1):
        protocols = ""
        for item in node.iter("field"):
            if item.get("name") == "frame.protocols":
                protocols = item.get("show", "")
                break
        packet = Packet(number, protocols)
        _walk(node, protocol, packet, False)
        packets.append(packet)
    return packets


def checksums_good(pcap: Path) -> list[tuple[str, str]]:
    """(ip.checksum.status, udp.checksum.status) per packet; "1" is good."""
    out = []
    for ip, udp in zip(dissect(pcap, "ip"), dissect(pcap, "udp")):
        out.append((ip.first("ip.checksum.status"), udp.first("udp.checksum.status")))
    return out


# RADIUS (dissect with prefs {"radius.shared_secret": SECRET,
# "radius.validate_authenticator": "TRUE"}): tshark 4.0 checks a response's
# Authenticator against its request in the same capture (the request must
# come first, from the other end), and marks the field "[correct]" or
# "[incorrect, should be ...]".  It has no verdict on Message-Authenticator:
# radius_verdicts() reports None for it unless a later tshark gives one.
RADIUS_PREFS_VALIDATE = {"radius.validate_authenticator": "TRUE"}


def _verdict(texts: list[str]) -> bool | None:
    for text in texts:
        if "[correct]" in text:
            return True
        if "[incorrect" in text:
            return False
    return None


def radius_verdicts(packet: Packet) -> dict[str, bool | None]:
    """{"authenticator": ..., "message_authenticator": ...}: True valid,
    False invalid, None when tshark said nothing."""
    valid = packet.fields.get("radius.authenticator.valid")
    authenticator = (valid[0] == "1") if valid else _verdict(packet.text.get("radius.authenticator", []))
    message_auth = _verdict(packet.text.get("radius.Message_Authenticator", [])
                            + [w for w in packet.warnings if "Message-Authenticator" in w])
    return {"authenticator": authenticator, "message_authenticator": message_auth}

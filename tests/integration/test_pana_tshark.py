"""What Wireshark's PANA dissector (tshark 4.0, Debian package ``tshark``)
makes of the messages mpa_protocol/pana.py writes: a second reading of the
wire format by code that is not ours.

Wireshark 4.0 knows RFC 5191's flags but not RFC 5873's E: its PANA
dissector refuses any message with a flag bit it calls reserved
(0x03ff, E included), so an E-flagged message is shown as plain UDP data.
The same messages without E are dissected in full.
"""

from __future__ import annotations

import pytest

from mpa_protocol import pana, pana_security
from mpa_protocol.pana import PanaMessage
from support import tshark

# tshark is a system package: with the lab's, in make test, never skipped.
pytestmark = [pytest.mark.integration, pytest.mark.usefixtures("tshark_installed")]

PAA, PAC = "10.0.0.1", "10.0.0.2"
SESSION = 0x5A5A0001
KEY = b"K" * 32
EAP_REQUEST = bytes.fromhex("0101000501")
EAP_SUCCESS = bytes.fromhex("03010004")


def exchange(e_flag: int) -> list[tuple[bytes, bool]]:
    """A PCI, the PAR and PAN with S, and the final signed PAR with C: each
    message's bytes and whether the PaC sent it."""
    pci = PanaMessage(pana.PCI, e_flag, 0, 0)
    par = PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_S | e_flag, SESSION, 100, (
        pana.eap_payload(EAP_REQUEST), pana.prf_algorithm(pana.PRF_HMAC_SHA2_256),
        pana.integrity_algorithm(pana.AUTH_HMAC_SHA2_256_128)))
    pan = PanaMessage(pana.AUTH, pana.FLAG_S | e_flag, SESSION, 100, (
        pana.prf_algorithm(pana.PRF_HMAC_SHA2_256),
        pana.integrity_algorithm(pana.AUTH_HMAC_SHA2_256_128)))
    final = PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_C, SESSION, 101, (
        pana.eap_payload(EAP_SUCCESS), pana.result_code(pana.PANA_SUCCESS),
        pana.key_id(7), pana.session_lifetime(3600)))
    signed = pana_security.sign(final, KEY, pana.AUTH_HMAC_SHA2_256_128)
    return [(pci.encode(), True), (par.encode(), False), (pan.encode(), True), (signed, False)]


def capture(tmp_path, messages) -> list[tshark.Packet]:
    frames = [tshark.udp_frame(data, PAC, PAA, 40000, pana.PANA_PORT) if from_pac
              else tshark.udp_frame(data, PAA, PAC, pana.PANA_PORT, 40000)
              for data, from_pac in messages]
    pcap = tshark.write_pcap(tmp_path / "pana.pcap", frames)
    assert tshark.checksums_good(pcap) == [("1", "1")] * len(frames)
    return tshark.dissect(pcap, "pana", decode_as=("udp.port==716,pana",))


def flags_shown(packet: tshark.Packet) -> int:
    # pana.flags is registered as 8 bits in 4.0: its value is the first
    # byte only, its text ("Flags: 0xc000") all sixteen.
    return int(packet.text["pana.flags"][0].split(":")[1].split(",")[0], 16)


def avp_codes(packet: tshark.Packet) -> list[int]:
    items = zip(packet.fields.get("pana.avp.code", []), packet.text.get("pana.avp.code", []))
    return [int(value) for value, text in items if text.startswith("AVP Code")]


def test_wireshark_reads_each_message_as_it_was_encoded(tmp_path):
    messages = exchange(e_flag=0)
    packets = capture(tmp_path, messages)
    for (data, _), packet in zip(messages, packets):
        sent = PanaMessage.decode(data, pana.MAX_MESSAGE_BYTES)
        assert packet.present and not packet.malformed and packet.warnings == [], packet
        assert flags_shown(packet) == sent.flags
        assert int(packet.first("pana.type")) == sent.msg_type
        assert int(packet.first("pana.length")) == len(data)
        assert int(packet.first("pana.sid"), 16) == sent.session_id
        assert int(packet.first("pana.seq"), 16) == sent.seq
        assert avp_codes(packet) == [a.code for a in sent.avps]
        assert [int(n) for n in packet.fields.get("pana.avp.data_length", [])] == \
            [len(a.value) for a in sent.avps]
    pci, par, pan, final = packets
    assert par.fields["pana.avp.data.uint32"] == ["0x00000005", "0x0000000c"]
    assert pan.fields["pana.avp.data.uint32"] == ["0x00000005", "0x0000000c"]
    auth = PanaMessage.decode(messages[3][0], pana.MAX_MESSAGE_BYTES).auth
    assert final.raw["pana.avp.data.bytes"] == [auth.hex()]
    assert final.fields["pana.avp.data.int32"] == ["7"]           # Key-Id
    assert final.fields["pana.avp.data.uint32"] == ["0x00000e10"]  # Session-Lifetime
    # 4.0 shows Result-Code's value in a second "pana.avp.code" item.
    assert [t for t in final.text["pana.avp.code"] if t.startswith("Value")] == ["Value: 0 (Unknown (0))"]


def test_wireshark_4_0_takes_the_e_flag_for_a_reserved_bit(tmp_path):
    messages = exchange(e_flag=pana.FLAG_E)
    packets = capture(tmp_path, messages)
    assert [p.present for p in packets] == [False, False, False, True]
    assert all("pana" not in p.protocols.split(":") for p in packets[:3])
    assert not any(p.malformed for p in packets)

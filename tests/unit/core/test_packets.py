"""Frame decoding: UDP datagrams come out whole, or not at all."""

from mpa_sdn import dhcp, packets


def datagram(payload=b'{"v":1}'):
    return packets.udp_frame(src_mac="02:00:00:00:00:01", dst_mac="02:00:00:00:00:02",
                             src_ip="10.1.1.5", dst_ip="10.2.1.1", src_port=40000,
                             dst_port=7664, payload=payload)


def test_udp_payload_excludes_ethernet_padding():
    frame = datagram()
    assert len(frame) == 60  # padded to the Ethernet minimum
    assert packets.decode(frame).udp == (40000, 7664, b'{"v":1}')


def test_a_payload_ryu_parses_itself_is_still_given_as_bytes():
    # ryu turns UDP 67/68 into a dhcp object; the core needs the bytes.
    frame = dhcp.build_request(dhcp.DISCOVER, chaddr="02:00:00:00:d1:01", xid=7)
    decoded = packets.decode(frame)
    assert decoded.udp[:2] == (68, 67) and len(decoded.udp[2]) == 300
    assert decoded.ip_src == "0.0.0.0"


def test_a_truncated_datagram_is_not_decoded():
    frame = datagram(b"x" * 100)
    assert packets.decode(frame) is not None
    for cut in (1, 50, 99):
        assert packets.decode(frame[:-cut]) is None

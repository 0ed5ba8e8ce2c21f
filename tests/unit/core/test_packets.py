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


# -- the struct decoder against Ryu's packet library --------------------------------

def _frames(rng):
    """Well-formed frames of every kind the handlers read, with random fields."""
    mac = lambda: ":".join(f"{rng.randrange(256):02x}" for _ in range(6))  # noqa: E731
    ip = lambda: ".".join(str(rng.randrange(256)) for _ in range(4))  # noqa: E731
    payload = bytes(rng.randrange(256) for _ in range(rng.choice((0, 1, 7, 40, 300))))
    kind = rng.randrange(5)
    if kind == 0:
        build = packets.arp_request if rng.random() < 0.5 else packets.arp_reply
        if build is packets.arp_request:
            return build(sender_mac=mac(), sender_ip=ip(), target_ip=ip())
        return build(sender_mac=mac(), sender_ip=ip(), target_mac=mac(), target_ip=ip())
    if kind == 1:
        return packets.udp_frame(src_mac=mac(), dst_mac=mac(), src_ip=ip(), dst_ip=ip(),
                                 src_port=rng.randrange(65536),
                                 dst_port=rng.choice((716, 7664, 5001, 67, 68, 4789,
                                                      rng.randrange(65536))),
                                 payload=payload)
    if kind == 2:
        frame = packets.icmp_echo_reply(src_mac=mac(), dst_mac=mac(), src_ip=ip(), dst_ip=ip(),
                                        echo=(rng.randrange(65536), rng.randrange(65536),
                                              payload))
        return frame[:34] + bytes([8]) + frame[35:]   # an echo request
    if kind == 3:
        return bytes.fromhex(mac().replace(":", "") + mac().replace(":", "")) \
            + rng.choice((0x86DD, 0x8100, 0x88CC, 1000, rng.randrange(65536))).to_bytes(2, "big") \
            + payload
    return bytes(rng.randrange(256) for _ in range(rng.randrange(14, 120)))


def _mutated(rng, frame: bytes) -> bytes:
    """The frame with a few bytes changed, cut, zeroed or extended."""
    data = bytearray(frame)
    for _ in range(rng.randrange(1, 4)):
        what = rng.randrange(5)
        if what == 0 and data:
            # Most often in the headers: lengths, protocol, ports, opcodes.
            data[rng.randrange(min(len(data), 50))] = rng.randrange(256)
        elif what == 1:
            data = data[:rng.randrange(len(data) + 1)]
        elif what == 2 and data:
            start = rng.randrange(len(data))
            data[start:] = bytes(len(data) - start)
        elif what == 3:
            data += bytes(rng.randrange(256) for _ in range(rng.randrange(1, 30)))
        elif data:
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    return bytes(data)


def _same_as_ryu(data: bytes) -> None:
    from support.ryu_frames import RyuRaised, ryu_decode
    ours = packets.decode(data)
    try:
        expected = ryu_decode(data)
    except RyuRaised:
        # Ryu raised on a layer past what the handlers read (a DHCP, VXLAN
        # or LLC payload): the controller called the frame malformed; its
        # headers are read now, and the layer's own decoder judges the rest.
        return
    assert ours == expected, (data.hex(), ours, expected)


def test_the_struct_decoder_reads_random_frames_as_ryu_does():
    import random
    rng = random.Random(18)
    for _ in range(3000):
        _same_as_ryu(_frames(rng))


def test_the_struct_decoder_reads_mutated_frames_as_ryu_does():
    import random
    rng = random.Random(1802)
    for _ in range(6000):
        _same_as_ryu(_mutated(rng, _frames(rng)))


def test_edge_frames_decode_as_ryu_does():
    base = datagram(b"payload")
    cases = [bytes(60), bytes(14), base[:14] + bytes(46), base[:34],
             base[:14] + b"\x44" + base[15:],          # header length 4 (16 bytes)
             base[:14] + b"\x4f" + base[15:],          # header length 15 (past the data)
             base[:16] + b"\x00\x10" + base[18:],      # total length shorter than the header
             base[:16] + b"\xff\xff" + base[18:],      # total length past the frame
             base[:34] + bytes(len(base) - 34)]        # an all-zero UDP datagram
    for data in cases:
        _same_as_ryu(data)


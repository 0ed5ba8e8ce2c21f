"""DHCPv4 requests decoded from punted frames, replies built as frames (mpa_sdn.dhcp)."""

import random

import pytest
from ryu.lib.packet import dhcp as ryu_dhcp
from ryu.lib.packet import ethernet, ipv4, packet, packet_utils, udp, vlan

from mpa_sdn import dhcp
from mpa_sdn.dhcp import ACK, DECLINE, DISCOVER, INFORM, NAK, OFFER, RELEASE, REQUEST

MN_MAC = "02:00:00:00:0a:01"
OTHER_MAC = "02:00:00:00:0b:07"
SERVER_MAC = "02:00:00:00:ff:01"
SERVER_IP = "10.1.1.1"
BOOTP = 14 + 20 + 8  # where the BOOTP message starts in a frame without IP options


def discover(**fields):
    return dhcp.build_request(DISCOVER, **{"chaddr": MN_MAC, "xid": 0x1234ABCD, **fields})


def wrap(bootp, *, src_port=68, dst_port=67, ip_src="0.0.0.0", ip_flags=0, proto=17,
         ethertype=0x0800):
    """An Ethernet/IPv4/UDP frame around raw BOOTP bytes, lengths and checksums right."""
    pkt = packet.Packet()
    pkt.add_protocol(ethernet.ethernet(dst=dhcp.BROADCAST_MAC, src=MN_MAC, ethertype=ethertype))
    if ethertype == 0x8100:
        pkt.add_protocol(vlan.vlan(vid=10, ethertype=0x0800))
    pkt.add_protocol(ipv4.ipv4(src=ip_src, dst="255.255.255.255", proto=proto, ttl=64,
                               flags=ip_flags))
    pkt.add_protocol(udp.udp(src_port=src_port, dst_port=dst_port))
    pkt.add_protocol(bytes(bootp))
    pkt.serialize()
    return bytes(pkt.data)


def bootp_with(frame=None, **at):
    """The BOOTP bytes of ``frame`` (a DISCOVER by default) with bytes replaced at offsets."""
    bootp = bytearray((frame or discover())[BOOTP:])
    for offset, value in at.items():
        start = int(offset.lstrip("_"))
        bootp[start:start + len(value)] = value
    return bytes(bootp)


def with_options(options: bytes, *, cookie=dhcp.MAGIC_COOKIE):
    """A DISCOVER's fixed header followed by ``options`` verbatim."""
    return wrap(discover()[BOOTP:BOOTP + 236] + cookie + options)


def with_ip_total_length(frame, length):
    """``frame`` claiming another IPv4 total length, its header checksum made right again."""
    header = bytearray(frame[14:34])
    header[2:4], header[10:12] = length.to_bytes(2, "big"), b"\x00\x00"
    header[10:12] = packet_utils.checksum(header).to_bytes(2, "big")
    assert ipv4_header_checksum_ok(frame[:14] + header)
    return frame[:14] + bytes(header) + frame[34:]


def ipv4_header_checksum_ok(frame):
    """RFC 1071, written out independently of ryu: the header's words sum to 0xffff."""
    header = frame[14:14 + (frame[14] & 0x0F) * 4]
    total = sum(int.from_bytes(header[i:i + 2], "big") for i in range(0, len(header), 2))
    while total > 0xFFFF:
        total = (total & 0xFFFF) + (total >> 16)
    return total == 0xFFFF


def parse_reply(frame):
    """(eth, ip, udp, dhcp, {code: value}) of a reply, its checksums checked with ryu."""
    pkt = packet.Packet(frame)
    eth, ip, datagram, msg = pkt.protocols[:4]
    assert ipv4_header_checksum_ok(frame)
    assert packet_utils.checksum(frame[14:34]) == 0
    assert datagram.csum != 0
    assert packet_utils.checksum_ip(ip, datagram.total_length, frame[34:]) == 0
    assert ip.total_length == len(frame) - 14 and datagram.total_length == len(frame) - 34
    options = {o.tag: o.value for o in msg.options.option_list if isinstance(o, ryu_dhcp.option)}
    return eth, ip, datagram, msg, options


def request(message_type=DISCOVER, **fields):
    return dhcp.decode_request(dhcp.build_request(
        message_type, **{"chaddr": MN_MAC, "xid": 77, **fields}))


# --- decoding ---------------------------------------------------------------------------

def test_discover_round_trip():
    frame = discover(client_id=b"\x01\x02\x00\x00\x00\x0a\x01", hostname="mn-1", secs=3,
                     parameter_list=(1, 3, 6, 51), broadcast=True)
    assert dhcp.decode_request(frame) == dhcp.DhcpRequest(
        message_type=DISCOVER, xid=0x1234ABCD, flags_broadcast=True, ciaddr="0.0.0.0",
        giaddr="0.0.0.0", chaddr=MN_MAC, client_id=b"\x01\x02\x00\x00\x00\x0a\x01",
        requested_ip=None, server_id=None, hostname="mn-1", parameter_list=(1, 3, 6, 51),
        secs=3, eth_src=MN_MAC, ip_src="0.0.0.0", ip_dst="255.255.255.255")
    assert len(frame) - BOOTP == dhcp.MIN_BOOTP


@pytest.mark.parametrize("message_type", [DISCOVER, REQUEST, DECLINE, RELEASE, INFORM])
def test_every_client_message_round_trips(message_type):
    decoded = request(message_type, chaddr="02:00:00:00:0A:01", eth_src=OTHER_MAC,
                      ip_src="10.2.1.20", ip_dst=SERVER_IP, ciaddr="10.2.1.20",
                      requested_ip="10.1.1.50", server_id=SERVER_IP)
    assert (decoded.message_type, decoded.chaddr, decoded.eth_src) == (
        message_type, MN_MAC, OTHER_MAC)
    assert (decoded.ip_src, decoded.ip_dst, decoded.ciaddr) == (
        "10.2.1.20", SERVER_IP, "10.2.1.20")
    assert (decoded.requested_ip, decoded.server_id) == ("10.1.1.50", SERVER_IP)
    assert (decoded.client_id, decoded.hostname, decoded.parameter_list) == (None, None, ())


def test_client_key_prefers_the_client_identifier():
    assert request().client_key() == "mac:" + MN_MAC
    assert request(client_id=b"\x00mn-1").client_key() == "006d6e2d31"


def test_busybox_udhcpc_discover():
    # busybox 1.36 udhcpc, default flags plus -x hostname:mobile-node: an unpadded IPv4
    # header (TTL 64, no DF), options 53, 61 (type 1 + MAC), 57 = 576, 55 (its default
    # OPTION_REQ list), 60 "udhcp 1.36.1", 12, END, zero padding to 300 BOOTP octets.
    frame = bytes.fromhex(
        "ffffffffffff" "525400123456" "0800"                       # Ethernet
        "45000148000000004011" "79a6" "00000000" "ffffffff"        # IPv4, checksum 79a6
        "0044" "0043" "0134" "705a"                                # UDP 68→67, 308, sum
        "01010600" "3903f326" "0000" "0000"                        # op htype hlen hops xid..
        "00000000" "00000000" "00000000" "00000000"                # ciaddr yiaddr siaddr gi
        "525400123456" + "00" * 10 + "00" * 192 +                  # chaddr, sname, file
        "63825363" "350101" "3d0701525400123456" "39020240"
        "3707010306" "0c0f1c2a" "3c0c" + b"udhcp 1.36.1".hex() +
        "0c0b" + b"mobile-node".hex() + "ff" + "00" * 7)
    assert len(frame) == 14 + 20 + 8 + 300 and ipv4_header_checksum_ok(frame)
    decoded = dhcp.decode_request(frame)
    assert decoded == dhcp.DhcpRequest(
        message_type=DISCOVER, xid=0x3903F326, flags_broadcast=False, ciaddr="0.0.0.0",
        giaddr="0.0.0.0", chaddr="52:54:00:12:34:56",
        client_id=bytes.fromhex("01525400123456"), requested_ip=None, server_id=None,
        hostname="mobile-node", parameter_list=(1, 3, 6, 12, 15, 28, 42), secs=0,
        eth_src="52:54:00:12:34:56", ip_src="0.0.0.0", ip_dst="255.255.255.255")
    assert decoded.client_key() == "01525400123456"
    offer = dhcp.build_reply(decoded, message_type=OFFER, server_ip=SERVER_IP,
                             server_mac=SERVER_MAC, yiaddr="10.1.1.50")
    assert packet.Packet(offer).protocols[0].dst == "52:54:00:12:34:56"  # flag 0: unicast


def test_pads_between_options_lose_nothing():
    # ryu's options parser stops at the first pad; options after it must still be read.
    frame = with_options(bytes([53, 1, 3, 0, 0, 50, 4, 10, 1, 1, 50, 0, 61, 3, 1, 2, 3, 255]))
    assert len(packet.Packet(frame).get_protocol(ryu_dhcp.dhcp).options.option_list) == 1
    decoded = dhcp.decode_request(frame)
    assert (decoded.message_type, decoded.requested_ip, decoded.client_id) == (
        REQUEST, "10.1.1.50", b"\x01\x02\x03")


def test_a_repeated_option_is_concatenated():
    # RFC 3396: a long option is split into parts of the same code.
    frame = with_options(bytes([53, 1, 1, 61, 2, 1, 2, 12, 2, 109, 110, 61, 1, 3, 255]))
    assert dhcp.decode_request(frame).client_id == b"\x01\x02\x03"


def test_bytes_after_end_and_ethernet_padding_are_ignored():
    frame = with_options(bytes([53, 1, 1, 255, 50, 4]) + b"\xaa" * 20)
    assert dhcp.decode_request(frame + b"\x00" * 18).requested_ip is None


@pytest.mark.parametrize("raw, expected", [
    (b"mn-1\x00", "mn-1"),
    (b"  caf\xc3\xa9\x07 ", "caf"),
    (b"x" * 70, "x" * 63),
    (b"\x00\x00", None),
])
def test_hostname_is_decoded_leniently(raw, expected):
    frame = with_options(bytes([53, 1, 1, 12, len(raw)]) + raw + b"\xff")
    assert dhcp.decode_request(frame).hostname == expected


def test_udp_checksum_zero_means_none():
    frame = bytearray(discover())
    frame[40:42] = b"\x00\x00"
    assert dhcp.decode_request(bytes(frame)) is not None


def test_frame_size_bound():
    frame = discover()
    assert dhcp.decode_request(frame + bytes(1600 - len(frame))) is not None
    assert dhcp.decode_request(frame + bytes(1601 - len(frame))) is None


def test_truncated_at_every_offset():
    frame = discover(client_id=b"\x01" + bytes(6), hostname="mn-1", parameter_list=(1, 3))
    assert dhcp.decode_request(frame) is not None
    assert all(dhcp.decode_request(frame[:n]) is None for n in range(len(frame)))


def _bad_frames():
    yield "not bytes", "frame"
    yield "None", None
    yield "op=2 BOOTREPLY", wrap(bootp_with(_0=b"\x02"))
    yield "htype 6", wrap(bootp_with(_1=b"\x06"))
    yield "hlen 16", wrap(bootp_with(_2=b"\x10"))
    yield "server to client ports", wrap(bootp_with(), src_port=67, dst_port=68)
    yield "relay ports", wrap(bootp_with(), src_port=67, dst_port=67)
    yield "client to client ports", wrap(bootp_with(), src_port=68, dst_port=68)
    yield "IP fragment", wrap(bootp_with(), ip_flags=1)
    yield "VLAN tagged", wrap(bootp_with(), ethertype=0x8100)
    yield "non-ASCII sname", wrap(bootp_with(_44=b"\xff"))
    yield "no cookie", wrap(bootp_with()[:236])
    yield "short cookie", wrap(bootp_with()[:238])
    yield "bad cookie", with_options(bytes([53, 1, 1, 255]), cookie=b"\x63\x82\x53\x64")
    yield "no option 53", with_options(bytes([61, 2, 1, 2, 255]))
    yield "message type 0", with_options(bytes([53, 1, 0, 255]))
    yield "message type 9", with_options(bytes([53, 1, 9, 255]))
    yield "option 53 of 2 bytes", with_options(bytes([53, 2, 1, 1, 255]))
    yield "no END", with_options(bytes([53, 1, 1]))
    yield "option overruns", with_options(bytes([53, 1, 1, 12, 9, 65, 255]))
    yield "option overload", with_options(bytes([53, 1, 1, 52, 1, 3, 255]))
    yield "client id of 1 byte", with_options(bytes([53, 1, 1, 61, 1, 1, 255]))
    yield "requested ip of 3", with_options(bytes([53, 1, 3, 50, 3, 10, 1, 1, 255]))
    yield "server id of 5", with_options(bytes([53, 1, 3, 54, 5, 10, 1, 1, 1, 1, 255]))
    good = discover()
    yield "bad IP checksum", good[:24] + bytes([good[24] ^ 1]) + good[25:]
    yield "bad UDP checksum", good[:41] + bytes([good[41] ^ 1]) + good[42:]
    yield "IP version 6", good[:14] + b"\x65" + good[15:]
    yield "IP says longer", with_ip_total_length(good, len(good) - 13)
    yield "IP shorter than UDP", with_ip_total_length(good + b"\x00", len(good) - 15)
    yield "UDP says longer", good[:38] + (len(good) - 33).to_bytes(2, "big") + good[40:]
    yield "UDP says 8", good[:38] + b"\x00\x08" + good[40:]
    yield "an OFFER", dhcp.build_reply(dhcp.decode_request(good), message_type=OFFER,
                                       server_ip=SERVER_IP, server_mac=SERVER_MAC,
                                       yiaddr="10.1.1.50")


@pytest.mark.parametrize("frame", [pytest.param(f, id=name) for name, f in _bad_frames()])
def test_malformed_frames_are_refused(frame):
    assert dhcp.decode_request(frame) is None


def test_fuzz_never_raises():
    rng = random.Random(6252)
    valid = discover(client_id=b"\x01" + bytes(6), hostname="mn-1", parameter_list=(1, 3))
    header = valid[BOOTP:BOOTP + 240]
    accepted = 0
    for _ in range(3000):
        kind = rng.randrange(4)
        if kind == 0:  # noise
            frame = rng.randbytes(rng.randrange(0, 700))
        elif kind == 1:  # a valid frame with a few bytes changed and maybe cut
            frame = bytearray(valid)
            for _ in range(rng.randrange(1, 6)):
                frame[rng.randrange(len(frame))] = rng.randrange(256)
            frame = bytes(frame[:rng.randrange(len(frame) + 1)])
        elif kind == 2:  # sound IP/UDP around a damaged BOOTP message
            bootp = bytearray(valid[BOOTP:])
            for _ in range(rng.randrange(1, 10)):
                bootp[rng.randrange(len(bootp))] = rng.randrange(256)
            frame = wrap(bootp[:rng.randrange(len(bootp) + 1)])
        else:  # sound everything up to the options, then random options
            soup = bytes(rng.choice((0, 1, 4, 12, 50, 52, 53, 54, 55, 61, 255, rng.randrange(256)))
                         for _ in range(rng.randrange(0, 60)))
            frame = wrap(header + rng.choice((b"", b"\x35\x01\x03")) + soup)
        decoded = dhcp.decode_request(frame)
        assert decoded is None or isinstance(decoded, dhcp.DhcpRequest)
        accepted += decoded is not None
    assert accepted > 30  # the fuzz reaches the option walk, not just the first checks


# --- replies ----------------------------------------------------------------------------

def reply(req, message_type=OFFER, yiaddr="10.1.1.50", **options):
    return dhcp.build_reply(req, message_type=message_type, server_ip=SERVER_IP,
                            server_mac=SERVER_MAC, yiaddr=yiaddr, **options)


def test_offer_carries_the_header_and_options():
    req = request(client_id=b"\x01\x02\x00\x00\x00\x0a\x01", broadcast=True,
                  giaddr="0.0.0.0", secs=9)
    frame = reply(req, subnet_mask="255.255.255.0", router="10.1.1.1",
                  dns=("10.1.1.2", "9.9.9.9"), lease_time=3600)
    eth, ip, datagram, msg, options = parse_reply(frame)
    assert (eth.src, ip.src, ip.ttl, ip.proto) == (SERVER_MAC, SERVER_IP, 64, 17)
    assert (datagram.src_port, datagram.dst_port) == (67, 68)
    assert (msg.op, msg.htype, msg.hlen, msg.hops, msg.xid, msg.secs) == (2, 1, 6, 0, 77, 0)
    assert (msg.flags, msg.chaddr, msg.yiaddr, msg.siaddr, msg.giaddr) == (
        0x8000, MN_MAC, "10.1.1.50", "0.0.0.0", "0.0.0.0")
    assert msg.options.magic_cookie == "99.130.83.99"
    assert list(options) == [53, 54, 1, 3, 6, 51, 58, 59, 61]
    assert options == {
        53: b"\x02", 54: bytes([10, 1, 1, 1]), 1: bytes([255, 255, 255, 0]),
        3: bytes([10, 1, 1, 1]), 6: bytes([10, 1, 1, 2, 9, 9, 9, 9]),
        51: (3600).to_bytes(4, "big"), 58: (1800).to_bytes(4, "big"),
        59: (3150).to_bytes(4, "big"), 61: b"\x01\x02\x00\x00\x00\x0a\x01"}
    assert len(frame) - BOOTP == dhcp.MIN_BOOTP
    assert frame[BOOTP + 240 + sum(2 + len(v) for v in options.values())] == 255  # END


def test_ack_echoes_ciaddr_offer_and_nak_do_not():
    # RFC 2131 Table 3: 'ciaddr' is the DHCPREQUEST's in an ACK, 0 in OFFER and NAK.
    renewing = request(REQUEST, ciaddr="10.1.1.50", ip_src="10.1.1.50", ip_dst=SERVER_IP)
    assert parse_reply(reply(renewing, ACK, lease_time=60))[3].ciaddr == "10.1.1.50"
    assert parse_reply(reply(renewing, OFFER))[3].ciaddr == "0.0.0.0"
    assert parse_reply(reply(renewing, NAK, yiaddr="0.0.0.0"))[3].ciaddr == "0.0.0.0"


def test_nak_says_why_and_configures_nothing():
    _, _, _, msg, options = parse_reply(reply(request(REQUEST, requested_ip="10.9.9.9"), NAK,
                                              yiaddr="0.0.0.0", message="wrong network"))
    assert msg.yiaddr == "0.0.0.0"
    assert options == {53: b"\x06", 54: bytes([10, 1, 1, 1]), 56: b"wrong network"}
    with pytest.raises(ValueError):
        reply(request(REQUEST), NAK)
    with pytest.raises(ValueError):
        reply(request(REQUEST), NAK, yiaddr="0.0.0.0", lease_time=60)


def test_ack_to_inform_has_no_lease_and_infinite_leases_no_timers():
    inform = request(INFORM, ciaddr="10.1.1.50", ip_src="10.1.1.50")
    assert 51 not in parse_reply(reply(inform, ACK, yiaddr="0.0.0.0", router="10.1.1.1"))[4]
    with pytest.raises(ValueError):
        reply(inform, ACK, yiaddr="0.0.0.0", lease_time=60)
    options = parse_reply(reply(request(REQUEST), ACK, lease_time=dhcp.INFINITE_LEASE))[4]
    assert options[51] == b"\xff\xff\xff\xff" and 58 not in options and 59 not in options


def test_bad_reply_arguments_fail_loudly():
    with pytest.raises(ValueError):
        reply(request(), DISCOVER)
    with pytest.raises(ValueError):
        reply(request(), lease_time=-1)
    with pytest.raises(ValueError):
        reply(request(), router="10.1.1")
    with pytest.raises(ValueError):
        dhcp.build_reply(request(), message_type=OFFER, server_ip=SERVER_IP,
                         server_mac="02:00:00:00:ff", yiaddr="10.1.1.50")
    with pytest.raises(ValueError):
        dhcp.build_request(OFFER, chaddr=MN_MAC, xid=1)


BCAST = (dhcp.BROADCAST_MAC, "255.255.255.255", 68)


@pytest.mark.parametrize("rule, fields, message_type, yiaddr, expected", [
    ("giaddr: to the relay's server port", dict(giaddr="10.1.2.1", eth_src=OTHER_MAC),
     OFFER, "10.1.2.50", (OTHER_MAC, "10.1.2.1", 67)),
    ("NAK via a relay", dict(giaddr="10.1.2.1", eth_src=OTHER_MAC),
     NAK, "0.0.0.0", (OTHER_MAC, "10.1.2.1", 67)),
    ("NAK broadcast though ciaddr set", dict(ciaddr="10.1.1.50", ip_src="10.1.1.50"),
     NAK, "0.0.0.0", BCAST),
    ("NAK broadcast though proactive", dict(ip_src="10.2.1.20", ip_dst=SERVER_IP),
     NAK, "0.0.0.0", BCAST),
    ("ciaddr: unicast to it", dict(ciaddr="10.1.1.50", ip_src="10.1.1.50", broadcast=True,
                                   eth_src=OTHER_MAC),
     ACK, "10.1.1.50", (OTHER_MAC, "10.1.1.50", 68)),
    ("broadcast flag", dict(broadcast=True), OFFER, "10.1.1.50", BCAST),
    ("RFC 6252 7.3.3 proactive", dict(ip_src="10.2.1.20", ip_dst=SERVER_IP, eth_src=OTHER_MAC),
     OFFER, "10.1.1.50", (OTHER_MAC, "10.2.1.20", 68)),
    ("unicast to yiaddr at chaddr", dict(eth_src=OTHER_MAC), OFFER, "10.1.1.50",
     (MN_MAC, "10.1.1.50", 68)),
    ("nowhere to unicast", dict(), ACK, "0.0.0.0", BCAST),
])
def test_reply_addressing(rule, fields, message_type, yiaddr, expected):
    req = request(REQUEST, **fields)
    assert dhcp.reply_destination(req, yiaddr, message_type) == expected[:2]
    eth, ip, datagram, *_ = parse_reply(reply(req, message_type, yiaddr=yiaddr))
    assert (eth.dst, ip.dst, datagram.dst_port) == expected

"""The MN's DHCP client (mpa_mn.dhcp_client): its frames read by the
controller's DHCP server code (mpa_sdn.dhcp), the server's replies read by
the client, and the exchange with its retransmissions on a fake link whose
clock moves only while the client waits."""

import struct
import subprocess
import sys

import pytest

from mpa_mn import dhcp_client as client, link
from mpa_mn.dhcp_client import DhcpClient, DhcpError, DhcpSettings, decode_reply, request_frame
from mpa_sdn import dhcp as server
from support.fake_link import draws, Air
from support.paths import ROOT

MAC = "02:00:00:00:01:01"
GATEWAY, GATEWAY_MAC = "10.2.1.1", "02:4a:bb:3a:62:79"


def reply_to(frame, kind, **fields):
    """The controller's reply to a client frame, as mpa_sdn.dhcp builds it."""
    request = server.decode_request(frame)
    assert request is not None
    configuration = {} if kind == server.NAK else {
        "yiaddr": request.requested_ip or "10.2.1.100", "subnet_mask": "255.255.255.0",
        "router": GATEWAY, "dns": ("10.0.0.53",), "lease_time": 3600}
    return server.build_reply(request, message_type=kind, server_mac=GATEWAY_MAC,
                              **{"server_ip": GATEWAY, **configuration, **fields})


def kind_of(frame):
    return server.decode_request(frame).message_type


def a_server(discover=None, request=None):
    """OFFER for DISCOVER, ACK for REQUEST; ``discover``, ``request``: a
    function of the frame giving the replies instead."""
    def answer(frame):
        kind = kind_of(frame)
        if kind == server.DISCOVER:
            return discover(frame) if discover else [reply_to(frame, server.OFFER)]
        if kind == server.REQUEST:
            return request(frame) if request else [reply_to(frame, server.ACK)]
        return []
    return answer


def dhcp(air, **settings):
    return DhcpClient(air, MAC, DhcpSettings(**settings), clock=air.clock,
                      entropy=draws(0.5))


# -- the wire -------------------------------------------------------------------------

def test_the_controller_reads_what_the_client_sends():
    discover = server.decode_request(request_frame(client.DISCOVER, MAC, 0x1234ABCD, secs=3))
    assert (discover.message_type, discover.xid, discover.chaddr, discover.secs) == \
        (server.DISCOVER, 0x1234ABCD, MAC, 3)
    assert (discover.ip_src, discover.ip_dst, discover.eth_src) == \
        ("0.0.0.0", "255.255.255.255", MAC)
    assert not discover.flags_broadcast and discover.parameter_list == (1, 3, 6, 51, 54)
    request = server.decode_request(request_frame(client.REQUEST, MAC, 7, requested="10.2.1.100",
                                                  server_id=GATEWAY))
    assert (request.message_type, request.requested_ip, request.server_id) == \
        (server.REQUEST, "10.2.1.100", GATEWAY)
    decline = server.decode_request(request_frame(client.DECLINE, MAC, 8, requested="10.2.1.100",
                                                  server_id=GATEWAY))
    assert (decline.message_type, decline.requested_ip, decline.server_id,
            decline.parameter_list) == (server.DECLINE, "10.2.1.100", GATEWAY, ())
    assert len(request_frame(client.DISCOVER, MAC, 1)) == 14 + 20 + 8 + 300


def test_the_client_reads_what_the_controller_replies():
    frame = request_frame(client.DISCOVER, MAC, 0x1234ABCD)
    offer = decode_reply(reply_to(frame, server.OFFER))
    assert offer == client.Reply(client.OFFER, 0x1234ABCD, MAC, "10.2.1.100", GATEWAY, 24,
                                 GATEWAY, ("10.0.0.53",), 3600, None)
    nak = decode_reply(reply_to(frame, server.NAK, message="no such lease"))
    assert (nak.message_type, nak.yiaddr, nak.router, nak.message) == \
        (client.NAK, "0.0.0.0", None, "no such lease")


def _corrupt(frame, offset, value):
    return frame[:offset] + bytes([value]) + frame[offset + 1:]


def _options_end(frame):
    return frame.rindex(b"\xff")


GOOD = reply_to(request_frame(client.DISCOVER, MAC, 5), server.OFFER)
UDP, BOOTP = 14 + 20, 14 + 20 + 8


@pytest.mark.parametrize("frame,verdict", [
    (b"", client.OTHER),
    (b"\x00" * 13, client.OTHER),
    (GOOD[:12] + b"\x08\x06" + GOOD[14:], client.OTHER),               # ARP
    (_corrupt(GOOD, 14 + 9, 6), client.OTHER),                          # TCP
    (_corrupt(GOOD, 14 + 6, 0x20), client.OTHER),                       # a fragment
    (GOOD[:UDP + 2] + struct.pack("!H", 69) + GOOD[UDP + 4:], client.OTHER),  # not to port 68
    (GOOD[:UDP + 40], client.MALFORMED),                                # cut short
    (_corrupt(GOOD, 14 + 8, 63), client.MALFORMED),                     # IPv4 checksum
    (_corrupt(GOOD, BOOTP + 50, 0x77), client.MALFORMED),               # UDP checksum
    (_corrupt(GOOD[:UDP + 6] + b"\0\0" + GOOD[UDP + 8:], BOOTP, 1), client.MALFORMED),  # op
    (_corrupt(GOOD[:UDP + 6] + b"\0\0" + GOOD[UDP + 8:], BOOTP + 236, 0), client.MALFORMED),
    (GOOD[:UDP + 6] + b"\0\0" + GOOD[UDP + 8:_options_end(GOOD)]
     + b"\0" * (len(GOOD) - _options_end(GOOD)), client.MALFORMED),      # no END
])
def test_frames_that_are_not_a_reply_are_told_apart_and_never_raise(frame, verdict):
    assert decode_reply(frame) == verdict


@pytest.mark.parametrize("option", [
    bytes([53, 1, 9]),                   # no such message type for a server
    bytes([54, 3, 10, 2, 1]),            # a 3-byte address
    bytes([1, 4, 255, 0, 255, 0]),       # a mask with holes
    bytes([3, 5, 10, 2, 1, 1, 0]),       # a router list of 5 bytes
    bytes([51, 2, 0, 1]),                # a 2-byte lease time
    bytes([52, 1, 3]),                   # options in sname and file
    bytes([12, 200, 1]),                 # runs past the message
])
def test_a_bad_option_makes_the_reply_malformed(option):
    request = server.decode_request(request_frame(client.DISCOVER, MAC, 5))
    frame = server.build_reply(request, message_type=server.OFFER, server_ip=GATEWAY,
                               server_mac=GATEWAY_MAC, yiaddr="10.2.1.100")
    end = _options_end(frame)
    # The option goes in before END (a later 53 joins the first: RFC 3396);
    # the UDP checksum is left out (0: none), so only the option is wrong.
    frame = frame[:UDP + 6] + b"\0\0" + frame[UDP + 8:end] + option + frame[end:]
    frame = frame[:UDP + 4] + struct.pack("!H", len(frame) - UDP) + frame[UDP + 6:]
    total = len(frame) - 14
    header = frame[14:24] + b"\0\0" + frame[26:34]
    header = header[:2] + struct.pack("!H", total) + header[4:]
    frame = frame[:14] + header[:10] + struct.pack("!H", client._checksum(header)) + \
        header[12:] + frame[34:]
    assert decode_reply(frame) == client.MALFORMED


# -- the exchange -----------------------------------------------------------------------

def test_a_lease_in_four_messages():
    air = Air(a_server())
    lease = dhcp(air).acquire()
    assert lease == client.Lease("10.2.1.100", 24, GATEWAY, GATEWAY, 3600, ("10.0.0.53",))
    kinds = [kind_of(frame) for _, frame in air.sent]
    assert kinds == [server.DISCOVER, server.REQUEST]
    request = server.decode_request(air.sent[1][1])
    assert (request.requested_ip, request.server_id) == ("10.2.1.100", GATEWAY)
    assert request.xid == server.decode_request(air.sent[0][1]).xid == 2**31
    assert air.now == 0.0


def test_retransmissions_double_from_four_seconds_with_a_second_of_jitter():
    air = Air(a_server(discover=lambda frame: []))
    c = DhcpClient(air, MAC, DhcpSettings(timeout_s=100), clock=air.clock,
                   entropy=draws(0.5, 0.25, 0.75, 0.5, 0.5))
    with pytest.raises(DhcpError) as err:
        c.acquire()
    assert err.value.code == "dhcp-timeout"
    # Draws: the xid (0.5), then one per wait: -0.5 s, +0.5 s, 0, 0, ...
    times = [round(at, 3) for at, _ in air.sent]
    assert times == [0.0, 3.5, 12.0, 28.0, 60.0]
    assert [server.decode_request(f).secs for _, f in air.sent] == [0, 3, 12, 28, 60]
    assert air.now == 100.0 and c.sent == {"discover": 5}


def test_a_nak_starts_again_with_a_new_transaction():
    naks = []

    def nak_once(frame):
        if naks:
            return [reply_to(frame, server.ACK)]
        naks.append(frame)
        return [reply_to(frame, server.NAK, message="start again")]
    air = Air(a_server(request=nak_once))
    c = DhcpClient(air, MAC, clock=air.clock, entropy=draws(0.1, 0.5, 0.2, 0.5))
    assert c.acquire().address == "10.2.1.100"
    assert [kind_of(f) for _, f in air.sent] == [server.DISCOVER, server.REQUEST,
                                                 server.DISCOVER, server.REQUEST]
    xids = [server.decode_request(f).xid for _, f in air.sent]
    assert xids[0] == xids[1] != xids[2] == xids[3]
    assert c.transactions == 2 and c.received == {"offer": 2, "nak": 1, "ack": 1}


def test_unanswered_requests_start_again_after_four():
    requests = []

    def silent_then_ack(frame):
        requests.append(frame)
        return [reply_to(frame, server.ACK)] if len(requests) > 4 else []
    air = Air(a_server(request=silent_then_ack))
    assert dhcp(air, timeout_s=300).acquire().address == "10.2.1.100"
    assert [kind_of(f) for _, f in air.sent] == [server.DISCOVER] + [server.REQUEST] * 4 + [
        server.DISCOVER, server.REQUEST]


def test_junk_other_transactions_and_unusable_replies_are_ignored_and_counted():
    def noisy_offer(frame):
        other = request_frame(client.DISCOVER, "02:00:00:00:09:09", 99)
        no_router = reply_to(frame, server.OFFER, router=None)
        return [b"\x00" * 5, _corrupt(reply_to(frame, server.OFFER), BOOTP + 50, 0x77),
                reply_to(other, server.OFFER), no_router, link_arp(),
                reply_to(frame, server.OFFER)]

    def noisy_ack(frame):
        return [reply_to(frame, server.ACK, lease_time=None),
                reply_to(frame, server.ACK, yiaddr="10.2.1.101"),
                reply_to(frame, server.ACK, server_ip="10.2.1.9"),
                reply_to(frame, server.ACK)]
    air = Air(a_server(noisy_offer, noisy_ack))
    c = dhcp(air)
    assert c.acquire().address == "10.2.1.100"
    assert c.ignored == {"other": 2, "malformed": 1, "not_ours": 1, "unusable": 4}


def link_arp():
    return link.gratuitous_arp(MAC, "10.2.1.7")


def test_a_reply_that_comes_late_is_taken_when_it_comes():
    air = Air(a_server(lambda f: [(2.5, reply_to(f, server.OFFER))]))
    assert dhcp(air).acquire().address == "10.2.1.100"
    assert [round(at, 3) for at, _ in air.sent] == [0.0, 2.5]


def test_decline_names_the_address_and_the_server():
    air = Air()
    c = dhcp(air)
    c.decline(client.Lease("10.2.1.100", 24, GATEWAY, GATEWAY, 3600))
    [(_, frame)] = air.sent
    decline = server.decode_request(frame)
    assert (decline.message_type, decline.requested_ip, decline.server_id, decline.ciaddr) == \
        (server.DECLINE, "10.2.1.100", GATEWAY, "0.0.0.0")
    assert c.sent == {"decline": 1}


def test_a_socket_that_cannot_send_is_a_link_error():
    class Broken(Air):
        def send(self, frame):
            raise OSError(100, "Network is down")
    with pytest.raises(client.LinkError) as err:
        dhcp(Broken()).acquire()
    assert (err.value.code, err.value.message) == (
        "link", "cannot send DHCP DISCOVER: Network is down")


@pytest.mark.parametrize("settings", [dict(first_wait_s=0), dict(first_wait_s=8, max_wait_s=4),
                                      dict(jitter_s=4), dict(timeout_s=0)])
def test_settings_are_checked(settings):
    with pytest.raises(ValueError):
        DhcpSettings(**settings)


def test_the_mn_does_without_ryu():
    """The server's DHCP code comes with Ryu; the MN's client must not."""
    code = ("import sys, mpa_mn.cli; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] == 'ryu'))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=ROOT, check=True)
    assert done.stdout.strip() == "[]"

"""IPv4 duplicate address detection (mpa_mn.dad, RFC 5227) on a fake link
whose clock moves only while the MN waits for frames."""

import pytest

from mpa_mn import link
from mpa_mn.dad import Conflict, Dad, DadSettings, decode_arp, probe_frame
from mpa_sdn import packets
from support.fake_link import Air, draws

MAC, OTHER_MAC = "02:00:00:00:01:01", "02:00:00:00:09:09"
GATEWAY_MAC = "02:4a:bb:3a:62:79"
ADDRESS = "10.2.1.100"


def dad(air, settings=DadSettings(), *fractions):
    return Dad(air, MAC, settings, clock=air.clock, entropy=draws(*(fractions or (0.5,))))


def probes(air):
    return [(round(at, 6), frame) for at, frame in air.sent]


def test_probe_frames_are_what_rfc_5227_says_and_what_the_controller_reads():
    frame = probe_frame(MAC, ADDRESS)
    parsed = packets.decode(frame)
    assert (parsed.eth_src, parsed.eth_dst) == (MAC, packets.BROADCAST)
    assert parsed.arp == packets.ArpInfo(packets.ARP_REQUEST, MAC, "0.0.0.0",
                                         "00:00:00:00:00:00", ADDRESS)
    assert decode_arp(frame).sender_ip == "0.0.0.0"
    assert decode_arp(link.gratuitous_arp(MAC, ADDRESS)).sender_ip == ADDRESS


def test_three_probes_at_random_times_then_the_announce_wait():
    air = Air()
    # Draws: the first wait (0.25 of 1 s), then the gaps (1 + 0.5, 1 + 0.75 s).
    assert dad(air, DadSettings(), 0.25, 0.5, 0.75).probe(ADDRESS) is None
    assert [at for at, _ in probes(air)] == [0.25, 1.75, 3.5]
    assert all(frame == probe_frame(MAC, ADDRESS) for _, frame in air.sent)
    assert air.now == pytest.approx(5.5)          # + ANNOUNCE_WAIT


def test_the_least_time_probing_takes_is_a_lower_bound_of_every_run():
    settings = DadSettings()
    assert settings.minimum_s == 4.0               # 2 gaps of PROBE_MIN + ANNOUNCE_WAIT
    for fraction in (0.0, 0.5, 0.999):
        air = Air()
        dad(air, settings, fraction).probe(ADDRESS)
        assert settings.minimum_s <= air.now <= 7.0


def test_options_change_the_numbers():
    air = Air()
    settings = DadSettings(probe_wait_s=0, probe_num=2, probe_min_s=0.1, probe_max_s=0.1,
                           announce_wait_s=0.2)
    assert dad(air, settings).probe(ADDRESS) is None
    assert [at for at, _ in probes(air)] == [0.0, 0.1]
    assert air.now == pytest.approx(0.3) == settings.minimum_s


def test_no_probes_no_dad():
    air = Air()
    assert dad(air, DadSettings(probe_num=0)).probe(ADDRESS) is None
    assert air.sent == [] and air.now == 0 and DadSettings(probe_num=0).minimum_s == 0


def answering_after(probe_number, *frames):
    """The link answers the MN's ``probe_number``-th probe with ``frames``."""
    count = [0]

    def answer(frame):
        count[0] += 1
        return list(frames) if count[0] == probe_number else []
    return answer


def test_the_controllers_proxy_answer_is_a_conflict():
    """The controller answers a probe for an address a host it knows uses with
    the gateway's MAC (Controller._arp): the address is taken."""
    proxied = packets.arp_reply(sender_mac=GATEWAY_MAC, sender_ip=ADDRESS, target_mac=MAC,
                                target_ip=ADDRESS)
    air = Air(answering_after(1, proxied))
    d = dad(air)
    assert d.probe(ADDRESS) == Conflict(ADDRESS, "in-use", GATEWAY_MAC, 1)
    assert len(air.sent) == 1 and d.probes == 1


def test_a_probe_for_the_same_address_from_another_mac_is_a_conflict():
    air = Air(answering_after(2, probe_frame(OTHER_MAC, ADDRESS)))
    assert dad(air).probe(ADDRESS) == Conflict(ADDRESS, "probe", OTHER_MAC, 2)


def test_a_conflict_during_the_announce_wait_counts():
    gratuitous = link.gratuitous_arp(OTHER_MAC, ADDRESS)
    air = Air(answering_after(3, (1.9, gratuitous)))
    assert dad(air).probe(ADDRESS) == Conflict(ADDRESS, "in-use", OTHER_MAC, 3)


def test_what_is_no_conflict_is_ignored():
    harmless = [
        probe_frame(MAC, ADDRESS),                                  # the MN's own, looped
        link.gratuitous_arp(MAC, ADDRESS),
        packets.arp_request(sender_mac=GATEWAY_MAC, sender_ip="10.2.1.1",
                            target_ip=ADDRESS),                     # the gateway resolving it
        probe_frame(OTHER_MAC, "10.2.1.101"),                       # another address
        link.gratuitous_arp(OTHER_MAC, "10.2.1.101"),
    ]
    air = Air(answering_after(1, *harmless))
    d = dad(air)
    assert d.probe(ADDRESS) is None and d.ignored == {}


def test_bad_frames_are_ignored_and_counted():
    good = link.gratuitous_arp(OTHER_MAC, ADDRESS)
    bad = [b"", b"\xff" * 20, good[:30],
           good[:12] + b"\x08\x00" + good[14:],                     # not ARP
           good[:14] + b"\x00\x06" + good[16:],                     # not Ethernet hardware
           good[:20] + b"\x00\x03" + good[22:]]                     # neither request nor reply
    air = Air(answering_after(1, *bad))
    d = dad(air)
    assert d.probe(ADDRESS) is None
    assert d.ignored == {"arp_malformed": len(bad)}


def test_frames_the_host_sent_itself_are_not_read():
    class Outgoing(Air):
        def recvfrom(self, size):
            frame, address = super().recvfrom(size)
            return frame, address[:2] + (link.PACKET_OUTGOING,) + address[3:]
    air = Outgoing(answering_after(1, link.gratuitous_arp(OTHER_MAC, ADDRESS)))
    assert dad(air).probe(ADDRESS) is None


def test_announcements_go_out_and_a_failure_is_reported_not_raised():
    air = Air()
    d = dad(air)
    assert d.announce(ADDRESS) is None
    assert air.sent == [(0.0, link.gratuitous_arp(MAC, ADDRESS))] and d.announcements == 1

    class Refusing(Air):
        def send(self, frame):
            raise OSError(1, "Operation not permitted")
    d = dad(Refusing())
    assert d.announce(ADDRESS) == "cannot send an ARP announcement: Operation not permitted"
    assert d.announcements == 0


@pytest.mark.parametrize("settings", [dict(probe_wait_s=-1), dict(probe_min_s=3),
                                      dict(probe_num=-1), dict(announce_num=0),
                                      dict(max_conflicts=0)])
def test_settings_are_checked(settings):
    with pytest.raises(ValueError):
        DadSettings(**settings)

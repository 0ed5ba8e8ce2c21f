"""The wait between two looks at the carrier (mpa_mn/link.py, LinkNotices):
it ends at the kernel's next notice of a link change, reads away what queued,
and without netlink is a plain sleep."""

from __future__ import annotations

import socket

from mpa_mn import link


def pair():
    """A datagram socket the wait reads, and its peer to post "notices" on."""
    ours, peer = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)
    ours.setblocking(False)
    return ours, peer


def test_a_queued_notice_ends_the_wait_and_every_queued_one_is_read():
    ours, peer = pair()
    slept = []
    wait = link.LinkNotices(opener=lambda: ours, sleep=slept.append)
    for _ in range(3):
        peer.send(b"RTM_NEWLINK")
    wait(60.0)       # would block a minute without the notices
    assert slept == []
    ours_left = []
    try:
        ours_left.append(ours.recv(100))
    except BlockingIOError:
        pass
    assert ours_left == [], "all three were read"
    wait.close()
    peer.close()


def test_without_a_notice_the_wait_lasts_its_time_and_reads_nothing():
    ours, peer = pair()
    wait = link.LinkNotices(opener=lambda: ours)
    wait(0.0)
    peer.send(b"later")
    assert ours.recv(100) == b"later"
    wait.close()
    peer.close()


def test_without_netlink_a_wait_is_a_sleep_and_the_socket_is_not_tried_again():
    tries, slept = [], []

    def refuse():
        tries.append(1)
        raise PermissionError(13, "Permission denied")
    wait = link.LinkNotices(opener=refuse, sleep=slept.append)
    wait(0.001)
    wait(0.002)
    assert slept == [0.001, 0.002] and tries == [1]

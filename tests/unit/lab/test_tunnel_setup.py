"""Running and undoing a native tunnelling plan (mpa_lab/net/tunnel_setup.py),
where no OVS is needed."""

import time

import pytest

from mpa_lab.net.native_tunnelling import Command
from mpa_lab.net.tunnel_setup import routes_without_bridge, run

SHOWN = """Route Table:
Cached: 127.0.0.1/32 dev lo SRC 127.0.0.1 local
User: 10.2.1.0/24 dev core-a GW 169.254.1.2 SRC 169.254.1.1
User: 10.1.1.0/24 dev core-b GW 169.254.2.2 SRC 169.254.2.1
User: 0.0.0.0/0 MARK 17 dev pA GW 10.1.1.1 SRC 10.1.1.1
Cached: 169.254.1.0/30 dev core-a SRC 169.254.1.1
Cached: 0.0.0.0/0 dev eth0 GW 192.0.2.1 SRC 192.0.2.2
"""


def test_cleanup_deletes_the_user_routes_whose_bridge_is_gone_and_no_others():
    commands = routes_without_bridge(SHOWN, exists=lambda dev: dev == "core-a")
    assert [c.argv for c in commands] == [
        ("ovs-appctl", "ovs/route/del", "10.1.1.0/24"),
        ("ovs-appctl", "ovs/route/del", "0.0.0.0/0", "pkt_mark=17")]


def test_a_failed_command_says_what_failed_and_why():
    with pytest.raises(RuntimeError, match=r"^sh -c echo nope >&2; exit 3: nope$"):
        run(Command(("sh", "-c", "echo nope >&2; exit 3")), deadline=time.monotonic() + 5)


def test_a_command_that_waits_for_ovs_is_tried_again_until_it_succeeds(tmp_path):
    # Fails the first two times, as a route does while ovs-vswitchd has not
    # seen the bridge's new address.
    tries = tmp_path / "tries"
    script = (f"echo x >> {tries}; "
              f"[ $(wc -l < {tries}) -ge 3 ] || {{ echo not yet >&2; exit 2; }}")
    run(Command(("sh", "-c", script), retry=True), deadline=time.monotonic() + 30)
    assert tries.read_text().count("x") == 3


def test_a_command_that_waits_for_ovs_gives_up_at_its_deadline():
    with pytest.raises(RuntimeError, match=r"exit 1: never$"):
        run(Command(("sh", "-c", "echo never; exit 1"), retry=True), deadline=time.monotonic())

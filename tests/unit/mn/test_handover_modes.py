"""The handover's modes (``mpa-mn handover --mode``) against the real
controller core of support/mn_world.py: ``none`` (MPA without the pre-switch:
no buffering, no arrived) and ``bicast``."""

import json

import pytest

from mpa_mn import link
from mpa_mn.handover import Handover
from mpa_protocol.pana import PANA_PORT
from support.service_rig import MN_MAC
from support.mn_fakes import MN_ADDRESS
from support.mn_world import ATTACH_BATCH, HOME, NCOA, Core, HandoverCli, bound_where_it_is, node



@pytest.fixture
def world():
    world = Core()
    world.attach("ap-a1-1")
    return world


def test_none_prepares_without_pre_switching(world):
    mn, _ = node(world)
    ready = Handover(mn, mn.vifs.ip).prepare("net-b1", HOME, mode="none")
    assert ready["mode"] == "none" and "pre_switch" not in ready
    assert set(ready["timings_ms"]) == {"preauth", "configure", "tunnel", "bind"}
    assert world.tunnel() == (NCOA, "ap-a1-1") and world.binding() == NCOA
    assert world.handover() is None


def test_cli_none_attaches_and_the_controller_follows_the_gratuitous_arp(
        world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    rc, [ready], doc, err = run.events("handover", "net-b1", "--wait-link", "--mode", "none")
    assert rc == 0, err
    assert ready["mode"] == "none" and "pre_switch" not in ready
    [result] = doc["results"]
    assert result["ok"] and result["address"] == NCOA
    assert "arrived" not in result and "arrived_at" not in result
    assert result["link_down_at"] < result["link_up_at"] <= result["attached_at"]
    assert "arrived" not in result["timings_ms"] and "pre_switch" not in result["timings_ms"]
    assert run.ip.batches == [ATTACH_BATCH] and "mpa-net-b1" not in run.ip.links
    assert world.frames == [("eth0", link.gratuitous_arp(MN_MAC, NCOA))]
    # No handover at the controller; its gratuitous ARP moved the binding's
    # reach off the tunnel, which ended (the MN is in its network).
    assert world.handover() is None and world.tunnel() is None
    binding = world.core.mobility.bindings[HOME]
    assert world.core.mobility.reach(binding).poa.id == "ap-b1-1"
    assert world.core.mobility.reach(binding).tunnel is None
    # Every handover message went before the switch: none in-band after it.
    sent = [json.loads(data)["type"] for data, (_, port) in run.world.sent if port != PANA_PORT]
    assert "handover" not in sent


def test_cli_none_without_the_switch_leaves_the_binding_on_the_tunnel(
        world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file(), down_at=None)
    rc, [ready], doc, err = run.events("handover", "net-b1", "--wait-link", "--mode", "none",
                                       "--link-timeout", "0.5")
    assert rc == 1
    assert "link-timeout: the carrier of eth0 never dropped within 0.5 s; the binding stays " \
           "on the tunnel" in err
    assert world.handover() is None and world.tunnel() == (NCOA, "ap-a1-1")
    assert world.binding() == NCOA
    assert run.ip.links["eth0"]["addrs"] == [(MN_ADDRESS, 24), (HOME, 32)]


def test_cli_bicast_pre_switches_to_bicasting_and_arrives(world, tmp_path, credentials_file):
    run = HandoverCli(world, tmp_path, credentials_file())
    bound_where_it_is(run)
    seen = {}
    sleep = run.link.sleep

    def watch(seconds):
        handover = world.handover()
        if handover is not None and "bicast" not in seen:
            seen["bicast"] = world.core.mobility.bicasts.get(HOME)
        sleep(seconds)
    run.system["sleep"] = watch
    rc, [ready], doc, err = run.events("handover", "net-b1", "--wait-link", "--mode", "bicast")
    assert rc == 0, err
    assert ready["mode"] == "bicast" and ready["pre_switch"]["phase"] == "pre-switching"
    # While the link switched, the old leg was the MN's address at ap-a1-1.
    assert (seen["bicast"].address, seen["bicast"].poa.id) == (MN_ADDRESS, "ap-a1-1")
    [result] = doc["results"]
    assert result["arrived"]["phase"] == "completed"
    handover = world.handover()
    assert (handover.mode, handover.arrival) == ("bicast", "arp")
    assert world.core.mobility.bindings[HOME].care_of == NCOA


def test_the_pre_switch_says_bicast_and_a_buffering_one_says_nothing(world):
    mn, _ = node(world)
    sent = []
    exchange = mn.channel.exchange

    def spy(target, kind, data):
        sent.append(json.loads(data))
        return exchange(target, kind, data)
    mn.channel.exchange = spy
    handover = Handover(mn, mn.vifs.ip)
    handover.prepare("net-b1", HOME)
    mn.switch("net-b1", "cancel")
    mn.preauthenticate("net-a1")
    mn.bind("net-a1", HOME, MN_ADDRESS)
    handover.prepare("net-b1", HOME, mode="bicast")
    buffering, bicasting = [m for m in sent if m.get("phase") == "pre-switch"]
    assert "mode" not in buffering and bicasting["mode"] == "bicast"
    assert world.handover().mode == "bicast"


@pytest.mark.parametrize("argv,message", [
    (["--mode", "bicast", "--buffer-old"], "only a buffering handover buffers at the old AR"),
    (["--mode", "none", "--buffer-old"], "only a buffering handover buffers at the old AR"),
])
def test_cli_modes_that_do_not_fit_exit_2(world, tmp_path, credentials_file, argv, message):
    run = HandoverCli(world, tmp_path, credentials_file())
    rc, events, doc, err = run.events("handover", "net-b1", "--wait-link", *argv)
    assert (rc, events) == (2, []) and message in err
    assert world.core.mpa.aa.sas == {}


def test_cli_handover_refuses_an_unknown_mode(capsys):
    from mpa_mn import cli
    assert cli.main(["handover", "net-b1", "--mode", "copy"]) == 2
    assert "invalid choice: 'copy'" in capsys.readouterr().err

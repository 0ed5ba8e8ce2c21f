"""Running a native tunnelling plan (mpa_lab/net/native_tunnelling.py) on
this machine's Open vSwitch, and undoing it."""

from __future__ import annotations

import os
import subprocess
import time

from mpa_lab.net.native_tunnelling import Command, Plan

# How long ovs-vswitchd may take to see an address the lab just added (it
# learns them from the kernel's notifications) before a command that needs
# it (a route through it, a neighbour on it) fails.
OVS_LEARNS_S = 5.0


def set_up(plan: Plan, learn_s: float = OVS_LEARNS_S) -> None:
    """The plan's ports, addresses and routes, on bridges that exist (and
    whose addresses check_addresses_free found free); a RuntimeError says
    what failed."""
    for command in plan.setup():
        run(command, deadline=time.monotonic() + learn_s)


def tear_down(plan: Plan) -> None:
    """The routes (each may be gone already: an earlier lab's leftovers are
    cleared this way too)."""
    for command in plan.teardown():
        subprocess.run(command.argv, stdin=subprocess.DEVNULL, capture_output=True)


def run(command: Command, deadline: float) -> None:
    """Run it; one that may wait for ovs-vswitchd is tried again until
    ``deadline``.  A failure says what failed and why."""
    while True:
        done = subprocess.run(command.argv, stdin=subprocess.DEVNULL, capture_output=True,
                              text=True, errors="replace")
        if done.returncode == 0:
            return
        if not command.retry or time.monotonic() > deadline:
            raise RuntimeError(f"{' '.join(command.argv)}: "
                               f"{(done.stderr or done.stdout).strip() or done.returncode}")
        time.sleep(0.05)


def check_addresses_free(plan: Plan) -> None:
    """An address the plan gives a bridge must be on no other interface, nor
    the local address of another VXLAN port: OVS would end the tunnels
    there, or refuse the lab's port as a duplicate (a lab or a test by hand
    left them)."""
    if not plan.endpoints and not plan.next_hops:
        return
    problems = []
    for address, switch in sorted(plan.addresses().items()):
        shown = subprocess.run(["ip", "-o", "-4", "addr", "show", "to", f"{address}/32"],
                               capture_output=True, text=True, errors="replace").stdout
        holders = sorted({line.split()[1] for line in shown.splitlines()} - {switch})
        if holders:
            problems.append(f"{address} (for {switch}) is already on {', '.join(holders)}")
    ours = {e.port_name for e in plan.endpoints}
    listed = subprocess.run(
        ["ovs-vsctl", "--timeout=10", "--format=csv", "--data=bare", "--no-headings",
         "--columns=name,options", "find", "Interface", "type=vxlan"],
        stdin=subprocess.DEVNULL, capture_output=True, text=True, errors="replace").stdout
    for name, _, options in (line.partition(",") for line in listed.splitlines()):
        if name in ours:
            continue
        problems += [f"VXLAN port {name} already ends tunnels at {e.address} (for {e.switch})"
                     for e in plan.endpoints if f"local_ip={e.address}" in options.split()]
    if problems:
        raise RuntimeError("cannot give the access routers their tunnel endpoints: "
                           + "; ".join(problems) + ". Remove what holds them first")


def routes_without_bridge(shown: str, exists=lambda dev: os.path.exists(f"/sys/class/net/{dev}")
                          ) -> list[Command]:
    """The commands that delete each route a user added (``ovs-appctl
    ovs/route/show``'s ``User:`` lines) whose bridge is gone: what a lab
    killed before its teardown, then cleaned up, leaves in OVS's table."""
    commands = []
    for line in shown.splitlines():
        words = line.split()
        if not words or words[0] != "User:" or "dev" not in words:
            continue
        mark = words[words.index("MARK") + 1] if "MARK" in words else None
        if not exists(words[words.index("dev") + 1]):
            commands.append(Command(("ovs-appctl", "ovs/route/del", words[1],
                                     *([f"pkt_mark={mark}"] if mark else []))))
    return commands


def remove_routes_without_bridge() -> int:
    """Delete them; how many there were."""
    shown = subprocess.run(["ovs-appctl", "ovs/route/show"], stdin=subprocess.DEVNULL,
                           capture_output=True, text=True, errors="replace").stdout
    commands = routes_without_bridge(shown)
    for command in commands:
        subprocess.run(command.argv, stdin=subprocess.DEVNULL, capture_output=True)
    return len(commands)

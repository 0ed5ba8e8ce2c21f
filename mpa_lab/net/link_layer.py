"""The lab's link layer, modelled: what a link-layer switch does, when, and
how long the link is held down.

Every PoA's OpenFlow port is one end of a permanent veth pair; the other
end, the PoA's *stub*, lives in a network namespace of the link layer's own.
Each MN's interface is a veth whose other end is in that namespace too, in a
Linux bridge of its own (stp off, so a port forwards as soon as it is up)
whose only other member is the stub of the PoA the MN is at.  A link-layer
switch is then a handful of ioctls on interfaces that already exist, never
an ovs-vsctl transaction nor a process (about a millisecond, see
docs/benchmarks.md), and nothing of Open vSwitch's configuration changes.

What a PoA's port does as stations come and go is the *PoA port model*
(``POA_PORTS``):

* ``per_station`` (the default): a PoA's port is up while an MN is at it,
  as a port per station is (or a PoA that notifies each departure, RFC 6252
  C.2): the controller sees the old PoA's port go LINK_DOWN, and forgets the
  MN there, as the MN leaves, and the new one's come up as it arrives;
* ``stay_up``: every PoA's port is up from the start and stays up, as an
  access point's wired port does when stations roam: no port changes state,
  and the controller learns of the move from the MN's first frames at the
  new PoA.  Open vSwitch's main thread handles a port's link change on the
  userspace datapath: with ports that go down and up, the MN's gratuitous
  ARP reached the controller 2.4 ms (median; 6.4 at worst) after it entered
  the new port, with ports that stay up 0.4 ms (0.8) (docs/benchmarks.md,
  "Handover quality, the third round").  The controller learns departures
  from arrivals and the MN's signalling instead (docs/architecture.md); a
  domain the MN leaves for another and does not come back to forgets the
  MN's host there only once its source check idles out and its poll goes
  unanswered.

The switch (:func:`switch_plan`):

1. the MN's end goes down: its carrier drops, as ``mpa_mn/link.py`` sees;
2. the old PoA's stub leaves the bridge and, per station, goes down: Open
   vSwitch reports the old port LINK_DOWN and the controller forgets the MN
   there;
3. the link is held down until the *imposed outage* has passed since step 1
   (:func:`imposed_outage_ms`: the topology's ``l2_handover_ms`` between the
   two networks, or an experiment's ``link_layer_ms``): the kernel has no
   netem, and a radio's association time is what the lab models here;
4. the new PoA's stub joins the bridge and comes up (already up if its
   ports stay up), and once the kernel has made it operational (only then
   does its bridge port forward), the MN's end: per station, the new port's
   link and the MN's carrier come up together.  The stub comes up last but
   one and not during the hold: the controller takes a PoA coming up for
   the arrival of the MN it expects there (RFC 6252 §6.3 step 5), so it
   must not happen before the MN's link is up.

A sudden loss (:func:`cut_plan`) takes the PoA's port down with the MN's
link in both models: the lab's model of a PoA that notices a lost station,
which the controller takes for the loss (RFC 6252 §7.6.2).

So the measured outage is the imposed one plus the ioctls of step 4 (and of
step 2, if they took longer than the imposed outage).

Why a namespace and not the root one: with br_netfilter loaded (it is on
Docker hosts and on this machine), frames bridged in the root namespace go
through the host's iptables FORWARD chain and conntrack, which a host with
Docker drops by policy; the link layer's namespace has no rules.  It also
takes its bridges and veths with it when the lab's process dies.

This module is pure apart from :class:`NamespaceIoctls`: the plan and its
execution take the ioctls, the clock and the sleep as arguments.
"""

from __future__ import annotations

import ctypes
import fcntl
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mpa_sdn.neighbourhood import NeighbourhoodGraph
from mpa_sdn.topology import PoA

# An experiment's override of the outage is at most this (a minute, as the
# topology's l2_handover_ms).
MAX_LINK_LAYER_MS = 60_000.0

# The PoA port models (see above).
PER_STATION, STAY_UP = "per_station", "stay_up"
POA_PORTS = (PER_STATION, STAY_UP)


def checked_poa_ports(model: str) -> str:
    """``model`` if it is a PoA port model (``POA_PORTS``), else ValueError."""
    if model not in POA_PORTS:
        raise ValueError(f"poa_ports must be one of {', '.join(POA_PORTS)}, not {model!r}")
    return model

DOWN, LEAVE, HOLD, JOIN, UP, RUNNING = "down", "leave", "hold", "join", "up", "running"
# A stub that came up forwards in its bridge once the kernel has made it
# operational (its link watch, asynchronous): polled this often, this long.
RUNNING_POLL_S, RUNNING_WAIT_S = 0.0001, 1.0


def stub_name(switch: str, port: int) -> str:
    """A PoA's stub: as long as the PoA's own port name (``port_name``), which
    the configuration check measured, so Linux takes it."""
    return f"{switch}-stb{port}"


def bridge_name(index: int, interface: int) -> str:
    """The bridge of the ``index``-th MN's (sorted by id) ``interface``-th
    interface (0: its link to its PoA, 1: a second interface)."""
    return f"br{index}-{interface}"


def mn_end_name(index: int, interface: int) -> str:
    """That interface's veth end in the link layer's namespace."""
    return f"mn{index}-{interface}"


def imposed_outage_ms(graph: NeighbourhoodGraph, source: PoA, target: PoA,
                      override_ms: float | None = None) -> float:
    """How long the lab holds an MN's link down moving from ``source`` to
    ``target``: ``override_ms`` if an experiment gives one, else the
    topology's ``l2_handover_ms`` from the source's network to the target's
    (a move within one network: that network's relation to itself, if any);
    0 where there is no relation or it gives no time."""
    if override_ms is not None:
        return float(override_ms)
    edge = graph.network_graph.get_edge_data(source.network, target.network) or {}
    value = edge.get("l2_handover_ms")
    return 0.0 if value is None else float(value)


@dataclass
class Attachment:
    """One MN interface's way into the lab: its bridge, its end there, and
    the stub of the PoA it is joined to (None: none yet)."""

    bridge: str
    mn_end: str
    stub: str | None


@dataclass(frozen=True)
class Step:
    kind: str                 # DOWN, LEAVE, HOLD, JOIN, UP or RUNNING
    name: str = ""            # the interface
    bridge: str = ""          # LEAVE and JOIN: the bridge


def switch_plan(attachment: Attachment, new_stub: str, link_up: bool = True,
                poa_ports: str = PER_STATION) -> list[Step]:
    """The steps of a link-layer switch to ``new_stub``'s PoA (see the
    module's docstring).  Without ``link_up`` the new stub joins but the
    MN's link stays down, and per station the new stub too (an association
    that never completes): nothing to hold for."""
    steps = [Step(DOWN, attachment.mn_end)]
    if attachment.stub is not None:
        steps.append(Step(LEAVE, attachment.stub, attachment.bridge))
        if poa_ports == PER_STATION:
            steps.append(Step(DOWN, attachment.stub))
    if not link_up:
        return [*steps, Step(JOIN, new_stub, attachment.bridge)]
    return [*steps, Step(HOLD), Step(JOIN, new_stub, attachment.bridge), Step(UP, new_stub),
            Step(RUNNING, new_stub), Step(UP, attachment.mn_end)]


def cut_plan(attachment: Attachment) -> list[Step]:
    """Sudden loss: the MN's link and its PoA's port go down; nothing moves."""
    return [Step(DOWN, attachment.mn_end),
            *([Step(DOWN, attachment.stub)] if attachment.stub is not None else [])]


@dataclass(frozen=True)
class Clock:
    monotonic_ns: Callable[[], int] = time.monotonic_ns
    time_ns: Callable[[], int] = time.time_ns
    sleep: Callable[[float], None] = time.sleep


@dataclass(frozen=True)
class Executed:
    """When a plan's first step was done (the link went down), when its last
    was, if the link came up, both clocks; and what its ioctls took, the
    hold apart."""

    down_ns: int
    up_ns: int | None
    down_wall_ns: int
    up_wall_ns: int | None
    ioctl_ns: int
    held_ns: int


def execute(steps: list[Step], ioctls, imposed_ms: float, clock: Clock = Clock()) -> Executed:
    """Run ``steps`` with ``ioctls`` (``set_up(name, bool)``, ``join(bridge,
    name)``, ``leave(bridge, name)``); HOLD waits until ``imposed_ms`` has
    passed since the first step was done.  The first step must bring the
    link down; if the last brings it up, that is when it came up."""
    start = clock.monotonic_ns()
    down_ns = down_wall_ns = None
    held_ns = 0
    for step in steps:
        if step.kind == HOLD:
            before = clock.monotonic_ns()
            remaining_ns = down_ns + int(imposed_ms * 1e6) - before
            if remaining_ns > 0:
                clock.sleep(remaining_ns / 1e9)
            held_ns += clock.monotonic_ns() - before
        elif step.kind in (DOWN, UP):
            ioctls.set_up(step.name, step.kind == UP)
        elif step.kind == JOIN:
            ioctls.join(step.bridge, step.name)
        elif step.kind == LEAVE:
            ioctls.leave(step.bridge, step.name)
        elif step.kind == RUNNING:
            _wait_running(ioctls, step.name, clock)
        else:
            raise ValueError(f"no link-layer step {step.kind!r}")
        if down_ns is None:
            down_ns, down_wall_ns = clock.monotonic_ns(), clock.time_ns()
    end = clock.monotonic_ns()
    came_up = steps[-1].kind == UP
    return Executed(down_ns, end if came_up else None, down_wall_ns,
                    clock.time_ns() if came_up else None, end - start - held_ns, held_ns)


def _wait_running(ioctls, name: str, clock: Clock) -> None:
    """Until ``name`` is operational, at most RUNNING_WAIT_S: a bridge port
    that came up forwards only then, and the MN's first frames (its
    gratuitous ARP, which the controller takes for its arrival) would be
    dropped at the bridge if its link came up before."""
    deadline = clock.monotonic_ns() + int(RUNNING_WAIT_S * 1e9)
    while not ioctls.running(name) and clock.monotonic_ns() < deadline:
        clock.sleep(RUNNING_POLL_S)


@dataclass(frozen=True)
class LinkSwitch:
    """One link-layer switch of a host: its link down at one PoA and up at
    another (or left down there: None).  Times are ns, monotonic and
    wall-clock (both clocks are shared by every host of the lab).
    ``imposed_ms`` is the outage the lab held the link down for on purpose,
    ``ioctl_ms`` what the switch's ioctls took besides."""

    host: str
    from_poa: str
    to_poa: str
    down_ns: int
    up_ns: int | None
    down_wall_ns: int
    up_wall_ns: int | None
    imposed_ms: float = 0.0
    ioctl_ms: float | None = None

    @property
    def duration_ms(self) -> float | None:
        return None if self.up_ns is None else (self.up_ns - self.down_ns) / 1e6


# Interface flags, indexes and bridge ports through ioctls (what ifconfig and
# brctl use): struct ifreq is a 16-byte name and a 24-byte union (flags, an
# index).
SIOCGIFFLAGS, SIOCSIFFLAGS, SIOCGIFINDEX = 0x8913, 0x8914, 0x8933
SIOCBRADDIF, SIOCBRDELIF = 0x89A2, 0x89A3
IFF_UP, IFF_RUNNING = 0x1, 0x40
_IFREQ_FLAGS = struct.Struct("16sH22x")
_IFREQ_INDEX = struct.Struct("16si20x")
_CLONE_NEWNET = 0x40000000


def set_flags_up(sock: socket.socket, name: str, up: bool) -> None:
    """``ip link set NAME up|down`` in ``sock``'s namespace."""
    request = _IFREQ_FLAGS.pack(name.encode(), 0)
    _, flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(sock, SIOCGIFFLAGS, request))
    flags = flags | IFF_UP if up else flags & ~IFF_UP
    fcntl.ioctl(sock, SIOCSIFFLAGS, _IFREQ_FLAGS.pack(name.encode(), flags))


@dataclass
class NamespaceIoctls:
    """The switch's ioctls, on a socket opened in the network namespace of
    process ``pid`` (the link layer's), kept for the lab's life."""

    pid: int
    sock: socket.socket = field(init=False)
    _indexes: dict[str, int] = field(default_factory=dict, init=False)

    def __post_init__(self):
        self.sock = socket_in_namespace(self.pid)

    def set_up(self, name: str, up: bool) -> None:
        set_flags_up(self.sock, name, up)

    def running(self, name: str) -> bool:
        request = _IFREQ_FLAGS.pack(name.encode(), 0)
        _, flags = _IFREQ_FLAGS.unpack(fcntl.ioctl(self.sock, SIOCGIFFLAGS, request))
        return bool(flags & IFF_RUNNING)

    def join(self, bridge: str, name: str) -> None:
        self._bridge_port(SIOCBRADDIF, bridge, name)

    def leave(self, bridge: str, name: str) -> None:
        self._bridge_port(SIOCBRDELIF, bridge, name)

    def forget(self, name: str) -> None:
        """``name`` was deleted: a new interface may take its name."""
        self._indexes.pop(name, None)

    def _bridge_port(self, request: int, bridge: str, name: str) -> None:
        fcntl.ioctl(self.sock, request, _IFREQ_INDEX.pack(bridge.encode(), self._index(name)))

    def _index(self, name: str) -> int:
        if name not in self._indexes:
            reply = fcntl.ioctl(self.sock, SIOCGIFINDEX, _IFREQ_INDEX.pack(name.encode(), 0))
            self._indexes[name] = _IFREQ_INDEX.unpack(reply)[1]
        return self._indexes[name]

    def close(self) -> None:
        self.sock.close()


def socket_in_namespace(pid: int) -> socket.socket:
    """A datagram socket in ``pid``'s network namespace: the calling thread
    enters it, opens the socket and returns to its own (a socket stays in
    the namespace it was made in)."""
    own = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
    target = os.open(f"/proc/{pid}/ns/net", os.O_RDONLY)
    try:
        _enter(target, f"the network namespace of process {pid}")
        try:
            return socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        finally:
            _enter(own, "the lab's own network namespace")
    finally:
        os.close(target)
        os.close(own)


def _enter(namespace_fd: int, what: str) -> None:
    """setns(2) into a network namespace (os.setns is Python 3.12's)."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.setns(namespace_fd, _CLONE_NEWNET) != 0:
        error = ctypes.get_errno()
        raise OSError(error, f"cannot enter {what}: {os.strerror(error)}")

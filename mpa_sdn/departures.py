"""Where an MN has gone from: departures learned without a port going down.

An access point's wired port stays up when a station roams away, so a PoA's
port going LINK_DOWN (:meth:`~mpa_sdn.routing.Router.port_status`) cannot be
the only way the controller learns that a host has left.  The router (this
is a part of :class:`~mpa_sdn.routing.Router`, on its host table) also learns
it from:

* the MN's arrival where it pre-switched to (RFC 6252 §6.3 step 5): its host
  at the PoA it left is forgotten at once (``host_forgotten_arrived_elsewhere``);
* its MAC showing up in another network, or coming back from elsewhere to a
  host still learned: the MAC's hosts in other networks are polled
  (``host_probe_seen_elsewhere``) and forgotten if they do not answer within
  ``host_probe_s``; an in-band standby interface shares the MN's MAC, and a
  host that is still there answers and stays, so no one can make the
  controller forget a host by sending from its MAC elsewhere;
* a tunnel made for an address: it carries the address to the MN elsewhere,
  so a host of that MN learned at it is stale (the MN came back with the nCoA
  it had there: ``host_forgotten_tunnelled_elsewhere``); to an MN in another
  domain, its hosts here are polled.
"""

from __future__ import annotations

from mpa_sdn.forwarding import Host
from mpa_sdn.openflow import Send
from mpa_sdn.topology import PoA


class Departures:
    """The router's part that looks at what an MN left behind."""

    def _left_behind(self, host: Host, left: PoA | None, now: float) -> list[Send]:
        """The MAC's hosts in other networks, once it shows up in ``host``'s.

        An access point's port stays up when a station leaves it, so its port
        going down cannot be how the controller learns of a departure.  The
        host at the PoA an MN pre-switched away from (``left``), now that it
        has arrived (RFC 6252 §6.3 step 5, which its signalling proved), is
        forgotten at once.  Any other may be a standby interface's sharing
        the MAC, or another's claim: each is polled (a host that is still
        there answers and stays).
        """
        sends = []
        for other in [h for h in self.hosts.of_mac(host.mac)
                      if h.poa.network != host.poa.network and not h.static]:
            if other.poa == left:
                sends += self.forget_host(other.address, "arrived_elsewhere", now)
            else:
                sends += self._poll_left(other, now)
        return sends

    def left_behind_by_tunnels(self, now: float) -> list[Send]:
        """A tunnel made for an address carries it to its MN elsewhere: a host
        of that MN learned at the address is what a port that stayed up left
        behind (the MN came back with the nCoA it had there), and goes; to an
        MN in another domain, its hosts here are polled."""
        sends = []
        for address in self.mobility.take_tunnelled():
            host, tunnel = self.hosts.get(address), self.mobility.tunnels.get(address)
            if tunnel is None:
                continue
            if host is not None and host.mac == tunnel.mac and not host.static:
                sends += self.forget_host(address, "tunnelled_elsewhere", now)
            if tunnel.outer is not None:
                for other in [h for h in self.hosts.of_mac(tunnel.mac) if not h.static]:
                    sends += self._poll_left(other, now)
        return sends

    def _poll_left(self, host: Host, now: float) -> list[Send]:
        """Poll a host its MN may have left, unless it is being polled or
        answered a poll lately (``answered``, kept ``host_probe_s`` by the
        router's tick: two interfaces sharing a MAC, each seen after the
        other, would otherwise have each other polled for ever)."""
        if host.address in self.probing or host.address in self.answered:
            return []
        self.counters["host_probe_seen_elsewhere"] += 1
        return self._poll(host, now)

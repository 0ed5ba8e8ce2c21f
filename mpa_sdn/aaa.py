"""Every domain's AAA servers, as the PAA (mpa_sdn.pana_agent) sees them.

Each administrative domain names its own RADIUS servers and shared secret
(``domains.ID.radius``); a domain's AA relays EAP to those only, so no domain
ever learns another's users or keys.  This holds one
:class:`mpa_sdn.radius_client.RadiusClient` per domain and routes answers
back by the server they came from.  Pure: times are passed in, datagrams are
returned for the shell's RADIUS socket to send.
"""

from __future__ import annotations

import logging
from typing import Callable, Hashable

from mpa_sdn.radius import Answer, RadiusError
from mpa_sdn.radius_client import Datagram, RadiusClient, RadiusServer, RetransmitSettings

LOG = logging.getLogger("mpa_sdn.aaa")


class DomainsAaa:
    """``servers``: domain -> its RadiusServers in order of preference."""

    def __init__(self, servers: dict[str, list[RadiusServer]], settings: RetransmitSettings,
                 counters, entropy: Callable[[int], bytes], random: Callable[[], float],
                 nas_identifier: Callable[[str], str]):
        self.counters = counters
        self.clients = {domain: RadiusClient(list, settings, counters, entropy, random,
                                             nas_identifier(domain))
                        for domain, list in sorted(servers.items()) if list}
        self._by_server = {(s.address, s.port): domain for domain, list in servers.items()
                           for s in list}
        # next_due, kept until a request, answer, tick or forget changes what
        # is outstanding: the worker asks after every event, and asking every
        # domain's client each time was a tenth of a handover at 10,000 MNs.
        self._next_due: float | None = None
        self._next_due_known = True

    def request(self, domain: str, key: Hashable, eap: bytes, *, user_name: str,
                state: bytes | None, calling_station: str, called_station: str,
                now: float) -> tuple[list[Datagram], str | None]:
        """An Access-Request for ``key``: (what to send, None) or ([], why it
        cannot go: no server for the domain, too many outstanding)."""
        client = self.clients.get(domain)
        self._next_due_known = False
        if client is None:
            self.counters["radius_no_server"] += 1
            return [], "the domain names no RADIUS server"
        try:
            datagram = client.send(key, now, eap=eap, user_name=user_name, state=state,
                                   calling_station_id=calling_station,
                                   called_station_id=called_station)
        except RadiusError as exc:
            return [], exc.reason
        return [datagram], None

    def answer(self, data: bytes, source: tuple) -> tuple[Hashable, Answer] | None:
        """The request an answer completes and the answer, or None (refused
        and counted by the client, or from no server of ours)."""
        domain = self._by_server.get(tuple(source[:2]))
        if domain is None or domain not in self.clients:
            self.counters["radius_from_unknown_server"] += 1
            LOG.info("RADIUS datagram from %s:%s, which no domain names; dropped", *source[:2])
            return None
        self._next_due_known = False
        try:
            completed = self.clients[domain].answer(data, tuple(source[:2]))
        except RadiusError as exc:
            LOG.info("RADIUS answer from %s:%s refused: %s", source[0], source[1], exc)
            return None
        return completed.key, completed.answer

    def tick(self, now: float) -> tuple[list[Datagram], list[Hashable]]:
        """Retransmissions due, and the requests no server answered."""
        sends, failed = [], []
        self._next_due_known = False
        for client in self.clients.values():
            tick = client.tick(now)
            sends += tick.send
            failed += [failure.key for failure in tick.failed]
        return sends, failed

    def next_due(self) -> float | None:
        """When :meth:`tick` next has work (wall clock), None: nothing out."""
        if not self._next_due_known:
            due = [d for d in (c.next_deadline() for c in self.clients.values())
                   if d is not None]
            self._next_due, self._next_due_known = (min(due) if due else None), True
        return self._next_due

    def forget(self, key: Hashable) -> None:
        """A session that ended: its request, if one is out, is answered to no one
        (a key is a PANA session's: at most one client holds it)."""
        self._next_due_known = False
        for client in self.clients.values():
            client.cancel(key)

"""The Authentication Agent (AA): MPA-SAs and the states they move through.

Pre-authentication (RFC 6252 §6.3 step 1, §7.2) is PANA with RFC 5873's
pre-authentication, relaying EAP to the domain's RADIUS server
(:mod:`mpa_sdn.pana_agent`).  When a PANA session succeeds, the AA makes the
MPA-SA from the MSK (:class:`mpa_protocol.keys.SaBinding`): both ends name it
and key it the same way, so nothing about it is sent.  The SA does not know
the MN's MAC yet: PANA names none, and the interface the MN will use in the
network may not be the one it pre-authenticated from.  The MN names it in
every authenticated message (``mn_mac``); the first one binds it (a MAC the
PANA exchange came from, on a link of ours, is proven; any other is the MN's
word, signed under the SA).

An MPA-SA then moves through the states of RFC 6252 Appendix C.2, which
:mod:`mpa_sdn.mpa_sa` names; the AA keeps the SAs (indexed by identity and
network, by MAC and by PANA session, in the state file across restarts) and
changes their states.  Every later message names its SA and carries a
sequence number and an HMAC under the key of its purpose.  The AA accepts
each sequence number once within the SA's window; the latest message's
answer is kept, so a retransmission (same number, same bytes) gets the same
answer and changes nothing twice.  Failed pre-authentications are limited
per identity and per source address (:mod:`mpa_sdn.failure_limiter`).
"""

from __future__ import annotations

import heapq
import logging

from mpa_protocol import keys
from mpa_protocol.messages import Message, SignallingError, mac_ok
from mpa_sdn.failure_limiter import FailureLimiter
from mpa_sdn.mpa_sa import (AUTHORIZED, EXPIRED, EXPIRED_KEEP_S, HELD, KIND, OUTSIDE_WINDOW,
                            PRE_AUTHENTICATED, REPLAY, RETRANSMISSION, SecurityAssociation)
from mpa_sdn.netpolicy import Policies

LOG = logging.getLogger("mpa_sdn.aa")

# An MN whose link went down and that shows up again in the same network
# within this long moved between PoAs of that network: it did not leave.
LEAVE_GRACE_S = 5.0
STARTUP_GRACE_S = 60.0   # after a restart: switches reconnect, hosts are learned again


class AuthenticationAgent:
    """Every network's AA: one object holding the MPA-SAs of every network, each
    made from a PANA session its own domain's RADIUS server accepted."""

    def __init__(self, topology, store, settings, counters, entropy,
                 attached=lambda mac, network: False, on_drop=lambda sa, why, now: None,
                 policy_of=None, on_change=None):
        self.topology = topology
        self.store = store
        self.settings = settings
        self.counters = counters
        self.entropy = entropy                # n -> n random bytes
        self.is_attached = attached           # (MAC, network) -> learned there now
        self.on_drop = on_drop                # an SA dropped for a false MAC claim
        # Each network's policy (the controller's, shared) and who hears of
        # each SA's change: (sa, state) -> None, created, changed, gone.
        self.policy_of = policy_of or Policies(topology.networks, settings).of
        self.on_change = on_change
        self.sas: dict[str, SecurityAssociation] = {}
        self.by_identity_network: dict[tuple[str, str], str] = {}
        self.by_mac: dict[str, set[str]] = {}  # MN MAC -> its SA ids
        self.by_pana_session: dict[int, str] = {}
        self._leaving: dict[str, float] = {}    # SA id -> when its MN's host was forgotten
        # (since + LEAVE_GRACE_S, SA id), stale ones too: a tick looks only at the
        # SAs whose grace is over (after a restart, every authorized SA is leaving).
        self._leaving_due: list[tuple[float, str]] = []
        # A heap of (when, id) for tick: an SA's lapse or end; an entry may
        # be stale (looked at, then passed over).
        self._sa_due: list[tuple[float, str]] = []
        self.identity_limit = FailureLimiter(settings.failures_per_identity,
                                             settings.failure_window_s, settings.lockout_s)
        self.source_limit = FailureLimiter(settings.failures_per_source,
                                           settings.failure_window_s, settings.lockout_s)
        self._load()

    # -- persistence ------------------------------------------------------------

    def _load(self) -> None:
        for key, record in self.store.load(KIND).items():
            try:
                sa = SecurityAssociation.from_record(record)
                if sa.id != key or sa.network not in self.topology.networks:
                    raise ValueError("id or network does not match")
            except (TypeError, ValueError, KeyError) as exc:
                self.counters["sa_record_invalid"] += 1
                LOG.error("state file: MPA-SA record sa=%s is unusable (%s); dropping it",
                          key[:8], exc)
                self.store.delete(KIND, key)
                continue
            self._index(sa)
        if self.sas:
            LOG.info("restored %d MPA-SAs", len(self.sas))
        # The controller knows no host after a restart: an authorized MN that
        # is not seen again within the start-up grace is held.
        self._restored_authorized = [sa.id for sa in self.sas.values() if sa.state == AUTHORIZED]

    def _index(self, sa: SecurityAssociation) -> None:
        self.sas[sa.id] = sa
        self.by_identity_network[(sa.identity, sa.network)] = sa.id
        if sa.mn_mac is not None:
            self.by_mac.setdefault(sa.mn_mac, set()).add(sa.id)
        if sa.pana is not None:
            self.by_pana_session[sa.pana["session"]] = sa.id
        self._schedule(sa)

    def _schedule(self, sa: SecurityAssociation) -> None:
        """When tick next has something to do with the SA (see tick)."""
        if sa.state == EXPIRED:
            due = float("-inf") if sa.expired_at is None else sa.expired_at + EXPIRED_KEEP_S
        elif sa.state == HELD and sa.held_until is not None:
            due = min(sa.expires, sa.held_until)
        else:
            due = sa.expires
        heapq.heappush(self._sa_due, (due, sa.id))

    def _tell(self, sa: SecurityAssociation, state: str) -> None:
        if self.on_change is not None:
            self.on_change(sa, state)

    def save(self, sa: SecurityAssociation) -> None:
        self.store.put(KIND, sa.id, sa.to_record())

    def _drop(self, sa: SecurityAssociation) -> None:
        del self.sas[sa.id]
        self._leaving.pop(sa.id, None)
        if self.by_identity_network.get((sa.identity, sa.network)) == sa.id:
            del self.by_identity_network[(sa.identity, sa.network)]
        if sa.pana is not None and self.by_pana_session.get(sa.pana["session"]) == sa.id:
            del self.by_pana_session[sa.pana["session"]]
        ids = self.by_mac.get(sa.mn_mac)
        if ids is not None:
            ids.discard(sa.id)
            if not ids:
                del self.by_mac[sa.mn_mac]
        self.store.delete(KIND, sa.id)
        self._tell(sa, "gone")

    def sas_of(self, identity: str) -> list[SecurityAssociation]:
        """An MN's MPA-SAs (one a network at most), in the order of :meth:`views`."""
        ids = (self.by_identity_network.get((identity, n)) for n in sorted(self.topology.networks))
        return [self.sas[i] for i in ids if i in self.sas]

    def _of_mac(self, mac: str) -> list[SecurityAssociation]:
        return [self.sas[i] for i in sorted(self.by_mac.get(mac, ()))]

    def identity_of(self, mac: str | None = None, sa_id: str | None = None) -> str | None:
        """For log lines: the NAI of the MN with this MAC or MPA-SA (by id),
        as far as its MPA-SAs or the topology say; None for any other host."""
        known = self.sas.get(sa_id) if isinstance(sa_id, str) else None
        known = known or next(iter(self._of_mac(mac)), None)
        if known is not None:
            return known.identity
        return next((mn.identity for mn in self.topology.mobile_nodes.values()
                     if mac is not None and mn.mac == mac), None)

    # -- pre-authentication (PANA, mpa_sdn.pana_agent) ----------------------------

    def by_session(self, session_id: int) -> SecurityAssociation | None:
        """The SA a PANA session became, if it still exists."""
        return self.sas.get(self.by_pana_session.get(session_id, ""))

    def establish(self, sa_id: str, identity: str, domain: str, network: str,
                  sa_keys: keys.SaKeys, lifetime: int, source: str, seen_mac: str | None,
                  pana_state: dict, now: float) -> SecurityAssociation:
        """A PANA session succeeded: its MPA-SA, pre-authenticated.  An SA the
        identity held with the network before is replaced."""
        old_id = self.by_identity_network.get((identity, network))
        if old_id in self.sas:
            self.counters["sa_replaced"] += 1
            self._drop(self.sas[old_id])
        sa = SecurityAssociation(
            id=sa_id, identity=identity, domain=domain, network=network, mn_mac=None,
            keys=sa_keys, state=PRE_AUTHENTICATED, created=now, expires=now + lifetime,
            source=source, seen_mac=seen_mac, pana=pana_state)
        self._index(sa)
        self.save(sa)
        self._tell(sa, sa.state)
        self.counters["sa_created"] += 1
        LOG.info("MPA-SA sa=%s identity=%s network=%s %s from %s (PANA session %08x)",
                 sa.id[:8], identity, network, sa.state, source, pana_state["session"])
        return sa

    def bind_mac(self, sa: SecurityAssociation, mac: str, origin_mac: str | None,
                 now: float) -> None:
        """The MAC an authenticated message names: the first binds it to the
        SA (refused while another identity's SA holds it in the network),
        every later one must name the same."""
        if sa.mn_mac is not None:
            if sa.mn_mac != mac:
                self.counters["signal_mac_mismatch"] += 1
                raise SignallingError("mac-mismatch", f"this MPA-SA is bound to another MAC "
                                      f"({sa.mn_mac})")
            return
        # Proven: the PANA exchange, or this message, came from that MAC on a
        # link of ours.
        proven = mac in (sa.seen_mac, origin_mac)
        self._claim_mac(sa.identity, sa.network, mac, proven, now)
        sa.mn_mac, sa.proven = mac, proven
        self.by_mac.setdefault(mac, set()).add(sa.id)
        self.counters["sa_mac_bound"] += 1
        LOG.info("MPA-SA sa=%s identity=%s network=%s bound to mac=%s (%s)", sa.id[:8],
                 sa.identity, sa.network, mac, "proven" if proven else "claimed")
        # An MN pre-authenticating with the network it is attached to is
        # authorized at once: no later arrival would authorize it, and without
        # that its SA could never be held (C.2) when it leaves.
        if sa.state == PRE_AUTHENTICATED and self.is_attached(mac, sa.network):
            self._set_state(sa, AUTHORIZED, now)
        else:
            self.save(sa)

    def _claim_mac(self, identity: str, network: str, mac: str, proven: bool,
                   now: float) -> None:
        """A MAC is one MN's in a network: another identity's MPA-SA with it
        would share (or take) that MN's lease.  A proven claim beats one that
        is only the MN's word, which is dropped with its lease; otherwise the
        first claim stands."""
        for sa in self._of_mac(mac):
            if sa.network != network or sa.identity == identity or sa.state == EXPIRED:
                continue
            if sa.proven or not proven:
                self.counters["auth_mac_in_use"] += 1
                raise SignallingError("mac-in-use", "this MAC belongs to another MN's MPA-SA "
                                      "in this network")
            self.counters["sa_false_mac_claim"] += 1
            LOG.warning("MPA-SA sa=%s identity=%s mac=%s network=%s dropped: it claimed "
                        "the MAC and in_band_identity=%s proved it", sa.id[:8], sa.identity,
                        mac, sa.network, identity)
            self._drop(sa)
            self.on_drop(sa, "false MAC claim", now)

    # -- authenticated messages -------------------------------------------------

    def check(self, msg: Message, purpose: str, now: float) -> tuple[SecurityAssociation, dict | None]:
        """Authenticate a message; return its SA and, for a retransmission, the answer given.

        Nothing changes here: the caller commits the sequence number with
        :meth:`commit` once it has answered.
        """
        sa = self.sas.get(msg["sa"])
        if sa is None:
            self.counters["signal_unknown_sa"] += 1
            raise SignallingError("unknown-sa", "no such MPA-SA; pre-authenticate again")
        # The MAC first: whoever cannot produce it learns nothing about the SA
        # (in-band, a bad MAC gets silence).  It does not count against the
        # identity's failure limit: knowing an SA id must not let anyone lock
        # the MN out of pre-authentication.
        if not mac_ok(msg, sa.keys.for_purpose(purpose)):
            self.counters["signal_bad_mac"] += 1
            raise SignallingError("bad-mac", "message authentication failed")
        if sa.network != msg["network"]:
            self.counters["signal_wrong_network"] += 1
            raise SignallingError("wrong-network", "the SA is for another network")
        if sa.state == EXPIRED or sa.lapsed(now):
            self.counters["signal_sa_expired"] += 1
            raise SignallingError("sa-expired", "the MPA-SA has expired; pre-authenticate again")
        seq, window = msg["seq"], self.settings.replay_window
        # The MAC was verified above, and it covers every other field.
        verdict, answer = sa.window_verdict(seq, msg["mac"], now, window,
                                            self.settings.retransmit_s)
        if verdict == OUTSIDE_WINDOW:
            self.counters["signal_outside_window"] += 1
            raise SignallingError("outside-window", f"sequence number {seq} is older than the "
                                  f"window ({sa.high - window + 1}..)")
        if verdict == RETRANSMISSION:
            self.counters["signal_retransmission"] += 1
            return sa, answer
        if verdict == REPLAY:
            self.counters["signal_replay"] += 1
            raise SignallingError("replay", f"sequence number {seq} was already used")
        return sa, None

    def commit(self, sa: SecurityAssociation, msg: Message, answer: dict, now: float) -> None:
        """Record an accepted message's sequence number and its answer (an
        answer may come late: see :meth:`SecurityAssociation.accept`)."""
        sa.accept(msg["seq"], msg["mac"], answer, now, self.settings.replay_window)
        self.save(sa)

    # -- state changes (RFC 6252 C.2) -------------------------------------------

    def sa_for_mac(self, mac: str, network: str, now: float) -> SecurityAssociation | None:
        for sa in self._of_mac(mac):
            if sa.network == network and sa.state in (PRE_AUTHENTICATED, AUTHORIZED) \
                    and sa.expires > now:
                return sa
        return None

    def attached(self, mac: str, network: str, now: float) -> None:
        """The MN with this MAC was seen at a PoA of ``network``."""
        for sa in self._of_mac(mac):
            if sa.state == EXPIRED:
                continue
            if sa.network == network:
                self._leaving.pop(sa.id, None)
            if sa.network == network and sa.state == PRE_AUTHENTICATED:
                self._set_state(sa, AUTHORIZED, now)
            elif sa.network != network and sa.state == AUTHORIZED:
                self._set_state(sa, HELD, now)
            # Back in a held SA's network: authorized again only on proof of
            # possession (a resume under the SA's signalling key).

    def left(self, mac: str, network: str, now: float) -> None:
        """The MN with this MAC is no longer attached to ``network``: its SA
        there is held, wherever the MN went (maybe beyond our networks),
        unless it shows up again in the network within LEAVE_GRACE_S (a move
        between the network's own PoAs)."""
        for sa in self._of_mac(mac):
            if sa.network == network and sa.state == AUTHORIZED:
                self._leave(sa.id, now)

    def _leave(self, sa_id: str, since: float) -> None:
        if sa_id not in self._leaving:
            self._leaving[sa_id] = since
            heapq.heappush(self._leaving_due, (since + LEAVE_GRACE_S, sa_id))

    def resume(self, sa: SecurityAssociation, now: float) -> None:
        if sa.state == HELD:
            self._set_state(sa, AUTHORIZED, now)

    def _set_state(self, sa: SecurityAssociation, state: str, now: float) -> None:
        LOG.info("MPA-SA sa=%s identity=%s mac=%s network=%s state %s -> %s", sa.id[:8],
                 sa.identity, sa.mn_mac, sa.network, sa.state, state)
        self.counters[f"sa_{state.replace('-', '_')}"] += 1
        sa.state = state
        if state != AUTHORIZED:
            self._leaving.pop(sa.id, None)
        if state == HELD:
            sa.held_until = min(sa.expires, now + self.policy_of(sa.network).sa_hold_s)
        elif state == EXPIRED:
            sa.expired_at = now
        else:
            sa.held_until = None
        self._schedule(sa)
        self.save(sa)
        self._tell(sa, state)

    def abandon(self, sa: SecurityAssociation) -> None:
        """An SA whose PANA session never finished and that was never used."""
        self.counters["sa_abandoned"] += 1
        LOG.info("MPA-SA sa=%s identity=%s network=%s dropped: its PANA session never "
                 "finished and the MN never used it", sa.id[:8], sa.identity, sa.network)
        self._drop(sa)

    def end(self, sa: SecurityAssociation) -> None:
        self.counters["sa_released"] += 1
        LOG.info("MPA-SA sa=%s identity=%s mac=%s network=%s released by the MN", sa.id[:8],
                 sa.identity, sa.mn_mac, sa.network)
        self._drop(sa)

    def tick(self, now: float) -> None:
        for sa_id in self._restored_authorized:   # the first tick after a restart
            self._leave(sa_id, now + STARTUP_GRACE_S - LEAVE_GRACE_S)
        self._restored_authorized = []
        leaving = self._leaving_due
        while leaving and leaving[0][0] <= now:
            due, sa_id = heapq.heappop(leaving)
            if self._leaving.get(sa_id, due + 1) + LEAVE_GRACE_S != due:
                continue   # it came back (and maybe left again since)
            del self._leaving[sa_id]
            sa = self.sas.get(sa_id)
            if sa is not None and sa.state == AUTHORIZED and \
                    not self.is_attached(sa.mn_mac, sa.network):
                self._set_state(sa, HELD, now)
        self.identity_limit.tick(now)
        self.source_limit.tick(now)
        due = self._sa_due
        while due and due[0][0] <= now:
            sa = self.sas.get(heapq.heappop(due)[1])
            if sa is None:
                continue
            if sa.state == EXPIRED:
                if sa.expired_at is None or sa.expired_at + EXPIRED_KEEP_S <= now:
                    self._drop(sa)
            elif sa.lapsed(now):
                self._set_state(sa, EXPIRED, now)

    def views(self, now: float, network: str | None = None) -> list[dict]:
        return [sa.view(now) for sa in sorted(self.sas.values(), key=lambda s: (s.network, s.id))
                if network is None or sa.network == network]

"""The Authentication Agent (AA): pre-authentication and MPA-SAs.

Pre-authentication (RFC 6252 §6.3 step 1, §7.2) is a four-message exchange
on either signalling channel:

    MN -> AA  auth-init      identity, the MN's MAC, nonce_mn
    AA -> MN  auth-challenge session, nonce_aa
    MN -> AA  auth-response  session, proof_mn = HMAC(auth key, "mn" | transcript)
    AA -> MN  auth-success   sa, lifetime, proof_aa = HMAC(auth key, "aa" | transcript)

The auth key comes from the MN's pre-shared key and both nonces
(:mod:`mpa_protocol.keys`), so each side proves it holds the key and no key is
ever sent.  The AA looks the identity up only in the store of the domain
that serves the network; an unknown identity gets a challenge like any other
and fails at the proof with the same answer as a wrong key, so answers never
tell whether an identity exists.  Failures are limited per identity and per
source address (:mod:`mpa_sdn.failure_limiter`).

An MPA-SA then moves through the states of RFC 6252 Appendix C.2, which
:mod:`mpa_sdn.mpa_sa` names; the AA keeps the SAs (indexed by identity and
network, and by MAC, in the state file across restarts) and changes their
states.  Every later message names its SA and carries a sequence number and
an HMAC under the key of its purpose.  The AA accepts each sequence number
once within the SA's window; the latest message's answer is kept, so a
retransmission (same number, same bytes) gets the same answer and changes
nothing twice.
"""

from __future__ import annotations

import collections
import heapq
import hmac
import logging
from dataclasses import dataclass

from mpa_protocol import keys
from mpa_protocol import messages
from mpa_protocol.messages import Message, SignallingError, mac_ok
from mpa_protocol.transcript import exchange_transcript, success_transcript
from mpa_sdn.failure_limiter import FailureLimiter
from mpa_sdn.mpa_sa import (AUTHORIZED, EXPIRED, EXPIRED_KEEP_S, HELD, KIND, OUTSIDE_WINDOW,
                            PRE_AUTHENTICATED, REPLAY, RETRANSMISSION, SecurityAssociation)
from mpa_sdn.netpolicy import Policies

LOG = logging.getLogger("mpa_sdn.aa")

# An MN whose link went down and that shows up again in the same network
# within this long moved between PoAs of that network: it did not leave.
LEAVE_GRACE_S = 5.0
STARTUP_GRACE_S = 60.0   # after a restart: switches reconnect, hosts are learned again


@dataclass
class Session:
    """A pre-authentication between challenge and proof (memory only: seconds long)."""

    id: str
    identity: str
    domain: str
    network: str
    mn_mac: str
    nonce_mn: bytes
    nonce_aa: bytes
    source: str
    expires: float
    psk: bytes | None          # None: an identity the domain does not know
    init_key: tuple = ()       # what a retransmitted auth-init repeats
    proven: bool = False       # mn_mac seen as the frame's source (in-band)
    in_progress: bool = True   # counts against its source's limit until it ends
    answer: dict | None = None  # auth-success, kept for a retransmitted response
    answer_proof: str | None = None

    def transcript(self) -> bytes:
        return exchange_transcript(self.identity, self.network, self.mn_mac, self.nonce_mn,
                                   self.nonce_aa, self.id)


class AuthenticationAgent:
    """Every network's AA: one object, each network answered from its own domain's store."""

    def __init__(self, topology, credential_stores: dict, store, settings, counters, entropy,
                 attached=lambda mac, network: False, on_drop=lambda sa, why, now: None,
                 policy_of=None, on_change=None):
        self.topology = topology
        self.credentials = credential_stores  # domain -> CredentialStore
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
        self.sessions: dict[str, Session] = {}
        self._session_by_init: dict[tuple, str] = {}
        self._sessions_of_source: collections.Counter = collections.Counter()
        self.sas: dict[str, SecurityAssociation] = {}
        self.by_identity_network: dict[tuple[str, str], str] = {}
        self.by_mac: dict[str, set[str]] = {}  # MN MAC -> its SA ids
        self._leaving: dict[str, float] = {}    # SA id -> when its MN's host was forgotten
        # (since + LEAVE_GRACE_S, SA id), stale ones too: a tick looks only at the
        # SAs whose grace is over (after a restart, every authorized SA is leaving).
        self._leaving_due: list[tuple[float, str]] = []
        # Heaps of (when, id) for tick: an SA's lapse or end, a session's
        # expiry; an entry may be stale (looked at, then passed over).
        self._sa_due: list[tuple[float, str]] = []
        self._session_due: list[tuple[float, str]] = []
        self.identity_limit = FailureLimiter(settings.failures_per_identity,
                                             settings.failure_window_s, settings.lockout_s)
        self.source_limit = FailureLimiter(settings.failures_per_source,
                                           settings.failure_window_s, settings.lockout_s)
        # Proof computations for unknown identities use a per-run key, so
        # they cost what real ones do.
        self._decoy_psk = entropy(keys.KEY_BYTES)
        self._load()

    # -- persistence ------------------------------------------------------------

    def _load(self) -> None:
        for key, record in self.store.load(KIND).items():
            try:
                sa = SecurityAssociation.from_record(record)
                if sa.id != key or sa.network not in self.topology.networks:
                    raise ValueError("id or network does not match")
                store = self.credentials.get(sa.domain)
                if store is None or store.key(sa.identity) is None:
                    # Revoked while we were down: its SA goes with it.
                    self.counters["sa_revoked"] += 1
                    LOG.info("MPA-SA sa=%s identity=%s mac=%s network=%s dropped: no longer "
                             "in the credentials of domain=%s", key[:8], sa.identity,
                             sa.mn_mac, sa.network, sa.domain)
                    self.store.delete(KIND, key)
                    continue
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
        self.by_mac.setdefault(sa.mn_mac, set()).add(sa.id)
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

    # -- the exchange -----------------------------------------------------------

    def _check_limits(self, identity: str, source: str, now: float) -> None:
        wait = max(self.identity_limit.retry_after(identity, now),
                   self.source_limit.retry_after(source, now))
        if wait > 0:
            self.counters["auth_rate_limited"] += 1
            raise SignallingError("rate-limited", "too many failed attempts; try later",
                                  retry_after=max(1, round(wait + 0.5)))

    def init(self, msg: Message, source: str, now: float, proven: bool = False) -> dict:
        """auth-init -> auth-challenge.  ``proven``: ``mn_mac`` was the frame's
        source MAC (in-band); over REST it is the MN's word."""
        network = self.topology.networks[msg["network"]]
        identity = msg["identity"]
        self._check_limits(identity, source, now)
        init_key = (identity, network.id, msg["nonce"], msg["mn_mac"])
        existing = self.sessions.get(self._session_by_init.get(init_key, ""))
        if existing is not None and existing.expires > now:
            self.counters["auth_init_retransmission"] += 1
            return self._challenge(existing)
        self._claim_mac(identity, network.id, msg["mn_mac"], proven, now, check_only=True)
        per_source = self.settings.auth_sessions_per_source
        if (len(self.sessions) >= self.settings.max_auth_sessions
                or self._sessions_of_source[source] >= per_source):
            self._expire_sessions(now)
        if self._sessions_of_source[source] >= per_source:
            self.counters["auth_busy_source"] += 1
            raise SignallingError("busy", "too many pre-authentications in progress from "
                                  "this address", retry_after=1)
        if len(self.sessions) >= self.settings.max_auth_sessions:
            self.counters["auth_busy"] += 1
            raise SignallingError("busy", "too many pre-authentications in progress",
                                  retry_after=1)
        store = self.credentials.get(network.served_by)
        psk = store.key(identity) if store is not None else None
        session = Session(id=self.entropy(16).hex(), identity=identity, domain=network.served_by,
                          network=network.id, mn_mac=msg["mn_mac"],
                          nonce_mn=bytes.fromhex(msg["nonce"]),
                          nonce_aa=self.entropy(keys.NONCE_BYTES), source=source,
                          expires=now + self.settings.auth_session_s, psk=psk,
                          init_key=init_key, proven=proven)
        self.sessions[session.id] = session
        heapq.heappush(self._session_due, (session.expires, session.id))
        self._session_by_init[init_key] = session.id
        self._sessions_of_source[source] += 1
        self.counters["auth_init"] += 1
        return self._challenge(session)

    @staticmethod
    def _challenge(session: Session) -> dict:
        return messages.build("auth-challenge", network=session.network, session=session.id,
                              nonce=session.nonce_aa.hex())

    def respond(self, msg: Message, source: str, now: float) -> dict:
        """auth-response -> auth-success, creating the MPA-SA."""
        session = self.sessions.get(msg["session"])
        if session is None or session.expires <= now or session.network != msg["network"]:
            self.counters["auth_unknown_session"] += 1
            self.source_limit.failed(source, now)
            raise SignallingError("unknown-session", "no such pre-authentication in progress; "
                                  "start again with auth-init")
        if session.answer is not None:
            if msg["proof"] == session.answer_proof:
                self.counters["auth_response_retransmission"] += 1
                return session.answer
            raise SignallingError("unknown-session", "this pre-authentication is complete")
        self._check_limits(session.identity, source, now)
        exchange = keys.Exchange(session.identity, session.network, session.nonce_mn,
                                 session.nonce_aa)
        psk = session.psk if session.psk is not None else self._decoy_psk
        auth_key = exchange.auth_key(psk)
        ok = hmac.compare_digest(keys.proof(auth_key, "mn", session.transcript()),
                                 bytes.fromhex(msg["proof"]))
        if not ok or session.psk is None:
            self.counters["auth_failed"] += 1
            self.identity_limit.failed(session.identity, now)
            self.source_limit.failed(source, now)
            self._forget_session(session)
            LOG.info("pre-authentication of identity=%s mac=%s for network=%s from %s failed",
                     session.identity, session.mn_mac, session.network, source)
            raise SignallingError("authentication-failed", "authentication failed")
        # Claims made meanwhile count too (two pre-authentications at once).
        self._claim_mac(session.identity, session.network, session.mn_mac, session.proven, now)
        old_id = self.by_identity_network.get((session.identity, session.network))
        if old_id in self.sas:
            self.counters["sa_replaced"] += 1
            self._drop(self.sas[old_id])
        # An MN authenticating with the network it is attached to is authorized
        # at once: no later arrival would authorize it, and without that its
        # SA could never be held (C.2) when it leaves.
        here = self.is_attached(session.mn_mac, session.network)
        sa = SecurityAssociation(
            id=self.entropy(16).hex(), identity=session.identity, domain=session.domain,
            network=session.network, mn_mac=session.mn_mac, keys=exchange.keys(session.psk),
            state=AUTHORIZED if here else PRE_AUTHENTICATED, created=now,
            expires=now + self.settings.sa_lifetime_s, source=source, proven=session.proven)
        self._index(sa)
        self.save(sa)
        self._tell(sa, sa.state)
        self.counters["sa_created"] += 1
        LOG.info("MPA-SA sa=%s identity=%s mac=%s network=%s %s from %s", sa.id[:8],
                 sa.identity, sa.mn_mac, sa.network, sa.state, source)
        lifetime = self.settings.sa_lifetime_s
        proof = keys.proof(auth_key, "aa", success_transcript(session.transcript(), sa.id,
                                                              lifetime)).hex()
        session.answer = messages.build("auth-success", network=sa.network,
                                        session=session.id, sa=sa.id, lifetime=lifetime,
                                        proof=proof)
        session.answer_proof = msg["proof"]
        self._end_progress(session)  # kept only to answer a retransmission now
        return session.answer

    def _claim_mac(self, identity: str, network: str, mac: str, proven: bool, now: float,
                   check_only: bool = False) -> None:
        """A MAC is one MN's in a network: another identity's MPA-SA with it
        would share (or take) that MN's lease.  A claim seen in-band (the MAC
        was the frame's source) beats one made over REST, which is dropped
        with its lease; otherwise the first claim stands."""
        for sa in self._of_mac(mac):
            if sa.network != network or sa.identity == identity or sa.state == EXPIRED:
                continue
            if sa.proven or not proven:
                self.counters["auth_mac_in_use"] += 1
                raise SignallingError("mac-in-use", "this MAC belongs to another MN's MPA-SA "
                                      "in this network")
            if not check_only:
                self.counters["sa_false_mac_claim"] += 1
                LOG.warning("MPA-SA sa=%s identity=%s mac=%s network=%s dropped: it claimed "
                            "the MAC over REST and in_band_identity=%s showed it in-band",
                            sa.id[:8], sa.identity, mac, sa.network, identity)
                self._drop(sa)
                self.on_drop(sa, "false MAC claim", now)

    def _forget_session(self, session: Session) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        if self._session_by_init.get(session.init_key) == session.id:
            del self._session_by_init[session.init_key]
        self._end_progress(session)

    def _end_progress(self, session: Session) -> None:
        if session.in_progress:
            session.in_progress = False
            self._sessions_of_source[session.source] -= 1
            if self._sessions_of_source[session.source] <= 0:
                del self._sessions_of_source[session.source]

    def _expire_sessions(self, now: float) -> None:
        due = self._session_due
        while due and due[0][0] <= now:
            session = self.sessions.get(heapq.heappop(due)[1])
            if session is not None and session.expires <= now:
                self._forget_session(session)

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
        self._expire_sessions(now)
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

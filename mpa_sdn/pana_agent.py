"""The PANA Authentication Agent (PAA) of every network's AA: RFC 5191 with
RFC 5873's pre-authentication, relaying EAP to the domain's RADIUS server.

One PANA session per pre-authentication (RFC 6252 §6.3 step 1, §7.2):

    MN (PaC)                          AA (PAA)                   RADIUS (domain)
    PCI [E]             ------------>
                        <------------ PAR [S,E] PRF/Integrity-Algorithm,
                                                EAP-Request/Identity
    PAN [S,E] algorithms chosen,  -->
        EAP-Response/Identity                  Access-Request  ---------->
                                               <-------- Access-Challenge
                        <------------ PAR [E] Nonce, EAP-Request
    PAN [E] Nonce, EAP-Response  --->          Access-Request  ---------->
      ... (one round per EAP method round) ...
                                               <-------- Access-Accept (MSK)
                        <------------ PAR [C,E] Result-Code, EAP-Success,
                                                Key-Id, Session-Lifetime, AUTH
                                      (the MPA-SA is made, mpa_sdn.aa)
    PAN [C,E] Key-Id, AUTH  ------->  the session ends, established

The E flag is the MN's: set when it pre-authenticates with a network it is
not attached to, and mirrored in every message of the session.  The EAP
response rides in the PAN to each PAR (RFC 5191 §4.3's piggybacking); a PaC
that sends it in a PAR of its own gets a PAN and the same treatment.

The PAA sends its requests again on RFC 5191 §9's timers until their answer
comes (an answer that is not the one awaited is counted and dropped); a
retransmitted PCI gets the first PAR again.  Everything malformed, unknown or
not authenticated is counted by reason and dropped in silence, as RFC 5191
§5 says, and changes nothing.  Sessions in progress live in memory only,
bounded in number (and per source address) and in time.  The MPA-SA is made
when the AAA server accepts and the final PAR goes out: the MN may use it
as soon as it has checked that PAR's AUTH, and its next request (over REST,
say) can come before its PAN (a datagram through the switches); nobody
without the MSK can use it.  The final PAN ends the session.  The session's
PANA state lives on in the MPA-SA, which keeps it across restarts: Ping
(PNR with P) and Termination (PTR) from the MN are answered from there, under
PANA_AUTH_KEY (mpa_sdn.pana_open_session).
"""

from __future__ import annotations

import heapq
import logging
from typing import Callable

from mpa_protocol import eap, keys, pana, pana_security, pana_timers
from mpa_protocol.eap import EapPacket
from mpa_protocol.pana import PanaError, PanaMessage
# PanaReply is what callers take from here (the controller, the shell, tests).
from mpa_sdn.pana_open_session import OpenSessions, drop
from mpa_sdn.pana_session import (AAA_WAIT, COMPLETING, EAP_RUN, STARTING, PanaReply,  # noqa: F401
                                  Session, Uniform, calling_station, eap_code, identity_of)

LOG = logging.getLogger("mpa_sdn.pana")

# Offered in the first PAR, best first: RFC 5191's mandatory pair comes
# second, so a PaC that knows only that one still gets a session.
PRF_OFFER = (pana.PRF_HMAC_SHA2_256, pana.PRF_HMAC_SHA1)
INTEGRITY_OFFER = (pana.AUTH_HMAC_SHA2_256_128, pana.AUTH_HMAC_SHA1_160)
NONCE_BYTES = 20   # RFC 5191 §8.5: at least half the PRF's output, 20 covers both


class PanaAgent:
    """The PAA of every network this controller serves.

    ``aaa`` relays EAP to the domains' RADIUS servers (mpa_sdn.radius's
    client); ``establish`` makes the MPA-SA once a session succeeds;
    ``by_session`` finds an established SA by PANA session id;
    ``terminated`` ends one at the MN's PTR (and returns what to send);
    ``save`` writes an SA whose PANA state changed; ``ended`` hears of every
    session that closes (established, rejected, expired, unanswered).
    """

    def __init__(self, topology, settings, counters, entropy: Callable[[int], bytes], aaa,
                 establish: Callable, by_session: Callable, terminated: Callable,
                 save: Callable, identity_limit, source_limit, rand: Callable[[], float],
                 ended: Callable = lambda session, how, now: None):
        self.topology = topology
        self.settings = settings
        self.counters = counters
        self.entropy = entropy
        self.aaa = aaa
        self.establish = establish
        self.by_session = by_session
        self.terminated = terminated
        self.save = save
        self.identity_limit = identity_limit
        self.source_limit = source_limit
        self.rand = rand
        self.ended = ended       # (session, how, now): a session closed, how
        self.open_sessions = OpenSessions(settings, counters, save, terminated)
        self.sessions: dict[int, Session] = {}
        self._starting: dict[tuple[str, int, str], int] = {}  # (address, port, network) -> id
        self._per_source: dict[str, int] = {}
        # (when, session id, generation): only a session's latest entry counts,
        # the ones it replaced are passed over.
        self._due: list[tuple[float, int, int]] = []
        self._generation = 0

    # -- input ---------------------------------------------------------------

    def datagram(self, data: bytes, origin, network: str, port: int, now: float) -> list:
        """A PANA message from ``origin.source``:``port`` to ``network``'s AA."""
        self.counters["pana_received"] += 1
        try:
            msg = PanaMessage.decode(data, self.settings.pana_max_bytes)
        except PanaError as exc:
            return self._drop(f"malformed_{exc.reason.replace('-', '_')}", origin, str(exc))
        if msg.msg_type == pana.PCI:
            return self._initiation(msg, origin, network, port, now)
        session = self.sessions.get(msg.session_id)
        if session is not None:
            if session.network != network or (session.source, session.port) != \
                    (origin.source, port):
                return self._drop("wrong_peer", origin, f"session {msg.session_id:#x} is "
                                  f"another PaC's")
            session.origin = origin
            return self._in_session(session, msg, data, now)
        sa = self.by_session(msg.session_id)
        if sa is not None and sa.network == network:
            return self.open_sessions.request(sa, msg, data, origin, now)
        again = self.open_sessions.terminated_again(data, origin, now)
        if again:
            return again
        return self._drop("unknown_session", origin, f"{msg.name} for session "
                          f"{msg.session_id:#x}, which is not open")

    def _drop(self, reason: str, origin, why: str) -> list:
        return drop(self.counters, reason, origin, why)

    # -- PCI: a session begins ------------------------------------------------

    def _initiation(self, msg: PanaMessage, origin, network: str, port: int,
                    now: float) -> list:
        if msg.is_request or msg.session_id or msg.seq:
            return self._drop("malformed_pci", origin, "a PCI has no R flag, session or "
                              "sequence number")
        known = self.sessions.get(self._starting.get((origin.source, port, network), -1))
        if known is not None and known.phase == STARTING:
            # Our first PAR was lost: the same one again.
            self.counters["pana_pci_retransmission"] += 1
            known.origin = origin
            return [PanaReply(origin, known.last_par)]
        if self.source_limit.retry_after(origin.source, now) > 0:
            return self._drop("rate_limited", origin, "too many failed pre-authentications "
                              "from this address")
        if self._per_source.get(origin.source, 0) >= self.settings.pana_sessions_per_source:
            self._expire(now)
        if self._per_source.get(origin.source, 0) >= self.settings.pana_sessions_per_source:
            return self._drop("busy_source", origin, "too many PANA sessions in progress "
                              "from this address")
        if len(self.sessions) >= self.settings.max_pana_sessions:
            self._expire(now)
        if len(self.sessions) >= self.settings.max_pana_sessions:
            return self._drop("busy", origin, "too many PANA sessions in progress")
        net = self.topology.networks[network]
        session = Session(id=self._new_session_id(), network=network, domain=net.served_by,
                          source=origin.source, port=port, origin=origin,
                          pre=msg.has(pana.FLAG_E), seen_mac=origin.mac,
                          expires=now + self.settings.pana_session_s, started=now,
                          paa_seq=int.from_bytes(self.entropy(4), "big") or 1,
                          paa_nonce=self.entropy(NONCE_BYTES))
        self.sessions[session.id] = session
        self._starting[(origin.source, port, network)] = session.id
        self._per_source[origin.source] = self._per_source.get(origin.source, 0) + 1
        self.counters["pana_sessions_started"] += 1
        session.eap_id = self.entropy(1)[0]
        first = PanaMessage(pana.AUTH, pana.FLAG_R | pana.FLAG_S | session.flags, session.id,
                            session.paa_seq,
                            [pana.prf_algorithm(p) for p in PRF_OFFER]
                            + [pana.integrity_algorithm(i) for i in INTEGRITY_OFFER]
                            + [pana.eap_payload(EapPacket(eap.REQUEST, session.eap_id,
                                                          eap.IDENTITY).encode())])
        session.i_par = first.encode()
        LOG.info("PANA session %08x for network=%s from %s:%d%s", session.id, network,
                 origin.source, port, " (pre-authentication)" if session.pre else "")
        return self._send_request(session, session.i_par, now)

    def _new_session_id(self) -> int:
        while True:
            sid = int.from_bytes(self.entropy(4), "big")
            if sid and sid not in self.sessions and self.by_session(sid) is None:
                return sid

    # -- messages of a session in progress -------------------------------------

    def _in_session(self, session: Session, msg: PanaMessage, data: bytes, now: float) -> list:
        if msg.msg_type != pana.AUTH:
            return self._drop("unexpected", session.origin, f"{msg.name} before the session "
                              "is complete")
        if bool(msg.has(pana.FLAG_E)) != session.pre:
            return self._drop("e_flag", session.origin, f"{msg.name}: the E flag differs "
                              "from the session's")
        if msg.is_request:
            return self._pac_request(session, msg, data, now)
        if msg.seq != session.paa_seq or session.retransmission is None:
            self.counters["pana_answer_unexpected"] += 1
            return []   # a PAN to a PAR already answered (its retransmission), or none
        if session.auth_key is not None and msg.key_id is not None \
                and not pana_security.verify_auth(data, session.auth_key, session.integrity):
            return self._drop("bad_auth", session.origin, f"{msg.name}: AUTH does not verify")
        if session.phase == STARTING:
            return self._start_answer(session, msg, data, now)
        if session.phase == COMPLETING:
            return self._final_answer(session, msg, now)
        if session.phase == EAP_RUN:
            if session.pac_nonce is None:
                if msg.nonce is None:
                    return self._drop("no_nonce", session.origin, "the first PAN after the "
                                      "start carries no Nonce")
                session.pac_nonce = msg.nonce
            session.retransmission = None
            if msg.eap_payload is None:
                # The response comes in a PAR of the PaC's own (RFC 5191 §4.3).
                self.counters["pana_answer_without_eap"] += 1
                return []
            return self._relay(session, msg.eap_payload, now)
        self.counters["pana_answer_unexpected"] += 1
        return []

    def _pac_request(self, session: Session, msg: PanaMessage, data: bytes, now: float) -> list:
        """A PAR from the PaC carrying its EAP response."""
        if session.pac_seq == msg.seq and session.pac_answer is not None:
            self.counters["pana_request_retransmission"] += 1
            return [PanaReply(session.origin, session.pac_answer)]
        if session.phase != EAP_RUN or session.retransmission is not None \
                or msg.eap_payload is None or msg.has(pana.FLAG_S | pana.FLAG_C):
            return self._drop("unexpected", session.origin, f"{msg.name} in phase "
                              f"{session.phase}")
        if session.pac_nonce is None:
            return self._drop("no_nonce", session.origin, "the PaC's PAR comes before its Nonce")
        session.pac_seq = msg.seq
        session.pac_answer = PanaMessage(pana.AUTH, session.flags, session.id, msg.seq).encode()
        return [PanaReply(session.origin, session.pac_answer)] + \
            self._relay(session, msg.eap_payload, now)

    def _start_answer(self, session: Session, msg: PanaMessage, data: bytes, now: float) -> list:
        if not msg.has(pana.FLAG_S):
            return self._drop("unexpected", session.origin, "the answer to the first PAR "
                              "has no S flag")
        prf, integrity = msg.prf_algorithms, msg.integrity_algorithms
        if len(prf) != 1 or prf[0] not in PRF_OFFER or len(integrity) != 1 \
                or integrity[0] not in INTEGRITY_OFFER:
            return self._drop("algorithms", session.origin, "the PAN[S] must choose one "
                              "offered PRF and one integrity algorithm")
        identity = identity_of(msg.eap_payload)
        if identity is None:
            return self._drop("no_identity", session.origin, "the PAN[S] carries no "
                              "EAP-Response/Identity")
        session.prf, session.integrity, session.i_pan = prf[0], integrity[0], data
        session.identity = identity
        session.retransmission = None
        self._starting.pop((session.source, session.port, session.network), None)
        wait = max(self.identity_limit.retry_after(identity, now),
                   self.source_limit.retry_after(session.source, now))
        if wait > 0:
            self.counters["pana_rate_limited"] += 1
            return self._finish(session, pana.PANA_AUTHORIZATION_REJECTED, None, now,
                                why=f"rate-limited for {wait:.0f} s more")
        return self._relay(session, msg.eap_payload, now)

    def _relay(self, session: Session, eap_response: bytes, now: float) -> list:
        """The PaC's EAP response to the domain's RADIUS server."""
        session.phase = AAA_WAIT
        self.counters["pana_eap_relayed"] += 1
        sends, refused = self.aaa.request(
            session.domain, session.id, eap_response, user_name=session.identity,
            state=session.radius_state, calling_station=calling_station(session),
            called_station=session.network, now=now)
        if refused:
            self.counters["pana_aaa_busy"] += 1
            return self._finish(session, pana.PANA_AUTHORIZATION_REJECTED, None, now,
                                why=f"the RADIUS client refused the request ({refused})")
        return sends

    # -- RADIUS answers ----------------------------------------------------------

    def aaa_answer(self, session_id: int, answer, now: float) -> list:
        """The domain's answer to the session's last relayed response
        (mpa_sdn.radius.RadiusAnswer), or None when no server answered."""
        session = self.sessions.get(session_id)
        if session is None or session.phase != AAA_WAIT:
            self.counters["pana_aaa_answer_late"] += 1
            return []
        if answer is None:
            self.counters["pana_aaa_unreachable"] += 1
            return self._finish(session, pana.PANA_AUTHORIZATION_REJECTED, None, now,
                                why="no RADIUS server of the domain answered")
        if answer.kind == "challenge":
            request = answer.eap
            if eap_code(request) != eap.REQUEST:
                self.counters["pana_aaa_bad_challenge"] += 1
                return self._finish(session, pana.PANA_AUTHORIZATION_REJECTED, None, now,
                                    why="the Access-Challenge holds no EAP-Request")
            session.radius_state = answer.state
            session.eap_id = request[1]
            session.phase = EAP_RUN
            avps = [pana.eap_payload(request)]
            if session.pac_nonce is None:
                avps.insert(0, pana.nonce(session.paa_nonce))
            session.paa_seq = pana.next_seq(session.paa_seq)
            data = PanaMessage(pana.AUTH, pana.FLAG_R | session.flags, session.id,
                               session.paa_seq, avps).encode()
            return self._send_request(session, data, now)
        if answer.kind == "accept":
            if answer.msk is None or len(answer.msk) < keys.MIN_MSK_BYTES \
                    or session.pac_nonce is None:
                self.counters["pana_aaa_no_key"] += 1
                return self._finish(session, pana.PANA_AUTHORIZATION_REJECTED, None, now,
                                    why="the Access-Accept brings no MSK (or the PaC no Nonce)")
            if answer.user_name is not None and answer.user_name != session.identity:
                # The server authenticated someone else than the identity
                # the MN gave in the clear (an EAP-TTLS outer identity): the
                # SA would be the wrong MN's.
                self.counters["pana_aaa_identity_mismatch"] += 1
                return self._finish(session, pana.PANA_AUTHORIZATION_REJECTED, None, now,
                                    why="the Access-Accept names another User-Name")
            session.msk = answer.msk
            lifetime = self.settings.sa_lifetime_s
            if answer.session_timeout:
                lifetime = min(lifetime, answer.session_timeout)
            session.lifetime = lifetime
            return self._finish(session, pana.PANA_SUCCESS, answer.eap, now)
        # Reject: the user's failure, counted against identity and source.
        self.counters["pana_authentication_rejected"] += 1
        self.identity_limit.failed(session.identity, now)
        self.source_limit.failed(session.source, now)
        return self._finish(session, pana.PANA_AUTHENTICATION_REJECTED, answer.eap, now,
                            why="the RADIUS server rejected it")

    def _finish(self, session: Session, result: int, eap_packet: bytes | None, now: float,
                why: str = "") -> list:
        """The final PAR: success with the key, or a rejection with EAP-Failure."""
        session.phase = COMPLETING
        session.result = result
        code = eap.SUCCESS if result == pana.PANA_SUCCESS else eap.FAILURE
        if eap_code(eap_packet) != code:
            eap_packet = EapPacket(code, session.eap_id).encode()
        session.paa_seq = pana.next_seq(session.paa_seq)
        avps = [pana.result_code(result), pana.eap_payload(eap_packet)]
        if session.pac_nonce is None:
            avps.insert(0, pana.nonce(session.paa_nonce))
        flags = pana.FLAG_R | pana.FLAG_C | session.flags
        if result == pana.PANA_SUCCESS:
            session.key_id = int.from_bytes(self.entropy(4), "big") >> 1   # an Integer32
            session.auth_key = pana_security.pana_auth_key(
                session.msk, session.i_par, session.i_pan, session.pac_nonce,
                session.paa_nonce, session.key_id, session.prf, integrity=session.integrity)
            avps += [pana.key_id(session.key_id), pana.session_lifetime(session.lifetime)]
            message = PanaMessage(pana.AUTH, flags, session.id, session.paa_seq, avps)
            data = pana_security.sign(message, session.auth_key, session.integrity)
            # The MPA-SA exists from now: the MN uses it as soon as it has
            # checked this PAR's AUTH, and its next message (over REST, say)
            # may come before its PAN[C] (a datagram through the switches).
            # Only the MSK's holders can use it, whatever becomes of the PAN.
            self._establish(session, now)
        else:
            LOG.info("PANA session %08x identity=%s network=%s from %s rejected: %s",
                     session.id, session.identity, session.network, session.source, why)
            data = PanaMessage(pana.AUTH, flags, session.id, session.paa_seq, avps).encode()
        return self._send_request(session, data, now)

    def _final_answer(self, session: Session, msg: PanaMessage, now: float) -> list:
        if not msg.has(pana.FLAG_C):
            return self._drop("unexpected", session.origin, "the answer to the final PAR has "
                              "no C flag")
        if session.result != pana.PANA_SUCCESS:
            self._close(session, "rejected", now)
            return []
        if msg.key_id != session.key_id or msg.auth is None:
            # verify_auth ran already when a Key-Id was there: this one has none.
            return self._drop("bad_auth", session.origin, "the final PAN has no AUTH or "
                              "another Key-Id")
        self._close(session, "established", now)
        return []

    def _establish(self, session: Session, now: float) -> None:
        """The MPA-SA of a session the domain's AAA server accepted."""
        binding = keys.SaBinding(session.identity, session.network, session.id,
                                 session.key_id, session.pac_nonce, session.paa_nonce)
        sa_id, sa_keys = binding.sa(session.msk)
        pana_state = {"session": session.id, "auth_key": session.auth_key.hex(),
                      "integrity": session.integrity, "key_id": session.key_id,
                      "pac_seq": None}
        self.establish(sa_id=sa_id, identity=session.identity, domain=session.domain,
                       network=session.network, sa_keys=sa_keys, lifetime=session.lifetime,
                       source=session.source, seen_mac=session.seen_mac,
                       pana_state=pana_state, now=now)

    # -- requests, retransmissions and expiry ------------------------------------

    def _send_request(self, session: Session, data: bytes, now: float) -> list:
        session.last_par = data
        session.retransmission = pana_timers.Retransmission(pana_timers.REQ_TIMERS, now,
                                                            Uniform(self.rand))
        self._schedule(session)
        return [PanaReply(session.origin, data)]

    def _schedule(self, session: Session) -> None:
        self._generation += 1
        session.scheduled = self._generation
        timer = session.retransmission
        retransmit = timer.next_due(0.0) if timer is not None else None
        due = session.expires if retransmit is None else min(session.expires, retransmit)
        heapq.heappush(self._due, (due, session.id, self._generation))

    def next_due(self) -> float | None:
        return self._due[0][0] if self._due else None

    def tick(self, now: float) -> list:
        out = []
        due = self._due
        while due and due[0][0] <= now:
            _, sid, generation = heapq.heappop(due)
            session = self.sessions.get(sid)
            if session is None or session.scheduled != generation:
                continue   # closed, or scheduled again since
            if session.expires <= now:
                self.counters["pana_session_expired"] += 1
                LOG.info("PANA session %08x identity=%s network=%s expired in phase %s",
                         session.id, session.identity, session.network, session.phase)
                self._close(session, "expired", now)
                continue
            timer = session.retransmission
            if timer is None:
                # Nothing outstanding (the session waits for RADIUS): its
                # lifetime still ends it.
                self._schedule(session)
                continue
            verdict = timer.poll(now)
            if verdict == pana_timers.EXPIRED:
                self.counters["pana_retransmissions_exhausted"] += 1
                LOG.info("PANA session %08x identity=%s network=%s: no answer to %d "
                         "retransmissions; closed", session.id, session.identity,
                         session.network, timer.retransmissions)
                self._close(session, "unanswered", now)
                continue
            if verdict == pana_timers.RETRANSMIT:
                self.counters["pana_retransmitted"] += 1
                out.append(PanaReply(session.origin, session.last_par))
            self._schedule(session)
        return out

    def _expire(self, now: float) -> None:
        for session in [s for s in self.sessions.values() if s.expires <= now]:
            self.counters["pana_session_expired"] += 1
            self._close(session, "expired", now)

    def _close(self, session: Session, how: str, now: float) -> None:
        if self.sessions.pop(session.id, None) is None:
            return
        self.counters[f"pana_sessions_{how}"] += 1
        self.ended(session, how, now)
        key = (session.source, session.port, session.network)
        if self._starting.get(key) == session.id:
            del self._starting[key]
        left = self._per_source.get(session.source, 1) - 1
        if left > 0:
            self._per_source[session.source] = left
        else:
            self._per_source.pop(session.source, None)
        self.aaa.forget(session.id)

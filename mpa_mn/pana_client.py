"""The MN's PANA client (PaC, RFC 5191) with RFC 5873's pre-authentication.

:class:`PanaClient` is one PANA session's PaC, pure: bytes in, bytes out.
It sends the PANA-Client-Initiation, answers every PANA-Auth-Request of the
AA (PAA) with a PANA-Auth-Answer carrying the EAP peer's response
(:mod:`mpa_mn.eap_peer`), and at the final request checks the AA's AUTH
under PANA_AUTH_KEY before it answers with its own: only then is the AA
authenticated too (it holds the MSK the domain's AAA server gave it).  The E
flag is set in every message when the MN pre-authenticates with a network it
is not attached to (RFC 5873).

:func:`run` carries one session over UDP port 716: the PCI is sent again on
RFC 5191 §9's timers until the first request comes; after that the PAA
retransmits, and a retransmitted request gets the same answer again.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from dataclasses import dataclass, field
from typing import Callable

from mpa_protocol import eap, keys, pana, pana_timers
from mpa_protocol.pana import PanaError, PanaMessage
from mpa_protocol.pana_security import pana_auth_key, sign, verify_auth
from mpa_mn.channels import udp_socket
from mpa_mn.eap_peer import EapPeer
from mpa_mn.protocol import ProtocolError

LOG = logging.getLogger("mpa_mn.pana")

# What the PaC picks of the PAA's offers, best first.
PRF_CHOICES = (pana.PRF_HMAC_SHA2_256, pana.PRF_HMAC_SHA1)
INTEGRITY_CHOICES = (pana.AUTH_HMAC_SHA2_256_128, pana.AUTH_HMAC_SHA1_160)
NONCE_BYTES = 20
MAX_MESSAGE_BYTES = 65535
# How long the MN waits for the AA's next message (mpa-mn --timeout): the
# first PAR after its PCI, each PAR after its PAN (the AA may wait that long
# on its RADIUS server, which fails over after mpa.radius_max_duration_s).
ANSWER_TIMEOUT_S = 15.0
RESULTS = {pana.PANA_AUTHENTICATION_REJECTED: "authentication-rejected",
           pana.PANA_AUTHORIZATION_REJECTED: "authorization-rejected"}


@dataclass
class Established:
    """What a successful session leaves: the MPA-SA's name and keys follow
    (:meth:`sa`), and PANA_AUTH_KEY keys the session's Ping and Termination."""

    session_id: int
    key_id: int
    auth_key: bytes = field(repr=False)
    integrity: int
    prf: int
    lifetime: int
    pac_nonce: bytes = field(repr=False)
    paa_nonce: bytes = field(repr=False)
    msk: bytes = field(repr=False)

    def record(self, aa_address: str, first_seq: int) -> dict:
        """What the MN's state keeps of the session, for its Ping and
        Termination: ``seq`` is the number its next request of its own takes
        (RFC 5191 §4.1: a random start)."""
        return {"session": self.session_id, "aa": aa_address, "key_id": self.key_id,
                "auth_key": self.auth_key.hex(), "integrity": self.integrity,
                "seq": first_seq}

    def sa(self, identity: str, network: str) -> tuple[str, keys.SaKeys]:
        return keys.SaBinding(identity, network, self.session_id, self.key_id,
                              self.pac_nonce, self.paa_nonce).sa(self.msk)


class PanaClient:
    """One PANA session's PaC.  ``pre``: the MN is not attached to the AA's
    network (RFC 5873's E flag)."""

    def __init__(self, peer: EapPeer, pre: bool, entropy: Callable[[int], bytes] = os.urandom):
        self.peer = peer
        self.flags = pana.FLAG_E if pre else 0
        self.pac_nonce = entropy(NONCE_BYTES)
        self.session_id: int | None = None
        self.seq: int | None = None          # the PAA's last request's number
        self.last_answer: bytes | None = None
        self.i_par = self.i_pan = b""
        self.prf = self.integrity = None
        self.paa_nonce: bytes | None = None
        self.nonce_sent = False
        self.established: Established | None = None
        self.result: str | None = None       # None, "success", or why it failed
        self.counters: dict[str, int] = {}

    @property
    def done(self) -> bool:
        return self.result is not None

    def initiation(self) -> bytes:
        return PanaMessage(pana.PCI, self.flags, 0, 0).encode()

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def receive(self, data: bytes) -> bytes | None:
        """A message from the PAA: the answer to send (None: nothing).
        Raises ProtocolError when the session cannot go on."""
        try:
            msg = PanaMessage.decode(data, MAX_MESSAGE_BYTES)
        except PanaError as exc:
            self._count(f"dropped_malformed_{exc.reason}")
            return None
        if msg.msg_type != pana.AUTH or not msg.is_request or \
                msg.flags & pana.FLAG_E != self.flags:
            self._count("dropped_unexpected")
            return None
        if self.session_id is not None and msg.session_id != self.session_id:
            self._count("dropped_other_session")
            return None
        if self.seq is not None and msg.seq == self.seq:
            self._count("retransmitted_request")     # our answer was lost
            return self.last_answer
        if self.done:
            self._count("dropped_after_end")
            return None
        if self.session_id is None:
            if not msg.has(pana.FLAG_S):
                self._count("dropped_unexpected")
                return None
            return self._start(msg, data)
        if msg.seq != (self.seq + 1) & 0xFFFFFFFF or msg.has(pana.FLAG_S):
            self._count("dropped_out_of_order")
            return None
        if msg.nonce is not None and self.paa_nonce is None:
            self.paa_nonce = msg.nonce
        if msg.has(pana.FLAG_C):
            return self._complete(msg, data)
        if msg.eap_payload is None:
            self._count("dropped_no_eap")
            return None
        return self._answer(msg, [self._eap(msg.eap_payload)])

    def _start(self, msg: PanaMessage, data: bytes) -> bytes:
        prf = next((p for p in PRF_CHOICES if p in msg.prf_algorithms), None)
        integrity = next((i for i in INTEGRITY_CHOICES if i in msg.integrity_algorithms), None)
        if prf is None or integrity is None:
            self.result = "no-common-algorithm"
            raise ProtocolError("pana-algorithms", "the AA offers no PRF or integrity "
                                "algorithm this MN knows")
        if msg.eap_payload is None:
            raise ProtocolError("pana-unexpected", "the AA's first request carries no EAP")
        self.session_id, self.prf, self.integrity, self.i_par = msg.session_id, prf, integrity, data
        answer = self._answer(msg, [pana.prf_algorithm(prf), pana.integrity_algorithm(integrity),
                                    self._eap(msg.eap_payload)], pana.FLAG_S)
        self.i_pan = answer
        return answer

    def _eap(self, payload: bytes) -> pana.Avp:
        try:
            response = self.peer.handle(payload)
        except eap.EapError as exc:
            self.result = f"eap-{exc.reason}"
            raise ProtocolError("eap-failed", f"EAP failed: {exc.message}") from None
        if response is None:
            raise ProtocolError("pana-unexpected", "the AA's request holds no EAP request")
        return pana.eap_payload(response)

    def _answer(self, msg: PanaMessage, avps: list, flags: int = 0,
                auth_key: bytes | None = None) -> bytes:
        if msg.session_id == self.session_id and not msg.has(pana.FLAG_S) \
                and not self.nonce_sent:
            avps = [pana.nonce(self.pac_nonce)] + avps
            self.nonce_sent = True
        answer = PanaMessage(pana.AUTH, flags | self.flags, msg.session_id, msg.seq, avps)
        data = (sign(answer, auth_key, self.integrity) if auth_key is not None
                else answer.encode())
        self.seq, self.last_answer = msg.seq, data
        return data

    def _complete(self, msg: PanaMessage, data: bytes) -> bytes:
        result = msg.result_code
        if msg.eap_payload is not None:
            try:
                self.peer.handle(msg.eap_payload)
            except eap.EapError as exc:
                self._count(f"eap_{exc.reason}")
        if result != pana.PANA_SUCCESS:
            self.result = RESULTS.get(result, f"result-{result}")
            return self._answer(msg, [], pana.FLAG_C)
        if self.peer.result != "success" or self.peer.msk is None:
            self.result = f"eap-{self.peer.reason or 'no-success'}"
            raise ProtocolError("eap-failed", "the AA says success, but EAP did not succeed "
                                f"here ({self.peer.reason or 'no EAP-Success'})")
        if self.paa_nonce is None or msg.key_id is None or msg.auth is None:
            self.result = "pana-no-key"
            raise ProtocolError("pana-unexpected", "the final request has no Nonce, Key-Id "
                                "or AUTH")
        auth_key = pana_auth_key(self.peer.msk, self.i_par, self.i_pan, self.pac_nonce,
                                 self.paa_nonce, msg.key_id, self.prf, integrity=self.integrity)
        if not verify_auth(data, auth_key, self.integrity):
            # Not the AA the AAA server authenticated us to: no answer, no SA.
            self.result = "aa-not-authenticated"
            raise ProtocolError("aa-not-authenticated", "the AA's AUTH is wrong: it does not "
                                "hold the MSK")
        self.established = Established(self.session_id, msg.key_id, auth_key, self.integrity,
                                       self.prf, msg.session_lifetime or 0, self.pac_nonce,
                                       self.paa_nonce, self.peer.msk)
        self.result = "success"
        return self._answer(msg, [pana.key_id(msg.key_id)], pana.FLAG_C, auth_key)


def run(client: PanaClient, address: str, port: int = pana.PANA_PORT,
        local_address: str | None = None, timeout: float = ANSWER_TIMEOUT_S,
        socket_factory: Callable = udp_socket, clock: Callable[[], float] = time.monotonic,
        rng=None) -> Established:
    """One PANA session with the AA at ``address``; the session's result, or
    ProtocolError (``no-answer`` when the AA's next message did not come
    within ``timeout``)."""
    sock = _open(socket_factory, local_address)
    try:
        deadline = clock() + timeout
        pci = client.initiation()
        timer = pana_timers.Retransmission(pana_timers.PCI_TIMERS, clock(), rng)
        _send(sock, pci, address, port)
        while not client.done:
            now = clock()
            if now >= deadline:
                client._count("no_answer")
                raise ProtocolError("no-answer", f"the AA at {address}:{port} sent nothing "
                                    f"more within {timeout:g} s of PANA")
            wait = deadline - now
            if client.session_id is None:
                # The PCI goes again until the first request comes; after
                # that, retransmitting is the PAA's part.
                if timer.poll(now) == pana_timers.RETRANSMIT:
                    client._count("pci_retransmitted")
                    _send(sock, pci, address, port)
                wait = min(wait, timer.next_due(now) - now)
            data = _receive(sock, address, port, wait)
            if data is not None:
                answer = client.receive(data)
                if answer is not None:
                    _send(sock, answer, address, port)
                    deadline = clock() + timeout    # the AA's next message, from now
    finally:
        sock.close()
    if client.result != "success":
        raise ProtocolError(client.result, f"pre-authentication refused by the AA at "
                            f"{address} ({client.result})")
    return client.established


def _open(socket_factory: Callable, local_address: str | None):
    try:
        return socket_factory(local_address)
    except OSError as exc:
        raise ProtocolError("transport", f"cannot send from {local_address}: "
                            f"{exc.strerror or exc}") from None


def _send(sock, data: bytes, address: str, port: int) -> None:
    try:
        sock.sendto(data, (address, port))
    except OSError as exc:
        raise ProtocolError("transport", f"cannot send to {address}:{port}: "
                            f"{exc.strerror or exc}") from None


def _receive(sock, address: str, port: int, wait: float) -> bytes | None:
    """One datagram from the AA within ``wait`` seconds (others are ignored)."""
    sock.settimeout(max(wait, 0.001))
    try:
        data, source = sock.recvfrom(MAX_MESSAGE_BYTES + 1)
    except (socket.timeout, BlockingIOError, InterruptedError):
        return None
    except OSError:
        return None   # an ICMP error on the socket: the PCI timer sends again
    if tuple(source[:2]) != (address, port):
        return None
    return data


# -- the PaC's own requests on an established session (RFC 5191 §4.4, §4.5) --------

PING, TERMINATION = "ping", "termination"


def session_request(record: dict, kind: str, seq: int) -> bytes:
    """A PNR[P] (ping) or a PTR (termination, cause LOGOUT) under PANA_AUTH_KEY."""
    if kind == PING:
        message = PanaMessage(pana.NOTIFICATION, pana.FLAG_R | pana.FLAG_P, record["session"],
                              seq)
    else:
        message = PanaMessage(pana.TERMINATION, pana.FLAG_R, record["session"], seq,
                              [pana.termination_cause(pana.TERMINATION_LOGOUT)])
    return sign(message, bytes.fromhex(record["auth_key"]), record["integrity"])


def session_answered(record: dict, request: bytes, data: bytes) -> bool:
    """Whether ``data`` is the AA's answer to ``request``, with a valid AUTH."""
    try:
        answer = PanaMessage.decode(data, MAX_MESSAGE_BYTES)
    except PanaError:
        return False
    return (pana.answers(answer, PanaMessage.decode(request, MAX_MESSAGE_BYTES))
            and verify_auth(data, bytes.fromhex(record["auth_key"]), record["integrity"]))


def request_on_session(record: dict, kind: str, seq: int, port: int = pana.PANA_PORT,
                       local_address: str | None = None, timeout: float = ANSWER_TIMEOUT_S,
                       socket_factory: Callable = udp_socket,
                       clock: Callable[[], float] = time.monotonic, rng=None) -> None:
    """Send a Ping or Termination to the AA until its authenticated answer
    comes, on RFC 5191 §9's REQ timers; ProtocolError ``no-answer`` else."""
    request = session_request(record, kind, seq)
    address = record["aa"]
    sock = _open(socket_factory, local_address)
    try:
        deadline = clock() + timeout
        timer = pana_timers.Retransmission(pana_timers.REQ_TIMERS, clock(), rng)
        _send(sock, request, address, port)
        while clock() < deadline:
            now = clock()
            verdict = timer.poll(now)
            if verdict == pana_timers.EXPIRED:
                break
            if verdict == pana_timers.RETRANSMIT:
                _send(sock, request, address, port)
            data = _receive(sock, address, port, min(deadline, timer.next_due(now)) - now)
            if data is not None and session_answered(record, request, data):
                return
    finally:
        sock.close()
    raise ProtocolError("no-answer", f"the AA at {address}:{port} did not answer the PANA "
                        f"{kind}")

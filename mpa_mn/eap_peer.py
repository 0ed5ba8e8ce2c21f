"""The MN's EAP peer (RFC 3748) with EAP-TLS (RFC 5216) and EAP-TTLS/PAP (RFC 5281).

The peer is pure apart from TLS itself: ``handle`` takes an EAP Request,
Success or Failure as bytes and returns the Response to send, or None. It
never sends, sleeps or reads a clock; PANA carries its packets and decides
about retransmission.

TLS runs over pyOpenSSL with memory BIOs (no sockets), TLS 1.2 only: TLS 1.3
needs RFC 9190's key derivation and its end-of-handshake signal, which this
peer does not implement, so it never offers 1.3.

Errors, in two kinds:
- a packet that is not EAP, or comes after the conversation ended, raises
  ``EapError`` and changes nothing (RFC 3748 §7: discard it);
- a method that fails (bad framing inside EAP-TLS, a TLS alert, a server
  certificate not trusted, a bound hit) ends the conversation: ``result``
  becomes "failure" with ``reason``, and ``handle`` either returns the TLS
  alert to send (RFC 5216 §2.1.3) or raises ``EapError``.
Nothing secret (keys, password, TLS payloads) is in a repr, log line or error.
"""

from __future__ import annotations

import os
import weakref
from collections import Counter
from dataclasses import dataclass, field

from cryptography import x509
from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from mpa_protocol import eap
from mpa_protocol.eap import EapError, EapPacket

DEFAULT_MAX_ROUND_TRIPS = 50
KEYING_MATERIAL = 128     # MSK (64) || EMSK (64)

# The X.509 verification errors a peer is likely to meet, by OpenSSL's number.
_X509_ERRORS = {2: "unable to get issuer certificate", 9: "certificate is not yet valid",
                10: "certificate has expired", 18: "self-signed certificate",
                19: "self-signed certificate in chain",
                20: "unable to get local issuer certificate",
                21: "unable to verify the first certificate", 23: "certificate revoked"}


class TlsFailed(EapError):
    """The TLS handshake failed; ``output`` is what TLS has to send (an alert)."""

    def __init__(self, reason: str, message: str, output: bytes = b""):
        super().__init__(reason, message)
        self.output = output


def tls12_context(*, certificate=None, private_key=None, ca_certificates=None,
                  server: bool = False) -> SSL.Context:
    """A TLS 1.2-only context without session tickets (EAP-TLS resumes by
    session ID if at all, and a ticket only makes the flight longer)."""
    context = SSL.Context(SSL.TLS_SERVER_METHOD if server else SSL.TLS_CLIENT_METHOD)
    context.set_min_proto_version(SSL.TLS1_2_VERSION)
    context.set_max_proto_version(SSL.TLS1_2_VERSION)
    context.set_options(SSL.OP_NO_TICKET)
    if certificate is not None:
        context.use_certificate_chain_file(os.fspath(certificate))
        context.use_privatekey_file(os.fspath(private_key))
        context.check_privatekey()
    if ca_certificates is not None:
        context.load_verify_locations(os.fspath(ca_certificates))
    return context


def names_of(certificate: x509.Certificate) -> list[str]:
    """The DNS names a certificate is for: its SAN's, else its common name."""
    try:
        san = certificate.extensions.get_extension_for_class(x509.SubjectAlternativeName)
        return san.value.get_values_for_type(x509.DNSName)
    except x509.ExtensionNotFound:
        return [a.value for a in certificate.subject.get_attributes_for_oid(NameOID.COMMON_NAME)]


class MemoryTls:
    """One TLS connection over memory BIOs: bytes in, bytes out."""

    def __init__(self, context: SSL.Context, *, server: bool):
        self.connection = SSL.Connection(context, None)
        if server:
            self.connection.set_accept_state()
        else:
            self.connection.set_connect_state()
        self.handshake_done = False
        # Set by a verify callback that refused the peer's certificate.
        self.refusal: tuple[str, str] | None = None

    def _drain(self) -> bytes:
        out = []
        while True:
            try:
                out.append(self.connection.bio_read(65536))
            except SSL.WantReadError:
                return b"".join(out)

    def feed(self, data: bytes) -> tuple[bytes, bytes]:
        """Give TLS the records in ``data``: (records to send, application
        data received). Raises ``TlsFailed`` with the alert to send."""
        if data:
            self.connection.bio_write(data)
        received = []
        try:
            if not self.handshake_done:
                self.connection.do_handshake()
                self.handshake_done = True
            while True:
                received.append(self.connection.recv(65536))
        except (SSL.WantReadError, SSL.ZeroReturnError):
            pass
        except SSL.Error as error:
            raise self._failure(error) from None
        return self._drain(), b"".join(received)

    def _failure(self, error: SSL.Error) -> TlsFailed:
        output = self._drain()
        if self.refusal is not None:
            return TlsFailed(*self.refusal, output)
        text = "; ".join(str(part[2]) for part in error.args[0]
                         if isinstance(part, tuple) and len(part) == 3) or "TLS error"
        reason = "tls_alert_received" if "alert" in text else "tls_error"
        return TlsFailed(reason, text, output)

    def write(self, data: bytes) -> bytes:
        """The records carrying application ``data``."""
        self.connection.sendall(data)
        return self._drain()

    def keying_material(self, label: bytes) -> bytes:
        """TLS-PRF-128(master secret, label, client.random || server.random):
        RFC 5705's exporter without context is that PRF in TLS 1.2."""
        return self.connection.export_keying_material(label, KEYING_MATERIAL)


# --- methods: configuration (what the MN is given) --------------------------

@dataclass(frozen=True)
class EapTls:
    """EAP-TLS with the MN's certificate (CN = its NAI) and key (PEM files),
    trusting ``ca_certificates`` (the domain's CA) for the server, whose
    certificate must name ``server_name`` when given."""
    certificate: str | os.PathLike
    private_key: str | os.PathLike = field(repr=False)
    ca_certificates: str | os.PathLike
    server_name: str | None = None
    type = eap.TLS
    label = b"client EAP encryption"        # RFC 5216 §2.3

    def outer_identity(self, identity: str) -> str:
        return identity

    def context(self) -> SSL.Context:
        return tls12_context(certificate=self.certificate, private_key=self.private_key,
                             ca_certificates=self.ca_certificates)

    def phase2(self) -> bytes | None:
        return None


@dataclass(frozen=True)
class EapTtlsPap:
    """EAP-TTLS with PAP inside (RFC 5281 §11.2.5): the server is
    authenticated by TLS, the MN by ``username`` and ``password`` sent in
    the tunnel. ``anonymous_identity`` goes in the clear in place of the
    peer's identity."""
    username: str
    password: str = field(repr=False)
    ca_certificates: str | os.PathLike
    anonymous_identity: str | None = None
    server_name: str | None = None
    type = eap.TTLS
    label = b"ttls keying material"         # RFC 5281 §8

    def outer_identity(self, identity: str) -> str:
        return self.anonymous_identity or identity

    def context(self) -> SSL.Context:
        return tls12_context(ca_certificates=self.ca_certificates)

    def phase2(self) -> bytes | None:
        return eap.pap_avps(self.username, self.password)


# --- the peer ---------------------------------------------------------------

class EapPeer:
    """An EAP peer running one method. See the module's docstring."""

    def __init__(self, identity: str, method: EapTls | EapTtlsPap, *,
                 max_round_trips: int = DEFAULT_MAX_ROUND_TRIPS,
                 fragment_size: int = eap.DEFAULT_FRAGMENT_SIZE,
                 max_message: int = eap.DEFAULT_MAX_MESSAGE,
                 max_fragments: int = eap.DEFAULT_MAX_FRAGMENTS):
        # Checked as an AA checks it, so that a bad one fails here, not there.
        eap.identity_of(EapPacket(eap.RESPONSE, 0, eap.IDENTITY,
                                  method.outer_identity(identity).encode("utf-8")))
        if max_round_trips < 1:
            raise ValueError("max_round_trips must be at least 1")
        self.identity = identity
        self.method = method
        self.max_round_trips = max_round_trips
        self.result: str | None = None        # None, "success" or "failure"
        self.reason: str | None = None
        self.detail: str | None = None        # the failure in words, for a log line
        self.msk: bytes | None = None
        self.emsk: bytes | None = None
        self.round_trips = 0
        self.counters: Counter[str] = Counter()
        self._link = eap.TlsLink(fragment_size=fragment_size, max_message=max_message,
                                 max_fragments=max_fragments)
        self._tls: MemoryTls | None = None
        self._phase2_sent = False
        self._last: tuple[bytes, bytes | None] | None = None    # request, response

    def __repr__(self) -> str:
        return (f"EapPeer({self.identity!r}, {type(self.method).__name__}, result={self.result}, "
                f"reason={self.reason}, round_trips={self.round_trips})")

    @property
    def method_done(self) -> bool:
        """The method has done its part: TLS is up and, for TTLS, the
        credentials have gone out; a Success is acceptable from now on."""
        if self._tls is None or not self._tls.handshake_done or self._link.sending:
            return False
        return self._phase2_sent or self.method.phase2() is None

    def handle(self, request: bytes) -> bytes | None:
        try:
            packet = eap.decode(request)
        except EapError as error:
            self.counters[f"discarded_{error.reason}"] += 1
            raise
        if packet.code == eap.RESPONSE:
            self.counters["discarded_response"] += 1
            raise EapError("not_request", "a peer gets Requests, Success and Failure")
        if packet.code in (eap.SUCCESS, eap.FAILURE):
            return self._end(packet)
        if self._last is not None and self._last[0] == bytes(request):
            # RFC 3748 §4.1: a retransmitted Request gets the same Response,
            # without processing it again.
            self.counters["duplicate_requests"] += 1
            return self._last[1]
        if self.result is not None:
            self.counters["discarded_after_end"] += 1
            raise EapError("finished", f"a Request after the conversation's {self.result}")
        self.round_trips += 1
        if self.round_trips > self.max_round_trips:
            self._fail("too_many_round_trips", f"more than {self.max_round_trips} Requests")
            raise EapError("too_many_round_trips", f"more than {self.max_round_trips} Requests")
        response = self._respond(packet)
        encoded = response.encode() if response is not None else None
        self._last = (bytes(request), encoded)
        return encoded

    def _end(self, packet: EapPacket) -> None:
        if self.result is not None:
            return None
        if packet.code == eap.FAILURE:
            self._fail("eap_failure", "the server sent EAP-Failure")
        elif not self.method_done:
            # A Success before the method ended proves nothing (RFC 3748 §7.12).
            self._fail("early_success", "EAP-Success before the method ended")
        else:
            keys = self._tls.keying_material(self.method.label)
            self.msk, self.emsk = keys[:64], keys[64:]
            self.result = "success"
            self.counters["success"] += 1
        return None

    def _fail(self, reason: str, message: str) -> None:
        self.result, self.reason, self.detail = "failure", reason, message
        self.msk = self.emsk = None
        self.counters[f"failure_{reason}"] += 1

    def _respond(self, packet: EapPacket) -> EapPacket | None:
        if packet.type == eap.IDENTITY:
            identity = self.method.outer_identity(self.identity)
            return EapPacket(eap.RESPONSE, packet.identifier, eap.IDENTITY,
                             identity.encode("utf-8"))
        if packet.type == eap.NOTIFICATION:
            # RFC 3748 §5.2: acknowledged with an empty Notification.
            return EapPacket(eap.RESPONSE, packet.identifier, eap.NOTIFICATION)
        if packet.type != self.method.type:
            self.counters["naks_sent"] += 1
            return eap.nak(packet.identifier, (self.method.type,))
        try:
            frame = self._method_step(eap.decode_tls(packet))
        except TlsFailed as failure:
            self._fail(failure.reason, failure.message)
            if not failure.output and failure.reason != "tls_alert_received":
                raise
            # RFC 5216 §2.1.3: our alert goes to the server, or an empty
            # Response acknowledges its alert; either way Failure comes next.
            frame = self._link.send(failure.output)
        except EapError as error:
            self._fail(error.reason, error.message)
            raise
        return eap.tls_packet(eap.RESPONSE, packet.identifier, self.method.type, frame)

    def _method_step(self, frame: eap.TlsFrame) -> eap.TlsFrame:
        if self._tls is None:
            if not frame.start:
                raise EapError("tls_no_start", "the method's first Request lacks the Start flag")
            self._tls = MemoryTls(self.method.context(), server=False)
            self._verify_server()
        elif frame.start:
            raise EapError("tls_unexpected_start", "Start in the middle of the method")
        return self._link.answer(frame, self._process)

    def _process(self, message: bytes) -> bytes:
        out, _ = self._tls.feed(message)
        phase2 = self.method.phase2()
        if self._tls.handshake_done and phase2 is not None and not self._phase2_sent:
            out += self._tls.write(phase2)
            self._phase2_sent = True
        return out

    def _verify_server(self) -> None:
        """The server's certificate must chain to our CA and, when a
        server_name is set, name it; a refusal is remembered with its reason."""
        # By a weak reference: the connection holds this callback, and a
        # callback holding the connection back would be a cycle that only
        # the garbage collector frees, with the TLS state behind it.
        tls_of, server_name = weakref.ref(self._tls), self.method.server_name

        def check(connection, certificate, errno, depth, ok):
            tls = tls_of()
            if not ok:
                tls.refusal = ("server_certificate_untrusted",
                               _X509_ERRORS.get(errno, f"X.509 error {errno}"))
                return False
            if depth == 0 and server_name is not None:
                names = names_of(certificate.to_cryptography())
                if server_name.lower() not in (name.lower() for name in names):
                    tls.refusal = ("server_name_mismatch",
                                   f"the server's certificate names {names}, not {server_name}")
                    return False
            return True

        self._tls.connection.set_verify(SSL.VERIFY_PEER, check)

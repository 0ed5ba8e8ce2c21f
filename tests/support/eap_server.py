"""An EAP authenticator with its own EAP-TLS and EAP-TTLS/PAP server, for
unit tests of the AA and of the MN's peer: what FreeRADIUS does in the lab,
in-process and without RADIUS.

It runs the server's side of the same framing the peer uses
(``mpa_protocol.eap.TlsLink``) over pyOpenSSL memory BIOs, checks a client
certificate against the CA, a set of revoked serials and the EAP identity
(CN = NAI), and a user table for PAP; on success it holds the MSK and EMSK
derived as the peer derives them.
"""

from __future__ import annotations

import hmac
import weakref

from cryptography.x509.oid import NameOID
from OpenSSL import SSL

from mpa_mn.eap_peer import MemoryTls, TlsFailed, tls12_context
from mpa_protocol import eap
from mpa_protocol.eap import EapError, EapPacket

LABELS = {eap.TLS: b"client EAP encryption", eap.TTLS: b"ttls keying material"}


class EapServer:
    """The server's side of one conversation.

    ``methods`` in order of preference: the first is proposed after the
    identity, another one the peer asks for by Nak is taken if listed.
    """

    def __init__(self, certificate, private_key, ca_certificates, *,
                 methods: tuple[int, ...] = (eap.TLS,), users: dict[str, str] | None = None,
                 revoked_serials=(), fragment_size: int = eap.DEFAULT_FRAGMENT_SIZE,
                 max_message: int = eap.DEFAULT_MAX_MESSAGE, check_identity: bool = True):
        self._files = (certificate, private_key, ca_certificates)
        self.methods = methods
        self.users = dict(users or {})
        self.revoked_serials = set(revoked_serials)
        self.check_identity = check_identity
        self.identity: str | None = None       # the outer identity, in the clear
        self.user: str | None = None           # who PAP authenticated
        self.method: int | None = None
        self.result: str | None = None
        self.reason: str | None = None
        self.msk: bytes | None = None
        self.emsk: bytes | None = None
        self.link = eap.TlsLink(fragment_size=fragment_size, max_message=max_message)
        self._identifier = 0
        self.tls: MemoryTls | None = None      # the server's side of TLS, once begun
        self._decision: tuple[str, str | None] | None = None

    def start(self) -> bytes:
        """The first Request: Identity."""
        return self._request(eap.IDENTITY, b"")

    def after_identity(self, response: bytes) -> bytes:
        """The first Request after an Identity round someone else ran (the
        NAS asks for the identity; RADIUS gets its Response, RFC 3579 §2.1)."""
        self._identifier = eap.decode(response).identifier
        return self.handle(response)

    def _request(self, eap_type: int, data: bytes) -> bytes:
        self._identifier = (self._identifier + 1) % 256
        return EapPacket(eap.REQUEST, self._identifier, eap_type, data).encode()

    def _end(self, result: str, reason: str | None = None) -> bytes:
        self.result, self.reason = result, reason
        if result == "success":
            keys = self.tls.keying_material(LABELS[self.method])
            self.msk, self.emsk = keys[:64], keys[64:]
        code = eap.SUCCESS if result == "success" else eap.FAILURE
        return EapPacket(code, self._identifier).encode()

    def handle(self, response: bytes) -> bytes:
        """The next Request, or Success or Failure, for the peer's ``response``."""
        if self.result is not None:
            raise EapError("finished", "the conversation has ended")
        packet = eap.decode(response)
        if packet.code != eap.RESPONSE or packet.identifier != self._identifier:
            raise EapError("unexpected", f"{packet!r} does not answer Request {self._identifier}")
        if packet.type == eap.IDENTITY:
            self.identity = eap.identity_of(packet)
            return self._begin(self.methods[0])
        if packet.type == eap.NAK:
            wanted = [t for t in packet.data if t in self.methods and t != self.method]
            if not wanted or self.tls is not None:
                return self._end("failure", "no_common_method")
            return self._begin(wanted[0])
        if packet.type != self.method:
            return self._end("failure", "wrong_method")
        try:
            return self._step(eap.decode_tls(packet))
        except EapError as error:
            return self._end("failure", error.reason)

    def _begin(self, method: int) -> bytes:
        self.method = method
        return self._request(method, eap.TlsFrame(eap.FLAG_S).encode(method))

    def _step(self, frame: eap.TlsFrame) -> bytes:
        if self._decision is not None and not self.link.sending:
            return self._end(*self._decision)
        if self.tls is None:
            self.tls = self._connection()
        try:
            out = self.link.answer(frame, self._process)
        except TlsFailed as failure:
            if not failure.output:
                return self._end("failure", failure.reason)
            self._decision = ("failure", failure.reason)
            out = self.link.send(failure.output)
        if self._decision is not None and not self.link.sending and out.is_ack:
            return self._end(*self._decision)
        return self._request(self.method, out.encode(self.method))

    def _connection(self) -> MemoryTls:
        certificate, private_key, ca = self._files
        tls = MemoryTls(tls12_context(certificate=certificate, private_key=private_key,
                                      ca_certificates=ca, server=True), server=True)
        if self.method == eap.TLS:
            tls.connection.set_verify(SSL.VERIFY_PEER | SSL.VERIFY_FAIL_IF_NO_PEER_CERT,
                                      self._client_check(tls))
        return tls

    def _client_check(self, tls: MemoryTls):
        # Weak references: the connection holds this callback, and one that
        # held the connection back (or this server, which holds it) would be
        # a cycle only the garbage collector frees.
        tls_of, server_of = weakref.ref(tls), weakref.ref(self)

        def check(connection, certificate, errno, depth, ok):
            tls, self = tls_of(), server_of()
            if not ok:
                tls.refusal = ("client_certificate_untrusted", f"X.509 error {errno}")
                return False
            if depth == 0:
                if certificate.get_serial_number() in self.revoked_serials:
                    tls.refusal = ("client_certificate_revoked", "revoked")
                    return False
                names = certificate.to_cryptography().subject.get_attributes_for_oid(
                    NameOID.COMMON_NAME)
                common_name = names[0].value if names else None
                if self.check_identity and common_name != self.identity:
                    tls.refusal = ("client_identity_mismatch",
                                   f"certificate of {common_name}, identity {self.identity}")
                    return False
            return True
        return check

    def _process(self, message: bytes) -> bytes:
        done_before = self.tls.handshake_done
        out, application = self.tls.feed(message)
        if self.method == eap.TLS:
            if done_before and not message:
                self._decision = ("success", None)
        elif application:
            self._decision = self._pap(application)
        return out

    def _pap(self, data: bytes) -> tuple[str, str | None]:
        avps = {avp.code: avp for avp in eap.decode_avps(data)}
        if eap.AVP_USER_NAME not in avps or eap.AVP_USER_PASSWORD not in avps:
            return ("failure", "pap_missing_avp")
        username = avps[eap.AVP_USER_NAME].data.decode("utf-8", "replace")
        password = avps[eap.AVP_USER_PASSWORD].data.rstrip(b"\0")
        known = self.users.get(username)
        if known is None:
            return ("failure", "pap_unknown_user")
        if not hmac.compare_digest(known.encode("utf-8"), password):
            return ("failure", "pap_wrong_password")
        self.user = username
        return ("success", None)


def converse(peer, server: EapServer, *, limit: int = 200):
    """Run ``peer`` against ``server`` to the end: (requests the peer got,
    responses it sent). A peer error propagates."""
    requests, responses = [], []
    request = server.start()
    for _ in range(limit):
        requests.append(request)
        response = peer.handle(request)
        if response is None:
            return requests, responses
        responses.append(response)
        request = server.handle(response)
    raise AssertionError("the conversation did not end")

"""Each domain's AAA server for unit tests: a RADIUS server in-process that
runs EAP-TLS and EAP-TTLS/PAP (support.eap_server) behind the real RADIUS
framing, so the AA's PANA agent and RADIUS client, and the MN's PaC and EAP
peer, run as they do against FreeRADIUS in the lab.

One PKI per domain (made once per test run, in a temporary directory): a CA,
the server's certificate and a client certificate per MN identity; each
domain's users' passwords for TTLS/PAP.
"""

from __future__ import annotations

import atexit
import functools
import hashlib
import hmac
import os
import shutil
import struct
import tempfile
from pathlib import Path

from mpa_mn.credentials import EAP_TLS, EAP_TTLS_PAP, DomainCredentials, MnCredentials
from mpa_mn.pana_client import PanaClient
from mpa_mn.eap_peer import EapPeer
from mpa_protocol import eap
from mpa_sdn.pana_agent import PanaReply
from mpa_sdn.radius_client import Datagram, RadiusServer
from support.eap_server import EapServer
from support.pki import Pki
from support.radius_answers import answer, attribute, attributes, encrypt_mppe

SECRET = b"unit-test-radius-shared-secret"
DOMAINS = ("domain-a", "domain-b")
IDENTITIES = ("mn1@domain-a", "mn2@domain-a", "eve@domain-b")
PASSWORD = "correct horse battery staple"
ACCESS_REQUEST, ACCESS_ACCEPT, ACCESS_REJECT, ACCESS_CHALLENGE = 1, 2, 3, 11
USER_NAME, EAP_MESSAGE, STATE, MESSAGE_AUTHENTICATOR = 1, 79, 24, 80
MICROSOFT, MPPE_SEND, MPPE_RECV = 311, 16, 17


class DomainPki:
    """A domain's CA, its AAA server's certificate and its subscribers'."""

    def __init__(self, root: Path, domain: str):
        self.domain = domain
        self.pki = Pki(root / domain, name=f"{domain}-ca")
        self.server = self.pki.issue(f"radius.{domain}", dns_names=(f"radius.{domain}",),
                                     stem="server")
        self.clients = {identity: self.pki.issue(identity) for identity in IDENTITIES}
        self.password_file = root / domain / "password"
        self.password_file.write_text(PASSWORD + "\n")
        self.password_file.chmod(0o600)

    def credentials(self, identity: str, method: str = EAP_TLS) -> DomainCredentials:
        if method == EAP_TLS:
            issued = self.clients[identity]
            return DomainCredentials(identity, EAP_TLS, self.pki.ca, certificate=issued.cert,
                                     private_key=issued.key,
                                     server_name=f"radius.{self.domain}")
        return DomainCredentials(identity, EAP_TTLS_PAP, self.pki.ca,
                                 password_file=str(self.password_file),
                                 server_name=f"radius.{self.domain}")


@functools.cache
def _root() -> Path:
    root = Path(tempfile.mkdtemp(prefix="mpa-test-aaa-"))
    atexit.register(shutil.rmtree, root, True)
    return root


@functools.cache
def domain_pki(domain: str) -> DomainPki:
    """Any domain's PKI, made the first time it is asked for."""
    return DomainPki(_root(), domain)


def pkis() -> dict[str, DomainPki]:
    return {domain: domain_pki(domain) for domain in DOMAINS}


def mn_credentials(identity: str = "mn1@domain-a", method: str = EAP_TLS,
                   domains=DOMAINS) -> MnCredentials:
    """An MN subscribing to ``domains`` under ``identity``, one certificate each."""
    return MnCredentials({d: pkis()[d].credentials(identity, method) for d in domains})


def peer(domain: str, identity: str = "mn1@domain-a", method: str = EAP_TLS) -> EapPeer:
    credentials = domain_pki(domain).credentials(identity, method)
    return EapPeer(credentials.identity, credentials.eap_method())


def radius_servers(topology, secret: bytes = SECRET) -> dict[str, list[RadiusServer]]:
    """The servers the topology names, with the test secret instead of their files."""
    return {did: [RadiusServer(s.address, s.port, secret) for s in domain.radius.servers]
            for did, domain in topology.domains.items() if domain.radius is not None}


def with_secret_files(raw: dict, directory: Path) -> dict:
    """A topology's ``raw`` YAML with each domain's RADIUS secret in a file of
    ``directory`` (owner-only), for a controller that reads them: the shipped
    topologies name the lab's, which only a running lab has."""
    for did, domain in raw["domains"].items():
        secret = Path(directory) / f"{did}.secret"
        secret.write_text(f"{did}-unit-test-shared-secret\n", encoding="utf-8")
        secret.chmod(0o600)
        for server in (domain.get("radius") or {}).get("servers", ()):
            server["secret_file"] = str(secret)
    return raw


class FakeRadius:
    """Every domain's RADIUS server: answers an Access-Request by the server
    it was sent to, as FreeRADIUS would (a Message-Authenticator required and
    always sent; EAP-TLS and TTLS/PAP; MS-MPPE keys on Accept).  ``down``:
    servers (address, port) that answer nothing; ``revoked``: identities
    whose certificates are refused; ``answers``: what it sent, for tests;
    ``users``: the identities TTLS/PAP knows (IDENTITIES by default);
    ``keep``: whether its answers and its conversations past their next
    round are kept (for tests; the scale benchmark keeps neither, so what it
    traces per MN is the controller's, not this server's)."""

    def __init__(self, topology, secret: bytes = SECRET, methods=(eap.TLS, eap.TTLS),
                 users=IDENTITIES, keep: bool = True):
        self.secret = secret
        self.keep = keep
        self.methods = methods
        self.users = {identity: PASSWORD for identity in users}
        self.domain_of = {(s.address, s.port): did for did, d in topology.domains.items()
                          if d.radius is not None for s in d.radius.servers}
        self.down: set[tuple[str, int]] = set()
        self.revoked: set[str] = set()
        # EAP identity -> the User-Name its Access-Accept names (none by default,
        # as a server that does not say whom it authenticated).
        self.user_names: dict[str, str] = {}
        self.conversations: dict[bytes, EapServer] = {}
        self.requests = 0
        self.answers: list[bytes] = []

    def handle(self, datagram: Datagram) -> bytes | None:
        server = (datagram.address, datagram.port)
        domain = self.domain_of.get(server)
        if domain is None or server in self.down:
            return None
        data = datagram.data
        self.requests += 1
        code, identifier, length = struct.unpack("!BBH", data[:4])
        authenticator, body = data[4:20], data[20:length]
        attrs = attributes(body)
        given = [v for c, v in attrs if c == MESSAGE_AUTHENTICATOR]
        zeroed = data[:20] + b"".join(
            attribute(c, bytes(16) if c == MESSAGE_AUTHENTICATOR else v) for c, v in attrs)
        if code != ACCESS_REQUEST or len(given) != 1 or not hmac.compare_digest(
                given[0], hmac.new(self.secret, zeroed, hashlib.md5).digest()):
            return None   # FreeRADIUS drops what it cannot authenticate
        response = b"".join(v for c, v in attrs if c == EAP_MESSAGE)
        state = next((v for c, v in attrs if c == STATE), None)
        conversations = self.conversations
        conversation = (conversations.get if self.keep else conversations.pop)(state, None) \
            if state else None
        if conversation is None:
            pki = domain_pki(domain)
            conversation = EapServer(pki.server.cert, pki.server.key, pki.pki.ca,
                                     methods=self.methods, users=self.users,
                                     revoked_serials={pki.clients[i].serial for i in self.revoked})
            request = conversation.after_identity(response)
        else:
            request = conversation.handle(response)
        if conversation.result == "success":
            msk, salt = conversation.msk, 0x80 | os.urandom(1)[0]
            code, reply_attributes = ACCESS_ACCEPT, [
                (EAP_MESSAGE, request),
                ((MICROSOFT, MPPE_RECV), encrypt_mppe(msk[:32], self.secret, authenticator,
                                                      bytes([salt, 1]))),
                ((MICROSOFT, MPPE_SEND), encrypt_mppe(msk[32:64], self.secret, authenticator,
                                                      bytes([salt, 2])))]
            if conversation.identity in self.user_names:
                name = self.user_names[conversation.identity]
                reply_attributes.append((USER_NAME, name.encode()))
        elif conversation.result is not None:
            code, reply_attributes = ACCESS_REJECT, [(EAP_MESSAGE, request)]
        else:
            key = os.urandom(16)
            self.conversations[key] = conversation
            code, reply_attributes = ACCESS_CHALLENGE, [
                *((EAP_MESSAGE, request[i:i + 253]) for i in range(0, len(request), 253)),
                (STATE, key)]
        reply = answer(code, reply_attributes, identifier=identifier, secret=self.secret,
                       request_auth=authenticator)
        if self.keep:
            self.answers.append(reply)
        return reply


def drive(client: PanaClient, to_aa, to_radius, radius: FakeRadius, limit: int = 200) -> None:
    """One PANA session between ``client`` and an AA: ``to_aa(data)`` hands the
    AA a PANA message from the MN, ``to_radius(answer, (address, port))`` a
    RADIUS answer; both return what the AA sent (PanaReply, Datagram, or
    whatever else the rig passes through).  Runs until the client is done."""
    pending = list(to_aa(client.initiation()))
    for _ in range(limit):
        if client.done or not pending:
            return
        out = pending.pop(0)
        if isinstance(out, Datagram):
            answer = radius.handle(out)
            if answer is not None:
                pending += to_radius(answer, (out.address, out.port))
        elif isinstance(out, PanaReply):
            answer = client.receive(out.data)
            if answer is not None:
                pending += to_aa(answer)
    if not client.done:
        raise AssertionError("the PANA session did not end")


def preauthenticate(to_aa, to_radius, radius: FakeRadius, network: str, domain: str,
                    identity: str = "mn1@domain-a", mac: str = "02:00:00:00:01:01",
                    pre: bool = True, method: str = EAP_TLS, entropy=os.urandom):
    """A PANA pre-authentication as mpa_mn does it (see drive); the MN's
    SaState, or ProtocolError as the MN would raise it."""
    from mpa_mn.pana_client import PanaClient
    from mpa_mn.protocol import ProtocolError, SaState
    client = PanaClient(peer(domain, identity, method), pre, entropy=entropy)
    drive(client, to_aa, to_radius, radius)
    if client.result != "success":
        raise ProtocolError(client.result, f"pre-authentication with {network} failed")
    established = client.established
    sa_id, sa_keys = established.sa(identity, network)
    return SaState(network=network, domain=domain, identity=identity, mn_mac=mac, sa=sa_id,
                   keys=sa_keys, lifetime=established.lifetime,
                   pana=established.record("0.0.0.0", 1))


def settled(outputs: list, radius: FakeRadius, to_radius) -> list:
    """What the AA sent once every RADIUS request in ``outputs`` (and in what
    their answers caused) was answered by ``radius``: the rest, in order."""
    out, pending = [], list(outputs)
    while pending:
        item = pending.pop(0)
        if isinstance(item, Datagram):
            answer = radius.handle(item)
            if answer is not None:
                pending = list(to_radius(answer, (item.address, item.port))) + pending
        else:
            out.append(item)
    return out


class PanaSockets:
    """A socket factory for the MN's PANA alone: a datagram to a network's
    gateway reaches ``service.pana`` (an MpaService) from ``mac`` on a link
    of ours, RADIUS is answered by ``radius`` at once, and the replies wait
    in the socket.  Silence is ``clock`` moving on."""

    def __init__(self, service, radius: FakeRadius, topology, clock, mac="02:00:00:00:01:01"):
        self.service, self.radius, self.clock, self.mac = service, radius, clock, mac
        self.networks = {str(n.gateway): n.id for n in topology.networks.values()}

    def __call__(self, local):
        return _PanaSocket(self, local)


class _PanaSocket:
    def __init__(self, world: PanaSockets, local):
        self.world, self.local, self.queue, self.timeout = world, local, [], None

    def sendto(self, data, address):
        from mpa_sdn.service import INBAND, Origin
        world = self.world
        network = world.networks.get(address[0])
        if network is None:
            return
        now = world.clock.now
        replies = settled(world.service.pana(data, Origin(INBAND, self.local, network, world.mac),
                                             40716, now), world.radius,
                          lambda answer, source: world.service.radius(answer, source, now))
        self.queue += [(reply.data, address) for reply in replies]

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        import socket
        if not self.queue:
            self.world.clock.now += self.timeout
            raise socket.timeout()
        return self.queue.pop(0)

    def close(self):
        pass

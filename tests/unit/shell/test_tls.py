"""TLS for the REST API and OpenFlow (apps.tls): versions, client certificates,
the start-up checks of the PEM files, and both servers on the hub.

Handshakes between contexts run in memory (``ssl.MemoryBIO``): no socket,
no thread, no sleep.  The servers run on eventlet in this process, their
clients are green too, and every wait has a deadline.
"""

from __future__ import annotations

import ssl
import warnings
from dataclasses import dataclass
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization

from apps import tls  # first: it readies eventlet for Ryu
from apps.rest_server import RestServer
from mpa_sdn.topology import ControllerSettings

import eventlet
from eventlet.green import socket as green_socket, ssl as green_ssl
from ryu.base import app_manager  # noqa: F401  (ryu.controller.controller needs it first)
from ryu.controller import controller
from ryu.lib import hub
from support.pki import Issued, Pki

TLS_1_1, TLS_1_2, TLS_1_3 = (getattr(ssl.TLSVersion, v) for v in ("TLSv1_1", "TLSv1_2", "TLSv1_3"))
DEADLINE_S = 10


# -- throw-away certificates --------------------------------------------------


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    return Pki(tmp_path_factory.mktemp("pki"))


@pytest.fixture(scope="module")
def server(pki):
    return pki.issue("controller", server=True)


@pytest.fixture(scope="module")
def switch(pki):
    return pki.issue("switch-1")


@pytest.fixture(scope="module")
def stranger(tmp_path_factory):
    """A switch certificate from a CA the controller does not trust."""
    return Pki(tmp_path_factory.mktemp("other"), "other-ca").issue("switch-x")


# -- in-memory handshakes ------------------------------------------------------

@dataclass
class Handshake:
    version: str | None          # negotiated, as the client sees it; None if it failed
    client_error: str | None     # OpenSSL's reason, e.g. TLSV1_ALERT_PROTOCOL_VERSION
    server_error: str | None
    peer: dict | None            # the client certificate as the server saw it


def handshake(server_context: ssl.SSLContext, client_context: ssl.SSLContext) -> Handshake:
    """Both ends of a handshake in memory, turn by turn, until neither moves."""
    to_server, to_client = ssl.MemoryBIO(), ssl.MemoryBIO()
    client_out, server_out = ssl.MemoryBIO(), ssl.MemoryBIO()
    client = client_context.wrap_bio(to_client, client_out, server_hostname="localhost")
    server = server_context.wrap_bio(to_server, server_out, server_side=True)
    ends = {"client": client, "server": server}
    done, errors = set(), {}
    for _ in range(10):  # TLS 1.2 needs 2 round trips, a refusal fewer
        for name, end in ends.items():
            if name in done or name in errors:
                continue
            try:
                end.do_handshake()
                done.add(name)
            except ssl.SSLWantReadError:
                pass
            except ssl.SSLError as exc:
                errors[name] = exc.reason or str(exc)
        moved = client_out.pending or server_out.pending
        to_server.write(client_out.read())
        to_client.write(server_out.read())
        if not moved:
            break
    if "client" in done and "server" not in errors and "server" in done:
        return Handshake(client.version(), None, None, server.getpeercert())
    return Handshake(None, errors.get("client"), errors.get("server"), None)


def client_context(pki, version=None, issued: Issued | None = None) -> ssl.SSLContext:
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=pki.ca)
    if version is not None:
        with warnings.catch_warnings():  # TLS 1.1 is deprecated: that is the point
            warnings.simplefilter("ignore", DeprecationWarning)
            # Security level 0: the client must be able to offer TLS 1.1 at
            # all, so that a refusal is the server's.
            context.set_ciphers("DEFAULT:@SECLEVEL=0")
            context.minimum_version = context.maximum_version = version
    if issued is not None:
        context.load_cert_chain(issued.cert, issued.key)
    return context


# -- versions ---------------------------------------------------------------------

def test_the_context_sets_tls_1_2_as_its_minimum_itself(server, pki):
    assert tls.server_context(server.cert, server.key).minimum_version == TLS_1_2
    openflow = tls.server_context(server.cert, server.key, pki.ca)
    assert openflow.minimum_version == TLS_1_2
    assert openflow.verify_mode == ssl.CERT_REQUIRED


@pytest.mark.parametrize("version, negotiated", [(TLS_1_2, "TLSv1.2"), (TLS_1_3, "TLSv1.3")])
def test_tls_1_2_and_1_3_are_accepted(server, pki, version, negotiated):
    result = handshake(tls.server_context(server.cert, server.key), client_context(pki, version))
    assert result.version == negotiated, result


def test_tls_1_1_is_refused_by_the_server(server, pki):
    old_client = client_context(pki, TLS_1_1)
    # The same client gets TLS 1.1 from a server that allows it: this
    # OpenSSL can speak it, so what follows is our server's refusal.
    lenient = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        lenient.minimum_version = ssl.TLSVersion.TLSv1
    lenient.set_ciphers("DEFAULT:@SECLEVEL=0")
    lenient.load_cert_chain(server.cert, server.key)
    control = handshake(lenient, old_client)
    if control.version != "TLSv1.1":
        pytest.skip(f"this OpenSSL cannot negotiate TLS 1.1 at all ({control})")

    refused = handshake(tls.server_context(server.cert, server.key), old_client)
    assert refused.version is None
    assert refused.server_error == "UNSUPPORTED_PROTOCOL"
    assert refused.client_error == "TLSV1_ALERT_PROTOCOL_VERSION"  # the server's alert


# -- client certificates (OpenFlow) -----------------------------------------------------

def test_a_switch_certificate_the_ca_signed_is_accepted(server, switch, pki):
    context = tls.server_context(server.cert, server.key, pki.ca)
    result = handshake(context, client_context(pki, TLS_1_2, switch))
    assert result.version == "TLSv1.2"
    assert ((("commonName", "switch-1"),),) == result.peer["subject"]


@pytest.mark.parametrize("version", [TLS_1_2, TLS_1_3])
def test_a_switch_without_a_certificate_is_refused(server, pki, version):
    context = tls.server_context(server.cert, server.key, pki.ca)
    result = handshake(context, client_context(pki, version))
    assert result.version is None
    assert result.server_error == "PEER_DID_NOT_RETURN_A_CERTIFICATE"


def test_a_switch_certificate_another_ca_signed_is_refused(server, stranger, pki):
    context = tls.server_context(server.cert, server.key, pki.ca)
    result = handshake(context, client_context(pki, TLS_1_2, stranger))
    assert result.version is None
    assert result.server_error == "CERTIFICATE_VERIFY_FAILED"


def test_the_rest_context_asks_for_no_client_certificate(server, pki):
    assert tls.server_context(server.cert, server.key).verify_mode == ssl.CERT_NONE


# -- start-up checks of the files ----------------------------------------------------

LABELS = {key: f"controller.{key}" for key in (
    "rest_tls_cert", "rest_tls_key", "openflow_tls_cert", "openflow_tls_key", "openflow_tls_ca")}


def problems(files, labels=LABELS) -> list[str]:
    return tls.server_contexts(files, labels)[1]


def test_good_files_give_each_server_its_context(server, switch, pki):
    files = {"rest_tls_cert": server.cert, "rest_tls_key": server.key,
             "openflow_tls_cert": server.cert, "openflow_tls_key": server.key,
             "openflow_tls_ca": pki.ca}
    contexts, found = tls.server_contexts(files, LABELS)
    assert found == [] and set(contexts) == {"rest", "openflow"}
    assert all(isinstance(c, green_ssl.SSLContext) for c in contexts.values())
    assert contexts["rest"].verify_mode == ssl.CERT_NONE
    # The OpenFlow context is the one that was checked, the CA's included.
    result = handshake(contexts["openflow"], client_context(pki, TLS_1_2, switch))
    assert result.version == "TLSv1.2"
    assert tls.server_contexts({}, LABELS) == ({}, [])


def test_a_server_whose_files_have_a_problem_gets_no_context(tmp_path, server):
    missing = str(tmp_path / "nope.pem")
    files = {"rest_tls_cert": server.cert, "rest_tls_key": server.key,
             "openflow_tls_cert": server.cert, "openflow_tls_key": server.key,
             "openflow_tls_ca": missing}
    contexts, found = tls.server_contexts(files, LABELS)
    assert set(contexts) == {"rest"}, "no OpenFlow context without its CA"
    assert found == [f"controller.openflow_tls_ca: {missing}: cannot read (No such file or "
                     "directory)"]


def test_a_missing_file_and_a_directory_cannot_be_read(tmp_path, server):
    missing = str(tmp_path / "nope.pem")
    files = {"rest_tls_cert": missing, "rest_tls_key": str(tmp_path)}
    assert problems(files) == [
        f"controller.rest_tls_cert: {missing}: cannot read (No such file or directory)",
        f"controller.rest_tls_key: {tmp_path}: cannot read (Is a directory)"]


def test_files_that_are_not_pem_are_named(tmp_path, server):
    junk = tmp_path / "junk.pem"
    junk.write_text("-----BEGIN CERTIFICATE-----\nnot base64\n-----END CERTIFICATE-----\n")
    files = {"openflow_tls_cert": str(junk), "openflow_tls_key": server.cert,
             "openflow_tls_ca": server.key}
    assert problems(files) == [
        f"controller.openflow_tls_cert: {junk}: not a PEM certificate",
        f"controller.openflow_tls_key: {server.cert}: not a PEM private key",
        f"controller.openflow_tls_ca: {server.key}: not a PEM certificate"]


def test_an_encrypted_key_is_refused(tmp_path, server):
    key = serialization.load_pem_private_key(Path(server.key).read_bytes(), None)
    encrypted = tmp_path / "encrypted-key.pem"
    encrypted.write_bytes(key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"secret")))
    files = {"rest_tls_cert": server.cert, "rest_tls_key": str(encrypted)}
    assert problems(files) == [
        f"controller.rest_tls_key: {encrypted}: is encrypted; the controller needs the key "
        "unencrypted"]


def test_a_key_of_another_certificate_is_named_with_flags_as_labels(server, switch):
    labels = dict(LABELS, rest_tls_cert="--rest-cert", rest_tls_key="--rest-key")
    files = {"rest_tls_cert": server.cert, "rest_tls_key": switch.key}
    assert problems(files, labels) == [
        f"--rest-key: {switch.key}: is not the key of the certificate in {server.cert}"]


def test_a_file_larger_than_the_bound_is_refused(tmp_path, server):
    big = tmp_path / "big.pem"
    big.write_bytes(b"#" * (tls.MAX_PEM_BYTES + 1))
    files = {"rest_tls_cert": str(big), "rest_tls_key": server.key}
    assert problems(files) == [
        f"controller.rest_tls_cert: {big}: larger than {tls.MAX_PEM_BYTES} bytes"]


# -- the servers on the hub ----------------------------------------------------------------

def _green_client(pki, issued: Issued | None = None) -> ssl.SSLContext:
    context = green_ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.load_verify_locations(cafile=pki.ca)
    if issued is not None:
        context.load_cert_chain(issued.cert, issued.key)
    return context


def _read_all(sock) -> bytes:
    chunks = []
    while chunk := sock.recv(4096):
        chunks.append(chunk)
    return b"".join(chunks)


@pytest.fixture
def openflow_server(server, pki, monkeypatch):
    """Ryu's StreamServer as apps.tls makes Ryu build it for OpenFlow over TLS;
    each connection that gets through is answered with its TLS version."""
    monkeypatch.setattr(controller, "StreamServer", controller.StreamServer)  # restored after
    tls.use_for_openflow(tls.server_context(server.cert, server.key, pki.ca))
    handled = hub.Queue()

    def handle(sock, addr):
        handled.put(_subject_of(sock))
        sock.sendall(sock.version().encode())
        sock.close()

    # The arguments Ryu 4.34's server_loop passes, its own context included.
    instance = controller.StreamServer(
        ("127.0.0.1", 0), handle, keyfile=server.key, certfile=server.cert,
        cert_reqs=ssl.CERT_REQUIRED, ca_certs=pki.ca,
        ssl_ctx=ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT))
    assert isinstance(instance, tls.OpenFlowTlsServer)
    thread = hub.spawn(instance.serve_forever)
    yield instance.server.getsockname(), handled
    hub.kill(thread)
    instance.server.close()


def _subject_of(sock) -> str:
    return dict(rdn[0] for rdn in sock.getpeercert()["subject"])["commonName"]


def test_every_switch_connection_is_served_not_only_the_first(openflow_server, pki, switch,
                                                              stranger, caplog):
    address, handled = openflow_server
    with eventlet.Timeout(DEADLINE_S):
        for _ in range(3):  # stock Ryu serves the first and refuses every later one
            with green_socket.create_connection(address) as raw:
                with _green_client(pki, switch).wrap_socket(raw, server_hostname="localhost") \
                        as secure:
                    assert _read_all(secure) == secure.version().encode()
            assert handled.get() == "switch-1"

        with green_socket.create_connection(address) as raw:
            with pytest.raises(ssl.SSLError, match="ALERT_UNKNOWN_CA|CERTIFICATE"):
                with _green_client(pki, stranger).wrap_socket(
                        raw, server_hostname="localhost") as secure:
                    _read_all(secure)
        with green_socket.create_connection(address) as raw:
            raw.sendall(bytes.fromhex("0400000800000001"))  # an OpenFlow 1.3 HELLO in the clear
            assert not _read_all(raw).startswith(b"\x04")

        with green_socket.create_connection(address) as raw:  # and the next one still works
            with _green_client(pki, switch).wrap_socket(raw, server_hostname="localhost") \
                    as secure:
                assert _read_all(secure) == secure.version().encode()
            assert handled.get() == "switch-1"
    assert handled.qsize() == 0, "no refused connection reached Ryu"
    failures = [r.getMessage() for r in caplog.records if r.name == "apps.tls"
                and r.levelname == "WARNING"]
    assert len(failures) == 2 and all("OpenFlow: TLS handshake with 127.0.0.1:" in message
                                      for message in failures), failures


def test_the_rest_server_answers_https_and_drops_plain_http(server, pki, caplog, capfd):
    def application(environ, start_response):
        start_response("200 OK", [("Content-Type", "text/plain")])
        return [environ["wsgi.url_scheme"].encode()]

    https = RestServer(("127.0.0.1", 0), application, ControllerSettings(), {},
                       tls.server_context(server.cert, server.key))
    thread = hub.spawn(https.serve_forever)
    address = https.server.getsockname()
    request = b"GET / HTTP/1.0\r\nHost: localhost\r\n\r\n"
    try:
        with eventlet.Timeout(DEADLINE_S):
            with green_socket.create_connection(address) as raw:
                raw.sendall(request)  # plain HTTP to the HTTPS port
                assert not _read_all(raw).startswith(b"HTTP/")
            for _ in range(2):
                with green_socket.create_connection(address) as raw:
                    with _green_client(pki).wrap_socket(raw, server_hostname="localhost") \
                            as secure:
                        assert secure.version() in ("TLSv1.2", "TLSv1.3")
                        secure.sendall(request)
                        reply = _read_all(secure)
                assert reply.startswith(b"HTTP/1.1 200 OK") and reply.endswith(b"https"), reply
    finally:
        hub.kill(thread)
        https.close()
    failures = [r.getMessage() for r in caplog.records if r.name == "apps.tls"]
    assert len(failures) == 1 and failures[0].startswith("REST: TLS handshake with 127.0.0.1:")
    assert "HTTP_REQUEST" in failures[0]
    assert "Traceback" not in capfd.readouterr().err

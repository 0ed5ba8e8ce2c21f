"""TLS for the REST API and the OpenFlow channel: TLS 1.2 or later, nothing older.

Both servers get their context from :func:`server_context`, which sets the
minimum version itself instead of leaving it to the host's OpenSSL
configuration, and, for OpenFlow, requires a client certificate signed by
the configured CA.

Ryu 4.34's own OpenFlow TLS (``--ctl-privkey``, ``--ctl-cert``,
``--ca-certs``) cannot be used as it is:

- ``OpenFlowController.server_loop`` builds ``ssl.SSLContext(PROTOCOL_TLS)``
  and sets no minimum version, so TLS 1.0 and 1.1 are refused only where
  the host's OpenSSL security level happens to refuse them;
- ``hub.StreamServer`` pops that context, with the certificate, key and CA,
  out of its arguments on the first connection.  Every later connection
  goes to ``ssl.wrap_socket`` with no certificate and fails ("no shared
  cipher"): the first switch connects, the others, and a switch that
  reconnects, never do.

Neither has a hook.  :func:`use_for_openflow` therefore replaces the name
``StreamServer`` in ``ryu.controller.controller``, the one ``server_loop``
calls, with a factory that builds :class:`OpenFlowTlsServer` from the
arguments Ryu passes (its own options still name the files).  Nothing else
in Ryu changes; when Ryu is replaced by os-ken, check its ``server_loop``
before keeping this.
"""

from __future__ import annotations

import logging
import ssl
from typing import Callable, Mapping

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from apps import compat
from mpa_sdn.config import TLS_GROUPS

compat.patch_eventlet()

import eventlet.wsgi  # noqa: E402  (after the patch)
from eventlet.green import ssl as green_ssl  # noqa: E402
from ryu.lib import hub  # noqa: E402

LOG = logging.getLogger("apps.tls")

MIN_VERSION = ssl.TLSVersion.TLSv1_2
MAX_PEM_BYTES = 1 << 20        # a certificate chain or key file larger than this is refused
HANDSHAKE_TIMEOUT_S = 10.0     # a client not through its TLS handshake by then is dropped


def server_context(cert: str, key: str, ca: str | None = None, *,
                   context_class: Callable[..., ssl.SSLContext] = ssl.SSLContext
                   ) -> ssl.SSLContext:
    """A server context: TLS 1.2 at least, ``cert``'s chain with ``key``; with
    ``ca``, a client must present a certificate ``ca`` signed.

    ``context_class`` is eventlet's green context for the servers that run on
    the hub; the plain one is for checks and tests.
    """
    context = context_class(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSION
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca)
    return context


# -- start-up checks ------------------------------------------------------------

def check_files(files: Mapping[str, str], labels: Mapping[str, str]) -> list[str]:
    """Problems with the TLS files, one line each, every one found.

    ``files`` maps a ``controller:`` key (``rest_tls_cert``...) to its path;
    only complete groups are given.  ``labels`` names each key as the user
    gave it (the key path or the flag).
    """
    problems: list[str] = []
    for cert, key, *rest in TLS_GROUPS:
        usable = {}
        for name in (cert, key, *rest):
            if name not in files:
                continue
            problem = _file_problem(name, files[name])
            if problem:
                problems.append(f"{labels[name]}: {files[name]}: {problem}")
            else:
                usable[name] = files[name]
        if cert in usable and key in usable:
            problem = _pair_problem(usable[cert], usable[key])
            if problem:
                problems.append(f"{labels[key]}: {usable[key]}: {problem}")
    return problems


def _file_problem(name: str, path: str) -> str | None:
    try:
        with open(path, "rb") as handle:
            data = handle.read(MAX_PEM_BYTES + 1)
    except OSError as exc:
        return f"cannot read ({exc.strerror})"
    if len(data) > MAX_PEM_BYTES:
        return f"larger than {MAX_PEM_BYTES} bytes"
    if name.endswith("_key"):
        try:
            serialization.load_pem_private_key(data, password=None)
        except TypeError:
            return "is encrypted; the controller needs the key unencrypted"
        except (ValueError, UnsupportedAlgorithm):
            return "not a PEM private key"
        return None
    try:
        x509.load_pem_x509_certificates(data)
    except ValueError:
        return "not a PEM certificate"
    return None


def _pair_problem(cert: str, key: str) -> str | None:
    """What OpenSSL says when it loads the pair: beyond a key that is not the
    certificate's, a key too weak for its security level, for instance."""
    try:
        server_context(cert, key)
    except ssl.SSLError as exc:
        if exc.reason == "KEY_VALUES_MISMATCH":
            return f"is not the key of the certificate in {cert}"
        reason = (exc.reason or str(exc)).lower().replace("_", " ")
        return f"OpenSSL refuses it with {cert} ({reason})"
    return None


# -- the servers ------------------------------------------------------------------

class HttpsServer(hub.WSGIServer):
    """``hub.WSGIServer`` over TLS.

    ``hub.WSGIServer`` takes TLS arguments but would wrap the WSGI app, not
    the connections, so the listening socket is wrapped here instead.  Each
    handshake happens in the green thread that serves its connection, not in
    the accept loop, is bounded in time, and a failed one is a log line, not
    a traceback.
    """

    def __init__(self, listen_info, application, cert: str, key: str):
        super().__init__(listen_info, application)
        context = server_context(cert, key, context_class=green_ssl.SSLContext)
        self.server = context.wrap_socket(self.server, server_side=True,
                                          do_handshake_on_connect=False)

    def serve_forever(self):
        self.logger = hub.LoggingWrapper()
        eventlet.wsgi.server(self.server, self.handle, self.logger, protocol=_HttpsProtocol)


class _HttpsProtocol(eventlet.wsgi.HttpProtocol):
    def handle(self):
        if _handshake(self.connection, self.client_address, "REST"):
            super().handle()
        # else: HttpProtocol closes the connection


class OpenFlowTlsServer(hub.StreamServer):
    """What Ryu's ``server_loop`` gets instead of ``hub.StreamServer`` when it
    serves OpenFlow over TLS: one context for every connection, each
    handshake in its own green thread and bounded in time, a switch
    without a certificate the CA signed refused."""

    def __init__(self, listen_info, handle, *, certfile: str, keyfile: str,
                 ca_certs: str | None = None, **ryu_ssl_args):
        # ryu_ssl_args: Ryu's own context (ssl_ctx) and cert_reqs, replaced here.
        if ca_certs is None:
            raise ValueError("OpenFlow over TLS needs the CA that signs switch certificates "
                             "(--ca-certs)")
        super().__init__(listen_info, handle)  # listens as Ryu would: IPv4 or IPv6
        self.context = server_context(certfile, keyfile, ca_certs,
                                      context_class=green_ssl.SSLContext)
        self.handle = self.secure_and_handle
        self.handle_secure = handle

    def secure_and_handle(self, sock, addr):
        secure = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        if not _handshake(secure, addr, "OpenFlow"):
            secure.close()
            return
        LOG.info("OpenFlow: %s from %s, switch certificate %s", secure.version(),
                 _peer(addr), _subject(secure.getpeercert()))
        self.handle_secure(secure, addr)


def _handshake(sock, addr, what: str) -> bool:
    timeout = sock.gettimeout()
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        sock.do_handshake()
    except OSError as exc:  # ssl.SSLError and timeouts are OSErrors
        LOG.warning("%s: TLS handshake with %s failed: %s", what, _peer(addr), exc)
        return False
    finally:
        sock.settimeout(timeout)
    return True


def use_for_openflow() -> None:
    """Make Ryu's OpenFlow server use :class:`OpenFlowTlsServer` for TLS
    (see the module's docstring for why).  Call after Ryu's manager is
    imported and before it runs."""
    from ryu.base import app_manager  # noqa: F401  (ryu.controller.controller needs it first)
    from ryu.controller import controller

    def stream_server(listen_info, handle=None, **ssl_args):
        if not ssl_args:
            return hub.StreamServer(listen_info, handle)
        return OpenFlowTlsServer(listen_info, handle, **ssl_args)

    controller.StreamServer = stream_server


def _peer(addr) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


def _subject(cert: dict | None) -> str:
    names = dict(item for rdn in (cert or {}).get("subject", ()) for item in rdn)
    return names.get("commonName", "without a common name")

"""TLS for the REST API and the OpenFlow channel: TLS 1.2 or later, nothing older.

The launcher checks the files and builds both servers' contexts once, at
start-up (:func:`server_contexts`).  Each comes from :func:`server_context`,
which sets the minimum version itself instead of leaving it to the host's
OpenSSL configuration, and, for OpenFlow, requires a client certificate
signed by the configured CA.

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
calls, with a factory that builds :class:`OpenFlowTlsServer` with the
context the launcher built at start-up (Ryu's own options still name the
files, for Ryu to choose its TLS listener).  Nothing else in Ryu changes;
when Ryu is replaced by os-ken, check its ``server_loop`` before keeping
this.
"""

from __future__ import annotations

import logging
import ssl
from typing import Mapping

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from apps import compat
from mpa_sdn.config import TLS_GROUPS

compat.patch_eventlet()

from eventlet.green import ssl as green_ssl  # noqa: E402  (after the patch)
from ryu.lib import hub  # noqa: E402

LOG = logging.getLogger("apps.tls")

MIN_VERSION = ssl.TLSVersion.TLSv1_2
MAX_PEM_BYTES = 1 << 20        # a certificate chain or key file larger than this is refused
HANDSHAKE_TIMEOUT_S = 10.0     # a client not through its TLS handshake by then is dropped


def server_context(cert: str, key: str, ca: str | None = None) -> ssl.SSLContext:
    """A server context: TLS 1.2 at least, ``cert``'s chain with ``key``; with
    ``ca``, a client must present a certificate ``ca`` signed.  Eventlet's
    green context, for the servers run on the hub.
    """
    context = green_ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.minimum_version = MIN_VERSION
    context.load_cert_chain(cert, key)
    if ca is not None:
        context.verify_mode = ssl.CERT_REQUIRED
        context.load_verify_locations(cafile=ca)
    return context


# -- start-up: the files checked, the contexts built ---------------------------

def server_contexts(files: Mapping[str, str], labels: Mapping[str, str]
                    ) -> tuple[dict[str, ssl.SSLContext], list[str]]:
    """The servers' contexts, and the problems with the TLS files, one line
    each, every one found.

    ``files`` maps a ``controller:`` key (``rest_tls_cert``...) to its path;
    only complete groups are given.  ``labels`` names each key as the user
    gave it (the key path or the flag).  A group whose files have no problem
    gets its context, under the group's name ("rest", "openflow"): the
    servers use these, so they serve with the files as they were checked,
    and a file that goes away after the check cannot stop a server later.
    """
    contexts: dict[str, ssl.SSLContext] = {}
    problems: list[str] = []
    for group in TLS_GROUPS:
        cert, key, *ca = group
        usable = {}
        for name in group:
            if name not in files:
                continue
            problem = _file_problem(name, files[name])
            if problem:
                problems.append(f"{labels[name]}: {files[name]}: {problem}")
            else:
                usable[name] = files[name]
        if cert not in usable or key not in usable:
            continue
        try:
            context = server_context(usable[cert], usable[key],
                                     usable.get(ca[0]) if ca else None)
        except ssl.SSLError as exc:
            problems.append(f"{labels[key]}: {usable[key]}: {_pair_problem(exc, usable[cert])}")
            continue
        if len(usable) == len(group):
            contexts[cert.split("_")[0]] = context
    return contexts, problems


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


def _pair_problem(exc: ssl.SSLError, cert: str) -> str:
    """What OpenSSL said when it loaded a key with its certificate: beyond a
    key that is not the certificate's, a key too weak for its security
    level, for instance."""
    if exc.reason == "KEY_VALUES_MISMATCH":
        return f"is not the key of the certificate in {cert}"
    reason = (exc.reason or str(exc)).lower().replace("_", " ")
    return f"OpenSSL refuses it with {cert} ({reason})"


# -- the servers ------------------------------------------------------------------

class OpenFlowTlsServer(hub.StreamServer):
    """What Ryu's ``server_loop`` gets instead of ``hub.StreamServer`` when it
    serves OpenFlow over TLS: one context for every connection, each
    handshake in its own green thread and bounded in time, a switch
    without a certificate the CA signed refused."""

    def __init__(self, listen_info, handle, context: ssl.SSLContext):
        if context.verify_mode != ssl.CERT_REQUIRED:
            raise ValueError("OpenFlow over TLS needs the CA that signs switch certificates")
        super().__init__(listen_info, handle)  # listens as Ryu would: IPv4 or IPv6
        self.context = context
        self.handle = self.secure_and_handle
        self.handle_secure = handle

    def secure_and_handle(self, sock, addr):
        secure = self.context.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
        if not handshake(secure, addr, "OpenFlow"):
            secure.close()
            return
        LOG.info("OpenFlow: %s from %s, switch certificate %s", secure.version(),
                 peer(addr), _subject(secure.getpeercert()))
        self.handle_secure(secure, addr)


def handshake(sock, addr, what: str) -> bool:
    """``sock``'s server handshake, within HANDSHAKE_TIMEOUT_S; a failure is a
    log line and False (the REST listener, apps.rest_server, counts it)."""
    timeout = sock.gettimeout()
    sock.settimeout(HANDSHAKE_TIMEOUT_S)
    try:
        sock.do_handshake()
    except OSError as exc:  # ssl.SSLError and timeouts are OSErrors
        LOG.warning("%s: TLS handshake with %s failed: %s", what, peer(addr), exc)
        return False
    finally:
        sock.settimeout(timeout)
    return True


def use_for_openflow(context: ssl.SSLContext) -> None:
    """Make Ryu's OpenFlow server an :class:`OpenFlowTlsServer` with
    ``context`` (see the module's docstring for why).  Ryu's own TLS options
    must still be given: they make ``server_loop`` listen on its TLS port,
    but the files they name are not read again.  Call after Ryu's manager is
    imported and before it runs."""
    from ryu.base import app_manager  # noqa: F401  (ryu.controller.controller needs it first)
    from ryu.controller import controller

    def stream_server(listen_info, handle=None, **ssl_args):
        if not ssl_args:
            return hub.StreamServer(listen_info, handle)
        return OpenFlowTlsServer(listen_info, handle, context)

    controller.StreamServer = stream_server


def peer(addr) -> str:
    return f"{addr[0]}:{addr[1]}" if isinstance(addr, tuple) else str(addr)


def _subject(cert: dict | None) -> str:
    names = dict(item for rdn in (cert or {}).get("subject", ()) for item in rdn)
    return names.get("commonName", "without a common name")

"""The two ways the MN's messages reach a CTN's AA and CA.

* REST: each message is POSTed to the controller's ``/mpa/v1`` endpoint of
  its kind; the answer is the response body, whatever the HTTP status.  With
  one controller per administrative domain, a message about a network goes
  to the controller of the network's domain (:class:`Controllers`).
* In-band: each message is one UDP datagram to the network's gateway (the
  AA's address) from the MN's current address; the answer is the datagram
  that comes back from exactly that address and port.  A datagram may be
  lost, so the request is sent again, the same bytes each time (the AA
  answers a retransmission with the answer it gave and changes nothing
  twice); junk gets no answer at all, so silence after every try is an error.

Both carry exactly the bytes :mod:`mpa_mn.protocol` builds and hand back the
answer's bytes unread: believing an answer is the caller's business.  Both
send a message again, after the delay the answer asks for, when the AA or CA
says "not now" (``address-pending`` while a duplicate address detection
runs, ``busy``), a bounded number of times.

Transports are injected (an urllib opener, a socket factory, the clock and
sleep), so the tests drive this logic without a network.
"""

from __future__ import annotations

import collections
import http.client
import json
import logging
import socket
import time
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable

from mpa_mn import protocol
from mpa_mn.protocol import ProtocolError
from mpa_protocol import messages
from mpa_protocol.http_opener import direct_opener

LOG = logging.getLogger("mpa_mn.channels")

MAX_ANSWER_BYTES = 65536
DEFAULT_PORT = protocol.DEFAULT_SIGNALLING_PORT
DEFAULT_TIMEOUT_S = 7.5
# "Not now" answers worth sending the same message again for.
RETRYABLE = ("address-pending", "busy")
# The REST endpoint of each request kind (under /mpa/v1/networks/{id}/).
ENDPOINTS = {kind: endpoint for endpoint, kinds in messages.SIGNAL_ENDPOINTS.items()
             for kind in kinds}


class ChannelError(ProtocolError):
    """No usable answer came: ``no-answer``, ``transport`` or ``http-NNN``."""


@dataclass(frozen=True)
class Target:
    """Where a network's AA and CA answer: in-band its address and port, over
    REST the controller of its ``domain`` (None: not known, the default one)."""

    network: str
    address: str
    port: int = DEFAULT_PORT
    domain: str | None = None

    @classmethod
    def of(cls, candidate: dict) -> "Target":
        aa = candidate["aa"]
        return cls(candidate["network"], aa["address"], aa.get("port", DEFAULT_PORT),
                   candidate.get("domain") or candidate.get("served_by"))


@dataclass(frozen=True)
class Controllers:
    """The REST API of each domain's controller: ``default`` (``--controller``)
    for a domain not named in ``by_domain`` (``--domain-controller``), or
    not known."""

    default: str
    by_domain: tuple[tuple[str, str], ...] = ()

    @classmethod
    def of(cls, default: str, by_domain: dict[str, str] | None = None) -> "Controllers":
        return cls(default.rstrip("/"), tuple(sorted(
            (domain, url.rstrip("/")) for domain, url in (by_domain or {}).items())))

    def url(self, domain: str | None) -> str:
        return dict(self.by_domain).get(domain, self.default)


@dataclass(frozen=True)
class RetryPolicy:
    """How often and how long to wait when the answer says "not now"."""

    retries: int = 10          # sends of the same message after the first
    max_wait_s: float = 10.0   # a longer Retry-After is not waited for: the error stands
    default_wait_s: float = 1.0


class _Channel:

    def __init__(self, retry: RetryPolicy, sleep: Callable[[float], None]):
        self.retry = retry
        self.sleep = sleep
        self.counters = collections.Counter()

    def _with_retries(self, once: Callable[[], tuple[bytes, float | None]], what: str) -> bytes:
        """``once()`` sends the message and returns (answer, the transport's retry hint)."""
        for attempt in range(self.retry.retries + 1):
            answer, transport_wait = once()
            code, wait = protocol.retry_hint(answer)
            if code not in RETRYABLE:
                return answer
            wait = next(w for w in (wait, transport_wait, self.retry.default_wait_s)
                        if w is not None)
            if attempt == self.retry.retries or wait > self.retry.max_wait_s:
                self.counters[f"gave_up_{code.replace('-', '_')}"] += 1
                return answer
            self.counters[f"retry_{code.replace('-', '_')}"] += 1
            LOG.info("%s: %s; sending the same message again in %s s", what, code, wait)
            self.sleep(wait)
        raise AssertionError("unreachable")

    def discover(self, data: bytes, target: Target | None = None,
                 domain: str | None = None) -> bytes:
        """``target``: in-band, the network whose gateway is asked (default: the
        MN's own); REST asks about the network the message names, of the
        controller of ``target``'s domain, else of ``domain`` (the MN's
        network's, when it knows it)."""
        raise NotImplementedError

    def exchange(self, target: Target, kind: str, data: bytes) -> bytes:
        raise NotImplementedError

    def open(self) -> None:
        """Open ahead what each exchange would otherwise open (see InbandChannel)."""

    def close(self) -> None:
        """Close what :meth:`open` opened."""


# -- REST ------------------------------------------------------------------------

class RestChannel(_Channel):
    """``base_url``: one controller's API, or :class:`Controllers`, one per domain."""

    def __init__(self, base_url: str | Controllers, timeout: float = DEFAULT_TIMEOUT_S,
                 opener=None, retry: RetryPolicy = RetryPolicy(),
                 sleep: Callable[[float], None] = time.sleep):
        super().__init__(retry, sleep)
        self.controllers = (base_url if isinstance(base_url, Controllers)
                            else Controllers.of(base_url))
        self.timeout = timeout
        self.opener = opener if opener is not None else direct_opener()

    def discover(self, data: bytes, target: Target | None = None,
                 domain: str | None = None) -> bytes:
        base = self.controllers.url(target.domain if target else domain)
        return self._with_retries(lambda: self._post(base, "/mpa/v1/discover", data),
                                  "discover")

    def exchange(self, target: Target, kind: str, data: bytes) -> bytes:
        base = self.controllers.url(target.domain)
        path = f"/mpa/v1/networks/{urllib.parse.quote(target.network, safe='')}/" \
               f"{ENDPOINTS[kind]}"
        return self._with_retries(lambda: self._post(base, path, data),
                                  f"{target.network} {kind}")

    def _post(self, base: str, path: str, data: bytes) -> tuple[bytes, float | None]:
        url = base + path
        request = urllib.request.Request(url, data=data, method="POST", headers={
            "Content-Type": "application/json", "Accept": "application/json"})
        self.counters["requests"] += 1
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                return self._answer(url, response.status, response.read(MAX_ANSWER_BYTES + 1)), None
        except urllib.error.HTTPError as exc:
            # 4xx/5xx: the body is still the answer (an error message).
            try:
                body = exc.read(MAX_ANSWER_BYTES + 1)
            finally:
                exc.close()
            return self._answer(url, exc.code, body), _retry_after(exc.headers)
        except urllib.error.URLError as exc:
            raise ChannelError("no-answer", f"no answer from the controller at {url}: "
                               f"{getattr(exc.reason, 'strerror', None) or exc.reason}") from None
        except (OSError, http.client.HTTPException) as exc:  # timeouts, resets, bad responses
            raise ChannelError("no-answer", f"no answer from the controller at {url}: "
                               f"{exc.__class__.__name__}: {exc}") from None

    def _answer(self, url: str, status: int, body: bytes) -> bytes:
        self.counters[f"http_{status}"] += 1
        if len(body) > MAX_ANSWER_BYTES:
            raise ChannelError("transport", f"{url}: the answer is over {MAX_ANSWER_BYTES} bytes")
        if status < 400:
            return body
        if protocol.retry_hint(body)[0] is not None:
            return body  # an error message: the caller raises it with its code
        # Not a signalling answer: the URL is wrong, or the server is not an MPA controller.
        raise ChannelError(f"http-{status}", f"{url}: {_describe(body)}")


def _retry_after(headers) -> float | None:
    value = headers.get("Retry-After") if headers is not None else None
    try:
        return max(0.0, float(value)) if value is not None else None
    except ValueError:
        return None  # an HTTP date: use the message's retry_after or the default


def _describe(body: bytes) -> str:
    try:
        raw = json.loads(body)
        message = raw["error"]["message"] if isinstance(raw.get("error"), dict) else raw["error"]
        return str(message)[:300]
    except (ValueError, TypeError, KeyError, AttributeError):
        text = body[:200].decode("utf-8", "replace").strip()
        return text or "(empty body)"


# -- in-band ----------------------------------------------------------------------

def udp_socket(local_address: str | None):
    """A UDP socket sending from the MN's current address (any port)."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        sock.bind((local_address or "0.0.0.0", 0))
    except OSError:
        sock.close()
        raise
    return sock


class InbandChannel(_Channel):
    """UDP to the gateway: ``tries`` sends of the same datagram, the first wait
    ``timeout / (2**tries - 1)`` and each next one twice as long, so that all
    of them take ``timeout`` (0.5, 1, 2 and 4 s for 7.5 s and 4 tries).

    Each exchange opens its own socket, unless :meth:`open` opened one ahead
    (for a message sent inside a handover's interruption, where creating and
    binding a socket is time lost); that one serves until :meth:`close`."""

    def __init__(self, local_address: str | None, gateway: str | Callable[[], str] | None = None,
                 port: int = DEFAULT_PORT, timeout: float = DEFAULT_TIMEOUT_S, tries: int = 4,
                 socket_factory: Callable = udp_socket,
                 clock: Callable[[], float] = time.monotonic,
                 retry: RetryPolicy = RetryPolicy(), sleep: Callable[[float], None] = time.sleep):
        super().__init__(retry, sleep)
        if tries < 1:
            raise ValueError("tries must be at least 1")
        self.local_address = local_address
        self._gateway = gateway
        self.port = port
        self.timeout = timeout
        self.tries = tries
        self.socket_factory = socket_factory
        self.clock = clock
        self._sock = None

    @property
    def gateway(self) -> str:
        """The MN's current default gateway: where discovery goes."""
        if callable(self._gateway):
            self._gateway = self._gateway()
        if self._gateway is None:
            raise ChannelError("transport", "no default gateway to send discovery to")
        return self._gateway

    def discover(self, data: bytes, target: Target | None = None,
                 domain: str | None = None) -> bytes:
        address, port = (target.address, target.port) if target else (self.gateway, self.port)
        return self._with_retries(lambda: (self._transact(address, port, data), None),
                                  "discover")

    def exchange(self, target: Target, kind: str, data: bytes) -> bytes:
        return self._with_retries(
            lambda: (self._transact(target.address, target.port, data), None),
            f"{target.network} {kind}")

    def open(self) -> None:
        """The socket opened now.  If it cannot be, each exchange tries again
        and reports why it cannot: opening ahead only saves time."""
        if self._sock is None:
            try:
                self._sock = self.socket_factory(self.local_address)
            except OSError as exc:
                LOG.debug("cannot open a socket from %s ahead: %s", self.local_address, exc)

    def close(self) -> None:
        if self._sock is not None:
            self._sock.close()
            self._sock = None

    def _socket(self):
        try:
            return self.socket_factory(self.local_address)
        except OSError as exc:
            raise ChannelError("transport", f"cannot send from {self.local_address}: "
                               f"{exc.strerror or exc}") from None

    def _transact(self, address: str, port: int, data: bytes) -> bytes:
        """Send ``data`` until the answer comes from ``address:port``."""
        sock = self._sock or self._socket()
        try:
            wait = self.timeout / (2 ** self.tries - 1)
            for attempt in range(self.tries):
                if attempt:
                    self.counters["retransmissions"] += 1
                    LOG.debug("no answer from %s:%d yet; sending again", address, port)
                try:
                    sock.sendto(data, (address, port))
                except OSError as exc:
                    raise ChannelError("transport", f"cannot send to {address}:{port}: "
                                       f"{exc.strerror or exc}") from None
                self.counters["datagrams_sent"] += 1
                answer = self._receive(sock, address, port, self.clock() + wait)
                if answer is not None:
                    return answer
                wait *= 2
        finally:
            if sock is not self._sock:
                sock.close()
        self.counters["no_answer"] += 1
        raise ChannelError("no-answer", f"no answer from AA at {address}:{port} "
                           f"({self.tries} tries in {self.timeout:g} s)")

    def _receive(self, sock, address: str, port: int, deadline: float) -> bytes | None:
        while True:
            remaining = deadline - self.clock()
            if remaining <= 0:
                return None
            sock.settimeout(remaining)
            try:
                payload, source = sock.recvfrom(MAX_ANSWER_BYTES + 1)
            except (socket.timeout, BlockingIOError, InterruptedError):
                continue  # the loop head decides whether time is up
            except OSError as exc:  # e.g. an ICMP error reported on the socket
                self.counters["receive_errors"] += 1
                LOG.debug("receiving from %s:%d: %s", address, port, exc)
                return None  # this try is lost; the next one sends again
            if tuple(source[:2]) != (address, port):
                self.counters["ignored_wrong_source"] += 1
                LOG.info("ignored a datagram from %s:%d (waiting for %s:%d)",
                         source[0], source[1], address, port)
                continue
            if len(payload) > MAX_ANSWER_BYTES:
                self.counters["ignored_oversized"] += 1
                continue
            self.counters["datagrams_received"] += 1
            return payload

"""The REST listener: eventlet's HTTP/1.1 parsing and WSGI, with bounds no
client can get past.

``eventlet.wsgi.server`` alone queues every connection past its pool of
1,024 and waits for ever on a client that sends nothing, half a header or
half a body: a thousand idle connections stop every request, the MNs'
signalling included.  Here the accept loop is our own and each connection
is served by a subclass of eventlet's protocol, so that:

- connections are counted in all and per source address; one past either
  bound (``rest_max_connections``, ``rest_connections_per_source``) is
  answered a short 503 and closed at once, never queued (over TLS, closed
  without a handshake: a 503 would need one);
- the first request's line and headers must arrive within
  ``rest_header_timeout_s`` of the accept, a later request's within that of
  its first byte: a bound on the whole, so a trickle cannot stretch it;
- a body must arrive whole within ``rest_body_timeout_s`` of the end of its
  headers (the API's bodies are a few KiB);
- a kept-alive connection with no request for ``rest_idle_timeout_s`` is
  closed; a response (an event stream) the client takes nothing of for as
  long ends, and the application's iterator is closed;
- a client that goes away, a timeout or a TLS error (a renegotiation) is a
  counted log line, never a traceback.

Counters (the application's dict, also /metrics): ``rest_connections_full``,
``rest_connections_source_full``, ``rest_timeout_header``,
``rest_timeout_idle``, ``rest_timeout_write``, ``rest_client_disconnected``,
``rest_tls_handshake_failed``, ``rest_tls_error``, ``rest_accept_failed``,
``rest_malformed_http``, ``rest_connection_error`` (a bug: logged with its
traceback), and the gauge ``rest_connections_open``.  Body timeouts are counted by the
application, which reads the body (``rest_timeout_body``).
"""

from __future__ import annotations

import errno
import json
import logging
import socket
import ssl
import time

from apps import compat

compat.patch_eventlet()

import eventlet  # noqa: E402  (after the patch)
import eventlet.wsgi  # noqa: E402
from eventlet import greenio  # noqa: E402
from ryu.lib import hub, ip  # noqa: E402

from apps import tls  # noqa: E402
from rest_api.limits import Slots  # noqa: E402
from rest_api.problems import Problem  # noqa: E402

LOG = logging.getLogger("apps.rest_server")

LISTEN_BACKLOG = 1024        # connections the kernel holds until the loop accepts them
DISCARD_MAX_BYTES = 64 << 10  # an unread body longer than this closes the connection
ACCEPT_RETRY_S = 0.1         # out of descriptors: accept again after this
TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", 18)  # Linux's option number


class _HeaderTimeout(Exception):
    """The request line and headers did not arrive in time."""


class RestServer:
    """Serves ``application`` on ``listen_info`` within ``settings``' REST
    bounds (a :class:`mpa_sdn.topology.ControllerSettings`), counting into
    ``counters``; over TLS with ``context``."""

    def __init__(self, listen_info, application, settings, counters,
                 context: ssl.SSLContext | None = None):
        family = socket.AF_INET6 if ip.valid_ipv6(listen_info[0]) else socket.AF_INET
        # Listen here, not in serve_forever: a port that is taken fails start-up.
        self.server = eventlet.listen(listen_info, family=family, backlog=LISTEN_BACKLOG)
        self.settings = settings
        self.counters = counters
        self.context = context
        self.connections = Slots(settings.rest_max_connections,
                                 settings.rest_connections_per_source, counters,
                                 "rest_connections", gauge=True)
        self.wsgi = eventlet.wsgi.Server(
            self.server, self.server.getsockname(), application, hub.LoggingWrapper(),
            environ={"wsgi.url_scheme": "https", "HTTPS": "on"} if context else None,
            protocol=_Connection, debug=False)  # debug: a 500 would carry a traceback
        self.wsgi.listener = self
        self._refusals = {reason: _refusal(reason) for reason in ("full", "key")}
        self._threads: set = set()
        self.closing = False
        counters["rest_connections_open"] = 0   # in /metrics from the start

    def count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    # -- accepting ------------------------------------------------------------

    def serve_forever(self) -> None:
        while not self.closing:
            try:
                sock, addr = self.server.accept()
            except OSError as exc:
                if self.closing or exc.errno in (errno.EBADF, errno.EINVAL):
                    return   # the listening socket is closed
                if exc.errno not in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM):
                    continue  # e.g. ECONNABORTED: that client is gone already
                # Out of descriptors: the pending connection waits in the
                # backlog; the loop lives on.
                self.count("rest_accept_failed")
                LOG.error("REST: cannot accept a connection: %s", exc.strerror)
                eventlet.sleep(ACCEPT_RETRY_S)
                continue
            refused = self.connections.take(addr[0])
            if refused:
                self._refuse(sock, addr, refused)
                continue
            thread = eventlet.spawn(self._serve, sock, addr)
            self._threads.add(thread)
            thread.link(lambda done: self._threads.discard(done))

    def _refuse(self, sock, addr, reason: str) -> None:
        """Answer 503 and close, without waiting for anything: the client has
        its answer when it reads; a full send buffer means no answer."""
        LOG.debug("REST: %s refused (%s)", tls.peer(addr), reason)
        try:
            sock.setblocking(False)
            if self.context is None:
                sock.recv(4096)   # what the client sent already: unread, close would reset
        except OSError:
            pass
        try:
            if self.context is None:
                sock.send(self._refusals[reason])
            sock.shutdown(socket.SHUT_WR)
        except OSError:
            pass
        sock.close()

    def _serve(self, sock, addr) -> None:
        try:
            # Data the peer leaves unacknowledged this long (a host gone, a
            # client whose window stays shut) ends the connection: the next
            # write to a stream fails instead of waiting for TCP's 15 minutes.
            sock.setsockopt(socket.IPPROTO_TCP, TCP_USER_TIMEOUT,
                            int(self.settings.rest_idle_timeout_s * 1000))
            if self.context is not None:
                sock = self.context.wrap_socket(sock, server_side=True,
                                                do_handshake_on_connect=False)
                if not tls.handshake(sock, addr, "REST"):
                    self.count("rest_tls_handshake_failed")
                    return
            _Connection([addr, sock, eventlet.wsgi.STATE_IDLE], self.wsgi)
        except OSError as exc:
            if not self.closing:
                self.ended(exc, addr)
        except Exception:
            LOG.exception("REST: connection from %s failed", tls.peer(addr))
            self.count("rest_connection_error")
        finally:
            self.connections.give(addr[0])
            greenio.shutdown_safe(sock)
            sock.close()

    def ended(self, exc: OSError, addr, timeout: str = "rest_timeout_write") -> None:
        """A connection that broke in the middle of a request or a response:
        counted by why, one line."""
        if isinstance(exc, ssl.SSLError):
            self.count("rest_tls_error")
            LOG.warning("REST: TLS error with %s: %s", tls.peer(addr), exc.reason or exc)
        elif isinstance(exc, TimeoutError):
            self.count(timeout)
            LOG.info("REST: %s closed, %s", tls.peer(addr), timeout.replace("_", " "))
        else:
            self.count("rest_client_disconnected")
            LOG.info("REST: %s went away mid-request (%s)", tls.peer(addr),
                     exc.strerror or exc)

    def close(self) -> None:
        """Stop accepting and end every connection."""
        self.closing = True
        self.server.close()
        for thread in list(self._threads):
            thread.kill()


def _refusal(reason: str) -> bytes:
    detail = ("the controller has all the REST connections it takes open" if reason == "full"
              else "this address has all the REST connections it may have open")
    body = Problem("unavailable", detail).response().body
    return (b"HTTP/1.1 503 Service Unavailable\r\nContent-Type: application/problem+json\r\n"
            b"Retry-After: 1\r\nConnection: close\r\nContent-Length: %d\r\n\r\n%s"
            % (len(body), body))


class _Connection(eventlet.wsgi.HttpProtocol):
    """One connection: eventlet's HTTP handling, within the listener's bounds."""

    def __init__(self, conn_state, server):
        self.listener: RestServer = server.listener
        self.limits = self.listener.settings
        self.requests = 0
        self._header_timer = None
        self._phase = "header"
        super().__init__(conn_state, server)

    def setup(self):
        super().setup()
        self.wfile = _Writer(self.wfile, self._write_failed)

    def handle(self):
        try:
            super().handle()
        except _HeaderTimeout:
            self.listener.count("rest_timeout_header")
            LOG.info("REST: %s closed, no whole request line and headers within %.3g s",
                     tls.peer(self.client_address), self.limits.rest_header_timeout_s)
        except OSError as exc:
            if isinstance(exc, ssl.SSLError) or self._phase != "idle":
                self.listener.ended(exc, self.client_address, "rest_timeout_header")

    def _read_request_line(self):
        if self.rfile.closed:
            self.close_connection = 1
            return ""
        if self.requests:
            # Between two requests: idle until the next one's first byte.
            self._phase = "idle"
            self.connection.settimeout(self.limits.rest_idle_timeout_s)
            try:
                if not self.rfile.peek(1):
                    return ""   # the client closed it
            except TimeoutError:
                self.listener.count("rest_timeout_idle")
                LOG.debug("REST: %s closed, idle for %.3g s", tls.peer(self.client_address),
                          self.limits.rest_idle_timeout_s)
                return ""
        # The first request's bound runs from the accept, a later one's from
        # its first byte; the whole line and headers, however they trickle.
        self._phase = "header"
        self.requests += 1
        self.connection.settimeout(self.limits.rest_header_timeout_s)
        self._header_timer = eventlet.Timeout(self.limits.rest_header_timeout_s,
                                              _HeaderTimeout())
        return super()._read_request_line()

    def handle_one_request(self):
        try:
            super().handle_one_request()
        finally:
            self._stop_header_timer()

    def _stop_header_timer(self):
        if self._header_timer is not None:
            self._header_timer.cancel()
            self._header_timer = None

    def get_environ(self):
        """Called once the headers are in: the body's bound starts."""
        self._stop_header_timer()
        self._phase = "response"
        # A response the client does not take (a stream it stopped reading)
        # ends after the idle timeout.
        self.connection.settimeout(self.limits.rest_idle_timeout_s)
        env = super().get_environ()
        body = _Body(env["wsgi.input"], self,
                     time.monotonic() + self.limits.rest_body_timeout_s)
        env["wsgi.input"] = env["eventlet.input"] = body
        env["wsgi.input_terminated"] = True   # chunked bodies end: webob may read them
        return env

    def handle_one_response(self):
        application = self.application
        writer = self.wfile

        def guarded(environ, start_response):
            result = application(environ, start_response)
            # A complete response (with a length) is written at once; only
            # an open-ended one needs to stop when the client is gone.
            return result if hasattr(result, "__len__") else _Stopping(result, writer)

        self.application = guarded
        super().handle_one_response()

    def send_error(self, code, message=None, explain=None):
        """http.server's own refusals (a request line or header it cannot
        parse, an HTTP version it does not speak): counted, logged through
        the logger, answered as a problem like every other refusal.  Its
        default writes an HTML page and a line to stderr, outside the log."""
        self.listener.count("rest_malformed_http")
        LOG.info("REST: %s sent what is no HTTP request: %d %s", tls.peer(self.client_address),
                 code, message)
        self.close_connection = 1
        phrase = self.responses.get(code, ("Error",))[0]
        body = json.dumps({"type": "about:blank", "title": phrase, "status": code,
                           "detail": message or phrase}).encode()
        try:
            self.wfile.write(b"HTTP/1.1 %d %s\r\nContent-Type: application/problem+json\r\n"
                             b"Content-Length: %d\r\nConnection: close\r\n\r\n%s"
                             % (code, phrase.encode(), len(body), body))
            self.wfile.flush()
        except OSError:
            pass

    def log_message(self, format, *args):
        # Whatever else http.server would print to stderr goes to the log.
        LOG.info("REST: %s: %s", tls.peer(self.client_address), format % args)

    def _write_failed(self, exc: OSError) -> None:
        self.close_connection = 1
        self.listener.ended(exc, self.client_address)


class _Body(eventlet.wsgi.Input):
    """The request body, bounded in time as a whole; once a read fails, the
    connection ends with this request."""

    def __init__(self, source: eventlet.wsgi.Input, connection: _Connection, deadline: float):
        super().__init__(source.rfile, source.content_length, source.get_socket(),
                         wfile=source.wfile, wfile_line=source.wfile_line,
                         chunked_input=source.chunked_input)
        self.connection = connection
        self.deadline = deadline

    def _do_read(self, reader, length=None):
        return self._bounded(super()._do_read, reader, length)

    def _chunked_read(self, rfile, length=None, use_readline=False):
        return self._bounded(super()._chunked_read, rfile, length, use_readline)

    def _bounded(self, read, *args):
        try:
            left = self.deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError("the body did not arrive in time")
            with eventlet.Timeout(left, TimeoutError("the body did not arrive in time")):
                return read(*args)
        except (OSError, ValueError):   # ValueError: broken chunked framing
            self.connection.close_connection = 1
            raise

    def discard(self, buffer_size=16 << 10):
        """What the application left unread, read and dropped to keep the
        connection, unless there is more than a little of it."""
        left = DISCARD_MAX_BYTES
        try:
            while left > 0:
                data = self.read(min(buffer_size, left))
                if not data:
                    return
                left -= len(data)
        except (OSError, ValueError):
            pass
        self.connection.close_connection = 1


class _Writer:
    """The connection's write side.  A write that fails (the client is gone,
    or took nothing for the send timeout) is reported once and every later
    one is dropped, instead of raising into eventlet, which would log a
    traceback; :class:`_Stopping` then ends the response."""

    def __init__(self, file, failed):
        self.file = file
        self.failed = failed
        self.broken = False

    def _do(self, method, *args):
        if self.broken:
            return None
        try:
            return method(*args)
        except OSError as exc:
            self.broken = True
            self.failed(exc)
            return None

    def write(self, data):
        self._do(self.file.write, data)
        return len(data)

    def writelines(self, lines):
        for line in lines:
            self.write(line)

    def flush(self):
        self._do(self.file.flush)

    @property
    def closed(self):
        return self.file.closed

    def close(self):
        try:
            self.file.close()
        except OSError:
            pass


class _Stopping:
    """An open-ended response (an event stream) that stops once a write to
    its client failed; closing it closes the application's iterator, so
    whatever it holds (its stream slot) is given back."""

    def __init__(self, result, writer: _Writer):
        self.result = result
        self.writer = writer

    def __iter__(self):
        for chunk in self.result:
            if self.writer.broken:
                return
            yield chunk

    def close(self):
        close = getattr(self.result, "close", None)
        if close is not None:
            close()


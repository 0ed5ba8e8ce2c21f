"""The AA's RADIUS socket: the one UDP socket the controller sends every
domain's Access-Requests from and hears their answers on.

Sends come from the worker (the one send point passes the core's
:class:`mpa_sdn.radius_client.Datagram` here).  A green thread reads answers
and queues each for the worker, like a packet-in: at most
``controller.radius_queue`` wait at once, beyond that one is dropped and
counted (the RADIUS client sends the request again).  An unconnected socket
on an ephemeral port: each answer names its server, which the core checks.
"""

from __future__ import annotations

import logging

from eventlet.green import socket
from ryu.lib import hub

LOG = logging.getLogger("apps.radius_socket")
MAX_DATAGRAM = 4096     # RFC 2865 §3: a RADIUS packet's largest


class RadiusSocket:
    def __init__(self, post, counters, queue_bound: int, address: str = "0.0.0.0"):
        self.post = post                  # (data, source) -> queued for the worker
        self.counters = counters
        self.queue_bound = queue_bound
        self.waiting = 0
        # Green whether or not Ryu patched the standard library: a blocking
        # read in the reader would stop every green thread of the process.
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind((address, 0))
        self.thread = None

    def start(self):
        self.thread = hub.spawn(self._receive)
        return self.thread

    def send(self, datagram) -> None:
        try:
            self.sock.sendto(datagram.data, (datagram.address, datagram.port))
            self.counters["radius_datagrams_sent"] += 1
        except OSError as exc:
            # The client sends it again on its timer, then fails over.
            self.counters["radius_send_failed"] += 1
            LOG.warning("RADIUS to %s:%d not sent: %s", datagram.address, datagram.port,
                        exc.strerror or exc)

    def handled(self) -> None:
        """The worker took one answer off the queue."""
        self.waiting -= 1

    def _receive(self):
        while True:
            try:
                data, source = self.sock.recvfrom(MAX_DATAGRAM + 1)
            except OSError as exc:   # an ICMP error for an earlier send
                self.counters["radius_receive_errors"] += 1
                LOG.debug("RADIUS socket: %s", exc)
                continue
            if self.waiting >= self.queue_bound:
                self.counters["radius_queue_full"] += 1
                continue
            self.waiting += 1
            self.post(data, source[:2])

    def close(self) -> None:
        if self.thread is not None:
            hub.kill(self.thread)
        self.sock.close()

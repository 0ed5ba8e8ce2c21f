"""What the lab's hosts and switches print through Mininet, decoded without
ever stopping the lab.

Mininet runs each node's commands in a shell on a pty and decodes what it
reads there with a strict UTF-8 decoder (mininet/node.py, ``Node.read``;
``Node.pexec`` decodes a command's whole output the same way).  Its decoder
is incremental, so a character cut in two by a read is put back together,
but one byte that is not UTF-8 (binary output, a program writing a
character set of its own, two writers interleaved on the one pty) raises
``UnicodeDecodeError`` out of whatever ``cmd`` was running: from deep in a
run, with neither the host nor the command named.

The lab's controller nodes met it first: Mininet probes a remote
controller with telnet, which may print the controller's binary OpenFlow
HELLO on the pty (:class:`LabRemoteController` probes with a connect()).

What a node prints there is a log to read or to search (ping's summary,
``ip`` output), not a document, so a byte that is not UTF-8 becomes U+FFFD
and the rest goes on.  Each such byte is counted on the node
(``undecodable_bytes``) and logged once per read with the node and the
command that printed it.  Output that must be a document (mpa-mn's JSON)
is not read through the pty at all but from a pipe, strictly
(mpa_protocol/program_output.py).
"""

from __future__ import annotations

import codecs
import logging
import re
import socket
import subprocess
from typing import Callable

from mininet.log import warn
from mininet.node import Host, Node, RemoteController

from mpa_lab.plain_logging import lab_logger
from mpa_protocol.program_output import CONTEXT_BYTES

LOG = lab_logger("mpa_lab.net.host_output")
REPLACEMENT = "\ufffd"
# What the "surrogateescape" handler turns each undecodable byte into.
_ESCAPED = re.compile("[\udc80-\udcff]")


class OutputDecoder:
    """An incremental UTF-8 decoder for a stream that is a log: a character
    split across reads is kept whole; a byte that is not UTF-8 is replaced,
    counted (``replaced``) and reported with ``source()`` (who printed it)."""

    def __init__(self, source: Callable[[], str]):
        self.source = source
        self.replaced = 0
        # Undecodable bytes come out as lone surrogates, which UTF-8 text
        # cannot hold: exactly the bytes to count and replace.
        self._decoder = codecs.getincrementaldecoder("utf-8")(errors="surrogateescape")

    def decode(self, data: bytes, final: bool = False) -> str:
        text = self._decoder.decode(data, final)
        bad = _ESCAPED.findall(text)
        if not bad:
            return text
        self.replaced += len(bad)
        first = text.index(bad[0])
        LOG.warning("%s printed %d byte(s) that are not UTF-8 (the first: %s, after %r); "
                    "shown as U+FFFD", self.source(), len(bad),
                    " ".join(f"{ord(c) - 0xdc00:02x}" for c in bad[:8]),
                    text[max(0, first - CONTEXT_BYTES):first])
        return _ESCAPED.sub(REPLACEMENT, text)


def decoded(data: bytes, source: str) -> str:
    """A command's whole output, decoded as :class:`OutputDecoder` does."""
    return OutputDecoder(lambda: source).decode(data, final=True)


class LenientOutput:
    """A Mininet node (mixed in before Host or OVSSwitch) whose output is
    decoded by :class:`OutputDecoder`."""

    @property
    def undecodable_bytes(self) -> int:
        """Bytes of this node's output that were not UTF-8, so far."""
        return self.decoder.replaced

    def _printed_by(self) -> str:
        return f"{self.name}, running {self.lastCmd!r}" if self.lastCmd else self.name

    def startShell(self, *args, **kwargs):
        # Before Mininet's startShell: it reads the shell's first prompt.
        self.decoder = OutputDecoder(self._printed_by)
        return super().startShell(*args, **kwargs)

    def pexec(self, *args, **kwargs):
        """``Node.pexec`` (out, err, exit code), decoded leniently."""
        popen = self.popen(*args, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                           stderr=subprocess.PIPE, **kwargs)
        out, err = popen.communicate()
        command = " ".join(str(a) for a in args)
        return (decoded(out, f"{self.name}, running {command!r}"),
                decoded(err, f"{self.name}, running {command!r} (stderr)"), popen.wait())


class LabHost(LenientOutput, Host):
    """The lab's hosts: Mininet's, with :class:`LenientOutput`."""


class LabNode(LenientOutput, Node):
    """A plain Mininet node of the lab's (its link layer's namespace), with
    :class:`LenientOutput`."""


class LabRemoteController(LenientOutput, RemoteController):
    """Mininet's remote controller, with :class:`LenientOutput`, that finds
    out whether the controller listens without printing what it says.

    Mininet asks ``echo A | telnet -e A IP PORT`` in the node's shell.  The
    controller answers a connection with an OpenFlow HELLO, eight bytes
    whose last four (the xid) are random.  When telnet prints it before it
    quits (a race), it lands on the pty, and random bytes are often not
    UTF-8: Mininet's reader raised ``'utf-8' codec can't decode byte 0x85``
    (0x91, ...) out of ``Mininet.addController``, and ``mpa-lab run`` stopped
    as a session started, with that line alone.  A connect() tells as much
    and reads nothing."""

    connect_timeout_s = 2.0

    def isListening(self, ip, port):
        try:
            socket.create_connection((ip, port), timeout=self.connect_timeout_s).close()
        except OSError as exc:
            warn(f"Unable to contact the remote controller at {ip}:{port} "
                 f"({exc.strerror or exc})\n")
            return False
        return True

"""One PANA session at the PAA (mpa_sdn.pana_agent) between PCI and the
final PAN: its state, kept in memory only, and the reply that goes back the
way the PaC's last message came."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable

from mpa_protocol import eap, pana
from mpa_protocol.eap import EapError

STARTING, EAP_RUN, AAA_WAIT, COMPLETING = "starting", "eap", "aaa", "completing"


class Uniform:
    """What the timers draw their jitter from, over an injected [0, 1) source."""

    def __init__(self, rand: Callable[[], float]):
        self.rand = rand

    def uniform(self, low: float, high: float) -> float:
        return low + (high - low) * self.rand()


def eap_code(packet: bytes | None) -> int | None:
    """An EAP packet's Code, None when it is no EAP packet."""
    try:
        return eap.decode(packet).code if packet else None
    except EapError:
        return None


def identity_of(packet: bytes | None) -> str | None:
    try:
        return eap.identity_of(packet) if packet else None
    except EapError:
        return None


@dataclass(frozen=True)
class PanaReply:
    """A PANA message to the PaC, back the way its last message came."""

    origin: Any      # mpa_sdn.service.Origin of the PaC's last message
    data: bytes


@dataclass
class Session:
    """One PANA session between PCI and the final PAN (memory only)."""

    id: int
    network: str
    domain: str
    source: str                  # the PaC's address
    port: int                    # and UDP port
    origin: Any                  # where replies go (the last message's)
    pre: bool                    # RFC 5873: the MN is elsewhere (E flag)
    seen_mac: str | None         # the frame's source MAC, on a link of ours
    expires: float
    started: float               # when its PCI came (Tauth runs from here)
    paa_seq: int                 # the sequence number of the PAR outstanding (or last)
    phase: str = STARTING
    i_par: bytes = b""           # RFC 5191 §5.3: the initial PAR and PAN as sent
    i_pan: bytes = b""
    prf: int | None = None
    integrity: int | None = None
    paa_nonce: bytes = b""
    pac_nonce: bytes | None = None
    identity: str | None = None
    eap_id: int = 0              # the last EAP-Request's identifier
    radius_state: bytes | None = None
    last_par: bytes = b""        # what a retransmission sends
    retransmission: Any = None   # pana.Retransmission of last_par
    pac_answer: bytes | None = None   # the PAN to a PaC's own PAR, for its retransmission
    pac_seq: int | None = None
    key_id: int | None = None
    auth_key: bytes | None = None
    msk: bytes | None = field(default=None, repr=False)
    lifetime: int = 0
    result: int | None = None    # the final PAR's Result-Code
    scheduled: int = 0           # the generation of its one live entry in the PAA's heap

    @property
    def flags(self) -> int:
        return pana.FLAG_E if self.pre else 0


def calling_station(session: Session) -> str:
    """Calling-Station-Id (RFC 3580 §3.20): the MN's MAC as the AA saw it,
    upper case with hyphens; its address when it came from elsewhere."""
    if session.seen_mac is None:
        return session.source
    return session.seen_mac.upper().replace(":", "-")


def newer(seq: int, last: int) -> bool:
    """RFC 5191 §4.1: sequence numbers wrap; newer is ahead by under half the space."""
    return 0 < ((seq - last) & 0xFFFFFFFF) < 0x80000000

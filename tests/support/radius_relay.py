"""A UDP relay between a RADIUS client (eapol_test) and a server that hands
every answer to ``mpa_sdn.radius.parse_answer`` on its way back: what the
codec makes of a real server's answers in a real EAP conversation."""

from __future__ import annotations

import select
import socket
import threading
from dataclasses import dataclass, field

from mpa_sdn import radius


@dataclass
class Relayed:
    code: int
    answer: radius.Answer | None = None
    refused: str | None = None           # the RadiusError's reason


@dataclass
class RadiusRelay:
    server: tuple[str, int]
    secret: bytes
    answers: list[Relayed] = field(default_factory=list)

    def __enter__(self) -> "RadiusRelay":
        self._front = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._front.bind(("127.0.0.1", 0))
        self._back = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self._back.connect(self.server)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()
        return self

    @property
    def port(self) -> int:
        return self._front.getsockname()[1]

    def _run(self) -> None:
        requests, client = {}, None
        while not self._stop.is_set():
            ready, _, _ = select.select([self._front, self._back], [], [], 0.1)
            if self._front in ready:
                data, client = self._front.recvfrom(65535)
                requests[data[1]] = data
                self._back.send(data)
            if self._back in ready:
                data = self._back.recv(65535)
                self._check(data, requests.get(data[1]))
                if client is not None:
                    self._front.sendto(data, client)

    def _check(self, data: bytes, request: bytes | None) -> None:
        relayed = Relayed(code=data[0])
        try:
            if request is None:
                raise radius.RadiusError("late")
            relayed.answer = radius.parse_answer(data, identifier=request[1],
                                                 request_authenticator=request[4:20],
                                                 secret=self.secret)
        except radius.RadiusError as e:
            relayed.refused = e.reason
        self.answers.append(relayed)

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join(5)
        self._front.close()
        self._back.close()

"""The MN's link faked: a packet socket whose clock moves only while the client
waits, and entropy whose draws the test chooses."""

import socket


def draws(*fractions):
    """Entropy whose every 4-byte draw is the next of ``fractions`` of 2**32
    (in turn, again and again): random waits and ids the test chooses."""
    state = {"i": 0}

    def entropy(n):
        assert n == 4
        fraction = fractions[state["i"] % len(fractions)]
        state["i"] += 1
        return min(int(fraction * 2**32), 2**32 - 1).to_bytes(4, "big")
    return entropy


class Air:
    """A packet socket on a link with a fake clock.  ``answer(frame)`` gives,
    for each frame the client sends, the frames that come back (each a frame,
    or (delay_s, frame)); ``later`` frames arrive at their time."""

    def __init__(self, answer=None):
        self.now = 0.0
        self.answer = answer or (lambda frame: [])
        self.sent, self.queue, self.timeout = [], [], None

    def clock(self):
        return self.now

    def send(self, frame):
        self.sent.append((self.now, frame))
        for reply in self.answer(frame):
            delay, reply = reply if isinstance(reply, tuple) else (0.0, reply)
            self.queue.append((self.now + delay, reply))
        return len(frame)

    def settimeout(self, seconds):
        self.timeout = seconds

    def recvfrom(self, size):
        due = sorted((at, i) for i, (at, _) in enumerate(self.queue)
                     if at <= self.now + self.timeout)
        if not due:
            self.now += self.timeout
            raise socket.timeout()
        at, index = due[0]
        self.now = max(self.now, at)
        return self.queue.pop(index)[1], ("eth0", 0x0800, 0, 1, b"")

    def close(self):
        pass

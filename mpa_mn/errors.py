"""The MN's own errors (a refusal by the network is a ProtocolError)."""


class MnError(Exception):
    """A problem on the MN's side (usage, configuration): no message was refused."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message

"""The transcripts both ends of a pre-authentication MAC (docs/signalling.md).

The MN and the AA each prove the PSK with an HMAC over the whole exchange
(:func:`mpa_protocol.keys.proof`); the AA's proof covers as well the MPA-SA it
grants.  Each field is length-prefixed (:func:`mpa_protocol.keys.field`), so
no two exchanges give the same bytes.  Both ends build these bytes here: a
change on one side alone would fail every pre-authentication.
"""

from __future__ import annotations

from mpa_protocol import keys


def exchange_transcript(identity: str, network: str, mn_mac: str, nonce_mn: bytes,
                        nonce_aa: bytes, session: str) -> bytes:
    """What both proofs cover: who asks, where, both nonces and the session."""
    return b"".join(keys.field(f) for f in (identity, network, mn_mac, nonce_mn, nonce_aa,
                                            session))


def success_transcript(transcript: bytes, sa_id: str, lifetime: int) -> bytes:
    """What the AA's proof covers: the exchange, and the SA it grants."""
    return transcript + keys.field(sa_id) + keys.field(str(lifetime))

"""docs/signalling.md is what the code does.

The worked example in the document is generated here, through the real
codec, AA and CA, with a fixed PSK and fixed random values; the test fails
when the code no longer produces it.  Every intermediate value the document
asks an implementer to compute (transcript, HKDF inputs, keys, proofs, MACs)
is computed again here from the document's recipe alone, with hashlib and
hmac, and checked against what the code sent.  The message and error tables
are checked against messages.SCHEMAS and messages.ERRORS, the phases a
handover-state answer reports against messages.HANDOVER_STATES.

To rewrite the example after a deliberate change:

    .venv/bin/python tests/unit/protocol/test_signalling_doc.py --write
"""

from __future__ import annotations

import collections
import hashlib
import hmac
import json
import os
import re
import sys

# Run as a script too (--write): the project and tests/ (for support) on the path.
TESTS = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
ROOT = os.path.dirname(TESTS)
sys.path[:0] = [TESTS, ROOT]

from mpa_mn import protocol  # noqa: E402
from mpa_protocol import messages  # noqa: E402
from mpa_sdn.config import load_topology  # noqa: E402
from mpa_sdn.neighbourhood import NeighbourhoodGraph  # noqa: E402
from mpa_sdn.service import INBAND, SILENT_IN_BAND, MpaService, Origin  # noqa: E402
from mpa_sdn.store import MemoryStore  # noqa: E402
from support.service_rig import Keys  # noqa: E402

DOC = os.path.join(ROOT, "docs", "signalling.md")
TOPOLOGY = os.path.join(ROOT, "topologies", "two_domains.yaml")
START, END = "<!-- worked-example:start -->", "<!-- worked-example:end -->"

IDENTITY = "mn1@domain-a"
NETWORK = "net-b1"
DOMAIN = "domain-b"
MN_MAC = "02:00:00:00:01:01"
MN_ADDRESS = "10.1.1.50"
NOW, WALL = 1000.0, 1_700_000_000.0


def fixed(label: str, n: int) -> bytes:
    """A fixed value that looks random, so a byte-order mistake shows."""
    return hashlib.sha256(b"mpa-sdn worked example " + label.encode()).digest()[:n]


PSK = fixed("psk", 32)
NONCE_MN = fixed("nonce_mn", 32)
SESSION = fixed("session", 16)
NONCE_AA = fixed("nonce_aa", 32)
SA_ID = fixed("sa", 16)


def aa_entropy():
    """The AA's draws, in the order it makes them: its decoy key at start-up,
    then a session id and nonce_aa per auth-init, an SA id per success."""
    draws = collections.deque([fixed("decoy", 32), SESSION, NONCE_AA, SA_ID])

    def entropy(n):
        value = draws.popleft()
        assert len(value) == n, "the AA draws its random values in another order now"
        return value
    return entropy


# -- the document's recipe, with nothing but hashlib and hmac -----------------------------

def field(value) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(2, "big") + data


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf32(ikm: bytes, salt: bytes, info: bytes) -> bytes:
    """RFC 5869 with SHA-256, 32 bytes: one round of expand."""
    prk = hmac256(salt, ikm)
    return hmac256(prk, info + b"\x01")


def info(label: str) -> bytes:
    return b"mpa-sdn v1" + b"".join(field(f) for f in (label, IDENTITY, NETWORK, NONCE_MN,
                                                         NONCE_AA))


def canonical(fields: dict) -> bytes:
    body = {k: v for k, v in fields.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# -- the exchange, through the real code ------------------------------------------------------

def _hex_lines(data: bytes, indent: str = "    ", width: int = 32) -> list[str]:
    return [indent + data[i:i + width].hex() for i in range(0, len(data), width)] or [indent]


def generate() -> str:
    topology = load_topology(TOPOLOGY)
    service = MpaService(topology, NeighbourhoodGraph(topology),
                         {DOMAIN: Keys(DOMAIN, {IDENTITY: PSK})}, MemoryStore(),
                         collections.Counter(), aa_entropy(), WALL - NOW, lambda a: None)
    now = NOW
    for _ in range(10):                 # DAD: a reserve of probed addresses, nobody answering
        service.tick(now)
        now += 0.1
    origin = Origin(INBAND, MN_ADDRESS, NETWORK, MN_MAC)

    def send(data: bytes) -> bytes:
        [answer] = service.handle(data, origin, now)
        return answer.body

    run = protocol.PreAuthentication(IDENTITY, PSK, NETWORK, MN_MAC, entropy=lambda n: NONCE_MN)
    init = run.init()
    challenge = send(init)
    response = run.response(challenge)
    success = send(response)
    state = run.finish(success, DOMAIN)
    config_request, seq = protocol.request(state, "config-request")
    config = send(config_request)
    protocol.check_answer(state, config, seq, "config")
    release, seq = protocol.request(state, "release", scope="all")
    released = send(release)
    protocol.check_answer(state, released, seq, "released")

    # The same values from the recipe alone, checked against the wire.
    transcript_fields = [IDENTITY, NETWORK, MN_MAC, NONCE_MN, NONCE_AA, SESSION.hex()]
    transcript = b"".join(field(f) for f in transcript_fields)
    salt = NONCE_MN + NONCE_AA
    auth_key = hkdf32(PSK, salt, info("auth"))
    proof_mn = hmac256(auth_key, field("mn") + transcript)
    lifetime = service.settings.sa_lifetime_s
    proof_aa = hmac256(auth_key, field("aa") + transcript + field(SA_ID.hex())
                       + field(str(lifetime)))
    root = hkdf32(PSK, salt, info("mpa-sa"))
    derived = {p: hkdf32(root, salt, info(p)) for p in ("mn-ca", "mn-ar", "signalling")}
    wire = {name: messages.decode(data, 65536, expect=tuple(messages.SCHEMAS)).fields
            for name, data in (("challenge", challenge), ("response", response),
                               ("success", success), ("config_request", config_request),
                               ("config", config), ("release", release),
                               ("released", released))}
    assert wire["challenge"]["session"] == SESSION.hex()
    assert wire["challenge"]["nonce"] == NONCE_AA.hex()
    assert wire["response"]["proof"] == proof_mn.hex()
    assert wire["success"]["proof"] == proof_aa.hex() and wire["success"]["sa"] == SA_ID.hex()
    assert state.keys.as_hex() == {p: k.hex() for p, k in derived.items()}
    assert service.aa.sas == {}, "release scope all ended the SA"
    for name in ("config_request", "config", "release", "released"):
        fields = wire[name]
        assert fields["mac"] == hmac256(derived["mn-ca"], canonical(fields)).hex(), name

    def message(title: str, data: bytes) -> list[str]:
        return [title, "", "```json", data.decode(), "```", ""]

    labels = {"identity": IDENTITY, "network": NETWORK, "mn_mac": MN_MAC,
              "nonce_mn": NONCE_MN, "nonce_aa": NONCE_AA, "session": SESSION.hex()}
    out = [
        "Inputs: the PSK is the MN's key in domain-b's store; `nonce_mn` is the MN's",
        "random draw, `session`, `nonce_aa` and `sa` the AA's, all fixed here. The CA's",
        "reserve of probed addresses is full, so the configuration comes at once.",
        "",
        "```text",
        f"identity   {IDENTITY}",
        f"network    {NETWORK}",
        f"mn_mac     {MN_MAC}",
        f"psk        {PSK.hex()}",
        f"nonce_mn   {NONCE_MN.hex()}",
        f"session    {SESSION.hex()}",
        f"nonce_aa   {NONCE_AA.hex()}",
        f"sa         {SA_ID.hex()}",
        "```",
        "",
        *message("1. MN → AA, `auth-init`:", init),
        *message("2. AA → MN, `auth-challenge`:", challenge),
        "The transcript, field by field (2-byte big-endian length, then the bytes;",
        "`session` is its 32 hex characters as text, the nonces are raw bytes):",
        "",
        "```text",
    ]
    for name, value in zip(labels, transcript_fields):
        out.append(f"{name:<9} {field(value).hex()}")
    out += [
        "```",
        "",
        "HKDF-SHA256 inputs for the auth key (`salt` = nonce_mn ‖ nonce_aa, 64 bytes;",
        "`info` = \"mpa-sdn v1\" ‖ field(\"auth\") ‖ field(identity) ‖ field(network) ‖",
        "field(nonce_mn) ‖ field(nonce_aa)), and the proofs:",
        "",
        "```text",
        "salt",
        *_hex_lines(salt),
        "info(\"auth\")",
        *_hex_lines(info("auth")),
        f"auth key   {auth_key.hex()}",
        "proof_mn = HMAC(auth key, field(\"mn\") ‖ transcript)",
        f"           {proof_mn.hex()}",
        "proof_aa = HMAC(auth key, field(\"aa\") ‖ transcript ‖ field(sa) ‖ field(lifetime))",
        f"           {proof_aa.hex()}",
        "```",
        "",
        *message("3. MN → AA, `auth-response`:", response),
        *message("4. AA → MN, `auth-success`:", success),
        "The MPA-SA's keys (root = HKDF(psk, salt, info(\"mpa-sa\")); each purpose key =",
        "HKDF(root, salt, info(purpose))):",
        "",
        "```text",
        f"mpa-sa       {root.hex()}",
        *[f"{p:<12} {k.hex()}" for p, k in derived.items()],
        "```",
        "",
        "5. MN → CA, `config-request`. Its canonical form, the bytes the `mac` covers",
        "(HMAC-SHA256 under the mn-ca key):",
        "",
        "```json",
        canonical(wire["config_request"]).decode(),
        "```",
        "",
        *message("and the message as sent, `mac` added:", config_request),
        *message("6. CA → MN, `config` (the same key, the request's `seq`):", config),
        *message("7. MN → CA, `release` with `scope` `all`, `seq` 2:", release),
        *message("8. CA → MN, `released`; the MPA-SA is gone:", released),
    ]
    return "\n".join(out).rstrip() + "\n"


def section(text: str) -> str:
    start, end = text.index(START) + len(START), text.index(END)
    return text[start:end].strip("\n") + "\n"


# -- tests ---------------------------------------------------------------------------------------

def test_the_worked_example_is_what_the_code_produces():
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    assert section(doc) == generate(), \
        "docs/signalling.md is stale: run .venv/bin/python tests/unit/protocol/test_signalling_doc.py --write"


def test_the_canonical_form_shown_in_the_text_is_the_example_s():
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    text = doc.split("### Canonical form and MAC")[1].split("```json\n")[1].split("\n```")[0]
    assert "```json\n" + text + "\n```" in section(doc)


def _tables(doc: str, heading_re: str) -> dict[str, list[list[str]]]:
    """Rows of the first table under each heading matching ``heading_re``."""
    result: dict[str, list[list[str]]] = {}
    current = None
    for line in doc.splitlines():
        m = re.match(heading_re, line)
        if m:
            current = m.group(1)
            result[current] = []
        elif line.startswith("#"):
            current = None
        elif current is not None and line.startswith("|") and not line.startswith("|--") \
                and not line.startswith("| ---"):
            result[current].append([c.strip() for c in line.strip("|").split("|")])
    return result


def test_every_message_type_is_documented_with_exactly_its_fields():
    with open(DOC, encoding="utf-8") as f:
        tables = _tables(f.read(), r"#### `([a-z-]+)`")
    assert set(tables) == set(messages.SCHEMAS)
    for kind, (required, optional) in messages.SCHEMAS.items():
        rows = tables[kind][1:]   # after the header row
        names = {r[0].strip("`") for r in rows}
        assert names == {"v", "type"} | set(required) | set(optional), kind
        documented_optional = {r[0].strip("`") for r in rows if "optional" in r[-1]}
        assert documented_optional == set(optional), kind


def test_every_error_code_is_documented_with_its_status_and_silence():
    with open(DOC, encoding="utf-8") as f:
        doc = f.read()
    rows = _tables(doc, r"### (Error codes)")["Error codes"][1:]
    documented = {r[0].strip("`"): (int(r[1]), r[2] == "silent") for r in rows}
    assert documented == {code: (status, code in SILENT_IN_BAND)
                          for code, status in messages.ERRORS.items()}



def test_the_handover_states_are_the_ones_documented():
    with open(DOC, encoding="utf-8") as f:
        rows = _tables(f.read(), r"#### `([a-z-]+)`")["handover-state"][1:]
    phase = next(r for r in rows if r[0] == "`phase`")
    assert re.findall(r"`([a-z-]+)`", phase[-1]) == list(messages.HANDOVER_STATES)


if __name__ == "__main__":
    example = generate()
    if sys.argv[1:] == ["--write"]:
        with open(DOC, encoding="utf-8") as f:
            text = f.read()
        head, tail = text.split(START)[0], text.split(END)[1]
        with open(DOC, "w", encoding="utf-8") as f:
            f.write(f"{head}{START}\n{example}{END}{tail}")
    else:
        sys.stdout.write(example)

"""docs/signalling.md is what the code does.

The worked example in the document is generated here, through the real
codec, AA and CA, from a fixed MSK and fixed PANA values (what a PANA session
leaves at both ends: EAP-TLS itself draws randomness no test can fix); the
test fails when the code no longer produces it.  Every intermediate value the
document asks an implementer to compute (HKDF inputs, the SA's id and keys,
MACs) is computed again here from the document's recipe alone, with hashlib
and hmac, and checked against what the code sent.  The message and error tables
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
from mpa_protocol import keys, messages  # noqa: E402
from mpa_sdn.assembly import domains_aaa  # noqa: E402
from mpa_sdn.config import load_topology  # noqa: E402
from mpa_sdn.neighbourhood import NeighbourhoodGraph  # noqa: E402
from mpa_sdn.service import INBAND, SILENT_IN_BAND, MpaService, Origin  # noqa: E402
from mpa_sdn.store import MemoryStore  # noqa: E402

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


MSK = fixed("msk", 32) + fixed("msk, second half", 32)   # what EAP left at both ends
SESSION = 0x5a17c0de            # the PANA Session Identifier
KEY_ID = 0x0badcafe             # the MSK's Key-Id
NONCE_PAC = fixed("nonce_pac", 20)
NONCE_PAA = fixed("nonce_paa", 20)


# -- the document's recipe, with nothing but hashlib and hmac -----------------------------

def field(value) -> bytes:
    data = value.encode() if isinstance(value, str) else value
    return len(data).to_bytes(2, "big") + data


def hmac256(key: bytes, data: bytes) -> bytes:
    return hmac.new(key, data, hashlib.sha256).digest()


def hkdf(ikm: bytes, salt: bytes, info: bytes, n: int = 32) -> bytes:
    """RFC 5869 with SHA-256, up to 32 bytes: one round of expand."""
    prk = hmac256(salt, ikm)
    return hmac256(prk, info + b"\x01")[:n]


def info(label: str) -> bytes:
    return b"mpa-sdn v2" + b"".join(field(f) for f in (
        label, IDENTITY, NETWORK, SESSION.to_bytes(4, "big"), KEY_ID.to_bytes(4, "big"),
        NONCE_PAC, NONCE_PAA))


def canonical(fields: dict) -> bytes:
    body = {k: v for k, v in fields.items() if k != "mac"}
    return json.dumps(body, sort_keys=True, separators=(",", ":"), ensure_ascii=True).encode()


# -- the exchange, through the real code ------------------------------------------------------

def _hex_lines(data: bytes, indent: str = "    ", width: int = 32) -> list[str]:
    return [indent + data[i:i + width].hex() for i in range(0, len(data), width)] or [indent]


def generate() -> str:
    topology = load_topology(TOPOLOGY)
    counters = collections.Counter()
    service = MpaService(topology, NeighbourhoodGraph(topology),
                         domains_aaa(topology, {}, counters, bytes), MemoryStore(), counters,
                         bytes, WALL - NOW, lambda a: None)
    now = NOW
    for _ in range(10):                 # DAD: a reserve of probed addresses, nobody answering
        service.tick(now)
        now += 0.1
    origin = Origin(INBAND, MN_ADDRESS, NETWORK, MN_MAC)

    def send(data: bytes) -> bytes:
        [answer] = service.handle(data, origin, now)
        return answer.body

    # The PANA session succeeded: both ends make the MPA-SA from what it left,
    # the AA as its PAA does once the final PAN proves the key.
    sa_id, sa_keys = keys.SaBinding(IDENTITY, NETWORK, SESSION, KEY_ID, NONCE_PAC,
                                    NONCE_PAA).sa(MSK)
    lifetime = service.settings.sa_lifetime_s
    service.aa.establish(sa_id=sa_id, identity=IDENTITY, domain=DOMAIN, network=NETWORK,
                         sa_keys=sa_keys, lifetime=lifetime, source=MN_ADDRESS,
                         seen_mac=MN_MAC, pana_state={"session": SESSION}, now=service.wall(now))
    state = protocol.SaState(NETWORK, DOMAIN, IDENTITY, MN_MAC, sa_id, sa_keys, lifetime)
    config_request, seq = protocol.request(state, "config-request")
    config = send(config_request)
    protocol.check_answer(state, config, seq, "config")
    release, seq = protocol.request(state, "release", scope="all")
    released = send(release)
    protocol.check_answer(state, released, seq, "released")

    # The same values from the recipe alone, checked against the code.
    salt = NONCE_PAC + NONCE_PAA
    root = hkdf(MSK, salt, info("mpa-sa"))
    derived = {p: hkdf(root, salt, info(p)) for p in ("mn-ca", "mn-ar", "signalling")}
    assert sa_id == hkdf(root, salt, info("sa-id"), 16).hex()
    assert sa_keys.as_hex() == {p: k.hex() for p, k in derived.items()}
    wire = {name: messages.decode(data, 65536, expect=tuple(messages.SCHEMAS)).fields
            for name, data in (("config_request", config_request), ("config", config),
                               ("release", release), ("released", released))}
    assert service.aa.sas == {}, "release scope all ended the SA"
    for name in wire:
        fields = wire[name]
        assert fields["mac"] == hmac256(derived["mn-ca"], canonical(fields)).hex(), name

    def message(title: str, data: bytes) -> list[str]:
        return [title, "", "```json", data.decode(), "```", ""]

    out = [
        "Inputs: what a PANA session left at both ends (the MSK from EAP, at the AA from",
        "RADIUS's MS-MPPE keys; the PANA Session Identifier, the Key-Id and both Nonce AVPs),",
        "fixed here. The CA's reserve of probed addresses is full, so the configuration",
        "comes at once.",
        "",
        "```text",
        f"identity   {IDENTITY}",
        f"network    {NETWORK}",
        f"mn_mac     {MN_MAC}",
        f"session    {SESSION:08x}",
        f"key_id     {KEY_ID:08x}",
        f"nonce_pac  {NONCE_PAC.hex()}",
        f"nonce_paa  {NONCE_PAA.hex()}",
        "msk",
        *_hex_lines(MSK, "    "),
        "```",
        "",
        "HKDF-SHA256 inputs (`salt` = nonce_pac ‖ nonce_paa, 40 bytes; `info(label)` =",
        "\"mpa-sdn v2\" ‖ field(label) ‖ field(identity) ‖ field(network) ‖ field(session) ‖",
        "field(key_id) ‖ field(nonce_pac) ‖ field(nonce_paa)), the MPA-SA's root, id and keys:",
        "",
        "```text",
        "salt",
        *_hex_lines(salt),
        "info(\"mpa-sa\")",
        *_hex_lines(info("mpa-sa")),
        f"mpa-sa       {root.hex()}",
        f"sa           {sa_id}",
        *[f"{p:<12} {k.hex()}" for p, k in derived.items()],
        "```",
        "",
        "1. MN → CA, `config-request` (its first signed message: `mn_mac` binds the MPA-SA",
        "to the MN's MAC). Its canonical form, the bytes the `mac` covers (HMAC-SHA256 under",
        "the mn-ca key):",
        "",
        "```json",
        canonical(wire["config_request"]).decode(),
        "```",
        "",
        *message("and the message as sent, `mac` added:", config_request),
        *message("2. CA → MN, `config` (the same key, the request's `seq`):", config),
        *message("3. MN → CA, `release` with `scope` `all`, `seq` 2:", release),
        *message("4. CA → MN, `released`; the MPA-SA is gone:", released),
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

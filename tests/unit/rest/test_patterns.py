"""Every regular expression means what its own language says.

The OpenAPI document's patterns are ECMA-262's, as JSON Schema says, and the
server applies them so (rest_api/spec.py): ``$`` ends the string, where
Python's also matches before a final newline, and ``\\s`` is ECMA-262's
white space. The project's own patterns are Python's and always match a
whole value (``fullmatch`` or ``\\Z``), never up to a ``$``.
"""

from __future__ import annotations

import ast
import pathlib

import pytest
import regress

from support.service_rig import IDENTITY, MN_MAC
from mpa_protocol import messages
from rest_api import spec
from support.paths import ROOT

PACKAGES = ("mpa_sdn", "apps", "rest_api", "mpa_mn", "mpa_ctl", "mpa_lab")
# A value each of the document's patterns takes: a new pattern needs one here.
SAMPLES = {
    "^[0-9]{1,15}$": "42",
    "^[a-z-]{1,32}(,[a-z-]{1,32}){0,15}$": "handover,action",
    "^[\\x21-\\x7e]+$": "k-1",
    "^urn:mpa-sdn:problem:[a-z-]+$": "urn:mpa-sdn:problem:not-found",
    "^[A-Za-z][A-Za-z0-9_.-]{0,31}$": "net-b1",
    "^[^@\\s/]{1,200}@[^@\\s/]{1,200}$": IDENTITY,
    "^[0-9a-f]{2}(:[0-9a-f]{2}){5}$": MN_MAC,
    "^[0-9a-f]{32}$": "0123456789abcdef" * 2,
    "^[0-9a-f]{16}$": "0000000000000001",
}


def document_patterns(node) -> list[str]:
    if isinstance(node, dict):
        return [p for key, value in node.items() for p in (
            [value] if key == "pattern" and isinstance(value, str) else document_patterns(value))]
    if isinstance(node, list):
        return [p for value in node for p in document_patterns(value)]
    return []


def takes(pattern: str, value: str) -> bool:
    return spec.validator({"type": "string", "pattern": pattern}).is_valid(value)


# -- the document's, as ECMA-262 ------------------------------------------------------------

def test_every_pattern_in_the_document_is_compiled_as_ecma_262_at_load():
    found = document_patterns(spec.document())
    assert len(found) >= 10
    assert sorted(spec.patterns(spec.document()).values()) == sorted(found)
    for pattern in found:
        assert isinstance(spec.ecma_regex(pattern), regress.Regex)
    assert set(SAMPLES) == set(found)


@pytest.mark.parametrize("pattern", sorted(SAMPLES))
def test_no_pattern_of_the_document_takes_a_newline_at_either_end(pattern):
    value = SAMPLES[pattern]
    assert takes(pattern, value)
    assert not takes(pattern, value + "\n") and not takes(pattern, "\n" + value)
    assert not takes(pattern, value + "\r\n")


@pytest.mark.parametrize("char", ["\x1c", "\x1d", "\x1e", "\x1f", "\x85"])
def test_what_python_calls_white_space_and_ecma_262_does_not_is_taken(char):
    identity = SAMPLES["^[^@\\s/]{1,200}@[^@\\s/]{1,200}$"]
    assert takes("^[^@\\s/]{1,200}@[^@\\s/]{1,200}$", identity.replace("@", char + "@"))


@pytest.mark.parametrize("char", ["\ufeff", "\t", "\u00a0", "\u2028", "\u3000"])
def test_ecma_262s_white_space_is_refused(char):
    identity = SAMPLES["^[^@\\s/]{1,200}@[^@\\s/]{1,200}$"]
    assert not takes("^[^@\\s/]{1,200}@[^@\\s/]{1,200}$", identity.replace("@", char + "@"))


def test_a_pattern_is_searched_for_unanchored_as_json_schema_says():
    assert takes("b", "abc") and not takes("^b", "abc")


def test_a_pattern_reads_code_points_not_utf_16_units():
    assert takes("^.$", "\U0001F600")


@pytest.mark.parametrize("schema, pointer", [
    ({"a": {"pattern": "x\\Z"}}, "/a/pattern"),                   # Python's, not ECMA-262's
    ({"a": [{"pattern": "(?P<n>x)"}]}, "/a/0/pattern"),
    ({"b~/c": {"patternProperties": {"^x$": {}}}}, "/b~0~1c/patternProperties"),
    ({"a": {"type": "string", "format": "regex"}}, "/a/format"),
])
def test_a_document_with_a_pattern_not_applied_as_ecma_262_is_refused(schema, pointer):
    with pytest.raises(ValueError, match=f"{spec.PATH}: {pointer}: "):
        spec.patterns(schema)


def test_a_property_named_like_a_keyword_and_an_example_are_no_patterns():
    assert spec.patterns({"properties": {
        "pattern": {"type": "string", "pattern": "^a$", "example": {"pattern": "\\Z"}},
        "patternProperties": {"type": "object"},
        "format": {"type": "string", "examples": [{"format": "regex"}]}}}) == {
            "/properties/pattern/pattern": "^a$"}


# -- the project's own, as Python matched whole ---------------------------------------------------

def regex_literals(path: pathlib.Path):
    """(line, pattern) of every literal given to a function of ``re``."""
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                and isinstance(node.func.value, ast.Name) and node.func.value.id == "re"
                and node.args):
            first = node.args[0]
            if isinstance(first, ast.Constant) and isinstance(first.value, str):
                yield node.lineno, first.value
            elif isinstance(first, ast.JoinedStr):
                yield node.lineno, "".join(v.value for v in first.values
                                           if isinstance(v, ast.Constant))


def test_no_pattern_of_the_project_ends_in_a_dollar():
    """``re.match("...$")`` takes a final newline; the project says fullmatch or \\Z."""
    sources = [p for package in PACKAGES for p in sorted((ROOT / package).rglob("*.py"))]
    literals = [(p, line, pattern) for p in sources for line, pattern in regex_literals(p)]
    assert len(literals) > 10
    assert [f"{p.relative_to(ROOT)}:{line}: {pattern!r}" for p, line, pattern in literals
            if pattern.endswith("$") and not pattern.endswith("\\$")] == []


CONFIG_REQUEST = {"v": 1, "type": "config-request", "network": "net-b1", "sa": "ab" * 16,
                  "seq": 1, "mn_mac": MN_MAC, "mac": "00" * 32}


@pytest.mark.parametrize("field", ["network", "sa", "mn_mac", "mac"])
def test_a_signalling_field_with_a_final_newline_is_malformed(field):
    messages.decode(messages.encode(CONFIG_REQUEST), 4096)
    message = {**CONFIG_REQUEST, field: CONFIG_REQUEST[field] + "\n"}
    with pytest.raises(messages.SignallingError) as refused:
        messages.decode(messages.encode(message), 4096)
    assert refused.value.code == "malformed"

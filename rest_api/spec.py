"""The OpenAPI document (``openapi.yaml`` beside this file), loaded once, and
validators for what it says requests look like.

The document is the contract: request bodies, query parameters and
headers are checked against its schemas here, so what it says is what
the server enforces; a test checks every response against it too.

Its ``pattern`` s are ECMA-262 regular expressions, as JSON Schema says, and
are applied as such (by ``regress``), not as Python's: Python's ``$`` also
matches before a final newline and its ``\\s`` takes characters ECMA-262's
does not (U+001C to U+001F, U+0085), and leaves out U+FEFF.
"""

from __future__ import annotations

import functools
import json
import os
import re

import regress
import yaml
from jsonschema import Draft202012Validator, ValidationError, validators
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

PATH = os.path.join(os.path.dirname(__file__), "openapi.yaml")
BASE = "urn:mpa-sdn:openapi"


@functools.cache
def document() -> dict:
    """The document, once every regular expression in it is known to be one
    this module applies as ECMA-262 says (see :func:`patterns`)."""
    with open(PATH, encoding="utf-8") as f:
        # libyaml's loader where there is one: the pure-Python one took
        # 0.35 s of the first request.
        loaded = yaml.load(f, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    patterns(loaded)
    return loaded


def patterns(node, pointer: str = "") -> dict[str, str]:
    """Every ``pattern`` in ``node``, by JSON pointer, each compiled as
    ECMA-262; ValueError for one that is not ECMA-262, and for a keyword
    that jsonschema would apply with Python's ``re`` behind this module's
    back (``patternProperties``, which additionalProperties and
    unevaluatedProperties also match, and ``format: regex``)."""
    found = {}
    if isinstance(node, dict):
        for key, value in node.items():
            here = pointer + _step(key)
            if key in ("example", "examples"):
                continue                      # data, not schemas
            if key == "properties" and isinstance(value, dict):
                for name, subschema in value.items():   # names, not keywords
                    found.update(patterns(subschema, here + _step(name)))
            elif key == "pattern" and isinstance(value, str):
                try:
                    ecma_regex(value)
                except regress.RegressError as exc:
                    raise ValueError(f"{PATH}: {here}: {value!r} is not an ECMA-262 "
                                     f"regular expression: {exc}") from None
                found[here] = value
            elif key == "patternProperties" or key == "format" and value == "regex":
                raise ValueError(f"{PATH}: {here}: {key} would be checked with Python's "
                                 "regular expressions, not ECMA-262's; not supported")
            else:
                found.update(patterns(value, here))
    elif isinstance(node, list):
        for index, value in enumerate(node):
            found.update(patterns(value, pointer + _step(index)))
    return found


def _step(key) -> str:
    """One step of a JSON pointer (RFC 6901)."""
    return "/" + str(key).replace("~", "~0").replace("/", "~1")


# The document's patterns only: a fixed set, compiled once each.
@functools.cache
def ecma_regex(pattern: str) -> regress.Regex:
    """``pattern`` as ECMA-262 with the ``u`` flag (code points, not UTF-16
    units), as JSON Schema 2020-12 means it."""
    return regress.Regex(pattern, "u")


def _pattern(validator_, pattern: str, instance, schema):
    """The ``pattern`` keyword: ECMA-262's search, unanchored as JSON Schema's is."""
    if validator_.is_type(instance, "string") and ecma_regex(pattern).find(instance) is None:
        yield ValidationError(f"{instance!r} does not match {pattern!r}")


Validator = validators.extend(Draft202012Validator, {"pattern": _pattern})


@functools.cache
def document_json() -> bytes:
    return (json.dumps(document(), indent=1) + "\n").encode()


@functools.cache
def _registry() -> Registry:
    return Registry().with_resource(BASE, Resource(document(), DRAFT202012))


def _resolve(node: dict) -> dict:
    """A ``$ref`` to within the document, followed (one level at a time)."""
    while isinstance(node, dict) and "$ref" in node:
        node = functools.reduce(lambda d, key: d[key],
                                node["$ref"].lstrip("#/").split("/"), document())
    return node


def validator(schema: dict, format_checker=None) -> Validator:
    """A validator for ``schema``, a part of the document, its ``$ref`` s resolved in it."""
    wrapped = {"$schema": "https://json-schema.org/draft/2020-12/schema",
               "$id": BASE + "#local", **_rewrite(schema)}
    return Validator(wrapped, registry=_registry(), format_checker=format_checker)


def _rewrite(schema):
    """Local refs (``#/components/...``) point into the document resource."""
    if isinstance(schema, dict):
        return {k: (BASE + v if k == "$ref" and v.startswith("#") else _rewrite(v))
                for k, v in schema.items()}
    if isinstance(schema, list):
        return [_rewrite(v) for v in schema]
    return schema


def template_regex(template: str) -> re.Pattern:
    """``/a/{x}/b`` as a regex with a group per parameter (one path segment each)."""
    parts = re.split(r"(\{[a-z_]+\})", template)
    pattern = "".join(f"(?P<{p[1:-1]}>[^/]+)" if p.startswith("{") else re.escape(p)
                      for p in parts)
    return re.compile(pattern + r"/?\Z")


@functools.cache
def operations() -> dict[tuple[str, str], dict]:
    """(METHOD, path template) -> the operation, path-level parameters merged in."""
    found = {}
    for template, item in document()["paths"].items():
        shared = item.get("parameters", [])
        for method, op in item.items():
            if method in ("get", "post", "put", "patch", "delete"):
                found[(method.upper(), template)] = {
                    **op, "parameters": [_resolve(p) for p in shared + op.get("parameters", [])]}
    return found


class Checks:
    """What one operation takes: (parameter, validator) by name in each place
    (``path``, ``query``, ``header``, a header's name in lower case), and the
    body's validator."""

    def __init__(self, operation: dict):
        self.operation = operation
        self.path: dict[str, tuple] = {}
        self.query: dict[str, tuple] = {}
        self.header: dict[str, tuple] = {}
        places = {"path": self.path, "query": self.query, "header": self.header}
        for p in operation["parameters"]:
            name = p["name"].lower() if p["in"] == "header" else p["name"]
            places[p["in"]][name] = (p, validator(p["schema"]))
        body = operation.get("requestBody")
        schema = None
        if body is not None:
            schema = _resolve(body)["content"]["application/json"]["schema"]
        self.body = validator(schema) if schema is not None else None


def errors(validator_: Validator, value, prefix: str = "") -> list[dict]:
    """Every way ``value`` breaks the schema, as (JSON pointer, detail), at most 10."""
    found = []
    for error in sorted(validator_.iter_errors(value), key=lambda e: list(e.absolute_path)):
        pointer = prefix + "".join(_step(p) for p in error.absolute_path)
        found.append({"pointer": pointer or "/", "detail": _short(error)})
        if len(found) == 10:
            break
    return found


def _short(error) -> str:
    # The sender's own values are not echoed at length.
    if error.validator == "additionalProperties" or error.validator == "unevaluatedProperties":
        extra = sorted(set(error.instance) - set(error.schema.get("properties", {})))
        return "unknown field(s): " + ", ".join(ascii(k)[:34] for k in extra[:5])
    if error.validator == "required":
        return error.message
    if error.validator in ("maxLength", "maxItems", "minItems", "minLength", "maximum",
                           "minimum", "pattern", "enum", "type", "uniqueItems", "format",
                           "minProperties", "const"):
        return f"fails {error.validator} {json.dumps(error.validator_value)[:80]}"
    return error.message[:200]

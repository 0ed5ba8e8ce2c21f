"""The OpenAPI document (``openapi.yaml`` beside this file), loaded once, and
validators for what it says requests look like.

The document is the contract: request bodies, query parameters and
headers are checked against its schemas here, so what it says is what
the server enforces; a test checks every response against it too.
"""

from __future__ import annotations

import functools
import json
import os
import re

import yaml
from jsonschema import Draft202012Validator
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

PATH = os.path.join(os.path.dirname(__file__), "openapi.yaml")
BASE = "urn:mpa-sdn:openapi"


@functools.cache
def document() -> dict:
    with open(PATH, encoding="utf-8") as f:
        return yaml.safe_load(f)


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


def validator(schema: dict, format_checker=None) -> Draft202012Validator:
    """A validator for ``schema``, a part of the document, its ``$ref`` s resolved in it."""
    wrapped = {"$schema": "https://json-schema.org/draft/2020-12/schema",
               "$id": BASE + "#local", **_rewrite(schema)}
    return Draft202012Validator(wrapped, registry=_registry(), format_checker=format_checker)


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


def errors(validator_: Draft202012Validator, value, prefix: str = "") -> list[dict]:
    """Every way ``value`` breaks the schema, as (JSON pointer, detail), at most 10."""
    found = []
    for error in sorted(validator_.iter_errors(value), key=lambda e: list(e.absolute_path)):
        pointer = prefix + "".join(f"/{str(p).replace('~', '~0').replace('/', '~1')}"
                                   for p in error.absolute_path)
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

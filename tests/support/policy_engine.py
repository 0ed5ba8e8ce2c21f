"""A policy engine that knows the controller only through its OpenAPI document.

It reads ``/mpa/v1/openapi.json`` and nothing else of the project: it calls
operations by their ``operationId``, fills path templates from the
document, sends the security scheme the document names, adds an
``Idempotency-Key`` where the document takes one, checks each request body
against the document's schema before sending it, and each response body
against the schema of its status after.  Standard library and jsonschema
only.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
import uuid

import jsonschema
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

DOCUMENT_PATH = "/mpa/v1/openapi.json"
BASE = "urn:policy-engine:openapi"


class ApiError(Exception):
    def __init__(self, status: int, problem: dict):
        super().__init__(f"{status} {problem.get('type')}: {problem.get('detail')}")
        self.status, self.problem = status, problem


class PolicyEngine:
    def __init__(self, base_url: str, token: str, timeout: float = 10.0):
        self.base_url, self.token, self.timeout = base_url.rstrip("/"), token, timeout
        self.opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
        with self.opener.open(self.base_url + DOCUMENT_PATH, timeout=timeout) as response:
            self.document = json.loads(response.read())
        assert self.document["openapi"].startswith("3.1")
        self.registry = Registry().with_resource(BASE, Resource(self.document, DRAFT202012))
        self.operations = {}
        for template, item in self.document["paths"].items():
            for method, operation in item.items():
                if method in ("get", "post", "put", "patch", "delete"):
                    parameters = item.get("parameters", []) + operation.get("parameters", [])
                    self.operations[operation["operationId"]] = (
                        method.upper(), template, operation,
                        [self._resolve(p) for p in parameters])

    def _resolve(self, node):
        while isinstance(node, dict) and "$ref" in node:
            node = self._pointer(node["$ref"])
        return node

    def _pointer(self, ref: str):
        node = self.document
        for part in ref.lstrip("#/").split("/"):
            node = node[part]
        return node

    def _validator(self, schema: dict):
        def rebase(value):
            if isinstance(value, dict):
                return {k: BASE + v if k == "$ref" and v.startswith("#") else rebase(v)
                        for k, v in value.items()}
            return [rebase(v) for v in value] if isinstance(value, list) else value
        return jsonschema.Draft202012Validator(rebase(schema), registry=self.registry)

    def _bearer(self, operation: dict) -> bool:
        """Whether the document asks this operation for the bearer scheme."""
        security = operation.get("security", self.document.get("security", []))
        schemes = self.document["components"]["securitySchemes"]
        return any(schemes[name]["type"] == "http" and schemes[name]["scheme"] == "bearer"
                   for requirement in security for name in requirement)

    def call(self, operation_id: str, body: dict | None = None, query: dict | None = None,
             **path_params):
        """(status, body) of ``operation_id``; an error status raises ApiError."""
        method, template, operation, parameters = self.operations[operation_id]
        path = template
        for parameter in parameters:
            if parameter["in"] == "path":
                value = path_params.pop(parameter["name"])
                path = path.replace("{" + parameter["name"] + "}",
                                    urllib.parse.quote(str(value), safe="@"))
        assert not path_params, f"{operation_id} takes no {sorted(path_params)}"
        if query:
            path += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        if self._bearer(operation):
            headers["Authorization"] = f"Bearer {self.token}"
        if any(p["in"] == "header" and p["name"] == "Idempotency-Key" for p in parameters):
            headers["Idempotency-Key"] = str(uuid.uuid4())
        data = None
        if body is not None:
            schema = self._resolve(operation["requestBody"])["content"]["application/json"][
                "schema"]
            self._validator(schema).validate(body)     # only what the document allows
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(self.base_url + path, data=data, method=method,
                                         headers=headers)
        try:
            with self.opener.open(request, timeout=self.timeout) as response:
                status, content_type, raw = (response.status,
                                             response.headers.get_content_type(),
                                             response.read())
        except urllib.error.HTTPError as exc:
            with exc:
                status, content_type, raw = exc.code, exc.headers.get_content_type(), exc.read()
        answer = self._checked(operation, status, content_type, raw)
        if status >= 400:
            raise ApiError(status, answer)
        return status, answer

    def _checked(self, operation: dict, status: int, content_type: str, raw: bytes):
        responses = operation["responses"]
        entry = responses.get(str(status)) or responses.get(f"{str(status)[0]}XX")
        assert entry is not None, f"{operation['operationId']}: {status} is not in the document"
        content = self._resolve(entry).get("content", {})
        assert content_type in content, f"{operation['operationId']} {status}: {content_type}"
        if content_type not in ("application/json", "application/problem+json"):
            return raw
        body = json.loads(raw)
        self._validator(content[content_type]["schema"]).validate(body)
        return body

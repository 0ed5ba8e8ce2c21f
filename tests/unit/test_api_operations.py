"""The API document is the router: every operation it names has a handler,
and every handler an operation (a stale path made every request a 500)."""

from rest_api import spec
from rest_api.app import HANDLERS, routes


def _operations() -> set[str]:
    document = spec.document()
    return {op["operationId"] for item in document["paths"].values()
            for op in item.values() if isinstance(op, dict) and "operationId" in op}


def test_every_operation_of_the_document_has_a_handler():
    assert _operations() - set(HANDLERS) == set()


def test_every_handler_is_an_operation_of_the_document():
    assert set(HANDLERS) - _operations() == set()


def test_the_routes_are_built():
    assert {route.operation for route in routes()} == _operations()

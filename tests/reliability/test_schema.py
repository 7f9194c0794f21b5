"""schemathesis against the server's OpenAPI schema, through the ASGI app (no network): no 500s.

The app reads its JSON bodies itself (no pydantic models in the signatures), so its schema names
the routes and path parameters but no bodies; the test adds a loose body schema per route (the
fields each takes, typed as their documentation says, nothing required) so that schemathesis
generates bodies too. Routes that would reach the network or change the store's models from
outside (``/api/pull``, ``/api/push``, ``/api/create``) are left out; their bad input is in
tests/server.
"""

from __future__ import annotations

import json
import warnings
from collections import Counter
from datetime import timedelta

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings

from imgscribe.server import create_app

pytestmark = pytest.mark.timeout(120)

LEFT_OUT = {"/api/pull", "/api/push", "/api/create"}
EXAMPLES = 25  # per operation

_S, _N, _B, _I, _A, _O = ({"type": "string"}, {"type": "number"}, {"type": "boolean"}, {"type": "integer"},
                          {"type": "array"}, {"type": "object"})  # fmt: skip
_MESSAGE = {"type": "object", "properties": {"role": {"enum": ["system", "user", "assistant", "tool", "wizard"]},
                                             "content": {}, "images": {"type": "array", "items": _S}}}  # fmt: skip
_MESSAGES = {"type": "array", "items": _MESSAGE, "maxItems": 4}
_OPTIONS = {"type": "object", "properties": {"temperature": _N, "top_p": _N, "num_predict": _I, "seed": _I,
                                             "num_ctx": _I, "stop": {}}}  # fmt: skip
BODIES = {
    "/api/generate": {"model": _S, "prompt": _S, "images": {"type": "array", "items": _S}, "stream": _B,
                      "options": _OPTIONS, "format": {}, "system": _S, "raw": _B, "keep_alive": {}, "context": _A},
    "/api/chat": {"model": _S, "messages": _MESSAGES, "stream": _B, "options": _OPTIONS, "format": {}, "tools": _A},
    "/api/show": {"model": _S, "verbose": _B},
    "/api/delete": {"model": _S},
    "/api/copy": {"source": _S, "destination": _S},
    "/api/embed": {"model": _S, "input": {}, "truncate": _B},
    "/api/embeddings": {"model": _S, "prompt": _S},
    "/v1/chat/completions": {"model": _S, "messages": _MESSAGES, "stream": _B, "max_tokens": _I, "temperature": _N,
                             "n": _I, "response_format": _O, "stop": {}},
    "/v1/completions": {"model": _S, "prompt": {}, "max_tokens": _I, "stream": _B, "suffix": _S},
    "/v1/embeddings": {"model": _S, "input": {}},
    "/v1/responses": {"model": _S, "input": {}, "instructions": _S, "stream": _B, "max_output_tokens": _I},
    "/v1/messages": {"model": _S, "max_tokens": _I, "messages": _MESSAGES, "system": {}, "stream": _B},
}  # fmt: skip


def schema_of(app) -> dict:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # FastAPI's duplicate operation ids (GET and HEAD)
        spec = json.loads(json.dumps(app.openapi()))
    spec["paths"] = {p: ops for p, ops in spec["paths"].items() if p not in LEFT_OUT}
    for path, fields in BODIES.items():
        op = spec["paths"].get(path, {}).get("post") or spec["paths"].get(path, {}).get("delete")
        if op is not None:
            op["requestBody"] = {"required": True, "content": {"application/json": {
                "schema": {"type": "object", "properties": fields, "additionalProperties": True}}}}  # fmt: skip
    return spec


def test_no_operation_answers_500(echo_scheduler, record_property):
    """Every operation in the schema but pull, push and create: schemathesis's generated cases (path
    parameters, and bodies from the added schemas) sent to the ASGI app; every answer below 500."""
    app = create_app(echo_scheduler)
    schema = schemathesis.openapi.from_dict(schema_of(app))
    schema.app = app
    counts: Counter[str] = Counter()
    failures: list[str] = []
    operations = [result.ok() for result in schema.get_all_operations()]

    for operation in operations:

        @settings(max_examples=EXAMPLES, deadline=timedelta(seconds=5), database=None,
                  suppress_health_check=list(HealthCheck))  # fmt: skip
        @given(case=operation.as_strategy())
        def fuzz(case):
            response = case.call()
            counts[f"{response.status_code // 100}xx"] += 1
            if response.status_code >= 500:
                failures.append(f"{case.method} {case.path} {case.body!r:.200} -> {response.status_code} "
                                f"{response.text[:200]}")  # fmt: skip

        fuzz()
    record_property("outcomes", json.dumps({"counts": dict(counts), "operations": len(operations)}))
    assert not failures, failures[:10]

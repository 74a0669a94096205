"""Fuzz the API from its own OpenAPI document (schemathesis, bounded examples, real Redis):
no request may answer 5xx, and every answer must match the documented status codes, content
type and schema. Valid and invalid requests are both generated."""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)

from tests.procs import RedisServer

CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
EXAMPLES = 15


@pytest.fixture(scope="module")
def api_schema(redis_server: RedisServer) -> Any:
    from web import create_app

    app = create_app({"REDIS_URL": redis_server.url, "TESTING": True})
    return schemathesis.openapi.from_wsgi("/openapi.json", app)


@pytest.mark.parametrize("mode", [GenerationMode.POSITIVE, GenerationMode.NEGATIVE], ids=["valid", "invalid"])
def test_api_never_fails_and_matches_its_schema(api_schema: Any, mode: GenerationMode) -> None:
    """Generated requests for every operation never get a 5xx; answers match the document."""
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) == 12
    fuzzed = 0
    for operation in operations:

        @given(case=operation.as_strategy(generation_mode=mode))
        @settings(
            max_examples=EXAMPLES, deadline=None, suppress_health_check=list(HealthCheck), database=None
        )
        def run(case: schemathesis.Case) -> None:
            case.call_and_validate(checks=CHECKS)

        try:
            run()
        except Unsatisfiable:  # nothing in it can be made invalid (no parameters, no body)
            assert mode is GenerationMode.NEGATIVE, operation.label
            continue
        fuzzed += 1
    assert fuzzed >= (12 if mode is GenerationMode.POSITIVE else 7), fuzzed


def test_openapi_payloads_come_from_the_task_models(client: Any) -> None:
    """/openapi.json carries each task's payload model schema, so docs cannot drift from validation."""
    from tasks.registry import TASKS

    document = client.get("/openapi.json").json
    assert document["openapi"] == "3.1.0"
    schemas = document["components"]["schemas"]
    for spec in TASKS.values():
        model = spec.payload_model.model_json_schema(ref_template="#/components/schemas/{model}")
        model.pop("$defs", None)
        assert schemas[spec.payload_model.__name__] == model

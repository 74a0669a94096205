"""`GET /openapi.json`: an OpenAPI 3.1 document built from the same models that validate
requests (tasks.models, tasks.submission), so the schema cannot drift from what the API accepts."""

from __future__ import annotations

from typing import Any

from flask import Blueprint, Response, jsonify

from tasks.registry import TASKS
from tasks.submission import SubmitOptions
from web.ops import VERSION

bp = Blueprint("openapi", __name__)
REF = "#/components/schemas/{model}"

JOB_ID = {
    "name": "job_id",
    "in": "path",
    "required": True,
    "schema": {"type": "string", "pattern": "^[A-Za-z0-9_-]{1,128}$"},
}
ERROR = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message"],
            "properties": {"code": {"type": "string"}, "message": {"type": "string"}, "details": {}},
        }
    },
}
JOB = {
    "type": "object",
    "required": ["id", "url", "status"],
    "properties": {
        "id": {"type": "string"},
        "url": {"type": "string"},
        "task": {"type": ["string", "null"]},
        "queue": {"type": ["string", "null"]},
        "status": {"type": ["string", "null"]},
        "attempts": {"type": "integer"},
        "retries_left": {"type": "integer"},
        "error": {"type": ["object", "null"]},
        "created": {"type": "boolean"},
    },
}


def _errors(*codes: int) -> dict[str, Any]:
    return {
        str(code): {
            "description": "error",
            "content": {"application/json": {"schema": {"$ref": REF.format(model="Error")}}},
        }
        for code in (*codes, 401, 503)
    }


def _ok(code: int, schema: dict[str, Any], description: str = "ok") -> dict[str, Any]:
    return {str(code): {"description": description, "content": {"application/json": {"schema": schema}}}}


def _body(schema: dict[str, Any], required: bool = True) -> dict[str, Any]:
    return {"required": required, "content": {"application/json": {"schema": schema}}}


def document() -> dict[str, Any]:
    """The whole OpenAPI 3.1 document."""
    schemas: dict[str, Any] = {"Error": ERROR, "Job": JOB}
    submissions = []
    for name, spec in TASKS.items():
        payload = spec.payload_model.model_json_schema(ref_template=REF)
        schemas.update(payload.pop("$defs", {}))
        schemas[spec.payload_model.__name__] = payload
        schemas[f"Submit_{name}"] = {
            "type": "object",
            "additionalProperties": False,
            "required": ["task", "payload"],
            "properties": {
                "task": {"const": name},
                "payload": {"$ref": REF.format(model=spec.payload_model.__name__)},
                "options": {"$ref": REF.format(model="SubmitOptions")},
            },
        }
        submissions.append({"$ref": REF.format(model=f"Submit_{name}")})
    options = SubmitOptions.model_json_schema(ref_template=REF)
    options["additionalProperties"] = False
    schemas["SubmitOptions"] = options
    submit = {"oneOf": submissions}
    job_ref = {"$ref": REF.format(model="Job")}
    anything = {"type": "object"}
    paths: dict[str, Any] = {
        "/": {"get": {"responses": _ok(200, anything)}},
        "/healthz": {"get": {"responses": {**_ok(200, anything), **_ok(503, anything, "Redis unavailable")}}},
        "/jobs": {
            "post": {
                "requestBody": _body(submit),
                "responses": {
                    **_ok(202, job_ref, "accepted"),
                    **_ok(200, job_ref, "existing job_id"),
                    **_errors(400, 413, 415, 422),
                },
            },
            "get": {
                "parameters": [
                    {
                        "name": "state",
                        "in": "query",
                        "schema": {
                            "type": "string",
                            "enum": [
                                "queued",
                                "started",
                                "finished",
                                "failed",
                                "scheduled",
                                "deferred",
                                "canceled",
                            ],
                        },
                    },
                    {"name": "queue", "in": "query", "schema": {"type": "string"}},
                    {"name": "task", "in": "query", "schema": {"type": "string"}},
                    {
                        "name": "limit",
                        "in": "query",
                        "schema": {"type": "integer", "minimum": 1, "maximum": 500},
                    },
                    {"name": "cursor", "in": "query", "schema": {"type": "string"}},
                ],
                "responses": {**_ok(200, anything), **_errors(400)},
            },
        },
        "/jobs/batch": {
            "post": {
                "requestBody": _body(
                    {
                        "type": "object",
                        "required": ["jobs"],
                        "additionalProperties": False,
                        "properties": {"jobs": {"type": "array", "minItems": 1, "items": submit}},
                    }
                ),
                "responses": {**_ok(202, anything), **_errors(400, 409, 413, 415, 422)},
            }
        },
        "/jobs/requeue": {
            "post": {
                "requestBody": _body(
                    {
                        "type": "object",
                        "additionalProperties": False,
                        "properties": {
                            "queue": {"type": "string"},
                            "task": {"type": "string"},
                            "exception": {"type": "string"},
                        },
                    },
                    required=False,
                ),
                "responses": {**_ok(202, anything), **_errors(400, 413, 415, 422)},
            }
        },
        "/jobs/{job_id}": {
            "get": {"parameters": [JOB_ID], "responses": {**_ok(200, job_ref), **_errors(400, 404)}},
            "delete": {
                "parameters": [JOB_ID],
                "responses": {"204": {"description": "deleted"}, **_errors(400, 404, 409)},
            },
        },
        "/jobs/{job_id}/requeue": {
            "post": {"parameters": [JOB_ID], "responses": {**_ok(202, job_ref), **_errors(400, 404, 409)}}
        },
        "/jobs/{job_id}/cancel": {
            "post": {
                "parameters": [JOB_ID],
                "responses": {
                    **_ok(200, job_ref),
                    **_ok(202, anything, "stopping"),
                    **_errors(400, 404, 409),
                },
            }
        },
        "/queues": {"get": {"responses": _ok(200, anything)}},
        "/workers": {"get": {"responses": _ok(200, anything)}},
    }
    return {
        "openapi": "3.1.0",
        "info": {"title": "postal", "version": VERSION},
        "paths": paths,
        "components": {
            "schemas": schemas,
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
        "security": [{}, {"bearer": []}],
    }


@bp.get("/openapi.json")
def openapi() -> Response:
    """The API's OpenAPI 3.1 document."""
    return jsonify(document())

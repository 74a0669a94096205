"""Bad requests get a 4xx JSON error naming the problem, and nothing reaches Redis."""

from __future__ import annotations

import json
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.get_data(as_text=True)
    assert response.is_json
    error: dict[str, Any] = response.json["error"]
    assert error["code"] == code
    assert error["message"]
    return error


def queued_anything(redis: Redis) -> bool:
    return any(key.startswith(b"rq:job:") for key in redis.keys("rq:*"))


def test_malformed_json(client: FlaskClient, redis: Redis) -> None:
    """A body that is not JSON is a 400 malformed_json."""
    r = client.post("/jobs", data="{nope", content_type="application/json")
    error_of(r, 400, "malformed_json")
    assert not queued_anything(redis)


def test_wrong_content_type(client: FlaskClient) -> None:
    """A JSON body sent as form data is a 415 naming the expected type."""
    r = client.post("/jobs", data=json.dumps({"task": "message"}), content_type="text/plain")
    error = error_of(r, 415, "unsupported_media_type")
    assert "application/json" in error["message"]


def test_empty_body(client: FlaskClient) -> None:
    """An empty JSON body is a 400, not a crash."""
    error_of(client.post("/jobs", data="", content_type="application/json"), 400, "empty_body")


def test_body_not_an_object(client: FlaskClient) -> None:
    """A JSON array where an object belongs is a 400."""
    error_of(client.post("/jobs", json=[1, 2]), 400, "not_an_object")


def test_oversized_body(client: FlaskClient, redis: Redis) -> None:
    """A body over MAX_CONTENT_LENGTH is a 413 JSON error stating the limit."""
    big = {"task": "message", "payload": {"message": "x" * (2 * 1024 * 1024)}}
    error = error_of(client.post("/jobs", json=big), 413, "request_entity_too_large")
    assert str(1024 * 1024) in error["message"]
    assert not queued_anything(redis)


def test_deeply_nested_body(client: FlaskClient) -> None:
    """JSON nested far beyond any payload's shape is refused with 400, never a RecursionError 500."""
    deep = "[" * 100_000 + "]" * 100_000
    r = client.post(
        "/jobs", data='{"task": "message", "payload": ' + deep + "}", content_type="application/json"
    )
    assert r.status_code == 400
    assert r.json["error"]["code"] in ("malformed_json", "too_deep")
    nested: object = 1
    for _ in range(40):
        nested = [nested]
    moderately = {"task": "message", "payload": {"message": "x", "a": nested}}
    error_of(client.post("/jobs", json=moderately), 400, "too_deep")


def test_unknown_task(client: FlaskClient, redis: Redis) -> None:
    """An unknown task is a 422 listing the known ones."""
    error = error_of(client.post("/jobs", json={"task": "rm_rf", "payload": {}}), 422, "unknown_task")
    assert "fetch_page" in error["message"]
    assert not queued_anything(redis)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"task": "message", "payload": {}}, ["payload", "message"]),
        ({"task": "message", "payload": {"message": 5}}, ["payload", "message"]),
        ({"task": "message", "payload": {"message": "hi", "colour": "red"}}, ["payload", "colour"]),
        ({"task": "message", "payload": {"message": "hi", "delay_s": -1}}, ["payload", "delay_s"]),
        ({"task": "fetch_page", "payload": {"url": "file:///etc/passwd"}}, ["payload", "url"]),
        ({"task": "fetch_page", "payload": {"url": "http://"}}, ["payload", "url"]),
        ({"task": "fetch_page", "payload": {"url": "http://example.com:99999/"}}, ["payload", "url"]),
        (
            {"task": "extract", "payload": {"patterns": ["(unclosed"], "text": "x"}},
            ["payload", "patterns", 0],
        ),
        ({"task": "extract", "payload": {"patterns": ["a"]}}, ["payload"]),
        ({"task": "extract", "payload": {"patterns": [], "text": "x"}}, ["payload", "patterns"]),
        ({"task": "extract", "payload": {"patterns": ["a"] * 21, "text": "x"}}, ["payload", "patterns"]),
        ({"task": "extract", "payload": {"patterns": ["a" * 1001], "text": "x"}}, ["payload", "patterns", 0]),
        (
            {"task": "extract", "payload": {"patterns": ["a"], "text": "x", "flags": ["LOCALE"]}},
            ["payload", "flags", 0],
        ),
    ],
)
def test_invalid_payload(client: FlaskClient, redis: Redis, body: dict[str, Any], loc: list[Any]) -> None:
    """A payload that does not match its task's model is a 422 pointing at the bad field."""
    error = error_of(client.post("/jobs", json=body), 422, "invalid_payload")
    assert loc in [d["loc"] for d in error["details"]]
    assert not queued_anything(redis)


@pytest.mark.parametrize(
    ("body", "loc"),
    [
        ({"payload": {}}, ["task"]),
        ({"task": 7}, ["task"]),
        ({"task": "message", "payload": {"message": "x"}, "extra": 1}, ["extra"]),
        (
            {"task": "message", "payload": {"message": "x"}, "options": {"job_id": "a/b"}},
            ["options", "job_id"],
        ),
        (
            {"task": "message", "payload": {"message": "x"}, "options": {"delay_s": -5}},
            ["options", "delay_s"],
        ),
        (
            {"task": "message", "payload": {"message": "x"}, "options": {"priority": 1}},
            ["options", "priority"],
        ),
        ({"task": "message", "payload": "hello"}, ["payload"]),
    ],
)
def test_invalid_envelope(client: FlaskClient, body: dict[str, Any], loc: list[Any]) -> None:
    """A malformed submission envelope is a 422 invalid_request pointing at the field."""
    error = error_of(client.post("/jobs", json=body), 422, "invalid_request")
    assert loc in [d["loc"] for d in error["details"]]


def test_unknown_queue(client: FlaskClient, redis: Redis) -> None:
    """A queue no worker listens to is refused: the job would wait forever."""
    body = {"task": "message", "payload": {"message": "x"}, "options": {"queue": "nowhere"}}
    error = error_of(client.post("/jobs", json=body), 422, "unknown_queue")
    assert "default" in error["message"]
    assert not queued_anything(redis)


def test_batch_with_one_bad_entry_enqueues_nothing(client: FlaskClient, redis: Redis) -> None:
    """A batch is all or nothing: one invalid entry means a 422 pointing at it and no job at all."""
    jobs = [{"task": "message", "payload": {"message": "ok"}}] * 3 + [{"task": "message", "payload": {}}]
    error = error_of(client.post("/jobs/batch", json={"jobs": jobs}), 422, "invalid_payload")
    assert error["details"][0]["loc"][:2] == ["jobs", 3]
    assert not queued_anything(redis)


@pytest.mark.parametrize("body", [{}, {"jobs": []}, {"jobs": "x"}, {"jobs": [{}], "more": 1}])
def test_batch_shape(client: FlaskClient, body: dict[str, Any]) -> None:
    """A batch body must be {"jobs": [...]} with at least one entry."""
    error_of(client.post("/jobs/batch", json=body), 422, "invalid_request")


def test_batch_too_large(redis: Redis, redis_server: Any) -> None:
    """A batch over POSTAL_MAX_BATCH is a 413 naming the limit."""
    from web import create_app

    client = create_app({"REDIS_URL": redis_server.url, "POSTAL_MAX_BATCH": "2"}).test_client()
    jobs = [{"task": "message", "payload": {"message": "x"}}] * 3
    error = error_of(client.post("/jobs/batch", json={"jobs": jobs}), 413, "batch_too_large")
    assert "2" in error["message"]
    assert not queued_anything(redis)


def test_batch_duplicate_job_ids(client: FlaskClient, redis: Redis) -> None:
    """The same job_id twice in one batch is a 422, not two writes to one key."""
    entry = {"task": "message", "payload": {"message": "x"}, "options": {"job_id": "same"}}
    error_of(client.post("/jobs/batch", json={"jobs": [entry, entry]}), 422, "duplicate_job_id")
    assert not queued_anything(redis)


@pytest.mark.parametrize("path", ["/jobs/bad%20id", "/jobs/" + "a" * 129, "/jobs/a.b"])
def test_bad_job_id(client: FlaskClient, path: str) -> None:
    """A job id with characters RQ refuses is a 400, on every per-job route."""
    error_of(client.get(path), 400, "bad_job_id")
    error_of(client.post(path + "/cancel"), 400, "bad_job_id")
    error_of(client.delete(path), 400, "bad_job_id")


def test_unknown_job(client: FlaskClient) -> None:
    """A well-formed id that names no job is a 404 on read, cancel, requeue and delete."""
    error_of(client.get("/jobs/nope"), 404, "job_not_found")
    error_of(client.post("/jobs/nope/cancel"), 404, "job_not_found")
    error_of(client.post("/jobs/nope/requeue"), 404, "job_not_found")
    error_of(client.delete("/jobs/nope"), 404, "job_not_found")


@pytest.mark.parametrize(
    "query",
    ["state=lost", "limit=0", "limit=abc", "limit=501", "cursor=zzz", "queue=nowhere", "colour=red"],
)
def test_bad_list_query(client: FlaskClient, query: str) -> None:
    """Each bad query parameter of GET /jobs is a 400 naming it."""
    error_of(client.get(f"/jobs?{query}"), 400, "bad_query")


def test_unknown_route_and_method(client: FlaskClient) -> None:
    """Unknown routes and wrong methods answer JSON too (404, 405 with Allow)."""
    error_of(client.get("/nothing-here"), 404, "not_found")
    r = client.put("/jobs")
    error_of(r, 405, "method_not_allowed")
    assert "POST" in r.headers["Allow"]


def test_requeue_all_body_checked(client: FlaskClient) -> None:
    """POST /jobs/requeue rejects unknown filters and non-string values."""
    error_of(client.post("/jobs/requeue", json={"taks": "x"}), 422, "invalid_request")
    error_of(client.post("/jobs/requeue", json={"task": 3}), 422, "invalid_request")
    error_of(client.post("/jobs/requeue", json={"queue": "nowhere"}), 422, "unknown_queue")

"""`POST /jobs/batch` against a real Redis and real workers: what it writes, in what order, what it
refuses, and that every job it accepts is run."""

from __future__ import annotations

from typing import Any

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue
from rq.job import Job

from tasks.connection import SERIALIZER
from tasks.submission import _create, parse_submission
from tests.jobwait import wait_job
from tests.procs import RedisServer, Workers, wait_for
from tests.test_api_errors import error_of, queued_anything
from web.state import postal


def message(text: str, **options: Any) -> dict[str, Any]:
    return {"task": "message", "payload": {"message": text}, **({"options": options} if options else {})}


def test_batch_reports_every_invalid_entry(client: FlaskClient, redis: Redis) -> None:
    """Every bad entry is reported (index, field, its own code) in one 422, and nothing is written."""
    jobs = [message("ok"), {"task": "nope"}, message("ok"), {"task": "message", "payload": {}}]
    error = error_of(client.post("/jobs/batch", json={"jobs": jobs}), 422, "invalid_batch")
    assert "2 of 4" in error["message"]
    found = {(tuple(d["loc"][:2]), d["code"]) for d in error["details"]}
    assert found == {(("jobs", 1), "unknown_task"), (("jobs", 3), "invalid_payload")}
    assert not queued_anything(redis)


@pytest.mark.parametrize(
    ("data", "content_type", "status", "code"),
    [
        ("{nope", "application/json", 400, "malformed_json"),
        ("[]", "application/json", 400, "not_an_object"),
        ('{"jobs": [1, "x"]}', "application/json", 422, "invalid_request"),
        ('{"jobs": {"task": "message"}}', "application/json", 422, "invalid_request"),
        ('{"jobs": null}', "application/json", 422, "invalid_request"),
        ('{"jobs": []}', "text/plain", 415, "unsupported_media_type"),
    ],
)
def test_batch_malformed_bodies(
    client: FlaskClient, redis: Redis, data: str, content_type: str, status: int, code: str
) -> None:
    """Malformed batch bodies are 4xx JSON errors naming the problem, and enqueue nothing."""
    error_of(client.post("/jobs/batch", data=data, content_type=content_type), status, code)
    assert not queued_anything(redis)


def test_batch_limit_is_inclusive(redis: Redis, redis_server: RedisServer) -> None:
    """A batch of exactly POSTAL_MAX_BATCH entries is accepted; one more is a 413."""
    from web import create_app

    client = create_app({"REDIS_URL": redis_server.url, "POSTAL_MAX_BATCH": "3"}).test_client()
    assert client.post("/jobs/batch", json={"jobs": [message("x")] * 3}).status_code == 202
    assert redis.llen("rq:queue:default") == 3
    error_of(client.post("/jobs/batch", json={"jobs": [message("x")] * 4}), 413, "batch_too_large")
    assert redis.llen("rq:queue:default") == 3


def test_batch_writes_what_rq_enqueue_writes(app: Flask, client: FlaskClient, redis: Redis) -> None:
    """Batch jobs land on their queues in order with the same hash fields as RQ's own enqueue_job."""
    jobs = [message(f"m{i}") for i in range(3)]
    jobs.insert(1, message("urgent", queue="high"))
    jobs.append(message("later", delay_s=60))
    answer = client.post("/jobs/batch", json={"jobs": jobs})
    assert answer.status_code == 202
    ids = [j["id"] for j in answer.json["jobs"]]
    assert [j["status"] for j in answer.json["jobs"]] == ["queued"] * 4 + ["scheduled"]
    assert redis.lrange("rq:queue:default", 0, -1) == [ids[0].encode(), ids[2].encode(), ids[3].encode()]
    assert redis.lrange("rq:queue:high", 0, -1) == [ids[1].encode()]
    assert {q.name for q in Queue.all(connection=redis)} >= {"default", "high"}
    ours = {k.decode(): v for k, v in redis.hgetall(f"rq:job:{ids[0]}").items()}
    with app.app_context():  # the same job built the same way, then enqueued by RQ itself
        state = postal()
        reference = _create(state, parse_submission(message("m0"), state))
        state.queues["default"].enqueue_job(reference)
    theirs = {k.decode(): v for k, v in redis.hgetall(reference.key).items()}
    assert set(ours) == set(theirs)
    varying = {"created_at", "enqueued_at", "retry_intervals"}  # clocks and retry jitter
    assert {k: v for k, v in ours.items() if k not in varying} == {
        k: v for k, v in theirs.items() if k not in varying
    }
    assert ours["status"] == b"queued"
    job = Job.fetch(ids[0], connection=redis, serializer=SERIALIZER)
    assert job.enqueued_at is not None and job.kwargs == {"message": "m0", "delay_s": 0.0}


def test_big_batch_runs_to_the_end(client: FlaskClient, redis: Redis, workers: Workers) -> None:
    """A batch of 60 jobs is accepted in order and every job is run to finished by real workers."""
    workers.start(2)
    answer = client.post("/jobs/batch", json={"jobs": [message(f"n{i}") for i in range(60)]})
    assert answer.status_code == 202
    assert answer.json["count"] == answer.json["created"] == 60
    ids = [j["id"] for j in answer.json["jobs"]]
    registry = Queue("default", connection=redis, serializer=SERIALIZER).finished_job_registry
    wait_for(lambda: registry.count == 60, 60, "60 batch jobs to finish")
    assert wait_job(client, ids[-1])["result"] == {"message": "n59"}
    assert wait_job(client, ids[0])["result"] == {"message": "n0"}

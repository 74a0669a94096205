"""No code in Redis: a pickled job planted in Redis is never unpickled, by workers or the API."""

from __future__ import annotations

import os
import pickle
import time
import zlib
from pathlib import Path

from flask.testing import FlaskClient
from redis import Redis

from tests.jobwait import submit, wait_job
from tests.procs import Workers


class Exploit:
    """Unpickling this creates a file: proof that pickle data was executed."""

    def __init__(self, path: Path) -> None:
        self.path = str(path)

    def __reduce__(self) -> tuple[object, tuple[str, str]]:
        return (open, (self.path, "w"))


def plant_pickled_job(redis: Redis, job_id: str, marker: Path) -> None:
    """Write a job hash the way a pickle-using RQ client would, with a payload that would run code."""
    data = zlib.compress(pickle.dumps(("tasks.message.message", None, (Exploit(marker),), {})))
    now = time.strftime("%Y-%m-%dT%H:%M:%S.000000Z", time.gmtime())
    redis.hset(
        f"rq:job:{job_id}",
        mapping={
            "data": data,
            "origin": "default",
            "status": "queued",
            "created_at": now,
            "enqueued_at": now,
            "description": "planted",
            "timeout": "60",
        },
    )
    redis.sadd("rq:queues", "rq:queue:default")
    redis.rpush("rq:queue:default", job_id)


def test_planted_pickle_is_refused_not_executed(
    client: FlaskClient, redis: Redis, worker: Workers, tmp_path: Path
) -> None:
    """The worker fails the planted job without unpickling it and keeps serving; the API shows it."""
    marker = tmp_path / "pwned"
    plant_pickled_job(redis, "planted1", marker)
    view = wait_job(client, "planted1", timeout=20)
    assert not marker.exists(), "pickle data was executed"
    assert view["status"] == "failed"
    assert view["payload"] is None
    assert view["error"]["type"] == "DeserializationError"
    listed = client.get("/jobs?state=failed").json["jobs"]
    assert [j["id"] for j in listed] == ["planted1"]
    after = submit(client, "message", {"message": "still here"})
    assert wait_job(client, after["id"])["status"] == "finished"
    assert all(proc.poll() is None for proc in worker.procs)
    assert not os.path.exists(marker)


def test_api_reads_planted_pickle_without_executing(
    client: FlaskClient, redis: Redis, tmp_path: Path
) -> None:
    """GET, list, cancel and dashboard views of a pickled job answer without unpickling it."""
    marker = tmp_path / "pwned"
    plant_pickled_job(redis, "planted2", marker)
    assert client.get("/jobs/planted2").status_code == 200
    assert client.get("/jobs/planted2").json["payload"] is None
    assert client.get("/jobs?state=queued").status_code == 200
    assert client.get("/rq/0/data/job/planted2.json").status_code in (200, 404)
    assert client.post("/jobs/planted2/cancel").status_code == 200
    assert not marker.exists()

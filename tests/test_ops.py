"""Operational endpoints: index, health (up and down), queues, workers."""

from __future__ import annotations

import time

from flask.testing import FlaskClient

from tests.jobwait import submit
from tests.procs import Workers, free_port, wait_for


def test_index_lists_tasks_and_endpoints(client: FlaskClient) -> None:
    """GET / names the service, its tasks and where the endpoints are."""
    body = client.get("/").json
    assert body["service"] == "postal"
    assert set(body["tasks"]) == {"message", "fetch_page", "extract"}
    assert body["endpoints"]["health"] == "/healthz"


def test_healthz_without_workers_is_degraded(client: FlaskClient) -> None:
    """Redis up but no worker: 200 with status degraded and queue depths."""
    submit(client, "message", {"message": "waiting"})
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json["status"] == "degraded"
    assert r.json["redis"]["ok"] is True
    assert r.json["workers"] == 0
    assert r.json["queues"] == {"high": 0, "default": 1, "low": 0}


def test_healthz_with_workers_is_ok(client: FlaskClient, worker: Workers) -> None:
    """With a worker registered, /healthz says ok and counts it."""
    r = client.get("/healthz")
    assert r.status_code == 200
    assert r.json["status"] == "ok"
    assert r.json["workers"] == 1


def test_redis_down_answers_503_fast() -> None:
    """With Redis unreachable, /healthz and job routes answer 503 JSON within the socket timeouts."""
    from web import create_app

    url = f"redis://:s3cret@127.0.0.1:{free_port()}/0"
    client = create_app({"REDIS_URL": url}).test_client()
    started = time.monotonic()
    health = client.get("/healthz")
    assert health.status_code == 503
    assert health.json["status"] == "unavailable"
    assert "ConnectionError" in health.json["redis"]["error"]
    assert "s3cret" not in health.get_data(as_text=True)
    submitted = client.post("/jobs", json={"task": "message", "payload": {"message": "x"}})
    assert submitted.status_code == 503
    assert submitted.json["error"]["code"] == "redis_unavailable"
    assert submitted.headers["Retry-After"] == "5"
    assert client.get("/jobs/abc").status_code == 503
    assert time.monotonic() - started < 10


def test_queues_counts_every_registry(client: FlaskClient, worker: Workers) -> None:
    """GET /queues reports the list and registry sizes per queue."""
    from tests.jobwait import wait_job

    done = submit(client, "message", {"message": "x"})
    wait_job(client, done["id"])
    submit(client, "message", {"message": "later"}, delay_s=600)
    queues = {q["name"]: q for q in client.get("/queues").json["queues"]}
    assert list(queues) == ["high", "default", "low"]
    assert queues["default"]["finished"] == 1
    assert queues["default"]["scheduled"] == 1
    assert queues["default"]["queued"] == 0
    assert queues["default"]["failed"] == 0


def test_workers_lists_live_workers(client: FlaskClient, workers: Workers) -> None:
    """GET /workers lists each registered worker with its pid, queues and state."""
    procs = workers.start(2)

    def all_idle() -> dict | None:
        body = client.get("/workers").json
        return body if all(w["state"] == "idle" for w in body["workers"]) else None

    body = wait_for(all_idle, 10, "both workers to be idle")
    assert body["count"] == 2
    assert sorted(w["pid"] for w in body["workers"]) == sorted(p.pid for p in procs)
    for view in body["workers"]:
        assert view["queues"] == ["high", "default", "low"]
        assert view["last_heartbeat"]

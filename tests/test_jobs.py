"""Jobs end to end: submitted over the API, run by real `rq worker` processes, read back."""

from __future__ import annotations

import time

from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from tests.jobwait import submit, wait_job
from tests.procs import Workers


def test_message_job_round_trip(client: FlaskClient, worker: Workers) -> None:
    """A message job is accepted with 202 + Location and finishes with its result and metadata."""
    r = client.post("/jobs", json={"task": "message", "payload": {"message": "hello postal"}})
    assert r.status_code == 202
    assert r.headers["Location"] == f"/jobs/{r.json['id']}"
    assert r.json["status"] == "queued"
    assert r.json["created"] is True
    view = wait_job(client, r.json["id"])
    assert view["status"] == "finished"
    assert view["task"] == "message"
    assert view["queue"] == "default"
    assert view["payload"] == {"message": "hello postal", "delay_s": 0.0}
    assert view["result"] == {"message": "hello postal"}
    assert view["error"] is None
    assert view["errors"] == []
    assert view["attempts"] == 1
    assert view["progress"]["step"] == "done"
    assert view["progress"]["percent"] == 100
    assert view["worker"]
    assert view["timeout_s"] == 90
    assert view["enqueued_at"] <= view["started_at"] <= view["ended_at"]


def test_progress_visible_while_running(client: FlaskClient, worker: Workers) -> None:
    """A running job shows status started and its last progress step."""
    job = submit(client, "message", {"message": "slow", "delay_s": 2})
    view = wait_job(client, job["id"], {"started"})
    wait_for_step = time.monotonic() + 5
    while view["progress"] is None and time.monotonic() < wait_for_step:
        view = client.get(f"/jobs/{job['id']}").json
    assert view["progress"]["step"] == "sleeping"
    assert view["attempts"] == 1
    assert wait_job(client, job["id"])["status"] == "finished"


def test_idempotent_job_id(client: FlaskClient, redis: Redis, worker: Workers) -> None:
    """Submitting the same job_id twice creates one job: the second answer is 200 with created=false."""
    body = {"task": "message", "payload": {"message": "once"}, "options": {"job_id": "order-42"}}
    first = client.post("/jobs", json=body)
    second = client.post("/jobs", json=body)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json["id"] == second.json["id"] == "order-42"
    assert second.json["created"] is False
    assert wait_job(client, "order-42")["status"] == "finished"
    third = client.post("/jobs", json=body)
    assert third.status_code == 200
    assert third.json["status"] == "finished"
    assert redis.llen("rq:queue:default") == 0


def test_delayed_job_is_scheduled_then_runs(client: FlaskClient, worker: Workers) -> None:
    """delay_s puts the job in the scheduled registry; the workers' scheduler runs it when due."""
    job = submit(client, "message", {"message": "later"}, delay_s=1)
    assert job["status"] == "scheduled"
    listed = client.get("/jobs?state=scheduled").json["jobs"]
    assert [j["id"] for j in listed] == [job["id"]]
    view = wait_job(client, job["id"], timeout=20)
    assert view["status"] == "finished"
    assert view["result"] == {"message": "later"}


def test_batch_enqueues_all_and_they_finish(client: FlaskClient, worker: Workers) -> None:
    """POST /jobs/batch enqueues every entry (mixed tasks and options); each one finishes."""
    jobs = [{"task": "message", "payload": {"message": f"m{i}"}} for i in range(5)]
    jobs.append(
        {
            "task": "extract",
            "payload": {"patterns": [r"\d+"], "text": "a 1 b 22"},
            "options": {"queue": "high"},
        }
    )
    r = client.post("/jobs/batch", json={"jobs": jobs})
    assert r.status_code == 202
    assert r.json["count"] == r.json["created"] == 6
    assert r.json["jobs"][5]["queue"] == "high"
    results = [wait_job(client, j["id"]) for j in r.json["jobs"]]
    assert [v["status"] for v in results] == ["finished"] * 6
    assert [v["result"]["message"] for v in results[:5]] == [f"m{i}" for i in range(5)]


def test_batch_is_idempotent_per_job_id(client: FlaskClient, redis: Redis) -> None:
    """A batch entry whose job_id exists is reported with created=false and not written again."""
    client.post("/jobs", json={"task": "message", "payload": {"message": "a"}, "options": {"job_id": "j1"}})
    jobs = [
        {"task": "message", "payload": {"message": "b"}, "options": {"job_id": "j1"}},
        {"task": "message", "payload": {"message": "c"}, "options": {"job_id": "j2"}},
    ]
    r = client.post("/jobs/batch", json={"jobs": jobs})
    assert [j["created"] for j in r.json["jobs"]] == [False, True]
    assert client.get("/jobs/j1").json["payload"]["message"] == "a"
    assert redis.llen("rq:queue:default") == 2


def test_list_jobs_filters_and_pages(client: FlaskClient, redis: Redis) -> None:
    """GET /jobs filters by state, queue and task and pages with the returned cursor."""
    for i in range(3):
        submit(client, "message", {"message": f"m{i}"})
    submit(client, "extract", {"patterns": ["x"], "text": "x"}, queue="low")
    everything = client.get("/jobs?state=queued").json
    assert [j["task"] for j in everything["jobs"]] == ["message"] * 3 + ["extract"]
    assert everything["next_cursor"] is None
    assert [j["queue"] for j in client.get("/jobs?queue=low").json["jobs"]] == ["low"]
    assert len(client.get("/jobs?task=extract").json["jobs"]) == 1
    page = client.get("/jobs?task=message&limit=2").json
    assert len(page["jobs"]) == 2
    rest = client.get(f"/jobs?task=message&limit=2&cursor={page['next_cursor']}").json
    assert len(rest["jobs"]) == 1
    seen = [j["id"] for j in page["jobs"] + rest["jobs"]]
    assert len(set(seen)) == 3
    assert client.get("/jobs?state=failed").json == {"jobs": [], "next_cursor": None}


def test_cancel_queued_job(client: FlaskClient, redis: Redis) -> None:
    """Canceling a queued job takes it off the queue: it shows as canceled and never runs."""
    job = submit(client, "message", {"message": "never"})
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 200
    assert r.json["status"] == "canceled"
    assert redis.llen("rq:queue:default") == 0
    assert client.get(f"/jobs/{job['id']}").json["status"] == "canceled"
    assert [j["id"] for j in client.get("/jobs?state=canceled").json["jobs"]] == [job["id"]]


def test_cancel_running_job_stops_it(client: FlaskClient, worker: Workers) -> None:
    """Canceling a running job stops its work horse; it shows as stopped, and the worker goes on."""
    job = submit(client, "message", {"message": "long", "delay_s": 30})
    wait_job(client, job["id"], {"started"})
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 202
    assert r.json["status"] == "stopping"
    view = wait_job(client, job["id"], timeout=10)
    assert view["status"] == "stopped"
    assert view["error"]["type"] == "JobStopped"
    after = submit(client, "message", {"message": "next"})
    assert wait_job(client, after["id"])["status"] == "finished"


def test_cancel_finished_job_conflicts(client: FlaskClient, worker: Workers) -> None:
    """A finished job cannot be canceled: 409 saying why."""
    job = submit(client, "message", {"message": "done"})
    wait_job(client, job["id"])
    r = client.post(f"/jobs/{job['id']}/cancel")
    assert r.status_code == 409
    assert r.json["error"]["code"] == "not_cancelable"


def test_delete_job(client: FlaskClient, redis: Redis) -> None:
    """DELETE removes the job and takes it off its queue; it is then 404."""
    job = submit(client, "message", {"message": "bye"})
    assert client.delete(f"/jobs/{job['id']}").status_code == 204
    assert client.get(f"/jobs/{job['id']}").status_code == 404
    assert redis.llen("rq:queue:default") == 0


def test_delete_running_job_conflicts(client: FlaskClient, worker: Workers) -> None:
    """A running job is not deleted from under its worker: 409, cancel first."""
    job = submit(client, "message", {"message": "busy", "delay_s": 30})
    wait_job(client, job["id"], {"started"})
    r = client.delete(f"/jobs/{job['id']}")
    assert r.status_code == 409
    assert r.json["error"]["code"] == "job_running"
    client.post(f"/jobs/{job['id']}/cancel")
    wait_job(client, job["id"], timeout=10)


def test_post_to_worker_demo(client: FlaskClient, worker: Workers) -> None:
    """GET /post-to-worker enqueues a message job with a random message that then finishes."""
    r = client.get("/post-to-worker")
    assert r.status_code == 202
    view = wait_job(client, r.json["id"])
    assert view["task"] == "message"
    assert view["status"] == "finished"
    assert view["result"]["message"] == view["payload"]["message"]


def test_job_enqueued_with_rq_cli_is_validated_by_worker(
    client: FlaskClient, redis: Redis, worker: Workers
) -> None:
    """A job enqueued around the API with a bad payload fails at once with InvalidPayload, no retry."""
    queue = Queue("default", connection=redis, serializer="json")
    job = queue.enqueue_call("tasks.message.message", kwargs={"message": ""}, retry=None)
    view = wait_job(client, job.id)
    assert view["status"] == "failed"
    assert view["task"] == "message"
    assert view["error"]["type"] == "InvalidPayload"
    assert "message" in view["error"]["message"]

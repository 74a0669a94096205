"""GET /metrics and the job event lines, after known work done by real workers on a real Redis."""

from __future__ import annotations

from typing import Any

from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, Retry
from rq.job import Job

from tasks.connection import SERIALIZER
from tests.events import api_events, of_job, wait_ended
from tests.jobwait import submit, wait_job
from tests.procs import Workers, wait_for
from tests.prom import histogram, scrape, value


def wait_rq_status(redis: Redis, job: Job, status: str) -> None:
    wait_for(lambda: job.get_status(refresh=True) == status, 30, f"job {job.id} to be {status}")


def test_metrics_count_known_work_exactly(client: FlaskClient, workers: Workers, redis: Redis) -> None:
    """After 3 finished jobs, a failing one, a retried-then-failed one, 2 waiting and 1 scheduled,
    /metrics shows exactly those depths, registry sizes, counters, histogram counts and workers."""
    workers.start(1, queues=("high", "default"))  # nobody serves "low": its jobs wait
    with api_events() as api_lines:
        done = [submit(client, "message", {"message": f"m{i}"})["id"] for i in range(3)]
        for job_id in done:
            wait_job(client, job_id, {"finished"})
        waiting = [submit(client, "message", {"message": "w"}, queue="low")["id"] for _ in range(2)]
        later = submit(client, "message", {"message": "later"}, delay_s=600)["id"]
    default = Queue("default", connection=redis, serializer=SERIALIZER)
    broken = default.enqueue("tests.jobs.fails")
    flaky = default.enqueue("tests.jobs.flaky", retry=Retry(max=1))
    wait_rq_status(redis, broken, "failed")
    wait_rq_status(redis, flaky, "failed")
    lines = wait_ended(workers.logs, [*done, broken.id, flaky.id])

    samples = scrape(client)
    assert value(samples, "postal_queue_depth", queue="low") == 2
    assert value(samples, "postal_queue_depth", queue="default") == 0
    assert value(samples, "postal_queue_depth", queue="high") == 0
    sizes = {
        r: value(samples, "postal_registry_jobs", queue="default", registry=r)
        for r in ("started", "failed", "scheduled", "deferred", "finished")
    }
    assert sizes == {"started": 0, "failed": 2, "scheduled": 1, "deferred": 0, "finished": 3}
    assert value(samples, "postal_workers") == 1

    assert value(samples, "postal_jobs_enqueued_total", task="message") == 6
    assert value(samples, "postal_jobs_finished_total", task="message") == 3
    assert value(samples, "postal_jobs_failed_total", task="message") == 0
    assert value(samples, "postal_jobs_failed_total", task="tests.jobs.fails") == 1
    assert value(samples, "postal_jobs_retried_total", task="tests.jobs.flaky") == 1
    assert value(samples, "postal_jobs_failed_total", task="tests.jobs.flaky") == 1
    assert value(samples, "postal_jobs_abandoned_total", task="message") == 0

    for task, attempts in (("message", 3), ("tests.jobs.fails", 1), ("tests.jobs.flaky", 2)):
        for name in ("postal_job_duration_seconds", "postal_job_queue_wait_seconds"):
            series = histogram(samples, name, task=task)
            assert series["count"] == attempts, (name, task, series)
            assert series["+Inf"] == attempts, (name, task, series)
            counts = [v for le, v in series.items() if le not in ("count", "sum")]
            assert counts == sorted(counts), series  # cumulative
            assert 0 <= series["sum"] < 60 * attempts, series
    api = histogram(samples, "postal_api_enqueue_seconds")
    assert api["count"] == 6 and api["+Inf"] == 6, api  # six submit requests
    assert 0 < api["sum"] < 30, api

    # the API's `enqueued` lines, one per new job, with the task, queue and first attempt
    assert sorted(e["job_id"] for e in api_lines if e["event"] == "enqueued") == sorted(
        [*done, *waiting, later]
    )
    assert {(e["task"], e["attempt"]) for e in api_lines} == {("message", 1)}
    assert {e["queue"] for e in api_lines if e["job_id"] in waiting} == {"low"}
    assert next(e for e in api_lines if e["job_id"] == later)["status"] == "scheduled"

    # the worker's lines: one per event, with the fields the README promises
    for job_id in done:
        assert of_job(lines, job_id) == [("started", 1), ("finished", 1)]
    finished = next(e for e in lines if e["job_id"] == done[0] and e["event"] == "finished")
    assert finished["task"] == "message" and finished["queue"] == "default" and finished["worker"]
    assert finished["duration_s"] >= 0 and finished["queue_wait_s"] >= 0
    assert of_job(lines, broken.id) == [("started", 1), ("failed", 1)]
    assert (
        next(e for e in lines if e["job_id"] == broken.id and e["event"] == "failed")["error"] == "ValueError"
    )
    assert of_job(lines, flaky.id) == [("started", 1), ("retried", 1), ("started", 2), ("failed", 2)]
    assert {e["level"] for e in lines if e["event"] == "failed"} == {"warning"}


def test_metrics_needs_a_token_like_other_reads(redis: Redis, redis_server: Any) -> None:
    """With tokens configured, /metrics needs one unless reads are public."""
    from web import create_app

    token = "t" * 32
    closed = create_app({"REDIS_URL": redis_server.url, "POSTAL_API_TOKENS": token}).test_client()
    assert closed.get("/metrics").status_code == 401
    assert closed.get("/metrics", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    public = create_app(
        {"REDIS_URL": redis_server.url, "POSTAL_API_TOKENS": token, "POSTAL_PUBLIC_READS": "true"}
    ).test_client()
    assert public.get("/metrics").status_code == 200


def test_metrics_before_any_work(client: FlaskClient) -> None:
    """An empty Redis scrapes fine: zero depths and workers, no counter series yet."""
    samples = scrape(client)
    assert value(samples, "postal_queue_depth", queue="default") == 0
    assert value(samples, "postal_workers") == 0
    assert not [key for key in samples if key[0].startswith("postal_jobs_")]


def test_request_id_is_honoured_or_made(client: FlaskClient) -> None:
    """A safe X-Request-ID is echoed and lands in the enqueued event; an unsafe or missing one
    is replaced by a fresh id; error answers carry one too."""
    with api_events() as lines:
        response = client.post(
            "/jobs",
            json={"task": "message", "payload": {"message": "x"}},
            headers={"X-Request-ID": "req-42.a:b"},
        )
    assert response.headers["X-Request-ID"] == "req-42.a:b"
    assert [e["request_id"] for e in lines] == ["req-42.a:b"]
    for unsafe in ("two words", "x" * 129, 'quote"', "new\\nline"):
        echoed = client.get("/queues", headers={"X-Request-ID": unsafe}).headers["X-Request-ID"]
        assert echoed != unsafe and len(echoed) == 32 and echoed.isalnum()
    made = {client.get("/healthz").headers["X-Request-ID"] for _ in range(2)}
    assert len(made) == 2
    assert client.get("/jobs/nope!").headers["X-Request-ID"]

"""rq-dashboard inside the app at /rq, reading JSON-serialized jobs."""

from __future__ import annotations

from flask.testing import FlaskClient
from redis import Redis
from rq import Queue

from tasks.connection import SERIALIZER
from tests.jobwait import submit, wait_job
from tests.procs import Workers


def test_dashboard_page_renders(client: FlaskClient) -> None:
    """GET /rq/ serves the dashboard's HTML."""
    r = client.get("/rq/")
    assert r.status_code == 200
    assert "RQ Dashboard" in r.get_data(as_text=True) or "rq-dashboard" in r.get_data(as_text=True).lower()


def test_dashboard_reads_json_jobs(client: FlaskClient, worker: Workers) -> None:
    """The dashboard lists postal's queues and decodes a finished job stored as JSON."""
    job = submit(client, "message", {"message": "seen by the dashboard"})
    wait_job(client, job["id"])
    queues = client.get("/rq/0/data/queues.json").json
    assert {q["name"] for q in queues["queues"]} >= {"default"}
    data = client.get(f"/rq/0/data/job/{job['id']}.json").json
    assert data["id"] == job["id"]
    assert data["status"] == "finished"
    assert data["description"] == 'message({"message":"seen by the dashboard","delay_s":0.0})'
    assert data["result"] == {"message": "seen by the dashboard"}
    finished = client.get("/rq/0/data/jobs/default/finished/8/asc/1.json").json
    assert [j["id"] for j in finished["jobs"]] == [job["id"]]


def test_dashboard_requeue_refuses_get(client: FlaskClient) -> None:
    """GET /rq/requeue/<queue> would requeue a whole registry from a link: it is refused."""
    r = client.get("/rq/requeue/default")
    assert r.status_code == 405
    assert r.json["error"]["code"] == "method_not_allowed"


def test_dashboard_requeue_refuses_head(client: FlaskClient) -> None:
    """Flask runs the GET view for HEAD, so HEAD /rq/requeue/<queue> is refused like GET."""
    assert client.head("/rq/requeue/default").status_code == 405


def test_dashboard_actions_need_the_dashboards_own_page(client: FlaskClient, redis: Redis) -> None:
    """A POST without X-Requested-With (a form on another site) changes nothing; the dashboard's
    own requests, which carry it, work."""
    queue = Queue("default", connection=redis, serializer=SERIALIZER)
    job = queue.enqueue("tests.jobs.counted", job_id="kept-job")
    for path in ("/rq/job/kept-job/delete", "/rq/queue/default/queued/empty", "/rq/requeue/default"):
        r = client.post(path)
        assert r.status_code == 403, path
        assert r.json["error"]["code"] == "cross_site_request"
    assert queue.job_ids == [job.id]
    r = client.post("/rq/job/kept-job/delete", headers={"X-Requested-With": "XMLHttpRequest"})
    assert r.status_code == 200
    assert r.json == {"status": "OK"}
    assert queue.job_ids == []


def test_dashboard_lists_a_busy_worker_and_its_job(client: FlaskClient, worker: Workers) -> None:
    """While a worker runs a JSON job, the workers list shows that job (it must not fail
    decoding it with RQ's default pickle serializer)."""
    job = submit(client, "message", {"message": "busy", "delay_s": 3})
    wait_job(client, job["id"], {"started"})
    r = client.get("/rq/0/data/workers.json")
    assert r.status_code == 200, r.json
    (shown,) = r.json["workers"]
    assert shown["current_job"]["job_id"] == job["id"]
    assert shown["current_job"]["call_string"] == "tasks.message.message(delay_s=3.0, message='busy')"

"""Lost attempts in the event log and in /metrics: a killed work horse, a killed worker."""

from __future__ import annotations

import os
import signal

import psutil
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker

from tests.events import of_job, wait_ended
from tests.jobwait import submit, wait_job
from tests.procs import Workers, wait_for
from tests.prom import histogram, scrape, value


def _horse(worker_pid: int) -> psutil.Process | None:
    """The work horse among a worker's children (RQ's horse leads its own process group)."""
    horses = [p for p in psutil.Process(worker_pid).children() if os.getpgid(p.pid) == p.pid]
    return horses[0] if horses else None


def _running(client: FlaskClient, redis: Redis, job_id: str) -> int:
    """Wait until `job_id` runs in a horse; the PID of the worker running it."""
    wait_job(client, job_id, {"started"})

    def worker_with_horse() -> int | None:
        for worker in Worker.all(connection=redis):
            if worker.get_current_job_id() == job_id and worker.pid and _horse(worker.pid):
                return worker.pid
        return None

    return int(str(wait_for(worker_with_horse, 15, "the job's work horse")))


def test_killed_horse_is_logged_abandoned_then_retried(
    client: FlaskClient, workers: Workers, redis: Redis
) -> None:
    """A horse killed under a live worker: lines started, abandoned (with the signal), retried,
    started, finished, attempts 1, 1, 1, 2, 2; counters abandoned=retried=finished=1."""
    workers.start(1)
    job_id = submit(client, "message", {"message": "oom", "delay_s": 2})["id"]
    horse = _horse(_running(client, redis, job_id))
    assert horse is not None
    horse.kill()
    wait_job(client, job_id, {"finished"}, timeout=30)

    lines = wait_ended(workers.logs, [job_id])
    assert of_job(lines, job_id) == [
        ("started", 1),
        ("abandoned", 1),
        ("retried", 1),
        ("started", 2),
        ("finished", 2),
    ]
    lost = next(e for e in lines if e["job_id"] == job_id and e["event"] == "abandoned")
    assert "signal 9" in lost["reason"] and lost["task"] == "message" and lost["level"] == "warning"
    retried = next(e for e in lines if e["job_id"] == job_id and e["event"] == "retried")
    assert retried["error"] == "WorkHorseKilled" and retried["duration_s"] >= 0

    samples = scrape(client)
    for counter, expected in (("abandoned", 1), ("retried", 1), ("finished", 1), ("failed", 0)):
        assert value(samples, f"postal_jobs_{counter}_total", task="message") == expected, counter
    assert histogram(samples, "postal_job_duration_seconds", task="message")["count"] == 2


def test_dead_workers_job_is_logged_abandoned_by_the_peer_that_recovers_it(
    client: FlaskClient, workers: Workers, redis: Redis
) -> None:
    """SIGKILL a worker mid-job: the peer that recovers the job logs abandoned and retried (RQ's
    registry cleanup settles it, no worker hook runs), then the retry finishes."""
    [doomed] = workers.start(1)
    job_id = submit(client, "message", {"message": "survivor", "delay_s": 2})["id"]
    assert _running(client, redis, job_id) == doomed.pid
    os.kill(doomed.pid, signal.SIGKILL)
    doomed.wait(10)
    workers.start(1)  # recovers the dead worker's job at start
    wait_job(client, job_id, {"finished"}, timeout=30)

    lines = wait_ended(workers.logs, [job_id])
    assert of_job(lines, job_id) == [
        ("started", 1),
        ("abandoned", 1),
        ("retried", 1),
        ("started", 2),
        ("finished", 2),
    ]
    lost = next(e for e in lines if e["job_id"] == job_id and e["event"] == "abandoned")
    assert "worker running the job died" in lost["reason"]
    retried = next(e for e in lines if e["job_id"] == job_id and e["event"] == "retried")
    assert retried["error"] == "AbandonedJobError" and "duration_s" not in retried

    samples = scrape(client)
    for counter, expected in (("abandoned", 1), ("retried", 1), ("finished", 1), ("failed", 0)):
        assert value(samples, f"postal_jobs_{counter}_total", task="message") == expected, counter
    assert histogram(samples, "postal_job_duration_seconds", task="message")["count"] == 1
    assert histogram(samples, "postal_job_queue_wait_seconds", task="message")["count"] == 2


def test_stopped_job_is_logged_stopped_not_failed(
    client: FlaskClient, workers: Workers, redis: Redis
) -> None:
    """A running job stopped through the API: a `stopped` line and counter, no failure, no retry."""
    workers.start(1)
    job_id = submit(client, "message", {"message": "long", "delay_s": 30})["id"]
    _running(client, redis, job_id)
    assert client.post(f"/jobs/{job_id}/cancel").status_code == 202
    wait_job(client, job_id, {"stopped"}, timeout=30)

    assert of_job(wait_ended(workers.logs, [job_id]), job_id) == [("started", 1), ("stopped", 1)]
    samples = scrape(client)
    for counter, expected in (("stopped", 1), ("failed", 0), ("retried", 0), ("abandoned", 0)):
        assert value(samples, f"postal_jobs_{counter}_total", task="message") == expected, counter

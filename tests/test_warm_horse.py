"""The warm horse (tasks.horse): one child runs job after job, and still isolates the worker
from a job that crashes, leaks, hangs past its timeout or is stopped."""

from __future__ import annotations

import psutil
from redis import Redis
from rq import Queue, Retry
from rq.job import Job

from tests.procs import Workers, wait_for

TERMINAL = ("finished", "failed", "stopped", "canceled")


def run(queue: Queue, func: str, *args: object, timeout: float = 30, **options: object) -> Job:
    """Enqueue `func` and wait until the job ends."""
    job = queue.enqueue(func, *args, **options)  # type: ignore[arg-type]
    wait_for(lambda: job.get_status(refresh=True) in TERMINAL, timeout, f"job {job.id} ({func}) to end")
    return job


def test_one_horse_runs_many_jobs(redis: Redis, worker: Workers) -> None:
    """Consecutive jobs run in the same long-lived horse, a child of the worker, not the worker."""
    queue = Queue("default", connection=redis, serializer="json")
    pids = {run(queue, "tests.jobs.horse_pid").return_value() for _ in range(5)}
    [worker_proc] = worker.procs
    assert len(pids) == 1, pids
    [pid] = pids
    assert pid != worker_proc.pid
    assert psutil.Process(pid).ppid() == worker_proc.pid


def test_segfault_fails_the_job_not_the_worker(redis: Redis, worker: Workers) -> None:
    """A job that segfaults kills only the horse: the job is recorded as failed (WorkHorseKilled,
    retried per its policy first) and the next job runs in a fresh horse of the same worker."""
    queue = Queue("default", connection=redis, serializer="json")
    before = run(queue, "tests.jobs.horse_pid").return_value()
    crashed = run(queue, "tests.jobs.crash", retry=Retry(1, [0]), meta={"max_retries": 1})
    assert crashed.get_status() == "failed"
    meta = crashed.get_meta(refresh=True)
    assert [e["type"] for e in meta["errors"]] == ["WorkHorseKilled", "WorkHorseKilled"], meta
    assert "signal 11" in meta["errors"][0]["message"], meta
    after = run(queue, "tests.jobs.horse_pid").return_value()
    assert after != before
    [worker_proc] = worker.procs
    assert worker_proc.poll() is None, worker.logs()


def test_timed_out_job_leaves_the_horse_serving(redis: Redis, worker: Workers) -> None:
    """A job past its timeout is stopped inside the horse (RQ's SIGALRM) and fails; the same
    horse runs the next job."""
    queue = Queue("default", connection=redis, serializer="json")
    before = run(queue, "tests.jobs.horse_pid").return_value()
    slow = run(queue, "tests.jobs.counted", 10, job_timeout=1)
    assert slow.get_status() == "failed"
    assert "JobTimeoutException" in (slow.latest_result().exc_string or "")  # type: ignore[union-attr]
    assert run(queue, "tests.jobs.horse_pid").return_value() == before


def test_horse_is_replaced_after_max_jobs(redis: Redis, workers: Workers) -> None:
    """POSTAL_HORSE_MAX_JOBS bounds how many jobs one horse runs before a fresh one is forked."""
    workers.start(1, env={"POSTAL_HORSE_MAX_JOBS": "3"})
    queue = Queue("default", connection=redis, serializer="json")
    pids = [run(queue, "tests.jobs.horse_pid").return_value() for _ in range(7)]
    assert pids[0] == pids[1] == pids[2] != pids[3] == pids[4] == pids[5] != pids[6], pids


def test_leaky_horse_is_replaced_above_memory_bound(redis: Redis, workers: Workers) -> None:
    """A horse whose resident memory grows past POSTAL_HORSE_MAX_MEMORY_MB is replaced after
    the job that grew it; the job itself succeeded."""
    workers.start(1, env={"POSTAL_HORSE_MAX_MEMORY_MB": "200"})
    queue = Queue("default", connection=redis, serializer="json")
    small = run(queue, "tests.jobs.leak", 1)
    assert small.get_status() == "finished"
    big = run(queue, "tests.jobs.leak", 300)
    assert big.get_status() == "finished"
    assert big.return_value() == small.return_value()
    wait_for(lambda: not psutil.pid_exists(big.return_value()), 10, "the leaky horse to exit")
    assert run(queue, "tests.jobs.horse_pid").return_value() != big.return_value()

"""One log line per job event, and the metrics that go with it (tasks.metrics).

Events: `enqueued` (API), `started`, `finished`, `retried`, `failed`, `stopped` and
`abandoned` (the attempt was lost with its work horse or its worker), each one JSON line on
stderr (tasks.eventlog) with the job id, task, queue, attempt and, where it applies, duration.

Where they come from: the API's submit routes (`enqueued`); `PostalWorker`'s hooks, which run
in the worker (`started`, a killed horse) or its forked work horse (`finished`, `retried`,
`failed`); and `tasks.failures.record_failure` for a job whose worker died (RQ's registry
cleanup settles it, with no worker hook after). Recording never raises: a metrics write that
fails is logged and the job's own bookkeeping goes on.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from redis import Redis
from redis.client import Pipeline
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus
from rq.utils import now

from tasks import metrics
from tasks.eventlog import emit
from tasks.registry import task_for_func

_problems = logging.getLogger("postal.metrics")

# What RQ left the job's status at after `handle_job_failure` -> the event it means.
_FAILURE_OUTCOMES = {
    JobStatus.QUEUED.value: "retried",
    JobStatus.SCHEDULED.value: "retried",
    JobStatus.STOPPED.value: "stopped",
}


def task_of(job: Job) -> str:
    """The task's public name: from meta (the API sets it), else from the registry by dotted
    function, else the dotted function itself (jobs enqueued around the API)."""
    task = job.meta.get("task")
    if isinstance(task, str):
        return task
    try:
        func = job.func_name or ""
    except DeserializationError:
        return "unknown"
    spec = task_for_func(func)
    return spec.name if spec else (func or "unknown")


def attempt_of(job: Job, *, error_recorded: bool = False) -> int:
    """1 for a job's first run. The failure handler numbers each failed attempt in
    `meta["errors"]`; once this attempt's error is there (`error_recorded`), it is the last."""
    errors = job.meta.get("errors") or []
    last = int(errors[-1].get("attempt", len(errors))) if errors else 0
    return last if error_recorded else last + 1


def _seconds(start: datetime | None, end: datetime | None) -> float | None:
    if start is None or end is None:
        return None
    if start.tzinfo is None:
        start = start.replace(tzinfo=UTC)
    if end.tzinfo is None:
        end = end.replace(tzinfo=UTC)
    return round(max((end - start).total_seconds(), 0.0), 6)


@dataclass(frozen=True)
class Timing:
    """An attempt's times, taken before RQ's retry re-enqueues the job (that resets
    `enqueued_at`)."""

    duration_s: float | None
    queue_wait_s: float | None

    @classmethod
    def of(cls, job: Job) -> Timing:
        return cls(
            duration_s=_seconds(job.started_at, job.ended_at),
            queue_wait_s=_seconds(job.enqueued_at, job.started_at),
        )


def _fields(job: Job) -> dict[str, Any]:
    return {"job_id": job.id, "task": task_of(job), "queue": job.origin}


def enqueued(redis: Redis, jobs: Sequence[Job], seconds: float, request_id: str | None = None) -> None:
    """After the API wrote a request's new `jobs` in `seconds`: the per-task counts and the
    latency in one MULTI, then one line per job."""
    try:
        described = [_fields(job) for job in jobs]
        per_task: dict[str, int] = {}
        for fields in described:
            per_task[fields["task"]] = per_task.get(fields["task"], 0) + 1
        with redis.pipeline() as pipe:  # MULTI: a scrape never sees a bucket without its count
            for task, amount in per_task.items():
                metrics.count(pipe, "enqueued", task, amount)
            metrics.observe(pipe, metrics.API_ENQUEUE, seconds)
            pipe.execute()
        for job, fields in zip(jobs, described, strict=True):
            emit("enqueued", **fields, attempt=1, status=job.get_status(refresh=False), request_id=request_id)
    except Exception:  # noqa: BLE001 - metrics must not turn an accepted request into an error
        _problems.exception("recording enqueued jobs failed")


def started(job: Job, worker: str) -> None:
    """The worker is about to run `job` (a line only: its metrics are written when it ends)."""
    try:
        emit(
            "started",
            **_fields(job),
            attempt=attempt_of(job),
            worker=worker,
            queue_wait_s=_seconds(job.enqueued_at, now()),
        )
    except Exception:  # noqa: BLE001 - observability must not break the job's bookkeeping
        _problems.exception("recording the start of job %s failed", job.id)


def outcome_after_failure(job: Job) -> str:
    """What RQ's `handle_job_failure` did with the job, read from the status it left."""
    status = job.get_status(refresh=False)
    return _FAILURE_OUTCOMES.get(str(getattr(status, "value", status)), "failed")


def record_end(pipe: Pipeline, job: Job, outcome: str, timing: Timing) -> None:
    """Add an attempt's outcome counter and its duration and queue-wait observations to `pipe`
    (a MULTI: a scrape never sees half of them). The worker adds them to RQ's own transaction
    for a finished job, which saves a round trip per job."""
    task = task_of(job)
    metrics.count(pipe, outcome, task)
    if timing.duration_s is not None:
        metrics.observe(pipe, metrics.JOB_DURATION, timing.duration_s, task)
    if timing.queue_wait_s is not None:
        metrics.observe(pipe, metrics.QUEUE_WAIT, timing.queue_wait_s, task)


def ended(
    job: Job, outcome: str, timing: Timing, worker: str | None = None, *, recorded: bool = False
) -> None:
    """An attempt ended (`finished`, `retried`, `failed`, `stopped`): its metrics (`record_end`,
    unless `recorded` already), then its line (so whoever sees the line can already read the
    numbers)."""
    try:
        fields = _fields(job)
        if not recorded:
            with job.connection.pipeline() as pipe:
                record_end(pipe, job, outcome, timing)
                pipe.execute()
        errors = job.meta.get("errors") or []
        error_recorded = outcome not in ("finished", "stopped") and bool(errors)
        emit(
            outcome,
            **fields,
            attempt=attempt_of(job, error_recorded=error_recorded),
            duration_s=timing.duration_s,
            queue_wait_s=timing.queue_wait_s,
            error=errors[-1].get("type") if error_recorded else None,
            worker=worker or job.worker_name,
        )
    except Exception:  # noqa: BLE001 - observability must not break the job's bookkeeping
        _problems.exception("recording the end of job %s failed", job.id)


def abandoned(job: Job, reason: str, *, settled_by_rq: bool, worker: str | None = None) -> None:
    """An attempt was lost with its horse or worker. With `settled_by_rq` (a dead worker's job,
    which RQ's registry cleanup retries iff `retries_left`, and no worker hook follows) the
    outcome is recorded here too; a killed horse's outcome comes from `handle_job_failure`."""
    try:
        fields = _fields(job)
        with job.connection.pipeline() as pipe:
            metrics.count(pipe, "abandoned", fields["task"])
            pipe.execute()
        emit(
            "abandoned", **fields, attempt=attempt_of(job, error_recorded=True), reason=reason, worker=worker
        )
        if settled_by_rq:
            outcome = "retried" if job.retries_left and job.retries_left > 0 else "failed"
            # no duration: nobody saw the attempt end
            ended(job, outcome, Timing(None, _seconds(job.enqueued_at, job.started_at)), job.worker_name)
    except Exception:  # noqa: BLE001 - observability must not break the job's bookkeeping
        _problems.exception("recording abandoned job %s failed", job.id)

"""How a job looks over HTTP: one function per shape, shared by every endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus

from tasks.registry import task_for_func

# Statuses in which the job has begun at least one attempt that has not ended in an error record.
_RUNNING_OR_DONE = {JobStatus.STARTED, JobStatus.FINISHED}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def _task_name(job: Job) -> str | None:
    name = job.meta.get("task")
    if isinstance(name, str):
        return name
    try:
        func_name = job.func_name
    except DeserializationError:
        return None
    spec = task_for_func(func_name) if func_name else None
    return spec.name if spec else None


def _last_error(job: Job, status: JobStatus) -> dict[str, Any] | None:
    """The error that ended the job: the last attempt's record, or RQ's traceback's last line
    for failures our exception handler never saw (e.g. a job enqueued to a stock worker)."""
    if status not in (JobStatus.FAILED, JobStatus.STOPPED):
        return None
    if status == JobStatus.STOPPED:
        return {"type": "JobStopped", "message": "the job was stopped on request"}
    errors = job.meta.get("errors") or []
    if errors:
        last: dict[str, Any] = errors[-1]
        return last
    result = job.latest_result()
    exc_string = (result.exc_string if result else None) or ""
    line = exc_string.strip().splitlines()[-1] if exc_string.strip() else "unknown error"
    kind, _, message = line.partition(": ")
    return {"type": kind.rsplit(".", 1)[-1], "message": message or line}


def job_summary(job: Job) -> dict[str, Any]:
    """The light shape used in lists: identity, state and timing, no payload or result."""
    status = job.get_status(refresh=False)
    errors = job.meta.get("errors") or []
    return {
        "id": job.id,
        "url": url_for("jobs.get_job", job_id=job.id),
        "task": _task_name(job),
        "queue": job.origin,
        "status": status.value if status else None,
        "attempts": len(errors) + (1 if status in _RUNNING_OR_DONE else 0),
        "retries_left": job.retries_left or 0,
        "error": _last_error(job, status),
        "created_at": _iso(job.created_at),
        "enqueued_at": _iso(job.enqueued_at),
        "started_at": _iso(job.started_at),
        "ended_at": _iso(job.ended_at),
    }


def job_detail(job: Job) -> dict[str, Any]:
    """The full shape of `GET /jobs/<id>`: the summary plus payload, progress, result, errors."""
    view = job_summary(job)
    try:
        payload: Any = job.kwargs
    except DeserializationError:
        payload = None
    view.update(
        {
            "payload": payload,
            "progress": job.meta.get("progress"),
            "result": job.return_value() if view["status"] == JobStatus.FINISHED.value else None,
            "errors": job.meta.get("errors") or [],
            "worker": job.worker_name or None,
            "timeout_s": job.timeout,
        }
    )
    return view

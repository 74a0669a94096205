"""How a job looks over HTTP: one function per shape, shared by every endpoint."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from flask import url_for
from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus

from tasks.jobinfo import last_error, task_name

# Statuses in which the job has begun at least one attempt that has not ended in an error record.
_RUNNING_OR_DONE = {JobStatus.STARTED, JobStatus.FINISHED}


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def job_summary(job: Job) -> dict[str, Any]:
    """The light shape used in lists: identity, state and timing, no payload or result."""
    status = job.get_status(refresh=False)
    errors = job.meta.get("errors") or []
    return {
        "id": job.id,
        "url": url_for("jobs.get_job", job_id=job.id),
        "task": task_name(job),
        "queue": job.origin,
        "status": status.value if status else None,
        "attempts": len(errors) + (1 if status in _RUNNING_OR_DONE else 0),
        "retries_left": job.retries_left or 0,
        "error": last_error(job, status),
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

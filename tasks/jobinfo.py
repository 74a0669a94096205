"""What a stored job is and why it ended: read by the API's job views and the `postal` command,
so `GET /jobs/<id>` and `postal failed` name the same task and the same error."""

from __future__ import annotations

from typing import Any

from rq.exceptions import DeserializationError
from rq.job import Job, JobStatus

from tasks.registry import task_for_func


def task_name(job: Job) -> str | None:
    """The task's public name: from meta (the API sets it), else from the dotted function, so
    jobs enqueued around the API still map back; None when neither says."""
    name = job.meta.get("task")
    if isinstance(name, str):
        return name
    try:
        func_name = job.func_name
    except DeserializationError:
        return None
    spec = task_for_func(func_name) if func_name else None
    return spec.name if spec else None


def last_error(job: Job, status: JobStatus) -> dict[str, Any] | None:
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

"""The workers' exception handler: record each attempt's error and decide retry vs fail.

Wired with `rq worker --exception-handler tasks.failures.record_failure`. RQ calls handlers in
the work horse before it decides whether to retry (rq/worker/base.py, `_finalize_failure` calls
`handle_exception` and only then `handle_job_failure`, which retries iff `job.retries_left > 0`),
and in the maintenance pass for abandoned jobs (rq/registry.py, `StartedJobRegistry.cleanup`).
So clearing `retries_left` here makes a permanent error, a bug or a timeout fail at once, while
transient errors and lost workers keep the task's backoff policy.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from rq.exceptions import AbandonedJobError
from rq.job import Job

from tasks import events
from tasks.errors import TransientError
from tasks.retries import mark_exhausted

log = logging.getLogger("postal.failures")

MAX_RECORDED_ERRORS = 20
MAX_MESSAGE_CHARS = 2000
ABANDONED_MESSAGE = "the worker running the job died (killed, crashed or its host was lost)"


def retryable(exc: BaseException) -> bool:
    """Transient errors and lost workers are worth another attempt; nothing else is."""
    return isinstance(exc, TransientError | AbandonedJobError)


def append_error(job: Job, kind: str, message: str, *, transient: bool) -> dict[str, Any]:
    """Add one attempt's error to `job.meta["errors"]` (the caller saves meta)."""
    errors: list[dict[str, Any]] = list(job.meta.get("errors", []))
    record = {
        "attempt": len(errors) + 1,
        "type": kind,
        "message": message[:MAX_MESSAGE_CHARS],
        "transient": transient,
        "at": datetime.now(UTC).isoformat(),
    }
    errors.append(record)
    job.meta["errors"] = errors[-MAX_RECORDED_ERRORS:]
    return record


def record_failure(
    job: Job,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> bool:
    """Record this attempt's error; stop retries unless it is retryable; mark a final failure."""
    job.get_meta(refresh=True)  # the horse may have saved progress since this object was loaded
    message = ABANDONED_MESSAGE if isinstance(exc_value, AbandonedJobError) else str(exc_value)
    record = append_error(job, exc_type.__name__, message, transient=retryable(exc_value))
    if not record["transient"] and job.retries_left:
        job.retries_left = 0
        # handle_job_failure does not save the job hash on the failure path; persist the field so
        # `GET /jobs/<id>` does not show a budget the job will never use.
        job.connection.hset(job.key, "retries_left", 0)
    if not job.retries_left:
        mark_exhausted(job)
    job.save_meta()  # type: ignore[no-untyped-call]  # rq 3.0 leaves save_meta unannotated
    log.warning(
        "job %s attempt=%d failed: %s: %s (%s)",
        job.id,
        record["attempt"],
        record["type"],
        record["message"],
        "will retry" if job.retries_left else "no retry",
    )
    if isinstance(exc_value, AbandonedJobError):  # RQ's registry cleanup settles it; no hook follows
        events.abandoned(job, ABANDONED_MESSAGE, settled_by_rq=True)
    return True

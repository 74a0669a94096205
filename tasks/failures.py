"""The workers' exception handler: record each attempt's error and decide retry vs fail.

Wired with `rq worker --exception-handler tasks.failures.record_failure`. RQ calls handlers in
the work horse before it decides whether to retry (rq/worker/base.py, `_finalize_failure` calls
`handle_exception` and only then `handle_job_failure`, which retries iff `job.retries_left > 0`).
So clearing `retries_left` here for anything but a `TransientError` makes a permanent error,
a bug or a timeout fail at once, while transient errors keep the task's backoff policy.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from types import TracebackType
from typing import Any

from rq.job import Job

from tasks.errors import TransientError

log = logging.getLogger("postal.failures")

MAX_RECORDED_ERRORS = 20
MAX_MESSAGE_CHARS = 2000


def error_record(exc: BaseException, attempt: int) -> dict[str, Any]:
    """The JSON shape of one attempt's error, as `GET /jobs/<id>` shows it."""
    return {
        "attempt": attempt,
        "type": type(exc).__name__,
        "message": str(exc)[:MAX_MESSAGE_CHARS],
        "transient": isinstance(exc, TransientError),
        "at": datetime.now(UTC).isoformat(),
    }


def record_failure(
    job: Job,
    exc_type: type[BaseException],
    exc_value: BaseException,
    traceback: TracebackType | None,
) -> bool:
    """Append this attempt's error to `job.meta["errors"]`; stop retries unless it is transient."""
    errors: list[dict[str, Any]] = list(job.meta.get("errors", []))
    record = error_record(exc_value, attempt=len(errors) + 1)
    errors.append(record)
    job.meta["errors"] = errors[-MAX_RECORDED_ERRORS:]
    job.save_meta()  # type: ignore[no-untyped-call]  # rq 3.0 leaves save_meta unannotated
    if not record["transient"] and job.retries_left:
        job.retries_left = 0
        # handle_job_failure does not save the job hash on the failure path; persist the field so
        # `GET /jobs/<id>` does not show a budget the job will never use.
        job.connection.hset(job.key, "retries_left", 0)
    log.warning(
        "job %s attempt=%d failed: %s: %s (%s)",
        job.id,
        record["attempt"],
        record["type"],
        record["message"],
        "will retry" if record["transient"] and job.retries_left else "no retry",
    )
    return True

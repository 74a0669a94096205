"""A job's retry budget: spent by failures, given back in full when the job is requeued.

RQ's `requeue` (API, `rq requeue`, dashboard) leaves `retries_left` at 0, so a requeued job
would get a single attempt. postal marks a job `exhausted` when its last failure is final, and
whoever runs or requeues it next restores the task's full budget first.
"""

from __future__ import annotations

import json

from rq.exceptions import DeserializationError
from rq.job import Job

from tasks.registry import task_for_func
from tasks.settings import Settings

EXHAUSTED = "exhausted"
# The budget the job was enqueued with (meta); the API sets it, other producers may.
MAX_RETRIES = "max_retries"


def mark_exhausted(job: Job) -> None:
    """Note in meta that this failure is final (saved with the caller's next `save_meta`)."""
    job.meta[EXHAUSTED] = True


def restore_budget(job: Job, settings: Settings) -> bool:
    """Give an exhausted job its task's full retry budget back; persist it. True if it did."""
    if not job.meta.get(EXHAUSTED):
        return False
    del job.meta[EXHAUSTED]
    try:
        spec = task_for_func(job.func_name or "")
    except DeserializationError:  # undecodable job data: it will fail in the horse, not here
        spec = None
    budget = job.meta.get(MAX_RETRIES)
    if isinstance(budget, int) and budget > 0:
        job.retries_left = budget
        if spec is not None:
            job.retry_intervals = spec.retry.intervals(settings.retry_delay_scale)
    elif spec is not None and spec.retry.max_retries:
        job.retries_left = spec.retry.max_retries
        job.retry_intervals = spec.retry.intervals(settings.retry_delay_scale)
    with job.connection.pipeline() as pipe:
        pipe.hset(
            job.key,
            mapping={
                "retries_left": job.retries_left or 0,
                # the same encodings as rq/job.py `to_dict`: plain JSON here, the serializer for meta
                "retry_intervals": json.dumps(job.retry_intervals or []),
                "meta": job.serializer.dumps(job.meta),
            },
        )
        pipe.execute()
    return True

"""Failed jobs for `postal failed` and `postal requeue`: read from RQ's FailedJobRegistry of each
queue, named by task and exception type the way `GET /jobs/<id>` names them (tasks.jobinfo),
grouped (shown as a table or JSON), filtered, and requeued with their retry budget given back
(tasks.retries)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from rq.exceptions import DeserializationError, InvalidJobOperation
from rq.job import Job, JobStatus

from postal.tables import shorten, table
from tasks.connection import SERIALIZER, Postal
from tasks.jobinfo import last_error, task_name
from tasks.retries import restore_budget

FETCH_CHUNK = 500
UNKNOWN = "?"
MESSAGE_COLUMN = 60
_EPOCH = datetime.min.replace(tzinfo=UTC)


@dataclass(frozen=True)
class FailedJob:
    """One job in a failed registry, named by its task and the exception that ended it."""

    job: Job
    queue: str
    task: str
    exception: str
    message: str
    ended_at: datetime | None

    @property
    def id(self) -> str:
        return self.job.id


@dataclass(frozen=True)
class FailureGroup:
    """Failed jobs of one task that ended with one exception type, and the newest of them."""

    task: str
    exception: str
    count: int
    queues: tuple[str, ...]
    newest: FailedJob


def _describe(job: Job, queue: str) -> FailedJob:
    error = last_error(job, JobStatus.FAILED) or {}
    task = task_name(job)
    if task is None:
        try:
            task = job.func_name or UNKNOWN
        except DeserializationError:  # undecodable job data (e.g. a planted pickle)
            task = UNKNOWN
    return FailedJob(
        job=job,
        queue=queue,
        task=task,
        exception=str(error.get("type") or UNKNOWN),
        message=str(error.get("message") or ""),
        ended_at=job.ended_at,
    )


def _chunks(ids: list[str]) -> Iterator[list[str]]:
    for start in range(0, len(ids), FETCH_CHUNK):
        yield ids[start : start + FETCH_CHUNK]


def failed_jobs(state: Postal, queues: Iterable[str]) -> list[FailedJob]:
    """Every job in the failed registries of `queues` (jobs that expired meanwhile are skipped)."""
    found: list[FailedJob] = []
    for name in queues:
        registry = state.queues[name].failed_job_registry
        # cleanup=False: a read must not run RQ's registry cleanup; workers own that
        ids = registry.get_job_ids(cleanup=False)
        for chunk in _chunks(ids):
            for job in Job.fetch_many(chunk, connection=state.redis, serializer=SERIALIZER):
                if job is not None:
                    found.append(_describe(job, name))
    return found


def group(jobs: Iterable[FailedJob]) -> list[FailureGroup]:
    """Jobs grouped by (task, exception), biggest group first; each with its newest failure."""
    groups: dict[tuple[str, str], list[FailedJob]] = {}
    for failed in jobs:
        groups.setdefault((failed.task, failed.exception), []).append(failed)
    result = [
        FailureGroup(
            task=task,
            exception=exception,
            count=len(members),
            queues=tuple(sorted({m.queue for m in members})),
            newest=max(members, key=lambda m: m.ended_at or _EPOCH),
        )
        for (task, exception), members in groups.items()
    ]
    return sorted(result, key=lambda g: (-g.count, g.task, g.exception))


def select(jobs: Iterable[FailedJob], task: str | None, exception: str | None) -> list[FailedJob]:
    """The jobs of task `task` that ended with exception type `exception` (None matches any)."""
    return [
        failed
        for failed in jobs
        if (task is None or failed.task == task) and (exception is None or failed.exception == exception)
    ]


def requeue(
    state: Postal, jobs: Iterable[FailedJob], done: Callable[[FailedJob, bool], None] = lambda job, ok: None
) -> list[str]:
    """Put each job back on its queue with its task's full retry budget; the ids requeued.

    A job another client requeued (or deleted) meanwhile is skipped: RQ's registry `requeue`
    refuses a job no longer in the registry (rq/registry.py, `InvalidJobOperation`).
    `done(job, requeued)` is called after each one, for progress display.
    """
    requeued: list[str] = []
    for failed in jobs:
        registry = state.queues[failed.queue].failed_job_registry
        restore_budget(failed.job, state.settings)
        try:
            registry.requeue(failed.job)
        except InvalidJobOperation:
            done(failed, False)
            continue
        requeued.append(failed.id)
        done(failed, True)
    return requeued


def group_view(group: FailureGroup) -> dict[str, Any]:
    """One group as JSON-ready data (`postal failed --json`)."""
    newest = group.newest
    return {
        "task": group.task,
        "exception": group.exception,
        "count": group.count,
        "queues": list(group.queues),
        "newest": {"id": newest.id, "failed_at": newest.ended_at, "message": newest.message},
    }


def render_groups(groups: list[FailureGroup]) -> str:
    """Groups as a table, newest example and its message per row (`postal failed`)."""
    return table(
        ("TASK", "EXCEPTION", "COUNT", "QUEUES", "NEWEST JOB", "FAILED AT (UTC)", "MESSAGE"),
        [
            (
                g.task,
                g.exception,
                g.count,
                ",".join(g.queues),
                g.newest.id,
                g.newest.ended_at.strftime("%Y-%m-%d %H:%M:%S") if g.newest.ended_at else None,
                shorten(g.newest.message, MESSAGE_COLUMN),
            )
            for g in groups
        ],
        empty="no failed jobs",
    )

"""`GET /jobs`: walk one state's registry across queues, page by page, filtered by task.

The cursor is `<queue index>.<offset>`: where the next page resumes. Registries change while a
client pages through them, so a page may repeat or skip a job that moved meanwhile; the listing
is a view for operators, not a ledger.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rq import Queue
from rq.job import Job

from tasks.connection import SERIALIZER
from web.errors import ApiError
from web.state import Postal
from web.views import job_summary

CHUNK = 200
MAX_LIMIT = 500
_CURSOR = re.compile(r"^(\d{1,3})\.(\d{1,12})$")


def _registry_ids(name: str) -> Callable[[Queue, int, int], list[str]]:
    def ids(queue: Queue, start: int, count: int) -> list[str]:
        registry = getattr(queue, name)
        # cleanup=False: a read must not run RQ's registry cleanup (workers own that, with
        # postal's recovery first: tasks.recovery.return_unstarted)
        found: list[str] = registry.get_job_ids(start, start + count - 1, cleanup=False)
        return found

    return ids


def _queued_ids(queue: Queue, start: int, count: int) -> list[str]:
    return queue.get_job_ids(offset=start, length=count)


STATES: dict[str, Callable[[Queue, int, int], list[str]]] = {
    "queued": _queued_ids,
    "started": _registry_ids("started_job_registry"),
    "finished": _registry_ids("finished_job_registry"),
    "failed": _registry_ids("failed_job_registry"),
    "scheduled": _registry_ids("scheduled_job_registry"),
    "deferred": _registry_ids("deferred_job_registry"),
    "canceled": _registry_ids("canceled_job_registry"),
}


@dataclass(frozen=True)
class ListQuery:
    """A validated `GET /jobs` query."""

    state: str
    queues: list[str]
    task: str | None
    limit: int
    queue_index: int
    offset: int


def parse_query(args: dict[str, str], state: Postal) -> ListQuery:
    """Validate the query string; every bad parameter is a 400 naming it."""
    known = {"state", "queue", "task", "limit", "cursor"}
    unknown = sorted(set(args) - known)
    if unknown:
        raise ApiError(400, "bad_query", f"unknown query parameter(s): {', '.join(unknown)}")
    job_state = args.get("state", "queued")
    if job_state not in STATES:
        raise ApiError(400, "bad_query", f"state must be one of {', '.join(STATES)}, got {job_state!r}")
    queue = args.get("queue")
    if queue is not None and queue not in state.queues:
        raise ApiError(400, "bad_query", f"unknown queue {queue!r}; known queues: {', '.join(state.queues)}")
    raw_limit = args.get("limit", "50")
    if not raw_limit.isdigit() or not 1 <= int(raw_limit) <= MAX_LIMIT:
        raise ApiError(400, "bad_query", f"limit must be an integer from 1 to {MAX_LIMIT}, got {raw_limit!r}")
    cursor = args.get("cursor", "0.0")
    match = _CURSOR.match(cursor)
    if not match:
        raise ApiError(400, "bad_query", f"cursor {cursor!r} is not one this API returned")
    return ListQuery(
        state=job_state,
        queues=[queue] if queue else list(state.queues),
        task=args.get("task") or None,
        limit=int(raw_limit),
        queue_index=int(match.group(1)),
        offset=int(match.group(2)),
    )


def list_jobs(query: ListQuery, state: Postal) -> dict[str, Any]:
    """One page of jobs in `query.state`, and the cursor of the next page (None at the end)."""
    ids_of = STATES[query.state]
    items: list[dict[str, Any]] = []
    qi, offset = query.queue_index, query.offset
    while qi < len(query.queues):
        queue = state.queues[query.queues[qi]]
        ids = ids_of(queue, offset, CHUNK)
        if not ids:
            qi, offset = qi + 1, 0
            continue
        jobs = Job.fetch_many(ids, connection=state.redis, serializer=SERIALIZER)
        for position, job in enumerate(jobs, start=offset + 1):
            if job is None or (query.task and job.meta.get("task") != query.task):
                continue
            items.append(job_summary(job))
            if len(items) == query.limit:
                return {"jobs": items, "next_cursor": f"{qi}.{position}"}
        offset += len(ids)
    return {"jobs": items, "next_cursor": None}

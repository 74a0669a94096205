"""Turning validated requests into RQ jobs: one pipeline per request, idempotent by job id.

Shared by the API (web/jobs.py) and the `postal submit` command, so both accept and refuse
exactly the same submissions; nothing here imports Flask. A submission is validated in full
(envelope, task, payload, options) before anything is written, so a bad entry in a batch
enqueues nothing. Jobs with a caller-chosen `job_id` are created under WATCH on their keys:
a concurrent submit of the same id makes the transaction retry and then see the existing job,
so an id never names two jobs.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError
from redis.client import Pipeline
from redis.exceptions import WatchError
from rq import Retry
from rq.job import Job
from rq.utils import now as rq_now

from tasks import events, replication
from tasks.connection import SERIALIZER, Postal
from tasks.registry import TaskSpec, UnknownTask, get_task
from tasks.retries import MAX_RETRIES

JOB_ID_PATTERN = r"^[A-Za-z0-9_-]{1,128}$"
MAX_DELAY_S = 30 * 24 * 3600
WATCH_ATTEMPTS = 5


class SubmissionError(Exception):
    """Raised when a submission is refused: the HTTP status the API answers with, a machine
    code, a message for people and per-field details (the API's error body, web/errors.py)."""

    def __init__(self, status: int, code: str, message: str, details: Any = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details


class SubmitOptions(BaseModel):
    """Per-job options; every one is optional."""

    model_config = ConfigDict(extra="forbid")

    queue: str | None = Field(default=None, description="Queue to use instead of the task's default.")
    delay_s: float | None = Field(default=None, ge=0, le=MAX_DELAY_S, description="Run no sooner than this.")
    job_id: str | None = Field(
        default=None, pattern=JOB_ID_PATTERN, description="Caller-chosen id; resubmitting it is a no-op."
    )
    timeout_s: int | None = Field(
        default=None, ge=1, description="A shorter timeout than the task's (never a longer one)."
    )


class SubmitRequest(BaseModel):
    """The body of `POST /jobs`, and each entry of `POST /jobs/batch`."""

    model_config = ConfigDict(extra="forbid")

    task: str = Field(min_length=1, max_length=100)
    payload: dict[str, Any] = Field(default_factory=dict)
    options: SubmitOptions = Field(default_factory=SubmitOptions)


@dataclass(frozen=True)
class Submission:
    """A request that passed every check and can be written to Redis as is."""

    spec: TaskSpec
    payload: dict[str, Any]
    queue: str
    delay_s: float | None
    job_id: str | None
    timeout_s: int


def validation_details(exc: ValidationError, prefix: tuple[str | int, ...] = ()) -> list[dict[str, Any]]:
    """Pydantic errors as plain JSON (no input echo, no exception objects)."""
    return [
        {"loc": [*prefix, *err["loc"]], "message": err["msg"], "type": err["type"]}
        for err in exc.errors(include_url=False, include_context=False, include_input=False)
    ]


def parse_submission(body: Any, state: Postal, prefix: tuple[str | int, ...] = ()) -> Submission:
    """Validate one submission: envelope, then task name, queue, then the task's payload model."""
    try:
        request = SubmitRequest.model_validate(body)
    except ValidationError as exc:
        raise SubmissionError(
            422, "invalid_request", "request does not match the schema", validation_details(exc, prefix)
        ) from None
    try:
        spec = get_task(request.task)
    except UnknownTask as exc:
        raise SubmissionError(
            422, "unknown_task", str(exc), [{"loc": [*prefix, "task"], "message": str(exc)}]
        ) from None
    queue = request.options.queue or spec.queue
    if queue not in state.queues:
        message = f"unknown queue {queue!r}; known queues: {', '.join(state.queues)}"
        raise SubmissionError(
            422, "unknown_queue", message, [{"loc": [*prefix, "options", "queue"], "message": message}]
        )
    try:
        payload = spec.payload_model.model_validate(request.payload)
    except ValidationError as exc:
        raise SubmissionError(
            422,
            "invalid_payload",
            f"payload is not valid for task {spec.name!r}",
            validation_details(exc, (*prefix, "payload")),
        ) from None
    timeout_s = request.options.timeout_s or spec.timeout_s
    if timeout_s > spec.timeout_s:
        message = f"timeout_s may not exceed task {spec.name!r}'s timeout of {spec.timeout_s} s"
        raise SubmissionError(
            422, "invalid_request", message, [{"loc": [*prefix, "options", "timeout_s"], "message": message}]
        )
    return Submission(
        timeout_s=timeout_s,
        spec=spec,
        payload=payload.model_dump(mode="json"),
        queue=queue,
        delay_s=request.options.delay_s,
        job_id=request.options.job_id,
    )


def _retry(spec: TaskSpec, scale: float) -> Retry | None:
    if spec.retry.max_retries == 0:
        return None
    return Retry(max=spec.retry.max_retries, interval=spec.retry.intervals(scale))


def describe(sub: Submission, limit: int = 200) -> str:
    """`task(payload)`, shortened: what the dashboard and `rq info` show for the job."""
    text = f"{sub.spec.name}({json.dumps(sub.payload, ensure_ascii=False, separators=(',', ':'))})"
    return text if len(text) <= limit else text[: limit - 4] + "...)"


def _create(state: Postal, sub: Submission) -> Job:
    queue = state.queues[sub.queue]
    return queue.create_job(
        sub.spec.func,
        kwargs=sub.payload,
        timeout=sub.timeout_s,
        result_ttl=state.settings.result_ttl,
        failure_ttl=state.settings.failure_ttl,
        description=describe(sub),
        job_id=sub.job_id,
        meta={"task": sub.spec.name, MAX_RETRIES: sub.spec.retry.max_retries},
        retry=_retry(sub.spec, state.settings.retry_delay_scale),
    )


def _save_queued(job: Job, pipe: Pipeline) -> None:
    """Write a new job's hash as queued: what `Queue.enqueue_job` writes for a job without
    dependencies or rate limit, in one HSET instead of its SADD + HSET status + HSET + RPUSH
    (rq/queue.py, `_enqueue_async_job` -> `_prepare_for_queue`, `_persist_job`, `push_job_id`).

    `create_job` already set `origin` and status queued; `timeout` comes from the task spec,
    never RQ's default; `cleanup(ttl=None)` writes nothing. `_push` adds the queue entries.
    """
    job.enqueued_at = rq_now()
    job.save(pipeline=pipe)


def _push(state: Postal, ready: dict[str, list[str]], pipe: Pipeline) -> None:
    """One RPUSH per queue with every new job id in submission order, and the queue in RQ's
    set of known queues (`Queue.redis_queues_keys`, which `Queue.all` and `rq info` read)."""
    for name, job_ids in ready.items():
        queue = state.queues[name]
        pipe.sadd(queue.redis_queues_keys, queue.key)
        pipe.rpush(queue.key, *job_ids)


def enqueue(state: Postal, subs: list[Submission], request_id: str | None = None) -> list[tuple[Job, bool]]:
    """Write every submission in one transaction; return each job and whether it is new. The new
    jobs' `enqueued` events and metrics (tasks.events) are recorded here, so the API and the
    `postal` command count the same way; `request_id` goes on the lines.

    A submission whose `job_id` already exists is not written again: the existing job is
    returned with `False`.
    """
    started = time.perf_counter()
    results = _write(state, subs)
    elapsed = time.perf_counter() - started
    events.enqueued(state.redis, [job for job, created in results if created], elapsed, request_id)
    return results


def _write(state: Postal, subs: list[Submission]) -> list[tuple[Job, bool]]:
    ids = [s.job_id for s in subs if s.job_id]
    if len(ids) != len(set(ids)):
        raise SubmissionError(422, "duplicate_job_id", "the same job_id appears more than once in this batch")
    keys = [Job.key_for(job_id) for job_id in ids]
    replicas = state.settings.wait_replicas
    marker = replication.new_marker() if replicas else None
    with state.redis.pipeline() as pipe:
        for _ in range(WATCH_ATTEMPTS):
            try:
                existing: set[str] = set()
                if keys:
                    pipe.watch(*keys)  # type: ignore[no-untyped-call]  # redis-py leaves watch unannotated
                    existing = {job_id for job_id, key in zip(ids, keys, strict=True) if pipe.exists(key)}
                pipe.multi()
                created: list[Job | None] = []
                ready: dict[str, list[str]] = {}
                for sub in subs:
                    if sub.job_id in existing:
                        created.append(None)
                        continue
                    job = _create(state, sub)
                    if sub.delay_s:
                        state.queues[sub.queue].schedule_job(
                            job, datetime.now(UTC) + timedelta(seconds=sub.delay_s), pipeline=pipe
                        )
                    else:
                        _save_queued(job, pipe)
                        ready.setdefault(sub.queue, []).append(job.id)
                    created.append(job)
                _push(state, ready, pipe)
                if marker is not None:
                    replication.write_marker(pipe, marker)
                pipe.execute()
                break
            except WatchError:
                pipe.reset()
                continue
        else:
            raise SubmissionError(
                409, "conflict", "job ids were being created concurrently; retry the request"
            )
    if marker is not None:
        try:
            replication.confirm(state.redis, marker, replicas, state.settings.redis_wait_timeout)
        except replication.NotReplicated as exc:
            raise SubmissionError(503, "not_replicated", str(exc)) from None
    existing_jobs = iter(
        Job.fetch_many(
            [s.job_id for s, j in zip(subs, created, strict=True) if j is None and s.job_id],
            connection=state.redis,
            serializer=SERIALIZER,
        )
    )
    results: list[tuple[Job, bool]] = []
    for new in created:
        if new is not None:
            results.append((new, True))
            continue
        found = next(existing_jobs)
        if found is None:  # it expired between our check and this read
            raise SubmissionError(
                409, "conflict", "a job with that job_id expired while this request ran; retry it"
            )
        results.append((found, False))
    return results

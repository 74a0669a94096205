"""The jobs API: submit, batch, read, list, requeue, cancel, delete."""

from __future__ import annotations

import random
import re
from typing import Any

from flask import Blueprint, Response, jsonify, request
from rq.command import send_stop_job_command
from rq.exceptions import InvalidJobOperation, NoSuchJobError
from rq.job import Job, JobStatus

from tasks.connection import SERIALIZER
from tasks.retries import restore_budget
from tasks.submission import JOB_ID_PATTERN, Submission, SubmissionError, enqueue, parse_submission
from web.body import json_object
from web.errors import ApiError
from web.listing import list_jobs, parse_query
from web.request_id import request_id
from web.state import Postal, postal
from web.views import job_detail, job_summary

bp = Blueprint("jobs", __name__)
_JOB_ID = re.compile(JOB_ID_PATTERN)
DEMO_WORDS = ("hello", "parcel", "stamp", "courier", "letter", "envelope", "route", "sorted")


def _load(job_id: str) -> Job:
    if not _JOB_ID.match(job_id):
        raise ApiError(400, "bad_job_id", "job ids are 1-128 characters of letters, digits, '_' and '-'")
    try:
        return Job.fetch(job_id, connection=postal().redis, serializer=SERIALIZER)
    except NoSuchJobError:
        raise ApiError(
            404, "job_not_found", f"no job with id {job_id!r} (it never existed or has expired)"
        ) from None


def _accepted(job: Job, created: bool) -> tuple[Response, int, dict[str, str]]:
    view = job_summary(job)
    view["created"] = created
    return jsonify(view), 202 if created else 200, {"Location": view["url"]}


@bp.post("/jobs")
def submit() -> tuple[Response, int, dict[str, str]]:
    """Validate and enqueue one job; 202 when new, 200 when `job_id` already named a job."""
    state = postal()
    sub = parse_submission(json_object(), state)
    [(job, created)] = enqueue(state, [sub], request_id())
    return _accepted(job, created)


def _parse_batch(entries: list[Any], state: Postal) -> list[Submission]:
    """Validate every entry before anything is written, and report every bad one at once: a
    client fixing a batch of 1,000 should not learn about its errors one request at a time.

    The error's code is the entries' code when they share one (`invalid_payload`, ...), else
    `invalid_batch`; each detail carries its entry's code and a `loc` starting `["jobs", i]`.
    """
    subs: list[Submission] = []
    failed: list[SubmissionError] = []
    for index, entry in enumerate(entries):
        try:
            subs.append(parse_submission(entry, state, ("jobs", index)))
        except SubmissionError as exc:
            failed.append(exc)
    if not failed:
        return subs
    codes = {exc.code for exc in failed}
    details = [
        {**detail, "code": exc.code}
        for exc in failed
        for detail in (exc.details or [{"message": exc.message}])
    ]
    raise ApiError(
        422,
        codes.pop() if len(codes) == 1 else "invalid_batch",
        f"{len(failed)} of {len(entries)} entries are invalid, nothing was enqueued; "
        f"the first: {failed[0].message}",
        details,
    )


@bp.post("/jobs/batch")
def submit_batch() -> tuple[Response, int]:
    """Validate every entry, then enqueue them all in one Redis transaction (all or nothing)."""
    state = postal()
    body = json_object()
    entries = body.get("jobs")
    if set(body) - {"jobs"}:
        raise ApiError(422, "invalid_request", "a batch body has only the key 'jobs'")
    if not isinstance(entries, list) or not entries:
        raise ApiError(422, "invalid_request", "'jobs' must be a non-empty list of job submissions")
    if len(entries) > state.settings.max_batch:
        raise ApiError(
            413,
            "batch_too_large",
            f"a batch holds at most {state.settings.max_batch} jobs, got {len(entries)}",
        )
    subs = _parse_batch(entries, state)
    results = enqueue(state, subs, request_id())
    jobs = [{**job_summary(job), "created": created} for job, created in results]
    return jsonify(jobs=jobs, count=len(jobs), created=sum(created for _, created in results)), 202


@bp.get("/jobs")
def index() -> Response:
    """List jobs in one state (default `queued`), optionally for one queue and one task."""
    state = postal()
    return jsonify(list_jobs(parse_query(request.args.to_dict(), state), state))


@bp.get("/jobs/<job_id>")
def get_job(job_id: str) -> Response:
    """Everything about one job: status, progress, result or error, attempts, timing, worker."""
    return jsonify(job_detail(_load(job_id)))


def _requeue(state: Postal, job: Job) -> None:
    """Put `job` back on its queue with its full retry budget (tasks.retries): the fix deserves
    the same chances as a new job."""
    restore_budget(job, state.settings)
    queue = state.queues.get(job.origin)
    registry = queue.failed_job_registry if queue is not None else job.failed_job_registry
    registry.requeue(job)


@bp.post("/jobs/<job_id>/requeue")
def requeue_one(job_id: str) -> tuple[Response, int]:
    """Put a failed (or stopped) job back on its queue."""
    state = postal()
    job = _load(job_id)
    status = job.get_status()
    if status not in (JobStatus.FAILED, JobStatus.STOPPED):
        raise ApiError(
            409, "not_failed", f"only failed or stopped jobs can be requeued; this one is {status.value}"
        )
    try:
        _requeue(state, job)
    except InvalidJobOperation:
        raise ApiError(409, "not_in_failed_registry", "the job is no longer in the failed registry") from None
    return jsonify(job_summary(job)), 202


def _matches(job: Job, task: str | None, exception: str | None) -> bool:
    if task and job.meta.get("task") != task:
        return False
    if exception:
        errors = job.meta.get("errors") or []
        return bool(errors) and errors[-1].get("type") == exception
    return True


@bp.post("/jobs/requeue")
def requeue_failed() -> tuple[Response, int]:
    """Requeue every failed job, optionally only those of one queue, task or exception type."""
    state = postal()
    body = json_object(required=False)
    unknown = sorted(set(body) - {"queue", "task", "exception"})
    if unknown:
        raise ApiError(422, "invalid_request", f"unknown field(s): {', '.join(unknown)}")
    for key in ("queue", "task", "exception"):
        if key in body and not isinstance(body[key], str):
            raise ApiError(422, "invalid_request", f"{key!r} must be a string")
    queue_name: str | None = body.get("queue")
    if queue_name is not None and queue_name not in state.queues:
        raise ApiError(
            422, "unknown_queue", f"unknown queue {queue_name!r}; known queues: {', '.join(state.queues)}"
        )
    requeued: list[str] = []
    for name in [queue_name] if queue_name else list(state.queues):
        registry = state.queues[name].failed_job_registry
        ids = registry.get_job_ids()
        for job in Job.fetch_many(ids, connection=state.redis, serializer=SERIALIZER):
            if job is None or not _matches(job, body.get("task"), body.get("exception")):
                continue
            try:
                _requeue(state, job)
            except InvalidJobOperation:  # someone else requeued it meanwhile
                continue
            requeued.append(job.id)
    return jsonify(requeued=len(requeued), ids=requeued), 202


@bp.post("/jobs/<job_id>/cancel")
def cancel(job_id: str) -> tuple[Response, int]:
    """Stop a running job, or cancel one that has not started; finished jobs are left alone."""
    state = postal()
    job = _load(job_id)
    status = job.get_status()
    if status == JobStatus.STARTED:
        try:
            send_stop_job_command(state.redis, job.id, serializer=SERIALIZER)
        except InvalidJobOperation:
            raise ApiError(409, "not_running", "the job is not executing on any worker right now") from None
        return jsonify(id=job.id, status="stopping", url=job_summary(job)["url"]), 202
    if status in (JobStatus.QUEUED, JobStatus.SCHEDULED, JobStatus.DEFERRED):
        job.cancel()
        return jsonify(job_summary(job)), 200
    raise ApiError(
        409,
        "not_cancelable",
        f"the job is {status.value}; only queued, scheduled, deferred or started jobs can be canceled",
    )


@bp.delete("/jobs/<job_id>")
def delete(job_id: str) -> tuple[str, int]:
    """Delete a job and its results; a running job must be canceled first."""
    job = _load(job_id)
    status = job.get_status()
    if status == JobStatus.STARTED:
        raise ApiError(409, "job_running", "the job is running; cancel it first (POST /jobs/<id>/cancel)")
    job.delete()
    return "", 204


@bp.get("/post-to-worker")
def post_to_worker() -> tuple[Response, int, dict[str, str]]:
    """The original demo: enqueue a `message` job with a random message."""
    state = postal()
    rng = random.Random()  # noqa: S311 - a demo message, not a secret
    words = " ".join(rng.choice(DEMO_WORDS) for _ in range(3))
    payload: dict[str, Any] = {"task": "message", "payload": {"message": f"{words} #{rng.randrange(10_000)}"}}
    [(job, created)] = enqueue(state, [parse_submission(payload, state)], request_id())
    return _accepted(job, created)

"""Operational endpoints: index, health, queues and workers."""

from __future__ import annotations

import time
from typing import Any

from flask import Blueprint, Response, jsonify, url_for
from redis.exceptions import RedisError
from rq import Worker

from tasks.registry import TASKS
from web.state import postal

bp = Blueprint("ops", __name__)
VERSION = "0.1.0"


@bp.get("/")
def index() -> Response:
    """What this service is and where its endpoints are."""
    return jsonify(
        service="postal",
        version=VERSION,
        tasks={name: spec.description for name, spec in TASKS.items()},
        endpoints={
            "submit": "POST /jobs",
            "batch": "POST /jobs/batch",
            "job": "GET /jobs/<id>",
            "list": "GET /jobs?state=&queue=&task=&limit=&cursor=",
            "requeue": "POST /jobs/<id>/requeue, POST /jobs/requeue",
            "cancel": "POST /jobs/<id>/cancel",
            "delete": "DELETE /jobs/<id>",
            "queues": url_for("ops.queues"),
            "workers": url_for("ops.workers"),
            "health": url_for("ops.healthz"),
            "dashboard": "/rq/",
        },
    )


def _queue_counts() -> dict[str, dict[str, int]]:
    state = postal()
    counts: dict[str, dict[str, int]] = {}
    with state.redis.pipeline(transaction=False) as pipe:
        for queue in state.queues.values():
            pipe.llen(queue.key)
            for registry in (
                queue.started_job_registry,
                queue.scheduled_job_registry,
                queue.deferred_job_registry,
                queue.failed_job_registry,
                queue.finished_job_registry,
                queue.canceled_job_registry,
            ):
                pipe.zcard(registry.key)
        values = iter(pipe.execute())
    for name in state.queues:
        counts[name] = {
            key: int(next(values))
            for key in ("queued", "started", "scheduled", "deferred", "failed", "finished", "canceled")
        }
    return counts


def _workers() -> list[dict[str, Any]]:
    state = postal()
    workers = Worker.all(connection=state.redis)
    views = []
    for worker in sorted(workers, key=lambda w: w.name):
        views.append(
            {
                "name": worker.name,
                "hostname": worker.hostname,
                "pid": worker.pid,
                "state": str(worker.get_state()),
                "queues": worker.queue_names(),
                "current_job_id": worker.get_current_job_id(),
                "successful_jobs": worker.successful_job_count,
                "failed_jobs": worker.failed_job_count,
                "birth": worker.birth_date.isoformat() if worker.birth_date else None,
                "last_heartbeat": worker.last_heartbeat.isoformat() if worker.last_heartbeat else None,
            }
        )
    return views


@bp.get("/healthz")
def healthz() -> tuple[Response, int]:
    """200 when Redis answers (with workers and queue depths); 503 with the reason when not.

    No workers is reported as `degraded` but still 200: the API itself can take jobs, and they
    will wait in Redis until a worker comes.
    """
    state = postal()
    started = time.monotonic()
    try:
        state.redis.ping()
        latency_ms = round((time.monotonic() - started) * 1000, 2)
        workers = Worker.count(connection=state.redis)
        depths = {name: count["queued"] for name, count in _queue_counts().items()}
    except RedisError as exc:
        return jsonify(
            status="unavailable",
            redis={
                "ok": False,
                "url": state.settings.redis_url_redacted,
                "error": f"{type(exc).__name__}: {exc}",
            },
        ), 503
    return jsonify(
        status="ok" if workers else "degraded",
        redis={"ok": True, "url": state.settings.redis_url_redacted, "latency_ms": latency_ms},
        workers=workers,
        queues=depths,
    ), 200


@bp.get("/queues")
def queues() -> Response:
    """Every queue with the size of its list and of each registry."""
    return jsonify(queues=[{"name": name, **counts} for name, counts in _queue_counts().items()])


@bp.get("/workers")
def workers() -> Response:
    """Every live worker registered in Redis, wherever it runs."""
    views = _workers()
    return jsonify(workers=views, count=len(views))

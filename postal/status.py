"""`postal status`: supervisord's processes, the queues and the workers, in one view.

Each part is read on its own, so one that cannot be read (supervisord not running, Redis down)
is reported in its place while the others still show.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from rq import Worker

from postal.supervisor_rpc import ProcessInfo, SupervisorUnavailable, processes
from postal.tables import table
from tasks.connection import Postal


@dataclass(frozen=True)
class QueueCounts:
    """One queue: jobs waiting in its list, and the sizes of the registries operators watch."""

    name: str
    queued: int
    started: int
    failed: int
    scheduled: int


@dataclass(frozen=True)
class WorkerInfo:
    """One live worker as registered in Redis."""

    name: str
    state: str
    current_job: str | None
    host: str | None
    queues: list[str] = field(default_factory=list)


def queue_counts(state: Postal) -> list[QueueCounts]:
    """Every configured queue's counts, read in one round trip."""
    with state.redis.pipeline(transaction=False) as pipe:
        for queue in state.queues.values():
            pipe.llen(queue.key)
            pipe.zcard(queue.started_job_registry.key)
            pipe.zcard(queue.failed_job_registry.key)
            pipe.zcard(queue.scheduled_job_registry.key)
        values = iter(pipe.execute())
    return [
        QueueCounts(name, int(next(values)), int(next(values)), int(next(values)), int(next(values)))
        for name in state.queues
    ]


def workers(state: Postal) -> list[WorkerInfo]:
    """Every worker registered in Redis (on any host), sorted by name."""
    found = Worker.all(connection=state.redis)
    return [
        WorkerInfo(
            name=worker.name,
            state=str(worker.get_state()),
            current_job=worker.get_current_job_id(),
            host=worker.hostname,
            queues=worker.queue_names(),
        )
        for worker in sorted(found, key=lambda w: w.name)
    ]


@dataclass(frozen=True)
class Status:
    """What `postal status` shows; a part that could not be read holds its reason instead."""

    processes: list[ProcessInfo] | str
    queues: list[QueueCounts] | str
    workers: list[WorkerInfo] | str


def supervised(config: Path) -> list[ProcessInfo] | str:
    """supervisord's processes, or why they cannot be listed."""
    try:
        return processes(config)
    except SupervisorUnavailable as exc:
        return str(exc)


def render(status: Status) -> str:
    """The three parts as titled plain-text tables."""
    parts = [
        _section(
            "supervisord",
            status.processes,
            ("PROCESS", "STATE", "PID", "DESCRIPTION"),
            lambda p: (p.name, p.state, p.pid, p.description),
        ),
        _section(
            "queues",
            status.queues,
            ("QUEUE", "QUEUED", "STARTED", "FAILED", "SCHEDULED"),
            lambda q: (q.name, q.queued, q.started, q.failed, q.scheduled),
        ),
        _section(
            "workers",
            status.workers,
            ("WORKER", "STATE", "CURRENT JOB", "HOST", "QUEUES"),
            lambda w: (w.name, w.state, w.current_job, w.host, ",".join(w.queues)),
        ),
    ]
    return "\n\n".join(parts)


def _section(
    title: str, rows: list[Any] | str, headers: tuple[str, ...], cells: Callable[[Any], tuple[object, ...]]
) -> str:
    if isinstance(rows, str):
        return f"{title}: {rows}"
    return f"{title}:\n{table(headers, [cells(row) for row in rows])}"


def status_view(status: Status) -> dict[str, Any]:
    """The status as JSON-ready data (`postal status --json`)."""

    def part(rows: list[Any] | str) -> dict[str, Any]:
        if isinstance(rows, str):
            return {"error": rows}
        return {"items": [asdict(row) for row in rows]}

    return {
        "supervisord": part(status.processes),
        "queues": part(status.queues),
        "workers": part(status.workers),
    }

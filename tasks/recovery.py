"""Finding jobs whose worker died mid-run, and handing them to RQ's retry-or-fail path.

Stock RQ notices a dead worker's job only when the job's started-registry entry expires (last
heartbeat + monitoring interval + 60 s) *and* a maintenance pass runs (rq/registry.py,
`StartedJobRegistry.cleanup`). postal shortens both:

- a worker whose registration names a worker on *this* node (tasks.node) whose process is gone
  (or whose hash has expired or says it died) has abandoned its jobs now: their entries are
  re-scored to 0 so the cleanup takes them at once;
- `PostalWorker` heartbeats with a 30 s grace instead of 60 s, for workers on hosts nobody
  else can inspect.

The cleanup itself is RQ's: it calls the exception handlers (so `record_failure` notes an
`AbandonedJobError` attempt), then retries the job if it has retries left, else fails it.
A lock per queue keeps two workers from retrying the same job twice.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Any

from redis import Redis
from rq import Queue
from rq.executions import Execution
from rq.utils import as_text, utcparse

from tasks.node import node_id, process_alive

log = logging.getLogger("postal.recovery")

LOCK_TTL_S = 30
WORKER_KEY = "rq:worker:{}"


def _worker_is_dead(connection: Redis, worker_name: str) -> bool:
    """True when the worker that owns an execution is certainly gone."""
    if not worker_name:
        return False
    pid, node, birth, death = connection.hmget(
        WORKER_KEY.format(worker_name), "pid", "postal_node", "birth", "death"
    )
    if pid is None:
        return True  # its hash expired: no heartbeat for worker_ttl + 60 s
    if death is not None:
        return True  # it registered its death while this execution was still open
    if node is None or as_text(node) != node_id():
        return False  # another host (or a stock rq worker): only its entry's expiry can tell
    born = utcparse(as_text(birth)).timestamp() if birth else None
    return not process_alive(int(pid), started_before=born)


def abandoned_entries(connection: Redis, queue: Queue) -> list[str]:
    """Started-registry entries of `queue` whose worker is certainly dead."""
    registry = queue.started_job_registry
    found = []
    for raw in connection.zrange(registry.key, 0, -1):
        entry = as_text(raw)  # type: ignore[arg-type]  # plain ZRANGE: members only, bytes
        worker_name = connection.hget(Execution.from_composite_key(entry, connection).key, "worker_name")
        if worker_name is None:
            continue  # the execution hash is gone: the entry's own expiry handles it
        if _worker_is_dead(connection, as_text(worker_name)):
            found.append(entry)
    return found


def recover_abandoned(
    connection: Redis, queues: Sequence[Queue], exception_handlers: Sequence[Callable[..., Any]]
) -> int:
    """Retry or fail every job abandoned by a dead worker in `queues`; return how many."""
    recovered = 0
    for queue in queues:
        lock = f"postal:recovery-lock:{queue.name}"
        if not connection.set(lock, node_id(), nx=True, ex=LOCK_TTL_S):
            continue
        try:
            entries = abandoned_entries(connection, queue)
            if entries:
                registry = queue.started_job_registry
                connection.zadd(registry.key, dict.fromkeys(entries, 0), xx=True)
                log.warning("queue %s: %d abandoned job(s) found: %s", queue.name, len(entries), entries)
                registry.cleanup(exception_handlers=list(exception_handlers))
                recovered += len(entries)
        finally:
            connection.delete(lock)
    return recovered

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
import socket
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from redis import Redis
from redis.exceptions import WatchError
from rq import Queue
from rq.executions import Execution
from rq.job import Job
from rq.utils import as_text, utcparse

from tasks.dequeue import IN_HAND_KEY
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


def _scheduler_is_dead(connection: Redis, name: str) -> bool:
    """True when the scheduler holding a lock is certainly gone: its hash expired, or it ran on
    this host and its PID is dead (or reused after its last heartbeat)."""
    pid, host, heartbeat = connection.hmget(f"rq:scheduler:{name}", "pid", "hostname", "last_heartbeat")
    if pid is None:
        return True
    if host is None or as_text(host) != socket.gethostname() or not int(pid):
        return False
    seen = utcparse(as_text(heartbeat)).timestamp() if heartbeat else None
    return not process_alive(int(pid), started_before=seen)


def release_dead_scheduler_locks(connection: Redis, queues: Sequence[Queue]) -> list[str]:
    """Delete scheduler locks held by a dead scheduler, so a live worker takes over now instead
    of after the lock's TTL (interval + 60 s; rq/scheduler.py): scheduled jobs and retries
    would wait that long. Compare-and-delete, so a lock re-taken meanwhile is left alone."""
    released = []
    for queue in queues:
        key = f"rq:scheduler-lock:{queue.name}"
        with connection.pipeline() as pipe:
            try:
                pipe.watch(key)  # type: ignore[no-untyped-call]  # redis-py leaves watch unannotated
                raw_owner = pipe.get(key)
                owner = as_text(raw_owner) if raw_owner is not None else ""
                if not owner or not _scheduler_is_dead(connection, owner):
                    continue
                pipe.multi()
                pipe.delete(key)
                pipe.execute()
            except WatchError:
                continue
        log.warning("queue %s: released the scheduler lock of dead scheduler %s", queue.name, owner)
        released.append(queue.name)
    return released


@contextmanager
def _held(connection: Redis, name: str) -> Iterator[bool]:
    """A short lock so that two workers never recover the same thing at once; yields whether
    this one holds it."""
    key = f"postal:recovery-lock:{name}"
    held = bool(connection.set(key, node_id(), nx=True, ex=LOCK_TTL_S))
    try:
        yield held
    finally:
        if held:
            connection.delete(key)


def _put_back(
    connection: Redis,
    job_id: str,
    origin: str,
    *,
    in_hand: str | None = None,
    registry_entry: tuple[str, str] | None = None,
) -> None:
    """Atomically take `job_id` out of a worker's `in_hand` list or remove its started-registry
    entry (`(registry key, entry)`), and push it to the front of its queue: it was next in line
    when its worker died."""
    with connection.pipeline() as pipe:
        if in_hand is not None:
            pipe.lrem(in_hand, 1, job_id)
        if registry_entry is not None:
            pipe.zrem(*registry_entry)
        pipe.lpush(f"{Queue.redis_queue_namespace_prefix}{origin}", job_id)
        pipe.execute()


def return_in_hand_jobs(connection: Redis) -> int:
    """Put back on their queues the ids that dead workers had popped but not started."""
    returned = 0
    for raw_key in connection.scan_iter(match=IN_HAND_KEY.format("*"), count=1000):
        worker_name = as_text(raw_key)[len(IN_HAND_KEY.format("")) :]
        if _worker_is_dead(connection, worker_name):
            returned += return_in_hand(connection, worker_name)
    return returned


def return_in_hand(connection: Redis, worker_name: str) -> int:
    """Put each still-queued job in `worker_name`'s in-hand list back at the front of its queue
    (it was next in line), then drop the list."""
    key = IN_HAND_KEY.format(worker_name)
    returned = 0
    for raw_id in connection.lrange(key, 0, -1):
        job_id = as_text(raw_id)
        status, origin = connection.hmget(Job.key_for(job_id), "status", "origin")
        if status is not None and origin is not None and as_text(status) == "queued":
            _put_back(connection, job_id, as_text(origin), in_hand=key)
            returned += 1
            log.warning(
                "job %s: worker %s stopped before starting it; back on %s",
                job_id,
                worker_name,
                as_text(origin),
            )
    connection.delete(key)
    return returned


def return_unstarted(connection: Redis, queue: Queue, entries: list[str]) -> list[str]:
    """Put back at the front of `queue` the jobs of `entries` that never started, and return
    the other entries.

    RQ registers an execution in the parent before forking, and the horse sets the job STARTED
    only after the fork; a worker killed in between leaves an entry whose job is still QUEUED.
    RQ's cleanup skips such a job and deletes its entry (rq/registry.py,
    `StartedJobRegistry.cleanup`: "Only STARTED still means the worker died"), which would lose
    it: queued, yet in no list. The chaos test caught this.
    """
    registry = queue.started_job_registry
    remaining = []
    for entry in entries:
        job_id = entry.split(":", 1)[0]
        if connection.hget(Job.key_for(job_id), "status") != b"queued":
            remaining.append(entry)
            continue
        _put_back(connection, job_id, queue.name, registry_entry=(registry.key, entry))
        log.warning("job %s: its worker died before starting it; back on %s", job_id, queue.name)
    return remaining


def expire_own_entries(connection: Redis, queue: Queue, job_id: str, worker_name: str) -> int:
    """Mark `worker_name`'s started-registry entries for `job_id` as expired (score 0), so the
    next recovery pass retries the job now rather than after its heartbeat lapses.

    For a job whose horse has exited but whose end the worker could not record (Redis was
    unreachable, e.g. mid-failover): if the new master still shows it started, nobody runs it.
    """
    registry = queue.started_job_registry
    own = []
    for raw in connection.zrange(registry.key, 0, -1):
        entry = as_text(raw)  # type: ignore[arg-type]  # plain ZRANGE: members only, bytes
        if not entry.startswith(f"{job_id}:"):
            continue
        owner = connection.hget(Execution.from_composite_key(entry, connection).key, "worker_name")
        if owner is not None and as_text(owner) == worker_name:
            own.append(entry)
    if own:
        connection.zadd(registry.key, dict.fromkeys(own, 0), xx=True)
    return len(own)


def recover_abandoned(
    connection: Redis, queues: Sequence[Queue], exception_handlers: Sequence[Callable[..., Any]]
) -> int:
    """Retry or fail every job abandoned by a dead worker in `queues`; return how many."""
    recovered = 0
    with _held(connection, "in-hand") as held:
        if held:
            recovered += return_in_hand_jobs(connection)
    for queue in queues:
        with _held(connection, queue.name) as held:
            if not held:
                continue
            expired = [
                as_text(e)  # type: ignore[arg-type]  # plain ZRANGEBYSCORE: members only
                for e in connection.zrangebyscore(queue.started_job_registry.key, 0, time.time())
            ]
            entries = return_unstarted(
                connection, queue, sorted(set(abandoned_entries(connection, queue) + expired))
            )
            if entries:
                registry = queue.started_job_registry
                connection.zadd(registry.key, dict.fromkeys(entries, 0), xx=True)
                log.warning("queue %s: %d abandoned job(s) found: %s", queue.name, len(entries), entries)
                registry.cleanup(exception_handlers=list(exception_handlers))
                recovered += len(entries)
    return recovered

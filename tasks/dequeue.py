"""Reliable dequeue from several queues: a popped job id is never only in a worker's memory.

RQ moves a job id atomically into an intermediate list only when a worker listens to a single
queue; with several queues it uses BLPOP (rq/queue.py, `Queue.dequeue_any`), so a worker killed
between the pop and registering the job as started loses the job: it stays "queued" in no list
at all. (postal's chaos test found exactly that.)

Here every pop is an LMOVE into the worker's own *in-hand* list, in queue priority order (one
Lua script tries the queues in turn, so taking a job is one round trip); when all queues are
empty the worker blocks with BLMOVE on the first queue for at most `POLL_S`, then looks at all
of them again. Once the job is registered in the started registry, PostalWorker
drops it from the list. If the worker dies in between, tasks.recovery puts the id back on its
queue. The price is up to `POLL_S` of extra latency for a job arriving on a lower-priority
queue while every worker is idle.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from typing import Any, ClassVar

from redis import Redis
from redis.commands.core import Script
from rq import Queue
from rq.exceptions import DequeueTimeout
from rq.job import Job
from rq.utils import as_text

IN_HAND_KEY = "postal:in-hand:{}"
POLL_S = 0.25
# One round trip for "the first id of the first non-empty queue, moved into the in-hand list"
# (KEYS = the queues in priority order, then the in-hand list; returns {queue's 1-based index,
# id} or nil). A loop of LMOVEs from Python costs a round trip per empty queue ahead of the one
# that has work; a script runs atomically, so the move is still all-or-nothing.
TAKE_FIRST = """
local hand = KEYS[#KEYS]
for i = 1, #KEYS - 1 do
    local id = redis.call('LMOVE', KEYS[i], hand, 'LEFT', 'RIGHT')
    if id then
        return {i, id}
    end
end
return nil
"""


def in_hand_key(worker_name: str) -> str:
    """The list holding the ids a worker has popped but not yet registered as started."""
    return IN_HAND_KEY.format(worker_name)


class InHandQueue(Queue):
    """A Queue whose `dequeue_any` moves ids into `in_hand_key` (set per worker subclass)."""

    in_hand_key: ClassVar[str | None] = None
    _take_first: ClassVar[Script | None] = None  # TAKE_FIRST bound to the worker's connection

    @classmethod
    def for_worker(cls, worker_name: str) -> type[InHandQueue]:
        """A subclass bound to one worker's in-hand list."""
        return type("InHandQueueFor", (cls,), {"in_hand_key": in_hand_key(worker_name)})

    @classmethod
    def _take(cls, connection: Redis, queue_key: str, job_id: Any, **fetch: Any) -> tuple[Job, Queue] | None:
        assert cls.in_hand_key is not None
        try:
            found = cls._fetch_dequeued_job(connection, queue_key, as_text(job_id), **fetch)
        except Exception:
            connection.lrem(cls.in_hand_key, 1, job_id)  # unreadable: do not resurrect it forever
            raise
        if found is None:  # deleted while queued
            connection.lrem(cls.in_hand_key, 1, job_id)
        return found

    @classmethod
    def dequeue_any(
        cls,
        queues: Iterable[Queue],
        timeout: int | None,
        connection: Redis | None = None,
        job_class: type[Job] | None = None,
        serializer: Any = None,
        death_penalty_class: Any = None,
    ) -> tuple[Job, Queue] | None:
        """Like RQ's: the first job by queue order; None (timeout None) or DequeueTimeout when
        there is none within `timeout` seconds."""
        assert connection is not None
        if cls.in_hand_key is None:
            return super().dequeue_any(
                queues,
                timeout,
                connection=connection,
                job_class=job_class,
                serializer=serializer,
                death_penalty_class=death_penalty_class,
            )
        keys = [queue.key for queue in queues]
        fetch = {"job_class": job_class, "serializer": serializer, "death_penalty_class": death_penalty_class}
        deadline = None if timeout is None else time.monotonic() + timeout
        take_first = cls._take_first
        if take_first is None or take_first.registered_client is not connection:
            take_first = cls._take_first = connection.register_script(TAKE_FIRST)  # once per worker
        while True:
            taken = take_first(keys=[*keys, cls.in_hand_key])
            if taken is not None:
                index, job_id = taken
                found = cls._take(connection, keys[int(index) - 1], job_id, **fetch)
                if found is not None:
                    return found
                continue  # that id was stale: look again before blocking
            if deadline is None:
                return None
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise DequeueTimeout(timeout, keys)
            wait = min(POLL_S, remaining)  # Redis >= 6 takes fractional seconds; redis-py types it int
            job_id = connection.blmove(keys[0], cls.in_hand_key, wait, "LEFT", "RIGHT")  # type: ignore[arg-type]
            if job_id is not None:
                found = cls._take(connection, keys[0], job_id, **fetch)
                if found is not None:
                    return found

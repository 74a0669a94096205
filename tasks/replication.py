"""Confirming that an enqueue reached `POSTAL_REDIS_WAIT_REPLICAS` replicas before it is
reported accepted, so a failover that promotes a replica cannot lose an accepted job.

Redis replicates asynchronously: a master that is killed just after EXEC can take the last
writes with it, and Sentinel then promotes a replica that never saw them. Redis's `WAIT n ms`
blocks until `n` replicas have acknowledged everything *the calling connection* wrote. The
enqueue transaction's pipeline hands its connection back to the pool as it finishes (redis-py,
`Pipeline.execute` -> `reset`), and after a failover the next connection may even reach a
different server. So the transaction also writes a one-off marker key, and the confirmation
deletes it and WAITs in one round trip on one connection: a DEL that returns 1 proves this
server holds the whole transaction (MULTI is applied and replicated as one), and the DEL is this
connection's own write, later in the replication stream than the jobs, so WAIT covers them.
"""

from __future__ import annotations

import uuid

from redis import Redis
from redis.client import Pipeline


class NotReplicated(Exception):
    """Raised when an enqueue cannot be shown to have reached enough replicas (the API answers
    503 `not_replicated`: the client should submit again, with a job_id to avoid a duplicate)."""


MARKER_TTL_S = 60  # the marker outlives a confirmation that never happens by a minute at most


def new_marker() -> str:
    """A key name no other request uses."""
    return f"postal:enqueue-marker:{uuid.uuid4().hex}"


def write_marker(pipe: Pipeline, key: str) -> None:
    """Add the marker to the enqueue transaction."""
    pipe.set(key, 1, ex=MARKER_TTL_S)


def confirm(redis: Redis, key: str, replicas: int, timeout_s: float) -> None:
    """Raise NotReplicated unless the server holding the transaction has `replicas` acknowledgements.

    The jobs may still be in Redis and run after a 503; a client that retries with the same
    `job_id` gets the existing job instead of a second one.
    """
    with redis.pipeline(transaction=False) as pipe:
        pipe.delete(key)
        pipe.wait(replicas, max(1, int(timeout_s * 1000)))
        deleted, acknowledged = pipe.execute()
    if not deleted:
        raise NotReplicated("Redis changed masters while the job was being written; submit it again")
    if int(acknowledged) < replicas:
        raise NotReplicated(
            f"only {acknowledged} of {replicas} Redis replica(s) confirmed the job within "
            f"{timeout_s} s; submit it again (with a job_id to avoid a duplicate)",
        )

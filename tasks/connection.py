"""The Redis connection factory and the serializer every postal component uses.

Jobs are stored with RQ's JSON serializer everywhere (API, workers, `rq` CLI with
`--serializer json`, dashboard): a job hash in Redis never holds a pickle, so nothing that can
write to Redis can make a worker execute code by unpickling it.
"""

from __future__ import annotations

from dataclasses import dataclass

from redis import Redis
from rq import Queue
from rq.serializers import JSONSerializer

from tasks.settings import Settings

SERIALIZER = JSONSerializer


def redis_client(settings: Settings) -> Redis:
    """A client with bounded connect/read timeouts, so an unreachable Redis fails fast.

    `health_check_interval` makes the pool ping an idle connection before reuse, so a Redis
    restart is noticed on the next call instead of surfacing as a broken pipe.
    """
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        health_check_interval=30,
    )


@dataclass(frozen=True)
class Postal:
    """A handle on postal's Redis: settings, one client, one `Queue` per configured name.

    The API keeps one in `app.extensions` (web/state.py); the `postal` command makes its own.
    """

    settings: Settings
    redis: Redis
    queues: dict[str, Queue]

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> Postal:
        queues = {name: Queue(name, connection=redis, serializer=SERIALIZER) for name in settings.queues}
        return cls(settings=settings, redis=redis, queues=queues)

"""The Redis connection factory and the serializer every postal component uses.

Jobs are stored with RQ's JSON serializer everywhere (API, workers, `rq` CLI with
`--serializer json`, dashboard): a job hash in Redis never holds a pickle, so nothing that can
write to Redis can make a worker execute code by unpickling it.

With `REDIS_SENTINELS` the client is redis-py's `Sentinel.master_for`: every new connection
asks the sentinels where the master is, and a connection to a demoted master is dropped on its
first READONLY answer (redis/sentinel.py, `SentinelManagedConnection`), so a failover needs no
restart of anything. The master connections take REDIS_URL's user, password, db and TLS
options; its host and port are ignored.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from redis import Redis, SSLConnection
from redis.connection import parse_url
from redis.sentinel import Sentinel, SentinelManagedConnection, SentinelManagedSSLConnection
from redis.utils import SENTINEL
from rq import Queue
from rq.serializers import JSONSerializer

from tasks.settings import Settings

SERIALIZER = JSONSerializer
HEALTH_CHECK_INTERVAL_S = 30


class _CleanReads:
    """Drop the connection when a read is interrupted, as redis-py's plain `Connection` does.

    `SentinelManagedConnection.read_response` defaults `disconnect_on_error` to False (the base
    class: True; redis/sentinel.py vs redis/connection.py), so an exception raised mid-read by a
    signal handler (RQ's warm shutdown raises StopRequested from SIGTERM, job timeouts raise from
    SIGALRM) leaves the reply unread on a pooled connection, and the *next* command reads it:
    a worker stopped during its blocking dequeue got the dequeue's nil as an LRANGE answer.
    """

    def read_response(
        self,
        disable_decoding: bool = False,
        *,
        timeout: Any = SENTINEL,
        disconnect_on_error: bool | None = True,
        push_request: bool | None = False,
    ) -> Any:
        return super().read_response(  # type: ignore[misc]  # a mixin over redis-py's classes
            disable_decoding=disable_decoding,
            timeout=timeout,
            disconnect_on_error=disconnect_on_error,
            push_request=push_request,
        )


class MasterConnection(_CleanReads, SentinelManagedConnection):
    """A connection to the Sentinel-found master."""


class MasterSSLConnection(_CleanReads, SentinelManagedSSLConnection):
    """A TLS connection to the Sentinel-found master."""


def master_kwargs(settings: Settings) -> dict[str, Any]:
    """Connection options for the Sentinel-found master, from REDIS_URL minus its address."""
    parsed = parse_url(settings.redis_url)  # type: ignore[no-untyped-call]  # unannotated in redis-py 8.1
    tls = parsed.pop("connection_class", None) is SSLConnection
    kwargs = {k: v for k, v in parsed.items() if k not in ("host", "port", "path")}
    kwargs.setdefault("db", 0)
    kwargs["ssl"] = tls
    kwargs["connection_class"] = MasterSSLConnection if tls else MasterConnection
    kwargs["socket_timeout"] = settings.redis_socket_timeout
    kwargs["socket_connect_timeout"] = settings.redis_connect_timeout
    return kwargs


def sentinel_kwargs(settings: Settings) -> dict[str, Any]:
    """Options for the connections to the sentinels themselves: the same bounded timeouts (a
    dead sentinel must not hang a request; the next one is asked) and their own password."""
    kwargs: dict[str, Any] = {
        "socket_timeout": settings.redis_socket_timeout,
        "socket_connect_timeout": settings.redis_connect_timeout,
    }
    if settings.redis_sentinel_password:
        kwargs["password"] = settings.redis_sentinel_password
    return kwargs


def redis_client(settings: Settings) -> Redis:
    """A client with bounded connect/read timeouts, so an unreachable Redis fails fast.

    `health_check_interval` makes the pool ping an idle connection before reuse, so a Redis
    restart (or a failover) is noticed on the next call instead of surfacing as a broken pipe.
    """
    if settings.sentinel:
        sentinel = Sentinel(  # type: ignore[no-untyped-call]  # unannotated in redis-py 8.1
            list(settings.redis_sentinels),
            sentinel_kwargs=sentinel_kwargs(settings),
            **master_kwargs(settings),
        )
        client: Redis = sentinel.master_for(  # type: ignore[no-untyped-call]  # unannotated in redis-py 8.1
            settings.redis_sentinel_master, health_check_interval=HEALTH_CHECK_INTERVAL_S
        )
        return client
    return Redis.from_url(
        settings.redis_url,
        socket_timeout=settings.redis_socket_timeout,
        socket_connect_timeout=settings.redis_connect_timeout,
        health_check_interval=HEALTH_CHECK_INTERVAL_S,
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

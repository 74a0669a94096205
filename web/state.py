"""What the app keeps between requests: settings, one Redis client, one `Queue` per name."""

from __future__ import annotations

from dataclasses import dataclass

from flask import current_app
from redis import Redis
from rq import Queue

from tasks.connection import SERIALIZER
from tasks.settings import Settings


@dataclass(frozen=True)
class Postal:
    """The app's handle on Redis; made once by `create_app`, stored in `app.extensions`."""

    settings: Settings
    redis: Redis
    queues: dict[str, Queue]

    @classmethod
    def build(cls, settings: Settings, redis: Redis) -> Postal:
        queues = {name: Queue(name, connection=redis, serializer=SERIALIZER) for name in settings.queues}
        return cls(settings=settings, redis=redis, queues=queues)


def postal() -> Postal:
    """The current app's `Postal` (inside a request or app context)."""
    state: Postal = current_app.extensions["postal"]
    return state

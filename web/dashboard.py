"""rq-dashboard mounted at `/rq`, reading JSON-serialized jobs.

rq-dashboard keeps its serializer in a module global (rq_dashboard/web.py, `config.serializer`,
default pickle) and needs `setup_rq_connection(app)` when used as a blueprint. It lists workers
with `Worker.all(connection=...)` and no serializer (rq_dashboard/web.py, `list_workers`), so
each busy worker's job would be decoded as a pickle and the list would fail while any job runs:
its `Worker` global is swapped for one whose default is JSON. Two guards
against another site acting with an operator's login (a browser sends its cached Basic-auth
credentials with any request to the dashboard, whoever's page made it):

- Its `/requeue/<queue>` route also answers GET (and so HEAD), so a link or an image tag could requeue a
  whole failed registry: GET and HEAD on it are refused.
- A POST needs `X-Requested-With: XMLHttpRequest`. The dashboard's own page sends it (jQuery's
  `$.post` adds it to same-origin requests); a form on another site cannot, and a script there
  could only after a CORS preflight, which nothing here answers.

With Sentinel the dashboard gets rq-dashboard's own `redis+sentinel://` URL form (parsed by
redis_sentinel_url, which rq_dashboard/web.py imports as `from_url`), with the passwords in
its config keys rather than in the URL it displays. That form carries no user name and no TLS.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

import rq_dashboard
import rq_dashboard.web
from flask import Flask, request
from rq import Worker
from rq.worker import BaseWorker

from tasks.connection import SERIALIZER, master_kwargs
from tasks.settings import Settings
from web.errors import ApiError

URL_PREFIX = "/rq"
BLUEPRINT = "rq_dashboard"
SAFE_METHODS = {"GET", "HEAD", "OPTIONS"}
SAME_PAGE_HEADER = "X-Requested-With"
SAME_PAGE_VALUE = "XMLHttpRequest"


class JsonWorker(Worker):
    """RQ's worker, read with postal's JSON serializer unless told otherwise."""

    @classmethod
    def all(cls, *args: Any, **kwargs: Any) -> list[BaseWorker]:
        if kwargs.get("serializer") is None:
            kwargs["serializer"] = SERIALIZER
        workers: list[BaseWorker] = super().all(*args, **kwargs)
        return workers


def mount_dashboard(app: Flask, settings: Settings) -> None:
    """Register the dashboard blueprint on `app`, pointed at postal's Redis."""
    rq_dashboard.web.config.serializer = SERIALIZER
    rq_dashboard.web.Worker = JsonWorker
    app.config["RQ_DASHBOARD_REDIS_URL"] = sentinel_url(settings) if settings.sentinel else settings.redis_url
    if settings.sentinel:
        # rq-dashboard reads only the URL; this key just keeps its legacy-config upgrade from
        # warning about postal's own REDIS_SENTINELS (rq_dashboard/legacy_config.py)
        app.config["RQ_DASHBOARD_REDIS_SENTINELS"] = settings.redis_sentinels
        app.config["RQ_DASHBOARD_REDIS_PASSWORD"] = master_kwargs(settings).get("password")
        app.config["RQ_DASHBOARD_REDIS_SENTINEL_PASSWORD"] = settings.redis_sentinel_password or None
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    rq_dashboard.web.setup_rq_connection(app)

    # On the app, not the blueprint: rq_dashboard.blueprint is a module global shared by every
    # app in the process, and Flask refuses new hooks on a blueprint once it was registered.
    @app.before_request
    def _no_state_change_from_elsewhere() -> None:
        if not (request.endpoint or "").startswith(BLUEPRINT + "."):
            return
        # Flask answers HEAD with the GET view, so HEAD would requeue too.
        if request.method in {"GET", "HEAD"} and request.endpoint == BLUEPRINT + ".requeue_all":
            raise ApiError(405, "method_not_allowed", "requeueing needs POST")
        if request.method not in SAFE_METHODS and request.headers.get(SAME_PAGE_HEADER) != SAME_PAGE_VALUE:
            raise ApiError(
                403,
                "cross_site_request",
                f"dashboard actions are sent by its own page ({SAME_PAGE_HEADER}: {SAME_PAGE_VALUE})",
            )

    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)


def sentinel_url(settings: Settings) -> str:
    """`redis+sentinel://host:port,.../master/db?timeouts`, without passwords."""
    hosts = ",".join(f"{host}:{port}" for host, port in settings.redis_sentinels)
    db = master_kwargs(settings)["db"]
    timeouts = {"socket_timeout": settings.redis_socket_timeout}
    timeouts["socket_connect_timeout"] = settings.redis_connect_timeout
    query = urlencode({**timeouts, **{f"sentinel_{k}": v for k, v in timeouts.items()}})
    return f"redis+sentinel://{hosts}/{settings.redis_sentinel_master}/{db}?{query}"

"""rq-dashboard mounted at `/rq`, reading JSON-serialized jobs.

rq-dashboard keeps its serializer in a module global (rq_dashboard/web.py, `config.serializer`,
default pickle) and needs `setup_rq_connection(app)` when used as a blueprint. Its
`/requeue/<queue>` route also answers GET, so a link or an image tag could requeue a whole
failed registry: GET on state-changing routes is refused here.
"""

from __future__ import annotations

import rq_dashboard
import rq_dashboard.web
from flask import Flask, request

from tasks.connection import SERIALIZER
from tasks.settings import Settings
from web.errors import ApiError

URL_PREFIX = "/rq"


def mount_dashboard(app: Flask, settings: Settings) -> None:
    """Register the dashboard blueprint on `app`, pointed at postal's Redis."""
    rq_dashboard.web.config.serializer = SERIALIZER
    app.config["RQ_DASHBOARD_REDIS_URL"] = settings.redis_url
    app.config.setdefault("RQ_DASHBOARD_POLL_INTERVAL", 2500)
    rq_dashboard.web.setup_rq_connection(app)

    # On the app, not the blueprint: rq_dashboard.blueprint is a module global shared by every
    # app in the process, and Flask refuses new hooks on a blueprint once it was registered.
    @app.before_request
    def _no_state_change_on_get() -> None:
        if request.method == "GET" and request.endpoint == "rq_dashboard.requeue_all":
            raise ApiError(405, "method_not_allowed", "requeueing needs POST")

    app.register_blueprint(rq_dashboard.blueprint, url_prefix=URL_PREFIX)

"""postal's HTTP API: `create_app()` builds the Flask app (gunicorn: `web:create_app()`)."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

from flask import Flask

from tasks.connection import redis_client
from tasks.settings import Settings
from web.auth import install_auth
from web.dashboard import mount_dashboard
from web.errors import register_error_handlers
from web.request_id import install_request_id
from web.state import Postal


def create_app(config: Mapping[str, Any] | None = None) -> Flask:
    """Build the app. Settings come from the environment, then from `config` (tests pass
    `{"REDIS_URL": ...}` here); keys in `config` also land in `app.config`.

    Settings are read through `tasks.settings` rather than Flask's `from_prefixed_env` so that
    an environment variable means exactly the same on the API and on the worker hosts.
    """
    overrides = dict(config or {})
    settings = Settings.from_mapping({**os.environ, **{k: str(v) for k, v in overrides.items()}})
    app = Flask(__name__)
    app.config.from_mapping(
        MAX_CONTENT_LENGTH=settings.max_content_length,
        JSON_SORT_KEYS=False,
    )
    app.config.update(overrides)
    app.json.sort_keys = False  # type: ignore[attr-defined]  # DefaultJSONProvider has it; the base type does not
    app.extensions["postal"] = Postal.build(settings, redis_client(settings))

    # imported here so that importing `web` stays cheap for tooling
    from web import jobs, metrics, openapi, ops

    install_request_id(app)  # first, so even a request refused by auth gets an id
    install_auth(app, settings)
    app.register_blueprint(ops.bp)
    app.register_blueprint(jobs.bp)
    app.register_blueprint(openapi.bp)
    app.register_blueprint(metrics.bp)
    mount_dashboard(app, settings)
    register_error_handlers(app)
    if not app.debug:
        logging.getLogger("postal").setLevel(logging.INFO)
    return app

"""The API as gunicorn serves it in production, plus one bench-only route.

`gunicorn 'bench.app:create_app()'` builds postal's own app (`web.create_app`) and adds
`POST /bench/noop`, which goes through the same WSGI stack, hooks (auth) and JSON response
path but makes no Redis call: the baseline that `POST /jobs` is compared with in one run.
The product itself has no such route.
"""

from __future__ import annotations

from flask import Flask, Response, jsonify

from web import create_app as create_postal_app


def create_app() -> Flask:
    """postal's app with `POST /bench/noop` added."""
    app = create_postal_app()

    @app.post("/bench/noop")
    def bench_noop() -> tuple[Response, int]:
        """Accept and answer like `POST /jobs` does (202, a small JSON body), doing nothing."""
        return jsonify(id="noop", status="queued"), 202

    return app

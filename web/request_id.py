"""A request id on every request: the caller's `X-Request-ID` when it is safe to log, else a new
one. It is echoed in the response header, which is where gunicorn's access log line picks it up
(`%({x-request-id}o)s` in deploy/gunicorn.conf.py), and it goes into the `enqueued` job events.

A caller's id is kept only if it is 1-128 characters of letters, digits and `._:-` (UUIDs,
trace ids): anything else could forge or break log lines, so it is replaced, not refused.
"""

from __future__ import annotations

import re
import uuid

from flask import Flask, Response, g, request

HEADER = "X-Request-ID"
SAFE_ID = re.compile(r"[A-Za-z0-9._:-]{1,128}")


def request_id() -> str:
    """This request's id (made on first use, so it exists even when an earlier hook answered)."""
    if "request_id" not in g:
        offered = request.headers.get(HEADER, "")
        g.request_id = offered if SAFE_ID.fullmatch(offered) else uuid.uuid4().hex
    value: str = g.request_id
    return value


def install_request_id(app: Flask) -> None:
    """Take or make the id before any other hook runs; echo it on every response."""

    @app.before_request
    def _take() -> None:
        request_id()

    @app.after_request
    def _echo(response: Response) -> Response:
        response.headers[HEADER] = request_id()
        return response

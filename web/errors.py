"""The one JSON error path: every failure answers `{"error": {"code", "message", "details"}}`.

Handlers here turn `ApiError` (and a refused submission's `SubmissionError`), Werkzeug's
`HTTPException`s (404, 405, 413 ...), and Redis connection trouble into JSON with the right
status, and anything unexpected into a logged 500 that still speaks JSON. Views raise; they
never build error responses themselves.
"""

from __future__ import annotations

import logging
from typing import Any

from flask import Flask, Response, jsonify
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from werkzeug.exceptions import HTTPException

from tasks.submission import SubmissionError

log = logging.getLogger("postal.web")


class ApiError(SubmissionError):
    """Raised by a view to answer with a JSON error (status, machine code, human message,
    details): the shape of a refused submission (tasks.submission), so one handler answers both."""


def error_response(status: int, code: str, message: str, details: Any = None) -> tuple[Response, int]:
    """The JSON body every error shares."""
    body: dict[str, Any] = {"code": code, "message": message}
    if details is not None:
        body["details"] = details
    return jsonify(error=body), status


def _code_for(exc: HTTPException) -> str:
    return (exc.name or "error").lower().replace(" ", "_")


def register_error_handlers(app: Flask) -> None:
    """Install the handlers on `app` (called by the app factory)."""

    @app.errorhandler(SubmissionError)  # ApiError too: a refused submission speaks the same shape
    def _api_error(exc: SubmissionError) -> tuple[Response, int]:
        return error_response(exc.status, exc.code, exc.message, exc.details)

    @app.errorhandler(HTTPException)
    def _http_error(exc: HTTPException) -> tuple[Response, int]:
        status = exc.code or 500
        message = exc.description or exc.name
        if status == 413:
            limit = app.config.get("MAX_CONTENT_LENGTH")
            message = f"request body is larger than the limit of {limit} bytes"
        response, status = error_response(status, _code_for(exc), message)
        if status == 405 and exc.response is None:
            allowed = getattr(exc, "valid_methods", None)
            if allowed:
                response.headers["Allow"] = ", ".join(allowed)
        return response, status

    @app.errorhandler(RedisConnectionError)
    @app.errorhandler(RedisTimeoutError)
    def _redis_down(exc: Exception) -> tuple[Response, int]:
        log.error("redis unavailable: %s: %s", type(exc).__name__, exc)
        response, status = error_response(
            503, "redis_unavailable", f"Redis is unavailable ({type(exc).__name__}); try again shortly"
        )
        response.headers["Retry-After"] = "5"
        return response, status

    @app.errorhandler(Exception)
    def _unexpected(exc: Exception) -> tuple[Response, int]:
        log.exception("unhandled error")
        return error_response(500, "internal_error", "internal server error; the event was logged")

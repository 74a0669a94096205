"""Reading a JSON request body safely: right content type, parseable, an object, not too deep.

Flask's `request.get_json` lets a `RecursionError` from deeply nested JSON escape as a 500;
this reader turns every way a body can be wrong into a 4xx `ApiError`.
"""

from __future__ import annotations

import json
from typing import Any

from flask import request

from web.errors import ApiError

MAX_DEPTH = 32


def _depth(value: Any, limit: int) -> int:
    """Nesting depth of a JSON value, stopping early once past `limit`."""
    stack = [(value, 1)]
    deepest = 0
    while stack:
        item, depth = stack.pop()
        deepest = max(deepest, depth)
        if deepest > limit:
            return deepest
        if isinstance(item, dict):
            stack.extend((child, depth + 1) for child in item.values())
        elif isinstance(item, list):
            stack.extend((child, depth + 1) for child in item)
    return deepest


def json_object(*, required: bool = True) -> dict[str, Any]:
    """The request body as a JSON object; `{}` for an empty body when not `required`."""
    raw = request.get_data(cache=True)
    if not raw and not required:
        return {}
    if not request.is_json:
        raise ApiError(
            415,
            "unsupported_media_type",
            f"expected Content-Type: application/json, got {request.mimetype or 'none'!r}",
        )
    if not raw:
        raise ApiError(400, "empty_body", "request body is empty; expected a JSON object")
    try:
        value = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise ApiError(400, "malformed_json", f"request body is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ApiError(
            400, "not_an_object", f"request body must be a JSON object, got {type(value).__name__}"
        )
    if _depth(value, MAX_DEPTH) > MAX_DEPTH:
        raise ApiError(400, "too_deep", f"request body is nested deeper than {MAX_DEPTH} levels")
    return value

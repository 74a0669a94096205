"""`postal submit`: one job through the API's own validation and enqueue code
(tasks/submission.py), so the command accepts and refuses exactly what `POST /jobs` does."""

from __future__ import annotations

import json
from typing import Any

from rq.job import Job

from tasks.connection import Postal
from tasks.submission import SubmissionError, enqueue, parse_submission


def parse_payload(text: str) -> dict[str, Any]:
    """`--payload` as a JSON object, or ValueError saying what is wrong with it."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ValueError(f"--payload is not valid JSON: {exc}") from None
    if not isinstance(value, dict):
        raise ValueError(f"--payload must be a JSON object, got {type(value).__name__}")
    return value


def submit(
    state: Postal, task: str, payload: dict[str, Any], queue: str | None, timeout_s: int | None
) -> Job:
    """Validate and enqueue one job; `SubmissionError` (nothing enqueued) when it is refused."""
    options = {
        key: value for key, value in {"queue": queue, "timeout_s": timeout_s}.items() if value is not None
    }
    body: dict[str, Any] = {"task": task, "payload": payload, "options": options}
    sub = parse_submission(body, state)
    [(job, _created)] = enqueue(state, [sub])
    return job


def refusal(exc: SubmissionError) -> str:
    """A refused submission for a terminal: the message, then one line per problem field."""
    lines = [exc.message]
    for detail in exc.details or []:
        where = ".".join(str(part) for part in detail.get("loc", [])) or "request"
        if detail.get("message") != exc.message:
            lines.append(f"  {where}: {detail.get('message')}")
    return "\n".join(lines)

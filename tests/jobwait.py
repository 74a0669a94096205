"""Waiting on jobs through the API, as a client would: poll `GET /jobs/<id>`."""

from __future__ import annotations

import time
from typing import Any

from flask.testing import FlaskClient

TERMINAL = {"finished", "failed", "stopped", "canceled"}


def wait_job(
    client: FlaskClient, job_id: str, statuses: set[str] | None = None, timeout: float = 30
) -> dict[str, Any]:
    """Poll until the job reaches one of `statuses` (default: any terminal one); return its view."""
    wanted = statuses or TERMINAL
    deadline = time.monotonic() + timeout
    view: dict[str, Any] = {}
    while time.monotonic() < deadline:
        response = client.get(f"/jobs/{job_id}")
        assert response.status_code == 200, response.json
        view = response.json or {}
        if view.get("status") in wanted:
            return view
        time.sleep(0.05)
    raise AssertionError(f"job {job_id} did not reach {sorted(wanted)} within {timeout} s; last view: {view}")


def submit(client: FlaskClient, task: str, payload: dict[str, Any], **options: Any) -> dict[str, Any]:
    """POST /jobs and assert it was accepted; return the answer."""
    body: dict[str, Any] = {"task": task, "payload": payload}
    if options:
        body["options"] = options
    response = client.post("/jobs", json=body)
    assert response.status_code in (200, 202), response.json
    answer: dict[str, Any] = response.json or {}
    return answer

"""Reading the structured job event lines (tasks/events.py) out of logs and the API process."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from typing import Any

FINAL = {"finished", "failed", "stopped"}


def event_lines(text: str) -> list[dict[str, Any]]:
    """Every JSON event line in a log (other lines, RQ's own, are skipped)."""
    found = []
    for line in text.splitlines():
        line = line.strip()
        if line.startswith("{") and '"event":' in line:
            found.append(json.loads(line))
    return found


def of_job(events: list[dict[str, Any]], job_id: str) -> list[tuple[str, int]]:
    """(event, attempt) of one job, in log order."""
    return [(e["event"], e["attempt"]) for e in events if e.get("job_id") == job_id]


class _Collect(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(record.getMessage()))


@contextmanager
def api_events() -> Iterator[list[dict[str, Any]]]:
    """The event lines this (API) process logs while the block runs."""
    handler = _Collect()
    logger = logging.getLogger("postal.events")
    logger.addHandler(handler)
    try:
        yield handler.lines
    finally:
        logger.removeHandler(handler)


def wait_ended(logs: Callable[[], str], job_ids: Iterable[str], timeout: float = 15) -> list[dict[str, Any]]:
    """Wait until each job's last line in `logs()` is a final one (finished, failed, stopped).

    Workers write a job's metrics and then its line just *after* RQ saved its status, so a test
    that saw the status waits for the line before it reads either."""
    from tests.procs import wait_for

    wanted = list(job_ids)

    def settled() -> list[dict[str, Any]] | None:
        lines = event_lines(logs())
        ends = {e["job_id"]: e["event"] for e in lines if e.get("job_id") in wanted}
        return lines if all(ends.get(j) in FINAL for j in wanted) else None

    found: list[dict[str, Any]] = wait_for(settled, timeout, f"the final lines of {wanted}")  # type: ignore[assignment]
    return found

"""Writing job event lines: one JSON object per line on stderr, from the `postal.events`
logger, e.g.

    {"ts":"2026-12-03T18:40:01.123+00:00","level":"info","event":"finished","job_id":"...",
     "task":"message","queue":"default","attempt":1,"duration_s":0.004,"queue_wait_s":0.01,...}

JSON rather than logfmt: messages and exception types may hold spaces, quotes or newlines, and
a JSON line stays one line and parses the same everywhere. Under supervisord stderr goes to
the program's log (`redirect_stderr=true`), so `supervisorctl tail -f worker:worker-00`
shows the lines. What the events mean is tasks.events.
"""

from __future__ import annotations

import json
import logging
import sys
import threading
from datetime import UTC, datetime
from typing import Any

log = logging.getLogger("postal.events")
_configured = False
_configure_lock = threading.Lock()  # gunicorn's threads may log their first event together
_WARNING_EVENTS = {"failed", "abandoned"}


class _StderrHandler(logging.StreamHandler):  # type: ignore[type-arg]  # StreamHandler is generic only in typeshed
    """Writes to whatever `sys.stderr` is at the time (gunicorn and test runners replace it)."""

    def emit(self, record: logging.LogRecord) -> None:
        self.stream = sys.stderr
        super().emit(record)


def _configure() -> None:
    """Give `postal.events` its own stderr handler, once per process: the worker's and
    gunicorn's logging setups cover other loggers, and an event line must never be dropped by
    a level or doubled by propagation."""
    global _configured
    if _configured:
        return
    with _configure_lock:
        if _configured:
            return
        handler = _StderrHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        log.addHandler(handler)
        log.setLevel(logging.INFO)
        log.propagate = False
        _configured = True


def emit(event: str, **fields: Any) -> None:
    """Write one event line; fields that are None are left out."""
    _configure()
    level = logging.WARNING if event in _WARNING_EVENTS else logging.INFO
    line = {
        "ts": datetime.now(UTC).isoformat(timespec="milliseconds"),
        "level": logging.getLevelName(level).lower(),
        "event": event,
        **{key: value for key, value in fields.items() if value is not None},
    }
    log.log(level, json.dumps(line, separators=(",", ":"), default=str, ensure_ascii=False))

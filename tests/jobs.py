"""Job functions used only by tests (importable by the workers the tests start, like rq's own
test suite does). Each counts its executions in Redis so tests can see duplicates."""

from __future__ import annotations

import time

from rq import get_current_job

RUNS_KEY = "postal-test:runs"


def counted(sleep_s: float = 0.0) -> str:
    """Count one execution of the current job, sleep, return the job id."""
    job = get_current_job()
    assert job is not None
    job.connection.hincrby(RUNS_KEY, job.id, 1)
    time.sleep(sleep_s)
    return job.id


FIXED_KEY = "postal-test:fixed"


class NotFixedYet(RuntimeError):
    """Raised by `fails_until_fixed` until the test deploys its "fix" (sets FIXED_KEY)."""


def fails_until_fixed(label: str) -> str:
    """Fail with a traceback until FIXED_KEY is set in Redis, then succeed: a bug, then its fix.

    The key stands in for deploying a code fix, so a job failed on the bug and requeued after
    the fix finishes, as an operator would see it happen in the dashboard.
    """
    job = get_current_job()
    assert job is not None
    if not job.connection.exists(FIXED_KEY):
        raise NotFixedYet(f"{label}: the fix is not deployed yet")
    return f"{label}: fixed"

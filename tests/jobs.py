"""Job functions used only by tests (importable by the workers the tests start, like rq's own
test suite does). Each counts its executions in Redis so tests can see duplicates."""

from __future__ import annotations

import ctypes
import faulthandler
import os
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


def horse_pid() -> int:
    """The PID of the process running the job (the worker's horse)."""
    return os.getpid()


def crash() -> None:
    """Die of a segmentation fault, as a buggy C extension would."""
    faulthandler.disable()  # keep the worker log free of a dump the test does not need
    ctypes.string_at(0)


def leak(megabytes: int) -> int:
    """Keep `megabytes` of memory alive in the process after the job ends (a leaky job)."""
    _LEAKED.append(bytearray(megabytes * 1024 * 1024))
    return os.getpid()


_LEAKED: list[bytearray] = []


def fails(message: str = "boom") -> None:
    """Raise an error postal does not retry (a bug, as far as it knows): the job fails at once."""
    raise ValueError(message)


def flaky(message: str = "try again") -> None:
    """Raise a transient error: the job is retried while its `Retry` allows."""
    from tasks.errors import TransientError

    raise TransientError(message)


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

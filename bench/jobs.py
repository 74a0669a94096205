"""Job functions for the worker benchmarks, importable by `rq worker` (run from the checkout).

Both worker setups (postal's and stock RQ's) run these same functions, so a difference in
throughput is the worker's, not the job's.
"""

from __future__ import annotations

import time


def noop() -> None:
    """Does nothing: what is measured is the worker's own cost per job."""


def sleep(seconds: float = 0.05) -> None:
    """Waits without using CPU: stands for a job that waits on I/O (an HTTP call, a database)."""
    time.sleep(seconds)

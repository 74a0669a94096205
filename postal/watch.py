"""Following one job until it ends, with its progress (tasks/progress.py: the job's last
`report(step, percent)` in `job.meta["progress"]`) drawn as a bar.

On a terminal the bar is click's, redrawn in place; elsewhere (a pipe, a log, CI) each change is
one line, `  50% parse`, so the record stays readable.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TextIO

import click
from rq.job import Job, JobStatus

if TYPE_CHECKING:
    from click._termui_impl import ProgressBar

TERMINAL = frozenset({JobStatus.FINISHED, JobStatus.FAILED, JobStatus.STOPPED, JobStatus.CANCELED})
POLL_S = 0.2
BAR_WIDTH = 30
LABEL_WIDTH = 12


class WaitTimeout(Exception):
    """Raised when a job has not ended within the time the caller would wait."""

    def __init__(self, status: JobStatus) -> None:
        super().__init__(f"still {status.value}")
        self.status = status


@dataclass(frozen=True)
class Snapshot:
    """Where a job is: its status, and its last progress report (step, percent) if any."""

    status: JobStatus
    step: str | None
    percent: int

    @property
    def label(self) -> str:
        """The step while one is reported; the status (queued, scheduled ...) otherwise."""
        if self.status == JobStatus.STARTED and self.step:
            return self.step
        return self.status.value


def snapshot(job: Job) -> Snapshot:
    """Re-read the job from Redis (NoSuchJobError if it is gone) and say where it is."""
    job.refresh()  # type: ignore[no-untyped-call]  # rq 3.0 leaves refresh unannotated
    progress: Any = job.meta.get("progress")
    step, percent = None, 0
    if isinstance(progress, dict):
        step = str(progress.get("step") or "") or None
        raw = progress.get("percent")
        percent = max(0, min(100, raw)) if isinstance(raw, int) else 0
    status = job.get_status(refresh=False)
    if status == JobStatus.FINISHED:
        percent = 100
    return Snapshot(status=status, step=step, percent=percent)


def follow(job: Job, seen: Callable[[Snapshot], None], timeout_s: float | None = None) -> JobStatus:
    """Poll `job` until it ends; call `seen` each time its snapshot changes; its final status.

    Polling (not pub/sub) because progress lives in the job hash, where any client can read it,
    and RQ publishes nothing when meta changes.
    """
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    last: Snapshot | None = None
    while True:
        now = snapshot(job)
        if now != last:
            seen(now)
            last = now
        if now.status in TERMINAL:
            return now.status
        if deadline is not None and time.monotonic() >= deadline:
            raise WaitTimeout(now.status)
        time.sleep(POLL_S)


class ProgressDisplay:
    """Draws snapshots on `out`: a live bar on a terminal, one line per change elsewhere."""

    def __init__(self, out: TextIO) -> None:
        self.out = out
        self.live = out.isatty()
        self._bar: ProgressBar[int] | None = None

    def __enter__(self) -> ProgressDisplay:
        if self.live:
            self._bar = click.progressbar(
                length=100, label=" " * LABEL_WIDTH, file=self.out, show_eta=False, width=BAR_WIDTH
            )
            self._bar.__enter__()
        return self

    def __call__(self, now: Snapshot) -> None:
        if self._bar is None:
            click.echo(f"{now.percent:4d}% {now.label}", file=self.out)
            return
        # Set the position rather than update(n): a retried job starts over, so the bar may move
        # back, and a label change alone must redraw too (click's update() ignores 0 steps).
        self._bar.label = now.label[:LABEL_WIDTH].ljust(LABEL_WIDTH)
        self._bar.pos = now.percent
        self._bar.finished = now.percent >= 100
        self._bar.render_progress()

    def __exit__(self, *exc: object) -> None:
        if self._bar is not None:
            self._bar.__exit__(None, None, None)

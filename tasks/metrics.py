"""Counters and histograms kept in Redis, so every API process and every worker host adds to the
same numbers and `GET /metrics` (web/metrics.py) can read them from any API process.

Layout, all under `postal:metrics:` (small hashes, written with HINCRBY in the caller's
pipeline, so one job event costs one round trip):

- `postal:metrics:counters`: field `<counter>|<task>` -> count, for each name in `COUNTERS`;
- `postal:metrics:histogram:<name>`: field `<label>|<le>` -> observations that fell in that
  bucket (not cumulative: one HINCRBY per observation; the reader sums them up), `<label>|sum`
  and `<label>|count`. An observation above the largest bound lands only in sum and count
  (Prometheus' `+Inf` bucket is the count).

The bucket bounds are part of the layout: changing one leaves old observations in a field the
reader no longer shows (they still count in `_count` and `_sum`).
"""

from __future__ import annotations

from dataclasses import dataclass

from redis.client import Pipeline

PREFIX = "postal:metrics:"
COUNTERS_KEY = PREFIX + "counters"
# How many jobs reached each outcome, per task (the suffix of `postal_jobs_<name>_total`).
COUNTERS = {
    "enqueued": "Jobs the API accepted (new ones; a repeated job_id is not counted).",
    "finished": "Jobs that finished successfully.",
    "failed": "Jobs that failed for good (into the failed registry).",
    "retried": "Failed attempts after which the job was queued or scheduled again.",
    "stopped": "Jobs stopped on request while running.",
    "abandoned": "Attempts lost with their worker or work horse (killed, crashed, host lost).",
}
MAX_LABEL_CHARS = 200


@dataclass(frozen=True)
class Histogram:
    """One histogram: its Prometheus name, help text, label name (or none) and bucket bounds."""

    name: str
    help: str
    label: str | None
    buckets: tuple[float, ...]

    @property
    def key(self) -> str:
        return f"{PREFIX}histogram:{self.name}"


JOB_DURATION = Histogram(
    "postal_job_duration_seconds",
    "Run time of job attempts that ended under a live worker (finished, failed, retried).",
    "task",
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300),
)
QUEUE_WAIT = Histogram(
    "postal_job_queue_wait_seconds",
    "Time from a job's (re-)enqueue to the start of its attempt (started_at - enqueued_at).",
    "task",
    (0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 300, 900, 3600),
)
API_ENQUEUE = Histogram(
    "postal_api_enqueue_seconds",
    "Time the API took to write one submission request (single job or batch) to Redis.",
    None,
    (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
HISTOGRAMS = (JOB_DURATION, QUEUE_WAIT, API_ENQUEUE)


def bound_label(value: str) -> str:
    """Label values are task names or dotted functions; cap them so a stray name stays small."""
    return value[:MAX_LABEL_CHARS]


def count(pipe: Pipeline, counter: str, task: str, amount: int = 1) -> None:
    """Add `amount` to `counter` (a key of `COUNTERS`) for `task`, in `pipe`."""
    if counter not in COUNTERS:
        raise ValueError(f"unknown counter {counter!r}")
    pipe.hincrby(COUNTERS_KEY, f"{counter}|{bound_label(task)}", amount)


def observe(pipe: Pipeline, histogram: Histogram, value: float, label: str = "") -> None:
    """Record one observation of `histogram` (three commands in `pipe`)."""
    label = bound_label(label)
    value = max(value, 0.0)  # clocks of different hosts may disagree by a little
    bound = next((b for b in histogram.buckets if value <= b), None)
    if bound is not None:
        pipe.hincrby(histogram.key, f"{label}|{bound!r}", 1)
    pipe.hincrbyfloat(histogram.key, f"{label}|sum", value)
    pipe.hincrby(histogram.key, f"{label}|count", 1)

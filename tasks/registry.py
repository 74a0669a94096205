"""One declaration per task: its public name, dotted function, payload model, queue, timeout
and retry policy. API validation, `stopwaitsecs` checks and the docs all read this table.

The dotted names are stored in every job hash in Redis: they are a public contract. Rename a
function only by keeping the old name importable until old jobs are gone.
"""

from __future__ import annotations

import random
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType

from tasks.models import ExtractPayload, FetchPagePayload, MessagePayload, Payload


@dataclass(frozen=True)
class RetryPolicy:
    """Exponential backoff with jitter for transient errors: attempt n waits a random time in
    [d/2, d] where d = min(cap, base * 2**(n-1)). Jitter spreads a burst of failures so the
    retries do not hit the remote side together again."""

    max_retries: int
    base_delay_s: int
    cap_s: int

    def intervals(self, scale: float = 1.0, rng: random.Random | None = None) -> list[int]:
        """The delay before each retry, in whole seconds (RQ's scheduler works in seconds).

        `scale` shrinks or stretches the whole schedule (`POSTAL_RETRY_DELAY_SCALE`); 0 means
        retry at once, which RQ does without its scheduler.
        """
        rng = rng or random.Random()  # noqa: S311 - jitter, not security
        delays = []
        for attempt in range(self.max_retries):
            ceiling = min(self.cap_s, self.base_delay_s * 2**attempt) * scale
            delays.append(0 if scale == 0 else max(1, round(rng.uniform(ceiling / 2, ceiling))))
        return delays


@dataclass(frozen=True)
class TaskSpec:
    """How one task is enqueued and run."""

    name: str
    func: str
    payload_model: type[Payload]
    queue: str
    timeout_s: int
    retry: RetryPolicy
    description: str


NETWORK_RETRY = RetryPolicy(max_retries=3, base_delay_s=5, cap_s=60)

_TASKS = (
    TaskSpec(
        name="message",
        func="tasks.message.message",
        payload_model=MessagePayload,
        queue="default",
        timeout_s=90,
        # nothing in it fails transiently; the retries are for a worker lost mid-job
        retry=RetryPolicy(max_retries=2, base_delay_s=1, cap_s=5),
        description="Log a message (after an optional delay) and return it.",
    ),
    TaskSpec(
        name="fetch_page",
        func="tasks.pages.fetch_page",
        payload_model=FetchPagePayload,
        queue="default",
        timeout_s=60,
        retry=NETWORK_RETRY,
        description="Fetch an HTML page and return its title, links, headings and contacts.",
    ),
    TaskSpec(
        name="extract",
        func="tasks.extract_job.extract",
        payload_model=ExtractPayload,
        queue="default",
        timeout_s=120,
        retry=NETWORK_RETRY,
        description="Run regular expressions over a page's text or a given text.",
    ),
)

TASKS: Mapping[str, TaskSpec] = MappingProxyType({spec.name: spec for spec in _TASKS})


class UnknownTask(KeyError):
    """Raised when a task name is not in the registry."""

    def __init__(self, name: str) -> None:
        super().__init__(name)
        self.name = name

    def __str__(self) -> str:
        return f"unknown task {self.name!r}; known tasks: {', '.join(sorted(TASKS))}"


def get_task(name: str) -> TaskSpec:
    """The spec of task `name`, or `UnknownTask` listing the known ones."""
    try:
        return TASKS[name]
    except KeyError:
        raise UnknownTask(name) from None


def task_for_func(func: str) -> TaskSpec | None:
    """The spec whose dotted function is `func` (jobs enqueued around the API still map back)."""
    for spec in _TASKS:
        if spec.func == func:
            return spec
    return None


def longest_timeout_s() -> int:
    """The longest task timeout: supervisord's `stopwaitsecs` must exceed it to drain."""
    return max(spec.timeout_s for spec in _TASKS)

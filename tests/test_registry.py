"""The task registry: the one declaration each task has, and what is derived from it."""

from __future__ import annotations

import importlib
import inspect
import random

import pytest

from tasks.registry import TASKS, RetryPolicy, UnknownTask, get_task, longest_timeout_s, task_for_func
from tasks.settings import Settings


@pytest.mark.parametrize("name", sorted(TASKS))
def test_every_dotted_name_imports(name: str) -> None:
    """Each dotted function name the API can store in Redis imports and takes keyword arguments."""
    spec = TASKS[name]
    module_name, func_name = spec.func.rsplit(".", 1)
    func = getattr(importlib.import_module(module_name), func_name)
    kinds = [p.kind for p in inspect.signature(func).parameters.values()]
    assert kinds == [inspect.Parameter.VAR_KEYWORD]
    assert spec.queue in Settings().queues
    assert task_for_func(spec.func) is spec


def test_dotted_names_are_stable() -> None:
    """The dotted names are a contract with jobs already in Redis: changing one is deliberate."""
    assert {name: spec.func for name, spec in TASKS.items()} == {
        "message": "tasks.message.message",
        "fetch_page": "tasks.pages.fetch_page",
        "extract": "tasks.extract_job.extract",
    }


def test_web_does_not_import_job_bodies() -> None:
    """Importing the API pulls in no job body or heavy parser (bs4, lxml, urllib3 fetch code)."""
    import subprocess
    import sys

    code = (
        "import sys, web; web.create_app({'REDIS_URL': 'redis://127.0.0.1:1/0'});"
        "bad = [m for m in ('bs4', 'lxml', 'tasks.pages', 'tasks.parse', 'tasks.http', 'tasks.extract_job')"
        " if m in sys.modules]; print(bad); sys.exit(1 if bad else 0)"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr


def test_unknown_task_lists_known() -> None:
    """Asking for an unknown task names the known ones."""
    with pytest.raises(UnknownTask, match="fetch_page"):
        get_task("nope")


def test_retry_intervals_grow_with_jitter_and_cap() -> None:
    """Backoff doubles per attempt, jitters within [d/2, d], and never passes the cap."""
    policy = RetryPolicy(max_retries=6, base_delay_s=4, cap_s=30)
    rng = random.Random(7)
    for _ in range(200):
        delays = policy.intervals(rng=rng)
        ceilings = [4, 8, 16, 30, 30, 30]
        assert all(c / 2 - 0.5 <= d <= c for d, c in zip(delays, ceilings, strict=True)), delays
    assert policy.intervals(scale=0) == [0] * 6
    assert all(d >= 1 for d in policy.intervals(scale=0.01))


def test_longest_timeout() -> None:
    """longest_timeout_s is the maximum over the registry (what stopwaitsecs is checked against)."""
    assert longest_timeout_s() == max(spec.timeout_s for spec in TASKS.values())

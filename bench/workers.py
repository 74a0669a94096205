"""Worker throughput: drain N pre-queued jobs with warm, idle workers, timed from Redis.

Two setups run the same job functions with the same number of processes:

- postal: exactly `[program:worker]`'s command from supervisord.conf (postal.worker_command),
  so changes to the worker class or its flags are measured without touching this file;
- stock: `rq worker --serializer json`, RQ's default Worker class.

A drain writes the N job hashes first (not yet on any queue), resets Redis' command counters,
then pushes all N ids with one RPUSH: the clock starts there and stops when the finished and
failed registries together hold N jobs. Workers are started once and reused across rounds, so
process start-up is not in the figure. While a drain runs, the RSS of every worker process and
of its children (work horse, scheduler) is sampled with psutil.
"""

from __future__ import annotations

import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import psutil
from redis import Redis
from rq import Queue, Worker
from rq.job import Job
from rq.utils import now

from bench.procs import BIN, Started, bench_env, wait_for
from postal.worker_command import worker_args
from tasks.connection import SERIALIZER

POLL_S = 0.01
RSS_EVERY_S = 0.25


@dataclass
class JobKind:
    """What a drain enqueues: the dotted function and, per job index, its kwargs."""

    name: str
    func: str
    kwargs: Callable[[int], dict[str, Any]]


@dataclass
class Drain:
    """One drain's outcome."""

    jobs: int
    seconds: float
    failed: int
    commands: int  # Redis calls made by the workers during the drain (the harness' own removed)
    by_command: dict[str, int]
    rss_main_mb: float  # largest worker-process RSS seen
    rss_children_mb: float  # largest RSS of one worker's children (horse, scheduler) together
    failures: dict[str, int] = field(default_factory=dict)  # last line of each failed job's error

    @property
    def rate(self) -> float:
        return self.jobs / self.seconds


@dataclass
class Pool:
    """A set of running worker processes of one setup, listening to one queue."""

    setup: str
    queue: str
    procs: list[subprocess.Popen[bytes]] = field(default_factory=list)


def setup_argv(setup: str, redis_url: str) -> list[str]:
    """The command line of one worker of `setup` (without the queue)."""
    if setup == "postal":
        return [str(BIN / "rq"), *worker_args()]
    if setup == "stock":
        return [str(BIN / "rq"), "worker", "--serializer", "json", "--url", redis_url]
    raise ValueError(setup)


def start_pool(
    started: Started, redis_url: str, setup: str, count: int, queue: str, env: dict[str, str]
) -> Pool:
    """Start `count` workers of `setup` on `queue` and wait until each has registered."""
    argv = setup_argv(setup, redis_url)
    pool = Pool(setup, queue)
    for i in range(count):
        pool.procs.append(
            started.start(f"worker-{setup}-{queue}-{i}", [*argv, queue], bench_env(redis_url, **env))
        )
    client = Redis.from_url(redis_url)
    try:
        pids = {p.pid for p in pool.procs}
        wait_for(
            lambda: pids <= {w.pid for w in Worker.all(connection=client)},
            60 + 5 * count,
            f"{count} {setup} worker(s) to register",
            interval=0.1,
        )
    finally:
        client.close()
    return pool


def _rss(procs: Sequence[subprocess.Popen[bytes]]) -> tuple[float, float]:
    """Largest worker RSS and largest children-of-one-worker RSS, in MB, right now."""
    main = children = 0.0
    for proc in procs:
        try:
            parent = psutil.Process(proc.pid)
            main = max(main, parent.memory_info().rss / 2**20)
            kids = sum(c.memory_info().rss for c in parent.children(recursive=True)) / 2**20
            children = max(children, kids)
        except psutil.NoSuchProcess:
            continue
    return main, children


def _calls(redis: Redis) -> dict[str, int]:
    stats: dict[str, Any] = redis.info("commandstats")
    return {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}


def _failures(redis: Redis, queue: Queue) -> dict[str, int]:
    """Why the jobs in `queue`'s failed registry failed: their error's last line, counted."""
    reasons: dict[str, int] = {}
    for job in Job.fetch_many(
        queue.failed_job_registry.get_job_ids(), connection=redis, serializer=SERIALIZER
    ):
        result = job.latest_result() if job else None
        text = (result.exc_string if result else None) or "unknown"
        line = text.strip().splitlines()[-1][:200] if text.strip() else "unknown"
        reasons[line] = reasons.get(line, 0) + 1
    return reasons


def drain(redis: Redis, pool: Pool, kind: JobKind, count: int, timeout: float = 300) -> Drain:
    """Time `pool` working off `count` jobs of `kind` (see the module docstring)."""
    queue = Queue(pool.queue, connection=redis, serializer=SERIALIZER)
    finished, failed = queue.finished_job_registry, queue.failed_job_registry
    redis.delete(finished.key, failed.key)
    ids = []
    with redis.pipeline(transaction=False) as pipe:
        for i in range(count):
            job = queue.create_job(kind.func, kwargs=kind.kwargs(i), timeout=120, result_ttl=3600)
            job.enqueued_at = now()
            job.save(pipeline=pipe)
            ids.append(job.id)
        pipe.sadd(queue.redis_queues_keys, queue.key)
        pipe.execute()
    redis.config_resetstat()
    start = time.perf_counter()
    redis.rpush(queue.key, *ids)
    polls = 0
    rss_main = rss_children = 0.0
    next_rss = start
    deadline = start + timeout
    done = 0
    while True:
        with redis.pipeline(transaction=False) as pipe:
            pipe.zcard(finished.key)
            pipe.zcard(failed.key)
            n_finished, n_failed = pipe.execute()
        polls += 1
        done = n_finished + n_failed
        elapsed = time.perf_counter() - start
        if done >= count:
            break
        if elapsed > deadline - start:
            raise TimeoutError(f"{pool.setup}: {done}/{count} {kind.name} jobs done after {timeout} s")
        if time.perf_counter() >= next_rss:
            m, c = _rss(pool.procs)
            rss_main, rss_children = max(rss_main, m), max(rss_children, c)
            next_rss = time.perf_counter() + RSS_EVERY_S
        time.sleep(POLL_S)
    calls = _calls(redis)
    failures = _failures(redis, queue) if n_failed else {}
    calls["zcard"] = calls.get("zcard", 0) - 2 * polls
    calls["rpush"] = calls.get("rpush", 0) - 1
    calls = {k: v for k, v in calls.items() if v > 0 and k not in ("info", "config|resetstat")}
    return Drain(
        jobs=count,
        seconds=elapsed,
        failed=int(n_failed),
        commands=sum(calls.values()),
        by_command=calls,
        rss_main_mb=rss_main,
        rss_children_mb=rss_children,
        failures=failures,
    )

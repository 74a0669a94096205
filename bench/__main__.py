"""`python -m bench` (`make bench`): start Redis, run every measurement, write the report.

Everything started here (redis-server, gunicorn, workers, load clients, the page server) is
stopped by PID before exit, and the temp dir is removed, also on error or Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path

from redis import Redis

from bench.api import measure_api
from bench.machine import describe
from bench.pages import PageServer, make_pages
from bench.procs import ROOT, Started, start_redis
from bench.report import Results, write_report
from bench.workers import Drain, JobKind, Pool, drain, start_pool

COMMAND = "make bench"


PARSE_CPU_CODE = """
import json, statistics, sys, time
import tasks.worker  # what a warm horse has loaded (the worker preloads the task modules)
from bench.pages import make_pages
from tasks.parse import find_contacts, parse_page
repeats = int(sys.argv[1])
per_page = []
for body in make_pages().values():
    html = body.decode("utf-8")
    times = []
    for _ in range(repeats + 2):
        start = time.process_time()
        find_contacts(parse_page(html, "https://news.example.org/").text)
        times.append(time.process_time() - start)
    per_page.append(statistics.median(times[2:]))  # the first two warm caches
print(json.dumps(per_page))
"""


def parse_cpu(repeats: int = 9) -> list[float]:
    """CPU seconds of parse + contacts per page (median of `repeats` each) in a fresh process
    holding only the worker's modules, as a warm horse does: measured here in the benchmark's
    own process, whose heap is far larger, the garbage collector made each parse ~50% dearer
    and the "CPU limit" too low."""
    out = subprocess.run(
        [sys.executable, "-c", PARSE_CPU_CODE, str(repeats)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    per_page: list[float] = json.loads(out.stdout)
    return per_page


def horse_import_s(repeats: int = 3) -> float:
    """Seconds to import `tasks.pages` (bs4, lxml, regex, pydantic models) in a fresh interpreter
    that has the worker's modules already loaded, as a forked work horse has: what each
    `fetch_page` job pays before parsing when its worker never imported the task itself."""
    code = (
        "import time, rq.worker, tasks.worker; t = time.perf_counter(); import tasks.pages; "
        "print(time.perf_counter() - t)"
    )
    times = []
    for _ in range(repeats):
        out = subprocess.run(
            [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
        )
        times.append(float(out.stdout))
    return statistics.median(times)


def _size(redis: Redis, pools: list[Pool], kind: JobKind, args: argparse.Namespace) -> int:
    """How many jobs make one drain last about `--drain-seconds` on this machine now: a short
    probe drain per pool (which also warms the workers up) gives the rates, and the fastest
    pool's sets the size, so that no drain is so short that its first and last jobs (workers
    ramping up, the finish being noticed) weigh in its rate; slower pools drain longer."""
    probe = max(args.min_jobs // 2, 4 * len(pools[0].procs))
    rate = max(drain(redis, pool, kind, probe).rate for pool in pools)
    return int(min(args.max_jobs, max(args.min_jobs, rate * args.drain_seconds)))


def _log_failures(outcome: Drain) -> None:
    for reason, count in outcome.failures.items():
        _log(f"    {count} failed: {reason}")


def _log(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", flush=True)


def run(args: argparse.Namespace) -> Results:
    rounds = args.rounds
    workdir = Path(tempfile.mkdtemp(prefix="postal-bench-"))
    started = Started(workdir)
    results = Results(machine=describe(), rounds=rounds, started=datetime.now(UTC), command=COMMAND)
    try:
        (workdir / "redis").mkdir()
        redis_url, _ = start_redis(started, workdir / "redis")
        redis = Redis.from_url(redis_url)
        pages = make_pages()
        results.page_bytes = statistics.mean(len(b) for b in pages.values())
        _log("parse CPU per page (in a fresh process)")
        results.parse_cpu_s = parse_cpu()
        results.horse_import_s = horse_import_s()

        _log(f"API: {rounds} rounds of {args.api_seconds} s per route through gunicorn")
        results.api = measure_api(started, redis_url, rounds, args.api_seconds)
        redis.flushdb()

        with PageServer(pages) as server:
            names = list(pages)
            env = {"POSTAL_FETCH_ALLOW": "127.0.0.1", "POSTAL_FETCH_PORTS": f"80,443,{server.port}"}
            kinds = {
                "noop": JobKind("noop", "bench.jobs.noop", lambda i: {}),
                "parse": JobKind(
                    "parse", "tasks.pages.fetch_page", lambda i: {"url": server.url(names[i % len(names)])}
                ),
                "sleep": JobKind("sleep", "bench.jobs.sleep", lambda i: {"seconds": 0.05}),
            }
            _log("workers: postal vs stock, 2 processes each")
            pools = {
                setup: start_pool(started, redis_url, setup, 2, f"bench-{setup}", env)
                for setup in ("postal", "stock")
            }
            for name, kind in kinds.items():
                count = _size(redis, list(pools.values()), kind, args)
                for r in range(rounds):
                    order = ("postal", "stock") if r % 2 == 0 else ("stock", "postal")
                    for setup in order:
                        outcome = drain(redis, pools[setup], kind, count)
                        results.drains.setdefault((name, setup), []).append(outcome)
                        _log(f"  {name:5} {setup:6} round {r + 1}: {count} jobs, {outcome.rate:8.1f} jobs/s")
                        _log_failures(outcome)
            for pool in pools.values():
                started.stop(pool.procs)

            _log("scaling: postal workers on the sleep job (and the parse job with 1 worker)")
            results.scaling[("parse", 2)] = results.drains[("parse", "postal")]
            for workers in args.scale:
                pool = start_pool(started, redis_url, "postal", workers, f"scale-{workers}", env)
                todo = [kinds["sleep"], kinds["parse"]] if workers == 1 else [kinds["sleep"]]
                for kind in todo:
                    count = _size(redis, [pool], kind, args)
                    for _ in range(rounds):
                        outcome = drain(redis, pool, kind, count)
                        results.scaling.setdefault((kind.name, workers), []).append(outcome)
                        _log(f"  {kind.name} x{workers:2}: {count} jobs, {outcome.rate:7.1f} jobs/s")
                        _log_failures(outcome)
                started.stop(pool.procs)
        redis.close()
    finally:
        started.stop_all()
        shutil.rmtree(workdir, ignore_errors=True)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--rounds", type=int, default=3, help="runs per figure (median, min-max)")
    parser.add_argument("--api-seconds", type=float, default=3.0, help="length of one API load")
    parser.add_argument(
        "--drain-seconds", type=float, default=4.0, help="aim for worker drains of about this long"
    )
    parser.add_argument("--min-jobs", type=int, default=20, help="fewest jobs in one drain")
    parser.add_argument("--max-jobs", type=int, default=5000, help="most jobs in one drain")
    parser.add_argument("--scale", type=lambda s: [int(x) for x in s.split(",")], default=[1, 2, 4, 8, 16])
    parser.add_argument(
        "--out", type=Path, default=ROOT / "docs", help="where BENCHMARKS.md and the chart go"
    )
    args = parser.parse_args()
    start = time.monotonic()
    results = run(args)
    results.wall_s = time.monotonic() - start
    results.machine["load average at end"] = " ".join(f"{x:.2f}" for x in os.getloadavg())
    write_report(results, args.out)
    _log(f"done in {results.wall_s:.0f} s; wrote {args.out / 'BENCHMARKS.md'}")


if __name__ == "__main__":
    main()

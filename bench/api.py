"""API throughput and latency through gunicorn with deploy/gunicorn.conf.py, on loopback.

`POST /jobs` (a `message` job) is measured against `POST /bench/noop` (bench.app: same app and
stack, no Redis call) back to back in each round, so their ratio is taken under the same
machine load. `POST /jobs/batch` is measured in jobs/s with 1,000-job batches.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import sys
from dataclasses import asdict, dataclass

from redis import Redis

from bench.load import LoadResult, LoadSpec
from bench.procs import BIN, ROOT, Started, bench_env, wait_for
from bench.stats import percentile
from postal.processes import free_port

SUBMIT_BODY = json.dumps({"task": "message", "payload": {"message": "benchmark"}})
BATCH_SIZE = 1000
BATCH_BODY = json.dumps(
    {"jobs": [{"task": "message", "payload": {"message": f"benchmark {i}"}} for i in range(BATCH_SIZE)]}
)


@dataclass
class Sample:
    """One load on one route: requests/s, latency percentiles (ms), errors."""

    rate: float
    p50_ms: float
    p99_ms: float
    errors: int
    requests: int


@dataclass
class ApiRuns:
    """Every round's samples, per route."""

    noop: list[Sample]
    submit: list[Sample]
    batch: list[Sample]  # rate in jobs/s
    clients: int
    threads: int
    seconds: float


def _load(specs: list[LoadSpec]) -> LoadResult:
    """Run each spec in its own process at the same time; merge their results."""
    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "bench.load", json.dumps(asdict(spec))], cwd=ROOT, stdout=subprocess.PIPE
        )
        for spec in specs
    ]
    merged = LoadResult()
    for proc in procs:
        out, _ = proc.communicate(timeout=max(s.seconds for s in specs) + 120)
        part = LoadResult(**json.loads(out))
        merged.requests += part.requests
        merged.errors += part.errors
        merged.elapsed_s = max(merged.elapsed_s, part.elapsed_s)
        merged.latencies_s.extend(part.latencies_s)
    return merged


def _sample(result: LoadResult, per_request: int = 1) -> Sample:
    return Sample(
        rate=result.requests * per_request / result.elapsed_s,
        p50_ms=1000 * percentile(result.latencies_s, 0.50),
        p99_ms=1000 * percentile(result.latencies_s, 0.99),
        errors=result.errors,
        requests=result.requests,
    )


def _up(port: int) -> bool:
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
        conn.request("GET", "/healthz")
        ok = conn.getresponse().status in (200, 503)
        conn.close()
        return ok
    except OSError:
        return False


def measure_api(
    started: Started, redis_url: str, rounds: int, seconds: float, clients: int = 2, threads: int = 8
) -> ApiRuns:
    """Start gunicorn (2 processes x 8 threads by default, from deploy/gunicorn.conf.py), run
    `rounds` rounds of noop / submit / batch loads, stop it."""
    port = free_port()
    env = bench_env(redis_url, POSTAL_HOST="127.0.0.1", POSTAL_PORT=str(port))
    gunicorn = started.start(
        "gunicorn",
        [
            str(BIN / "gunicorn"),
            "--config",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "bench.app:create_app()",
        ],
        env,
    )
    redis = Redis.from_url(redis_url)
    try:
        wait_for(lambda: _up(port), 60, "gunicorn to answer")

        def spec(path: str, body: str, n_threads: int = threads, secs: float = seconds) -> list[LoadSpec]:
            return [LoadSpec(port=port, path=path, body=body, threads=n_threads, seconds=secs)] * clients

        _load(spec("/bench/noop", SUBMIT_BODY, secs=1.0))  # warm both gunicorn processes
        _load(spec("/jobs", SUBMIT_BODY, secs=1.0))
        _load(spec("/jobs/batch", BATCH_BODY, n_threads=1, secs=1.0))
        redis.flushdb()
        runs = ApiRuns([], [], [], clients, threads, seconds)
        for _ in range(rounds):
            runs.noop.append(_sample(_load(spec("/bench/noop", SUBMIT_BODY))))
            runs.submit.append(_sample(_load(spec("/jobs", SUBMIT_BODY))))
            # one batch in flight per client process: gunicorn has two processes
            runs.batch.append(_sample(_load(spec("/jobs/batch", BATCH_BODY, n_threads=1)), BATCH_SIZE))
            redis.flushdb()
        return runs
    finally:
        redis.close()
        started.stop([gunicorn])

"""A bounded, self-stopping HTTP load generator for loopback: `threads` keep-alive connections
(http.client) each sending the same request back to back until `seconds` have passed.

Run as `python -m bench.load '<json spec>'` in its own process (its own GIL), it prints one JSON
line: request count, errors, elapsed time and every latency in seconds. Only 127.0.0.1.
"""

from __future__ import annotations

import http.client
import json
import sys
import threading
import time
from dataclasses import asdict, dataclass, field


@dataclass
class LoadSpec:
    """One load: where, what, how hard and for how long (never unbounded)."""

    port: int
    path: str
    body: str = ""
    method: str = "POST"
    threads: int = 8
    seconds: float = 3.0
    expect: int = 202


@dataclass
class LoadResult:
    """What one load produced."""

    requests: int = 0
    errors: int = 0
    elapsed_s: float = 0.0
    latencies_s: list[float] = field(default_factory=list)


def _worker(spec: LoadSpec, deadline: float, result: LoadResult, lock: threading.Lock) -> None:
    conn = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=30)
    body = spec.body.encode()
    headers = {"Content-Type": "application/json", "Connection": "keep-alive"}
    latencies: list[float] = []
    errors = 0
    try:
        while time.monotonic() < deadline:
            start = time.perf_counter()
            try:
                conn.request(spec.method, spec.path, body=body or None, headers=headers)
                response = conn.getresponse()
                response.read()
            except (OSError, http.client.HTTPException):
                errors += 1
                conn.close()
                conn = http.client.HTTPConnection("127.0.0.1", spec.port, timeout=30)
                continue
            latencies.append(time.perf_counter() - start)
            if response.status != spec.expect:
                errors += 1
    finally:
        conn.close()
    with lock:
        result.latencies_s.extend(latencies)
        result.requests += len(latencies)
        result.errors += errors


def run_load(spec: LoadSpec) -> LoadResult:
    """Run `spec` in this process and return what it measured."""
    result = LoadResult()
    lock = threading.Lock()
    start = time.monotonic()
    deadline = start + spec.seconds
    threads = [
        threading.Thread(target=_worker, args=(spec, deadline, result, lock), daemon=True)
        for _ in range(spec.threads)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(spec.seconds + 60)
    result.elapsed_s = time.monotonic() - start
    return result


def main() -> None:
    spec = LoadSpec(**json.loads(sys.argv[1]))
    print(json.dumps(asdict(run_load(spec))))


if __name__ == "__main__":
    main()

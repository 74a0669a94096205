"""A small API and Redis client that tests run *inside* a network namespace (`ip netns exec A
python -m tests.netns_client ...`), where the test process itself cannot reach. Stdlib and
redis-py only; prints one JSON document on stdout.

    ready   --api URL --token T --workers N    wait until /healthz sees N workers
    submit  --api URL --token T --count N      POST N message jobs one after another on one
                                               keep-alive connection, timing each; wait for all
                                               to end; print latencies, job views, workers
    ping    --redis URL --count N              time N Redis PINGs (the link's round trip) and
                                               list the workers as Redis knows them
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import time
from typing import Any
from urllib.parse import urlsplit

TERMINAL = {"finished", "failed", "stopped", "canceled"}


class Api:
    """One keep-alive HTTP connection to the API with a bearer token."""

    def __init__(self, url: str, token: str) -> None:
        parts = urlsplit(url)
        self.connection = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=10)
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

    def call(self, method: str, path: str, body: object | None = None) -> tuple[int, Any]:
        data = json.dumps(body).encode() if body is not None else None
        try:
            self.connection.request(method, path, body=data, headers=self.headers)
            response = self.connection.getresponse()
            return response.status, json.loads(response.read())
        except (OSError, http.client.HTTPException):
            self.connection.close()  # reconnects on the next request
            raise


def ready(api: Api, workers: int, timeout: float) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            status, last = api.call("GET", "/healthz")
            if status == 200 and last.get("workers") == workers:
                return {"health": last}
        except (OSError, http.client.HTTPException, ValueError) as exc:
            last = repr(exc)
        time.sleep(0.2)
    raise SystemExit(f"not ready after {timeout} s: {last}")


def submit(api: Api, count: int, timeout: float) -> dict[str, Any]:
    latencies_ms: list[float] = []
    ids: list[str] = []
    for index in range(count):
        body = {"task": "message", "payload": {"message": f"remote-{index}"}}
        started = time.perf_counter()
        status, answer = api.call("POST", "/jobs", body)
        latencies_ms.append((time.perf_counter() - started) * 1000)
        if status != 202:
            raise SystemExit(f"POST /jobs answered {status}: {answer}")
        ids.append(answer["id"])
    views: dict[str, Any] = {}
    deadline = time.monotonic() + timeout
    for job_id in ids:
        while True:
            status, view = api.call("GET", f"/jobs/{job_id}")
            if view.get("status") in TERMINAL or time.monotonic() > deadline:
                views[job_id] = view
                break
            time.sleep(0.05)
    _status, workers = api.call("GET", "/workers")
    return {"latencies_ms": latencies_ms, "jobs": views, "workers": workers["workers"]}


def ping(redis_url: str, count: int) -> dict[str, Any]:
    from redis import Redis
    from rq import Worker  # each worker's hostname and the address Redis saw it connect from

    client = Redis.from_url(redis_url, socket_timeout=10)
    try:
        client.ping()  # connect first: the handshake is not a round trip of the link
        rtts_ms = []
        for _ in range(count):
            started = time.perf_counter()
            client.ping()
            rtts_ms.append((time.perf_counter() - started) * 1000)
        workers = [
            {"name": w.name, "hostname": w.hostname, "ip_address": w.ip_address}
            for w in Worker.all(connection=client)
        ]
    finally:
        client.close()
    return {"rtts_ms": rtts_ms, "workers": workers}


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(prog="netns_client")
    parser.add_argument("action", choices=("ready", "submit", "ping"))
    parser.add_argument("--api", default="")
    parser.add_argument("--token", default="")
    parser.add_argument("--redis", default="")
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--count", type=int, default=10)
    parser.add_argument("--timeout", type=float, default=30)
    args = parser.parse_args(argv)
    if args.action == "ping":
        result = ping(args.redis, args.count)
    else:
        api = Api(args.api, args.token)
        result = (
            ready(api, args.workers, args.timeout)
            if args.action == "ready"
            else submit(api, args.count, args.timeout)
        )
    json.dump(result, sys.stdout)


if __name__ == "__main__":
    main()

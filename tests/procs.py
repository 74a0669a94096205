"""Starting and stopping the real processes tests need: redis-server, rq workers, supervisord.

Every process is started here with a known PID and stopped by PID, together with any children
it forked (RQ's work horses call setpgrp, so a process-group kill would miss them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from redis import Redis

from postal.processes import free_port, stop_tree
from postal.worker_command import worker_args

BIN = Path(sys.executable).parent
ROOT = Path(__file__).resolve().parent.parent


# The worker command line of supervisord.conf (after `rq`): tests run exactly what ships.
WORKER_ARGS = worker_args()


def wait_for(condition: Callable[[], object], timeout: float, what: str, interval: float = 0.05) -> object:
    """Poll `condition` until it returns something truthy; fail the test with `what` otherwise."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        time.sleep(interval)


class RedisServer:
    """A real redis-server on a free port (or only on `unix_socket`), data in its own temp dir,
    nothing persisted; `password` turns on requirepass (and goes into `url`)."""

    def __init__(
        self, binary: str, directory: Path, password: str | None = None, unix_socket: Path | None = None
    ) -> None:
        self.port = 0 if unix_socket else free_port()
        self.url = f"redis://{f':{password}@' if password else ''}127.0.0.1:{self.port}/0"
        self.directory = directory
        self.log = directory / "redis.log"
        listen = (
            ["--unixsocket", str(unix_socket), "--unixsocketperm", "700"]
            if unix_socket
            else ["--bind", "127.0.0.1"]
        )
        auth = ["--requirepass", password] if password else []
        with self.log.open("wb") as log:
            self.proc = subprocess.Popen(
                [
                    binary,
                    "--port",
                    str(self.port),
                    *listen,
                    "--dir",
                    str(directory),
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                    "--daemonize",
                    "no",
                    *auth,
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        if unix_socket:
            client = Redis(unix_socket_path=str(unix_socket), password=password)
        else:
            client = Redis.from_url(self.url)
        try:
            wait_for(lambda: self._ping(client), 10, f"redis-server ({unix_socket or self.port})")
        finally:
            client.close()

    @staticmethod
    def _ping(client: Redis) -> bool:
        try:
            return bool(client.ping())
        except Exception:  # noqa: BLE001 - any failure means "not up yet"
            return False

    def stop(self) -> None:
        stop_tree(self.proc)


class Workers:
    """Real `rq worker` processes against a test Redis; `stop()` stops every one it started."""

    def __init__(self, redis_url: str, env: dict[str, str], log_dir: Path) -> None:
        self.redis_url = redis_url
        self.env = env
        self.log_dir = log_dir
        self.procs: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        count: int = 1,
        queues: Sequence[str] = ("high", "default", "low"),
        extra: Sequence[str] = (),
        env: dict[str, str] | None = None,
    ) -> list[subprocess.Popen[bytes]]:
        """Start `count` workers (with `env` added to their environment) and wait until each has
        registered in Redis."""
        from rq import Worker

        started = []
        for _ in range(count):
            log = (self.log_dir / f"worker-{len(self.procs)}.log").open("wb")
            proc = subprocess.Popen(
                [str(BIN / "rq"), *WORKER_ARGS, *extra, *queues],
                env={**self.env, **(env or {})},
                cwd=ROOT,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
            log.close()
            self.procs.append(proc)
            started.append(proc)
        client = Redis.from_url(self.redis_url)
        try:
            pids = {p.pid for p in started}
            wait_for(
                lambda: pids <= {w.pid for w in Worker.all(connection=client)},
                30,
                f"{count} rq worker(s) to register",
            )
        finally:
            client.close()
        return started

    def logs(self) -> str:
        """Every worker log, for assertion messages."""
        return "\n".join(p.read_text(errors="replace") for p in sorted(self.log_dir.glob("worker-*.log")))

    def stop(self) -> None:
        for proc in self.procs:
            stop_tree(proc)
        self.procs.clear()


def child_env(redis_url: str, **extra: str) -> dict[str, str]:
    """The environment for processes the tests start: the test Redis, fast retries."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("POSTAL_", "RQ_"))}
    env.update(
        {
            "REDIS_URL": redis_url,
            "POSTAL_RETRY_DELAY_SCALE": "0.1",
            "PYTHONUNBUFFERED": "1",
            # the local page server is on loopback, which the SSRF guard refuses unless allowed
            "POSTAL_FETCH_ALLOW": "127.0.0.1",
        }
    )
    env.update(extra)
    return env

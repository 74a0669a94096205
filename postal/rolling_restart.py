"""`deploy/rolling-restart`: restart the workers one at a time, then reload the API.

Each worker is restarted with `supervisorctl restart`, which returns once the old process has
drained (SIGTERM: RQ's warm shutdown finishes the job in hand) and the new one is RUNNING.
The next worker is touched only after the new process has registered in Redis, so at most one
worker is ever out of service. The API is then reloaded with gunicorn's HUP: new processes
start with the new code, old ones finish their requests, no request is refused.

Run it where `supervisorctl` can reach the stack, with the stack's `REDIS_URL`.
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from redis import Redis
from rq import Worker

from tasks.connection import redis_client
from tasks.settings import Settings

REGISTER_TIMEOUT_S = 60.0
STATES = {"STOPPED", "STARTING", "RUNNING", "BACKOFF", "STOPPING", "EXITED", "FATAL", "UNKNOWN"}


class RestartError(RuntimeError):
    """Raised when a step did not complete; the message says which and what was seen."""


@dataclass(frozen=True)
class Process:
    """One line of `supervisorctl status`."""

    name: str
    state: str
    pid: int | None


def supervisorctl(root: Path, *args: str, timeout: float = 600) -> str:
    """Run supervisorctl against `root`/supervisord.conf; its output (exit status 3 = some
    process not RUNNING is normal for `status`)."""
    ctl = str(Path(sys.executable).parent / "supervisorctl")
    done = subprocess.run(
        [ctl, "-c", str(root / "supervisord.conf"), *args], capture_output=True, text=True, timeout=timeout
    )
    return done.stdout + done.stderr


def status(root: Path, pattern: str = "worker:*", attempts: int = 3) -> list[Process]:
    """The processes matching `pattern` with their state and PID (asked again, up to `attempts`
    times, when supervisorctl answers nothing usable: a busy supervisord can time it out)."""
    for attempt in range(attempts):
        processes = _parse_status(supervisorctl(root, "status", pattern))
        if processes:
            return processes
        if attempt + 1 < attempts:
            time.sleep(1)
    return []


def _parse_status(output: str) -> list[Process]:
    processes = []
    for line in output.splitlines():
        parts = line.split()
        if len(parts) < 2 or parts[1] not in STATES:
            continue
        pid = None
        if "pid" in parts:
            pid = int(parts[parts.index("pid") + 1].rstrip(","))
        processes.append(Process(name=parts[0], state=parts[1], pid=pid))
    return processes


def registered(connection: Redis, pid: int) -> bool:
    """Whether a live worker with `pid` on this host has registered in Redis."""
    host = socket.gethostname()
    return any(w.pid == pid and w.hostname == host for w in Worker.all(connection=connection))


def restart_worker(root: Path, connection: Redis, name: str) -> Process:
    """Restart one worker and wait until its new process is RUNNING and registered."""
    output = supervisorctl(root, "restart", name)
    [process] = [p for p in status(root, name) if p.name == name] or [Process(name, "MISSING", None)]
    if process.state != "RUNNING" or process.pid is None:
        raise RestartError(f"{name} is {process.state} after restart: {output.strip()}")
    deadline = time.monotonic() + REGISTER_TIMEOUT_S
    while not registered(connection, process.pid):
        if time.monotonic() > deadline:
            raise RestartError(
                f"{name} (pid {process.pid}) did not register in Redis within {REGISTER_TIMEOUT_S:.0f} s"
            )
        time.sleep(0.2)
    return process


def rolling_restart(root: Path, connection: Redis, reload_api: bool = True) -> None:
    """Restart every worker one at a time, then reload the API."""
    workers = status(root)
    if not workers:
        raise RestartError("supervisorctl lists no worker:* processes; is the stack running?")
    for index, worker in enumerate(workers, start=1):
        started = time.monotonic()
        new = restart_worker(root, connection, worker.name)
        print(
            f"[{index}/{len(workers)}] {worker.name}: pid {worker.pid} -> {new.pid} "
            f"({time.monotonic() - started:.1f} s)",
            flush=True,
        )
    if reload_api:
        print(
            supervisorctl(root, "signal", "HUP", "api").strip(), "(gunicorn reloads its workers)", flush=True
        )


def main(argv: list[str] | None = None) -> None:
    """Entry point of `deploy/rolling-restart`."""
    parser = argparse.ArgumentParser(prog="rolling-restart", description=__doc__)
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="checkout holding supervisord.conf")
    parser.add_argument("--no-api", action="store_true", help="restart the workers only")
    args = parser.parse_args(argv)
    connection = redis_client(Settings.from_env())
    try:
        rolling_restart(args.root.resolve(), connection, reload_api=not args.no_api)
    except RestartError as exc:
        sys.exit(f"rolling-restart: {exc}")
    finally:
        connection.close()


if __name__ == "__main__":
    main()

"""`postal-stack up|down`: the local stack behind `make run` / `make stop`.

`up` fills in the environment that supervisord.conf expands (`%(ENV_...)s`), starts
supervisord from the checkout root, waits until the API answers and the workers have
registered, and prints where everything is. All state stays under `var/`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Mapping
from pathlib import Path

from tasks.settings import Settings, SettingsError

DEFAULT_REDIS_PORT = 6379
READY_TIMEOUT_S = 60.0


class StackError(RuntimeError):
    """Raised when the stack cannot be brought up or down; the message says what to do."""


def stack_env(base: Mapping[str, str], bin_dir: Path) -> dict[str, str]:
    """The environment supervisord needs: defaults filled in, the venv's scripts first on PATH.

    With `REDIS_URL` (or `REDIS_SENTINELS`) set, that Redis is used and none is started
    (`POSTAL_REDIS_AUTOSTART=false`);
    without it, a local redis-server on `POSTAL_REDIS_PORT` (default 6379) is started and used.
    """
    env = dict(base)
    env.setdefault("WORKERS", str(os.cpu_count() or 1))
    env.setdefault("POSTAL_HOST", Settings.api_host)
    env.setdefault("POSTAL_PORT", str(Settings.api_port))
    env.setdefault("POSTAL_REDIS_PORT", str(DEFAULT_REDIS_PORT))
    if env.get("REDIS_URL") or env.get("REDIS_SENTINELS"):
        env.setdefault("POSTAL_REDIS_AUTOSTART", "false")
    else:
        env["POSTAL_REDIS_AUTOSTART"] = "true"
        env["REDIS_URL"] = f"redis://127.0.0.1:{env['POSTAL_REDIS_PORT']}/0"
    env["PATH"] = os.pathsep.join([str(bin_dir), env.get("PATH", "")])
    workers = env["WORKERS"]
    if not workers.isdigit() or int(workers) < 1:
        raise StackError(f"WORKERS must be a positive integer, got {workers!r}")
    try:
        Settings.from_mapping(env)
    except SettingsError as exc:
        raise StackError(str(exc)) from None
    return env


def _port_in_use(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.settimeout(0.5)
        return sock.connect_ex((host, port)) == 0


def _supervisord_pid(root: Path) -> int | None:
    """The PID in var/supervisord.pid if that process is alive."""
    try:
        pid = int((root / "var" / "supervisord.pid").read_text().strip())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def _health(api: str) -> dict[str, object] | None:
    try:
        with urllib.request.urlopen(f"{api}/healthz", timeout=2) as response:  # noqa: S310 - our own URL
            body: dict[str, object] = json.load(response)
            return body
    except (urllib.error.URLError, OSError, ValueError):
        return None


def wait_ready(api: str, workers: int, timeout_s: float = READY_TIMEOUT_S) -> dict[str, object]:
    """Wait until `api` answers /healthz with `workers` workers registered."""
    deadline = time.monotonic() + timeout_s
    last: dict[str, object] | None = None
    while time.monotonic() < deadline:
        last = _health(api)
        if last and isinstance(last.get("workers"), int) and int(str(last["workers"])) >= workers:
            return last
        time.sleep(0.3)
    raise StackError(
        f"the stack did not become ready within {timeout_s:.0f} s (last health: {last}); "
        "see var/log/*.log and `supervisorctl status`"
    )


def up(root: Path) -> None:
    """Start supervisord with the whole stack and print how to use it."""
    env = stack_env(os.environ, Path(sys.executable).parent)
    api = f"http://{env['POSTAL_HOST']}:{env['POSTAL_PORT']}"
    if _supervisord_pid(root):
        print(f"postal is already running (supervisord pid {_supervisord_pid(root)}); `make stop` stops it.")
    else:
        if env["POSTAL_REDIS_AUTOSTART"] == "true" and _port_in_use(
            "127.0.0.1", int(env["POSTAL_REDIS_PORT"])
        ):
            raise StackError(
                f"port {env['POSTAL_REDIS_PORT']} is taken by another process. Use that Redis with "
                f"REDIS_URL=redis://127.0.0.1:{env['POSTAL_REDIS_PORT']}/0, "
                "or pick POSTAL_REDIS_PORT=<free port>."
            )
        if _port_in_use(env["POSTAL_HOST"], int(env["POSTAL_PORT"])):
            raise StackError(f"port {env['POSTAL_PORT']} is taken; choose another with POSTAL_PORT=<port>")
        for sub in ("log", "redis"):
            (root / "var" / sub).mkdir(parents=True, exist_ok=True)
        supervisord = str(Path(sys.executable).parent / "supervisord")
        subprocess.run([supervisord, "-c", str(root / "supervisord.conf")], env=env, check=True, cwd=root)
    health = wait_ready(api, int(env["WORKERS"]))
    redacted = Settings.from_mapping(env).redis_url_redacted
    where = " (started here)" if env["POSTAL_REDIS_AUTOSTART"] == "true" else ""
    # tokens are never printed: the line names the variable that holds them
    auth = ' -H "Authorization: Bearer $POSTAL_API_TOKENS"' if Settings.from_mapping(env).api_tokens else ""
    print(
        f"""
postal is up: {env["WORKERS"]} workers, Redis at {redacted}{where}
  API        {api}/        health: {health.get("status")}
  Dashboard  {api}/rq/
  Logs       var/log/      processes: .venv/bin/supervisorctl status

Submit a job:
  curl -s -X POST {api}/jobs{auth} -H 'Content-Type: application/json' \\
       -d '{{"task": "message", "payload": {{"message": "hello"}}}}'
then read it back at the "url" the answer gives, e.g. curl -s{auth} {api}/jobs/<id>

Stop everything with: make stop
"""
    )


def down(root: Path, timeout_s: float = 300.0) -> None:
    """Ask supervisord to stop every process (workers drain first) and wait until it has exited."""
    pid = _supervisord_pid(root)
    if pid is None:
        print("postal is not running.")
        return
    os.kill(pid, signal.SIGTERM)  # supervisord stops its programs in reverse priority, then exits
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if _supervisord_pid(root) is None:
            print("postal stopped.")
            return
        time.sleep(0.2)
    raise StackError(
        f"supervisord (pid {pid}) is still running after {timeout_s:.0f} s; see var/log/supervisord.log"
    )


def main(argv: list[str] | None = None) -> None:
    """Entry point of `postal-stack`."""
    parser = argparse.ArgumentParser(prog="postal-stack", description=__doc__)
    parser.add_argument("command", choices=["up", "down"])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="checkout holding supervisord.conf")
    args = parser.parse_args(argv)
    root = args.root.resolve()
    if not (root / "supervisord.conf").is_file():
        sys.exit(f"postal-stack: no supervisord.conf in {root}; run it from the checkout root")
    try:
        up(root) if args.command == "up" else down(root)
    except StackError as exc:
        sys.exit(f"postal-stack: {exc}")

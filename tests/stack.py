"""The real supervisord.conf running in a temp root: shared by the supervisord and reliability
tests.

The config is copied unchanged into a temp dir, so `%(here)s` (and with it `var/`) points
there; `deploy/` is linked beside it. Redis is the test server (REDIS_URL set, so the config's
own Redis program stays off). The checkout is on PYTHONPATH so workers can import tests.jobs.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from postal.rolling_restart import Process, status
from postal.stack import stack_env
from tests.procs import BIN, ROOT, child_env, free_port, stop_tree, wait_for


@dataclass
class Stack:
    """A running supervisord with the API and `workers` workers."""

    root: Path
    api: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]
    workers: int

    def ctl(self, *args: str, timeout: float = 300) -> str:
        """Run supervisorctl from the stack's root with no -c, as README tells users to."""
        done = subprocess.run(
            [str(BIN / "supervisorctl"), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        return done.stdout + done.stderr

    def rolling_restart(self) -> subprocess.CompletedProcess[str]:
        """Run deploy/rolling-restart as README says, from this stack's checkout."""
        return subprocess.run(
            [str(self.root / "deploy" / "rolling-restart")],
            env=self.env,
            cwd=self.root,
            capture_output=True,
            text=True,
            timeout=300,
        )

    def worker_processes(self) -> list[Process]:
        """`supervisorctl status worker:*`, parsed."""
        return status(self.root)

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
            for log in sorted((self.root / "var" / "log").glob("*.log"))
        )


def http_json(method: str, url: str, body: object | None = None, timeout: float = 10) -> tuple[int, Any]:
    """One JSON request; (status, parsed body) for 2xx and error answers alike."""
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        with exc:
            return exc.code, json.load(exc)


def _ready(api: str, workers: int) -> bool:
    try:
        status_code, body = http_json("GET", f"{api}/healthz")
    except OSError:
        return False
    return status_code == 200 and body.get("workers") == workers


@contextmanager
def running_stack(
    redis_url: str, tmp_path: Path, workers: int = 2, python_path: tuple[Path, ...] = (), **env_extra: str
) -> Iterator[Stack]:
    """supervisord running the real supervisord.conf from a temp root, in the foreground."""
    root = tmp_path / "postal"
    (root / "var" / "log").mkdir(parents=True)
    shutil.copy(ROOT / "supervisord.conf", root / "supervisord.conf")
    (root / "deploy").symlink_to(ROOT / "deploy")
    port = free_port()
    env = stack_env(
        child_env(
            redis_url,
            WORKERS=str(workers),
            POSTAL_PORT=str(port),
            POSTAL_REDIS_PORT=str(free_port()),
            **env_extra,
        ),
        BIN,
    )
    env["PYTHONPATH"] = os.pathsep.join(str(p) for p in (ROOT, *python_path))
    env["POSTAL_PYTHON"] = str(BIN / "python")
    proc = subprocess.Popen(
        [str(BIN / "supervisord"), "-n", "-c", str(root / "supervisord.conf")],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}"
    stack = Stack(root=root, api=api, proc=proc, env=env, workers=workers)
    try:
        wait_for(
            lambda: _ready(api, workers),
            60,
            f"the API to answer with {workers} workers registered",
            interval=0.2,
        )
        yield stack
    except BaseException:
        print(stack.logs())
        raise
    finally:
        stop_tree(proc, grace=60)

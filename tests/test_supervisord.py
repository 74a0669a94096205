"""The real supervisord.conf: boots the whole stack (gunicorn API + rq workers) and runs jobs.

The config is copied unchanged into a temp dir, so `%(here)s` (and with it `var/`) points
there; `deploy/` is linked beside it. Redis is the test server (REDIS_URL set, so the config's
own Redis program stays off).
"""

from __future__ import annotations

import configparser
import json
import os
import shutil
import subprocess
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from postal.stack import stack_env
from tasks.registry import longest_timeout_s
from tests.procs import BIN, ROOT, RedisServer, child_env, free_port, stop_tree, wait_for

WORKERS = 2


@dataclass
class Stack:
    root: Path
    api: str
    proc: subprocess.Popen[bytes]
    env: dict[str, str]

    def ctl(self, *args: str) -> str:
        """Run supervisorctl from the stack's root with no -c, as README tells users to."""
        done = subprocess.run(
            [str(BIN / "supervisorctl"), *args],
            cwd=self.root,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        return done.stdout + done.stderr


def http_json(method: str, url: str, body: object | None = None) -> tuple[int, dict[str, object]]:
    data = json.dumps(body).encode() if body is not None else None
    request = urllib.request.Request(
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, json.load(response)
    except urllib.error.HTTPError as exc:
        return exc.code, json.load(exc)


@pytest.fixture
def stack(redis_server: RedisServer, redis: object, tmp_path: Path) -> Iterator[Stack]:
    """supervisord running the real supervisord.conf from a temp root, in the foreground."""
    root = tmp_path / "postal"
    (root / "var" / "log").mkdir(parents=True)
    shutil.copy(ROOT / "supervisord.conf", root / "supervisord.conf")
    (root / "deploy").symlink_to(ROOT / "deploy")
    port = free_port()
    env = stack_env(
        child_env(
            redis_server.url, WORKERS=str(WORKERS), POSTAL_PORT=str(port), POSTAL_REDIS_PORT=str(free_port())
        ),
        BIN,
    )
    proc = subprocess.Popen(
        [str(BIN / "supervisord"), "-n", "-c", str(root / "supervisord.conf")],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    api = f"http://127.0.0.1:{port}"
    try:
        wait_for(lambda: _ready(api), 60, "the API to answer with both workers registered", interval=0.2)
        yield Stack(root=root, api=api, proc=proc, env=env)
    finally:
        stop_tree(proc, grace=60)
        for log in sorted((root / "var" / "log").glob("*.log")):
            print(f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}")


def _ready(api: str) -> bool:
    try:
        status, body = http_json("GET", f"{api}/healthz")
    except OSError:
        return False
    return status == 200 and body.get("workers") == WORKERS


def test_stack_runs_jobs_over_http(stack: Stack) -> None:
    """Jobs submitted over HTTP to gunicorn run on supervisord's workers and are readable back."""
    status, batch = http_json(
        "POST",
        f"{stack.api}/jobs/batch",
        {"jobs": [{"task": "message", "payload": {"message": f"s{i}"}} for i in range(6)]},
    )
    assert status == 202
    ids = [job["id"] for job in batch["jobs"]]  # type: ignore[index]

    def all_finished() -> bool:
        return all(http_json("GET", f"{stack.api}/jobs/{i}")[1]["status"] == "finished" for i in ids)

    wait_for(all_finished, 30, "the batch to finish", interval=0.2)
    workers_seen = {http_json("GET", f"{stack.api}/jobs/{i}")[1]["worker"] for i in ids}
    assert workers_seen <= {w["name"] for w in http_json("GET", f"{stack.api}/workers")[1]["workers"]}  # type: ignore[index]
    status_text = stack.ctl("status")
    for name in ("api", "worker:worker-00", "worker:worker-01"):
        assert name in status_text
    assert status_text.count("RUNNING") == 1 + WORKERS, status_text
    assert "redis" in status_text and "STOPPED" in status_text.split("redis", 1)[1].splitlines()[0]


def test_stack_shuts_down_cleanly(stack: Stack) -> None:
    """SIGTERM to supervisord stops the API and workers and leaves no process behind."""
    import psutil

    children = psutil.Process(stack.proc.pid).children(recursive=True)
    assert len(children) >= 1 + WORKERS
    stack.proc.terminate()
    stack.proc.wait(60)
    _gone, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive


def test_stopwaitsecs_exceeds_longest_task_timeout() -> None:
    """Workers' stopwaitsecs must outlast the longest task timeout, or a drain ends in SIGKILL."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "supervisord.conf")
    stopwait = config.getint("program:worker", "stopwaitsecs")
    assert stopwait > longest_timeout_s(), (stopwait, longest_timeout_s())


def test_config_paths_are_relative_to_here() -> None:
    """Every path in supervisord.conf is built from %(here)s, so the checkout can live anywhere."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "supervisord.conf")
    for section in config.sections():
        for key, value in config.items(section):
            for token in value.replace("=", " ").split():
                if token.startswith("/") or token.startswith("var/"):
                    pytest.fail(f"[{section}] {key} uses a path not built from %(here)s: {token}")
    assert os.path.basename(config.get("unix_http_server", "file")).endswith(".sock")

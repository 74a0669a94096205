"""The real supervisord.conf: boots the whole stack (gunicorn API + rq workers) and runs jobs."""

from __future__ import annotations

import configparser
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tasks.registry import longest_timeout_s
from tests.procs import ROOT, RedisServer, wait_for
from tests.stack import Stack, http_json, running_stack

WORKERS = 2


@pytest.fixture
def stack(redis_server: RedisServer, redis: object, tmp_path: Path) -> Iterator[Stack]:
    """The whole stack under supervisord, with two workers."""
    with running_stack(redis_server.url, tmp_path, workers=WORKERS) as running:
        yield running


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
    # registered in Redis can precede RUNNING in supervisord (startsecs): wait for the latter
    status_text = str(
        wait_for(
            lambda: (t := stack.ctl("status")).count("RUNNING") == 1 + WORKERS and t,
            15,
            "api and workers RUNNING",
            interval=0.2,
        )
    )
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


def test_supervisorctl_has_no_network_port() -> None:
    """supervisorctl control is a unix socket only its owner may use; no inet_http_server."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "supervisord.conf")
    assert not config.has_section("inet_http_server")
    assert config.get("unix_http_server", "chmod") == "0700"
    assert config.get("supervisorctl", "serverurl").startswith("unix://")


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

"""Redis with a password works end to end (API, workers, dashboard, `rq` CLI) and the password
never shows up in answers or logs."""

from __future__ import annotations

import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from postal.redis_server import find_redis_server
from tests.jobwait import submit, wait_job
from tests.procs import BIN, ROOT, RedisServer, Workers, child_env

PASSWORD = "s3cret-redis-pass-42"  # noqa: S105 - a test password


@pytest.fixture
def locked_redis(tmp_path: Path) -> Iterator[str]:
    """A real redis-server that requires a password; yields its URL with the password in it."""
    server = RedisServer(find_redis_server(), tmp_path, password=PASSWORD)
    try:
        yield server.url
    finally:
        server.stop()


def test_password_protected_redis_end_to_end(locked_redis: str, tmp_path: Path) -> None:
    """API, worker, dashboard and `rq info` all work through REDIS_URL's password; none prints it."""
    from web import create_app

    client = create_app({"REDIS_URL": locked_redis, "TESTING": True}).test_client()
    workers = Workers(locked_redis, child_env(locked_redis), tmp_path)
    try:
        workers.start(1)
        job = submit(client, "message", {"message": "through auth"})
        assert wait_job(client, job["id"])["result"] == {"message": "through auth"}
        health = client.get("/healthz")
        assert health.status_code == 200
        assert health.json["redis"]["url"] == f"redis://:***@127.0.0.1:{locked_redis.rsplit(':', 1)[1]}"
        assert client.get("/rq/0/data/queues.json").status_code == 200
        info = subprocess.run(
            [str(BIN / "rq"), "info", "-c", "tasks.rqconfig"],
            env=child_env(locked_redis),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert info.returncode == 0, info.stdout + info.stderr
        assert "1 workers" in info.stdout or "1 worker" in info.stdout
        for text in (health.get_data(as_text=True), info.stdout, info.stderr, workers.logs()):
            assert PASSWORD not in text
    finally:
        workers.stop()


def test_wrong_password_is_a_clear_503_without_the_secret(locked_redis: str) -> None:
    """A wrong Redis password answers 503 naming the problem, and echoes neither password."""
    from web import create_app

    wrong = locked_redis.replace(PASSWORD, "not-the-password")
    client = create_app({"REDIS_URL": wrong}).test_client()
    health = client.get("/healthz")
    assert health.status_code == 503
    body = health.get_data(as_text=True)
    assert "not-the-password" not in body and PASSWORD not in body
    assert "AuthenticationError" in health.json["redis"]["error"] or "invalid" in body.lower()
    submitted = client.post("/jobs", json={"task": "message", "payload": {"message": "x"}})
    assert submitted.status_code == 503
    assert "not-the-password" not in submitted.get_data(as_text=True)

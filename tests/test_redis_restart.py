"""Redis restarts with deploy/redis.conf: queued and scheduled jobs survive, the API and the
workers reconnect by themselves, and while Redis is down the API answers 503 quickly."""

from __future__ import annotations

import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from redis import Redis

from postal.redis_server import find_redis_server
from tests.jobwait import submit, wait_job
from tests.procs import ROOT, Workers, child_env, free_port, stop_tree, wait_for


class ProductionRedis:
    """redis-server with the shipped deploy/redis.conf (AOF, noeviction), restartable in place."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self.directory = directory
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [
                    find_redis_server(),
                    str(ROOT / "deploy" / "redis.conf"),
                    "--port",
                    str(self.port),
                    "--bind",
                    "127.0.0.1",
                    "--dir",
                    str(self.directory),
                ],
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        client = Redis(port=self.port)
        try:
            wait_for(lambda: _pings(client), 20, "redis-server with deploy/redis.conf")
        finally:
            client.close()

    def stop(self) -> None:
        if self.proc is not None:
            stop_tree(self.proc, grace=30)
            self.proc = None


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - loading the AOF or not up yet
        return False


@pytest.fixture
def production_redis(tmp_path: Path) -> Iterator[ProductionRedis]:
    server = ProductionRedis(tmp_path)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def test_config_is_safe_for_jobs(production_redis: ProductionRedis) -> None:
    """deploy/redis.conf turns on AOF (fsync every second) and never evicts keys."""
    client = Redis(port=production_redis.port)
    try:
        config = client.config_get("*")
    finally:
        client.close()
    assert config["appendonly"] == "yes"
    assert config["appendfsync"] == "everysec"
    assert config["maxmemory-policy"] == "noeviction"
    assert int(config["maxmemory"]) > 0


def test_jobs_survive_restart_and_everyone_reconnects(
    production_redis: ProductionRedis, tmp_path: Path
) -> None:
    """Queued and scheduled jobs outlive a Redis restart; the same API object and the same worker
    process carry on afterwards without being restarted; down means a quick 503."""
    from web import create_app

    client = create_app({"REDIS_URL": production_redis.url, "TESTING": True}).test_client()
    workers = Workers(production_redis.url, child_env(production_redis.url), tmp_path)
    try:
        [worker] = workers.start(1, queues=["high"])
        queued = submit(client, "message", {"message": "waits in low"}, queue="low")
        scheduled = submit(client, "message", {"message": "later"}, delay_s=3600)
        before = submit(client, "message", {"message": "before"}, queue="high")
        assert wait_job(client, before["id"])["status"] == "finished"

        production_redis.stop()
        started = time.monotonic()
        health = client.get("/healthz")
        down = client.post("/jobs", json={"task": "message", "payload": {"message": "x"}})
        assert time.monotonic() - started < 10
        assert health.status_code == 503
        assert "ConnectionError" in health.json["redis"]["error"]
        assert down.status_code == 503
        assert down.json["error"]["code"] == "redis_unavailable"

        production_redis.start()
        assert client.get(f"/jobs/{queued['id']}").json["status"] == "queued"
        assert client.get(f"/jobs/{scheduled['id']}").json["status"] == "scheduled"
        assert client.get(f"/jobs/{before['id']}").json["result"] == {"message": "before"}
        after = submit(client, "message", {"message": "after"}, queue="high")
        assert wait_job(client, after["id"], timeout=60)["status"] == "finished"
        assert worker.poll() is None, "the worker reconnected; it was not restarted"
        assert client.get("/healthz").status_code == 200
    finally:
        workers.stop()

"""Redis high availability through Sentinel: settings, and a real failover (master SIGKILLed while
jobs flow) after which every job the API accepted still finishes and nothing was restarted."""

from __future__ import annotations

import collections
import functools
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq.job import Job

from postal.redis_server import find_redis_server
from tasks.connection import SERIALIZER
from tasks.settings import Settings, SettingsError
from tests.procs import BIN, ROOT, RedisServer, Workers, child_env, free_port, wait_for
from tests.sentinel_cluster import MASTER_NAME, SentinelCluster

SENTINELS = "10.0.0.1:26379,[::1]:26380,sentinel-3.internal:26381"


def test_sentinel_settings_are_parsed_and_redacted() -> None:
    """Sentinels, master name and password are read; REDIS_URL keeps db and password; repr and
    the shown URL hide both passwords; WAIT defaults to one replica with Sentinel, none without."""
    settings = Settings.from_mapping(
        {
            "REDIS_URL": "redis://:master-pw@ignored:1/3",
            "REDIS_SENTINELS": SENTINELS,
            "REDIS_SENTINEL_MASTER": "jobs",
            "REDIS_SENTINEL_PASSWORD": "sentinel-pw",
        }
    )
    assert settings.redis_sentinels == (("10.0.0.1", 26379), ("::1", 26380), ("sentinel-3.internal", 26381))
    assert settings.wait_replicas == 1
    assert Settings().wait_replicas == 0
    shown = settings.redis_url_redacted
    assert shown == "redis+sentinel://:***@10.0.0.1:26379,[::1]:26380,sentinel-3.internal:26381/jobs/3"
    assert "master-pw" not in repr(settings) and "sentinel-pw" not in repr(settings)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"REDIS_SENTINELS": "10.0.0.1"}, "REDIS_SENTINELS: '10.0.0.1' is not host:port"),
        (
            {"REDIS_SENTINELS": "10.0.0.1:99999"},
            "REDIS_SENTINELS: '10.0.0.1:99999' does not end in a TCP port",
        ),
        ({"REDIS_SENTINELS": "a b:1"}, "is not host:port"),
        ({"REDIS_SENTINELS": "10.0.0.1:26379"}, "must be set together"),
        ({"REDIS_SENTINEL_MASTER": "jobs"}, "must be set together"),
        ({"REDIS_SENTINEL_MASTER": "no spaces"}, "REDIS_SENTINEL_MASTER must be a Sentinel master name"),
        ({"REDIS_SENTINEL_PASSWORD": "pw"}, "REDIS_SENTINEL_PASSWORD is set but REDIS_SENTINELS is not"),
        (
            {"REDIS_SENTINELS": "h:1", "REDIS_SENTINEL_MASTER": "m", "REDIS_URL": "unix:///tmp/r.sock"},
            "REDIS_URL must be redis:// or rediss:// with REDIS_SENTINELS",
        ),
        ({"POSTAL_REDIS_WAIT_REPLICAS": "-1"}, "POSTAL_REDIS_WAIT_REPLICAS must be 0 or more"),
        (
            {"POSTAL_REDIS_WAIT_REPLICAS": "1", "POSTAL_REDIS_WAIT_TIMEOUT": "5"},
            "POSTAL_REDIS_WAIT_TIMEOUT must be shorter than POSTAL_REDIS_SOCKET_TIMEOUT",
        ),
    ],
)
def test_bad_sentinel_settings_are_refused(env: dict[str, str], message: str) -> None:
    """A malformed sentinel address, half a Sentinel configuration, or an impossible WAIT is a
    SettingsError naming the variable, not a silent fallback to REDIS_URL's host."""
    with pytest.raises(SettingsError, match=message.replace("[", r"\[").replace("(", r"\(")):
        Settings.from_mapping(env)


def test_unconfirmed_enqueue_is_a_503_and_a_retry_with_its_job_id_is_no_duplicate(
    redis: Redis, redis_server: RedisServer
) -> None:
    """Without the replicas POSTAL_REDIS_WAIT_REPLICAS asks for, a submission answers 503
    `not_replicated` (never 202); resubmitting the same job_id finds the one job, not two."""
    from web import create_app

    config = {"REDIS_URL": redis_server.url, "POSTAL_REDIS_WAIT_REPLICAS": "1"}
    client = create_app({**config, "POSTAL_REDIS_WAIT_TIMEOUT": "0.2"}).test_client()
    body = {"task": "message", "payload": {"message": "x"}, "options": {"job_id": "once"}}
    for _ in range(2):
        answer = client.post("/jobs", json=body)
        assert answer.status_code == 503, answer.json
        assert answer.json["error"]["code"] == "not_replicated"
    assert redis.llen("rq:queue:default") == 1
    assert not redis.keys("postal:enqueue-marker:*")
    unchecked = create_app({**config, "POSTAL_REDIS_WAIT_REPLICAS": "0"}).test_client()
    assert unchecked.post("/jobs", json={"task": "message", "payload": {"message": "y"}}).status_code == 202


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[SentinelCluster]:
    """One master, one replica, three sentinels: real redis-server processes on free ports."""
    deployment = SentinelCluster(find_redis_server(), tmp_path / "redis")
    try:
        deployment.start()
        yield deployment
    finally:
        deployment.stop()


class Submitter(threading.Thread):
    """A client submitting `message` jobs without pause; each has its own job_id, so a 503 is
    retried with the same id (the API's documented way to retry without a duplicate)."""

    def __init__(self, client: FlaskClient, pause: float) -> None:
        super().__init__(daemon=True)
        self.client = client
        self.pause = pause
        self.stopping = threading.Event()
        self.accepted: list[tuple[str, float]] = []
        self.statuses: collections.Counter[int] = collections.Counter()
        self.errors: collections.Counter[str] = collections.Counter()

    def run(self) -> None:
        number = 0
        while not self.stopping.is_set():
            job_id = f"ha-{number:05d}"
            body = {"task": "message", "payload": {"message": job_id}, "options": {"job_id": job_id}}
            response = self.client.post("/jobs", json=body)
            self.statuses[response.status_code] += 1
            if response.status_code in (200, 202):
                self.accepted.append((job_id, time.monotonic()))
                number += 1
            else:
                self.errors[(response.json or {}).get("error", {}).get("code", "?")] += 1
            time.sleep(self.pause)

    def first_accepted_after(self, moment: float) -> float | None:
        return next((t for _, t in self.accepted if t > moment), None)


def _unfinished(redis: Redis, ids: list[str]) -> dict[str, str]:
    """Job id -> status for every job not finished yet."""
    left = {}
    for job_id, job in zip(ids, Job.fetch_many(ids, connection=redis, serializer=SERIALIZER), strict=True):
        status = job.get_status(refresh=False) if job is not None else "missing"
        if status != "finished":
            left[job_id] = str(status)
    return left


def _replica_online(cluster: SentinelCluster) -> bool:
    port = cluster.master_port()
    if port is None:
        return False
    client = Redis(port=port, socket_timeout=2)
    try:
        return int(client.info("replication").get("connected_slaves", 0)) >= 1
    except Exception:  # noqa: BLE001 - master changing
        return False
    finally:
        client.close()


def _failover_run(cluster: SentinelCluster, tmp_path: Path, kills: int, steady_s: float) -> dict[str, Any]:
    """Submit continuously; `kills` times SIGKILL the master, wait for Sentinel to promote the
    replica, start the killed node again (as supervisord would; Sentinel makes it a replica);
    then check every accepted job finishes. REDIS_URL points at a closed port throughout: only
    Sentinel can lead anyone to Redis."""
    from web import create_app

    sentinel_env = {
        "REDIS_URL": f"redis://127.0.0.1:{free_port()}/0",
        "REDIS_SENTINELS": cluster.sentinels_setting,
        "REDIS_SENTINEL_MASTER": MASTER_NAME,
    }
    app = create_app({**sentinel_env, "POSTAL_RETRY_DELAY_SCALE": "0.1", "TESTING": True})
    client = app.test_client()
    env = child_env(sentinel_env["REDIS_URL"], **sentinel_env)
    workers = Workers(cluster.url_of_master(), env, tmp_path)
    submitter = Submitter(client, pause=0.03)
    figures: dict[str, Any] = {"failover_s": [], "api_back_s": []}
    try:
        procs = workers.start(3)
        submitter.start()
        time.sleep(steady_s)
        for _ in range(kills):
            old_port = cluster.master_port()
            assert old_port is not None
            killed = time.monotonic()
            cluster.node_on(old_port).kill()
            figures["failover_s"].append(cluster.wait_failover(old_port))
            cluster.node_on(old_port).start()
            wait_for(lambda: _replica_online(cluster), 30, "the killed node to rejoin as a replica", 0.1)
            accepted_again = functools.partial(submitter.first_accepted_after, killed)
            wait_for(accepted_again, 30, "the API to accept jobs again", 0.1)
            back = submitter.first_accepted_after(killed)
            assert back is not None
            figures["api_back_s"].append(back - killed)
            time.sleep(steady_s)
        submitter.stopping.set()
        submitter.join(30)

        ids = [job_id for job_id, _ in submitter.accepted]
        redis = app.extensions["postal"].redis
        started = time.monotonic()
        deadline = time.monotonic() + 90
        while (left := _unfinished(redis, ids)) and time.monotonic() < deadline:
            time.sleep(0.5)
        alive = sum(p.poll() is None for p in procs)
        assert not left, f"{len(left)} accepted job(s) unfinished, {alive}/3 workers alive: {left}"
        figures["drain_s"] = time.monotonic() - started
        figures["accepted"] = len(ids)
        figures["statuses"] = dict(submitter.statuses)
        figures["errors"] = dict(submitter.errors)
        figures["workers_alive"] = sum(p.poll() is None for p in procs)

        assert set(submitter.statuses) <= {200, 202, 503}, submitter.statuses
        assert set(submitter.errors) <= {"redis_unavailable", "not_replicated"}, submitter.errors
        assert figures["workers_alive"] == 3, workers.logs()[-5000:]
        health = client.get("/healthz")
        assert health.status_code == 200, health.json
        assert health.json["redis"]["url"].startswith("redis+sentinel://127.0.0.1:")
        assert client.get("/rq/0/data/queues.json").status_code == 200
        info = subprocess.run(
            [str(BIN / "rq"), "info", "-c", "tasks.rqconfig"],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert info.returncode == 0, info.stdout + info.stderr
        assert "3 workers" in info.stdout, info.stdout
        print(f"sentinel failover figures: {figures}")
        return figures
    finally:
        submitter.stopping.set()
        submitter.join(30)
        workers.stop()


def test_master_killed_while_jobs_flow_loses_no_accepted_job(
    cluster: SentinelCluster, tmp_path: Path
) -> None:
    """SIGKILL of the master mid-stream: Sentinel promotes the replica, the API answers 202 again
    without a restart, the workers carry on, and every job answered 200/202 finishes."""
    figures = _failover_run(cluster, tmp_path, kills=1, steady_s=2.0)
    assert figures["accepted"] > 20
    assert figures["failover_s"][0] < 20


@pytest.mark.slow
def test_repeated_master_kills_lose_no_accepted_job(cluster: SentinelCluster, tmp_path: Path) -> None:
    """Three SIGKILLed masters in a row (each time the node that was promoted before), with
    steady traffic in between: still every accepted job finishes."""
    figures = _failover_run(cluster, tmp_path, kills=3, steady_s=6.0)
    assert figures["accepted"] > 100

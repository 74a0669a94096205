"""Nothing is lost: drain, crash recovery, horse deaths, timeouts, requeue after a fix, rolling
restarts and chaos, all with real supervisord, real worker processes and real signals."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Queue, Retry

from tests.jobs import RUNS_KEY
from tests.jobwait import submit, wait_job
from tests.procs import BIN, RedisServer, Workers, wait_for
from tests.stack import Stack, http_json, running_stack

TERMINAL = {"finished", "failed", "stopped", "canceled"}


@pytest.fixture
def stack(redis_server: RedisServer, redis: Redis, tmp_path: Path) -> Iterator[Stack]:
    """The whole stack under supervisord with two workers."""
    with running_stack(redis_server.url, tmp_path, workers=2) as running:
        yield running


def job_view(stack: Stack, job_id: str) -> dict[str, Any]:
    status, view = http_json("GET", f"{stack.api}/jobs/{job_id}")
    assert status == 200, view
    return dict(view)


def post_job(stack: Stack, task: str, payload: dict[str, Any], **options: Any) -> str:
    body: dict[str, Any] = {"task": task, "payload": payload}
    if options:
        body["options"] = options
    status, answer = http_json("POST", f"{stack.api}/jobs", body)
    assert status == 202, answer
    return str(answer["id"])


def wait_status(stack: Stack, job_id: str, statuses: set[str], timeout: float = 30) -> dict[str, Any]:
    return dict(
        wait_for(
            lambda: (v := job_view(stack, job_id))["status"] in statuses and v,
            timeout,
            f"job {job_id} to reach {sorted(statuses)}",
            interval=0.1,
        )
    )  # type: ignore[arg-type]


def worker_pid_of(stack: Stack, worker_name: str) -> int:
    _, body = http_json("GET", f"{stack.api}/workers")
    [pid] = [w["pid"] for w in body["workers"] if w["name"] == worker_name]
    return int(pid)


def horse_of(worker_pid: int) -> psutil.Process:
    """The work horse among a worker's children: RQ's horse leads its own process group
    (setpgrp); the scheduler process the worker may also have does not."""
    [horse] = [p for p in psutil.Process(worker_pid).children() if os.getpgid(p.pid) == p.pid]
    return horse


def test_stop_drains_in_flight_jobs(stack: Stack) -> None:
    """`supervisorctl stop worker:*` lets running jobs finish and starts no queued one."""
    running = [post_job(stack, "message", {"message": f"drain {i}", "delay_s": 3}) for i in range(2)]
    for job_id in running:
        wait_status(stack, job_id, {"started"})
    waiting = [post_job(stack, "message", {"message": f"wait {i}"}) for i in range(3)]
    started = time.monotonic()
    output = stack.ctl("stop", "worker:*")
    drain_s = time.monotonic() - started
    print(f"drain: stop returned after {drain_s:.2f} s with 2 jobs in flight")
    assert "stopped" in output, output
    for job_id in running:
        view = job_view(stack, job_id)
        assert view["status"] == "finished", view
        assert view["result"]["message"].startswith("drain")
    assert [job_view(stack, j)["status"] for j in waiting] == ["queued"] * 3
    assert 1.0 < drain_s < 30
    stack.ctl("start", "worker:*")
    for job_id in waiting:
        assert wait_status(stack, job_id, TERMINAL)["status"] == "finished"


def test_supervisord_sigterm_drains(stack: Stack) -> None:
    """SIGTERM to supervisord (system shutdown) also lets the running job finish first."""
    job_id = post_job(stack, "message", {"message": "last one", "delay_s": 3})
    wait_status(stack, job_id, {"started"})
    children = psutil.Process(stack.proc.pid).children(recursive=True)
    stack.proc.terminate()
    stack.proc.wait(60)
    _, alive = psutil.wait_procs(children, timeout=30)
    assert not alive, alive
    client = Redis.from_url(stack.env["REDIS_URL"])
    try:
        status = client.hget(f"rq:job:{job_id}", "status")
    finally:
        client.close()
    assert status == b"finished"


def test_killed_worker_takes_its_horse_and_job_is_retried(stack: Stack) -> None:
    """SIGKILL to a worker: its horse dies with it (no orphan), and the job is retried and
    finishes within seconds, after supervisord restarts the worker."""
    job_id = post_job(stack, "message", {"message": "survivor", "delay_s": 10})
    view = wait_status(stack, job_id, {"started"})
    wait_for(lambda: job_view(stack, job_id)["worker"], 5, "the job's worker name")
    worker_pid = worker_pid_of(stack, job_view(stack, job_id)["worker"])
    horse = horse_of(worker_pid)
    killed_at = time.monotonic()
    os.kill(worker_pid, signal.SIGKILL)
    horse.wait(5)  # PR_SET_PDEATHSIG: the kernel kills the horse with its parent
    horse_gone_s = time.monotonic() - killed_at
    view = wait_status(stack, job_id, {"scheduled", "queued", "finished"}, timeout=60)
    detected_s = time.monotonic() - killed_at
    view = wait_status(stack, job_id, TERMINAL, timeout=30)
    print(f"horse gone after {horse_gone_s:.2f} s; abandoned job detected after {detected_s:.1f} s")
    assert horse_gone_s < 3  # the job sleeps 10 s: the horse did not just finish
    assert view["status"] == "finished", view
    assert [e["type"] for e in view["errors"]] == ["AbandonedJobError"]
    assert view["attempts"] == 2
    assert detected_s < 20
    client = Redis.from_url(stack.env["REDIS_URL"])
    try:
        assert client.zcard("rq:wip:default") == 0
    finally:
        client.close()


def test_killed_horse_is_recorded_and_retried(stack: Stack) -> None:
    """A horse killed under a live worker (what the OOM killer does) is one failed attempt,
    recorded as WorkHorseKilled, and the job is retried; the worker itself goes on."""
    job_id = post_job(stack, "message", {"message": "oom", "delay_s": 2})
    wait_status(stack, job_id, {"started"})
    wait_for(lambda: job_view(stack, job_id)["worker"], 5, "the job's worker name")
    worker_pid = worker_pid_of(stack, job_view(stack, job_id)["worker"])
    horse = horse_of(worker_pid)
    horse.kill()
    view = wait_status(stack, job_id, TERMINAL, timeout=30)
    assert view["status"] == "finished", view
    assert view["errors"][0]["type"] == "WorkHorseKilled"
    assert "signal 9" in view["errors"][0]["message"]
    assert psutil.pid_exists(worker_pid)


def test_job_timeout_fails_clearly_and_worker_goes_on(client: FlaskClient, worker: Workers) -> None:
    """A job past its timeout fails at once with a timeout error; the same worker runs the next."""
    job = submit(client, "message", {"message": "too slow", "delay_s": 5}, timeout_s=1)
    view = wait_job(client, job["id"], timeout=20)
    assert view["status"] == "failed"
    assert view["error"]["type"] == "JobTimeoutException"
    assert "timeout" in view["error"]["message"].lower()
    assert view["attempts"] == 1
    assert view["timeout_s"] == 1
    after = submit(client, "message", {"message": "next"})
    assert wait_job(client, after["id"])["status"] == "finished"


def test_timeout_option_cannot_exceed_task_timeout(client: FlaskClient) -> None:
    """options.timeout_s may tighten a task's timeout, never extend it past stopwaitsecs' guard."""
    r = client.post(
        "/jobs", json={"task": "message", "payload": {"message": "x"}, "options": {"timeout_s": 9999}}
    )
    assert r.status_code == 422
    assert r.json["error"]["details"][0]["loc"] == ["options", "timeout_s"]


@pytest.mark.slow  # ~50 s of waiting for a heartbeat to lapse; `make test-all` runs it
def test_abandoned_job_on_unreachable_host_is_recovered(workers: Workers, redis: Redis) -> None:
    """A worker on a host no peer can inspect dies: its job is retried once its heartbeat lapses
    (5 s interval + 30 s grace) and a peer's maintenance pass runs (<= 15 s): under 60 s."""
    queue = Queue("default", connection=redis, serializer="json")
    [far] = workers.start(1, env={"POSTAL_NODE_ID": "another-host"})
    job = queue.enqueue_call(
        "tests.jobs.counted", kwargs={"sleep_s": 3}, retry=Retry(2, [1]), meta={"task": "counted"}
    )
    wait_for(lambda: redis.hget(RUNS_KEY, job.id), 10, "the far worker to start the job")
    workers.start(1)  # the peer that will notice
    for proc in psutil.Process(far.pid).children(recursive=True):
        proc.kill()
    far.kill()
    far.wait()
    killed_at = time.monotonic()
    wait_for(
        lambda: job.get_status(refresh=True).value in ("scheduled", "queued", "finished", "failed"),
        75,
        "the abandoned job to be taken back",
        interval=0.25,
    )
    detected_s = time.monotonic() - killed_at
    wait_for(lambda: job.get_status(refresh=True).value == "finished", 20, "the retried job to finish")
    print(f"abandoned job on an uninspectable host detected after {detected_s:.1f} s")
    assert detected_s < 60
    assert int(redis.hget(RUNS_KEY, job.id) or 0) == 2


def _write_module(directory: Path, source: str) -> None:
    """Write tasks for the requeue test; drop bytecode so the new source is what runs."""
    (directory / "postal_bugjob.py").write_text(source)
    for cached in directory.glob("__pycache__/postal_bugjob*"):
        cached.unlink()


def test_requeue_after_fix_with_rolling_restart_and_rq_cli(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    """A bug fails jobs into the failed registry; fix the code, rolling-restart, and `rq requeue`
    exactly as README prints it: every job finishes, with its retry budget given back."""
    code = tmp_path / "code"
    code.mkdir()
    _write_module(code, "def work(n):\n    return n / 0  # the bug\n")
    with running_stack(redis_server.url, tmp_path, workers=2, python_path=(code,)) as stack:
        queue = Queue("default", connection=redis, serializer="json")
        jobs = [
            queue.enqueue_call(
                "postal_bugjob.work",
                args=(n,),
                retry=Retry(2, [1, 1]),
                meta={"task": "bugjob", "max_retries": 2},
            )
            for n in range(5)
        ]
        for job in jobs:
            assert wait_status(stack, job.id, TERMINAL)["status"] == "failed"
        assert job_view(stack, jobs[0].id)["error"]["type"] == "ZeroDivisionError"
        assert job_view(stack, jobs[0].id)["retries_left"] == 0
        _write_module(code, "def work(n):\n    return n * 2  # fixed: doubled, as intended\n")
        restart = stack.rolling_restart()
        assert restart.returncode == 0, restart.stdout + restart.stderr
        requeue = subprocess.run(
            [
                str(BIN / "rq"),
                "requeue",
                "-c",
                "tasks.rqconfig",
                "--serializer",
                "json",
                "--queue",
                "default",
                "--all",
            ],
            env=stack.env,
            cwd=stack.root,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert requeue.returncode == 0, requeue.stdout + requeue.stderr
        assert "Requeueing 5 jobs" in requeue.stdout
        for n, job in enumerate(jobs):
            view = wait_status(stack, job.id, TERMINAL)
            assert view["status"] == "finished", view
            assert view["result"] == n * 2
            assert view["retries_left"] == 2
            assert view["attempts"] == 2


def test_rolling_restart_under_load_loses_nothing(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    """Under a steady stream of jobs, deploy/rolling-restart restarts every worker and reloads the
    API: every request answered 202, every job finished, capacity never below N-1."""
    workers = 3
    with running_stack(redis_server.url, tmp_path, workers=workers) as stack:
        ids: list[str] = []
        statuses: list[int] = []
        capacity: list[int] = []
        unreadable: list[int] = []
        done = threading.Event()

        def submitter() -> None:
            n = 0
            while not done.is_set():
                try:
                    status, body = http_json(
                        "POST",
                        f"{stack.api}/jobs",
                        {"task": "message", "payload": {"message": f"m{n}", "delay_s": 0.2}},
                    )
                except OSError as exc:
                    status, body = 0, {"error": str(exc)}
                statuses.append(status)
                if status == 202:
                    ids.append(body["id"])
                n += 1
                time.sleep(0.03)

        def sampler() -> None:
            while not done.is_set():
                processes = stack.worker_processes()
                if len(processes) == workers:  # else supervisorctl itself failed: no reading
                    capacity.append(sum(p.state == "RUNNING" for p in processes))
                else:
                    unreadable.append(len(processes))
                time.sleep(0.1)

        # steady state first: every worker RUNNING for supervisord (not just registered in Redis)
        wait_for(
            lambda: [p.state for p in stack.worker_processes()] == ["RUNNING"] * workers,
            30,
            "every worker to be RUNNING",
            interval=0.2,
        )
        threads = [threading.Thread(target=submitter), threading.Thread(target=sampler)]
        for thread in threads:
            thread.start()
        try:
            time.sleep(1)
            restart = stack.rolling_restart()
            time.sleep(1)
        finally:
            done.set()
            for thread in threads:
                thread.join()
        assert restart.returncode == 0, restart.stdout + restart.stderr
        assert restart.stdout.count(" -> ") == workers, restart.stdout
        views = [wait_status(stack, job_id, TERMINAL, timeout=60) for job_id in ids]
        failed = [v for v in views if v["status"] != "finished"]
        print(
            f"rolling restart: {len(ids)} jobs, {len(failed)} not finished, "
            f"min capacity {min(capacity)}/{workers}"
        )
        assert set(statuses) == {202}, sorted(set(statuses))
        assert not failed, failed[:3]
        assert min(capacity) >= workers - 1
        assert len(unreadable) < len(capacity) / 10, unreadable
        assert len(ids) > 50


def _has_horse(pid: int) -> bool:
    try:
        return any(os.getpgid(p.pid) == p.pid for p in psutil.Process(pid).children())
    except (psutil.Error, ProcessLookupError):
        return False


def run_chaos(stack: Stack, redis: Redis, jobs: int, kills: int, deadline_s: float) -> dict[str, int]:
    """Enqueue `jobs` counted jobs, SIGKILL random workers (and so their horses) `kills` times while
    they run, then wait for every job to end. Returns the tallies the README's contract talks about."""
    rng = random.Random(1234)
    queue = Queue("default", connection=redis, serializer="json")
    with redis.pipeline() as pipe:
        enqueued = queue.enqueue_many(
            [
                Queue.prepare_data(
                    "tests.jobs.counted",
                    kwargs={"sleep_s": rng.uniform(0.05, 0.25)},
                    retry=Retry(5, [1]),
                    meta={"task": "counted", "max_retries": 5},
                )
                for _ in range(jobs)
            ],
            pipeline=pipe,
        )
        pipe.execute()
    ids = [job.id for job in enqueued]
    done_kills = 0
    started = time.monotonic()
    while done_kills < kills and time.monotonic() - started < deadline_s / 2:
        time.sleep(rng.uniform(0.3, 1.0))
        running = [p for p in stack.worker_processes() if p.state == "RUNNING" and p.pid]
        busy = [p for p in running if p.pid and _has_horse(p.pid)]
        victims = busy or running
        if not victims:
            continue
        victim = rng.choice(victims)
        try:
            os.kill(victim.pid, signal.SIGKILL)  # type: ignore[arg-type]
        except ProcessLookupError:
            continue
        done_kills += 1

    def unsettled() -> list[dict[str, Any]]:
        with redis.pipeline(transaction=False) as pipe:
            for job_id in ids:
                pipe.hget(f"rq:job:{job_id}", "status")
            statuses = pipe.execute()
        left_ids = [i for i, s in zip(ids, statuses, strict=True) if s not in (b"finished", b"failed")]
        return [job_view(stack, i) for i in left_ids]

    until = time.monotonic() + max(10.0, deadline_s - (time.monotonic() - started))
    while (left := unsettled()) and time.monotonic() < until:
        time.sleep(0.5)
    if left:
        intermediate = redis.lrange("rq:intermediate:default", 0, -1)
        in_hand = {k.decode(): redis.lrange(k, 0, -1) for k in redis.keys("postal:in-hand:*")}
        print(
            "chaos: unsettled jobs:",
            json.dumps(left[:5], indent=1),
            "intermediate:",
            intermediate,
            "in hand:",
            in_hand,
            "runs:",
            [redis.hget(RUNS_KEY, v["id"]) for v in left],
        )
        for key in redis.keys("*"):
            kind = redis.type(key)
            for v in left:
                found = (kind == b"list" and redis.lpos(key, v["id"]) is not None) or (
                    kind == b"zset" and any(v["id"] in m.decode() for m in redis.zrange(key, 0, -1))
                )
                if found:
                    print("chaos: lost job", v["id"], "is in", key, kind)
        for log in sorted((stack.root / "var" / "log").glob("*.log")):
            for line in log.read_text(errors="replace").splitlines():
                if any(v["id"] in line for v in left):
                    print(log.name, line)
    views = [job_view(stack, i) for i in ids]
    runs = {k.decode(): int(v) for k, v in redis.hgetall(RUNS_KEY).items()}
    tally = {
        "jobs": jobs,
        "kills": done_kills,
        "finished": sum(v["status"] == "finished" for v in views),
        "failed": sum(v["status"] == "failed" for v in views),
        "failed_without_reason": sum(v["status"] == "failed" and not v["error"] for v in views),
        "lost": jobs - sum(v["status"] in ("finished", "failed") for v in views),
        "ran_more_than_once": sum(runs.get(i, 0) > 1 for i in ids),
        "extra_runs": sum(max(0, runs.get(i, 0) - 1) for i in ids),
        "started_left": sum(redis.zcard(f"rq:wip:{q}") for q in ("high", "default", "low")),
        "queued_left": redis.llen("rq:queue:default"),
        "seconds": round(time.monotonic() - started),
    }
    print("chaos:", json.dumps(tally))
    return tally


@pytest.mark.parametrize(
    ("jobs", "kills", "deadline_s"),
    [
        pytest.param(300, 8, 90, id="small"),
        pytest.param(2000, 60, 600, id="large", marks=[pytest.mark.slow, pytest.mark.timeout(900)]),
    ],
)
def test_chaos_random_sigkills_lose_nothing(
    redis_server: RedisServer, redis: Redis, tmp_path: Path, jobs: int, kills: int, deadline_s: float
) -> None:
    """Workers SIGKILLed at random while they run jobs: every job ends finished, or failed with a
    reason; none is lost or left started/queued. Duplicates are allowed (at-least-once)."""
    with running_stack(redis_server.url, tmp_path, workers=3) as stack:
        tally = run_chaos(stack, redis, jobs, kills, deadline_s)
    assert tally["lost"] == 0
    assert tally["failed_without_reason"] == 0
    assert tally["started_left"] == 0
    assert tally["queued_left"] == 0
    assert tally["kills"] >= kills // 2

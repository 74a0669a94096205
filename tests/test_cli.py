"""The `postal` command line, run as the installed console script against a real Redis, real
workers, a real local HTTP server and a real supervisord."""

from __future__ import annotations

import json
import os
import pty
import re
import select
import shutil
import socket
import subprocess
import time
from pathlib import Path

from redis import Redis
from rq import Queue, Retry
from rq.job import Job

from postal.submit import submit
from tasks.connection import SERIALIZER, Postal
from tasks.settings import Settings
from tests.pageserver import PageServer
from tests.procs import BIN, ROOT, RedisServer, Workers, child_env, free_port, wait_for
from tests.stack import running_stack

POSTAL = str(BIN / "postal")


def postal(env: dict[str, str], *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    """Run `postal ARGS` the way an operator would, from the checkout root."""
    return subprocess.run([POSTAL, *args], env=env, cwd=ROOT, capture_output=True, text=True, timeout=timeout)


def postal_on_terminal(env: dict[str, str], *args: str, timeout: float = 60) -> tuple[int, str, str]:
    """Run `postal ARGS` with stderr on a pseudo-terminal (where the live bar is drawn) and
    stdout on a pipe; (exit status, stdout, everything drawn on the terminal)."""
    master, slave = pty.openpty()
    proc = subprocess.Popen(
        [POSTAL, *args], env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=slave, text=True
    )
    os.close(slave)
    drawn = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([master], [], [], 0.1)
            if ready:
                try:
                    chunk = os.read(master, 4096)
                except OSError:  # EIO: every writer closed the terminal
                    chunk = b""
                if not chunk:
                    break
                drawn += chunk
        assert proc.stdout is not None
        out = proc.stdout.read()
        return proc.wait(timeout=5), out, drawn.decode(errors="replace")
    finally:
        os.close(master)
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def handle(redis_server: RedisServer, redis: Redis) -> Postal:
    return Postal.build(Settings.from_mapping({"REDIS_URL": redis_server.url}), redis)


def failed_count(redis: Redis) -> int:
    return sum(Queue(name, connection=redis).failed_job_registry.count for name in ("high", "default", "low"))


def test_submit_wait_draws_progress_and_prints_result(
    redis_server: RedisServer, worker: Workers, page_server: PageServer, redis: Redis
) -> None:
    """`submit --wait` draws a live bar through the job's reported steps, then prints the id
    and the result as JSON on stdout and exits 0."""
    url = page_server.url("/slow-body?chunks=4&delay=0.4")
    code, out, drawn = postal_on_terminal(
        child_env(redis_server.url), "submit", "fetch_page", "--payload", json.dumps({"url": url}), "--wait"
    )
    assert code == 0, drawn
    job_id, _, result_text = out.partition("\n")
    result = json.loads(result_text)
    assert result["title"] == "slow body" and result["final_url"] == url
    frames = [frame for frame in drawn.split("\r") if "%" in frame]
    assert any("fetch" in f and "10%" in f for f in frames), frames  # seen while the body drips
    assert "finished" in frames[-1] and "100%" in frames[-1] and "#" * 30 in frames[-1], frames
    job = Job.fetch(job_id, connection=redis, serializer=SERIALIZER)
    assert job.get_status().value == "finished"
    assert job.meta["progress"]["step"] == "done"


def test_submit_wait_reports_failure_and_off_terminal_prints_steps(
    redis_server: RedisServer, worker: Workers, page_server: PageServer
) -> None:
    """A job that fails ends `submit --wait` with exit 1 and its error on stderr; off a terminal
    progress is one line per change instead of a redrawn bar."""
    done = postal(
        child_env(redis_server.url),
        "submit",
        "fetch_page",
        "--payload",
        json.dumps({"url": page_server.url("/status/404")}),
        "--wait",
    )
    assert done.returncode == 1, done.stderr
    assert len(done.stdout.split()) == 1  # the job id, and no result
    *steps, error = done.stderr.splitlines()
    assert steps[0] == "   0% queued" and steps[-1] == "  10% failed", steps  # 404 fails in "fetch"
    assert all(re.fullmatch(r" *\d{1,3}% [a-z_]+", line) for line in steps), steps
    assert "\r" not in done.stderr
    assert error.startswith(f"Error: job {done.stdout.strip()} failed: RemoteClientError:"), error
    assert "404" in error


def test_submit_refuses_unknown_task_and_bad_payload(redis_server: RedisServer, redis: Redis) -> None:
    """An unknown task, a payload the API would refuse, or non-JSON exits 2 with the reason
    (known tasks, the bad field) and enqueues nothing."""
    env = child_env(redis_server.url)
    unknown = postal(env, "submit", "fetch_pages", "--payload", "{}")
    assert unknown.returncode == 2
    assert unknown.stderr.strip() == (
        "Error: unknown task 'fetch_pages'; known tasks: extract, fetch_page, message"
    )
    bad = postal(env, "submit", "fetch_page", "--payload", '{"url": "ftp://example.com/"}')
    assert bad.returncode == 2
    assert "payload is not valid for task 'fetch_page'" in bad.stderr
    assert "payload.url: Value error, URL scheme must be http or https" in bad.stderr
    extra = postal(env, "submit", "message", "--payload", '{"message": "hi", "colour": "red"}')
    assert extra.returncode == 2 and "payload.colour: Extra inputs are not permitted" in extra.stderr
    not_json = postal(env, "submit", "message", "--payload", "{message: hi}")
    assert not_json.returncode == 2 and "--payload is not valid JSON" in not_json.stderr
    too_long = postal(env, "submit", "message", "--payload", '{"message": "hi"}', "--timeout", "9999")
    assert too_long.returncode == 2 and "may not exceed task 'message'" in too_long.stderr
    for done in (unknown, bad, extra, not_json, too_long):
        assert done.stdout == "" and "Traceback" not in done.stderr
    assert redis.keys("rq:*") == []


def test_submit_wait_timeout_leaves_the_job_alone(redis_server: RedisServer, redis: Redis) -> None:
    """`--wait-timeout` gives up waiting with exit 4 and says so; the job stays queued."""
    done = postal(
        child_env(redis_server.url),
        "submit",
        "message",
        "--payload",
        '{"message": "nobody serves me"}',
        "--wait",
        "--wait-timeout",
        "1",
    )
    assert done.returncode == 4, done.stderr
    job_id = done.stdout.strip()
    assert done.stderr.splitlines()[-1] == f"Error: job {job_id} is still queued after 1.0 s; it goes on"
    assert Queue("default", connection=redis).get_job_ids() == [job_id]


def test_failed_groups_by_task_and_exception(
    redis_server: RedisServer, redis: Redis, worker: Workers, page_server: PageServer
) -> None:
    """`postal failed` counts failed jobs per (task, exception type) and names each group's
    newest job and its message."""
    state = handle(redis_server, redis)
    not_found = {"url": page_server.url("/status/404")}
    submitted = [
        submit(state, "fetch_page", not_found, None, None),
        submit(state, "fetch_page", {"url": page_server.url("/json")}, None, None),
        submit(state, "extract", {**not_found, "patterns": ["x"]}, None, None),
        submit(state, "fetch_page", not_found, None, None),
    ]
    wait_for(lambda: failed_count(redis) == len(submitted), 30, "every job to fail")
    done = postal(child_env(redis_server.url), "failed", "--json")
    assert done.returncode == 0, done.stderr
    groups = {(g["task"], g["exception"]): g for g in json.loads(done.stdout)}
    assert {key: g["count"] for key, g in groups.items()} == {
        ("fetch_page", "RemoteClientError"): 2,
        ("fetch_page", "NotHTML"): 1,
        ("extract", "RemoteClientError"): 1,
    }
    newest = groups[("fetch_page", "RemoteClientError")]["newest"]
    assert newest["id"] == submitted[3].id  # one worker: the last submitted failed last
    assert "404" in newest["message"]
    assert groups[("fetch_page", "NotHTML")]["newest"]["id"] == submitted[1].id
    table = postal(child_env(redis_server.url), "failed")
    assert table.returncode == 0
    lines = table.stdout.splitlines()
    assert lines[0].split()[:3] == ["TASK", "EXCEPTION", "COUNT"]
    assert lines[1].split()[:4] == ["fetch_page", "RemoteClientError", "2", "default"]
    assert submitted[3].id in lines[1]
    assert lines[-1] == "4 failed job(s) in 3 group(s)"
    only_high = postal(child_env(redis_server.url), "failed", "--queue", "high", "--json")
    assert json.loads(only_high.stdout) == []


def _write_module(directory: Path, source: str) -> None:
    """The job code of the requeue test; drop bytecode so the new source is what runs."""
    (directory / "postal_clijob.py").write_text(source)
    for cached in directory.glob("__pycache__/postal_clijob*"):
        cached.unlink()


BUGGY = (
    "def work(n, kind):\n"
    "    if kind == 'divide':\n"
    "        return n / 0  # the bug\n"
    "    return {}[n]  # another bug\n"
)
FIXED = "def work(n, kind):\n    return n * 2  # fixed\n"


def test_requeue_by_task_and_exception_after_fix(
    redis_server: RedisServer, redis: Redis, workers: Workers, tmp_path: Path
) -> None:
    """`postal requeue --task T --exception E` requeues exactly those failed jobs, with their
    retry budget back, and they finish once the code is fixed; the others stay failed."""
    code = tmp_path / "code"
    code.mkdir()
    _write_module(code, BUGGY)
    code_env = {"PYTHONPATH": str(code)}
    workers.start(1, env=code_env)
    queue = Queue("default", connection=redis, serializer=SERIALIZER)

    def enqueue(task: str, n: int, kind: str) -> Job:
        return queue.enqueue_call(
            "postal_clijob.work",
            args=(n, kind),
            retry=Retry(1, [1]),
            meta={"task": task, "max_retries": 1},
        )

    chosen = [enqueue("bugjob", n, "divide") for n in range(3)]
    others = [enqueue("bugjob", 10, "lookup"), enqueue("otherjob", 11, "divide")]
    wait_for(lambda: failed_count(redis) == 5, 30, "every job to fail")
    env = child_env(redis_server.url)

    refused = postal(env, "requeue")
    assert refused.returncode == 2 and "--all" in refused.stderr
    dry = postal(env, "requeue", "--task", "bugjob", "--exception", "ZeroDivisionError", "--dry-run")
    assert dry.returncode == 0 and "would requeue 3 job(s)" in dry.stdout
    assert failed_count(redis) == 5

    workers.stop()  # deploy the fix: new code, new workers
    _write_module(code, FIXED)
    workers.start(1, env=code_env)
    done = postal(env, "requeue", "--task", "bugjob", "--exception", "ZeroDivisionError")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "requeued 3 job(s)"
    for n, job in enumerate(chosen):
        wait_for(lambda j=job: j.get_status(refresh=True).value == "finished", 30, f"job {job.id} to finish")
        job.refresh()
        assert job.return_value() == n * 2
        assert job.retries_left == 1  # the budget given back, unspent
    failed_ids = set(queue.failed_job_registry.get_job_ids(cleanup=False))
    assert failed_ids == {job.id for job in others}


def test_status_with_supervisord(redis_server: RedisServer, redis: Redis, tmp_path: Path) -> None:
    """`postal status -c supervisord.conf` lists supervisord's programs, the queues and the
    workers; `supervisorctl -c supervisord.conf status` (README, `make status`) agrees."""
    with running_stack(redis_server.url, tmp_path, workers=1) as stack:
        config = str(stack.root / "supervisord.conf")

        def both_running() -> subprocess.CompletedProcess[str] | None:
            done = postal(stack.env, "status", "-c", config, "--json")
            items = json.loads(done.stdout)["supervisord"].get("items", [])
            states = {p["name"]: p["state"] for p in items}
            return done if states.get("api") == states.get("worker:worker-00") == "RUNNING" else None

        done = wait_for(both_running, 30, "api and worker RUNNING", interval=0.5)
        assert isinstance(done, subprocess.CompletedProcess)
        assert done.returncode == 0, done.stderr
        view = json.loads(done.stdout)
        processes = {p["name"]: p for p in view["supervisord"]["items"]}
        assert set(processes) == {"redis", "api", "worker:worker-00"}
        assert processes["redis"]["state"] == "STOPPED"  # REDIS_URL given: no local Redis
        assert [q["name"] for q in view["queues"]["items"]] == ["high", "default", "low"]
        [registered] = view["workers"]["items"]
        assert registered["state"] == "idle" and registered["host"]

        text = postal(stack.env, "status", "-c", config)
        assert text.returncode == 0, text.stderr
        assert text.stdout.startswith("supervisord:\nPROCESS")
        assert "worker:worker-00  RUNNING" in text.stdout
        assert registered["name"] in text.stdout
        ctl = subprocess.run(
            [str(BIN / "supervisorctl"), "-c", "supervisord.conf", "status"],
            cwd=stack.root,
            env=stack.env,
            capture_output=True,
            text=True,
            timeout=60,
        )
        for name, process in processes.items():
            assert any(line.split()[:2] == [name, process["state"]] for line in ctl.stdout.splitlines()), (
                ctl.stdout
            )


def test_status_without_supervisord(redis_server: RedisServer, redis: Redis, tmp_path: Path) -> None:
    """Without supervisord, `postal status` says so in its section and still shows the queues
    and workers (exit 0)."""
    shutil.copy(ROOT / "supervisord.conf", tmp_path / "supervisord.conf")
    done = postal(child_env(redis_server.url), "status", "-c", str(tmp_path / "supervisord.conf"))
    assert done.returncode == 0, done.stderr
    sections = done.stdout.split("\n\n")
    assert sections[0] == (
        f"supervisord: supervisord is not running (no socket at {tmp_path / 'var' / 'supervisor.sock'})"
    )
    assert sections[1].splitlines()[0].split() == ["queues:"]
    assert sections[1].splitlines()[2].split() == ["high", "0", "0", "0", "0"]
    assert sections[2].splitlines() == ["workers:", "WORKER  STATE  CURRENT JOB  HOST  QUEUES", "(none)"]
    (tmp_path / "var").mkdir()
    stale = tmp_path / "var" / "supervisor.sock"  # left behind by a supervisord that was killed
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
        sock.bind(str(stale))
    done = postal(child_env(redis_server.url), "status", "-c", str(tmp_path / "supervisord.conf"))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"supervisord: supervisord is not running (nothing listens on {stale})\n")


def test_redis_unreachable_is_one_line_exit_3(tmp_path: Path) -> None:
    """With Redis down every command fails in one line on stderr with exit 3, no traceback."""
    env = child_env(f"redis://127.0.0.1:{free_port()}/0")
    shutil.copy(ROOT / "supervisord.conf", tmp_path / "supervisord.conf")
    for args in (
        ("submit", "message", "--payload", '{"message": "hi"}'),
        ("failed",),
        ("requeue", "--all"),
        ("status", "-c", str(tmp_path / "supervisord.conf")),
    ):
        done = postal(env, *args)
        assert done.returncode == 3, (args, done.stderr)
        [line] = done.stderr.splitlines()
        assert line.startswith("Error: Redis at redis://127.0.0.1:") and "is unreachable" in line, line

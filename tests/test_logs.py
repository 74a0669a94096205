"""Logs under the real supervisord: job event lines and access lines reach `supervisorctl tail`
(and `tail -f` streams new ones); every log file rotates."""

from __future__ import annotations

import configparser
import json
import queue
import subprocess
import threading
import time
import urllib.request
from pathlib import Path

from tests.events import event_lines, of_job, wait_ended
from tests.procs import BIN, ROOT, RedisServer, wait_for
from tests.stack import Stack, http_json, running_stack

TAIL_BYTES = "-16000"


def post_message(stack: Stack, text: str, request_id: str) -> str:
    """POST /jobs with an X-Request-ID; the new job's id."""
    request = urllib.request.Request(
        f"{stack.api}/jobs",
        data=json.dumps({"task": "message", "payload": {"message": text}}).encode(),
        method="POST",
        headers={"Content-Type": "application/json", "X-Request-ID": request_id},
    )
    with urllib.request.urlopen(request, timeout=10) as response:
        assert response.headers["X-Request-ID"] == request_id
        job_id: str = json.load(response)["id"]
        return job_id


def wait_finished(stack: Stack, job_id: str) -> None:
    wait_for(
        lambda: http_json("GET", f"{stack.api}/jobs/{job_id}")[1]["status"] == "finished",
        30,
        f"job {job_id} to finish",
        interval=0.2,
    )


def _pump(stream: object, lines: queue.Queue[str]) -> None:
    for raw in iter(stream.readline, b""):  # type: ignore[attr-defined]
        lines.put(raw.decode(errors="replace"))


def test_job_lines_and_access_lines_reach_supervisorctl_tail(
    redis_server: RedisServer, redis: object, tmp_path: Path
) -> None:
    """A job's started/finished lines are in `supervisorctl tail worker:worker-00`, the access
    line and enqueued line (with the caller's request id) in `tail api`, and `tail -f` streams
    the lines of a job submitted while it runs."""
    with running_stack(redis_server.url, tmp_path, workers=1) as stack:
        first = post_message(stack, "one", "trace-0001")
        wait_finished(stack, first)

        worker_tail = wait_ended(lambda: stack.ctl("tail", TAIL_BYTES, "worker:worker-00"), [first])
        assert of_job(worker_tail, first) == [("started", 1), ("finished", 1)], worker_tail
        api_tail = str(
            wait_for(
                lambda: "request_id=trace-0001" in (t := stack.ctl("tail", TAIL_BYTES, "api")) and t,
                10,
                "the access line",
            )
        )
        access = [line for line in api_tail.splitlines() if "request_id=trace-0001" in line]
        assert any('"POST /jobs HTTP/1.1" 202' in line for line in access), access
        [enqueued] = [e for e in event_lines(api_tail) if e["job_id"] == first]
        assert enqueued["event"] == "enqueued" and enqueued["request_id"] == "trace-0001"

        follow = subprocess.Popen(
            [str(BIN / "supervisorctl"), "tail", "-f", "worker:worker-00"],
            cwd=stack.root,
            env=stack.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
        lines: queue.Queue[str] = queue.Queue()
        pump = threading.Thread(target=_pump, args=(follow.stdout, lines), daemon=True)
        pump.start()
        try:
            time.sleep(1)  # let tail -f reach the end of the log before the new job's lines
            second = post_message(stack, "two", "trace-0002")
            seen: list[str] = []
            deadline = time.monotonic() + 30
            while not any(second in line and '"event":"finished"' in line for line in seen):
                assert time.monotonic() < deadline, f"tail -f did not stream job {second}: {seen}"
                try:
                    seen.append(lines.get(timeout=1))
                except queue.Empty:
                    continue
            assert of_job(event_lines("".join(seen)), second) == [("started", 1), ("finished", 1)]
        finally:
            follow.terminate()
            try:
                follow.wait(10)
            except subprocess.TimeoutExpired:
                follow.kill()
                follow.wait()
            pump.join(10)
            if follow.stdout is not None:
                follow.stdout.close()


def test_every_log_rotates() -> None:
    """supervisord's own log and every program's log have a size limit and backups, and each
    program's stderr (where job event lines go) is in its rotated stdout log."""
    config = configparser.RawConfigParser()
    config.read(ROOT / "supervisord.conf")
    assert (
        config.get("supervisord", "logfile_maxbytes") and config.getint("supervisord", "logfile_backups") > 0
    )
    programs = [s for s in config.sections() if s.startswith("program:")]
    assert {"program:redis", "program:api", "program:worker"} <= set(programs)
    for section in programs:
        assert config.get(section, "stdout_logfile_maxbytes").endswith("MB"), section
        assert config.getint(section, "stdout_logfile_backups") > 0, section
        assert config.getboolean(section, "redirect_stderr"), section

"""deploy/supervisord-worker.conf and deploy/postal-supervisord.service: consistent with
supervisord.conf, valid for systemd, and the worker-only config really runs jobs."""

from __future__ import annotations

import configparser
import re
import shutil
import subprocess
from pathlib import Path

import pytest
from flask.testing import FlaskClient
from redis import Redis
from rq import Worker

from tests.jobwait import submit, wait_job
from tests.procs import BIN, ROOT, RedisServer, wait_for
from tests.workerhost import CONFIG, running_worker_host

UNIT = ROOT / "deploy" / "postal-supervisord.service"


def _config(path: Path) -> configparser.RawConfigParser:
    config = configparser.RawConfigParser()
    config.read(path)
    return config


def _unit_settings(section: str) -> dict[str, list[str]]:
    """Every `Key=value` of one section of the unit, repeated keys kept in order (systemd allows
    them, configparser does not)."""
    settings: dict[str, list[str]] = {}
    current = None
    for line in UNIT.read_text().splitlines():
        line = line.strip()
        if not line or line.startswith(("#", ";")):
            continue
        if line.startswith("["):
            current = line.strip("[]")
        elif current == section:
            key, _, value = line.partition("=")
            settings.setdefault(key, []).append(value)
    return settings


def test_worker_program_matches_supervisord_conf() -> None:
    """The worker-only config runs the same worker program, with the same command, stop signal,
    stopwaitsecs, log rotation and numprocs, as supervisord.conf (paths differ only by /..)."""
    main = dict(_config(ROOT / "supervisord.conf").items("program:worker"))
    worker_only = {
        key: value.replace("%(here)s/..", "%(here)s")
        for key, value in _config(CONFIG).items("program:worker")
    }
    assert worker_only == main


def test_worker_config_runs_only_workers() -> None:
    """A worker host runs no Redis and no API: the worker-only config has one program, `worker`."""
    programs = [
        s for s in _config(CONFIG).sections() if s.startswith(("program:", "group:", "eventlistener:"))
    ]
    assert programs == ["program:worker"]
    assert not _config(CONFIG).has_section("inet_http_server")


def test_worker_config_paths_are_under_the_checkout() -> None:
    """Every path is built from %(here)s/.., so the worker host's state lands in the checkout's
    var/, where supervisorctl and deploy/rolling-restart look for it."""
    config = _config(CONFIG)
    main = _config(ROOT / "supervisord.conf")
    for section in config.sections():
        for key, value in config.items(section):
            for token in value.replace("=", " ").split():
                if token.startswith("/") or token.startswith("var/"):
                    pytest.fail(f"[{section}] {key} uses a path not built from %(here)s: {token}")
                if "%(here)s" in token:
                    assert token.startswith("%(here)s/..") or token.startswith("unix://%(here)s/.."), token
    # same socket as supervisord.conf: `supervisorctl status` from the checkout reaches either
    assert config.get("supervisorctl", "serverurl").replace("%(here)s/..", "%(here)s") == main.get(
        "supervisorctl", "serverurl"
    )
    assert config.get("unix_http_server", "chmod") == "0700"


def test_unit_stops_gracefully() -> None:
    """systemd gives supervisord longer than the workers' stopwaitsecs to drain, signals only
    supervisord (KillMode=mixed), runs it in the foreground and restarts it on failure."""
    service = _unit_settings("Service")
    stopwait = max(
        _config(path).getint("program:worker", "stopwaitsecs") for path in (CONFIG, ROOT / "supervisord.conf")
    )
    assert int(service["TimeoutStopSec"][-1]) > stopwait
    assert service["KillMode"] == ["mixed"]
    assert service["Type"] == ["simple"]
    assert service["Restart"] == ["on-failure"]
    assert re.fullmatch(r"\S+/supervisord -n -c \$\{POSTAL_SUPERVISORD_CONF\}", service["ExecStart"][-1])
    assert service["EnvironmentFile"]


def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    """`systemd-analyze verify` accepts the unit without a warning (its /opt/postal paths made to
    point at this checkout, since verify checks that the executables exist)."""
    analyze = shutil.which("systemd-analyze")
    if analyze is None:
        pytest.skip("systemd-analyze is not installed (Debian package systemd)")
    env_file = tmp_path / "postal.env"
    env_file.write_text(f"POSTAL_SUPERVISORD_CONF={CONFIG}\nREDIS_URL=redis://127.0.0.1:6379/0\nWORKERS=2\n")
    text = UNIT.read_text().replace("/opt/postal", str(ROOT)).replace("/etc/postal/postal.env", str(env_file))
    unit = tmp_path / UNIT.name
    unit.write_text(text)
    done = subprocess.run(
        [analyze, "verify", str(unit)], capture_output=True, text=True, timeout=60, check=False
    )
    assert done.returncode == 0 and not done.stderr.strip() and not done.stdout.strip(), done


def test_worker_only_config_runs_jobs(
    redis_server: RedisServer, redis: Redis, client: FlaskClient, tmp_path: Path
) -> None:
    """A real supervisord with the worker-only config starts WORKERS workers that run API jobs."""
    with running_worker_host(redis_server.url, tmp_path, workers=2) as host:
        wait_for(lambda: len(Worker.all(connection=redis)) == 2, 60, "2 workers to register", interval=0.2)
        ids = [submit(client, "message", {"message": f"w{i}"})["id"] for i in range(4)]
        views = [wait_job(client, job_id) for job_id in ids]
        assert {v["status"] for v in views} == {"finished"}, views
        names = {w.name for w in Worker.all(connection=redis)}
        assert {v["worker"] for v in views} <= names
        logs = sorted(p.name for p in (host.root / "var" / "log").glob("*.log"))
        assert {"supervisord.log", "worker-00.log", "worker-01.log"} <= set(logs), logs


@pytest.mark.slow
def test_worker_host_is_managed_like_the_api_host(
    redis_server: RedisServer, redis: Redis, tmp_path: Path
) -> None:
    """On a worker host, `supervisorctl status` and `rolling-restart --no-api` run from the
    checkout with no -c reach the worker-only supervisord (same var/ socket)."""
    with running_worker_host(redis_server.url, tmp_path, workers=1) as host:
        wait_for(lambda: len(Worker.all(connection=redis)) == 1, 30, "the worker to register", interval=0.2)

        def status() -> str:
            ctl = [str(BIN / "supervisorctl"), "status"]
            return subprocess.run(ctl, cwd=host.root, capture_output=True, text=True, timeout=60).stdout

        # registered in Redis can precede RUNNING in supervisord (startsecs): wait for the latter
        wait_for(
            lambda: "worker:worker-00 " in (s := status()) and "RUNNING" in s, 30, "RUNNING", interval=0.2
        )
        restart = subprocess.run(
            [str(BIN / "python"), "-m", "postal.rolling_restart", "--root", str(host.root), "--no-api"],
            env=host.env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert restart.returncode == 0 and "[1/1] worker:worker-00" in restart.stdout, restart

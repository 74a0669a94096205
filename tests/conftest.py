"""Fixtures shared by the whole suite: real servers only (Redis, HTTP, rq workers), each started
on a free port in a temp dir and stopped by the fixture that started it."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from flask import Flask
from flask.testing import FlaskClient
from redis import Redis

from postal.redis_server import find_redis_server
from tests.pageserver import PageServer
from tests.procs import RedisServer, Workers, child_env

FIXTURES = Path(__file__).parent / "fixtures"


@pytest.fixture(scope="session")
def page_server() -> Iterator[PageServer]:
    """A real local HTTP server serving tests/fixtures/pages and the special test routes."""
    with PageServer(FIXTURES / "pages") as server:
        yield server


@pytest.fixture(scope="session")
def redis_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[RedisServer]:
    """One real redis-server for the session, on a free port, in its own temp dir."""
    server = RedisServer(find_redis_server(), tmp_path_factory.mktemp("redis"))
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def redis(redis_server: RedisServer) -> Iterator[Redis]:
    """A client on an empty database: flushed before the test and after it."""
    client = Redis.from_url(redis_server.url)
    client.flushall()
    try:
        yield client
    finally:
        client.flushall()
        client.close()


@pytest.fixture
def app(redis: Redis, redis_server: RedisServer) -> Flask:
    """The API, configured like production but pointed at the test Redis."""
    from web import create_app

    return create_app({"REDIS_URL": redis_server.url, "POSTAL_RETRY_DELAY_SCALE": "0.1", "TESTING": True})


@pytest.fixture
def client(app: Flask) -> FlaskClient:
    """A test client of `app` (HTTP semantics without a socket; jobs still run in real workers)."""
    return app.test_client()


@pytest.fixture
def workers(redis: Redis, redis_server: RedisServer, tmp_path: Path) -> Iterator[Workers]:
    """A factory of real `rq worker` processes; every one it started is stopped after the test."""
    pool = Workers(redis_server.url, child_env(redis_server.url), tmp_path)
    try:
        yield pool
    finally:
        pool.stop()


@pytest.fixture
def worker(workers: Workers) -> Workers:
    """One running worker on every queue."""
    workers.start(1)
    return workers

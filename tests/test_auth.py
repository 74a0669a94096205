"""Tokens: what needs one, what does not, and that an open API never leaves loopback."""

from __future__ import annotations

import base64
import logging

import pytest
from flask.testing import FlaskClient

from tasks.settings import Settings, SettingsError
from tests.procs import RedisServer

TOKEN = "t0ken-for-tests-0123456789"  # noqa: S105 - a test token
OTHER = "another-token-abcdefghijkl"
JOB = {"task": "message", "payload": {"message": "hi"}}


@pytest.fixture
def secured(redis: object, redis_server: RedisServer) -> FlaskClient:
    from web import create_app

    return create_app({"REDIS_URL": redis_server.url, "POSTAL_API_TOKENS": f"{TOKEN},{OTHER}"}).test_client()


def bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def basic(password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"admin:{password}".encode()).decode()}


def test_mutations_need_a_valid_token(secured: FlaskClient) -> None:
    """POST without a token, or with a wrong one, is a 401 JSON error; either configured token works."""
    for headers in (
        {},
        bearer("wrong-token-0123456789"),
        {"Authorization": "Bearer"},
        {"Authorization": "Token x"},
    ):
        r = secured.post("/jobs", json=JOB, headers=headers)
        assert r.status_code == 401
        assert r.json["error"]["code"] == "unauthorized"
        assert r.headers["WWW-Authenticate"].startswith("Bearer")
    assert secured.post("/jobs", json=JOB, headers=bearer(TOKEN)).status_code == 202
    assert secured.post("/jobs", json=JOB, headers=bearer(OTHER)).status_code == 202


def test_reads_need_a_token_unless_public(secured: FlaskClient, redis_server: RedisServer) -> None:
    """GETs of jobs, queues and workers need a token, unless POSTAL_PUBLIC_READS is on."""
    from web import create_app

    job_id = secured.post("/jobs", json=JOB, headers=bearer(TOKEN)).json["id"]
    for path in (f"/jobs/{job_id}", "/jobs", "/queues", "/workers"):
        assert secured.get(path).status_code == 401
        assert secured.get(path, headers=bearer(TOKEN)).status_code == 200
    public = create_app(
        {"REDIS_URL": redis_server.url, "POSTAL_API_TOKENS": TOKEN, "POSTAL_PUBLIC_READS": "true"}
    ).test_client()
    assert public.get(f"/jobs/{job_id}").status_code == 200
    assert public.post("/jobs", json=JOB).status_code == 401
    assert public.post(f"/jobs/{job_id}/cancel").status_code == 401


def test_health_and_index_stay_open(secured: FlaskClient) -> None:
    """Load balancers can probe /healthz and / without a token."""
    assert secured.get("/healthz").status_code == 200
    assert secured.get("/").status_code == 200


def test_dashboard_needs_a_token_even_for_gets(secured: FlaskClient) -> None:
    """/rq asks browsers for Basic auth (token as password); its state-changing GET stays refused."""
    r = secured.get("/rq/")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"] == 'Basic realm="postal"'
    assert secured.get("/rq/requeue/default").status_code == 401
    assert secured.get("/rq/", headers=basic("nope-not-a-token-000")).status_code == 401
    assert secured.get("/rq/", headers=basic(TOKEN)).status_code == 200
    assert secured.get("/rq/", headers=bearer(TOKEN)).status_code == 200
    assert secured.get("/rq/requeue/default", headers=basic(TOKEN)).status_code == 405
    assert secured.get("/rq/", headers={"Authorization": "Basic !!!"}).status_code == 401


def test_open_api_refuses_non_loopback(redis_server: RedisServer, caplog: pytest.LogCaptureFixture) -> None:
    """Without tokens the app starts only on loopback, and says the API is open."""
    from web import create_app

    with pytest.raises(SettingsError, match="POSTAL_API_TOKENS"):
        create_app({"REDIS_URL": redis_server.url, "POSTAL_HOST": "0.0.0.0"})
    with caplog.at_level(logging.WARNING, logger="postal.auth"):
        create_app({"REDIS_URL": redis_server.url, "POSTAL_HOST": "127.0.0.1"})
    assert "open" in caplog.text
    create_app({"REDIS_URL": redis_server.url, "POSTAL_HOST": "0.0.0.0", "POSTAL_API_TOKENS": TOKEN})


def test_tokens_never_appear_in_errors_or_repr(secured: FlaskClient) -> None:
    """Error bodies and the settings' repr never echo a token or a Redis password."""
    r = secured.post("/jobs", json=JOB, headers=bearer(TOKEN[:-1] + "X"))
    assert TOKEN[:-1] not in r.get_data(as_text=True)
    settings = Settings.from_mapping(
        {"POSTAL_API_TOKENS": TOKEN, "REDIS_URL": "redis://:hunter2-secret@h:6379/0"}
    )
    assert TOKEN not in repr(settings)
    assert "hunter2-secret" not in repr(settings)


def test_short_tokens_are_refused() -> None:
    """A token shorter than 16 characters is a configuration error, not a weak lock."""
    with pytest.raises(SettingsError, match="16"):
        Settings.from_mapping({"POSTAL_API_TOKENS": "short"})

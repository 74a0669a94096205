"""fetch_page and extract end to end: API -> Redis -> real rq worker -> real local HTTP server."""

from __future__ import annotations

import time

from flask.testing import FlaskClient

from tests.expected_pages import ARTICLE_PATH, expected_article
from tests.jobwait import submit, wait_job
from tests.pageserver import PageServer
from tests.procs import Workers


def test_fetch_page_summarises_article(client: FlaskClient, worker: Workers, page_server: PageServer) -> None:
    """A saved article fetched through the whole pipeline yields exactly the expected summary."""
    url = page_server.url("/pages/article.html")
    view = wait_job(client, submit(client, "fetch_page", {"url": url})["id"])
    assert view["status"] == "finished", view
    result = view["result"]
    expected = expected_article(url)
    assert result["url"] == result["final_url"] == url
    assert result["status"] == 200
    assert result["content_type"] == "text/html"
    assert result["redirects"] == []
    assert result["bytes"] == ARTICLE_PATH.stat().st_size
    for field in ("title", "description", "canonical", "language", "headings", "links", "word_count"):
        assert result[field] == expected[field], field
    assert result["emails"] == expected["contacts"]["emails"]
    assert result["phones"] == expected["contacts"]["phones"]
    assert view["progress"]["step"] == "done"
    assert view["attempts"] == 1


def test_fetch_page_follows_redirects(client: FlaskClient, worker: Workers, page_server: PageServer) -> None:
    """Redirects are followed; the result names the final URL and each hop."""
    start = page_server.url("/redirect/1")
    view = wait_job(client, submit(client, "fetch_page", {"url": start})["id"])
    assert view["status"] == "finished", view
    assert view["result"]["final_url"] == page_server.url("/html?title=done")
    assert view["result"]["redirects"] == [start, page_server.url("/redirect/0")]
    assert view["result"]["title"] == "done"


def test_fetch_page_404_fails_at_once(client: FlaskClient, worker: Workers, page_server: PageServer) -> None:
    """A 404 is permanent: one attempt, no retry, a clear error, the job in the failed registry."""
    hits_before = page_server.hits("/status/404")
    view = wait_job(client, submit(client, "fetch_page", {"url": page_server.url("/status/404")})["id"])
    assert view["status"] == "failed"
    assert view["attempts"] == 1
    assert view["retries_left"] == 0
    assert view["error"]["type"] == "RemoteClientError"
    assert "404" in view["error"]["message"]
    assert view["error"]["transient"] is False
    assert page_server.hits("/status/404") - hits_before == 1
    [listed] = client.get("/jobs?state=failed").json["jobs"]
    assert listed["id"] == view["id"]
    assert listed["task"] == "fetch_page"
    assert listed["error"]["type"] == "RemoteClientError"
    assert "404" in listed["error"]["message"]
    assert listed["attempts"] == 1
    assert listed["created_at"] <= listed["started_at"] <= listed["ended_at"]


def test_fetch_page_not_html_fails_at_once(
    client: FlaskClient, worker: Workers, page_server: PageServer
) -> None:
    """A JSON response is refused as NotHTML without a retry."""
    view = wait_job(client, submit(client, "fetch_page", {"url": page_server.url("/json")})["id"])
    assert view["status"] == "failed"
    assert view["error"]["type"] == "NotHTML"
    assert view["attempts"] == 1


def test_fetch_page_too_large_fails_at_once(
    client: FlaskClient, workers: Workers, page_server: PageServer
) -> None:
    """A body over POSTAL_FETCH_MAX_BYTES fails with BodyTooLarge, also when it is a gzip bomb."""
    workers.start(1, env={"POSTAL_FETCH_MAX_BYTES": "100000"})
    plain = submit(client, "fetch_page", {"url": page_server.url("/big?bytes=300000")})
    bomb = submit(client, "fetch_page", {"url": page_server.url("/gzip?bytes=50000000")})
    for job in (plain, bomb):
        view = wait_job(client, job["id"])
        assert view["status"] == "failed"
        assert view["error"]["type"] == "BodyTooLarge"
        assert view["attempts"] == 1


def test_fetch_page_5xx_retries_then_fails(
    client: FlaskClient, worker: Workers, page_server: PageServer
) -> None:
    """A 503 is transient: retried with backoff through the scheduler, every attempt's error kept."""
    started = time.monotonic()
    hits_before = page_server.hits("/status/503")
    job = submit(client, "fetch_page", {"url": page_server.url("/status/503")})
    assert job["retries_left"] == 3
    view = wait_job(client, job["id"], {"failed"}, timeout=60)
    assert page_server.hits("/status/503") - hits_before == 4
    assert view["attempts"] == 4
    assert view["retries_left"] == 0
    assert [e["type"] for e in view["errors"]] == ["RemoteServerError"] * 4
    assert [e["attempt"] for e in view["errors"]] == [1, 2, 3, 4]
    assert all(e["transient"] for e in view["errors"])
    # delays at POSTAL_RETRY_DELAY_SCALE=0.1 are about 1 s each: three waits, not zero
    assert time.monotonic() - started > 2


def test_fetch_page_transient_then_success(
    client: FlaskClient, worker: Workers, page_server: PageServer
) -> None:
    """Two 503s then a good answer: the job finishes on its third attempt, earlier errors kept."""
    view = wait_job(
        client, submit(client, "fetch_page", {"url": page_server.url("/flaky/a1?fail=2")})["id"], timeout=60
    )
    assert view["status"] == "finished", view
    assert view["result"]["title"] == "recovered a1"
    assert view["attempts"] == 3
    assert [e["type"] for e in view["errors"]] == ["RemoteServerError", "RemoteServerError"]
    assert view["error"] is None


def test_fetch_page_connection_refused_is_transient(client: FlaskClient, worker: Workers) -> None:
    """A refused connection is transient: the job is retried, not failed on the first try."""
    from tests.procs import free_port

    job = submit(client, "fetch_page", {"url": f"http://127.0.0.1:{free_port()}/"})
    view = wait_job(client, job["id"], {"scheduled", "failed", "queued"}, timeout=20)
    deadline = time.monotonic() + 20
    while not view["errors"] and time.monotonic() < deadline:
        view = client.get(f"/jobs/{job['id']}").json
    assert view["errors"][0]["type"] == "FetchConnectionError"
    assert view["errors"][0]["transient"] is True
    client.post(f"/jobs/{job['id']}/cancel")


def test_extract_over_text(client: FlaskClient, worker: Workers) -> None:
    """extract runs each pattern over the given text and returns matches with groups."""
    payload = {"text": "order 12 shipped, order 345 pending", "patterns": [r"order (?P<n>\d+)", "missing"]}
    view = wait_job(client, submit(client, "extract", payload)["id"])
    assert view["status"] == "finished", view
    first, second = view["result"]["results"]
    assert [m["match"] for m in first["matches"]] == ["order 12", "order 345"]
    assert first["matches"][0]["named"] == {"n": "12"}
    assert first["matches"][0]["groups"] == ["12"]
    assert (first["matches"][0]["start"], first["matches"][0]["end"]) == (0, 8)
    assert (first["count"], first["truncated"], first["error"]) == (2, False, None)
    assert (second["count"], second["matches"]) == (0, [])
    assert view["result"]["text_length"] == len(payload["text"])


def test_extract_over_page(client: FlaskClient, worker: Workers, page_server: PageServer) -> None:
    """extract with a url fetches the page and matches against its visible text only."""
    url = page_server.url("/pages/article.html")
    payload = {"url": url, "patterns": [r"[\w.]+@example\.org"], "flags": ["IGNORECASE"]}
    view = wait_job(client, submit(client, "extract", payload)["id"])
    assert view["status"] == "finished", view
    [result] = view["result"]["results"]
    assert [m["match"] for m in result["matches"]] == [
        "Ada.Quill@Example.org",
        "press@example.org",
        "PRESS@example.org",
    ]
    assert view["result"]["source"]["final_url"] == url


def test_extract_catastrophic_pattern_is_bounded(client: FlaskClient, worker: Workers) -> None:
    """(a+)+$ on a long a...! fails that pattern with a timeout; the others and the worker go on."""
    text = "a" * 5000 + "!"
    started = time.monotonic()
    job = submit(client, "extract", {"text": text, "patterns": [r"(a+)+$", r"!"]})
    view = wait_job(client, job["id"], timeout=30)
    assert time.monotonic() - started < 15
    assert view["status"] == "finished", view
    bad, good = view["result"]["results"]
    assert bad["error"]["type"] == "timeout"
    assert "timed out" in bad["error"]["message"]
    assert good["count"] == 1
    assert good["error"] is None
    after = submit(client, "message", {"message": "still serving"})
    assert wait_job(client, after["id"])["status"] == "finished"


def test_requeue_after_fix(client: FlaskClient, worker: Workers, tmp_path: object) -> None:
    """A job that failed (page missing) and is requeued after the fix (page added) finishes."""
    from pathlib import Path

    pages = Path(str(tmp_path)) / "site"
    pages.mkdir()
    with PageServer(pages) as site:
        job = submit(client, "fetch_page", {"url": site.url("/pages/new.html")})
        failed = wait_job(client, job["id"])
        assert failed["status"] == "failed"
        assert failed["error"]["type"] == "RemoteClientError"
        (pages / "new.html").write_text("<html><head><title>Now here</title></head><body>ok</body></html>")
        r = client.post(f"/jobs/{job['id']}/requeue")
        assert r.status_code == 202
        assert r.json["retries_left"] == 3
        view = wait_job(client, job["id"])
        assert view["status"] == "finished", view
        assert view["result"]["title"] == "Now here"
        assert view["attempts"] == 2


def test_requeue_filtered_by_exception(client: FlaskClient, worker: Workers, page_server: PageServer) -> None:
    """POST /jobs/requeue with an exception filter requeues only the matching failed jobs."""
    not_found = submit(client, "fetch_page", {"url": page_server.url("/status/404")})
    not_html = submit(client, "fetch_page", {"url": page_server.url("/text")})
    for job in (not_found, not_html):
        assert wait_job(client, job["id"])["status"] == "failed"
    r = client.post("/jobs/requeue", json={"exception": "NotHTML"})
    assert r.status_code == 202
    assert r.json == {"requeued": 1, "ids": [not_html["id"]]}
    assert wait_job(client, not_html["id"], {"failed"}, timeout=20)["attempts"] == 2
    assert client.get(f"/jobs/{not_found['id']}").json["attempts"] == 1
    everything = client.post("/jobs/requeue", json={})
    assert everything.json["requeued"] == 2


def test_requeue_refuses_unfailed_job(client: FlaskClient, redis: object) -> None:
    """Only failed or stopped jobs can be requeued; a queued one answers 409."""
    job = submit(client, "message", {"message": "x"})
    r = client.post(f"/jobs/{job['id']}/requeue")
    assert r.status_code == 409
    assert r.json["error"]["code"] == "not_failed"

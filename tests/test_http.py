"""tasks.http against a real local HTTP server: statuses, redirects, types, byte caps, timeouts."""

from __future__ import annotations

import dataclasses
import socket
import time
from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest

from tasks.errors import (
    BodyTooLarge,
    FetchConnectionError,
    FetchTimeout,
    InvalidPayload,
    NotHTML,
    PermanentError,
    RemoteClientError,
    RemoteServerError,
    TooManyRedirects,
    TransientError,
)
from tasks.http import FetchedPage, FetchLimits, fetch_html
from tasks.safe_http import TargetPolicy
from tasks.settings import Settings
from tests.pageserver import PageServer

LIMITS = FetchLimits(
    connect_timeout=1.0,
    read_timeout=1.0,
    total_timeout=3.0,
    max_bytes=100_000,
    max_redirects=5,
    user_agent="postal-test/1.0",
    # the local page server is on loopback, which the SSRF guard refuses unless allowed
    policy=TargetPolicy.parse(["127.0.0.1"], [80, 443]),
)


def limits(**changes: Any) -> FetchLimits:
    """LIMITS with some fields changed."""
    return dataclasses.replace(LIMITS, **changes)


def timed(url: str, lim: FetchLimits = LIMITS) -> tuple[BaseException, float]:
    """The exception fetch_html raises for `url`, and how long it took to raise it."""
    started = time.monotonic()
    with pytest.raises(Exception) as info:
        fetch_html(url, lim)
    return info.value, time.monotonic() - started


def test_limits_come_from_settings() -> None:
    """FetchLimits.from_settings copies each POSTAL_FETCH_* setting to its limit."""
    settings = Settings(
        fetch_connect_timeout=1.5,
        fetch_read_timeout=2.5,
        fetch_total_timeout=9.0,
        fetch_max_bytes=1234,
        fetch_max_redirects=2,
        fetch_user_agent="ua/1",
    )
    assert FetchLimits.from_settings(settings) == FetchLimits(1.5, 2.5, 9.0, 1234, 2, "ua/1")


def test_fetches_a_page_with_every_field(page_server: PageServer) -> None:
    """A 200 text/html page comes back with every FetchedPage field filled in."""
    url = page_server.url("/html?title=Hello&words=3")
    page = fetch_html(url, LIMITS)
    assert isinstance(page, FetchedPage)
    assert page.url == url
    assert page.final_url == url
    assert page.status == 200
    assert page.content_type == "text/html"
    assert page.charset == "utf-8"
    assert b"<title>Hello</title>" in page.body
    assert b"word0 word1 word2</p>" in page.body
    assert page.redirects == []
    assert 0 <= page.elapsed_s < 1.0


def test_serves_files_from_the_pages_dir(tmp_path: Path) -> None:
    """A saved page is fetched byte for byte; a missing one is a permanent 404."""
    (tmp_path / "about.html").write_bytes(b"<!doctype html><title>About</title><p>caf\xc3\xa9</p>")
    with PageServer(tmp_path) as server:
        page = fetch_html(server.url("/pages/about.html"), LIMITS)
        assert page.body == (tmp_path / "about.html").read_bytes()
        with pytest.raises(RemoteClientError) as info:
            fetch_html(server.url("/pages/missing.html"), LIMITS)
    assert info.value.status == 404


def test_sends_user_agent_and_accept(page_server: PageServer) -> None:
    """Requests carry the User-Agent from the limits and ask for HTML."""
    body = fetch_html(page_server.url("/headers"), LIMITS).body.decode()
    assert "<li>User-Agent: postal-test/1.0</li>" in body
    assert "<li>Accept: text/html,application/xhtml+xml</li>" in body


@pytest.mark.parametrize(
    ("header", "content_type", "charset"),
    [
        ("application/xhtml+xml; charset=ISO-8859-1", "application/xhtml+xml", "iso-8859-1"),
        ('TEXT/HTML;charset="windows-1252"', "text/html", "windows-1252"),
        ("text/html", "text/html", None),
    ],
)
def test_html_types_and_charset(
    page_server: PageServer, header: str, content_type: str, charset: str
) -> None:
    """Both HTML media types are accepted, case-blind; the charset is the header's, or None."""
    page = fetch_html(page_server.url("/html?type=" + quote(header, safe="")), LIMITS)
    assert (page.content_type, page.charset) == (content_type, charset)


@pytest.mark.parametrize("url", ["ftp://example.com/page.html", "file:///etc/passwd", "http:///no-host"])
def test_refuses_urls_that_are_not_http(url: str) -> None:
    """Only http(s) URLs with a host are fetched; anything else fails permanently, unsent."""
    with pytest.raises(InvalidPayload):
        fetch_html(url, LIMITS)


def test_follows_redirects(page_server: PageServer) -> None:
    """A redirect chain is followed to its page, each hop recorded and requested once."""
    before = [page_server.hits(f"/redirect/{n}") for n in (2, 1, 0)]
    page = fetch_html(page_server.url("/redirect/2"), LIMITS)
    assert page.final_url == page_server.url("/html?title=done")
    assert page.redirects == [page_server.url(f"/redirect/{n}") for n in (2, 1, 0)]
    assert page.url == page_server.url("/redirect/2")
    assert b"<title>done</title>" in page.body
    assert [page_server.hits(f"/redirect/{n}") for n in (2, 1, 0)] == [b + 1 for b in before]


def test_resolves_a_relative_location(page_server: PageServer) -> None:
    """A relative Location is resolved against the URL that sent it."""
    page = fetch_html(page_server.url("/redirect-relative"), LIMITS)
    assert page.final_url == page_server.url("/html?title=relative")
    assert page.redirects == [page_server.url("/redirect-relative")]


def test_redirect_to_another_host(page_server: PageServer, tmp_path: Path) -> None:
    """A redirect to another server is followed there."""
    with PageServer(tmp_path) as other:
        target = other.url("/html?title=elsewhere")
        page = fetch_html(page_server.url("/redirect/0?to=" + quote(target, safe="")), LIMITS)
        assert page.final_url == target
        assert other.hits("/html") == 1


def test_allows_exactly_max_redirects(page_server: PageServer) -> None:
    """max_redirects hops are followed; one more is TooManyRedirects (permanent)."""
    assert len(fetch_html(page_server.url("/redirect/2"), limits(max_redirects=3)).redirects) == 3
    with pytest.raises(TooManyRedirects) as info:
        fetch_html(page_server.url("/redirect/3"), limits(max_redirects=3))
    assert isinstance(info.value, PermanentError)


def test_redirect_loop_stops(page_server: PageServer) -> None:
    """A redirect loop ends in TooManyRedirects after max_redirects hops, not forever."""
    before = page_server.hits("/redirect-loop")
    with pytest.raises(TooManyRedirects, match="more than 4 redirects"):
        fetch_html(page_server.url("/redirect-loop"), limits(max_redirects=4))
    assert page_server.hits("/redirect-loop") - before == 5


def test_redirect_to_a_refused_scheme(page_server: PageServer) -> None:
    """Each redirect target goes through the same check as the first URL."""
    with pytest.raises(InvalidPayload, match="only http and https"):
        fetch_html(page_server.url("/redirect/1?to=file:///etc/passwd"), LIMITS)


def test_redirect_without_location(page_server: PageServer) -> None:
    """A redirect status without a Location header fails permanently, naming the status."""
    with pytest.raises(RemoteClientError, match="without a Location") as info:
        fetch_html(page_server.url("/status/302"), LIMITS)
    assert info.value.status == 302


@pytest.mark.parametrize("status", [429, 500, 502, 503])
def test_server_errors_are_transient(page_server: PageServer, status: int) -> None:
    """429 and 5xx raise RemoteServerError, a TransientError, so the job is retried."""
    with pytest.raises(RemoteServerError) as info:
        fetch_html(page_server.url(f"/status/{status}"), LIMITS)
    assert isinstance(info.value, TransientError)
    assert info.value.status == status
    assert str(status) in str(info.value)


@pytest.mark.parametrize("status", [400, 403, 404, 410, 300, 304])
def test_other_answers_are_permanent(page_server: PageServer, status: int) -> None:
    """Other 4xx, and statuses that are neither success nor a followed redirect, fail at once."""
    with pytest.raises(RemoteClientError) as info:
        fetch_html(page_server.url(f"/status/{status}"), LIMITS)
    assert isinstance(info.value, PermanentError)
    assert not isinstance(info.value, TransientError)
    assert info.value.status == status


@pytest.mark.parametrize(("path", "named"), [("/json", "application/json"), ("/text", "text/plain")])
def test_refuses_other_content_types(page_server: PageServer, path: str, named: str) -> None:
    """A body that is not HTML is NotHTML (permanent), and the message names its type."""
    with pytest.raises(NotHTML, match=named) as info:
        fetch_html(page_server.url(path), LIMITS)
    assert isinstance(info.value, PermanentError)


def test_refuses_a_missing_content_type(page_server: PageServer) -> None:
    """A response without Content-Type is NotHTML, even when its body looks like HTML."""
    with pytest.raises(NotHTML, match="no Content-Type"):
        fetch_html(page_server.url("/no-type"), LIMITS)


def test_content_type_is_checked_before_the_body(page_server: PageServer) -> None:
    """NotHTML comes straight after the headers: a slow non-HTML body is never waited for."""
    exc, elapsed = timed(page_server.url("/slow-body?chunks=5&delay=1&type=text/plain"))
    assert isinstance(exc, NotHTML)
    assert elapsed < 0.5


def test_body_up_to_max_bytes_is_accepted(page_server: PageServer) -> None:
    """A body of exactly max_bytes is read whole (streamed, with or without Content-Length)."""
    for chunked in ("0", "1"):
        page = fetch_html(page_server.url(f"/big?bytes=100000&chunked={chunked}"), LIMITS)
        assert len(page.body) == 100_000
        assert page.body.endswith(b"</html>\n")


def test_streamed_body_over_max_bytes(page_server: PageServer) -> None:
    """A body without Content-Length is cut off once it passes max_bytes."""
    exc, elapsed = timed(page_server.url("/big?bytes=100001&chunked=1"))
    assert isinstance(exc, BodyTooLarge)
    assert "more than 100000 bytes" in str(exc)
    exc, elapsed = timed(page_server.url("/big?bytes=50000000&chunked=1"))
    assert isinstance(exc, BodyTooLarge)
    assert elapsed < 1.0


def test_content_length_over_max_bytes(page_server: PageServer) -> None:
    """A Content-Length over max_bytes is refused before reading the body."""
    exc, elapsed = timed(page_server.url("/big?bytes=50000000"))
    assert isinstance(exc, BodyTooLarge)
    assert isinstance(exc, PermanentError)
    assert "Content-Length" in str(exc)
    assert elapsed < 1.0


def test_gzip_body_is_decompressed(page_server: PageServer) -> None:
    """A gzip body comes back decompressed, its size counted after decompression."""
    page = fetch_html(page_server.url("/gzip?bytes=5000"), LIMITS)
    assert len(page.body) == 5000
    assert page.body.startswith(b"<!doctype html>")


def test_gzip_bomb_stops_at_the_cap(page_server: PageServer) -> None:
    """A tiny gzip body that inflates to 200 MB stops at max_bytes, quickly."""
    exc, elapsed = timed(page_server.url("/gzip?bytes=200000000"), limits(max_bytes=1_000_000))
    assert isinstance(exc, BodyTooLarge)
    assert "after decompression" in str(exc)
    assert elapsed < 1.0


def test_aborted_body_does_not_poison_the_pool(tmp_path: Path) -> None:
    """After a body is abandoned mid-way its connection is dropped; a page fetch still works."""
    with PageServer(tmp_path) as server:
        with pytest.raises(BodyTooLarge):
            fetch_html(server.url("/big?bytes=1000000&chunked=1"), LIMITS)
        page = fetch_html(server.url("/html?title=after"), LIMITS)
        assert b"<title>after</title>" in page.body
        assert server.connections_opened == 2


def test_connections_are_reused(tmp_path: Path) -> None:
    """Successive fetches from one host share a pooled keep-alive connection."""
    with PageServer(tmp_path) as server:
        for _ in range(3):
            fetch_html(server.url("/html"), LIMITS)
        assert server.hits("/html") == 3
        assert server.connections_opened == 1


def test_connection_refused() -> None:
    """A closed port is FetchConnectionError (transient), naming the host and the cause."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    exc, elapsed = timed(f"http://127.0.0.1:{port}/")
    assert isinstance(exc, FetchConnectionError)
    assert isinstance(exc, TransientError)
    assert f"127.0.0.1:{port}" in str(exc)
    assert "refused" in str(exc).lower()
    assert elapsed < 1.0


def test_unknown_host(monkeypatch: pytest.MonkeyPatch) -> None:
    """A name that does not resolve is FetchConnectionError naming the host (no real DNS used)."""

    def no_such_host(*args: Any, **kwargs: Any) -> Any:
        raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")

    monkeypatch.setattr(socket, "getaddrinfo", no_such_host)
    with pytest.raises(FetchConnectionError, match=r"could not resolve host nowhere\.invalid"):
        fetch_html("http://nowhere.invalid/", LIMITS)


def test_read_timeout_on_slow_headers(page_server: PageServer) -> None:
    """A server slower than read_timeout to answer is FetchTimeout (transient) after that time."""
    exc, elapsed = timed(page_server.url("/slow-headers?delay=2"), limits(read_timeout=0.2))
    assert isinstance(exc, FetchTimeout)
    assert isinstance(exc, TransientError)
    assert "read timeout" in str(exc)
    assert 0.15 < elapsed < 1.0


def test_read_timeout_between_body_chunks(page_server: PageServer) -> None:
    """read_timeout also bounds each wait for more of the body."""
    exc, elapsed = timed(page_server.url("/slow-body?chunks=2&delay=2"), limits(read_timeout=0.2))
    assert isinstance(exc, FetchTimeout)
    assert elapsed < 1.0


def test_total_timeout_on_a_dripping_body(page_server: PageServer) -> None:
    """A body that keeps dripping within read_timeout is still cut off at total_timeout."""
    url = page_server.url("/slow-body?chunks=50&delay=0.1")
    exc, elapsed = timed(url, limits(read_timeout=1.0, total_timeout=0.5))
    assert isinstance(exc, FetchTimeout)
    assert "total limit of 0.5 s" in str(exc)
    assert 0.45 < elapsed < 0.8


def test_slow_body_within_limits(page_server: PageServer) -> None:
    """A body that drips but finishes within the limits is read whole."""
    page = fetch_html(page_server.url("/slow-body?chunks=3&delay=0.05"), LIMITS)
    assert page.body.count(b"<p>drip") == 3

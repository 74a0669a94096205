"""The SSRF guard: fetches never reach internal addresses unless an operator allows them."""

from __future__ import annotations

import dataclasses
import ipaddress
import socket
import time
from typing import Any

import pytest
from flask.testing import FlaskClient

from tasks.http import FetchLimits, fetch_html
from tasks.safe_http import ForbiddenTarget, TargetPolicy, refusal
from tests.jobwait import submit, wait_job
from tests.pageserver import PageServer
from tests.procs import Workers, child_env

OPEN = FetchLimits(1.0, 1.0, 3.0, 100_000, 5, "postal-test/1.0")  # the default policy: public only
ALLOW_LOCAL = dataclasses.replace(OPEN, policy=TargetPolicy.parse(["127.0.0.1"], [80, 443]))


@pytest.mark.parametrize(
    "address",
    [
        "127.0.0.1",
        "127.8.9.10",
        "10.1.2.3",
        "172.16.0.1",
        "192.168.1.1",
        "169.254.169.254",
        "100.64.0.1",
        "0.0.0.0",
        "224.0.0.1",
        "240.0.0.1",
        "255.255.255.255",
        "::1",
        "::",
        "fd00:ec2::254",
        "fe80::1",
        "ff02::1",
        "::ffff:127.0.0.1",
        "::ffff:10.0.0.1",
        "64:ff9b::7f00:1",
        "64:ff9b::a9fe:a9fe",
        "2002:7f00:1::",
        "2002:a9fe:a9fe::",
        "2001:0:4136:e378:8000:63bf:80ff:fffe",
    ],
)
def test_internal_addresses_are_refused(address: str) -> None:
    """Loopback, private, link-local (cloud metadata), multicast, reserved, unspecified, and IPv4
    hidden in IPv6 (mapped, NAT64, 6to4, Teredo) all have a refusal reason."""
    assert refusal(ipaddress.ip_address(address)) is not None


@pytest.mark.parametrize("address", ["93.184.216.34", "8.8.8.8", "2606:2800:220:1:248:1893:25c8:1946"])
def test_public_addresses_pass(address: str) -> None:
    """Public unicast addresses are fetchable."""
    assert refusal(ipaddress.ip_address(address)) is None


def test_loopback_server_refused_without_a_connection(page_server: PageServer) -> None:
    """The real local server is refused by default, before any connection is made."""
    before = page_server.connections_opened
    with pytest.raises(ForbiddenTarget, match="loopback"):
        fetch_html(page_server.url("/pages/article.html"), OPEN)
    for url in (
        f"http://localhost:{page_server.port}/",
        f"http://[::ffff:127.0.0.1]:{page_server.port}/",
        f"http://2130706433:{page_server.port}/",
    ):
        with pytest.raises(ForbiddenTarget):
            fetch_html(url, OPEN)
    assert page_server.connections_opened == before
    assert fetch_html(page_server.url("/pages/article.html"), ALLOW_LOCAL).status == 200


def test_metadata_endpoint_refused_fast() -> None:
    """169.254.169.254 and fd00:ec2::254 are refused at once, with a reason and the hint."""
    started = time.monotonic()
    for url in ("http://169.254.169.254/latest/meta-data/", "http://[fd00:ec2::254]/latest/meta-data/"):
        with pytest.raises(ForbiddenTarget, match="POSTAL_FETCH_ALLOW"):
            fetch_html(url, OPEN)
    assert time.monotonic() - started < 0.5


def test_redirect_to_internal_address_refused(page_server: PageServer) -> None:
    """Every redirect hop is checked: an allowed server redirecting to another loopback address
    (not on the allow-list) is refused at that hop."""
    url = page_server.url(f"/redirect/0?to=http://127.0.0.2:{page_server.port}/html")
    with pytest.raises(ForbiddenTarget, match=r"127\.0\.0\.2"):
        fetch_html(url, ALLOW_LOCAL)


def test_non_default_port_needs_the_allow_list() -> None:
    """A public host on a port other than 80/443 is refused unless configured."""
    policy = TargetPolicy.parse([], [80, 443])
    from tasks.safe_http import resolve_checked

    with pytest.raises(ForbiddenTarget, match="only ports 80, 443"):
        resolve_checked("93.184.216.34", 8080, policy)
    assert resolve_checked("93.184.216.34", 8080, TargetPolicy.parse([], [80, 443, 8080])) == "93.184.216.34"


def test_one_resolution_per_hop_and_connection_to_it(
    page_server: PageServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host name is resolved once per hop, by the guard; the connection goes to that address
    (urllib3 is handed the address, never the name, so a rebinding answer is never asked for)."""
    real = socket.getaddrinfo
    name_lookups: list[str] = []

    def dns(host: Any, *args: Any, **kwargs: Any) -> Any:
        if host == "pages.postal-test.invalid":  # a test name that resolves to the local server
            name_lookups.append(host)
            return real("127.0.0.1", *args, **kwargs)
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", dns)
    limits = dataclasses.replace(OPEN, policy=TargetPolicy.parse(["pages.postal-test.invalid"], [80, 443]))
    page = fetch_html(f"http://pages.postal-test.invalid:{page_server.port}/redirect-relative", limits)
    assert page.status == 200
    assert page.final_url == f"http://pages.postal-test.invalid:{page_server.port}/html?title=relative"
    assert name_lookups == ["pages.postal-test.invalid"] * 2  # two hops, one lookup each


def test_worker_without_allow_list_refuses_local_server(
    client: FlaskClient, workers: Workers, page_server: PageServer
) -> None:
    """End to end: a worker with the default policy fails a fetch of the local server at once
    (permanent), and the server never sees a request."""
    env = child_env(workers.redis_url)
    env.pop("POSTAL_FETCH_ALLOW")
    workers.env = env
    workers.start(1)
    before = page_server.hits("/pages/article.html")
    view = wait_job(
        client, submit(client, "fetch_page", {"url": page_server.url("/pages/article.html")})["id"]
    )
    assert view["status"] == "failed"
    assert view["error"]["type"] == "ForbiddenTarget"
    assert "loopback" in view["error"]["message"]
    assert view["attempts"] == 1
    assert page_server.hits("/pages/article.html") == before

"""Fetch one HTML page, bounded in time, bytes and redirects: the only network code of fetch jobs.

Built on urllib3 rather than requests because every bound needs the low level anyway: redirects
are followed here, hop by hop, so each target passes `_check_target` and the SSRF guard
(tasks.safe_http), and the connection goes to the checked address; the body is read in chunks
so a byte cap counts *decompressed* bytes and a gzip bomb stops at the cap; and a total
deadline spans every hop and every chunk, which urllib3's per-socket-operation timeouts alone
cannot give.

Every failure is one of `tasks.errors`: transient (timeouts, connection failures, 429, 5xx) so
RQ retries it, or permanent (4xx, not HTML, too large, too many redirects) so it fails at once.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import urllib3
from urllib3.connection import HTTPConnection
from urllib3.exceptions import (
    ConnectTimeoutError,
    DecodeError,
    HTTPError,
    LocationValueError,
    NameResolutionError,
    NewConnectionError,
    ProtocolError,
    ReadTimeoutError,
    SSLError,
)

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
)
from tasks.safe_http import TargetPolicy, resolve_checked
from tasks.settings import Settings

HTML_TYPES = frozenset({"text/html", "application/xhtml+xml"})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
FETCHABLE_SCHEMES = frozenset({"http", "https"})
_CHUNK = 64 * 1024
_HEADERS = {
    "Accept": "text/html,application/xhtml+xml",
    # Only the codings urllib3 decodes without optional packages.
    "Accept-Encoding": "gzip, deflate",
}


@dataclass(frozen=True)
class FetchLimits:
    """Every bound on one fetch. Timeouts are seconds: `connect_timeout` and `read_timeout` bound
    each socket operation, `total_timeout` the whole fetch (all hops and the body)."""

    connect_timeout: float
    read_timeout: float
    total_timeout: float
    max_bytes: int
    max_redirects: int
    user_agent: str
    policy: TargetPolicy = field(default_factory=TargetPolicy)

    @classmethod
    def from_settings(cls, settings: Settings) -> FetchLimits:
        """The limits configured by `POSTAL_FETCH_*` for this host."""
        return cls(
            connect_timeout=settings.fetch_connect_timeout,
            read_timeout=settings.fetch_read_timeout,
            total_timeout=settings.fetch_total_timeout,
            max_bytes=settings.fetch_max_bytes,
            max_redirects=settings.fetch_max_redirects,
            user_agent=settings.fetch_user_agent,
            policy=TargetPolicy.parse(settings.fetch_allow, settings.fetch_ports),
        )


@dataclass(frozen=True)
class FetchedPage:
    """A fetched HTML page. `content_type` is the lower-cased media type without parameters;
    `charset` is the Content-Type's charset parameter, or None when the server named none (the
    parser then sniffs `<meta charset>`); `body` is decompressed; `redirects` lists the URLs that
    answered with a redirect, in order, so `final_url` is the one that answered with the page."""

    url: str
    final_url: str
    status: int
    content_type: str
    charset: str | None
    body: bytes
    redirects: list[str]
    elapsed_s: float


PoolKey = tuple[str, str, int, str]
_pools: dict[PoolKey, urllib3.HTTPConnectionPool] = {}
_pools_pid = 0
_pools_lock = threading.Lock()
MAX_POOLS = 32


def _pool_for(scheme: str, address: str, port: int, host: str) -> urllib3.HTTPConnectionPool:
    """A connection pool to `address` (already checked by the SSRF guard) for `host`.

    Pools are keyed by the address, not the name, so a connection always goes where the check
    said (no second DNS lookup a rebinding server could answer differently); TLS still verifies
    the certificate against `host` (SNI and hostname check). Kept per process, and remade in a
    new one, because pools inherited across RQ's fork of the work horse would share sockets with
    the parent; `retries=False` because retrying and redirecting are decided here.
    """
    global _pools_pid  # one set of pools per process is the point
    key = (scheme, address, port, host)
    with _pools_lock:
        if _pools_pid != os.getpid() or len(_pools) >= MAX_POOLS:
            _pools.clear()
            _pools_pid = os.getpid()
        pool = _pools.get(key)
        if pool is None:
            if scheme == "https":
                pool = urllib3.HTTPSConnectionPool(
                    address, port, maxsize=4, retries=False, server_hostname=host, assert_hostname=host
                )
            else:
                pool = urllib3.HTTPConnectionPool(address, port, maxsize=4, retries=False)
            _pools[key] = pool
        return pool


def _check_target(url: str) -> None:
    """Refuse a URL postal must not fetch; called for the first URL and for every redirect hop.

    The scheme and host; the addresses the host resolves to are checked just before each
    request (tasks.safe_http.resolve_checked), and the connection goes to the checked address.
    """
    parts = urlsplit(url)
    if parts.scheme.lower() not in FETCHABLE_SCHEMES:
        raise InvalidPayload(f"refusing to fetch {url!r}: only http and https URLs are fetched")
    if not parts.hostname:
        raise InvalidPayload(f"refusing to fetch {url!r}: the URL has no host")


def _next_hop(current: str, response: urllib3.BaseHTTPResponse, hops: int, limits: FetchLimits) -> str:
    """Where the redirect answered by `current` points: resolved against it, counted, checked.

    All redirect policy lives here; `_check_target` is where a hop is refused."""
    if hops >= limits.max_redirects:
        raise TooManyRedirects(f"more than {limits.max_redirects} redirects; the last was from {current}")
    location = (response.headers.get("Location") or "").strip()
    if not location:
        raise RemoteClientError(
            f"{current} answered HTTP {response.status} (a redirect) without a Location header",
            response.status,
        )
    target = urljoin(current, location)
    _check_target(target)
    return target


def _check_status(url: str, status: int, reason: str) -> None:
    """Raise unless `status` is a success; 429 and 5xx may pass, other answers will not."""
    if 200 <= status < 300:
        return
    message = f"{url} answered HTTP {status} {reason}".rstrip()
    if status == 429 or 500 <= status < 600:
        raise RemoteServerError(message, status)
    raise RemoteClientError(message, status)


def _media_type(url: str, header: str | None) -> tuple[str, str | None]:
    """(media type, charset) from a Content-Type header; NotHTML unless the type is HTML."""
    if header is None or not header.strip():
        raise NotHTML(f"{url} sent no Content-Type, so it is not known to be HTML")
    media_type, *params = (part.strip() for part in header.split(";"))
    media_type = media_type.lower()
    if media_type not in HTML_TYPES:
        raise NotHTML(f"{url} is {media_type!r}, not HTML (text/html or application/xhtml+xml)")
    charset = None
    for param in params:
        name, _, value = param.partition("=")
        if name.strip().lower() == "charset" and value.strip().strip("\"'"):
            charset = value.strip().strip("\"'").lower()
    return media_type, charset


def _remaining(url: str, limits: FetchLimits, deadline: float) -> float:
    """Seconds left of the total deadline; FetchTimeout when none are."""
    left = deadline - time.monotonic()
    if left <= 0:
        raise FetchTimeout(f"fetching {url} took longer than the total limit of {limits.total_timeout:g} s")
    return left


def _read_body(url: str, response: urllib3.BaseHTTPResponse, limits: FetchLimits, deadline: float) -> bytes:
    """The decompressed body, read in chunks so the byte cap and the deadline act mid-body."""
    declared = response.headers.get("Content-Length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limits.max_bytes:
        raise BodyTooLarge(
            f"{url} declares {int(declared)} bytes (Content-Length), over the {limits.max_bytes}-byte limit"
        )
    chunks: list[bytes] = []
    received = 0
    while True:
        # Each read may wait at most until the deadline, not a full read_timeout past it:
        # urllib3 set the socket's timeout once, before the headers.
        conn = response.connection
        if isinstance(conn, HTTPConnection) and conn.sock is not None:
            conn.sock.settimeout(min(limits.read_timeout, _remaining(url, limits, deadline)))
        # read1, not read: read(n) keeps reading until it has n bytes, so a server dripping a
        # byte per second would hold it far past the deadline.
        chunk = response.read1(_CHUNK)
        if not chunk:
            return b"".join(chunks)
        received += len(chunk)
        if received > limits.max_bytes:
            raise BodyTooLarge(f"{url} sent more than {limits.max_bytes} bytes (after decompression)")
        chunks.append(chunk)
        _remaining(url, limits, deadline)


def _cause(exc: BaseException) -> str:
    """The root cause of a urllib3 error in words a user can act on ("Connection refused")."""
    while exc.__cause__ is not None:
        exc = exc.__cause__
    if isinstance(exc, ProtocolError) and len(exc.args) > 1 and isinstance(exc.args[1], BaseException):
        return _cause(exc.args[1])
    if isinstance(exc, OSError) and exc.strerror:
        return exc.strerror
    return str(exc) or type(exc).__name__


@contextmanager
def _network_errors(url: str, limits: FetchLimits, deadline: float) -> Iterator[None]:
    """Turn urllib3's exceptions into postal's, naming the host and the cause."""
    host = urlsplit(url).netloc
    try:
        yield
    except NameResolutionError as exc:  # before NewConnectionError, its base class
        raise FetchConnectionError(f"could not resolve host {host}: {_cause(exc)}") from exc
    except NewConnectionError as exc:  # before ConnectTimeoutError, its base class
        raise FetchConnectionError(f"could not connect to {host}: {_cause(exc)}") from exc
    except (ConnectTimeoutError, ReadTimeoutError) as exc:
        # Each socket timeout was capped at the time left, so at the deadline it was the total
        # limit that fired (socket timeouts round up, so they never fire before it).
        if time.monotonic() >= deadline:
            raise FetchTimeout(
                f"fetching {url} took longer than the total limit of {limits.total_timeout:g} s"
            ) from exc
        if isinstance(exc, ConnectTimeoutError):
            raise FetchTimeout(
                f"connecting to {host} timed out (limit {limits.connect_timeout:g} s)"
            ) from exc
        raise FetchTimeout(
            f"{host} sent nothing for {limits.read_timeout:g} s while fetching {url} (read timeout)"
        ) from exc
    except SSLError as exc:
        raise FetchConnectionError(f"TLS with {host} failed: {_cause(exc)}") from exc
    except ProtocolError as exc:
        raise FetchConnectionError(f"connection to {host} broke while fetching {url}: {_cause(exc)}") from exc
    except DecodeError as exc:
        raise PermanentError(f"{url} sent a body that does not decompress: {_cause(exc)}") from exc
    except LocationValueError as exc:
        raise InvalidPayload(f"refusing to fetch {url!r}: {exc}") from exc
    except HTTPError as exc:  # any other urllib3 failure is about the connection, and may pass
        raise FetchConnectionError(f"fetching {url} from {host} failed: {_cause(exc)}") from exc


def fetch_html(url: str, limits: FetchLimits) -> FetchedPage:
    """Fetch the HTML page at `url`, following redirects, within `limits`.

    Raises only `tasks.errors` classes (see the module docstring for which are transient).
    The Content-Type is checked before any of the body is read, and every response is closed
    or returned to the pool before this returns, whatever happened.
    """
    started = time.monotonic()
    deadline = started + limits.total_timeout
    _check_target(url)
    current = url
    redirects: list[str] = []
    while True:
        left = _remaining(current, limits, deadline)
        timeout = urllib3.Timeout(
            connect=min(limits.connect_timeout, left), read=min(limits.read_timeout, left)
        )
        parts = urlsplit(current)
        scheme, host = parts.scheme.lower(), parts.hostname or ""
        port = parts.port or (443 if scheme == "https" else 80)
        address = resolve_checked(host, port, limits.policy)  # every hop, once, before connecting
        default_port = port == (443 if scheme == "https" else 80)
        host_header = (f"[{host}]" if ":" in host else host) + ("" if default_port else f":{port}")
        headers = {**_HEADERS, "User-Agent": limits.user_agent, "Host": host_header}
        path = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        with _network_errors(current, limits, deadline):
            response = _pool_for(scheme, address, port, host).urlopen(
                "GET",
                path,
                headers=headers,
                timeout=timeout,
                retries=False,
                redirect=False,
                assert_same_host=False,
                preload_content=False,
                decode_content=True,
            )
            complete = False
            try:
                if response.status in REDIRECT_STATUSES:
                    target = _next_hop(current, response, len(redirects), limits)
                    redirects.append(current)
                    current = target
                    continue
                _check_status(current, response.status, response.reason or "")
                content_type, charset = _media_type(current, response.headers.get("Content-Type"))
                body = _read_body(current, response, limits, deadline)
                complete = True
            finally:
                if not complete:
                    # Unread bytes are left on this connection (a redirect's body, an aborted
                    # one): close it so the pool never hands it out mid-response.
                    response.close()
                response.release_conn()
        return FetchedPage(
            url=url,
            final_url=current,
            status=response.status,
            content_type=content_type,
            charset=charset,
            body=body,
            redirects=redirects,
            elapsed_s=time.monotonic() - started,
        )

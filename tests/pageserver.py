"""A real local HTTP server for the fetch tests: real sockets, real timing, no mocks.

`with PageServer(pages_dir) as server:` binds 127.0.0.1 on a free port and serves from a daemon
thread; leaving the block stops it, closes every socket (listening and accepted) and joins the
threads, so nothing leaks into the next test (pytest runs with `filterwarnings = error`, where an
unclosed socket's ResourceWarning fails a test).

It speaks HTTP/1.1 with keep-alive, like a real server, so the client's connection pool is
exercised too. Routes (all GET):

- `/pages/<name>`          a file from `pages_dir` as `text/html; charset=utf-8` (404 if missing,
                           403 for a name that escapes `pages_dir`)
- `/status/<code>`         that status with a small HTML body (no Location, even for a 3xx)
- `/redirect/<n>`          302 to `/redirect/<n-1>`; `/redirect/0` -> `/html?title=done`, or to
                           `?to=<url>` when given (kept along the chain). `/redirect/n` makes n+1 hops.
- `/redirect-relative`     302 with the relative Location `html?title=relative`
- `/redirect-loop`         302 to itself
- `/html?title=X&words=N`  a small valid page; `&type=...` overrides its Content-Type
- `/headers`               an HTML page listing the request headers it received
- `/slow-headers?delay=S`  waits S seconds before the status line
- `/slow-body?chunks=N&delay=S`  headers at once, then N chunks (chunked encoding) S seconds
                           apart; `&type=...` overrides its Content-Type
- `/big?bytes=N`           an HTML page of exactly N bytes, streamed with Content-Length, or
                           chunked without one when `&chunked=1`
- `/gzip?bytes=N`          `Content-Encoding: gzip`, chunked, decompressing to N bytes of HTML
                           while the wire carries about N/1000 (a gzip bomb)
- `/json`, `/text`, `/no-type`  a JSON body, a text/plain body, a body without Content-Type
- `/flaky/<key>?fail=N&status=S`  the first N requests for this path answer S (default 503),
                           later ones a small HTML page titled `recovered <key>`

Sleeps wait on an event that `__exit__` sets, so stopping never waits for a slow route.
"""

from __future__ import annotations

import html
import json
import socket
import sys
import threading
import zlib
from collections import Counter
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, quote, unquote, urlsplit

HTML = "text/html; charset=utf-8"
_FILLER = b"filler "  # cut anywhere, it stays text: a size in bytes can be met exactly


def _html_of_size(total: int, chunk_size: int = 64 * 1024) -> Iterator[bytes]:
    """Yield an HTML page of exactly `total` bytes in pieces of at most `chunk_size`."""
    head = b"<!doctype html><html><head><meta charset=utf-8><title>big</title></head><body>\n"
    tail = b"\n</body></html>\n"
    if total <= len(head) + len(tail):
        yield (head + tail)[:total]
        return
    yield head
    block = (_FILLER * (chunk_size // len(_FILLER) + 1))[:chunk_size]
    remaining = total - len(head) - len(tail)
    while remaining > 0:
        piece = block[:remaining]
        yield piece
        remaining -= len(piece)
    yield tail


class _Server(ThreadingHTTPServer):
    """The socketserver, holding the state the handlers share."""

    daemon_threads = True

    def __init__(self, pages_dir: Path) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pages_dir = pages_dir.resolve()
        self.stopping = threading.Event()
        self.lock = threading.Lock()
        self.hits: Counter[str] = Counter()
        self.connections_opened = 0
        self.open_connections: set[socket.socket] = set()

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host!s}:{port}"

    def process_request(self, request: Any, client_address: Any) -> None:
        # Tracked here, in the accepting thread, so no connection can slip past __exit__.
        with self.lock:
            self.connections_opened += 1
            self.open_connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request: Any) -> None:
        with self.lock:
            self.open_connections.discard(request)
        super().shutdown_request(request)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that gave up (timeout, byte cap) is what many tests do on purpose: the
        # handler's next write then fails, and that is not worth a traceback.
        if isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            return
        super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    """Routes one connection's requests; see the module docstring for the routes."""

    protocol_version = "HTTP/1.1"  # keep-alive, so the client's pool reuses connections
    timeout = 30  # an idle keep-alive connection does not hold a thread forever
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        """Silent: the tests assert on behaviour, and request lines would only be noise."""

    # -- helpers ---------------------------------------------------------------------------

    def _reply(
        self,
        status: int,
        body: bytes = b"",
        content_type: str | None = HTML,
        headers: dict[str, str] | None = None,
    ) -> None:
        self.send_response(status)
        if content_type is not None:
            self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _start_chunked(self, status: int, content_type: str, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", content_type)
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes) -> None:
        if data:  # an empty chunk would end the body
            self.wfile.write(b"%X\r\n%s\r\n" % (len(data), data))

    def _end_chunks(self) -> None:
        self.wfile.write(b"0\r\n\r\n")

    def _wait(self, seconds: float) -> None:
        """Sleep, but wake at once when the server stops; a stopped server sends nothing more."""
        if self.server.stopping.wait(seconds):
            self.close_connection = True
            raise ConnectionAbortedError("page server stopping")

    @staticmethod
    def _page(title: str, text: str) -> bytes:
        return (
            "<!doctype html>\n<html lang=en><head><meta charset=utf-8>"
            f"<title>{html.escape(title)}</title></head>\n"
            f"<body><h1>{html.escape(title)}</h1>\n<p>{html.escape(text)}</p></body></html>\n"
        ).encode()

    # -- routing ---------------------------------------------------------------------------

    def do_GET(self) -> None:
        parts = urlsplit(self.path)
        path = parts.path
        query = {key: values[-1] for key, values in parse_qs(parts.query).items()}
        with self.server.lock:
            self.server.hits[path] += 1
        exact = {
            "/html": self._html,
            "/headers": self._headers,
            "/slow-headers": self._slow_headers,
            "/slow-body": self._slow_body,
            "/big": self._big,
            "/gzip": self._gzip,
            "/json": self._json,
            "/text": self._text,
            "/no-type": self._no_type,
            "/redirect-relative": self._redirect_relative,
            "/redirect-loop": self._redirect_loop,
        }
        prefixed = {
            "/pages/": self._pages,
            "/status/": self._status,
            "/redirect/": self._redirect,
            "/flaky/": self._flaky,
        }
        if path in exact:
            exact[path](query)
            return
        for prefix, route in prefixed.items():
            if path.startswith(prefix):
                route(path[len(prefix) :], query)
                return
        self._reply(404, self._page("not found", path))

    def _pages(self, name: str, query: dict[str, str]) -> None:
        target = (self.server.pages_dir / unquote(name)).resolve()
        if not target.is_relative_to(self.server.pages_dir):
            self._reply(403, self._page("forbidden", "path escapes the pages directory"))
        elif not target.is_file():
            self._reply(404, self._page("not found", name))
        else:
            self._reply(200, target.read_bytes())

    def _status(self, code: str, query: dict[str, str]) -> None:
        if not code.isdigit() or not 200 <= int(code) <= 599:
            self._reply(400, self._page("bad status", code))
        elif int(code) in (204, 304):  # these may not carry a body
            self._reply(int(code), content_type=None)
        else:
            self._reply(int(code), self._page(f"status {code}", f"This is HTTP {code}."))

    def _redirect(self, n: str, query: dict[str, str]) -> None:
        if not n.isdigit():
            self._reply(400, self._page("bad redirect count", n))
            return
        to = query.get("to")
        if int(n) > 0:
            location = f"{self.server.base_url}/redirect/{int(n) - 1}"
            if to is not None:
                location += "?to=" + quote(to, safe="")
        else:
            location = to if to is not None else f"{self.server.base_url}/html?title=done"
        self._reply(302, self._page("redirect", location), headers={"Location": location})

    def _flaky(self, key: str, query: dict[str, str]) -> None:
        with self.server.lock:
            seen = self.server.hits[f"/flaky/{key}"]
        if seen <= int(query.get("fail", "1")):
            status = int(query.get("status", "503"))
            self._reply(status, self._page(f"status {status}", "failing on purpose"))
        else:
            self._reply(200, self._page(f"recovered {key}", "this time it worked"))

    def _redirect_relative(self, query: dict[str, str]) -> None:
        self._reply(302, self._page("redirect", "relative"), headers={"Location": "html?title=relative"})

    def _redirect_loop(self, query: dict[str, str]) -> None:
        self._reply(302, self._page("loop", "again"), headers={"Location": "/redirect-loop"})

    def _html(self, query: dict[str, str]) -> None:
        words = int(query.get("words", "20"))
        text = " ".join(f"word{i}" for i in range(words))
        self._reply(200, self._page(query.get("title", "postal test page"), text), query.get("type", HTML))

    def _headers(self, query: dict[str, str]) -> None:
        items = "".join(f"<li>{html.escape(k)}: {html.escape(v)}</li>\n" for k, v in self.headers.items())
        body = f"<!doctype html><title>headers</title><ul>\n{items}</ul>\n".encode()
        self._reply(200, body)

    def _slow_headers(self, query: dict[str, str]) -> None:
        self._wait(float(query.get("delay", "1")))
        self._reply(200, self._page("slow headers", "finally"))

    def _slow_body(self, query: dict[str, str]) -> None:
        chunks, delay = int(query.get("chunks", "5")), float(query.get("delay", "0.5"))
        self._start_chunked(200, query.get("type", HTML))
        self._chunk(b"<!doctype html><title>slow body</title>\n")
        for i in range(chunks):
            self._wait(delay)
            self._chunk(b"<p>drip %d</p>\n" % i)
        self._end_chunks()

    def _big(self, query: dict[str, str]) -> None:
        size = int(query.get("bytes", "1000"))
        if query.get("chunked") == "1":
            self._start_chunked(200, HTML)
            for piece in _html_of_size(size):
                self._chunk(piece)
            self._end_chunks()
            return
        self.send_response(200)
        self.send_header("Content-Type", HTML)
        self.send_header("Content-Length", str(size))
        self.end_headers()
        for piece in _html_of_size(size):
            self.wfile.write(piece)

    def _gzip(self, query: dict[str, str]) -> None:
        # Compressed as it is sent, flushed per block, so the first bytes leave at once and
        # the client's decompression cap (not the server's patience) decides when it ends.
        compressor = zlib.compressobj(9, zlib.DEFLATED, 31)  # wbits 31: the gzip container
        self._start_chunked(200, HTML, {"Content-Encoding": "gzip"})
        for piece in _html_of_size(int(query.get("bytes", "1000")), chunk_size=1024 * 1024):
            self._chunk(compressor.compress(piece) + compressor.flush(zlib.Z_SYNC_FLUSH))
        self._chunk(compressor.flush())
        self._end_chunks()

    def _json(self, query: dict[str, str]) -> None:
        self._reply(200, json.dumps({"html": False, "items": list(range(50))}).encode(), "application/json")

    def _text(self, query: dict[str, str]) -> None:
        self._reply(200, b"plain text, not a page\n" * 20, "text/plain; charset=utf-8")

    def _no_type(self, query: dict[str, str]) -> None:
        self._reply(200, b"<!doctype html><title>no type</title>", content_type=None)


class PageServer:
    """A real HTTP server on 127.0.0.1:<free port>, running for the length of a `with` block."""

    def __init__(self, pages_dir: Path) -> None:
        self.pages_dir = Path(pages_dir)
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def __enter__(self) -> PageServer:
        server = _Server(self.pages_dir)
        thread = threading.Thread(
            target=server.serve_forever,
            kwargs={"poll_interval": 0.05},  # so __exit__'s shutdown() returns quickly
            name=f"page-server-{server.server_address[1]}",
            daemon=True,
        )
        try:
            thread.start()
        except BaseException:
            server.server_close()
            raise
        self._server, self._thread = server, thread
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        server, thread = self._running
        server.stopping.set()  # wake handlers sleeping in slow routes
        server.shutdown()  # stop accepting; returns once serve_forever has left its loop
        with server.lock:
            open_connections = list(server.open_connections)
        for conn in open_connections:
            # Keep-alive handlers block reading the client's next request, and the client's
            # pool may keep the connection forever; shutting the socket down ends their wait.
            try:
                conn.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # the client already closed it
        server.server_close()  # closes the listening socket and joins the handler threads
        thread.join()
        self._server = self._thread = None

    @property
    def _running(self) -> tuple[_Server, threading.Thread]:
        if self._server is None or self._thread is None:
            raise RuntimeError("PageServer is not running: use it as `with PageServer(dir) as server:`")
        return self._server, self._thread

    @property
    def host(self) -> str:
        return str(self._running[0].server_address[0])

    @property
    def port(self) -> int:
        return int(self._running[0].server_address[1])

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self.port}"

    def url(self, path: str) -> str:
        """The absolute URL of `path` on this server (`path` starts with `/`)."""
        return self.base_url + path

    def hits(self, path: str) -> int:
        """How many requests this server has answered for `path` (query string ignored)."""
        server = self._running[0]
        with server.lock:
            return server.hits[path]

    @property
    def connections_opened(self) -> int:
        """How many TCP connections clients have opened to this server so far."""
        server = self._running[0]
        with server.lock:
            return server.connections_opened

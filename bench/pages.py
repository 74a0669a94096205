"""Realistic HTML pages of about 100 KB, made deterministically, and a loopback server for them.

The pages look like the ones `fetch_page` meets in the wild: a `<head>` with meta tags, inline
CSS and JSON-LD, a large navigation menu, an article with headings, paragraphs, a table and
images, a comment section, a footer with addresses and phone numbers, and scripts. Built from
a fixed seed, so every run parses the same bytes.
"""

from __future__ import annotations

import random
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType

PAGE_COUNT = 5
PAGE_BYTES = 100_000
WORDS = (
    "postal service parcel route delivery address letter stamp courier network city market "
    "report council weather season river station museum garden school library harbour bridge "
    "customer order invoice payment shipping return warehouse tracking schedule update notice "
    "the a of and to in for on with by from at as is was are be this that it new more about"
).split()


def _sentence(rng: random.Random, words: int) -> str:
    text = " ".join(rng.choice(WORDS) for _ in range(words))
    return text[0].upper() + text[1:] + "."


def _paragraph(rng: random.Random) -> str:
    return " ".join(_sentence(rng, rng.randint(8, 22)) for _ in range(rng.randint(3, 7)))


def make_page(index: int, size: int = PAGE_BYTES) -> bytes:
    """Page `index` (any int): about `size` bytes of HTML, the same bytes every time."""
    rng = random.Random(f"postal-bench-page-{index}")  # noqa: S311 - test data, not secrets
    title = _sentence(rng, 6)[:-1]
    head = [
        "<!doctype html>",
        '<html lang="en">',
        "<head>",
        '<meta charset="utf-8">',
        f"<title>{title} | The Daily Route</title>",
        f'<meta name="description" content="{_sentence(rng, 20)}">',
        f'<link rel="canonical" href="https://news.example.org/{index}/{title.lower().replace(" ", "-")}">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<style>"
        + "".join(f".c{i}{{margin:{i}px;padding:{i % 7}px;color:#{i:06x}}}" for i in range(300))
        + "</style>",
        '<script type="application/ld+json">{"@context":"https://schema.org","@type":"NewsArticle",'
        f'"headline":"{title}","datePublished":"2026-0{1 + index % 9}-1{index % 10}"}}</script>',
        "<script>window.dataLayer=window.dataLayer||[];"
        + "function t(){dataLayer.push(arguments)}" * 20
        + "</script>",
        "</head>",
        '<body class="article">',
    ]
    nav = ['<header><nav class="menu"><ul>']
    for i in range(120):
        section = rng.choice(WORDS)
        nav.append(f'<li class="menu-item"><a href="/section/{section}/{i}">{section.title()} {i}</a></li>')
    nav.append("</ul></nav></header>")
    body = [f'<main><article><h1 class="headline">{title}</h1>']
    body.append(f'<p class="byline">By {rng.choice(WORDS).title()} {rng.choice(WORDS).title()}</p>')
    section_no = 0
    while sum(map(len, head + nav + body)) < size * 0.78:
        section_no += 1
        body.append(f"<h2>{_sentence(rng, 5)[:-1]}</h2>")
        for _ in range(rng.randint(2, 4)):
            host = f"ext{rng.randint(1, 40)}.example.com"
            link = f'<a href="https://{host}/{rng.choice(WORDS)}">{rng.choice(WORDS)}</a>'
            body.append(f'<p class="para">{_paragraph(rng)} {link} {_paragraph(rng)}</p>')
        if section_no % 3 == 0:
            body.append(f"<h3>{_sentence(rng, 4)[:-1]}</h3>")
            body.append(
                f'<figure><img src="/img/{index}-{section_no}.jpg" alt="{_sentence(rng, 6)}" '
                f'width="800" height="450"><figcaption>{_sentence(rng, 10)}</figcaption></figure>'
            )
        if section_no % 4 == 0:
            rows = "".join(
                f"<tr><td>{rng.choice(WORDS)}</td><td>{rng.randint(1, 9999)}</td>"
                f"<td>{rng.random():.3f}</td></tr>"
                for _ in range(8)
            )
            body.append(
                '<table class="data"><thead><tr><th>name</th><th>n</th><th>share</th></tr></thead>'
                f"{rows}</table>"
            )
    body.append("</article>")
    body.append('<section class="comments"><h2>Comments</h2>')
    while sum(map(len, head + nav + body)) < size * 0.95:
        body.append(
            f'<div class="comment"><span class="author">{rng.choice(WORDS)}{rng.randint(1, 99)}</span>'
            f"<p>{_sentence(rng, rng.randint(6, 30))}</p></div>"
        )
    body.append("</section></main>")
    footer = [
        '<footer><div class="contact">',
        f'<p>Newsroom: <a href="mailto:news{index}@example.org">news{index}@example.org</a>, '
        f"tips{index}@example.org, phone +44 20 7946 0{index:03d} or (555) 010-{1000 + index}.</p>",
        '</div><noscript><a href="/no-js">Plain version</a></noscript>',
        '<template><a href="/template-link">never shown</a></template>',
        "</footer>",
        "<script>" + "(function(){var a=[];for(var i=0;i<10;i++){a.push(i)}})();" * 30 + "</script>",
        "</body></html>",
    ]
    page = "\n".join(head + nav + body + footer)
    return page.encode("utf-8")


def make_pages(count: int = PAGE_COUNT) -> dict[str, bytes]:
    """`count` pages by file name."""
    return {f"page-{i}.html": make_page(i) for i in range(count)}


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server

    def do_GET(self) -> None:
        body = self.server.pages.get(self.path.removeprefix("/pages/"))
        if body is None:
            self.send_error(404)
            return
        self.send_response(200)
        self.send_header("Content-Type", "text/html; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Silent: thousands of requests would flood the benchmark's output."""


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, pages: dict[str, bytes]) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.pages = pages


class PageServer:
    """`with PageServer(pages) as server:` serves `pages` at `server.url(name)` on loopback."""

    def __init__(self, pages: dict[str, bytes]) -> None:
        self._server = _Server(pages)
        self.port: int = self._server.server_address[1]
        self._thread = threading.Thread(target=self._server.serve_forever, name="bench-pages", daemon=True)

    def url(self, name: str) -> str:
        return f"http://127.0.0.1:{self.port}/pages/{name}"

    def __enter__(self) -> PageServer:
        self._thread.start()
        return self

    def __exit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)

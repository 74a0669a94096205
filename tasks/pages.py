"""`fetch_page`: the thin network wrapper around the pure parser.

Fetch (tasks.http, bounded in time and bytes) -> parse (tasks.parse, pure) -> extract contacts.
Errors from the fetch keep their class, so a 503 is retried and a 404 fails at once.
"""

from __future__ import annotations

from typing import Any

from tasks.http import FetchedPage, FetchLimits, fetch_html
from tasks.models import FetchPagePayload
from tasks.parse import find_contacts, parse_page
from tasks.progress import report
from tasks.settings import Settings
from tasks.validation import validate


def fetch(url: str) -> FetchedPage:
    """Fetch `url` with the limits configured for this worker host."""
    return fetch_html(url, FetchLimits.from_settings(Settings.from_env()))


def decoded(page: FetchedPage) -> str | bytes:
    """The body as text when the server named its charset; bytes otherwise, so the parser can
    sniff `<meta charset>` itself."""
    if page.charset:
        try:
            return page.body.decode(page.charset, errors="replace")
        except LookupError:  # an unknown charset name: let the parser sniff instead
            return page.body
    return page.body


def fetch_page(**payload: Any) -> dict[str, Any]:
    """Fetch an HTML page and return its summary (see README, "fetch_page result")."""
    args = validate(FetchPagePayload, payload)
    report("fetch", 10, url=args.url)
    page = fetch(args.url)
    report("parse", 50, bytes=len(page.body))
    parsed = parse_page(decoded(page), page.final_url)
    report("extract", 80)
    contacts = find_contacts(parsed.text)
    report("done", 100)
    return {
        "url": page.url,
        "final_url": page.final_url,
        "status": page.status,
        "content_type": page.content_type,
        "redirects": page.redirects,
        "bytes": len(page.body),
        "elapsed_s": round(page.elapsed_s, 3),
        "title": parsed.title,
        "description": parsed.description,
        "canonical": parsed.canonical,
        "language": parsed.language,
        "headings": [h.model_dump() for h in parsed.headings],
        "links": parsed.links.model_dump(),
        "word_count": parsed.word_count,
        "emails": contacts.emails,
        "phones": contacts.phones,
    }

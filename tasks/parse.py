"""Pure HTML parsing: a page's metadata, outline, links and visible text, and contacts in text.

No network, no Redis, no work at import time: `tasks.pages` fetches, this module only reads the
bytes it is given, so every rule here is tested on saved pages in tests/fixtures/pages.

One rule for what a page "shows": headings, links and text all come from the *visible tree*, the
document without `<head>`, `<title>`, `<script>`, `<style>`, `<noscript>` and `<template>`. A link
a reader cannot see (inside `<noscript>`, or an inert `<template>`) is not counted either.
"""

from __future__ import annotations

import warnings
from collections.abc import Iterable
from typing import Final, NamedTuple
from urllib.parse import urldefrag, urljoin, urlsplit

import regex
from bs4 import BeautifulSoup, CData, MarkupResemblesLocatorWarning, Tag, XMLParsedAsHTMLWarning
from bs4.element import NavigableString, PageElement
from pydantic import BaseModel, ConfigDict


class _Frozen(BaseModel):
    """Results are values: frozen so a caller cannot mutate what another caller also holds."""

    model_config = ConfigDict(frozen=True, extra="forbid")


class Heading(_Frozen):
    """One `<h1>`..`<h6>`: its level (1-6) and its whitespace-collapsed text."""

    level: int
    text: str


class Links(_Frozen):
    """Absolute http(s) links, de-duplicated in first-seen order, split by host."""

    internal: list[str]
    external: list[str]


class ParsedPage(_Frozen):
    """What `parse_page` reads from one HTML document."""

    title: str | None
    description: str | None
    canonical: str | None
    language: str | None
    headings: list[Heading]
    links: Links
    word_count: int
    text: str


class Contacts(_Frozen):
    """E-mail addresses (lowercased) and phone numbers (digits, leading + kept) found in text."""

    emails: list[str]
    phones: list[str]


# Not part of what a reader sees. `title` is here because lxml leaves a late `<title>` in the body,
# and browsers never render one there either.
_HIDDEN_TAGS: Final = frozenset({"head", "title", "script", "style", "noscript", "template"})

# Elements that break a line when rendered: their text must not run into the neighbours' text
# ("<p>one</p><p>two</p>" is two words), while inline elements must not split a word
# ("<b>Hel</b>lo" is one word). So a space goes around these, and only these.
_BLOCK_TAGS: Final = frozenset(
    "address article aside blockquote br caption dd details dialog div dl dt fieldset figcaption "
    "figure footer form h1 h2 h3 h4 h5 h6 header hgroup hr li main nav ol option p pre section "
    "summary table tbody td tfoot th thead tr ul".split()
)
_HEADING_LEVELS: Final = {f"h{level}": level for level in range(1, 7)}

# The string classes that are page text, matched exactly as bs4's `get_text` does: their
# subclasses are comments, doctypes, processing instructions, script/style/template contents and
# ruby annotations.
_TEXT_TYPES: Final = (NavigableString, CData)

# A word is a run of Unicode word characters (letters, marks, digits, underscore), optionally
# joined by single apostrophes (' or U+2019) or hyphens: "don't", "naïve", "state-of-the-art" and
# "2024-01-15" are one word each; "3.14" and "a/b" are two. Scripts written without spaces
# (Chinese, Japanese) count a whole run as one word: a known limit of any \w-based rule.
_WORD: Final = regex.compile(r"\w+(?:['\u2019-]\w+)*")

# E-mail: a pragmatic ASCII form, local@domain.tld with a TLD of 2+ letters; not all of RFC 5322
# (no quoted local parts, no IDN). The look-arounds keep it from starting or ending inside a
# longer token, so "press@example.org." at a sentence end drops the full stop.
_EMAIL: Final = regex.compile(
    r"(?<![A-Za-z0-9._%+-])"
    r"[A-Za-z0-9._%+-]+@"
    # Labels with their dot, taken only when another label follows, and possessively: a page of
    # "a.a.a....a.1" must fail in linear time, not backtrack through every split (it did: 25 s
    # for 400 kB). The TLD, the label after the last dot, is then never given back.
    r"(?:[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?\.(?=[A-Za-z0-9]))++"
    r"[A-Za-z]{2,63}"
    r"(?![A-Za-z0-9_-]|\.[A-Za-z0-9])"
)

# Phone numbers, two accepted shapes (ASCII digits only; separators are one space, dot or dash):
#   international: "+", then 7-15 digits, where a separator may stand between any two digits and
#       one group may be in parentheses: "+44 20 7946 0958", "+1 (555) 123-4567", "+15551234567".
#       A "(0)" trunk prefix after the country code is dropped: "+44 (0)20 ..." -> "+4420...".
#   NANP: 3-3-4 digits with separators, area code optionally in parentheses, optionally after a
#       "1" and a separator: "555-123-4567", "(555) 123-4567", "555.123.4567", "1-800-555-0199".
# Rejected on purpose: digit runs without "+" or separators ("12345678901", order numbers),
# dates and years ("2024-01-15", "2024"), 7-digit locals like "555-1234" (indistinguishable from
# ranges such as "100-2000"), and anything glued to letters, digits, "/" or "-" on either side
# (ISBNs, paths, versions).
_PHONE: Final = regex.compile(
    r"""
    (?<![\w+./-])
    (?:
        \+[0-9](?:[ .-]?(?:\([0-9]{1,4}\)|[0-9]))+
      | (?:1[ .-])? (?:\([0-9]{3}\)\ ?|[0-9]{3}[ .-]) [0-9]{3}[ .-][0-9]{4}
    )
    (?![\w/-]|\.[0-9])
    """,
    regex.VERBOSE,
)
_NOT_DIGIT: Final = regex.compile(r"[^0-9]")
_MIN_PHONE_DIGITS: Final = 7
_MAX_PHONE_DIGITS: Final = 15


def parse_page(
    html: str | bytes, base_url: str, *, max_links: int = 1000, max_headings: int = 200
) -> ParsedPage:
    """Read a page's metadata, outline, links and visible text.

    `base_url` is the URL the page was fetched from (after redirects): relative links and the
    canonical URL are resolved against it, through `<base href>` when the page has one (as a
    browser does), and it decides which links are internal (same hostname; scheme and port do
    not matter; "www.example.com" is a different host from "example.com"). Links and headings
    are capped (`max_links` unique links in all, `max_headings` headings) so that a hostile page
    cannot make a result of unbounded size. Malformed or empty HTML never raises: lxml repairs
    what it can and the fields it cannot find are None or empty.
    """
    soup = _soup(html)
    doc_base = _document_base(soup, base_url)
    visible = _walk(soup)
    return ParsedPage(
        title=_title(soup),
        description=_description(soup),
        canonical=_canonical(soup, doc_base),
        language=_language(soup),
        headings=_headings(visible.headings, max_headings),
        links=_links(visible.anchors, doc_base, base_url, max_links),
        word_count=len(_WORD.findall(visible.text)),
        text=visible.text,
    )


def page_text(html: str | bytes) -> str:
    """The page's visible text, whitespace collapsed to single spaces: what `extract` patterns
    and `find_contacts` run over, the same text as `parse_page(...).text`."""
    return _walk(_soup(html)).text


def find_contacts(text: str, *, max_items: int = 100) -> Contacts:
    """E-mail addresses and phone numbers in `text` (see `_EMAIL` and `_PHONE` for the rules).

    Both lists are de-duplicated in first-seen order (e-mails after lowercasing, phones after
    normalising to digits with a leading "+" kept) and capped at `max_items` each.
    """
    emails = _first_unique((m.group().lower() for m in _EMAIL.finditer(text)), max_items)
    phones = _first_unique(
        (p for p in (_normalise_phone(m.group()) for m in _PHONE.finditer(text)) if p is not None),
        max_items,
    )
    return Contacts(emails=emails, phones=phones)


def _soup(html: str | bytes) -> BeautifulSoup:
    """Parse with lxml, without bs4's hints about the *caller's* likely mistakes.

    bs4 warns when short markup looks like a URL or file name (MarkupResemblesLocatorWarning) and
    when a document starts like XML (XMLParsedAsHTMLWarning). A fetched body is always markup we
    mean to read as HTML, so both are noise here, and under pytest's `filterwarnings = error` they
    would turn a valid (if odd) page into a crash. The filter is local to this call; RQ runs one
    job at a time per worker process, so the non-thread-safe `catch_warnings` is fine.
    """
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", MarkupResemblesLocatorWarning)
        warnings.simplefilter("ignore", XMLParsedAsHTMLWarning)
        return BeautifulSoup(html, "lxml")


def _attr(tag: Tag, name: str) -> str | None:
    """An attribute as one string: bs4 returns multi-valued ones (`rel`, `class`) as lists."""
    value = tag.get(name)
    if value is None:
        return None
    return value if isinstance(value, str) else " ".join(value)


def _collapse(text: str) -> str:
    """Runs of Unicode whitespace (including no-break spaces) become one space; ends stripped.
    Soft hyphens (U+00AD, `&shy;`) are dropped: invisible unless a line breaks there, they would
    otherwise split "Kaffee&shy;mühlen" into two words."""
    return " ".join(text.replace("\xad", "").split())


def _document_base(soup: BeautifulSoup, base_url: str) -> str:
    """The URL relative references resolve against: the first `<base href>`, itself resolved
    against the fetched URL, else the fetched URL (HTML's "document base URL")."""
    base = soup.find("base", href=True)
    href = _attr(base, "href") if isinstance(base, Tag) else None
    if href and href.strip():
        try:
            return urljoin(base_url, href.strip())
        except ValueError:  # e.g. a malformed IPv6 host: ignore the bad <base>, as browsers do
            return base_url
    return base_url


def _title(soup: BeautifulSoup) -> str | None:
    """The first `<title>` that is not an SVG image's tooltip title, collapsed; None if empty.
    Looked for anywhere, not only in `<head>`: lxml leaves a misplaced `<title>` in the body."""
    for tag in soup.find_all("title"):
        if tag.find_parent("svg") is None:
            return _collapse(tag.get_text()) or None
    return None


def _description(soup: BeautifulSoup) -> str | None:
    """The first `<meta name="description">` (name matched case-insensitively), collapsed.
    An empty one gives None: it says nothing, and a later duplicate is a template accident."""
    for meta in soup.find_all("meta"):
        if (_attr(meta, "name") or "").strip().lower() == "description":
            return _collapse(_attr(meta, "content") or "") or None
    return None


def _canonical(soup: BeautifulSoup, doc_base: str) -> str | None:
    """The first `<link rel="canonical">` with an href, absolute (fragment kept: it is the URL
    the page declares, reported as declared)."""
    for link in soup.find_all("link"):
        rels = (_attr(link, "rel") or "").lower().split()
        href = (_attr(link, "href") or "").strip()
        if "canonical" in rels and href:
            return _resolve(doc_base, href, keep_fragment=True)
    return None


def _language(soup: BeautifulSoup) -> str | None:
    """`<html lang>`, else `<meta http-equiv="content-language">`, as written (stripped)."""
    html_tag = soup.find("html")
    if isinstance(html_tag, Tag):
        lang = (_attr(html_tag, "lang") or "").strip()
        if lang:
            return lang
    for meta in soup.find_all("meta"):
        if (_attr(meta, "http-equiv") or "").strip().lower() == "content-language":
            content = (_attr(meta, "content") or "").strip()
            if content:
                return content
    return None


class _Visible(NamedTuple):
    """What one walk over the visible tree finds."""

    text: str
    headings: list[Tag]
    anchors: list[Tag]


def _walk(root: Tag) -> _Visible:
    """Collect the visible text, the headings and the `<a href>`s under `root`, in document order.

    One pass, without changing the tree: hidden elements are skipped rather than removed, and
    block elements add spaces to the output rather than to the tree (bs4's `insert_*` and
    `decompose` look up the element among its siblings, so doing it per element is quadratic in
    a wide page). Iterative, so no depth can hit the recursion limit. A `None` on the stack marks
    the end of a block element.
    """
    parts: list[str] = []
    headings: list[Tag] = []
    anchors: list[Tag] = []
    stack: list[PageElement | None] = [root]
    while stack:
        node = stack.pop()
        if node is None:
            parts.append(" ")
        elif isinstance(node, Tag):
            if node.name in _HIDDEN_TAGS:
                continue
            if node.name in _HEADING_LEVELS:
                headings.append(node)
            elif node.name == "a" and node.has_attr("href"):
                anchors.append(node)
            if node.name in _BLOCK_TAGS:
                parts.append(" ")
                stack.append(None)
            stack.extend(reversed(node.contents))
        elif type(node) in _TEXT_TYPES:
            parts.append(str(node))
    return _Visible(_collapse("".join(parts)), headings, anchors)


def _headings(tags: list[Tag], limit: int) -> list[Heading]:
    """h1..h6 in document order; a heading with no text (an icon, an empty anchor) is skipped."""
    headings: list[Heading] = []
    for tag in tags:
        if len(headings) >= limit:
            break
        text = _walk(tag).text
        if text:
            headings.append(Heading(level=_HEADING_LEVELS[tag.name], text=text))
    return headings


def _links(anchors: list[Tag], doc_base: str, base_url: str, limit: int) -> Links:
    """Every visible `<a href>`, absolute, without fragment, http(s) only."""
    host = urlsplit(base_url).hostname
    seen: set[str] = set()
    internal: list[str] = []
    external: list[str] = []
    for anchor in anchors:
        if len(seen) >= limit:
            break
        url = _resolve(doc_base, _attr(anchor, "href") or "", keep_fragment=False)
        if url is None or url in seen:
            continue
        seen.add(url)
        (internal if urlsplit(url).hostname == host else external).append(url)
    return Links(internal=internal, external=external)


def _resolve(base: str, href: str, *, keep_fragment: bool) -> str | None:
    """`href` made absolute against `base`; None unless it is an http(s) URL with a host.

    mailto:, tel:, javascript:, data: and the like are dropped here by the scheme test. A
    reference urllib cannot parse (a broken IPv6 literal) is dropped rather than raised.
    """
    try:
        url = urljoin(base, href.strip())
        if not keep_fragment:
            url = urldefrag(url).url
        parts = urlsplit(url)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            return None
    except ValueError:
        return None
    return url


def _normalise_phone(candidate: str) -> str | None:
    """Digits only, "+" kept; None when the digit count is outside 7-15 (E.164's maximum)."""
    international = candidate.startswith("+")
    if international:
        candidate = candidate.replace("(0)", "", 1)
    digits: str = _NOT_DIGIT.sub("", candidate)
    if not _MIN_PHONE_DIGITS <= len(digits) <= _MAX_PHONE_DIGITS:
        return None
    return "+" + digits if international else digits


def _first_unique(items: Iterable[str], limit: int) -> list[str]:
    """The first `limit` distinct items, in the order first seen."""
    seen: dict[str, None] = {}
    for item in items:
        if len(seen) >= limit:
            break
        seen.setdefault(item, None)
    return list(seen)

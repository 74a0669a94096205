"""The exact parse of tests/fixtures/pages/article.html, reusable by any test that fetches it.

`tests/test_parse.py` checks `tasks.parse` against it directly; an end-to-end test that fetches
the page from the local page server (`/pages/article.html`) through the real worker pipeline can
compare its job result with the same values:

    expected = expected_article(page_server.url("/pages/article.html"))

Everything URL-shaped is built here from `base_url` by plain string formatting, not by calling
urllib's resolution, so this stays an independent statement of what the parser must produce.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

PAGES_DIR = Path(__file__).parent / "fixtures" / "pages"
ARTICLE_PATH = PAGES_DIR / "article.html"

# The page's visible text (`ParsedPage.text`, `page_text`): no <head>, script, style, comment,
# <noscript> or <template> content; block elements separated by one space.
ARTICLE_TEXT = (
    "Field Notes Home Blog About Skip to content Taming Catastrophic Backtracking By Ada Quill · "
    "15 January 2024 · 6 min read Last spring one of our extract workers pinned a CPU core for "
    "forty minutes. The culprit was a pattern a customer had pasted into a form: it looked "
    "harmless, it passed review, and on one unlucky input it tried more paths than there are "
    "atoms in the universe. What goes wrong A backtracking engine tries alternatives one by one. "
    "When a pattern nests one quantifier inside another, as in (a+)+$, a string of n letters "
    "followed by a character that cannot match gives the engine 2n ways to split the run before "
    "it gives up. Thirty letters are enough to stall it; five thousand are enough to outlive the "
    "machine. The nested quantifier Both the inner and the outer loop can take any share of the "
    "run, so every split is a fresh attempt. Rewriting the pattern as a+$ removes the ambiguity, "
    "but you cannot rewrite patterns your users send you. Bounding the damage We switched from "
    "the standard library\u2019s re to the regex module, whose matching functions take a timeout "
    "argument. A pattern that runs out of time raises TimeoutError; the job reports it in the "
    "result and moves on to the next pattern. It\u2019s a small change with a large effect. Deadlines, "
    "not per-call timeouts A timeout per call is not a budget per pattern: a loop that calls "
    "search a thousand times could spend a thousand timeouts. We measure one deadline per pattern "
    "and check it between matches. A note on finditer The iterator keeps one clock for its whole "
    "life, which is what we want. We pinned that with a test, so an upgrade that changes it can\u2019t "
    "slip through unnoticed. Further reading Catastrophic backtracking, explained The regex "
    "module on PyPI The re module Comments on our previous post Our previous post Slides from the "
    "talk More posts tagged regex Benchmark data (FTP) Get in touch Questions, corrections or war "
    "stories? Write to Ada.Quill@Example.org or to the editors at press@example.org. You can also "
    "call the newsroom on +44 20 7946 0958, or our US desk on +1 (555) 123-4567 (toll free: "
    "1-800-555-0199). Our support line, (555) 987-6543, is staffed on weekdays. Please don\u2019t send "
    "PRESS@example.org anything confidential. Not phone numbers: the release of 2024-01-15, the "
    "year 2024, ticket 12345678901, pages 100-2000, version 2.14.4 and ISBN 978-0-596-52812-6. "
    "Share Call us Plain text Not a link Back to the blog © 2024 Field Notes — written in Bristol "
    "& Zürich. Follow us on Mastodon."
)


def expected_article(base_url: str) -> dict[str, Any]:
    """The `ParsedPage` of article.html fetched from `base_url`, as `model_dump()` gives it but
    without `text` (see ARTICLE_TEXT), plus `contacts`: `find_contacts(text).model_dump()`.

    `base_url` is where the page was fetched from, e.g. "http://127.0.0.1:8123/pages/article.html":
    an http(s) URL whose path ends in a file name, without query or fragment (relative links
    are worked out here by cutting the path at its last "/").
    """
    parts = urlsplit(base_url)
    if parts.scheme not in ("http", "https") or parts.query or parts.fragment or not parts.path:
        raise ValueError(f"expected a plain http(s) page URL, not {base_url!r}")
    origin = f"{parts.scheme}://{parts.netloc}"
    directory = base_url.rsplit("/", 1)[0]
    return {
        "title": "Taming Catastrophic Backtracking in Production Regexes | Field Notes",
        "description": (
            "How we bounded regex run time in our job workers: timeouts, deadlines and the "
            "patterns that blew up."
        ),
        # href="/pages/article.html": absolute-path, so it follows the host, not the directory.
        "canonical": f"{origin}/pages/article.html",
        "language": "en-GB",
        "headings": [
            {"level": 1, "text": "Taming Catastrophic Backtracking"},
            {"level": 2, "text": "What goes wrong"},
            {"level": 3, "text": "The nested quantifier"},
            # the empty <h3> (an icon only) is skipped
            {"level": 2, "text": "Bounding the damage"},
            {"level": 3, "text": "Deadlines, not per-call timeouts"},
            {"level": 4, "text": "A note on finditer"},
            {"level": 2, "text": "Further reading"},
            {"level": 2, "text": "Get in touch"},
            # the <h3> inside <template> is not part of the visible page
        ],
        "links": {
            # First-seen order. Left out: mailto:, tel:, javascript:, data:, ftp:, an <a> without
            # href, and the links inside <noscript> and <template>.
            "internal": [
                f"{origin}/",  # "/" twice (logo and nav)
                f"{origin}/blog/",  # "/blog/" again at the end
                f"{directory}/about.html",
                base_url,  # "#main": the page itself once the fragment is gone
                f"{directory}/other-post.html",  # "other-post.html#comments" and "./other-post.html"
                f"{origin}/blog/tags/regex",  # href with spaces around it
            ],
            "external": [
                "https://pypi.org/project/regex/",  # "#description" dropped; the duplicate merged
                "https://www.regular-expressions.info/catastrophic.html",
                "https://docs.python.org/3/library/re.html",  # "HTTPS:" scheme, "#module-re"
                f"{parts.scheme}://cdn.example.net/slides/regex-timeouts.pdf",  # "//cdn..."
                "https://social.example.com/@fieldnotes",
            ],
        },
        "word_count": 432,
        "contacts": {
            # "PRESS@example.org" merged with "press@example.org"; "ldjson@example.org" and
            # "tracker@example.org" live in scripts and are not text.
            "emails": ["ada.quill@example.org", "press@example.org"],
            "phones": ["+442079460958", "+15551234567", "18005550199", "5559876543"],
        },
    }

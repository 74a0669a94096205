"""Parser bombs: hostile HTML is bounded in size (the fetch cap) and in time, never a crash."""

from __future__ import annotations

import time

from tasks.parse import page_text, parse_page


def test_deeply_nested_html_parses_in_bounded_time() -> None:
    """20,000 nested elements (far past Python's recursion limit) parse without error, quickly."""
    depth = 20_000
    html = "<html><body>" + "<div>" * depth + "deep text" + "</div>" * depth + "</body></html>"
    started = time.monotonic()
    page = parse_page(html, "http://example.com/")
    assert time.monotonic() - started < 10
    assert page.word_count == 2
    assert page_text(html) == "deep text"


def test_unclosed_tags_and_attribute_floods_are_survived() -> None:
    """Thousands of unclosed tags and a tag with a huge attribute list still give a summary."""
    html = "<html><head><title>t</title></head><body>" + "<p><b><i>x" * 5000
    html += "<a " + " ".join(f'a{i}="{i}"' for i in range(20_000)) + ' href="/ok">link</a>'
    started = time.monotonic()
    page = parse_page(html, "http://example.com/")
    assert time.monotonic() - started < 10
    assert page.title == "t"
    assert page.links.internal == ["http://example.com/ok"]

"""`extract`: caller-supplied regular expressions over a page's text or a given text.

Each pattern runs under the `regex` module's timeout (tasks.extract), so a catastrophic pattern
fails alone, with a clear error in its result, and the worker goes on to the next job.
"""

from __future__ import annotations

from typing import Any

from tasks.extract import run_patterns
from tasks.models import ExtractPayload
from tasks.pages import decoded, fetch
from tasks.parse import page_text
from tasks.progress import report
from tasks.settings import Settings
from tasks.validation import validate


def extract(**payload: Any) -> dict[str, Any]:
    """Return each pattern's matches (or its error) over the chosen text."""
    args = validate(ExtractPayload, payload)
    source: dict[str, Any]
    if args.url is not None:
        report("fetch", 10, url=args.url)
        page = fetch(args.url)
        report("parse", 40, bytes=len(page.body))
        text = page_text(decoded(page))
        source = {"url": page.url, "final_url": page.final_url, "status": page.status}
    else:
        text = args.text or ""
        source = {"text": True}
    report("extract", 60, patterns=len(args.patterns))
    results = run_patterns(
        text,
        args.patterns,
        flags=args.flags,
        timeout_s=Settings.from_env().pattern_timeout,
        max_matches=args.max_matches,
    )
    report("done", 100)
    return {
        "source": source,
        "text_length": len(text),
        "results": [r.model_dump() for r in results],
    }

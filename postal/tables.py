"""Plain-text tables for the terminal: left-aligned columns, a header, no borders, so the
output also reads well in logs and greps by column."""

from __future__ import annotations

from collections.abc import Sequence

GAP = "  "


def table(headers: Sequence[str], rows: Sequence[Sequence[object]], empty: str = "(none)") -> str:
    """`rows` under `headers`, every column as wide as its widest cell; `empty` when no rows."""
    if not rows:
        return f"{GAP.join(headers)}\n{empty}"
    cells = [[_cell(value) for value in row] for row in rows]
    widths = [max(len(h), *(len(row[i]) for row in cells)) for i, h in enumerate(headers)]
    lines = [
        GAP.join(text.ljust(width) for text, width in zip(line, widths, strict=True)).rstrip()
        for line in [list(headers), *cells]
    ]
    return "\n".join(lines)


def _cell(value: object) -> str:
    if value is None:
        return "-"
    return " ".join(str(value).split())  # one line per row, whatever the value holds


def shorten(text: str, limit: int) -> str:
    """`text` cut to `limit` characters with an ellipsis, for free-form columns (messages)."""
    return text if len(text) <= limit else text[: limit - 1] + "…"

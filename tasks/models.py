"""Payload models: what a caller may send for each task, checked before anything touches Redis.

The API validates a request against these models and stores the validated JSON as the job's
keyword arguments; the job function validates it again, because Redis can also be written by
`rq enqueue` or another client that never saw the API.
"""

from __future__ import annotations

from typing import Annotated, Literal
from urllib.parse import urlsplit

import regex
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator

MAX_URL_LENGTH = 2048
MAX_PATTERNS = 20
MAX_PATTERN_LENGTH = 1000
MAX_TEXT_LENGTH = 1_000_000

RegexFlag = Literal["IGNORECASE", "MULTILINE", "DOTALL", "VERBOSE"]


def _http_url(value: str) -> str:
    if len(value) > MAX_URL_LENGTH:
        raise ValueError(f"URL is longer than {MAX_URL_LENGTH} characters")
    try:
        parts = urlsplit(value)
        port = parts.port  # raises ValueError on a non-numeric or out-of-range port
    except ValueError as exc:
        raise ValueError(f"not a valid URL: {exc}") from None
    if parts.scheme not in ("http", "https"):
        raise ValueError("URL scheme must be http or https")
    if not parts.hostname:
        raise ValueError("URL has no host")
    if port == 0:
        raise ValueError("URL port must be between 1 and 65535")
    return value


def _compiles(pattern: str) -> str:
    try:
        regex.compile(pattern)
    except regex.error as exc:
        raise ValueError(f"pattern does not compile: {exc}") from None
    return pattern


HttpUrl = Annotated[str, Field(min_length=1), AfterValidator(_http_url)]
Pattern = Annotated[str, Field(min_length=1, max_length=MAX_PATTERN_LENGTH), AfterValidator(_compiles)]


class Payload(BaseModel):
    """Base of every payload: unknown fields are an error, not silently dropped."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class MessagePayload(Payload):
    """`message`: log a message, optionally after a delay, and return it."""

    message: str = Field(min_length=1, max_length=10_000)
    delay_s: float = Field(default=0.0, ge=0, le=60, description="Seconds to sleep before answering.")


class FetchPagePayload(Payload):
    """`fetch_page`: fetch an HTML page and summarise it."""

    url: HttpUrl


class ExtractPayload(Payload):
    """`extract`: run regular expressions over a page's text (`url`) or over `text`."""

    patterns: list[Pattern] = Field(min_length=1, max_length=MAX_PATTERNS)
    text: str | None = Field(default=None, max_length=MAX_TEXT_LENGTH)
    url: HttpUrl | None = None
    flags: list[RegexFlag] = Field(default_factory=list)
    max_matches: int = Field(default=100, ge=1, le=1000, description="Matches kept per pattern.")

    @model_validator(mode="after")
    def _one_source(self) -> ExtractPayload:
        if (self.text is None) == (self.url is None):
            raise ValueError("give exactly one of 'text' or 'url'")
        return self

"""The one error hierarchy of job code: transient failures retry, permanent ones fail at once.

`tasks.failures.record_failure` reads this split: only a `TransientError` keeps the retry
budget RQ gave the job; every other exception (a `PermanentError`, a bug, a timeout) sends
the job to the failed registry on its first occurrence, where it waits for a fix and a requeue.
"""


class PostalError(Exception):
    """Base of every error raised on purpose by postal's job code."""


class TransientError(PostalError):
    """Raised when a job failed for a reason that may pass: a timeout, a refused connection,
    an HTTP 5xx or 429. The job is retried with backoff per its task's policy."""


class PermanentError(PostalError):
    """Raised when a job cannot succeed by being run again with the same input: an HTTP 4xx,
    a body that is not HTML or is too large, an invalid payload or pattern."""


class FetchTimeout(TransientError):
    """Raised when a fetch did not connect, or did not finish reading, within its limits."""


class FetchConnectionError(TransientError):
    """Raised when the remote host could not be reached (DNS, refused, reset)."""


class RemoteServerError(TransientError):
    """Raised when the remote server answered 5xx or 429 (it may be fine later)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class RemoteClientError(PermanentError):
    """Raised when the remote server answered a 4xx other than 429 (the request is wrong)."""

    def __init__(self, message: str, status: int) -> None:
        super().__init__(message)
        self.status = status


class NotHTML(PermanentError):
    """Raised when a fetched response's Content-Type is not an HTML type."""


class BodyTooLarge(PermanentError):
    """Raised when a response body (after decompression) exceeds the configured byte cap."""


class TooManyRedirects(PermanentError):
    """Raised when a fetch followed more redirects than allowed."""


class InvalidPayload(PermanentError):
    """Raised when a job's payload does not validate against its task's model (a job
    enqueued around the API, e.g. with `rq enqueue`)."""


class BadPattern(PermanentError):
    """Raised when a caller-supplied regular expression does not compile."""

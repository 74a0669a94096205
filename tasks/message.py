"""The demo task: log a message, optionally after a delay, and return it."""

from __future__ import annotations

import logging
import time
from typing import Any

from tasks.models import MessagePayload
from tasks.progress import report
from tasks.validation import validate

log = logging.getLogger("postal.message")


def message(**payload: Any) -> dict[str, Any]:
    """Return `{"message": ...}` after sleeping `delay_s` seconds; proves the pipeline end to end."""
    args = validate(MessagePayload, payload)
    if args.delay_s:
        report("sleeping", 10, delay_s=args.delay_s)
        time.sleep(args.delay_s)
    log.info("message: %s", args.message)
    report("done", 100)
    return {"message": args.message}

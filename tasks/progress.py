"""Progress reports from inside a running job, stored in `job.meta["progress"]`.

`GET /jobs/<id>` shows the last report, so a caller polling a long fetch sees which step it is
in. Outside a worker (a test calling the function directly) there is no job and nothing is saved.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime
from typing import Any

from rq import get_current_job

log = logging.getLogger("postal.job")


def report(step: str, percent: int, **detail: Any) -> None:
    """Record that the current job reached `step` (`percent` of the way through)."""
    job = get_current_job()
    if job is None:
        return
    job.meta["progress"] = {
        "step": step,
        "percent": percent,
        "at": datetime.now(UTC).isoformat(),
        **detail,
    }
    # save_meta writes only the meta field, so it cannot clobber status fields the worker owns.
    job.save_meta()  # type: ignore[no-untyped-call]  # rq 3.0 leaves save_meta unannotated
    log.info("job %s step=%s percent=%d", job.id, step, percent)

"""`postal`: the command line for what `rq` and `supervisorctl` lack (click wiring only; the
work is in postal/submit.py, watch.py, failed.py, status.py).

Exit status: 0 done; 1 the job failed (or was stopped/canceled); 2 bad usage, an unknown task
or a payload the API would refuse (nothing enqueued); 3 Redis unreachable; 4 `--wait-timeout`
passed before the job ended (it goes on).
"""

from __future__ import annotations

import json
import logging
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import click
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import RedisError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import NoSuchJobError
from rq.job import JobStatus

from postal import failed as failures
from postal.status import Status, queue_counts, render, status_view, supervised, workers
from postal.submit import parse_payload, refusal, submit
from postal.supervisor_rpc import DEFAULT_CONFIG
from postal.watch import ProgressDisplay, WaitTimeout, follow
from tasks.connection import Postal, redis_client
from tasks.jobinfo import last_error
from tasks.settings import Settings, SettingsError
from tasks.submission import SubmissionError

EXIT_USAGE = 2
EXIT_UNAVAILABLE = 3
EXIT_WAIT_TIMEOUT = 4


class Refused(click.ClickException):
    """Raised when the input is wrong: an unknown task, queue or a payload the API refuses."""

    exit_code = EXIT_USAGE


class RedisUnavailable(click.ClickException):
    """Raised when Redis cannot be reached or refuses postal's commands."""

    exit_code = EXIT_UNAVAILABLE


class StillRunning(click.ClickException):
    """Raised when `--wait-timeout` passed before the job ended."""

    exit_code = EXIT_WAIT_TIMEOUT


def _settings() -> Settings:
    try:
        return Settings.from_env()
    except SettingsError as exc:
        raise Refused(str(exc)) from None


def _redis_problem(exc: RedisError) -> RedisUnavailable:
    where = _settings().redis_url_redacted
    if isinstance(exc, RedisConnectionError | RedisTimeoutError):
        return RedisUnavailable(f"Redis at {where} is unreachable ({type(exc).__name__}: {exc})")
    return RedisUnavailable(f"Redis at {where} refused the command ({type(exc).__name__}: {exc})")


class _Group(click.Group):
    """Turns Redis trouble in any command into one line and exit status 3, not a traceback."""

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except RedisError as exc:
            raise _redis_problem(exc) from None


@click.group(cls=_Group)
def main() -> None:
    """postal's command line: submit and follow jobs, inspect and requeue failures, and see
    supervisord, the queues and the workers at once. Uses REDIS_URL and POSTAL_* like the API."""
    # Job event lines (tasks.eventlog) are for the service logs; a terminal gets the tables.
    # The events' counters in Redis are still written, so `postal submit` jobs are counted.
    logging.getLogger("postal.events").disabled = True


def _connect() -> Postal:
    settings = _settings()
    return Postal.build(settings, redis_client(settings))


def _queues(state: Postal, queue: str | None) -> list[str]:
    if queue is None:
        return list(state.queues)
    if queue not in state.queues:
        raise Refused(f"unknown queue {queue!r}; known queues: {', '.join(state.queues)}")
    return [queue]


def _dump(value: Any) -> str:
    return json.dumps(value, indent=2, ensure_ascii=False, default=_json_default)


def _json_default(value: Any) -> Any:
    if isinstance(value, datetime):
        return value.isoformat()
    return str(value)


@main.command("submit")
@click.argument("task")
@click.option("--payload", default="{}", show_default=True, metavar="JSON", help="The task's payload object.")
@click.option("-q", "--queue", help="Queue instead of the task's default.")
@click.option(
    "--timeout",
    "timeout_s",
    type=click.IntRange(min=1),
    metavar="S",
    help="The job's timeout in seconds (may only shorten the task's, as in the API).",
)
@click.option("--wait", is_flag=True, help="Follow the job with a progress bar and print its result.")
@click.option(
    "--wait-timeout",
    type=click.FloatRange(min=0, min_open=True),
    metavar="S",
    help="With --wait: give up waiting after S seconds (exit 4; the job goes on).",
)
def submit_command(
    task: str, payload: str, queue: str | None, timeout_s: int | None, wait: bool, wait_timeout: float | None
) -> None:
    """Validate TASK's payload as the API does, enqueue it, and print the job id."""
    try:
        body = parse_payload(payload)
    except ValueError as exc:
        raise Refused(str(exc)) from None
    state = _connect()
    try:
        job = submit(state, task, body, queue, timeout_s)
    except SubmissionError as exc:
        if exc.status == 422:
            raise Refused(refusal(exc)) from None
        raise click.ClickException(exc.message) from None
    click.echo(job.id)
    if not wait:
        return
    try:
        with ProgressDisplay(sys.stderr) as display:
            status = follow(job, display, wait_timeout)
    except WaitTimeout as exc:
        raise StillRunning(
            f"job {job.id} is still {exc.status.value} after {wait_timeout} s; it goes on"
        ) from None
    except NoSuchJobError:
        raise click.ClickException(f"job {job.id} disappeared while waiting (deleted or expired)") from None
    except KeyboardInterrupt:
        click.echo(f"stopped waiting; job {job.id} goes on", err=True)
        sys.exit(130)
    if status == JobStatus.FINISHED:
        click.echo(_dump(job.return_value(refresh=True)))
        return
    error = last_error(job, status)
    reason = f": {error.get('type')}: {error.get('message')}" if error else ""
    raise click.ClickException(f"job {job.id} {status.value}{reason}")


@main.command("failed")
@click.option("-q", "--queue", help="Only this queue's failed jobs.")
@click.option("--json", "as_json", is_flag=True, help="Print the groups as JSON.")
def failed_command(queue: str | None, as_json: bool) -> None:
    """Failed jobs grouped by task and exception type: count, newest example, its message."""
    state = _connect()
    jobs = failures.failed_jobs(state, _queues(state, queue))
    groups = failures.group(jobs)
    if as_json:
        click.echo(_dump([failures.group_view(g) for g in groups]))
        return
    click.echo(failures.render_groups(groups))
    click.echo(f"\n{len(jobs)} failed job(s) in {len(groups)} group(s)")


@main.command("requeue")
@click.option("--task", help="Only failed jobs of this task.")
@click.option("--exception", help="Only failed jobs whose last error has this type, e.g. NotHTML.")
@click.option("-q", "--queue", help="Only this queue's failed jobs.")
@click.option("--all", "everything", is_flag=True, help="Allow requeueing without --task/--exception.")
@click.option("--dry-run", is_flag=True, help="Show what would be requeued; requeue nothing.")
def requeue_command(
    task: str | None, exception: str | None, queue: str | None, everything: bool, dry_run: bool
) -> None:
    """Requeue the chosen failed jobs, each with its full retry budget back."""
    if not (task or exception or everything):
        raise Refused("choose jobs with --task and/or --exception, or pass --all to requeue every failed job")
    state = _connect()
    chosen = failures.select(failures.failed_jobs(state, _queues(state, queue)), task, exception)
    if not chosen:
        click.echo("no failed jobs match")
        return
    if dry_run:
        click.echo(failures.render_groups(failures.group(chosen)))
        click.echo(f"\nwould requeue {len(chosen)} job(s) (dry run: nothing requeued)")
        return
    with click.progressbar(length=len(chosen), label="requeueing", file=sys.stderr, show_pos=True) as bar:
        requeued = failures.requeue(state, chosen, lambda _job, _ok: bar.update(1))
    skipped = len(chosen) - len(requeued)
    note = f" ({skipped} skipped: no longer in the failed registry)" if skipped else ""
    click.echo(f"requeued {len(requeued)} job(s){note}")


@main.command("status")
@click.option(
    "-c",
    "--config",
    type=click.Path(dir_okay=False, path_type=Path),
    default=DEFAULT_CONFIG,
    show_default=True,
    help="supervisord.conf whose [unix_http_server] socket to ask.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the status as JSON.")
def status_command(config: Path, as_json: bool) -> None:
    """supervisord's processes, the queues (depth, started, failed, scheduled) and the workers."""
    processes = supervised(config)
    problem: RedisUnavailable | None = None
    try:
        state = _connect()
        status = Status(processes=processes, queues=queue_counts(state), workers=workers(state))
    except RedisError as exc:
        problem = _redis_problem(exc)
        unread = "not read: see the Redis error below"
        status = Status(processes=processes, queues=unread, workers=unread)
    if as_json:
        click.echo(_dump(status_view(status)))
    else:
        click.echo(render(status))
    if problem is not None:
        raise problem

"""`PostalWorker`: RQ's forking worker plus the guarantees postal promises (see README,
"Reliability"). Selected with `rq worker --worker-class tasks.worker.PostalWorker`.

- Its work horse dies with it: the horse asks the kernel for SIGKILL when its parent dies
  (PR_SET_PDEATHSIG). RQ's horse calls setpgrp (rq/worker/worker_classes.py,
  `fork_work_horse`), so supervisord's stopasgroup/killasgroup never reach it; without this,
  a SIGKILLed worker leaves an orphan that finishes a job RQ already gave to another worker.
- Jobs of dead workers on this node are recovered within seconds (tasks.recovery): at start,
  at each maintenance pass, and every `RECOVERY_INTERVAL_S` while busy with a long job.
- A work horse killed under a live worker (OOM killer, segfault) is recorded as an attempt
  and retried per the task's policy, like a transient error.
- A job requeued after its retries ran out gets its full budget back (tasks.retries).
- Jobs run in a warm horse (tasks.horse): one forked child per worker that runs job after job,
  with the task modules and their heavy dependencies imported once, before the fork. A crash,
  a kill or a hung job still takes down only the horse, which is recorded and replaced; the horse
  is also replaced after `POSTAL_HORSE_MAX_JOBS` jobs or above `POSTAL_HORSE_MAX_MEMORY_MB`.
- Per job it sends fewer Redis commands than RQ: heartbeats without a pipeline are sent at most
  once per `HEARTBEAT_EVERY_S` and an unchanged state is not written again.
- Redis unreachable for a while (a restart, a Sentinel failover) pauses the worker instead of
  ending it; what it could not record meanwhile is recovered once Redis answers.
"""

from __future__ import annotations

import ctypes
import importlib
import logging
import os
import random
import signal
import time
from datetime import datetime
from typing import Any, NoReturn

from redis.client import Pipeline
from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.exceptions import InvalidJobOperation, NoSuchJobError, StopRequested
from rq.executions import Execution
from rq.job import Job, JobStatus
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.utils import now
from rq.worker import Worker, WorkerStatus
from rq.worker.base import logger as rq_worker_logger

from tasks import events
from tasks.dequeue import InHandQueue, in_hand_key
from tasks.failures import append_error
from tasks.horse import HorseGone, LineReader, WarmHorse, write_message
from tasks.node import node_id
from tasks.recovery import (
    expire_own_entries,
    recover_abandoned,
    release_dead_scheduler_locks,
    return_in_hand,
)
from tasks.registry import TASKS
from tasks.retries import mark_exhausted, restore_budget
from tasks.settings import Settings

log = logging.getLogger("postal.worker")

PR_SET_PDEATHSIG = 1
HEARTBEAT_GRACE_S = 30
# A failover or restart in progress. RQ's main loop lets these end the worker unless they come
# from its dequeue (rq/worker/base.py, `work`); every other Redis call that loop makes is
# wrapped below, so one worker process rides through a Sentinel failover.
REDIS_UNREACHABLE = (RedisConnectionError, RedisTimeoutError)
RECOVERY_INTERVAL_S = 10.0
HEARTBEAT_EVERY_S = 1.0
# RQ kills a horse that outlives its job's timeout by this much (rq/worker/worker_classes.py,
# `monitor_work_horse`): the job's own SIGALRM did not stop it.
HUNG_HORSE_GRACE_S = 60
HORSE_EXIT_GRACE_S = 5.0


def preload_task_modules() -> None:
    """Import every task's module (and so bs4, lxml, regex) once, in the worker, before it forks
    its horse: a replacement horse starts warm and the pages are shared copy-on-write."""
    for spec in TASKS.values():
        importlib.import_module(spec.func.rpartition(".")[0])


def die_with_parent(parent_pid: int) -> None:
    """Ask the kernel to SIGKILL this process when its parent dies; exit now if it already has."""
    libc = ctypes.CDLL(None, use_errno=True)
    if libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0) != 0:
        raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
    if os.getppid() != parent_pid:  # the parent died between fork() and prctl()
        os._exit(1)


def _tie_children_to(worker_pid: int) -> None:
    """Every process this worker forks (the horse, RQ's scheduler process) dies with it.

    Only direct children: a job that forks its own helpers is left to manage them.
    """

    def after_fork_in_child() -> None:
        if os.getppid() == worker_pid:
            die_with_parent(worker_pid)

    os.register_at_fork(after_in_child=after_fork_in_child)


class PostalWorker(Worker):
    """A forking RQ worker with a warm horse that never leaves an orphan and recovers dead workers'
    jobs fast."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Reliable multi-queue dequeue (tasks.dequeue): rq/worker/base.py calls
        # `self.queue_class.dequeue_any(...)`, so a per-worker subclass carries the list name.
        self.queue_class = InHandQueue.for_worker(self.name)
        self._in_hand_key = in_hand_key(self.name)
        self._postal_pid = os.getpid()
        self._postal_settings = Settings.from_env()
        self._last_recovery = 0.0
        self._heartbeat_sent = 0.0
        self._suspension_checked = 0.0
        self._horse: WarmHorse | None = None
        self._ending: tuple[Job, events.Timing] | None = None  # the job handle_job_success records
        # jobs whose horse exited while Redis was unreachable: (job id, queue), see execute_job
        self._unrecorded: list[tuple[str, Queue]] = []
        _tie_children_to(self._postal_pid)
        preload_task_modules()

    def register_birth(self) -> None:
        """Register as RQ does, plus the node id that lets peers check this worker's PID."""
        super().register_birth()  # type: ignore[no-untyped-call]  # unannotated in rq 3.0
        self.connection.hset(self.key, "postal_node", node_id())

    # -- the warm horse, worker side ---------------------------------------------------------

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Register the execution, hand the job to the warm horse and watch it until it answers
        or dies (RQ's `execute_job` forks a new horse here instead).

        Redis unreachable while the job's state is written (a failover, a restart) is logged,
        not fatal: RQ's loop would end the worker (rq/worker/base.py, `work`). The horse is idle
        or dead by then (heartbeats tolerate the error), so nothing runs behind RQ's back, and
        whatever was not recorded is settled by recovery once Redis answers: an id left in hand
        goes back to its queue, and this worker's started entry for the job is expired at once
        so the job is retried (or requeued, if it never started) without waiting for its
        heartbeat to lapse (tasks.recovery)."""
        try:
            self._execute(job, queue)
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: job %s: Redis unreachable while recording it: %s", self.name, job.id, exc)
            self._unrecorded.append((job.id, queue))

    def _execute(self, job: Job, queue: Queue) -> None:
        if restore_budget(job, self._postal_settings):
            log.info("job %s was requeued after its retries ran out: budget restored", job.id)
        execution = self.prepare_execution(job)
        horse = self._hand_over(job, queue, execution)
        self._horse_pid = horse.pid  # RQ's cold shutdown and kill-horse command use it
        try:
            self._watch(horse, job, queue, execution)
        finally:
            self._horse_pid = 0
            self.executions.pop(execution.id, None)
        self._retire_if_spent()
        self.set_state(WorkerStatus.IDLE)

    def _hand_over(self, job: Job, queue: Queue, execution: Execution) -> WarmHorse:
        """Send the job to the horse, forking one first if there is none (or it just died)."""
        message = {
            "job": job.id,
            "queue": queue.name,
            "execution": execution.id,
            "created_at": execution.created_at.timestamp(),
        }
        for _ in range(2):
            if self._horse is None:
                self._horse = WarmHorse.spawn(self._serve_jobs)
            try:
                self._horse.send(message)
                return self._horse
            except HorseGone:  # it died while idle: reap it, fork a fresh one, try once more
                self._discard_horse()
        raise RuntimeError("a freshly forked horse would not take a job")

    def _watch(self, horse: WarmHorse, job: Job, queue: Queue, execution: Execution) -> None:
        """Wait for the horse's answer, keeping heartbeats (and recovery) going meanwhile; a horse
        that outlives the job's timeout by HUNG_HORSE_GRACE_S is killed, as RQ does."""
        job.started_at = now()
        while not horse.replies.ready(self.job_monitoring_interval):
            working_s = (now() - job.started_at).total_seconds()
            if job.timeout is not None and job.timeout != -1 and working_s > job.timeout + HUNG_HORSE_GRACE_S:
                self.heartbeat(self.job_monitoring_interval + 60)
                self.kill_horse()
                break
            self.maintain_heartbeats(job, execution)
        try:
            reply = horse.replies.read()
        except HorseGone:
            pass
        else:
            horse.jobs_run += 1
            if reply.get("outcome") == "gone":  # deleted while queued: drop its execution record
                with self.connection.pipeline() as pipeline:
                    self.cleanup_execution(job, pipeline=pipeline, execution=execution)
                    pipeline.execute()
            return
        status = horse.reap()
        self._discard_horse()
        self._record_horse_death(job, queue, execution, horse.pid, status or 0)

    def _record_horse_death(
        self, job: Job, queue: Queue, execution: Execution, pid: int, status: int
    ) -> None:
        """What RQ's `monitor_work_horse` does when its horse exits abnormally: a stopped job
        goes to the failed registry as stopped, any other unfinished job is a failed attempt."""
        try:
            job_status = job.get_status()
        except InvalidJobOperation:
            return  # finished and already expired
        if self._stopped_job_id == job.id:
            self._handle_stopped_job(job, queue, execution)
        elif job_status not in (JobStatus.FINISHED, JobStatus.FAILED):
            job.ended_at = now()
            signal_msg = f" (signal {os.WTERMSIG(status)})" if status and os.WIFSIGNALED(status) else ""
            exc_string = f"Work-horse terminated unexpectedly; waitpid returned {status}{signal_msg}; "
            log.warning("worker %s: job %s failed (%s)", self.name, job.id, exc_string)
            self.handle_work_horse_killed(job, pid, status, None)
            self.handle_job_failure(job, queue=queue, exc_string=exc_string, execution=execution)

    def _retire_if_spent(self) -> None:
        """Replace the horse after enough jobs or above its memory bound: a job that leaks only
        costs a fresh fork, never the worker."""
        horse = self._horse
        if horse is None:
            return
        settings = self._postal_settings
        too_old = horse.jobs_run >= settings.horse_max_jobs
        too_big = horse.rss_bytes() > settings.horse_max_memory_mb * 1024 * 1024
        if too_old or too_big:
            log.info(
                "worker %s: replacing its horse after %d jobs (%d MB resident)",
                self.name,
                horse.jobs_run,
                horse.rss_bytes() // (1024 * 1024),
            )
            self._discard_horse()

    def _discard_horse(self) -> None:
        horse, self._horse = self._horse, None
        if horse is not None:
            horse.stop(HORSE_EXIT_GRACE_S)

    def teardown(self) -> None:
        """Let the idle horse exit (end of file on its pipe), then RQ's teardown."""
        if not self.is_horse:
            self._discard_horse()
        super().teardown()  # type: ignore[no-untyped-call]  # unannotated in rq 3.0

    # -- the warm horse, horse side ----------------------------------------------------------

    def _serve_jobs(self, requests: int, replies: int) -> NoReturn:
        """The horse's life: run each job the worker sends, answer, repeat until end of file.

        Like RQ's `main_work_horse`: own process group (so supervisord's group signals reach
        only the worker, which drains), SIGINT ignored, and any exception escaping RQ's own
        handling ends the horse, which the worker then records."""
        if os.getppid() != self._postal_pid:  # the worker died before the at-fork hook ran
            os._exit(1)
        os.setpgrp()
        random.seed()
        self.setup_work_horse_signals()  # type: ignore[no-untyped-call]  # unannotated in rq 3.0
        self._is_horse = True
        self.log = rq_worker_logger
        reader = LineReader(requests)
        while True:
            try:
                message = reader.read()
            except HorseGone:
                os._exit(0)
            try:
                outcome = self._run_one(message)
            except BaseException:  # noqa: BLE001 - like RQ's horse: the worker records the death
                os._exit(1)
            write_message(replies, {"job": message["job"], "outcome": outcome})

    def _run_one(self, message: dict[str, Any]) -> str:
        """Rebuild the job, queue and execution the worker registered, and perform the job."""
        job_id = str(message["job"])
        os.environ["RQ_JOB_ID"] = job_id
        try:
            job = self.job_class.fetch(job_id, connection=self.connection, serializer=self.serializer)
        except NoSuchJobError:  # deleted since the worker took it: nothing to run
            log.warning("worker %s: job %s vanished before it could run", self.name, job_id)
            return "gone"
        job.redis_server_version = self.get_redis_server_version()  # type: ignore[no-untyped-call]  # unannotated
        queue = self.queue_class(
            str(message["queue"]),
            connection=self.connection,
            job_class=self.job_class,
            serializer=self.serializer,
            death_penalty_class=self.death_penalty_class,
        )
        execution = Execution(str(message["execution"]), job.id, self.connection, worker_name=self.name)
        created_at = float(message["created_at"])
        execution.created_at = datetime.fromtimestamp(created_at, tz=execution.created_at.tzinfo)
        return "finished" if self.perform_job(job, queue, execution) else "failed"

    # -- fewer Redis commands per job --------------------------------------------------------

    def prepare_execution(self, job: Job) -> Execution:
        """RQ's (rq/executions.py, `prepare_execution`) and what RQ's horse then does first
        (rq/worker/base.py, `prepare_job_execution`), in one transaction, together with dropping
        the id from this worker's in-hand list: from then on the started registry answers for it.
        One round trip instead of three, and one heartbeat instead of two."""
        with self.connection.pipeline() as pipeline:
            ttl = self.get_heartbeat_ttl(job)
            execution = Execution.create(job, ttl, pipeline=pipeline, worker_name=self.name)
            self.executions[execution.id] = execution
            self.set_state(WorkerStatus.BUSY, pipeline=pipeline)
            pipeline.lrem(self._in_hand_key, 1, job.id)
            self.heartbeat(ttl, pipeline=pipeline)
            job.prepare_for_execution(self.name, pipeline=pipeline)  # status, started_at, worker
            pipeline.persist(job.key)
            pipeline.execute()
        events.started(job, self.name)
        return execution

    def prepare_job_execution(self, job: Job, remove_from_intermediate_queue: bool = False) -> None:
        """In the horse: nothing left to write, the worker's `prepare_execution` did it (and
        tasks.dequeue never uses RQ's intermediate list)."""
        self.procline(f"Processing {job.func_name} from {job.origin} since {time.time()}")  # type: ignore[no-untyped-call]  # unannotated in rq 3.0

    def heartbeat(self, timeout: int | None = None, pipeline: Pipeline | None = None) -> None:
        """RQ's, skipped when one went out less than HEARTBEAT_EVERY_S ago and no pipeline is given.

        RQ heartbeats three or four times per job; every TTL it sets is tens of seconds, so one
        per second keeps the worker's key alive just as well. Heartbeats inside a pipeline always
        go out: `maintain_heartbeats` reads their replies by position. A direct one that cannot
        reach Redis is skipped rather than ending the worker (see `execute_job`)."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        if time.monotonic() - self._heartbeat_sent < HEARTBEAT_EVERY_S:
            return
        self._heartbeat_sent = time.monotonic()
        try:
            super().heartbeat(timeout)
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: heartbeat skipped, Redis unreachable: %s", self.name, exc)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's `rq suspend` check (a pipelined heartbeat plus EXISTS), at most once per
        HEARTBEAT_EVERY_S instead of before every job: a suspension takes effect within a second.
        Skipped while Redis is unreachable (the dequeue that follows waits for Redis with RQ's
        own backoff)."""
        if time.monotonic() - self._suspension_checked < HEARTBEAT_EVERY_S:
            return
        self._suspension_checked = time.monotonic()
        try:
            super().check_for_suspension(burst)
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: suspension check skipped, Redis unreachable: %s", self.name, exc)

    def handle_execution_ended(self, job: Job, queue: Queue, heartbeat_ttl: int) -> None:
        """RQ's stamps the end time and extends the job's heartbeat so that a success or failure
        callback has time to run (rq/worker/base.py, `_finalize_success`); without a callback that
        extra round trip buys nothing."""
        if job.success_callback is not None or job.failure_callback is not None:
            super().handle_execution_ended(job, queue, heartbeat_ttl)
        else:
            job.ended_at = now()

    def set_state(self, state: str, pipeline: Pipeline | None = None) -> None:
        """RQ's, without writing a state the worker is already in (RQ sets "idle" twice a job).
        A direct write that cannot reach Redis is skipped: the state is rewritten at the next
        change, and RQ calls this outside its dequeue retry loop."""
        if pipeline is not None:
            super().set_state(state, pipeline)
            return
        if state == self.get_state():
            return
        try:
            super().set_state(state)
        except REDIS_UNREACHABLE as exc:
            self._state = state
            log.warning("worker %s: state %s not recorded, Redis unreachable: %s", self.name, state, exc)

    def handle_job_success(
        self, job: Job, queue: Queue, started_job_registry: StartedJobRegistry, execution: Execution
    ) -> None:
        """RQ's, with the `finished` metrics written inside RQ's own transaction (see
        `increment_successful_job_count`), then the `finished` line (tasks.events; runs in the
        work horse)."""
        timing = events.Timing.of(job)
        self._ending = (job, timing)
        try:
            super().handle_job_success(job, queue, started_job_registry, execution)
        finally:
            self._ending = None
        events.ended(job, "finished", timing, self.name, recorded=True)

    def increment_successful_job_count(self, pipeline: Pipeline | None = None) -> None:
        """RQ's counter, plus the finished job's metrics in the same pipeline: RQ calls this
        inside the MULTI of `handle_job_success` (rq/worker/base.py), and again after a
        WatchError retry, so the metrics are written exactly once, with the job's own state."""
        super().increment_successful_job_count(pipeline)
        if self._ending is not None and pipeline is not None:
            job, timing = self._ending
            try:
                events.record_end(pipeline, job, "finished", timing)
            except Exception:  # metrics must never cost the job its success
                log.exception("worker %s: metrics of job %s not recorded", self.name, job.id)

    def handle_job_failure(
        self,
        job: Job,
        queue: Queue,
        started_job_registry: StartedJobRegistry | None = None,
        exc_string: str = "",
        execution: Execution | None = None,
    ) -> None:
        """RQ's retry-or-fail, then the `retried`/`failed`/`stopped` event and metrics. Timing is
        taken first: a retry re-enqueues the job, which resets `enqueued_at`."""
        timing = events.Timing.of(job)
        super().handle_job_failure(job, queue, started_job_registry, exc_string, execution)
        events.ended(job, events.outcome_after_failure(job), timing, self.name)

    def register_death(self) -> None:
        """RQ's, after returning anything still in hand (normally nothing) to its queue."""
        return_in_hand(self.connection, self.name)
        super().register_death()  # type: ignore[no-untyped-call]  # unannotated in rq 3.0

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        """Like RQ's, with a 30 s grace instead of 60 s, so a job of a worker on a host nobody
        can inspect is taken back sooner (rq/worker/base.py, `get_heartbeat_ttl`)."""
        interval = self.job_monitoring_interval
        if job.timeout and job.timeout > 0:
            return int(min(job.timeout - working_time, interval)) + HEARTBEAT_GRACE_S
        return int(interval) + HEARTBEAT_GRACE_S

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's, after settling jobs whose end could not be recorded (once Redis answers)."""
        if self._unrecorded:
            self._recover()
        self._stop_if_requested()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def request_stop(self, signum: int, frame: Any) -> None:
        """RQ's warm shutdown, with the request also kept in `_stop_requested` when idle.

        Idle, RQ raises StopRequested from the signal handler, wherever the worker happens to be
        (rq/worker/base.py, `_shutdown`). Raised inside code that must survive its own errors
        (a recovery pass, an exception handler, metrics) it can be caught there and lost, and the
        worker would run on until supervisord's SIGKILL. The flag makes the next maintenance pass
        or dequeue stop the worker all the same."""
        self._stop_requested = True
        super().request_stop(signum, frame)  # type: ignore[no-untyped-call]  # unannotated in rq 3.0

    def _stop_if_requested(self) -> None:
        if self._stop_requested:
            raise StopRequested()

    def run_maintenance_tasks(self) -> None:
        """Recovery of dead workers' jobs and scheduler locks, then RQ's maintenance (which starts
        this worker's scheduler if a lock is free); skipped while Redis is unreachable."""
        self._recover()
        self._stop_if_requested()
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # unannotated in rq 3.0
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: maintenance skipped, Redis unreachable: %s", self.name, exc)

    def maintain_heartbeats(self, job: Job, execution: Execution) -> None:
        """While a long job runs, keep recovering others' abandoned jobs (idle peers may be none).

        A heartbeat that cannot reach Redis (a failover or restart in progress) is skipped, not
        fatal: RQ would let the error end the worker (rq/worker/base.py, `work`) while its horse
        runs on; the next interval reaches the new master."""
        try:
            super().maintain_heartbeats(job, execution)
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: job %s: heartbeat skipped, Redis unreachable: %s", self.name, job.id, exc)
            return
        if time.monotonic() - self._last_recovery >= RECOVERY_INTERVAL_S:
            self._recover()

    def _recover(self) -> None:
        self._last_recovery = time.monotonic()
        try:
            # Between jobs nothing is in this worker's own hand; an id still there was popped by
            # a reply that never arrived, or the master that saw it started was lost in a
            # failover before replicating that: it goes back to its queue.
            return_in_hand(self.connection, self.name)
            for job_id, queue in list(self._unrecorded):
                if expire_own_entries(self.connection, queue, job_id, self.name):
                    log.warning("job %s: its end was not recorded; recovering it now", job_id)
                self._unrecorded.remove((job_id, queue))
            recover_abandoned(self.connection, self.queues, self._exc_handlers)
            released = release_dead_scheduler_locks(self.connection, self.queues)
            scheduler = self.scheduler
            if (
                released
                and scheduler is not None
                and (not scheduler._process or not scheduler._process.is_alive())
            ):
                scheduler.acquire_locks(auto_start=True)  # type: ignore[no-untyped-call]  # unannotated in rq
        except StopRequested:  # the signal handler's, not a failure of the pass
            raise
        except Exception:  # maintenance must not take the worker down; the next pass tries again
            log.exception("worker %s: recovering abandoned jobs failed", self.name)

    def handle_work_horse_killed(self, job: Job, retpid: int, ret_val: int, rusage: Any) -> None:
        """Record the lost attempt (OOM killer, segfault, kill -9 of the horse); RQ then retries
        the job if it has retries left, else fails it (rq/worker/worker_classes.py)."""
        job.get_meta(refresh=True)  # keep what the horse saved (progress) before adding to it
        reason = (
            f"signal {os.WTERMSIG(ret_val)}" if ret_val and os.WIFSIGNALED(ret_val) else f"status {ret_val}"
        )
        append_error(
            job,
            "WorkHorseKilled",
            f"the work horse died ({reason}) while running the job: out of memory, a crash, or a kill",
            transient=True,
        )
        if not job.retries_left:
            mark_exhausted(job)
        job.save_meta()  # type: ignore[no-untyped-call]  # rq 3.0 leaves save_meta unannotated
        events.abandoned(job, f"the work horse died ({reason})", settled_by_rq=False, worker=self.name)

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
- Redis unreachable for a while (a restart, a Sentinel failover) pauses the worker instead of
  ending it; what it could not record meanwhile is recovered once Redis answers.
"""

from __future__ import annotations

import ctypes
import logging
import os
import signal
import time
from typing import Any

from redis.exceptions import ConnectionError as RedisConnectionError
from redis.exceptions import TimeoutError as RedisTimeoutError
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.worker import Worker

from tasks.dequeue import InHandQueue, in_hand_key
from tasks.failures import append_error
from tasks.node import node_id
from tasks.recovery import (
    expire_own_entries,
    recover_abandoned,
    release_dead_scheduler_locks,
    return_in_hand,
)
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
    """A forking RQ worker that never leaves an orphan and recovers dead workers' jobs fast."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        # Reliable multi-queue dequeue (tasks.dequeue): rq/worker/base.py calls
        # `self.queue_class.dequeue_any(...)`, so a per-worker subclass carries the list name.
        self.queue_class = InHandQueue.for_worker(self.name)
        self._in_hand_key = in_hand_key(self.name)
        self._postal_pid = os.getpid()
        self._postal_settings = Settings.from_env()
        self._last_recovery = 0.0
        # jobs whose horse exited while Redis was unreachable: (job id, queue), see execute_job
        self._unrecorded: list[tuple[str, Queue]] = []
        _tie_children_to(self._postal_pid)

    def register_birth(self) -> None:
        """Register as RQ does, plus the node id that lets peers check this worker's PID."""
        super().register_birth()  # type: ignore[no-untyped-call]  # unannotated in rq 3.0
        self.connection.hset(self.key, "postal_node", node_id())

    def main_work_horse(self, job: Job, queue: Queue) -> None:
        """In the forked horse, whose at-fork hook already tied its life to the worker's: a horse
        whose worker died before the hook ran (it saw another parent) must not run the job."""
        if os.getppid() != self._postal_pid:
            os._exit(1)
        super().main_work_horse(job, queue)

    def prepare_execution(self, job: Job) -> Execution:
        """Register the job as started (RQ), then drop it from this worker's in-hand list: from
        here on the started registry answers for it."""
        execution = super().prepare_execution(job)
        self.connection.lrem(self._in_hand_key, 1, job.id)
        return execution

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

    def execute_job(self, job: Job, queue: Queue) -> None:
        """Restore an exhausted job's retry budget (it was requeued), then run it as RQ does.

        Redis unreachable while the job's state is written (a failover, a restart) is logged,
        not fatal: RQ's loop would end the worker (rq/worker/base.py, `work`). The horse has
        exited by then (heartbeats tolerate the error), so nothing runs behind RQ's back, and
        whatever was not recorded is settled by recovery once Redis answers: an id left in hand
        goes back to its queue, and this worker's started entry for the job is expired at once
        so the job is retried (or requeued, if it never started) without waiting for its
        heartbeat to lapse (tasks.recovery)."""
        try:
            if restore_budget(job, self._postal_settings):
                log.info("job %s was requeued after its retries ran out: budget restored", job.id)
            super().execute_job(job, queue)
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: job %s: Redis unreachable while recording it: %s", self.name, job.id, exc)
            self._unrecorded.append((job.id, queue))

    def dequeue_job_and_maintain_ttl(self, timeout: int | None, max_idle_time: int | None = None) -> Any:
        """RQ's, after settling jobs whose end could not be recorded (once Redis answers)."""
        if self._unrecorded:
            self._recover()
        return super().dequeue_job_and_maintain_ttl(timeout, max_idle_time)

    def heartbeat(self, timeout: int | None = None, pipeline: Any = None) -> None:
        """RQ's heartbeat; a direct one (not in a pipeline) that cannot reach Redis is skipped
        rather than ending the worker, for the same reason as in `execute_job`."""
        if pipeline is not None:
            super().heartbeat(timeout, pipeline)
            return
        try:
            super().heartbeat(timeout)
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: heartbeat skipped, Redis unreachable: %s", self.name, exc)

    def run_maintenance_tasks(self) -> None:
        """Recovery of dead workers' jobs and scheduler locks, then RQ's maintenance (which starts
        this worker's scheduler if a lock is free); skipped while Redis is unreachable."""
        self._recover()
        try:
            super().run_maintenance_tasks()  # type: ignore[no-untyped-call]  # unannotated in rq 3.0
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: maintenance skipped, Redis unreachable: %s", self.name, exc)

    def set_state(self, state: str, pipeline: Any = None) -> None:
        """RQ's; a direct write (not in a pipeline) that cannot reach Redis is skipped: the state
        is rewritten at the next change, and RQ calls this outside its dequeue retry loop."""
        if pipeline is not None:
            super().set_state(state, pipeline)
            return
        try:
            super().set_state(state)
        except REDIS_UNREACHABLE as exc:
            self._state = state
            log.warning("worker %s: state %s not recorded, Redis unreachable: %s", self.name, state, exc)

    def check_for_suspension(self, burst: bool) -> None:
        """RQ's check, skipped while Redis is unreachable (the dequeue that follows waits for
        Redis with RQ's own backoff)."""
        try:
            super().check_for_suspension(burst)
        except REDIS_UNREACHABLE as exc:
            log.warning("worker %s: suspension check skipped, Redis unreachable: %s", self.name, exc)

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

"""The warm work horse: one forked child per worker that runs job after job.

Stock RQ forks a fresh horse for every job (rq/worker/worker_classes.py, `fork_work_horse`):
each job pays for a fork, a new Redis connection and, worst of all, re-importing the task's
modules (bs4, lxml, regex) in a process that is thrown away afterwards. A warm horse keeps all of
that and still isolates the worker from the job: a job that segfaults, is OOM-killed or hangs
takes down only the horse, which the worker records (tasks.worker) and replaces on the next job.

This module is only the process handle and its pipe protocol: one JSON line per message, worker
-> horse `{"job", "queue", "execution", "created_at"}`, horse -> worker `{"job", "outcome"}`. A
line is far below PIPE_BUF, so each write is atomic, and the worker sends the next job only after
the reply, so messages never interleave.
"""

from __future__ import annotations

import json
import os
import select
import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, NoReturn

PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class HorseGone(Exception):
    """Raised when the horse's end of the pipe is closed: the horse died or exited."""


class LineReader:
    """Reads newline-terminated JSON messages from a pipe, one at a time."""

    def __init__(self, fd: int) -> None:
        self.fd = fd
        self._buffer = b""

    def ready(self, timeout: float) -> bool:
        """Whether a message (or EOF) can be read without blocking for more than `timeout` s."""
        if b"\n" in self._buffer:
            return True
        readable, _, _ = select.select([self.fd], [], [], timeout)
        return bool(readable)

    def read(self) -> dict[str, Any]:
        """The next message; blocks until one arrives. Raises HorseGone at end of file."""
        while b"\n" not in self._buffer:
            chunk = os.read(self.fd, 65536)
            if not chunk:
                raise HorseGone("the other end of the pipe closed")
            self._buffer += chunk
        line, _, self._buffer = self._buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message


def write_message(fd: int, message: dict[str, Any]) -> None:
    """Write one message. A closed reader raises BrokenPipeError (Python ignores SIGPIPE)."""
    os.write(fd, json.dumps(message, separators=(",", ":")).encode() + b"\n")


@dataclass
class WarmHorse:
    """The worker's handle on its horse: PID, the two pipe ends it keeps, and jobs run so far."""

    pid: int
    to_horse: int
    replies: LineReader
    jobs_run: int = 0
    reaped: bool = field(default=False, repr=False)

    @classmethod
    def spawn(cls, serve: Callable[[int, int], NoReturn]) -> WarmHorse:
        """Fork a horse that runs `serve(requests_fd, replies_fd)` and never returns."""
        requests_r, requests_w = os.pipe()
        replies_r, replies_w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the horse
            try:
                os.close(requests_w)
                os.close(replies_r)
                serve(requests_r, replies_w)
            finally:
                os._exit(1)  # serve never returns; an exception escaping it ends the horse
        os.close(requests_r)
        os.close(replies_w)
        return cls(pid=pid, to_horse=requests_w, replies=LineReader(replies_r))

    def send(self, message: dict[str, Any]) -> None:
        """Hand the horse a job. Raises HorseGone if it is no longer reading."""
        try:
            write_message(self.to_horse, message)
        except BrokenPipeError:
            raise HorseGone("the horse is not reading") from None

    def reap(self, block: bool = True) -> int | None:
        """The horse's wait status once it has exited (None if it still runs and not `block`)."""
        if self.reaped:
            return 0
        try:
            pid, status = os.waitpid(self.pid, 0 if block else os.WNOHANG)
        except ChildProcessError:  # already reaped elsewhere (RQ's cold shutdown waits for it)
            self.reaped = True
            return 0
        if pid == 0:
            return None
        self.reaped = True
        return status

    def rss_bytes(self) -> int:
        """Resident memory of the horse (0 if it is gone), from /proc: no extra dependency."""
        try:
            with open(f"/proc/{self.pid}/statm", encoding="ascii") as statm:
                return int(statm.read().split()[1]) * PAGE_BYTES
        except (OSError, IndexError, ValueError):
            return 0

    def close(self) -> None:
        """Close the worker's pipe ends (the horse sees end of file and exits)."""
        for fd in (self.to_horse, self.replies.fd):
            try:
                os.close(fd)
            except OSError:
                pass

    def stop(self, grace_s: float) -> None:
        """Ask the horse to exit (end of file on its request pipe); SIGKILL it after `grace_s`.

        Only called between jobs, so the horse is idle and exits at once."""
        self.close()
        deadline = time.monotonic() + grace_s
        while self.reap(block=False) is None:
            if time.monotonic() >= deadline:
                for kill in (os.killpg, os.kill):  # its process group, once it has made one
                    try:
                        kill(self.pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                self.reap()
                return
            time.sleep(0.01)

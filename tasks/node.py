"""Which machine and PID namespace this process runs in, so a worker can tell whether another
worker's PID is one it can check.

A hostname is not enough: containers and network namespaces can share one, and a PID means
something only inside one PID namespace of one boot. `boot_id` + the PID-namespace inode names
that space exactly (Linux). `POSTAL_NODE_ID` overrides it (e.g. to make two namespaces that
share PIDs look apart, or for tests that simulate a worker on another host).
"""

from __future__ import annotations

import os
import socket
from functools import cache
from pathlib import Path

import psutil


@cache
def node_id() -> str:
    """A stable id of this process's (boot, PID namespace); falls back to the hostname."""
    override = os.environ.get("POSTAL_NODE_ID")
    if override:
        return override
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        pid_ns = os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return f"host:{socket.gethostname()}"
    return f"{boot}:{pid_ns}"


def process_alive(pid: int, started_before: float | None = None) -> bool:
    """Whether `pid` is a live process that started no later than `started_before` (epoch s).

    The start-time check guards against PID reuse: a dead worker's PID given to a new process
    after the worker registered is not that worker.
    """
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass  # exists, owned by someone else
    if started_before is None:
        return True
    try:
        return bool(psutil.Process(pid).create_time() <= started_before + 1.0)
    except psutil.NoSuchProcess:
        return False
    except psutil.Error:  # e.g. AccessDenied: it exists and we cannot look closer
        return True

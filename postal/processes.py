"""Helpers for the processes the test suite and the benchmarks start: a free loopback port, and
stopping a process by its PID together with whatever it left behind.

Descendants are found from the PID rather than killed by process group: RQ's work horses call
setpgrp (rq/worker/worker_classes.py), so a group kill would miss them, and nothing else on the
machine is touched."""

from __future__ import annotations

import signal
import socket
import subprocess

import psutil


def free_port() -> int:
    """A loopback TCP port nothing listens on right now (never 6379: the OS hands out ephemeral ports)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def stop_tree(proc: subprocess.Popen[bytes], grace: float = 10.0) -> None:
    """SIGTERM `proc` (a second SIGTERM after `grace`/2 for RQ's cold shutdown), SIGKILL it after
    `grace`, then SIGKILL any descendant that outlived it."""
    if proc.poll() is not None:
        proc.wait()
        return
    try:
        descendants = psutil.Process(proc.pid).children(recursive=True)
    except psutil.NoSuchProcess:
        descendants = []
    proc.send_signal(signal.SIGTERM)
    try:
        proc.wait(grace / 2)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(grace / 2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    for child in descendants:
        try:
            child.kill()
            child.wait(5)
        except psutil.NoSuchProcess:
            pass

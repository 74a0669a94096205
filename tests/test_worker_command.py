"""postal.worker_command: tests and benchmarks start workers with supervisord.conf's own command."""

from __future__ import annotations

from pathlib import Path

import pytest

from postal.worker_command import worker_args


def test_worker_args_are_the_shipped_command() -> None:
    """The arguments after `rq` in [program:worker]: PostalWorker, JSON serializer, our config."""
    args = worker_args()
    assert args[0] == "worker"
    assert args[args.index("--worker-class") + 1] == "tasks.worker.PostalWorker"
    assert args[args.index("--serializer") + 1] == "json"
    assert args[args.index("--config") + 1] == "tasks.rqconfig"


def test_worker_args_refuse_another_program(tmp_path: Path) -> None:
    """A worker program that is not the rq CLI, or a missing file, is an error, not a guess."""
    conf = tmp_path / "supervisord.conf"
    conf.write_text("[program:worker]\ncommand=python -m something --flag\n")
    with pytest.raises(ValueError, match="rq"):
        worker_args(conf)
    with pytest.raises(FileNotFoundError):
        worker_args(tmp_path / "missing.conf")

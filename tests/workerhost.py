"""A worker host: real supervisord running deploy/supervisord-worker.conf from a temp root.

The config is copied unchanged into `<root>/deploy/`, so its `%(here)s/..` (and with it `var/`)
is the temp root, as it is the checkout on a real worker host. The caller decides where it runs
(`prefix`, e.g. `ip netns exec B ...`) and waits for the workers to register, since only it
knows how to reach that Redis.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from tests.procs import BIN, ROOT, child_env, stop_tree

CONFIG = ROOT / "deploy" / "supervisord-worker.conf"


@dataclass
class WorkerHost:
    """A running worker-only supervisord."""

    root: Path
    proc: subprocess.Popen[bytes]
    env: dict[str, str]

    def logs(self) -> str:
        return "\n".join(
            f"--- {log.name}\n{log.read_text(errors='replace')[-4000:]}"
            for log in sorted((self.root / "var" / "log").glob("*.log"))
        )


@contextmanager
def running_worker_host(
    redis_url: str, tmp_path: Path, workers: int, prefix: Sequence[str] = (), **env_extra: str
) -> Iterator[WorkerHost]:
    """supervisord -n with the worker-only config, `workers` workers, REDIS_URL=`redis_url`.

    The host's root is a short temp dir, not under `tmp_path`: the config puts supervisord's
    socket at `<root>/deploy/../var/supervisor.sock`, and a unix socket path is limited to 107
    bytes (pytest-xdist's `popen-gwN` level made it too long, and supervisord then never started
    its programs). `tmp_path` gets a link to it for the test's output."""
    root = Path(tempfile.mkdtemp(prefix="postal-wh-"))
    (tmp_path / "worker-host").symlink_to(root)
    (root / "deploy").mkdir(parents=True)
    (root / "var" / "log").mkdir(parents=True)
    shutil.copy(CONFIG, root / "deploy" / CONFIG.name)
    # a checkout has both; supervisorctl and rolling-restart read supervisord.conf's socket
    shutil.copy(ROOT / "supervisord.conf", root / "supervisord.conf")
    env = child_env(redis_url, WORKERS=str(workers), **env_extra)
    # as README tells worker hosts: the venv's bin first, so supervisord finds `rq`
    env["PATH"] = os.pathsep.join([str(BIN), env.get("PATH", "")])
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [*prefix, str(BIN / "supervisord"), "-n", "-c", str(root / "deploy" / CONFIG.name)],
        cwd=root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    host = WorkerHost(root=root, proc=proc, env=env)
    try:
        yield host
    except BaseException:
        print(host.logs())
        raise
    finally:
        stop_tree(proc, grace=60)
        shutil.rmtree(root, ignore_errors=True)

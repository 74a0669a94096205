"""A real Redis Sentinel deployment for tests: one master, one replica, three sentinels, every
one a `redis-server` process on a free loopback port with its own temp dir.

Data nodes run the shipped deploy/redis.conf (AOF): a killed master that comes back reloads its
data before Sentinel makes it a replica. Without persistence an auto-restarted master comes back
empty, and if Sentinel ever promotes it again its replica resyncs to nothing (Redis's replication
docs warn about exactly this; an early version of this test saw it happen). Sentinel timings are
shortened so that a killed master is replaced within seconds; `down-after-milliseconds` stays at
3 s because a loaded test machine can stall a healthy Redis for over a second.
"""

from __future__ import annotations

import shutil
import signal
import subprocess
import time
from pathlib import Path

from redis import Redis

from tests.procs import ROOT, free_port, stop_tree, wait_for

MASTER_NAME = "postal"
DOWN_AFTER_MS = 3000
FAILOVER_TIMEOUT_MS = 5000


class Node:
    """One redis-server (data node or sentinel) that can be killed and started again in place."""

    def __init__(self, binary: str, directory: Path, args: list[str], port: int | None = None) -> None:
        self.binary = binary
        self.port = port or free_port()
        self.directory = directory
        self.args = args
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)

    def start(self) -> None:
        with (self.directory / "redis.log").open("ab") as log:
            self.proc = subprocess.Popen(
                [self.binary, *self.args], stdout=log, stderr=subprocess.STDOUT, cwd=self.directory
            )
        client = Redis(port=self.port, socket_timeout=2)
        try:
            wait_for(lambda: _pings(client), 20, f"redis-server on port {self.port}")
        finally:
            client.close()

    def kill(self) -> None:
        """SIGKILL: no shutdown save, no goodbye to replicas or clients."""
        if self.proc is not None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()
            self.proc = None

    def stop(self) -> None:
        if self.proc is not None:
            stop_tree(self.proc)
            self.proc = None


def _pings(client: Redis) -> bool:
    try:
        return bool(client.ping())
    except Exception:  # noqa: BLE001 - not up yet
        return False


def _data_args(port: int, directory: Path, replica_of: int | None) -> list[str]:
    # a copy per node: Sentinel sends CONFIG REWRITE, which would edit the shipped file
    directory.mkdir(parents=True, exist_ok=True)
    conf = directory / "redis.conf"
    shutil.copyfile(ROOT / "deploy" / "redis.conf", conf)
    args = [str(conf), "--port", str(port), "--bind", "127.0.0.1"]
    args += ["--dir", str(directory)]
    if replica_of is not None:
        args += ["--replicaof", "127.0.0.1", str(replica_of)]
    return args


class SentinelCluster:
    """Master, replica and three sentinels; `stop()` stops every process it started."""

    def __init__(self, binary: str, directory: Path) -> None:
        self.binary = binary
        self.directory = directory
        master_port = free_port()
        self.data = [
            Node(binary, directory / "a", _data_args(master_port, directory / "a", None), master_port),
        ]
        replica_port = free_port()
        self.data.append(
            Node(
                binary, directory / "b", _data_args(replica_port, directory / "b", master_port), replica_port
            )
        )
        self.sentinels: list[Node] = []
        for i in range(3):
            port = free_port()
            conf = directory / f"s{i}" / "sentinel.conf"
            conf.parent.mkdir(parents=True)
            conf.write_text(
                f"port {port}\nbind 127.0.0.1\ndir {conf.parent}\n"
                f"sentinel monitor {MASTER_NAME} 127.0.0.1 {master_port} 2\n"
                f"sentinel down-after-milliseconds {MASTER_NAME} {DOWN_AFTER_MS}\n"
                f"sentinel failover-timeout {MASTER_NAME} {FAILOVER_TIMEOUT_MS}\n"
                f"sentinel parallel-syncs {MASTER_NAME} 1\n"
            )
            self.sentinels.append(Node(binary, conf.parent, [str(conf), "--sentinel"], port))

    @property
    def sentinels_setting(self) -> str:
        """The value of REDIS_SENTINELS for this cluster."""
        return ",".join(f"127.0.0.1:{s.port}" for s in self.sentinels)

    def start(self) -> None:
        """Start everything and wait until each sentinel knows the replica and its two peers
        (a failover needs a quorum of 2 and a majority of 3 to elect a leader)."""
        for node in [*self.data, *self.sentinels]:
            node.start()
        wait_for(self._ready, 30, "sentinels to discover the replica and each other", interval=0.2)

    def _ready(self) -> bool:
        for node in self.sentinels:
            client = Redis(port=node.port, socket_timeout=2, decode_responses=True)
            try:
                replicas = client.sentinel_slaves(MASTER_NAME)
                peers = client.sentinel_sentinels(MASTER_NAME)
                if not any(
                    "s_down" not in r["flags"] and r.get("master-link-status") == "ok" for r in replicas
                ):
                    return False
                if len(peers) < 2:
                    return False
            except Exception:  # noqa: BLE001 - not ready yet
                return False
            finally:
                client.close()
        return True

    def master_port(self) -> int | None:
        """The master's port as the first answering sentinel reports it."""
        for node in self.sentinels:
            if node.proc is None:
                continue
            client = Redis(port=node.port, socket_timeout=2, decode_responses=True)
            try:
                address = client.sentinel_get_master_addr_by_name(MASTER_NAME)
                return int(address[1]) if address else None
            except Exception:  # noqa: BLE001, S112 - a sentinel down: ask the next one
                continue
            finally:
                client.close()
        return None

    def node_on(self, port: int) -> Node:
        return next(n for n in self.data if n.port == port)

    def wait_failover(self, old_port: int, timeout: float = 30) -> float:
        """Wait until the sentinels name another master; return how long that took."""
        started = time.monotonic()
        wait_for(lambda: self.master_port() not in (None, old_port), timeout, "Sentinel failover", 0.05)
        return time.monotonic() - started

    def url_of_master(self) -> str:
        port = self.master_port()
        assert port is not None
        return f"redis://127.0.0.1:{port}/0"

    def stop(self) -> None:
        for node in [*self.sentinels, *self.data]:
            node.stop()

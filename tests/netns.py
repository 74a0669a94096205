"""Two Linux network namespaces joined by a veth pair: two "hosts" with their own network stacks
on one machine, for tests of workers that reach Redis over a real (and slowable) link.

The veth is created inside namespace A with its peer placed straight into B, so nothing is ever
added to the machine's own network; both ends and their addresses exist only inside the
namespaces, and deleting the namespaces removes them. Names carry the test's PID so parallel
runs do not collide.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

# A /30 of the private range: only ever configured inside the namespaces made here.
ADDRESS_A = "10.250.0.1"
ADDRESS_B = "10.250.0.2"
PREFIX = 30


@dataclass(frozen=True)
class NetnsPair:
    """Namespaces `a` and `b`; `veth_a` (ADDRESS_A) in A is linked to `veth_b` (ADDRESS_B) in B."""

    a: str
    b: str
    veth_a: str
    veth_b: str

    def command(self, namespace: str, *argv: str) -> list[str]:
        """`argv` run inside `namespace` (iproute2 execs it there: the PID stays the same)."""
        return [_binary("ip"), "netns", "exec", namespace, *argv]

    def run(
        self, namespace: str, *argv: str, timeout: float = 60, cwd: Path | None = None
    ) -> subprocess.CompletedProcess[str]:
        """Run `argv` inside `namespace` to completion; its output, whatever the exit status."""
        return subprocess.run(
            self.command(namespace, *argv),
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
            cwd=cwd,
        )


def _binary(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.skip(
            f"the `{name}` command (Debian package iproute2, see tests/system-packages.txt) is missing"
        )
    return path


def _ip(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([_binary("ip"), *args], capture_output=True, text=True, timeout=30, check=False)


def _check(done: subprocess.CompletedProcess[str]) -> None:
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(map(str, done.args))} failed: {done.stderr.strip()}")


def create_pair(tag: str) -> NetnsPair:
    """Make the two namespaces and the link, or skip the test when this machine forbids it."""
    if os.geteuid() != 0:
        pytest.skip("network namespaces need root (ip netns add); run the suite as root to include this test")
    pair = NetnsPair(a=f"postal-{tag}-a", b=f"postal-{tag}-b", veth_a="veth-api", veth_b="veth-worker")
    done = _ip("netns", "add", pair.a)
    if done.returncode != 0:
        if "Operation not permitted" in done.stderr or "Permission denied" in done.stderr:
            pytest.skip(f"this machine forbids network namespaces: {done.stderr.strip()}")
        _check(done)
    try:
        _check(_ip("netns", "add", pair.b))
        # both ends made in place: the veth never exists in the machine's own namespace
        link = ["link", "add", pair.veth_a, "type", "veth", "peer", "name", pair.veth_b, "netns", pair.b]
        _check(_ip("-n", pair.a, *link))
        for namespace, veth, address in ((pair.a, pair.veth_a, ADDRESS_A), (pair.b, pair.veth_b, ADDRESS_B)):
            _check(_ip("-n", namespace, "addr", "add", f"{address}/{PREFIX}", "dev", veth))
            _check(_ip("-n", namespace, "link", "set", veth, "up"))
            _check(_ip("-n", namespace, "link", "set", "lo", "up"))
    except BaseException:
        destroy_pair(pair)
        raise
    return pair


def destroy_pair(pair: NetnsPair) -> None:
    """Delete the link and both namespaces (whichever exist). Call it after stopping the
    processes started in them; any that still lingers there (only the test's own can be in these
    namespaces) is SIGKILLed by PID first, so none outlives its namespace."""
    for namespace in (pair.a, pair.b):
        pids = [int(pid) for pid in _ip("netns", "pids", namespace).stdout.split()]
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        if pids:
            psutil.wait_procs([p for p in map(_process, pids) if p], timeout=10)
    _ip("-n", pair.a, "link", "del", pair.veth_a)
    for namespace in (pair.a, pair.b):
        _ip("netns", "del", namespace)


def _process(pid: int) -> psutil.Process | None:
    try:
        return psutil.Process(pid)
    except psutil.NoSuchProcess:
        return None


def netem_delay(pair: NetnsPair, delay_ms: int) -> None:
    """Delay every packet B sends by `delay_ms` (tc netem on B's veth), or skip the test when
    tc or the netem qdisc (kernel module sch_netem, CONFIG_NET_SCH_NETEM) is unavailable."""
    done = pair.run(
        pair.b, _binary("tc"), "qdisc", "add", "dev", pair.veth_b, "root", "netem", "delay", f"{delay_ms}ms"
    )
    if done.returncode != 0:
        pytest.skip(
            f"cannot add a netem qdisc ({done.stderr.strip()}): this kernel lacks sch_netem "
            "(CONFIG_NET_SCH_NETEM); where the module exists, `modprobe sch_netem` as root"
        )


def clear_qdisc(pair: NetnsPair) -> None:
    """Remove whatever qdisc `netem_delay` put on B's veth (no error if there is none)."""
    pair.run(pair.b, _binary("tc"), "qdisc", "del", "dev", pair.veth_b, "root")

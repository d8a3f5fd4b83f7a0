"""A real multi-node Ray cluster on this machine (``ray.cluster_utils.Cluster``, as Ray's own tests
build one), small enough for 2 shared cores: a head that runs nothing (``num_cpus=0``), worker nodes
of one CPU each, 100 MiB object stores, no dashboard, and health checks that declare a killed node
dead within ~3 s instead of Ray's default 30 s or more.

Every process of a cluster — GCS, raylets, workers (whose command line Ray rewrites to ``ray::…``),
the drivers a test starts — inherits its temp folder (``RAY_TMPDIR``, a fresh one per cluster) in its
environment: after ``shutdown()`` the fixture counts them, and fails if any is left. Never
``ray stop``: it would stop every Ray process on the machine, other people's too.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parents[1] / "sources"))  # stream_media.py

MIB = 2**20
HEALTH = {"health_check_initial_delay_ms": 0, "health_check_period_ms": 1000, "health_check_failure_threshold": 3}


def cluster_processes(tmp: str, title: str = "") -> list[int]:
    """Live processes (not this one) started with ``RAY_TMPDIR=tmp``, whose command line starts with ``title``."""
    mark = f"RAY_TMPDIR={tmp}".encode()
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit() or int(entry) == os.getpid():
            continue
        try:
            env = Path(f"/proc/{entry}/environ").read_bytes().split(b"\0")
            cmd = Path(f"/proc/{entry}/cmdline").read_bytes()
            state = Path(f"/proc/{entry}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if mark in env and state != "Z" and cmd.startswith(title.encode()):
            pids.append(int(entry))
    return pids


class LocalCluster:
    """A head (no CPUs) and ``workers`` nodes of one CPU each; ``address`` for ``--ray-address``."""

    def __init__(self, workers: int, monkeypatch) -> None:
        from ray.cluster_utils import Cluster

        # short: Ray's unix sockets live under it (108-byte limit); per cluster: its processes are found by it,
        # and `address: auto` / Ray's own ray_current_cluster file stay out of everyone else's /tmp/ray
        self.tmp = tempfile.mkdtemp(prefix="rt", dir="/tmp")
        monkeypatch.setenv("RAY_TMPDIR", self.tmp)  # the nodes and every driver the test starts inherit it
        self.cluster = Cluster(initialize_head=True, head_node_args={
            "num_cpus": 0, "object_store_memory": 100 * MIB, "include_dashboard": False, "_system_config": HEALTH})
        self.workers = [self.add_worker() for _ in range(workers)]
        self.cluster.wait_for_nodes()

    @property
    def address(self) -> str:
        return self.cluster.address

    def add_worker(self):
        return self.cluster.add_node(num_cpus=1, object_store_memory=100 * MIB)

    def node_of(self, node_id: str):
        return next(n for n in self.workers if n.node_id == node_id)

    def kill(self, node, pids: tuple[int, ...] = ()) -> None:
        """Ungracefully, as a machine that loses power: SIGKILL to ``pids`` (the node's task workers) and to
        the node's raylet and object store, at once. A worker outlives its raylet by a moment, and a task's
        result goes straight to its owner, not through the raylet: without its own SIGKILL a worker can
        still finish its video and report it from a node that is gone (a fast machine did, in CI)."""
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        self.cluster.remove_node(node, allow_graceful=False)
        self.workers.remove(node)

    def ray_processes(self, title: str = "") -> list[int]:
        return cluster_processes(self.tmp, title)

    def shutdown(self) -> None:
        self.cluster.shutdown()
        deadline = time.monotonic() + 30
        while self.ray_processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        left = self.ray_processes()
        shutil.rmtree(self.tmp, ignore_errors=True)
        assert not left, f"Ray processes left after the cluster's shutdown: {left}"


@pytest.fixture(scope="module")
def ray_cluster():
    """Module-wide: a head and two worker nodes (starting one takes ~10 s on 2 busy cores)."""
    pytest.importorskip("ray", reason="the ray tests need auflow[ray]")
    mp = pytest.MonkeyPatch()
    cluster = LocalCluster(2, mp)
    try:
        yield cluster
    finally:
        try:
            cluster.shutdown()
        finally:
            mp.undo()

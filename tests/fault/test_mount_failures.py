"""The mount when nodes fail: a data node killed under a large ``cp``, the name node frozen
or restarted under ``ls``. System calls fail cleanly or succeed; none hangs; the mount recovers."""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from tests.integration.test_mount import mounted

pytestmark = pytest.mark.fault


def test_datanode_killed_during_a_large_cp(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(3)
    data = os.urandom(24 * 1024 * 1024)
    src = tmp_path / "big"
    src.write_bytes(data)
    with mounted(cluster, tmp_path / "m") as mnt:
        target = mnt / "tmp" / "big"
        cp = subprocess.Popen(["cp", str(src), str(target)], stderr=subprocess.PIPE)
        deadline = time.monotonic() + 30
        while not (target.exists() and target.stat().st_size > 0) and cp.poll() is None:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        cluster.datanodes[0].kill()
        _, err = cp.communicate(timeout=120)
        # Finished or failed cleanly: never a partial file, for this mount or another client.
        with cluster.client() as fs:
            stored = fs.read_bytes("/tmp/big")
        if cp.returncode == 0:
            assert stored == data
            assert target.read_bytes() == data
        else:
            assert err, "cp failed without saying why"
            assert stored == b""  # what open(O_CREAT) made, and nothing of the copy
        (mnt / "tmp" / "after").write_bytes(b"still works")
        assert (mnt / "tmp" / "after").read_bytes() == b"still works"


def _ls(path: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ls", "-l", str(path)], capture_output=True, text=True, timeout=60)


def test_namenode_frozen_then_restarted_under_ls(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    with cluster.client() as fs:
        fs.mkdir("/tmp/d")
        fs.write_bytes("/tmp/d/f", b"x")
    with mounted(cluster, tmp_path / "m", "--timeout", "2", "--ttl", "0.2") as mnt:
        assert "f" in _ls(mnt / "tmp" / "d").stdout

        os.kill(cluster.namenode.pid, signal.SIGSTOP)  # alive but silent: calls time out
        try:
            time.sleep(0.3)  # past the TTL: ls must ask the name node
            started = time.monotonic()
            frozen = _ls(mnt / "tmp" / "d")
            assert frozen.returncode != 0 and "Input/output error" in frozen.stderr
            assert time.monotonic() - started < 15  # the timeout, not forever
        finally:
            os.kill(cluster.namenode.pid, signal.SIGCONT)
        assert "f" in _ls(mnt / "tmp" / "d").stdout

        # Restarted while a loop of ls runs: each one answers, and once the name node is
        # back, ls sees the directory again.
        loop = subprocess.Popen(
            ["sh", "-c", f"for i in $(seq 40); do ls {mnt}/tmp/d >/dev/null 2>&1; sleep 0.05; done"]
        )
        cluster.restart_namenode()
        assert loop.wait(timeout=60) is not None
        deadline = time.monotonic() + 20
        while "f" not in (listing := _ls(mnt / "tmp" / "d")).stdout:
            assert time.monotonic() < deadline, listing.stderr
            time.sleep(0.1)


def test_a_close_with_the_namenode_frozen_fails_within_the_timeout(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    """The commit of a close asks the name node too: within ``--timeout``, like every call."""
    cluster = cluster_factory(1)
    with mounted(cluster, tmp_path / "m", "--timeout", "2") as mnt:
        small = open(mnt / "tmp" / "small", "wb")  # noqa: SIM115 - closed below
        small.write(b"x" * 1000)
        streamed = open(mnt / "tmp" / "streamed", "wb")  # noqa: SIM115
        streamed.write(b"x" * (1 << 20))  # its upload starts with its next write
        os.kill(cluster.namenode.pid, signal.SIGSTOP)
        try:
            for out, more in ((small, b""), (streamed, b"x" * (2 << 20))):
                started = time.monotonic()
                with pytest.raises(OSError):
                    out.write(more)
                    out.close()
                assert time.monotonic() - started < 15  # the timeout (2 s), with room
                with contextlib.suppress(OSError):
                    out.close()
        finally:
            os.kill(cluster.namenode.pid, signal.SIGCONT)
        (mnt / "tmp" / "after").write_bytes(b"fine")
        assert (mnt / "tmp" / "after").read_bytes() == b"fine"

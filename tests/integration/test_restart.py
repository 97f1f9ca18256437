"""Restarts lose nothing: name node, data nodes, the whole `pydfs cluster up`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

from pydfs import Client
from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE, Cli, metadata_flag


def _fill(fs: Client, n: int = 5) -> dict[str, bytes]:
    files = {f"/keep/f{i}": os.urandom(BLOCK_SIZE * i + 333) for i in range(n)}
    fs.mkdir("/keep/empty-dir", parents=True)
    for path, data in files.items():
        fs.write_bytes(path, data)
    return files


def _check(fs: Client, files: dict[str, bytes]) -> None:
    for path, data in files.items():
        assert fs.read_bytes(path) == data
    assert fs.info("/keep/empty-dir").type == "dir"


def test_namenode_restart_loses_nothing(cluster_factory: Callable[..., LocalCluster]) -> None:
    cluster = cluster_factory()
    with cluster.client() as fs:
        files = _fill(fs)
    cluster.namenode.kill()  # SIGKILL: only what was fsync'd survives
    cluster.restart_namenode()
    with cluster.client() as fs:
        _check(fs, files)  # readable at once: replica locations are persisted
        cluster.wait_for_live(2)  # data nodes re-register with the new process
        fs.write_bytes("/after", b"new")
        assert fs.read_bytes("/after") == b"new"


def test_datanode_restart_loses_nothing(cluster_factory: Callable[..., LocalCluster]) -> None:
    cluster = cluster_factory()
    with cluster.client() as fs:
        files = _fill(fs)
        ids = {n["id"] for n in cluster.datanode_states()}
        for node in cluster.datanodes:
            node.restart()  # a new port each time: the node re-registers under its stable id
        cluster.wait_for_live(2)
        assert {n["id"] for n in cluster.datanode_states()} == ids
        _check(fs, files)


def test_cluster_up_serves_other_shells_and_restarts_intact(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")}
    env["PYDFS_CONFIG"] = str(tmp_path / "client.toml")
    cmd = [
        sys.executable,
        "-m",
        "pydfs",
        "cluster",
        "up",
        "--dir",
        str(tmp_path / "c"),
        "--port",
        "0",
        *metadata_flag(tmp_path / "c"),
    ]

    def up() -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env, text=True
        )
        lines = []
        assert proc.stdout is not None
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = proc.stdout.readline()
            assert line, f"cluster up ended early: {''.join(lines)}"
            lines.append(line)
            if "Press Ctrl-C" in line:
                out = "".join(lines)
                assert "self-check" in out and "identical" in out, out
                return proc
        raise AssertionError("cluster up did not become ready")

    def down(proc: subprocess.Popen[str]) -> None:
        proc.send_signal(signal.SIGINT)
        code = proc.wait(30)
        assert proc.stdout is not None
        rest = proc.stdout.read()
        proc.stdout.close()
        assert code == 0, rest
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        assert str(tmp_path / "c") not in ps, "a node outlived `cluster up`"

    proc = up()
    try:
        ps = subprocess.run(["ps", "-ww", "-eo", "args"], capture_output=True, text=True).stdout
        assert (
            sum(
                "pydfs datanode" in line and "--data-dir" in line and str(tmp_path) in line
                for line in ps.splitlines()
            )
            == 2
        )
        # Another shell: only the client config that `cluster up` wrote tells it where to go.
        shell = Cli("", tmp_path, "")
        other = {k: v for k, v in shell.env.items() if k != "PYDFS_NAMENODE"}
        r = subprocess.run(
            [sys.executable, "-m", "pydfs", "put", "-", "/persisted.txt"],
            input=b"still here",
            env=other,
            capture_output=True,
            cwd=tmp_path,
        )
        assert r.returncode == 0, r.stderr
    finally:
        down(proc)
    proc = up()
    try:
        r = subprocess.run(
            [sys.executable, "-m", "pydfs", "get", "/persisted.txt", "-"],
            env={k: v for k, v in Cli("", tmp_path, "").env.items() if k != "PYDFS_NAMENODE"},
            capture_output=True,
        )
        assert r.returncode == 0 and r.stdout == b"still here", r.stderr
    finally:
        down(proc)

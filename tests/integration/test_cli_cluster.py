"""Keeping a cluster reachable and administrable: the last admin stays, a lost admin token is
recovered on the name node's host, the name node keeps its port, and a second cluster on one
directory says why it cannot start."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster, ProcessFailed
from pydfs.errors import Unauthenticated
from tests.conftest import DEAD_AFTER, HEARTBEAT, Cli, cluster_metadata, metadata_flag


def test_the_last_admin_cannot_be_removed(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(1)
    admin = Cli(cluster.url, tmp_path, cluster.admin_token)
    assert "last administrator" in admin.fails("admin", "user", "remove", "admin")
    token = json.loads(admin("--json", "admin", "user", "add", "second", "--admin").ok().out)
    second = Cli(cluster.url, tmp_path, token["token"])
    second("admin", "user", "remove", "admin").ok()  # another admin is left
    assert "last administrator" in second.fails("admin", "user", "remove", "second")
    assert json.loads(second("--json", "whoami").ok().out)["admin"] is True


def _pydfs(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "pydfs", *args],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )


def test_a_lost_admin_token_is_recovered_on_the_name_nodes_host(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(1)
    data_dir = str(cluster.namenode.data_dir)
    with cluster.client() as fs:
        fs.reset_token("admin")  # the token in admin.token is dead now
    reset_admin = ["namenode", "reset-admin", "--data-dir", data_dir]
    reset_admin += ["--metadata", cluster.metadata] if cluster.metadata else []
    running = _pydfs(*reset_admin)
    assert running.returncode != 0 and "stop it first" in running.stderr
    cluster.stop()
    with pytest.raises(Unauthenticated, match="pydfs namenode reset-admin --data-dir"):
        cluster.start()  # not "timed out waiting for live data nodes"
    reset = _pydfs(*reset_admin)
    assert reset.returncode == 0, reset.stderr
    assert "admin.token" in reset.stdout
    cluster.start()
    with cluster.client() as fs:
        assert fs.whoami().admin


def _cluster(root: Path) -> LocalCluster:
    """A cluster that keeps its name node's port in its directory, as `pydfs cluster up`."""
    return LocalCluster(
        root,
        1,
        namenode_port=None,
        namenode_args=["--dead-after", DEAD_AFTER],
        datanode_args=["--heartbeat-interval", HEARTBEAT],
        metadata=cluster_metadata(root),
    )


def _taken_port() -> socket.socket:
    """A port held by another program that, as most servers, sets SO_REUSEADDR."""
    other = socket.socket()
    other.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    other.bind(("127.0.0.1", 0))
    other.listen()
    return other


def _port(cluster: LocalCluster) -> int:
    return int(cluster.url.rsplit(":", 1)[1])


def test_the_name_node_keeps_its_port_and_falls_back_loudly(tmp_path: Path) -> None:
    other = _taken_port()
    kept = other.getsockname()[1]
    (tmp_path / "namenode.port").write_text(f"{kept}\n")  # the port this cluster first got
    cluster = _cluster(tmp_path)
    try:
        cluster.start()  # the port is taken: any other, said loudly
        assert _port(cluster) != kept
        assert len(cluster.notes) == 1 and f"port {kept} is taken" in cluster.notes[0]
        cluster.stop()
        assert (tmp_path / "namenode.port").read_text().strip() == str(kept)
        other.close()
        cluster = _cluster(tmp_path)
        cluster.start()  # free again: the cluster's own port
        assert _port(cluster) == kept and not cluster.notes
        cluster.stop()
        cluster = _cluster(tmp_path)
        cluster.start()
        assert _port(cluster) == kept
    finally:
        other.close()
        cluster.stop()


def test_a_second_cluster_on_one_directory_says_why_it_cannot_start(tmp_path: Path) -> None:
    other = _taken_port()
    (tmp_path / "namenode.port").write_text(f"{other.getsockname()[1]}\n")
    other.close()  # a port that is free, and not a fixed one
    first = _cluster(tmp_path)
    with first:
        with pytest.raises(ProcessFailed, match=f"another name node at {first.url} holds"):
            _cluster(tmp_path).start()
        env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("PYDFS_")},
            "PYDFS_CONFIG": str(tmp_path / "client.toml"),
        }
        up = _pydfs(
            "cluster", "up", "--dir", str(tmp_path), "--no-check", *metadata_flag(tmp_path), env=env
        )
        assert up.returncode != 0
        assert "another name node" in up.stderr and "already running" in up.stderr
        assert "Traceback" not in up.stderr
        assert first.datanode_states()  # the running cluster is untouched

"""A whole cluster whose name node keeps its metadata on PostgreSQL (``--metadata
postgresql://...``): the CLI's and the SDK's everyday work, and a restart that finds it all."""

from __future__ import annotations

import os
import urllib.request
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from pydfs.cluster import LocalCluster
from pydfs.local_postgres import Postgres
from tests.conftest import BLOCK_SIZE, Cli, make_cluster
from tests.integration.test_cli_cluster import _pydfs
from tests.integration.test_web import sign_in


@pytest.fixture(scope="module")
def pg_cluster(
    postgres: Postgres, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LocalCluster]:
    with make_cluster(tmp_path_factory.mktemp("pgcluster"), metadata=postgres.database()) as c:
        yield c


@pytest.fixture
def pg_cli(pg_cluster: LocalCluster, tmp_path: Path) -> Cli:
    return Cli(pg_cluster.url, tmp_path, pg_cluster.admin_token)


def test_the_cli_writes_reads_moves_lists_and_removes(
    pg_cli: Cli, pg_cluster: LocalCluster
) -> None:
    cli = pg_cli
    data = os.urandom(3 * BLOCK_SIZE + 17)  # several blocks
    cli("mkdir", "-p", "/work/in").ok()
    cli("put", "-", "/work/in/big", input=data).ok()
    assert cli("cat", "/work/in/big").ok().raw == data
    cli("mv", "/work/in", "/work/out").ok()
    assert cli("ls", "/work").ok().out.split() == ["out/"]
    assert cli("cat", "/work/out/big").ok().raw == data
    assert "big" in cli("fsck", "--files", "/work").ok().out
    cli("rm", "-r", "/work").ok()
    assert "/work" in cli.fails("ls", "/work")
    assert not (pg_cluster.namenode.data_dir / "namespace.sqlite3").exists()


def test_the_sdk_and_a_restarted_name_node_find_everything(pg_cluster: LocalCluster) -> None:
    payload = os.urandom(BLOCK_SIZE + 5)
    with pg_cluster.client() as fs:
        fs.mkdir("/keep/a/b", parents=True)
        fs.write_bytes("/keep/a/b/f", payload)
        fs.write_bytes("/keep/small", b"small")
        fs.move("/keep/a", "/keep/c")
        assert sorted(s.name for s in fs.ls("/keep")) == ["c", "small"]
    pg_cluster.restart_namenode()  # nothing of the namespace is in its data directory
    with pg_cluster.client() as fs:
        assert fs.read_bytes("/keep/c/b/f") == payload
        assert fs.read_bytes("/keep/small") == b"small"
        fs.rmdir("/keep", recursive=True)
        assert not fs.exists("/keep")


def test_a_lost_admin_token_is_recovered_from_postgresql(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str
) -> None:
    cluster = cluster_factory(1, metadata=postgres_url)
    with cluster.client() as fs:
        fs.reset_token("admin")  # the token in admin.token is dead now
    cluster.stop()
    data_dir = str(cluster.namenode.data_dir)
    lost = _pydfs("namenode", "reset-admin", "--data-dir", data_dir)
    assert lost.returncode != 0 and "holds no name node" in lost.stderr  # it is not in SQLite
    reset = _pydfs("namenode", "reset-admin", "--data-dir", data_dir, "--metadata", postgres_url)
    assert reset.returncode == 0, reset.stderr
    cluster.start()
    with cluster.client() as fs:
        assert fs.whoami().admin


def test_two_name_nodes_on_one_database_serve_the_same_tree(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str
) -> None:
    """Each data node heartbeats to both name nodes, so each places writes on live nodes; a file
    written through one reads back through the other."""
    cluster = cluster_factory(2, metadata=postgres_url, namenodes=2)
    assert len(set(cluster.urls)) == 2
    for index in (0, 1):
        assert [n["state"] for n in cluster.datanode_states(index)] == ["live", "live"]
    payload = os.urandom(BLOCK_SIZE + 3)
    with cluster.client() as one, cluster.client(namenode=cluster.urls[1]) as two:
        one.write_bytes("/tmp/from-one", payload)
        assert two.read_bytes("/tmp/from-one") == payload
        two.write_bytes("/tmp/from-two", b"two")
        assert one.read_bytes("/tmp/from-two") == b"two"


def test_each_name_node_tells_whether_it_leads_in_its_report_metrics_and_web_ui(
    cluster_factory: Callable[..., LocalCluster], postgres_url: str, tmp_path: Path
) -> None:
    """Who leads, how often this name node took the lead, and its database connection: in
    ``admin report``, ``/metrics`` and the web UI's overview, on each name node."""
    cluster = cluster_factory(2, metadata=postgres_url, namenodes=2)
    first, second = cluster.urls

    def report(url: str) -> str:
        done = Cli(url, tmp_path, cluster.admin_token)("admin", "report")
        assert done.code == 0, done.err
        return done.out.splitlines()[0]

    cluster.wait_until(lambda: "leads the background work" in report(first), 30, "a leader")
    line = report(first)
    assert line.startswith(f"name node {first}: leads the background work, epoch ")
    assert line.endswith(
        "took the lead 1 time; metadata on postgresql, reachable, 0 connections to it lost"
    )
    assert f"standby (leader: {first})" in report(second)
    assert "took the lead 0 times; metadata on postgresql, reachable" in report(second)
    for url, leads, took in ((first, 1, 1), (second, 0, 0)):
        with urllib.request.urlopen(f"{url}/metrics", timeout=10) as resp:
            metrics = resp.read().decode()
        assert f"\npydfs_namenode_leader {leads}.0\n" in metrics
        assert f"\npydfs_namenode_leader_takeovers_total {took}.0\n" in metrics
        assert "\npydfs_namenode_metadata_connections_lost_total 0.0\n" in metrics
        page = sign_in(url, cluster.admin_token).get("/").text
        assert ("leads" if leads else "standby") in page
        assert f"took the lead {took} time{'' if took == 1 else 's'}" in page
        assert "0 connections to it lost" in page

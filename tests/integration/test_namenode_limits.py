"""What the name node refuses to let one user, or its own restart, do to everyone: endless
verification of one replica, endless open uploads, writes before any data node has reported."""

from __future__ import annotations

import json
import os
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pydfs import Client
from pydfs.cluster import LocalCluster, NodeProcess
from tests.conftest import Cli

MiB = 1024 * 1024


def http(method: str, url: str, token: str, body: Any = None) -> tuple[int, Any]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    req = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"null")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def bytes_read(node: NodeProcess) -> int:
    """What the node's process has read through read(2) and its kin, block files included."""
    for line in Path(f"/proc/{node.pid}/io").read_text().splitlines():
        if line.startswith("rchar:"):
            return int(line.split()[1])
    raise AssertionError("no rchar in /proc/PID/io")


@pytest.mark.skipif(not Path("/proc/self/io").exists(), reason="needs /proc/PID/io")
def test_a_hundred_reports_of_one_replica_make_its_node_read_it_once(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(2)
    with cluster.client() as admin:
        token = admin.add_user("mallory")
        admin.write_bytes("/tmp/big", os.urandom(4 * MiB), replication=1, block_size=4 * MiB)
        (block,) = admin.info("/tmp/big", read=True).blocks or []
    (holder,) = [n for n in cluster.datanodes if n.url == block.nodes[0].url]
    before = bytes_read(holder)
    report = {"block": block.id, "node": block.nodes[0].id}
    url = f"{cluster.url}/v1/blocks/corrupt"
    assert all(http("POST", url, token, report)[0] == 200 for _ in range(100))
    cluster.wait_until(
        lambda: bytes_read(holder) - before >= 4 * MiB, 10, "the replica verified once"
    )
    time.sleep(1.0)  # five heartbeats: time for any further verify order to arrive and run
    assert bytes_read(holder) - before < 2 * 4 * MiB


def test_open_uploads_are_capped_per_user_and_shown_to_admins(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(2, namenode_args=["--max-open-uploads", "40"])
    with cluster.client() as admin:
        bob = admin.add_user("bob")
    admin_cli = Cli(cluster.url, tmp_path / "admin", cluster.admin_token)
    bob_cli = Cli(cluster.url, tmp_path / "bob", bob)
    for cli in (admin_cli, bob_cli):
        cli.home.mkdir()

    # The SDK's batches of leases for small files fit under the cap.
    with Client(cluster.url, token=bob) as fs:
        for i in range(100):
            fs.write_bytes(f"/user/bob/small{i}", b"%d" % i)
        shelved = json.loads(admin_cli("--json", "admin", "uploads").ok().out)["uploads"]
        assert 0 < len(shelved) < 40
        assert {(u["user"], u["path"], u["blocks"]) for u in shelved} == {("bob", None, 1)}
        assert fs.read_bytes("/user/bob/small99") == b"99"
    assert json.loads(admin_cli("--json", "admin", "uploads").ok().out)["uploads"] == []

    url = f"{cluster.url}/v1/uploads"
    granted = [http("POST", url, bob, {"path": f"/user/bob/f{i}"}) for i in range(40)]
    assert {status for status, _ in granted} == {200}
    status, body = http("POST", url, bob, {"path": "/user/bob/one-too-many"})
    assert (status, body["code"]) == (429, "limit_exceeded")
    assert "bob has 40 uploads open" in bob_cli.fails("put", "-", "/user/bob/x", input=b"x")
    assert http("POST", f"{url}/batch", bob, {"count": 4})[0] == 429
    admin_cli("put", "-", "/tmp/admin-still-writes", input=b"x").ok()  # others are not held back

    listed = admin_cli("admin", "uploads").ok().out
    assert listed.count(" bob ") == 40 and "/user/bob/f39" in listed
    assert "40 open upload(s) by 1 user(s)" in listed
    entries = json.loads(admin_cli("--json", "admin", "uploads").ok().out)["uploads"]
    assert {e["path"] for e in entries} == {f"/user/bob/f{i}" for i in range(40)}
    assert all(e["blocks"] == 1 and e["granted"] > 0 and e["age"] >= 0 for e in entries)
    assert "only an admin" in bob_cli.fails("admin", "uploads")

    assert http("DELETE", f"{url}/{granted[0][1]['upload_id']}", bob)[0] == 200
    bob_cli("put", "-", "/user/bob/x", input=b"x").ok()


def test_writes_right_after_a_namenode_restart_wait_for_the_datanodes(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    # Heartbeats every 2 s: the restarted name node is up well before the data nodes call.
    cluster = cluster_factory(
        2, datanode_args=["--heartbeat-interval", "2"], namenode_args=["--dead-after", "10"]
    )
    with cluster.client() as fs:
        fs.write_bytes("/before", b"before")
    cluster.restart_namenode()
    started = time.monotonic()
    with cluster.client() as fs:
        fs.write_bytes("/after", b"after")  # held until the data nodes have reported
        assert time.monotonic() - started < 5
        assert fs.read_bytes("/after") == b"after"

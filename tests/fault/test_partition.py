"""A data node cut off from the cluster by a real network partition, in a network namespace.

The test makes its own namespace and veth pair (removed afterwards): the name node, two data
nodes and the client use the host end's address, the third data node lives in the namespace.
Bringing the namespace end of the link down partitions it; bringing it up heals the partition.
"""

from __future__ import annotations

import os
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

import pytest

from pydfs.cluster import LocalCluster
from tests.conftest import BLOCK_SIZE, node_id, wait_healthy

pytestmark = pytest.mark.fault


@dataclass
class Net:
    ns: str
    host_ip: str
    ns_ip: str
    ns_if: str

    def run_in_ns(self) -> list[str]:
        return ["ip", "netns", "exec", self.ns]

    def link(self, up: bool) -> None:
        _ip("netns", "exec", self.ns, "ip", "link", "set", self.ns_if, "up" if up else "down")


def _ip(*args: str) -> None:
    subprocess.run(["ip", *args], check=True, capture_output=True, timeout=30)


@pytest.fixture
def net() -> Iterator[Net]:
    tag = f"{os.getpid() % 65536:x}"
    ns, host_if, ns_if = f"pydfs-{tag}", f"pdh{tag}", f"pdn{tag}"
    octet = os.getpid() % 250 + 1
    host_ip, ns_ip = f"10.231.{octet}.1", f"10.231.{octet}.2"
    try:
        _ip("netns", "add", ns)
    except (OSError, subprocess.CalledProcessError) as exc:
        detail = getattr(exc, "stderr", b"") or str(exc)
        pytest.skip(f"cannot create a network namespace here ({detail!r}); needs root and iproute2")
    try:
        _ip("link", "add", host_if, "type", "veth", "peer", "name", ns_if)
        _ip("link", "set", ns_if, "netns", ns)
        _ip("addr", "add", f"{host_ip}/30", "dev", host_if)
        _ip("link", "set", host_if, "up")
        _ip("netns", "exec", ns, "ip", "addr", "add", f"{ns_ip}/30", "dev", ns_if)
        _ip("netns", "exec", ns, "ip", "link", "set", ns_if, "up")
        _ip("netns", "exec", ns, "ip", "link", "set", "lo", "up")
        yield Net(ns, host_ip, ns_ip, ns_if)
    finally:
        subprocess.run(["ip", "netns", "del", ns], capture_output=True)  # takes the veth pair along
        subprocess.run(["ip", "link", "del", host_if], capture_output=True)


def test_partitioned_datanode_is_healed_around_and_reconciled(
    net: Net, cluster_factory: Callable[..., LocalCluster]
) -> None:
    cluster = cluster_factory(
        2, namenode_args=["--host", net.host_ip], datanode_args=["--host", net.host_ip]
    )
    island = cluster.add_datanode(["--host", net.ns_ip], prefix=net.run_in_ns())
    cluster.wait_for_live(3)
    island_id = node_id(island)
    assert island.url.startswith(f"http://{net.ns_ip}:")

    with cluster.client() as fs:
        files = {f"/p/f{i}": os.urandom(BLOCK_SIZE * 3 + i) for i in range(9)}
        fs.mkdir("/p")
        for path, data in files.items():
            fs.write_bytes(path, data)
        on_island = {
            path
            for path in files
            for b in fs.info(path).blocks or []
            if island_id in {n.id for n in b.nodes}
        }
        assert on_island, "placement put nothing on the third node"

        net.link(up=False)  # the partition
        cluster.wait_for_live(2)
        wait_healthy(cluster, fs)  # healed around the island, whose replicas no longer count
        for path in files:
            for block in fs.info(path).blocks or []:
                assert len([n for n in block.nodes if n.live]) == 2
        gone = sorted(on_island)[0]
        fs.delete(gone)  # while the island cannot hear of it
        del files[gone]
        for path, data in files.items():
            assert fs.read_bytes(path) == data

        net.link(up=True)  # the partition heals
        cluster.wait_for_live(3)
        wait_healthy(cluster, fs)
        wanted = {b.id for path in files for b in fs.info(path).blocks or []}

        def reconciled() -> bool:
            island_blocks = {f.stem for f in (island.data_dir / "blocks").glob("*/*.blk")}
            per_block = [len(b.nodes) for path in files for b in fs.info(path).blocks or []]
            return island_blocks <= wanted and set(per_block) == {2}

        # Stale replicas (of the file deleted meanwhile) leave the island, and the surplus
        # replicas its return created are trimmed back to the replication factor.
        cluster.wait_until(reconciled, 30, "the returning node reconciled")
        for path, data in files.items():
            assert fs.read_bytes(path) == data

"""Self-healing with real processes: re-replication after a death, a returning node brought up
to date, scrubbing, setrep, decommission, and a disk full on one node."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable

import pytest

from pydfs import Client
from pydfs.cluster import LocalCluster, NodeProcess
from tests.conftest import BLOCK_SIZE, Cli, block_bytes, block_path, node_id, wait_healthy

pytestmark = pytest.mark.fault


def _blocks_on(node: NodeProcess) -> set[str]:
    return {f.stem for f in (node.data_dir / "blocks").glob("*/*.blk")}


def _fill(fs: Client, count: int, blocks_each: int) -> dict[str, bytes]:
    files = {f"/data/f{i}": os.urandom(BLOCK_SIZE * blocks_each - i) for i in range(count)}
    fs.mkdir("/data", parents=True)
    for path, data in files.items():
        fs.write_bytes(path, data)
    return files


def test_dead_node_is_healed_around(cluster_factory: Callable[..., LocalCluster], tmp_path) -> None:
    cluster = cluster_factory(3)
    with cluster.client() as fs:
        files = _fill(fs, 12, 4)
        victim = cluster.datanodes[0]
        lost = _blocks_on(victim)
        assert lost
        victim.kill()
        started = time.monotonic()
        cluster.wait_for_live(2)
        healed = wait_healthy(cluster, fs)
        total = time.monotonic() - started
        size = len(lost) * BLOCK_SIZE
        print(
            f"healing: {len(lost)} blocks ({size / 1e6:.1f} MB) re-replicated {healed:.2f}s after "
            f"the node was declared dead ({total:.2f}s after the kill): "
            f"{len(lost) / healed:.0f} blocks/s, {size / healed / 1e6:.1f} MB/s"
        )
        victim_id = node_id(victim)
        for path, data in files.items():
            status = fs.info(path)
            for block in status.blocks or []:
                live = [n for n in block.nodes if n.live and n.id != victim_id]
                assert len(live) == 2
            assert fs.read_bytes(path) == data
        report = Cli(cluster.url, tmp_path, cluster.admin_token)("--json", "fsck").ok()
        assert json.loads(report.out)["status"] == "HEALTHY"


def test_returning_node_is_brought_up_to_date(cluster_factory: Callable[..., LocalCluster]) -> None:
    cluster = cluster_factory(2)
    with cluster.client() as fs:
        fs.write_bytes("/old", os.urandom(BLOCK_SIZE * 3))
        away = cluster.datanodes[1]
        away.stop()
        cluster.wait_for_live(1)
        fs.write_bytes("/new", os.urandom(BLOCK_SIZE * 3))  # only one live node: under-replicated
        fs.delete("/old")
        assert fs.fsck().under_replicated == 3
        away.start()
        away.wait_ready()
        wait_healthy(cluster, fs)
        new_blocks = {b.id for b in fs.info("/new").blocks or []}
        cluster.wait_until(lambda: _blocks_on(away) == new_blocks, 15, "returning node reconciled")


@pytest.mark.parametrize(
    "at",
    [
        12345,  # a byte of the block
        -5,  # a byte of its checksum trailer's footer: the replica cannot be verified at all
    ],
    ids=["data", "trailer"],
)
def test_flipped_bytes_are_quarantined_and_replaced(
    cluster_factory: Callable[..., LocalCluster], at: int
) -> None:
    cluster = cluster_factory(2)
    data = os.urandom(BLOCK_SIZE * 2)
    with cluster.client() as fs:
        fs.write_bytes("/f", data)
        block = (fs.info("/f").blocks or [])[0]
        holder = next(n for n in cluster.datanodes if node_id(n) == block.nodes[0].id)
        path = block_path(holder, block.id)
        raw = bytearray(path.read_bytes())
        raw[at] ^= 0x10
        path.write_bytes(bytes(raw))
        quarantined = holder.data_dir / "quarantine" / f"{block.id}.blk"

        def read_until_quarantined() -> bool:
            # Readers take replicas in random order: once one meets the bad replica, it fails
            # over (the data stays right) and reports it; the node verifies and quarantines it.
            assert fs.read_bytes("/f") == data
            return quarantined.exists()

        cluster.wait_until(read_until_quarantined, 15, "bad replica quarantined")
        wait_healthy(cluster, fs)
        cluster.wait_until(path.exists, 15, "a good copy back on the node")
        assert block_bytes(holder, block.id) == data[:BLOCK_SIZE]


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[: BLOCK_SIZE - 1] + bytes([raw[BLOCK_SIZE - 1] ^ 0xFF]) + raw[BLOCK_SIZE:],
        lambda raw: raw[:-1],  # truncated: the checksum trailer no longer validates
    ],
    ids=["flipped", "truncated"],
)
def test_scrubber_finds_rot_nobody_read(
    cluster_factory: Callable[..., LocalCluster], damage: Callable[[bytes], bytes]
) -> None:
    cluster = cluster_factory(2, datanode_args=["--scan-interval", "0.3"])
    data = os.urandom(BLOCK_SIZE * 3)
    with cluster.client() as fs:
        fs.write_bytes("/cold", data)
        node = cluster.datanodes[0]
        block = sorted(_blocks_on(node))[0]
        path = block_path(node, block)
        expected = path.read_bytes()
        path.write_bytes(damage(expected))  # nobody reads it: only the scrubber can notice
        quarantined = node.data_dir / "quarantine" / f"{block}.blk"
        cluster.wait_until(quarantined.exists, 20, "the scrubber quarantined the rotten replica")
        wait_healthy(cluster, fs)
        cluster.wait_until(lambda: path.exists() and path.read_bytes() == expected, 15, "healed")
        assert fs.read_bytes("/cold") == data


def test_setrep_converges_up_and_down(
    cluster_factory: Callable[..., LocalCluster], tmp_path
) -> None:
    cluster = cluster_factory(3)
    cli = Cli(cluster.url, tmp_path, cluster.admin_token)
    with cluster.client() as fs:
        _fill(fs, 3, 2)

        def replicas() -> set[int]:
            return {
                len(b.nodes)
                for p in ("/data/f0", "/data/f1", "/data/f2")
                for b in fs.info(p).blocks or []
            }

        cli("setrep", "3", "/data").ok()
        cluster.wait_until(lambda: replicas() == {3}, 20, "three replicas each")
        cli("setrep", "1", "/data/f1").ok()
        cluster.wait_until(
            lambda: {len(b.nodes) for b in fs.info("/data/f1").blocks or []} == {1}, 20, "trimmed"
        )
        cluster.wait_until(
            lambda: sum(len(_blocks_on(n)) for n in cluster.datanodes) == 2 * 3 + 2 * 3 + 2,
            20,
            "surplus replicas deleted from disk",
        )
        assert "between 1 and" in cli.fails("setrep", "0", "/data")


def test_decommission_drains_a_node_while_reads_go_on(
    cluster_factory: Callable[..., LocalCluster], tmp_path
) -> None:
    cluster = cluster_factory(3)
    cli = Cli(cluster.url, tmp_path, cluster.admin_token)
    with cluster.client() as fs:
        files = _fill(fs, 8, 3)
        node = cluster.datanodes[2]
        drained = node_id(node)
        assert _blocks_on(node)
        errors: list[BaseException] = []
        stop = threading.Event()

        def read_loop() -> None:
            with cluster.client() as reader:
                while not stop.is_set():
                    for path, data in files.items():
                        try:
                            assert reader.read_bytes(path) == data
                        except BaseException as exc:
                            errors.append(exc)

        thread = threading.Thread(target=read_loop)
        thread.start()
        try:
            assert "decommissioning" in cli("admin", "decommission", drained).ok().out
            cluster.wait_until(
                lambda: any(
                    n["id"] == drained and n["admin_state"] == "decommissioned"
                    for n in cluster.datanode_states()
                ),
                30,
                "node decommissioned",
            )
        finally:
            stop.set()
            thread.join(30)
        assert not errors, errors[:3]
        for path in files:
            for block in fs.info(path).blocks or []:
                assert len([n for n in block.nodes if n.id != drained]) >= 2
        assert "decommissioned" in cli("admin", "report").ok().out
        node.kill()  # safe to remove: nothing is lost
        for path, data in files.items():
            assert fs.read_bytes(path) == data
        fs.write_bytes("/after", b"x" * BLOCK_SIZE)
        assert drained not in {n.id for b in fs.info("/after").blocks or [] for n in b.nodes}


def test_disk_full_on_one_node_sends_blocks_elsewhere(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(2)
    small = cluster.add_datanode(["--capacity", str(3 * BLOCK_SIZE)])
    cluster.wait_for_live(3)
    small_id = node_id(small)
    with cluster.client() as fs:
        files = {f"/x{i}": os.urandom(BLOCK_SIZE * 2) for i in range(8)}
        for path, data in files.items():
            fs.write_bytes(path, data)  # never fails, though one node fills up
        for path, data in files.items():
            assert fs.read_bytes(path) == data
            for block in fs.info(path).blocks or []:
                assert len(block.nodes) == 2
        on_small = _blocks_on(small)
        assert len(on_small) <= 3
        assert not list((small.data_dir / "tmp").iterdir())  # no half-written block left
        used = sum(p.stat().st_size for p in (small.data_dir / "blocks").glob("*/*.blk"))
        assert used <= 3 * BLOCK_SIZE
        assert small_id  # it took part until it was full

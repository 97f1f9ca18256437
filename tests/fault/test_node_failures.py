"""Real faults: SIGKILLed data nodes and name node, stale replicas, flipped bytes, full disks."""

from __future__ import annotations

import io
import os
import shutil
import signal
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from pydfs import Client, PydfsError
from pydfs.cluster import LocalCluster, NodeProcess
from tests.conftest import BLOCK_SIZE, Cli, block_files, block_path, node_id, wait_healthy
from tests.integration.test_metrics import scrape, value

pytestmark = pytest.mark.fault


class KillAfter(io.RawIOBase):
    """A seekable source that runs *action* once, after *after* bytes have been read."""

    def __init__(self, data: bytes, after: int, action: Callable[[], None]) -> None:
        self._buf = io.BytesIO(data)
        self._after = after
        self._action: Callable[[], None] | None = action

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def seek(self, offset: int, whence: int = 0) -> int:
        return self._buf.seek(offset, whence)

    def tell(self) -> int:
        return self._buf.tell()

    def read(self, n: int = -1) -> bytes:
        if self._action is not None and self._buf.tell() >= self._after:
            action, self._action = self._action, None
            action()
        return self._buf.read(n)


def _write(fs: Client, path: str, source: io.RawIOBase) -> None:
    fs._run(fs._aio.write_stream(path, source))  # type: ignore[arg-type]


def test_sigkill_datanode_reads_fail_over_and_writes_go_to_live_nodes(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(3)
    files = {f"/f{i}": os.urandom(BLOCK_SIZE * 3 + i) for i in range(6)}
    with cluster.client() as fs:
        for path, data in files.items():
            fs.write_bytes(path, data)
        victim = cluster.datanodes[0]
        victim_id = node_id(victim)
        victim.kill()
        for path, data in files.items():  # at once, before the name node notices
            assert fs.read_bytes(path) == data
        fs.write_bytes("/during", os.urandom(BLOCK_SIZE * 4))  # pipelines may still pick it
        cluster.wait_for_live(2)
        fs.write_bytes("/after", os.urandom(BLOCK_SIZE * 4))
        placed = {n.id for b in fs.info("/after").blocks or [] for n in b.nodes}
        assert victim_id not in placed and len(placed) == 2
        for block in fs.info("/during").blocks or []:
            assert any(n.id != victim_id for n in block.nodes)
        assert fs.read_bytes("/during")  # readable without the dead node


def test_sigkill_datanode_during_upload(cluster_factory: Callable[..., LocalCluster]) -> None:
    cluster = cluster_factory(3)
    data = os.urandom(BLOCK_SIZE * 12 + 99)
    victim = cluster.datanodes[1]
    victim_id = node_id(victim)
    with cluster.client() as fs:
        _write(fs, "/big", KillAfter(data, BLOCK_SIZE * 5 + 1000, victim.kill))
        status = fs.info("/big")
        assert status.size == len(data)
        for block in status.blocks or []:
            assert [n for n in block.nodes if n.id != victim_id], "a block only on the dead node"
        assert fs.read_bytes("/big") == data
        cluster.wait_for_live(2)
        wait_healthy(cluster, fs)  # afterwards every block reaches its replication factor
        for block in fs.info("/big").blocks or []:
            assert len([n for n in block.nodes if n.live]) == 2


def test_stale_replicas_are_removed_when_a_node_returns(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    cluster = cluster_factory(2)
    with cluster.client() as fs:
        fs.write_bytes("/gone", os.urandom(BLOCK_SIZE * 3))
        fs.write_bytes("/replaced", os.urandom(BLOCK_SIZE * 2))
        fs.write_bytes("/kept", os.urandom(BLOCK_SIZE * 2))
        away = cluster.datanodes[1]
        stale = {f.stem for f in (away.data_dir / "blocks").glob("*/*.blk")}
        away.stop()
        fs.delete("/gone")
        fs.write_bytes("/replaced", os.urandom(BLOCK_SIZE))
        kept = {b.id for b in fs.info("/kept").blocks or []}
        away.start()
        away.wait_ready()

        def only_live_blocks_left() -> bool:
            # /replaced's new block may be copied here meanwhile (it was written while this
            # node was away): what counts is that every stale replica went and none kept did.
            on_disk = {f.stem for f in (away.data_dir / "blocks").glob("*/*.blk")}
            return not on_disk & (stale - kept) and kept <= on_disk

        cluster.wait_until(only_live_blocks_left, 15, "stale replicas deleted")
        assert stale - kept  # there was something stale to delete
        assert fs.read_bytes("/kept")


def test_flipped_bytes_are_never_served(cluster_factory: Callable[..., LocalCluster]) -> None:
    cluster = cluster_factory(2)
    data = os.urandom(BLOCK_SIZE * 2 + 5)
    with cluster.client() as fs:
        fs.write_bytes("/precious", data)
        block = (fs.info("/precious").blocks or [])[1]
        first = block.nodes[0]  # the replica a reader tries first
        node = next(n for n in cluster.datanodes if node_id(n) == first.id)
        path = block_path(node, block.id)
        raw = bytearray(path.read_bytes())
        raw[1000] ^= 0xFF
        path.write_bytes(bytes(raw))
        assert fs.read_bytes("/precious") == data
        assert (
            fs.read_bytes("/precious", BLOCK_SIZE + 900, 200)
            == data[BLOCK_SIZE + 900 : BLOCK_SIZE + 1100]
        )
        # With every replica corrupt, the reader fails rather than return bad bytes. (The
        # replica a read above reported may be in quarantine already: one fewer to corrupt.)
        for n in cluster.datanodes:
            p = block_path(n, block.id)
            try:
                raw = bytearray(p.read_bytes())
            except FileNotFoundError:
                continue
            raw[7] ^= 0x01
            p.write_bytes(bytes(raw))
        with pytest.raises(PydfsError, match="no replica"):
            fs.read_bytes("/precious")


LEASE = 4  # seconds an upload stays open without a renewal


def test_namenode_sigkill_mid_write_leaves_no_file_and_orphans_are_collected(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """The upload's lease is in the store and may outlive the crash (a writer may go on after
    a restart): its blocks are collected when the lease, no longer renewed, runs out."""
    cluster = cluster_factory(2, namenode_args=["--upload-lease", str(LEASE)])
    with cluster.client() as fs:
        fs.write_bytes("/survivor", b"committed before the crash")
        before = block_files(cluster)
        data = os.urandom(BLOCK_SIZE * 10)
        with pytest.raises(PydfsError):
            _write(fs, "/half", KillAfter(data, BLOCK_SIZE * 4 + 10, cluster.namenode.kill))
        assert block_files(cluster) - before  # blocks of the lost upload reached the disks
        cluster.restart_namenode()
        assert not fs.exists("/half")
        assert fs.read_bytes("/survivor") == b"committed before the crash"
        cluster.wait_until(
            lambda: block_files(cluster) == before, LEASE + 20, "orphan blocks collected"
        )


def test_no_live_datanodes_is_a_clear_error(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(2)
    cli = Cli(cluster.url, tmp_path, cluster.admin_token)
    for node in cluster.datanodes:
        node.kill()
    cluster.wait_for_live(0)
    assert "no live data node" in cli.fails("put", "-", "/x", input=b"data")
    assert "no such file" in cli.fails("stat", "/x")


def test_full_disk_is_a_clear_error_and_keeps_old_data(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    cluster = cluster_factory(2, capacity=5 * BLOCK_SIZE)
    cli = Cli(cluster.url, tmp_path, cluster.admin_token)
    (tmp_path / "small").write_bytes(os.urandom(BLOCK_SIZE))
    cli("put", "small", "/small").ok()
    (tmp_path / "huge").write_bytes(os.urandom(12 * BLOCK_SIZE))
    message = cli.fails("put", "-f", "huge", "/small")
    assert "room" in message or "full" in message
    assert cli("get", "/small", "-").ok().raw == (tmp_path / "small").read_bytes()


def refusing_new_files(node: NodeProcess) -> NodeProcess:
    """*node*, its ``tmp/`` swapped for a file: it can make no block file, as a disk gone bad
    refuses them."""
    tmp = node.data_dir / "tmp"
    shutil.rmtree(tmp)
    tmp.write_bytes(b"")
    return node


def test_a_data_node_whose_disk_refuses_blocks_is_written_around(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """One of three data nodes can no longer make files (its ``tmp/`` swapped for a file, as a
    disk gone bad refuses them). With one replica, every block placed on it has it first in
    its pipeline: the files are written until it has refused one, and every write succeeds on
    the other nodes and reads back."""
    cluster = cluster_factory(3)
    broken = refusing_new_files(cluster.datanodes[0])
    files: dict[str, bytes] = {}
    with cluster.client() as fs:
        while not value(scrape(broken.url), "pydfs_requests_total", method="PUT", status="503"):
            assert len(files) < 40, "the name node never placed a block on the broken node"
            path, data = f"/f{len(files)}", os.urandom(3 * BLOCK_SIZE + len(files))
            fs.write_bytes(path, data, replication=1)
            files[path] = data
        for path, data in files.items():
            assert fs.read_bytes(path) == data
            blocks = fs.info(path).blocks
            assert blocks is not None and len(blocks) == -(-len(data) // BLOCK_SIZE)
            for block in blocks:
                assert [n.id for n in block.nodes] != [node_id(broken)]


def test_a_data_node_whose_disk_refused_a_block_gets_no_new_ones_for_a_while(
    cluster_factory: Callable[..., LocalCluster], tmp_path: Path
) -> None:
    """Once its heartbeat says its disk refused a block, the name node places no block on it
    while the others can take them: writers no longer pay a failed attempt there, and an
    admin sees why."""
    cluster = cluster_factory(3)
    broken = refusing_new_files(cluster.datanodes[0])

    def attempts() -> float:  # block writes that reached the broken node
        samples = scrape(broken.url)
        return value(samples, "pydfs_requests_total", method="PUT") + value(
            samples, "pydfs_requests_total", method="POST"
        )

    with cluster.client() as fs:
        deadline, n = time.monotonic() + 30, 0
        while not any(s.write_failure for s in fs.datanodes()):
            assert time.monotonic() < deadline, "the name node never heard of the failure"
            fs.write_bytes(f"/warm{n}", os.urandom(1000))
            n += 1
        (state,) = [s for s in fs.datanodes() if s.write_failure]
        assert state.id == node_id(broken) and "directory" in state.write_failure.lower()
    assert value(scrape(cluster.url), "pydfs_namenode_datanodes_refusing_blocks") == 1
    report = Cli(cluster.url, tmp_path, cluster.admin_token)("admin", "report").ok().out
    (line,) = [line for line in report.splitlines() if "its disk refused a block" in line]
    assert line.startswith(state.id)
    before = attempts()
    files = {f"/f{i}": os.urandom(size) for i, size in enumerate([10, 3 * BLOCK_SIZE] * 4)}
    with cluster.client() as fs:  # a new client: none of its leases was granted before
        for path, data in files.items():
            fs.write_bytes(path, data)
        assert attempts() == before
        for path, data in files.items():
            assert fs.read_bytes(path) == data


def test_frozen_datanode_does_not_hang_writes_or_reads(
    cluster_factory: Callable[..., LocalCluster],
) -> None:
    """SIGSTOP: the process holds its sockets open but answers nothing. Writers and pipelines
    must give up on it after the stall timeout instead of waiting forever."""
    cluster = cluster_factory(3, datanode_args=["--stall-timeout", "1"])
    frozen = cluster.datanodes[0]
    files = {f"/cold{i}": os.urandom(BLOCK_SIZE * 3 + i) for i in range(4)}
    with cluster.client(stall_timeout=2) as fs:
        fs.write_bytes("/before", files["/cold0"])
        os.kill(frozen.pid, signal.SIGSTOP)
        try:
            started = time.monotonic()
            for path, data in files.items():
                fs.write_bytes(path, data)  # may meet the frozen node first or downstream
            for path, data in files.items():
                assert fs.read_bytes(path) == data
            assert fs.read_bytes("/before") == files["/cold0"]
            assert time.monotonic() - started < 60
        finally:
            os.kill(frozen.pid, signal.SIGCONT)
        cluster.wait_for_live(3)
        wait_healthy(cluster, fs)

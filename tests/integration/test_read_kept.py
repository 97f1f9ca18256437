"""A small file this client has seen is read in one round trip, and never from the past.

The client keeps the statuses (read tokens included) of small files it wrote or read, reads a
kept file's blocks while it asks the name node for the file's status, and keeps the bytes only
if the file still names those blocks. These tests make the kept status stale in each way it can
be (replaced, deleted, forbidden) while its blocks stay readable, so that a client that served
the bytes without the name node's word would fail them.
"""

from __future__ import annotations

import asyncio
import os
import signal
import urllib.request

import pytest
from prometheus_client.parser import text_string_to_metric_families

from pydfs.client import AsyncClient
from pydfs.cluster import LocalCluster
from pydfs.datanode.blocks import ROUTE
from pydfs.errors import PermissionDenied

pytestmark = pytest.mark.asyncio


def block_reads(cluster: LocalCluster) -> float:
    """Block GETs the data nodes have answered."""
    total = 0.0
    for node in cluster.datanodes:
        with urllib.request.urlopen(f"{node.url}/metrics", timeout=10) as resp:
            text = resp.read().decode()
        total += sum(
            s.value
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == "pydfs_requests_total"
            and s.labels.get("route") == ROUTE
            and s.labels.get("method") == "GET"
        )
    return total


async def read_with(fs: AsyncClient, status) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join([d async for d in fs.transfer.read(status)])


async def test_a_file_written_is_read_back_while_the_name_node_is_asked(cluster_factory) -> None:
    cluster = cluster_factory()
    data = os.urandom(5000)
    async with cluster.async_client() as fs:
        written = await fs.write_bytes("/kept", data)
        assert written.blocks and all(b.token for b in written.blocks)  # readable at once
        before = await asyncio.to_thread(block_reads, cluster)
        os.kill(cluster.namenode.pid, signal.SIGSTOP)
        try:
            read = asyncio.create_task(fs.read_bytes("/kept"))
            for _ in range(100):  # the block is asked for before the name node answers
                if await asyncio.to_thread(block_reads, cluster) > before:
                    break
                await asyncio.sleep(0.05)
            else:
                pytest.fail("no block was read while the name node was stopped")
            assert not read.done()  # and the bytes wait for its answer
        finally:
            os.kill(cluster.namenode.pid, signal.SIGCONT)
        assert await read == data
        # A ranged read of it goes the same way.
        assert await fs.read_bytes("/kept", 100, 50) == data[100:150]


async def test_a_file_replaced_or_deleted_elsewhere_is_never_read_from_the_past(
    shared_cluster: LocalCluster,
) -> None:
    old, new = os.urandom(3000), os.urandom(3000)
    async with shared_cluster.async_client() as a, shared_cluster.async_client() as b:
        await a.mkdir("/kept-past", parents=True)
        kept = await a.write_bytes("/kept-past/f", old)
        assert await a.read_bytes("/kept-past/f") == old
        # A copy shares the old blocks, so they stay on the data nodes, readable with the
        # tokens a holds, after the file itself is replaced and then deleted.
        await b.copy("/kept-past/f", "/kept-past/copy")
        await b.write_bytes("/kept-past/f", new)
        assert await read_with(a, kept) == old
        assert await a.read_bytes("/kept-past/f") == new
        assert await a.read_bytes("/kept-past/f", 10, 20) == new[10:30]
        await b.delete("/kept-past/f")
        assert await read_with(a, kept) == old
        with pytest.raises(FileNotFoundError):
            await a.read_bytes("/kept-past/f")
        # Renamed onto: the name now names other blocks, read as they are.
        await b.write_bytes("/kept-past/g", new)
        assert await a.read_bytes("/kept-past/g") == new
        await b.move("/kept-past/copy", "/kept-past/g", overwrite=True)
        assert await a.read_bytes("/kept-past/g") == old


async def test_a_kept_file_its_reader_may_no_longer_read_is_refused(
    shared_cluster: LocalCluster,
) -> None:
    async with shared_cluster.async_client() as admin:
        token = await admin.add_user("kept-reader")
        async with shared_cluster.async_client(token=token) as user:
            home = "/user/kept-reader"
            kept = await user.write_bytes(f"{home}/f", b"secret" * 100)
            assert await user.read_bytes(f"{home}/f") == b"secret" * 100
            await admin.chmod(f"{home}/f", 0o000)
            assert await read_with(user, kept) == b"secret" * 100  # the token still works
            with pytest.raises(PermissionDenied):
                await user.read_bytes(f"{home}/f")
            # A file its writer may write but not read: no read tokens in the commit's answer.
            await admin.chmod(f"{home}/f", 0o200)
            written = await user.write_bytes(f"{home}/f", b"other" * 100)
            assert written.blocks and not any(b.token for b in written.blocks)
            with pytest.raises(PermissionDenied):
                await user.read_bytes(f"{home}/f")

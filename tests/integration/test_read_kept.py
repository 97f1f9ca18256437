"""A small file this client has seen is read in one round trip, and never from the past.

The client keeps the statuses of small files it wrote or read, with a token for each block (the
write token it wrote the block with, which reads it back, or a stat's read token), reads a kept
file's blocks while it asks the name node for the file's status, and keeps the bytes only if
the file still names those blocks. These tests make the kept status stale in each way it can
be (replaced, deleted, forbidden) while its blocks stay readable, so that a client that served
the bytes without the name node's word would fail them.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

import pytest

from pydfs.client import AsyncClient
from pydfs.client.transfer import KEPT_SIZE
from pydfs.cluster import LocalCluster
from pydfs.datanode.blocks import ROUTE
from pydfs.errors import PermissionDenied
from pydfs.wire import API, H_BLOCK_TOKEN
from tests.conftest import block_files, block_path, node_id
from tests.integration.test_metrics import scrape, value


def block_reads(cluster: LocalCluster) -> float:
    """Block GETs the data nodes have served."""
    return sum(
        value(scrape(node.url), "pydfs_requests_total", route=ROUTE, method="GET", status="200")
        for node in cluster.datanodes
    )


def corrupt_reports(cluster: LocalCluster) -> float:
    route = f"{API}/blocks/corrupt"
    return value(scrape(cluster.url), "pydfs_requests_total", route=route, method="POST")


async def read_with(fs: AsyncClient, status) -> bytes:  # type: ignore[no-untyped-def]
    return b"".join([d async for d in fs.transfer.read(status)])


def kept_of(fs: AsyncClient, path: str):  # type: ignore[no-untyped-def]
    return fs.transfer._kept[path][1]


async def guessed_while_stopped(cluster: LocalCluster, fs: AsyncClient, path: str) -> Any:
    """Read *path* with the name node stopped until the guess from its kept status is done;
    returns the read's task and what the guess found (None: it failed)."""
    guesses: list[bytes | None] = []
    guess = fs.transfer._read_kept

    async def watched(*args):  # type: ignore[no-untyped-def]
        guesses.append(await guess(*args))
        return guesses[-1]

    fs.transfer._read_kept = watched  # type: ignore[method-assign]
    os.kill(cluster.namenode.pid, signal.SIGSTOP)
    try:
        read = asyncio.create_task(fs.read_bytes(path))
        for _ in range(200):
            if guesses:
                break
            await asyncio.sleep(0.05)
        assert len(guesses) == 1, "no guess ended while the name node was stopped"
    finally:
        os.kill(cluster.namenode.pid, signal.SIGCONT)
        fs.transfer._read_kept = guess  # type: ignore[method-assign]
    return read, guesses[0]


@pytest.mark.asyncio
async def test_a_file_written_is_read_back_while_the_name_node_is_asked(cluster_factory) -> None:
    cluster = cluster_factory()
    data = os.urandom(5000)
    async with cluster.async_client() as fs:
        written = await fs.write_bytes("/kept", data)
        assert written.blocks and not any(b.token for b in written.blocks)  # no credentials
        assert all(b.token for b in kept_of(fs, "/kept").blocks or [])  # but kept with them
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


@pytest.mark.asyncio
async def test_a_file_replaced_or_deleted_elsewhere_is_never_read_from_the_past(
    shared_cluster: LocalCluster,
) -> None:
    old, new = os.urandom(3000), os.urandom(3000)
    async with shared_cluster.async_client() as a, shared_cluster.async_client() as b:
        await a.mkdir("/kept-past", parents=True)
        await a.write_bytes("/kept-past/f", old)
        kept = kept_of(a, "/kept-past/f")
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


@pytest.mark.asyncio
async def test_a_kept_file_its_reader_may_no_longer_read_is_refused(
    shared_cluster: LocalCluster,
) -> None:
    async with shared_cluster.async_client() as admin:
        token = await admin.add_user("kept-reader")
        async with shared_cluster.async_client(token=token) as user:
            home = "/user/kept-reader"
            await user.write_bytes(f"{home}/f", b"secret" * 100)
            kept = kept_of(user, f"{home}/f")
            assert await user.read_bytes(f"{home}/f") == b"secret" * 100
            await admin.chmod(f"{home}/f", 0o000)
            assert await read_with(user, kept) == b"secret" * 100  # the token still works
            with pytest.raises(PermissionDenied):
                await user.read_bytes(f"{home}/f")
            # A file its writer may write but not read: what it wrote is kept (its write
            # tokens read back only its own bytes), and still not served.
            await admin.chmod(f"{home}/f", 0o200)
            await user.write_bytes(f"{home}/f", b"other" * 100)
            assert f"{home}/f" in user.transfer._kept
            with pytest.raises(PermissionDenied):
                await user.read_bytes(f"{home}/f")


@pytest.mark.asyncio
async def test_a_kept_files_replica_missing_is_read_elsewhere_and_reported(
    cluster_factory,
) -> None:
    cluster = cluster_factory()
    data = os.urandom(5000)
    async with cluster.async_client() as fs:
        kept = await fs.write_bytes("/f", data)
        block = (kept.blocks or [])[0]
        by_id = {node_id(node): node for node in cluster.datanodes}
        block_path(by_id[block.nodes[0].id], block.id).unlink()  # the one a guess tries first
        before = await asyncio.to_thread(corrupt_reports, cluster)
        read, guessed = await guessed_while_stopped(cluster, fs, "/f")
        assert guessed == data  # from the other replica
        assert await read == data
        assert await asyncio.to_thread(corrupt_reports, cluster) == before + 1


@pytest.mark.asyncio
async def test_blocks_a_file_no_longer_names_are_not_reported_when_a_guess_misses_them(
    cluster_factory,
) -> None:
    cluster = cluster_factory()
    old, new = os.urandom(5000), os.urandom(5000)
    async with cluster.async_client() as a, cluster.async_client() as b:
        kept = await a.write_bytes("/f", old)
        await b.write_bytes("/f", new)
        gone = (kept.blocks or [])[0].id
        cluster.wait_until(lambda: gone not in block_files(cluster), 30, "old block deleted")
        before = await asyncio.to_thread(corrupt_reports, cluster)
        read, guessed = await guessed_while_stopped(cluster, a, "/f")
        assert guessed is None  # both replicas said the block is not there
        assert await read == new
        assert await asyncio.to_thread(corrupt_reports, cluster) == before


@pytest.mark.asyncio
@pytest.mark.parametrize("replica", [0, 1])
async def test_a_guess_waits_on_no_node_the_name_node_knows_is_dead(
    cluster_factory, replica: int
) -> None:
    """The kept status's first replica hangs; or its second does, and its first has lost the
    block by the time it is read (so a guess moves on to the second), the block copied to a
    third node meanwhile."""
    cluster = cluster_factory(3)
    data = os.urandom(5000)
    async with cluster.async_client(stall_timeout=60.0) as fs:
        await fs.write_bytes("/f", data)
        block = (kept_of(fs, "/f").blocks or [])[0]
        by_id = {node_id(node): node for node in cluster.datanodes}
        hung = block.nodes[replica].id
        os.kill(by_id[hung].pid, signal.SIGSTOP)  # it takes connections, and answers nothing
        try:

            def dead_and_copied() -> bool:
                with cluster.client() as admin:
                    dead = any(n.id == hung and n.state == "dead" for n in admin.datanodes())
                    [now] = admin.info("/f").blocks or []
                return dead and len([n for n in now.nodes if n.live]) == 2

            await asyncio.to_thread(cluster.wait_until, dead_and_copied, 30, f"{hung} replaced")
            if replica:
                block_path(by_id[block.nodes[0].id], block.id).unlink()
            assert await asyncio.wait_for(fs.read_bytes("/f"), 20) == data
        finally:
            os.kill(by_id[hung].pid, signal.SIGCONT)


@pytest.mark.asyncio
async def test_what_is_kept_of_a_file_gone_is_dropped(shared_cluster: LocalCluster) -> None:
    async with shared_cluster.async_client() as fs:
        await fs.write_bytes("/kept-gone", b"x" * 100)
        await fs.delete("/kept-gone")
        assert "/kept-gone" in fs.transfer._kept
        with pytest.raises(FileNotFoundError):
            await fs.read_bytes("/kept-gone")  # a guess, then the answer: no such file
        assert "/kept-gone" not in fs.transfer._kept  # so the next read makes no guess


@pytest.mark.asyncio
async def test_only_small_files_of_few_blocks_are_kept(shared_cluster: LocalCluster) -> None:
    async with shared_cluster.async_client() as fs:
        await fs.write_bytes("/kept-small", b"s" * 10)
        await fs.write_bytes("/kept-many", os.urandom(5 * 4096), block_size=4096)
        await fs.write_bytes("/kept-big", os.urandom(KEPT_SIZE + 1), block_size=2 * KEPT_SIZE)
        assert "/kept-small" in fs.transfer._kept
        assert "/kept-many" not in fs.transfer._kept and "/kept-big" not in fs.transfer._kept


def test_the_cli_prints_no_block_tokens(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    local = tmp_path / "small.txt"
    local.write_bytes(b"small\n")
    out = json.loads(cli("put", "--json", str(local), "/kept-cli.txt").ok().out)
    [status] = out if isinstance(out, list) else [out]
    assert status["blocks"] and all(b["token"] is None for b in status["blocks"])


def http_get(url: str, token: str) -> int:
    request = urllib.request.Request(url, headers={H_BLOCK_TOKEN: token})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.mark.asyncio
async def test_a_write_token_reads_back_its_own_block_only(cluster_factory) -> None:
    cluster = cluster_factory(3)
    async with cluster.async_client() as fs:
        await fs.write_bytes("/kept-own", b"mine" * 100)
        await fs.write_bytes("/kept-other", b"else" * 100)
        [own] = kept_of(fs, "/kept-own").blocks or []
        [other] = kept_of(fs, "/kept-other").blocks or []
        assert own.token and own.token.startswith("w.")  # the token it was written with
        node = own.nodes[0].url
        assert await asyncio.to_thread(http_get, f"{node}{API}/blocks/{own.id}", own.token) == 200
        refused = await asyncio.to_thread(http_get, f"{node}{API}/blocks/{other.id}", own.token)
        assert refused == 401
        # Nor on a node it does not name, though the block may be copied there later.
        [elsewhere] = [
            n.url for n in cluster.datanodes if node_id(n) not in {x.id for x in own.nodes}
        ]
        refused = await asyncio.to_thread(http_get, f"{elsewhere}{API}/blocks/{own.id}", own.token)
        assert refused == 401

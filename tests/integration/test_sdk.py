"""The SDK's file objects, walk and progress callbacks, sync and async, on a real cluster."""

from __future__ import annotations

import asyncio
import io
import os
from pathlib import Path

import pytest

from pydfs import Client
from pydfs.cluster import LocalCluster
from pydfs.errors import InvalidArgument, PydfsError
from pydfs.wire import CHUNK_SIZE
from tests.conftest import BLOCK_SIZE, block_files

SIZE = 3 * BLOCK_SIZE + 1234


@pytest.fixture(scope="module")
def data() -> bytes:
    return os.urandom(SIZE)


@pytest.fixture
def fs(shared_cluster: LocalCluster):
    with shared_cluster.client() as client:
        yield client


def test_sync_reader_seeks_and_reads_across_blocks(fs: Client, data: bytes) -> None:
    fs.write_bytes("/read.bin", data)
    with fs.open("/read.bin", "rb") as f:
        assert isinstance(f, io.BufferedIOBase) and f.seekable() and f.size == SIZE
        assert f.read(10) == data[:10] and f.tell() == 10
        f.seek(BLOCK_SIZE - 7)
        assert f.read(20) == data[BLOCK_SIZE - 7 : BLOCK_SIZE + 13]  # across a block boundary
        assert f.seek(5, io.SEEK_CUR) == BLOCK_SIZE + 18
        assert f.read(3) == data[BLOCK_SIZE + 18 : BLOCK_SIZE + 21]
        f.seek(-1000, io.SEEK_END)
        assert f.read() == data[-1000:] and f.read(5) == b""
        f.seek(SIZE + 10)
        assert f.read(5) == b""
        f.seek(CHUNK_SIZE - 1)
        buf = bytearray(2 * BLOCK_SIZE)  # large: straight through, past the read-ahead buffer
        assert f.readinto(buf) == len(buf) and bytes(buf) == data[CHUNK_SIZE - 1 :][: len(buf)]
        with pytest.raises(ValueError):
            f.seek(-1)
        f.seek(0)
        assert f.read() == data
    assert f.closed
    with pytest.raises(ValueError):
        f.read(1)


def test_sync_reader_lines_and_text(fs: Client) -> None:
    lines = [f"line {i}\n".encode() for i in range(50_000)]  # ~ 0.5 MB, several blocks
    fs.write_bytes("/lines.txt", b"".join(lines))
    with fs.open("/lines.txt") as f:
        assert f.readline() == lines[0]
        assert list(f)[-1] == lines[-1]
    with io.TextIOWrapper(fs.open("/lines.txt"), encoding="ascii") as text:
        assert sum(1 for _ in text) == len(lines)


def test_sync_writer_streams_several_blocks(fs: Client, data: bytes) -> None:
    with fs.open("/written.bin", "wb") as f:
        for i in range(0, SIZE, 50_000):
            assert f.write(bytearray(data[i : i + 50_000])) == len(data[i : i + 50_000])
        assert not fs.exists("/written.bin")  # nothing visible before the commit
    assert f.status is not None and f.status.size == SIZE and len(f.status.blocks or []) == 4
    assert fs.read_bytes("/written.bin") == data

    with fs.open("/written.bin", "wb", replication=1) as f:  # replaces
        f.write(b"short")
    assert fs.read_bytes("/written.bin") == b"short"
    assert fs.info("/written.bin").replication == 1
    with pytest.raises(FileExistsError):
        fs.open("/written.bin", "xb")
    with pytest.raises(FileNotFoundError):
        fs.open("/no/such/dir/file", "wb")
    with pytest.raises(InvalidArgument):
        fs.open("/written.bin", "ab")  # type: ignore[call-overload]


def test_sync_writer_failing_midway_leaves_old_content(
    fs: Client, data: bytes, shared_cluster: LocalCluster
) -> None:
    fs.write_bytes("/atomic.bin", b"old content")
    before = block_files(shared_cluster)
    for path in ("/atomic.bin", "/atomic-new.bin"):
        with pytest.raises(RuntimeError, match="midway"), fs.open(path, "wb") as f:
            f.write(data)  # several blocks already on the data nodes
            raise RuntimeError("midway")
        assert f.closed
    assert fs.read_bytes("/atomic.bin") == b"old content"
    assert not fs.exists("/atomic-new.bin")

    f = fs.open("/atomic.bin", "wb")
    f.write(data[:1000])
    f.abort()
    assert fs.read_bytes("/atomic.bin") == b"old content"
    # The aborted uploads' blocks are garbage: the name node has them deleted.
    shared_cluster.wait_until(
        lambda: block_files(shared_cluster) <= before, 30, "aborted blocks collected"
    )


def test_walk(fs: Client) -> None:
    for d in ("/walk/a/b", "/walk/a/c", "/walk/empty"):
        fs.mkdir(d, parents=True)
    for p in ("/walk/top.txt", "/walk/a/one", "/walk/a/b/two", "/walk/a/b/three"):
        fs.write_bytes(p, p.encode())
    assert list(fs.walk("/walk")) == [
        ("/walk", ["a", "empty"], ["top.txt"]),
        ("/walk/a", ["b", "c"], ["one"]),
        ("/walk/a/b", [], ["three", "two"]),
        ("/walk/a/c", [], []),
        ("/walk/empty", [], []),
    ]
    pruned = []
    for dirpath, dirnames, _ in fs.walk("/walk"):
        pruned.append(dirpath)
        if "a" in dirnames:
            dirnames.remove("a")  # as with os.walk: not descended into
    assert pruned == ["/walk", "/walk/empty"]
    assert list(fs.walk("/walk/top.txt")) == []
    with pytest.raises(FileNotFoundError):
        list(fs.walk("/walk/missing"))


def test_progress_totals_equal_the_file_size(fs: Client, data: bytes, tmp_path: Path) -> None:
    local = tmp_path / "up.bin"
    local.write_bytes(data)
    up: list[int] = []
    fs.upload(local, "/progress.bin", progress=up.append)
    assert sum(up) == SIZE and len(up) > 3 and min(up) > 0

    down: list[int] = []
    assert fs.download("/progress.bin", tmp_path / "down.bin", progress=down.append) == SIZE
    assert sum(down) == SIZE and len(down) > 3
    assert (tmp_path / "down.bin").read_bytes() == data

    piped: list[int] = []
    fs.write_stream("/progress-stream.bin", io.BytesIO(data), progress=piped.append)
    assert sum(piped) == SIZE

    written: list[int] = []
    with fs.open("/progress-open.bin", "wb", progress=written.append) as f:
        f.write(data)
    assert sum(written) == SIZE


@pytest.mark.asyncio
async def test_async_reader_and_writer(shared_cluster: LocalCluster, data: bytes) -> None:
    async with shared_cluster.async_client() as fs:
        async with fs.open("/async.bin", "wb") as w:
            for i in range(0, SIZE, 100_000):
                await w.write(data[i : i + 100_000])
        assert w.status is not None and w.status.size == SIZE

        async with fs.open("/async.bin") as r:
            r.seek(2 * BLOCK_SIZE - 100)
            assert await r.read(200) == data[2 * BLOCK_SIZE - 100 : 2 * BLOCK_SIZE + 100]
            assert await r.read_at(5, 5) == data[5:10] and r.tell() == 2 * BLOCK_SIZE + 100
            r.seek(0)
            assert await r.read() == data

        reader = await fs.open("/async.bin", "rb", buffer_size=4096)
        chunks = []
        while piece := await reader.read(1000):
            chunks.append(piece)
        await reader.close()
        assert b"".join(chunks) == data

        await fs.write_bytes("/async-lines.txt", b"".join(b"%d\n" % i for i in range(100_000)))
        async with fs.open("/async-lines.txt", buffer_size=1000) as r:
            assert await r.readline() == b"0\n"
            assert await r.readline(3) == b"1\n" and await r.readline(1) == b"2"
            r.seek(-6, io.SEEK_END)
            assert await r.readline() == b"99999\n" and await r.readline() == b""

        with pytest.raises(IsADirectoryError):
            await fs.open("/", "rb")


@pytest.mark.asyncio
async def test_async_writer_abort_and_failure(shared_cluster: LocalCluster, data: bytes) -> None:
    async with shared_cluster.async_client() as fs:
        await fs.write_bytes("/async-atomic.bin", b"old")
        with pytest.raises(RuntimeError):
            async with fs.open("/async-atomic.bin", "wb") as w:
                await w.write(data)
                raise RuntimeError("no")
        assert await fs.read_bytes("/async-atomic.bin") == b"old"

        w = await fs.open("/async-atomic.bin", "wb")
        await w.write(data[:10])
        task = asyncio.current_task()
        assert task is not None
        await w.abort()
        assert not task.cancelling()  # the abort cancels the upload, not its caller
        assert await fs.read_bytes("/async-atomic.bin") == b"old"
        with pytest.raises(ValueError):
            await w.write(b"more")

        # The commit itself fails (the directory went away): close() says so, nothing appears.
        await fs.mkdir("/doomed")
        w = await fs.open("/doomed/file.bin", "wb")
        await w.write(data)
        await fs.rmdir("/doomed", recursive=True)
        with pytest.raises(FileNotFoundError):
            await w.close()
        assert not await fs.exists("/doomed")


@pytest.mark.timeout(60)
def test_writer_whose_upload_dies_raises_instead_of_hanging(cluster_factory, data: bytes) -> None:
    cluster = cluster_factory(datanodes=1)
    with cluster.client() as fs:
        f = fs.open("/dies.bin", "wb", replication=1)
        f.write(data[:BLOCK_SIZE])
        cluster.datanodes[0].kill()
        with pytest.raises(PydfsError) as failed:
            f.write(data * 4)  # far more than the queue holds: it must not block forever
            f.close()
        assert isinstance(failed.value, ConnectionError), failed.value  # Unavailable
        f.abort()
        assert f.closed and not fs.exists("/dies.bin")


@pytest.mark.asyncio
async def test_async_walk(shared_cluster: LocalCluster) -> None:
    async with shared_cluster.async_client() as fs:
        await fs.mkdir("/awalk/x/y", parents=True)
        await fs.write_bytes("/awalk/x/f", b"f")
        seen = [entry async for entry in fs.walk("/awalk")]
        assert seen == [("/awalk", ["x"], []), ("/awalk/x", ["y"], ["f"]), ("/awalk/x/y", [], [])]


def _uploads_in_flight(cluster: LocalCluster) -> int:
    import urllib.request

    with urllib.request.urlopen(f"{cluster.url}/metrics", timeout=10) as resp:
        text = resp.read().decode()
    (line,) = [ln for ln in text.splitlines() if ln.startswith("pydfs_namenode_uploads_in_flight")]
    return int(float(line.split()[-1]))


@pytest.mark.asyncio
async def test_small_writes_take_leases_from_batches(shared_cluster: LocalCluster) -> None:
    """Small files commit to the paths their writers name, are refused where those may not
    write, and a closing client hands back the leases it did not use."""
    name = f"small{os.getpid()}"
    with shared_cluster.client() as admin:
        token = admin.add_user(name)
    before = _uploads_in_flight(shared_cluster)
    async with shared_cluster.async_client(token=token) as fs:
        home = f"/user/{name}"
        contents = {f"{home}/f{i}": os.urandom(i * 1000) for i in range(7)}
        for path, content in list(contents.items())[:3]:  # batches of 1 and 2
            await fs.write_bytes(path, content)
        await asyncio.gather(*(fs.write_bytes(p, c) for p, c in list(contents.items())[3:]))
        for path, content in contents.items():
            assert await fs.read_bytes(path) == content
            assert (await fs.info(path)).owner == name
        with pytest.raises(PydfsError, match="ermission"):
            await fs.write_bytes("/not-mine", b"x")
        with pytest.raises(PydfsError, match="exists"):
            await fs.write_bytes(f"{home}/f1", b"new", overwrite=False)
        assert await fs.read_bytes(f"{home}/f1") == contents[f"{home}/f1"]
        assert not await fs.exists("/not-mine")
        assert _uploads_in_flight(shared_cluster) > before  # unused leases of the last batch
    assert _uploads_in_flight(shared_cluster) == before

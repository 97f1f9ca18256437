"""pydfs:// through fsspec: fsspec's own conformance suites (as s3fs/tests/derived runs them),
then what is particular to pydfs: server-side copies and moves, atomic streamed writes."""

from __future__ import annotations

import os
import posixpath
import uuid
from collections.abc import Iterator

import fsspec
import fsspec.asyn
import fsspec.tests.abstract as abstract
import pytest

from pydfs.cluster import LocalCluster
from pydfs.fsspec import PydfsFileSystem
from tests.conftest import BLOCK_SIZE


@pytest.fixture(scope="module")
def pydfs_fs(shared_cluster: LocalCluster) -> Iterator[PydfsFileSystem]:
    fs = PydfsFileSystem(
        namenode=shared_cluster.url, token=shared_cluster.admin_token, skip_instance_cache=True
    )
    yield fs
    fsspec.asyn.sync(fs.loop, fs.aclose)


class PydfsFixtures(abstract.AbstractFixtures):
    @pytest.fixture
    def fs(self, pydfs_fs: PydfsFileSystem) -> PydfsFileSystem:
        return pydfs_fs

    @pytest.fixture
    def fs_join(self):
        return posixpath.join

    @pytest.fixture
    def fs_path(self, pydfs_fs: PydfsFileSystem) -> Iterator[str]:
        path = f"/abstract-{uuid.uuid4().hex[:8]}"
        yield path
        if pydfs_fs.exists(path):
            pydfs_fs.rm(path, recursive=True)

    @pytest.fixture
    def supports_empty_directories(self) -> bool:
        return True  # pydfs has real directories


class TestPydfsCopy(abstract.AbstractCopyTests, PydfsFixtures):
    pass


class TestPydfsGet(abstract.AbstractGetTests, PydfsFixtures):
    pass


class TestPydfsPut(abstract.AbstractPutTests, PydfsFixtures):
    pass


class TestPydfsPipe(abstract.AbstractPipeTests, PydfsFixtures):
    pass


class TestPydfsOpen(abstract.AbstractOpenTests, PydfsFixtures):
    pass


# --- pydfs specifics ------------------------------------------------------------------------


def test_urls_resolve_through_the_entry_point(
    shared_cluster: LocalCluster, admin_env: None
) -> None:
    hostport = shared_cluster.url.removeprefix("http://")
    url = f"pydfs://{hostport}/urls/hello.txt"
    fs, path = fsspec.core.url_to_fs(url)
    assert isinstance(fs, PydfsFileSystem) and path == "/urls/hello.txt"
    assert fs.namenode == shared_cluster.url
    with fsspec.open(url, "wb") as f:
        f.write(b"hello")
    with fsspec.open(url, "rb") as f:
        assert f.read() == b"hello"
    assert fs.unstrip_protocol(path) == url
    assert PydfsFileSystem._strip_protocol(f"pydfs://{hostport}") == "/"
    assert PydfsFileSystem._strip_protocol("pydfs:///a/b/") == "/a/b"
    assert fs.info(path)["type"] == "file" and fs.isdir("/urls")
    assert fs.ls("/urls", detail=False) == [path]
    with pytest.raises(FileNotFoundError):
        fs.info("/urls/missing")


def test_cp_file_is_server_side_and_shares_blocks(
    pydfs_fs: PydfsFileSystem, shared_cluster: LocalCluster
) -> None:
    data = os.urandom(2 * BLOCK_SIZE + 123)
    pydfs_fs.pipe_file("/cp/src.bin", data)
    pydfs_fs.cp_file("/cp/src.bin", "/cp/deeper/dst.bin")
    with shared_cluster.client() as client:
        src, dst = client.info("/cp/src.bin"), client.info("/cp/deeper/dst.bin")
    ids = [b.id for b in src.blocks or []]
    assert len(ids) == 3 and [b.id for b in dst.blocks or []] == ids
    assert pydfs_fs.cat_file("/cp/deeper/dst.bin") == data


def test_mv_is_one_atomic_rename(pydfs_fs: PydfsFileSystem, shared_cluster: LocalCluster) -> None:
    data = os.urandom(BLOCK_SIZE + 1)
    pydfs_fs.pipe_file("/mv/a/file.bin", data)
    pydfs_fs.pipe_file("/mv/a/sub/x", b"x")
    with shared_cluster.client() as client:
        before = [b.id for b in client.info("/mv/a/file.bin").blocks or []]
        pydfs_fs.mv("/mv/a/file.bin", "/mv/b.bin")  # same blocks, new name: a rename
        assert [b.id for b in client.info("/mv/b.bin").blocks or []] == before
    assert not pydfs_fs.exists("/mv/a/file.bin")

    pydfs_fs.pipe_file("/mv/c.bin", b"old")
    pydfs_fs.mv("/mv/b.bin", "/mv/c.bin")  # replaces
    assert pydfs_fs.cat_file("/mv/c.bin") == data

    pydfs_fs.mv("/mv/a", "/mv/moved")  # a whole directory at once
    assert pydfs_fs.cat_file("/mv/moved/sub/x") == b"x" and not pydfs_fs.exists("/mv/a")
    pydfs_fs.mkdir("/mv/into")
    pydfs_fs.mv("/mv/c.bin", "/mv/into")  # into an existing directory
    assert pydfs_fs.cat_file("/mv/into/c.bin") == data


def test_ranges_and_streamed_reads_across_blocks(pydfs_fs: PydfsFileSystem) -> None:
    data = os.urandom(3 * BLOCK_SIZE + 777)
    with pydfs_fs.open("/ranges/big.bin", "wb", block_size=100_000) as f:
        for i in range(0, len(data), 65_537):
            f.write(data[i : i + 65_537])
    assert pydfs_fs.size("/ranges/big.bin") == len(data)
    assert (
        pydfs_fs.cat_file("/ranges/big.bin", BLOCK_SIZE - 5, BLOCK_SIZE + 5)
        == (data[BLOCK_SIZE - 5 : BLOCK_SIZE + 5])
    )
    assert pydfs_fs.cat_file("/ranges/big.bin", -10) == data[-10:]
    assert pydfs_fs.cat_file("/ranges/big.bin", 5, -5) == data[5:-5]
    with pydfs_fs.open("/ranges/big.bin", "rb", block_size=50_000) as f:
        f.seek(2 * BLOCK_SIZE - 3)
        assert f.read(10) == data[2 * BLOCK_SIZE - 3 : 2 * BLOCK_SIZE + 7]
        f.seek(-100, os.SEEK_END)
        assert f.read() == data[-100:]


def test_failed_write_leaves_nothing(pydfs_fs: PydfsFileSystem) -> None:
    pydfs_fs.pipe_file("/failed/kept.txt", b"old content")
    for path in ("/failed/kept.txt", "/failed/new.txt"):
        f = pydfs_fs.open(path, "wb", block_size=10_000)
        with pytest.raises(RuntimeError, match="boom"), f:
            f.write(os.urandom(BLOCK_SIZE + 10))  # most of it is on data nodes already
            raise RuntimeError("boom")
        assert f.closed
    assert pydfs_fs.cat_file("/failed/kept.txt") == b"old content"
    assert not pydfs_fs.exists("/failed/new.txt")
    with pytest.raises(NotImplementedError):
        pydfs_fs.open("/failed/kept.txt", "ab")


def test_rm_and_makedirs(pydfs_fs: PydfsFileSystem) -> None:
    pydfs_fs.makedirs("/rm/a/b")
    with pytest.raises(FileExistsError):
        pydfs_fs.makedirs("/rm/a/b")
    pydfs_fs.makedirs("/rm/a/b", exist_ok=True)
    pydfs_fs.pipe({"/rm/a/b/1": b"1", "/rm/a/2": b"2"})
    with pytest.raises(OSError):
        pydfs_fs.rm("/rm/a")  # not empty, and not recursive
    pydfs_fs.rm("/rm/a/b/1")
    assert pydfs_fs.find("/rm") == ["/rm/a/2"]
    pydfs_fs.rm("/rm", recursive=True)
    assert not pydfs_fs.exists("/rm")
    with pytest.raises(FileNotFoundError):
        pydfs_fs.rm("/rm")


@pytest.mark.asyncio
async def test_asynchronous_use_on_a_foreign_loop(shared_cluster: LocalCluster) -> None:
    fs = PydfsFileSystem(
        namenode=shared_cluster.url,
        token=shared_cluster.admin_token,
        asynchronous=True,
        skip_instance_cache=True,
    )
    try:
        await fs._pipe_file("/async/x", b"async bytes")
        assert await fs._cat_file("/async/x", start=6) == b"bytes"
        assert [e["name"] for e in await fs._ls("/async")] == ["/async/x"]
        async with shared_cluster.async_client() as client:
            assert (await client.info("/async/x")).size == 11
    finally:
        await fs.aclose()

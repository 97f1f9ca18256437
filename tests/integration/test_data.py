"""The data path through the SDK: multi-block files, ranged reads, concurrent clients."""

from __future__ import annotations

import asyncio
import hashlib
import os
import threading

import pytest

from pydfs import Conflict
from pydfs.cluster import LocalCluster
from pydfs.wire import CHUNK_SIZE
from tests.conftest import BLOCK_SIZE, block_files

SIZES = [
    0,
    1,
    CHUNK_SIZE - 1,
    CHUNK_SIZE,
    CHUNK_SIZE + 1,
    BLOCK_SIZE,
    BLOCK_SIZE + 1,
    3 * BLOCK_SIZE + BLOCK_SIZE // 2 + 17,
]


@pytest.mark.parametrize("size", SIZES)
def test_random_files_read_back_identical(shared_cluster: LocalCluster, size: int) -> None:
    data = os.urandom(size)
    with shared_cluster.client() as fs:
        fs.mkdir("/sizes", parents=True)
        status = fs.write_bytes(f"/sizes/{size}", data)
        assert status.size == size
        assert len(status.blocks or []) == -(-size // BLOCK_SIZE)
        for block in status.blocks or []:
            assert {n.id for n in block.nodes} and len(block.nodes) == 2
        assert fs.read_bytes(f"/sizes/{size}") == data


def test_ranged_reads(shared_cluster: LocalCluster) -> None:
    data = os.urandom(2 * BLOCK_SIZE + 5000)
    with shared_cluster.client() as fs:
        fs.write_bytes("/ranged", data)
        for offset, length in [
            (0, 10),
            (CHUNK_SIZE - 3, 7),  # across a chunk boundary
            (BLOCK_SIZE - 100, 300),  # across a block boundary
            (BLOCK_SIZE + 12345, BLOCK_SIZE),
            (len(data) - 1, 10),  # past the end: what exists
            (len(data), 5),
        ]:
            assert fs.read_bytes("/ranged", offset, length) == data[offset : offset + length]


def test_upload_download_local_files_stream(shared_cluster: LocalCluster, tmp_path) -> None:
    src = tmp_path / "big.bin"
    with open(src, "wb") as f:
        for _ in range(12):
            f.write(os.urandom(BLOCK_SIZE // 2 + 1))
    with shared_cluster.client() as fs:
        fs.upload(src, "/big.bin")
        fs.download("/big.bin", tmp_path / "back.bin")
        with pytest.raises(FileExistsError):
            fs.download("/big.bin", tmp_path / "back.bin")
    assert _sha(src.read_bytes()) == _sha((tmp_path / "back.bin").read_bytes())
    assert not list(tmp_path.glob(".*pydfs-part"))


def test_failed_upload_leaves_nothing(shared_cluster: LocalCluster) -> None:
    class Exploding:
        def __init__(self) -> None:
            self.sent = 0

        def seekable(self) -> bool:
            return False

        def read(self, n: int) -> bytes:
            self.sent += n
            if self.sent > 3 * BLOCK_SIZE:
                raise OSError("source went away")
            return os.urandom(n)

    before = block_files(shared_cluster)
    with shared_cluster.client() as fs:
        fs.write_bytes("/victim", b"old content")
        with pytest.raises(OSError, match="source went away"):
            fs._run(fs._aio.write_stream("/victim", Exploding()))  # type: ignore[arg-type]
        assert fs.read_bytes("/victim") == b"old content"  # the old version is untouched
        with pytest.raises(OSError):
            fs._run(fs._aio.write_stream("/never", Exploding()))  # type: ignore[arg-type]
        assert not fs.exists("/never")
        victim = {b.id for b in fs.info("/victim").blocks or []}
    # The aborted uploads' blocks are collected from the data nodes.
    shared_cluster.wait_until(
        lambda: block_files(shared_cluster) - before <= victim, 15, "aborted blocks collected"
    )


def test_two_clients_at_once(shared_cluster: LocalCluster) -> None:
    """Concurrent writers of one path end with one whole version; readers never see a mix."""
    versions = {bytes([i]) * (BLOCK_SIZE * 2 + i * 1000) for i in range(1, 5)}
    digests = {_sha(v) for v in versions}
    errors: list[BaseException] = []
    seen: set[str] = set()
    stop = threading.Event()

    def writer(payloads: list[bytes]) -> None:
        try:
            with shared_cluster.client() as fs:
                for _ in range(3):
                    for p in payloads:
                        fs.write_bytes("/contended", p)
        except BaseException as exc:
            errors.append(exc)

    def reader() -> None:
        try:
            with shared_cluster.client() as fs:
                while not stop.is_set():
                    try:
                        seen.add(_sha(fs.read_bytes("/contended")))
                    except (FileNotFoundError, ConnectionError, Conflict):
                        pass  # not written yet, or replaced and collected mid-read
        except BaseException as exc:
            errors.append(exc)

    ordered = sorted(versions)
    threads = [
        threading.Thread(target=writer, args=(ordered[:2],)),
        threading.Thread(target=writer, args=(ordered[2:],)),
    ]
    readers = [threading.Thread(target=reader) for _ in range(2)]
    for t in threads + readers:
        t.start()
    for t in threads:
        t.join(120)
    stop.set()
    for t in readers:
        t.join(60)
    assert not errors, errors
    assert seen and seen <= digests  # every read was one whole version
    with shared_cluster.client() as fs:
        assert _sha(fs.read_bytes("/contended")) in digests


@pytest.mark.asyncio
async def test_async_client_concurrent_files(shared_cluster: LocalCluster) -> None:
    files = {f"/async/{i}": os.urandom(BLOCK_SIZE + i * 999) for i in range(8)}
    async with shared_cluster.async_client() as fs:
        await fs.mkdir("/async")
        await asyncio.gather(*(fs.write_bytes(p, d) for p, d in files.items()))
        back = await asyncio.gather(*(fs.read_bytes(p) for p in files))
        assert back == list(files.values())
        assert sorted(e.name for e in await fs.ls("/async")) == sorted(
            p.rsplit("/", 1)[1] for p in files
        )


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()

import asyncio
import os

import pytest

from pydfs import checksum
from pydfs.checksum import BlockChecksums
from pydfs.datanode.blockstore import BlockStore, check_block_id
from pydfs.errors import ChecksumMismatch, InvalidArgument, NoSpace, NotFound, ProtocolError

CHUNK = 16
BLOCK = "0123456789abcdef" * 2


def write_block(store, block_id, data, *, expected=None):
    writer = store.writer(block_id, expected)
    for i in range(0, len(data), CHUNK):
        chunk = data[i : i + CHUNK]
        writer.write_chunk(chunk, checksum.crc(chunk))
    return asyncio.run(writer.commit(checksum.crc(data)))


def test_node_id_is_stable(tmp_path):
    first = BlockStore(tmp_path, CHUNK).node_id
    assert first.startswith("dn-")
    assert BlockStore(tmp_path, CHUNK).node_id == first
    assert BlockStore(tmp_path / "other", CHUNK).node_id != first


def test_commit_makes_a_durable_block_with_its_sidecar(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    data = os.urandom(3 * CHUNK + 5)
    sums = write_block(store, BLOCK, data, expected=len(data))
    assert store.path(BLOCK).read_bytes() == data
    assert store.path(BLOCK).parent.name == BLOCK[:2]
    sidecar = BlockChecksums.decode(store.path(BLOCK).with_suffix(".crc").read_bytes())
    assert sidecar == sums == store.checksums(BLOCK)
    assert (sidecar.size, sidecar.crc, sidecar.chunk_size) == (len(data), checksum.crc(data), CHUNK)
    assert sidecar.chunk_crcs == [
        checksum.crc(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)
    ]
    assert (store.used, store.count, store.reserved) == (len(data), 1, 0)
    assert list(store.list()) == [BLOCK]
    assert list(store.tmp_dir.iterdir()) == []

    again = BlockStore(tmp_path, CHUNK)
    assert (again.used, again.count) == (len(data), 1)
    assert again.exists(BLOCK)


def test_an_existing_block_cannot_be_written_again(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"x" * 5)
    with pytest.raises(InvalidArgument):
        store.writer(BLOCK, None)


def test_chunk_with_a_wrong_crc(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    writer = store.writer(BLOCK, None)
    with pytest.raises(ChecksumMismatch):
        writer.write_chunk(b"a" * CHUNK, checksum.crc(b"b" * CHUNK))
    writer.abort()
    assert not store.exists(BLOCK)


def test_whole_block_crc_mismatch(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    writer = store.writer(BLOCK, None)
    writer.write_chunk(b"abc", checksum.crc(b"abc"))
    with pytest.raises(ChecksumMismatch):
        asyncio.run(writer.commit(checksum.crc(b"abd")))
    writer.abort()
    assert not store.exists(BLOCK)


def test_short_chunk_must_be_last_and_chunks_not_too_long(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    writer = store.writer(BLOCK, None)
    writer.write_chunk(b"a" * 3, checksum.crc(b"a" * 3))
    with pytest.raises(ProtocolError):
        writer.write_chunk(b"b" * CHUNK, checksum.crc(b"b" * CHUNK))
    writer.abort()
    other = store.writer("f" * 32, None)
    with pytest.raises(ProtocolError):
        other.write_chunk(b"c" * (CHUNK + 1), checksum.crc(b"c" * (CHUNK + 1)))
    other.abort()


def test_abort_leaves_nothing_behind(tmp_path):
    store = BlockStore(tmp_path, CHUNK, capacity=1000)
    writer = store.writer(BLOCK, 100)
    assert store.reserved == 100
    writer.write_chunk(b"a" * CHUNK, checksum.crc(b"a" * CHUNK))
    assert list(store.tmp_dir.iterdir()) != []
    writer.abort()
    assert list(store.tmp_dir.iterdir()) == []
    assert (store.reserved, store.used, store.count) == (0, 0, 0)
    assert not store.exists(BLOCK)


def test_stale_tmp_files_are_removed_at_start(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    store.writer(BLOCK, None).write_chunk(b"a", checksum.crc(b"a"))  # never committed
    assert list(store.tmp_dir.iterdir()) != []
    assert list(BlockStore(tmp_path, CHUNK).tmp_dir.iterdir()) == []


def test_delete(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"x" * 20)
    write_block(store, "a" * 32, b"y" * 7)
    assert store.delete(BLOCK) is True
    assert not store.path(BLOCK).exists()
    assert not store.path(BLOCK).with_suffix(".crc").exists()
    assert (store.used, store.count) == (7, 1)
    assert store.delete(BLOCK) is False
    with pytest.raises(NotFound):
        store.checksums(BLOCK)


def test_quarantine_moves_block_and_sidecar(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"x" * 20)
    store.quarantine(BLOCK)
    assert not store.exists(BLOCK)
    assert sorted(p.name for p in store.quarantine_dir.iterdir()) == [
        f"{BLOCK}.blk",
        f"{BLOCK}.crc",
    ]
    assert (store.quarantine_dir / f"{BLOCK}.blk").read_bytes() == b"x" * 20
    assert (store.used, store.count) == (0, 0)
    assert list(store.list()) == []


@pytest.mark.parametrize(
    "bad",
    ["../etc/passwd", "0123456789ABCDEF" * 2, "a" * 31, "a" * 33, "", "g" * 32, "a" * 32 + "\n"],
)
def test_invalid_block_ids_are_refused(tmp_path, bad):
    store = BlockStore(tmp_path, CHUNK)
    with pytest.raises(InvalidArgument):
        check_block_id(bad)
    for call in (store.path, store.exists, store.delete, store.checksums, store.quarantine):
        with pytest.raises(InvalidArgument):
            call(bad)
    with pytest.raises(InvalidArgument):
        store.writer(bad, None)
    assert list(store.tmp_dir.iterdir()) == []


def test_capacity_limits_reservations_and_writes(tmp_path):
    store = BlockStore(tmp_path, CHUNK, capacity=40)
    assert (store.total(), store.free()) == (40, 40)
    with pytest.raises(NoSpace):
        store.writer(BLOCK, 41)
    write_block(store, "a" * 32, b"x" * 30)
    assert store.free() == 10
    writer = store.writer(BLOCK, None)
    writer.write_chunk(b"y" * 10, checksum.crc(b"y" * 10))  # exactly fits
    writer.abort()
    writer = store.writer(BLOCK, None)
    with pytest.raises(NoSpace):
        writer.write_chunk(b"y" * 11, checksum.crc(b"y" * 11))
    writer.abort()
    assert (store.used, store.count, store.reserved) == (30, 1, 0)

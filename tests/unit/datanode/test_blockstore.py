import asyncio
import ctypes
import errno
import os
import stat
import struct
import sys
import threading
import time
from types import SimpleNamespace

import pytest

from pydfs import checksum
from pydfs.checksum import FOOTER_SIZE, BlockChecksums
from pydfs.datanode import blockstore
from pydfs.datanode.blockstore import TOMBSTONE_SECONDS, BlockStore, Spares, check_block_id
from pydfs.datanode.scanner import Scanner
from pydfs.errors import ChecksumMismatch, InvalidArgument, NoSpace, NotFound, ProtocolError

CHUNK = 16
BLOCK = "0123456789abcdef" * 2


@pytest.fixture(autouse=True)
def no_spare_thread(monkeypatch):
    """Writers make their own file, so that no thread races a test's look at ``tmp/``
    (``test_spare_files_are_made_ahead`` covers the thread)."""
    monkeypatch.setattr(Spares, "LOW", 0)


def unsynced(store):
    """Files in ``tmp/`` holding data (spares are empty)."""
    return [p for p in store.tmp_dir.iterdir() if p.stat().st_size > 0]


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


def chunk_crcs(data):
    return [checksum.crc(data[i : i + CHUNK]) for i in range(0, len(data), CHUNK)]


def test_commit_makes_one_durable_file_holding_the_block_and_its_checksums(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    data = os.urandom(3 * CHUNK + 5)
    sums = write_block(store, BLOCK, data, expected=len(data))
    assert sums == BlockChecksums(BLOCK, CHUNK, len(data), checksum.crc(data), chunk_crcs(data))
    raw = store.path(BLOCK).read_bytes()
    assert raw == data + sums.trailer()
    assert len(raw) == len(data) + 4 * 4 + FOOTER_SIZE
    assert store.path(BLOCK).parent.name == BLOCK[:2]
    assert sorted(p.name for p in store.path(BLOCK).parent.iterdir()) == [f"{BLOCK}.blk"]
    assert store.checksums(BLOCK) == sums
    f, opened = store.open_block(BLOCK)
    with f:
        assert opened == sums
        assert f.read(len(data)) == data
    assert (store.used, store.count, store.reserved) == (len(raw), 1, 0)
    assert list(store.list()) == [BLOCK]
    assert list(store.tmp_dir.iterdir()) == []
    assert store.writing == 0

    again = BlockStore(tmp_path, CHUNK)
    assert (again.used, again.count) == (len(raw), 1)
    assert again.exists(BLOCK)
    assert again.checksums(BLOCK) == sums


@pytest.mark.parametrize("size", [0, 1, CHUNK, 2 * CHUNK + 1])
def test_round_trip_of_any_size(tmp_path, size):
    store = BlockStore(tmp_path, CHUNK)
    data = os.urandom(size)
    write_block(store, BLOCK, data)
    f, sums = store.open_block(BLOCK)
    with f:
        assert sums == BlockChecksums(BLOCK, CHUNK, size, checksum.crc(data), chunk_crcs(data))
        assert os.pread(f.fileno(), sums.size, 0) == data


@pytest.mark.parametrize(
    "damage",
    [
        lambda raw: raw[:-1],  # truncated
        lambda raw: raw[: -FOOTER_SIZE - 4],  # the footer lost
        lambda raw: raw + b"\0",  # grown
        lambda raw: raw[:-FOOTER_SIZE] + os.urandom(FOOTER_SIZE),  # a garbled footer
        lambda raw: raw[:-20] + bytes([raw[-20] ^ 1]) + raw[-19:],  # one bit of the footer
        lambda raw: raw[:40],  # the data only, as in the first format
    ],
)
def test_a_block_file_whose_trailer_does_not_validate_is_corrupt(tmp_path, damage):
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, os.urandom(3 * CHUNK + 5))
    path = store.path(BLOCK)
    path.write_bytes(damage(path.read_bytes()))
    with pytest.raises(ChecksumMismatch):
        store.open_block(BLOCK)
    with pytest.raises(ChecksumMismatch):
        store.checksums(BLOCK)


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
    assert unsynced(store) != []
    writer.abort()
    assert list(store.tmp_dir.iterdir()) == []
    assert store.writing == 0
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
    assert asyncio.run(store.delete_many([BLOCK])) == 1
    assert not store.path(BLOCK).exists()
    assert list(store.path(BLOCK).parent.iterdir()) == []
    assert (store.used, store.count) == (store.path("a" * 32).stat().st_size, 1)
    assert asyncio.run(store.delete_many([BLOCK])) == 0
    with pytest.raises(NotFound):
        store.checksums(BLOCK)


def test_delete_many_runs_off_the_loop_and_keeps_the_counts(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    for i, block_id in enumerate([BLOCK, "a" * 32, "b" * 32]):
        write_block(store, block_id, bytes([i]) * (10 + i))
    kept = store.path("b" * 32).stat().st_size
    assert asyncio.run(store.delete_many([BLOCK, "a" * 32, "c" * 32])) == 2  # c: not here
    assert list(store.list()) == ["b" * 32]
    assert (store.used, store.count) == (kept, 1)


def test_quarantine_moves_the_block_file(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    sums = write_block(store, BLOCK, b"x" * 20)
    store.quarantine(BLOCK)
    assert not store.exists(BLOCK)
    assert [p.name for p in store.quarantine_dir.iterdir()] == [f"{BLOCK}.blk"]
    assert (store.quarantine_dir / f"{BLOCK}.blk").read_bytes() == b"x" * 20 + sums.trailer()
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

    def delete(block_id):
        return asyncio.run(store.delete_many([block_id]))

    calls = (store.path, store.exists, delete, store.checksums, store.open_block)
    for call in (*calls, store.quarantine):
        with pytest.raises(InvalidArgument):
            call(bad)
    with pytest.raises(InvalidArgument):
        store.writer(bad, None)
    assert list(store.tmp_dir.iterdir()) == []


def test_capacity_limits_reservations_and_writes(tmp_path):
    store = BlockStore(tmp_path, CHUNK, capacity=56)
    assert (store.total(), store.free()) == (56, 56)
    with pytest.raises(NoSpace):
        store.writer(BLOCK, 57)
    write_block(store, "a" * 32, b"x" * 2)  # 2 bytes, 4 of chunk CRC and the footer: 54 used
    assert store.free() == 2
    writer = store.writer(BLOCK, None)
    writer.write_chunk(b"y" * 2, checksum.crc(b"y" * 2))  # exactly fits
    writer.abort()
    writer = store.writer(BLOCK, None)
    with pytest.raises(NoSpace):
        writer.write_chunk(b"y" * 3, checksum.crc(b"y" * 3))
    writer.abort()
    assert (store.used, store.count, store.reserved) == (54, 1, 0)


# --- upgrade from the first format (raw .blk beside a .crc sidecar) -------------------------


def old_sidecar(data: bytes) -> bytes:
    """The first format's sidecar, written out by hand from its documented layout."""
    crcs = chunk_crcs(data)
    header = struct.pack(
        "<4sHHIQII", b"PDCK", 1, 0, CHUNK, len(data), checksum.crc(data), len(crcs)
    )
    return header + struct.pack(f"<{len(crcs)}I", *crcs)


def old_block(root, block_id, data, sidecar=None):
    """A block as the first format left it: returns the paths of its two files."""
    blk = root / "blocks" / block_id[:2] / f"{block_id}.blk"
    blk.parent.mkdir(parents=True, exist_ok=True)
    blk.write_bytes(data)
    crc = blk.with_suffix(".crc")
    crc.write_bytes(old_sidecar(data) if sidecar is None else sidecar)
    return blk, crc


def assert_upgraded(store, block_id, data):
    blk = store.path(block_id)
    assert not blk.with_suffix(".crc").exists()
    sums = BlockChecksums(block_id, CHUNK, len(data), checksum.crc(data), chunk_crcs(data))
    assert blk.read_bytes() == data + sums.trailer()
    assert store.checksums(block_id) == sums
    assert Scanner(SimpleNamespace(store=store)).verify(block_id) is not None


def test_upgrade_gives_old_blocks_their_trailer_and_drops_the_sidecars(tmp_path):
    blocks = {f"{n:032x}": os.urandom(n * 7) for n in range(4)}  # an empty one included
    for block_id, data in blocks.items():
        old_block(tmp_path, block_id, data)
    store = BlockStore(tmp_path, CHUNK)
    for block_id, data in blocks.items():
        assert_upgraded(store, block_id, data)
    assert sorted(store.list()) == sorted(blocks)
    on_disk = sum(store.path(b).stat().st_size for b in blocks)
    assert (store.used, store.count) == (on_disk, len(blocks))
    assert list(tmp_path.glob("blocks/*/*.crc")) == []
    assert list(store.quarantine_dir.iterdir()) == []

    again = BlockStore(tmp_path, CHUNK)  # a second start changes nothing
    for block_id, data in blocks.items():
        assert_upgraded(again, block_id, data)


def test_upgrade_of_a_block_whose_bytes_look_like_an_upgraded_block(tmp_path):
    # A stored file can be a block file of the new format: its bytes stay what they are.
    inner = BlockChecksums(BLOCK, CHUNK, 3, checksum.crc(b"abc"), [checksum.crc(b"abc")])
    data = b"abc" + inner.trailer()
    old_block(tmp_path, BLOCK, data)
    assert_upgraded(BlockStore(tmp_path, CHUNK), BLOCK, data)


@pytest.mark.parametrize(
    "crashed",
    [
        "trailer half written",
        "trailer written, sidecar kept",
        "trailer written twice",  # cannot happen, but the sidecar still says where data ends
    ],
)
def test_upgrade_interrupted_by_a_crash_is_finished_at_the_next_start(tmp_path, crashed):
    data = os.urandom(2 * CHUNK + 3)
    blk, _ = old_block(tmp_path, BLOCK, data)
    sums = BlockChecksums(BLOCK, CHUNK, len(data), checksum.crc(data), chunk_crcs(data))
    trailer = {
        "trailer half written": sums.trailer()[:11],
        "trailer written, sidecar kept": sums.trailer(),
        "trailer written twice": sums.trailer() * 2,
    }[crashed]
    blk.write_bytes(data + trailer)
    store = BlockStore(tmp_path, CHUNK)
    assert_upgraded(store, BLOCK, data)
    assert (store.count, store.used) == (1, len(data) + len(sums.trailer()))


def test_upgrade_drops_a_sidecar_whose_block_is_gone(tmp_path):
    # The first format renamed the sidecar into place first, and deleted the block file first.
    blk, crc = old_block(tmp_path, BLOCK, b"x" * 5)
    blk.unlink()
    store = BlockStore(tmp_path, CHUNK)
    assert not crc.exists()
    assert (list(store.list()), store.count, store.used) == ([], 0, 0)
    assert list(store.quarantine_dir.iterdir()) == []


@pytest.mark.parametrize(
    ("data", "sidecar"),
    [
        (b"x" * 20, b"garbage"),
        (b"x" * 20, old_sidecar(b"x" * 20)[:-1]),
        (b"x" * 19, old_sidecar(b"x" * 20)),  # the block is shorter than its sidecar says
    ],
)
def test_upgrade_quarantines_a_pair_it_cannot_read(tmp_path, data, sidecar):
    old_block(tmp_path, BLOCK, data, sidecar)
    good = "a" * 32
    old_block(tmp_path, good, b"y" * 9)
    store = BlockStore(tmp_path, CHUNK)
    assert list(store.list()) == [good]
    assert sorted(p.name for p in store.quarantine_dir.iterdir()) == [
        f"{BLOCK}.blk",
        f"{BLOCK}.crc",
    ]
    assert (store.quarantine_dir / f"{BLOCK}.blk").read_bytes() == data
    assert store.count == 1
    assert_upgraded(store, good, b"y" * 9)


def test_spare_files_are_made_ahead(tmp_path, monkeypatch):
    monkeypatch.setattr(Spares, "LOW", 4)
    monkeypatch.setattr(Spares, "HIGH", 8)
    store = BlockStore(tmp_path, CHUNK)
    first = store.spares.take()  # none ready: made on the spot, and a refill starts
    assert first.exists() and first.stat().st_size == 0
    spares_ = store.spares
    deadline = time.monotonic() + 60  # a thread makes them: a busy disk may take seconds
    while (spares_._filling.locked() or len(spares_._ready) < 7) and time.monotonic() < deadline:
        time.sleep(0.01)
    spares = sorted(set(store.tmp_dir.iterdir()) - {first})
    # The refill ran up to 8; the first take had one of them if the refill was the quicker.
    assert len(spares) in (7, 8) and all(p.stat().st_size == 0 for p in spares)
    assert sorted(spares_._ready) == spares
    assert store.spares.take() in spares  # taken from the ready ones
    write_block(store, BLOCK, b"x" * 20)
    assert store.checksums(BLOCK).size == 20
    assert BlockStore(tmp_path, CHUNK).tmp_dir.exists()
    assert list(store.tmp_dir.iterdir()) == []  # the restart removed every spare


def crash_mid_commit(store, block_id, data):
    """A write that was renamed into place and then lost its last bytes (and so its trailer)
    in a crash before its fsync."""
    write_block(store, block_id, data)
    path = store.path(block_id)
    path.write_bytes(path.read_bytes()[:-3])


def test_a_crash_leaves_no_incomplete_block_in_service(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"x" * 40)
    crash_mid_commit(store, "a" * 32, b"y" * 40)
    assert (tmp_path / "running").exists()  # never closed: as after SIGKILL
    again = BlockStore(tmp_path, CHUNK)
    assert list(again.list()) == [BLOCK]
    assert (again.used, again.count) == (store.path(BLOCK).stat().st_size, 1)
    assert [p.name for p in again.quarantine_dir.iterdir()] == [f"{'a' * 32}.blk"]


def test_a_clean_stop_skips_the_check_unless_a_write_was_under_way(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"x" * 40)
    store.close()
    assert not (tmp_path / "running").exists()
    store = BlockStore(tmp_path, CHUNK)
    assert (tmp_path / "running").exists()
    store.writer("b" * 32, None)  # under way at the stop
    store.close()
    assert (tmp_path / "running").exists()


def test_commit_renames_then_syncs_and_a_cancel_waits_for_the_sync(tmp_path, monkeypatch):
    store = BlockStore(tmp_path, CHUNK)
    seen = []
    real_fsync = os.fsync

    def slow_fsync(fd):
        seen.append(store.path(BLOCK).exists())  # already in place when its fsync starts
        time.sleep(0.3)
        real_fsync(fd)

    monkeypatch.setattr(blockstore.os, "fsync", slow_fsync)

    async def cancelled_commit():
        writer = store.writer(BLOCK, None)  # two chunks: synced in a thread
        writer.write_chunk(b"z" * CHUNK, checksum.crc(b"z" * CHUNK))
        writer.write_chunk(b"z" * 5, checksum.crc(b"z" * 5))
        task = asyncio.ensure_future(writer.commit(checksum.crc(b"z" * (CHUNK + 5))))
        await asyncio.sleep(0.1)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
        return writer

    writer = asyncio.run(cancelled_commit())
    assert seen[0] is True
    assert writer.state == "durable"  # the cancel waited for the thread to finish
    writer.abort()  # what put_block does on a cancel: a durable block stays
    assert store.checksums(BLOCK).size == CHUNK + 5
    assert (store.count, store.writing, store.reserved) == (1, 0, 0)


@pytest.fixture
def synced_on(monkeypatch):
    """How each block file was made durable: "loop" (fsync'd on the event loop's thread),
    "thread" (fsync'd in another), or "flush:N" (N files renamed, then one ``syncfs``)."""
    seen = []
    real_fsync, real_syncfs = os.fsync, blockstore._syncfs
    renamed = []

    flushing = []

    def fsync(fd):
        if flushing:  # the flush's own check that its journal commit went well
            flushing.clear()
        else:
            main = threading.current_thread() is threading.main_thread()
            seen.append("loop" if main else "thread")
        renamed.clear()
        real_fsync(fd)

    def syncfs(fd):
        assert threading.current_thread() is not threading.main_thread()
        seen.append(f"flush:{len(renamed)}")
        renamed.clear()
        flushing.append(fd)
        return real_syncfs(fd)

    real_rename = blockstore.BlockWriter._rename

    def rename(self):
        renamed.append(self.block_id)
        real_rename(self)

    monkeypatch.setattr(blockstore.os, "fsync", fsync)
    if real_syncfs is not None:
        monkeypatch.setattr(blockstore, "_syncfs", syncfs)
        monkeypatch.setattr(blockstore.BlockWriter, "_rename", rename)
    return seen


def flushed(store: BlockStore, n: int) -> list[str]:
    """What ``synced_on`` sees of *n* small writes made durable together: one flush, unless
    the platform or the file system (one that needs its directories fsync'd) does not allow."""
    together = blockstore._syncfs is not None and not store.sync_dir
    return [f"flush:{n}"] if together else ["thread"] * n


def test_a_lone_one_chunk_write_syncs_on_the_loop_and_others_together(tmp_path, synced_on):
    store = BlockStore(tmp_path, CHUNK)
    synced_on.clear()  # the store's own files

    def writer(block_id, data):
        w = store.writer(block_id, None)
        for i in range(0, len(data), CHUNK):
            w.write_chunk(data[i : i + CHUNK], checksum.crc(data[i : i + CHUNK]))
        return w.commit(checksum.crc(data))

    async def main():
        await writer("1" * 32, b"a" * CHUNK)  # alone, one chunk: on the loop
        await writer("2" * 32, b"b" * (CHUNK + 1))  # two chunks: in a thread
        await asyncio.gather(writer("3" * 32, b"c"), writer("4" * 32, b"d"))  # side by side

    asyncio.run(main())
    assert synced_on == ["loop", "thread", *flushed(store, 2)]
    assert store.count == 4 and store.writing == 0 and store.large == 0
    assert store.checksums("3" * 32).size == 1
    assert store.checksums("4" * 32).size == 1


def test_small_writes_beside_a_large_one_are_fsyncd_each(tmp_path, synced_on):
    """A flush of the whole file system would also wait for the large block's data."""
    store = BlockStore(tmp_path, CHUNK)
    synced_on.clear()
    large = store.writer("1" * 32, None)
    large.write_chunk(b"a" * CHUNK, checksum.crc(b"a" * CHUNK))
    large.write_chunk(b"a", checksum.crc(b"a"))
    assert store.large == 1

    def writer(block_id, data):
        w = store.writer(block_id, None)
        w.write_chunk(data, checksum.crc(data))
        return w.commit(checksum.crc(data))

    async def main():
        await asyncio.gather(writer("3" * 32, b"c"), writer("4" * 32, b"d"))
        large.abort()
        await asyncio.gather(writer("5" * 32, b"e"), writer("6" * 32, b"f"))

    asyncio.run(main())
    assert synced_on == ["thread", "thread", *flushed(store, 2)]
    assert store.count == 4 and store.writing == 0 and store.large == 0


def test_writes_that_arrive_together_are_flushed_together_and_a_lone_one_on_the_loop(
    tmp_path, synced_on
):
    """Through ``blocks.Blocks.put``, as the fast path and aiohttp's route call it: each puts its
    whole one-chunk body at once, so only the yield after opening its writer lets the others
    be seen."""
    from pydfs import tokens, wire
    from pydfs.datanode.blocks import Blocks
    from pydfs.datanode.heartbeat import Heartbeats

    store = BlockStore(tmp_path, wire.CHUNK_SIZE)
    synced_on.clear()  # the store's own files
    heartbeats = Heartbeats(SimpleNamespace(), [SimpleNamespace()])  # type: ignore[arg-type]
    secret = b"s" * 32
    dn = SimpleNamespace(store=store, heartbeats=heartbeats, secret=secret)
    blocks = Blocks(dn)  # type: ignore[arg-type]

    def put(n):
        data = bytes([n]) * 100
        frames = wire.FRAME.pack(100, checksum.crc(data)) + data
        frames += wire.FRAME.pack(0, checksum.crc(data))
        read = wire.body_reader(frames)
        block_id = f"{n:032x}"
        token = tokens.block_token(secret, block_id, "w", 60, [(store.node_id, "http://dn")])
        admitted = blocks.admit(block_id, token, "wc")
        return blocks.put(block_id, token, admitted, False, len(frames), read)

    async def main():
        await asyncio.gather(*(put(n) for n in range(8)))
        await put(8)

    asyncio.run(main())
    assert synced_on == [*flushed(store, 8), "loop"]
    assert store.count == 9 and store.writing == 0 and len(heartbeats.links[0].received) == 9
    for n in range(9):
        assert store.checksums(f"{n:032x}").size == 100


def test_a_batch_stores_each_block_on_its_own_token_and_frames_and_flushes_once(
    tmp_path, synced_on
):
    """``Blocks.put_many``, as a ``POST /blocks`` calls it: each block is admitted by its own
    write token and checked frame by frame; the refused ones are answered so, and nothing of
    them is kept, while the others are made durable together."""
    from pydfs import tokens, wire
    from pydfs.datanode.blocks import Blocks
    from pydfs.datanode.heartbeat import Heartbeats

    store = BlockStore(tmp_path, wire.CHUNK_SIZE)
    synced_on.clear()
    heartbeats = Heartbeats(SimpleNamespace(), [SimpleNamespace()])  # type: ignore[arg-type]
    secret = b"s" * 32
    dn = SimpleNamespace(store=store, heartbeats=heartbeats, secret=secret)
    blocks = Blocks(dn)  # type: ignore[arg-type]
    me = [(store.node_id, "http://dn")]

    def framed(data, crc=None):
        crc = checksum.crc(data) if crc is None else crc
        return wire.FRAME.pack(len(data), crc) + data + wire.FRAME.pack(0, checksum.crc(data))

    def token(block_id, mode="w", targets=me):
        return tokens.block_token(secret, block_id, mode, 60, targets)

    ids = [f"{n:032x}" for n in range(10)]
    old = wire.pack_blocks([(ids[9], token(ids[9]), framed(b"old"))])
    asyncio.run(blocks.put_many(old, ids[9]))
    synced_on.clear()
    batch = [
        (ids[0], token(ids[0]), framed(b"zero")),
        (ids[1], token(ids[0]), framed(b"one")),  # another block's token
        (ids[2], token(ids[2], "c"), framed(b"two")),  # a copy's token: not a client's write
        (ids[3], token(ids[3], "w", [("other", "http://x")]), framed(b"three")),  # not here
        (ids[4], token(ids[4]), framed(b"four", crc=1)),  # a frame that fails its CRC
        (ids[5], token(ids[5]), framed(b"five")),
        (ids[5], token(ids[5]), framed(b"five again")),  # the same block twice
        (ids[9], token(ids[9]), framed(b"new")),  # held already: a block never changes
        (ids[6], token(ids[6]), framed(b"")),  # empty
        (ids[7], "garbage", framed(b"seven")),
    ]
    with pytest.raises(ProtocolError, match="begin with"):
        asyncio.run(blocks.put_many(wire.pack_blocks(batch), ids[1]))
    reply = asyncio.run(blocks.put_many(wire.pack_blocks(batch), ids[0]))
    codes = [r.error.code if r.error else None for r in reply.results]
    assert codes == [
        None,
        "unauthenticated",
        "unauthenticated",
        "unauthenticated",
        "checksum_mismatch",
        None,
        "invalid_argument",
        "invalid_argument",
        None,
        "unauthenticated",
    ], codes
    stored = {r.stored.block_id: r.stored for r in reply.results if r.stored}
    assert set(stored) == {ids[0], ids[5], ids[6]}
    assert stored[ids[0]] == wire.StoredBlock(ids[0], 4, checksum.crc(b"zero"), [store.node_id])
    assert synced_on == flushed(store, 3)
    assert sorted(store.list()) == sorted([ids[0], ids[5], ids[6], ids[9]])
    for block_id, data in ((ids[0], b"zero"), (ids[5], b"five"), (ids[6], b""), (ids[9], b"old")):
        f, sums = store.open_block(block_id)
        with f:
            assert f.read(sums.size) == data
    assert not list(store.tmp_dir.glob("[!s]*"))  # nothing but spare files left in tmp/
    assert store.count == 4 and store.writing == 0 and store.reserved == 0 and not store.receiving
    assert store.used == sum(store.path(b).stat().st_size for b in store.list())
    received = [r.block for r in heartbeats.links[0].received]
    assert received == [ids[9], ids[0], ids[5], ids[6]]


def test_a_batch_whose_flush_fails_keeps_none_of_its_blocks(tmp_path, monkeypatch):
    from pydfs import tokens, wire
    from pydfs.datanode.blocks import Blocks
    from pydfs.datanode.heartbeat import Heartbeats

    store = BlockStore(tmp_path, wire.CHUNK_SIZE)
    heartbeats = Heartbeats(SimpleNamespace(), [SimpleNamespace()])  # type: ignore[arg-type]
    dn = SimpleNamespace(store=store, heartbeats=heartbeats, secret=b"s" * 32)
    blocks = Blocks(dn)  # type: ignore[arg-type]

    def failing(fd):
        ctypes.set_errno(errno.EIO)
        return -1

    def fsync(fd):
        raise OSError(errno.EIO, "fsync failed")

    monkeypatch.setattr(blockstore, "_syncfs", failing if blockstore._syncfs else None)
    monkeypatch.setattr(blockstore.os, "fsync", fsync)
    me = [(store.node_id, "http://dn")]
    batch = []
    for n in range(3):
        block_id, data = f"{n:032x}", bytes([n]) * 10
        crc = checksum.crc(data)
        frames = wire.FRAME.pack(10, crc) + data + wire.FRAME.pack(0, crc)
        batch.append((block_id, tokens.block_token(b"s" * 32, block_id, "w", 60, me), frames))
    reply = asyncio.run(blocks.put_many(wire.pack_blocks(batch), batch[0][0]))
    assert [r.error.code if r.error else None for r in reply.results] == ["unavailable"] * 3
    assert list(store.list()) == [] and not list(store.tmp_dir.glob("[!s]*"))
    assert store.count == 0 and store.used == 0 and store.writing == 0 and store.reserved == 0
    assert heartbeats.links[0].received == []


def batch_node(tmp_path):
    """A data node's ``Blocks`` over a store in *tmp_path*, and a maker of batch bodies."""
    from pydfs import tokens, wire
    from pydfs.datanode.blocks import Blocks
    from pydfs.datanode.heartbeat import Heartbeats

    store = BlockStore(tmp_path, wire.CHUNK_SIZE)
    heartbeats = Heartbeats(SimpleNamespace(), [SimpleNamespace()])  # type: ignore[arg-type]
    dn = SimpleNamespace(store=store, heartbeats=heartbeats, secret=b"s" * 32)
    me = [(store.node_id, "http://dn")]

    def batch(first: int, count: int) -> tuple[bytes, str]:
        items = []
        for n in range(first, first + count):
            block_id, data = f"{n:032x}", bytes([n % 256]) * 10
            crc = checksum.crc(data)
            frames = wire.FRAME.pack(10, crc) + data + wire.FRAME.pack(0, crc)
            items.append((block_id, tokens.block_token(dn.secret, block_id, "w", 60, me), frames))
        return wire.pack_blocks(items), items[0][0]

    return Blocks(dn), store, batch  # type: ignore[arg-type]


def consistent(store: BlockStore) -> None:
    """The store's counts match its disk, and no write is left open."""
    assert store.writing == 0 and store.reserved == 0 and not store.receiving
    assert store.count == len(list(store.list()))
    assert store.used == sum(store.path(b).stat().st_size for b in store.list())
    assert not list(store.tmp_dir.glob("[!s]*"))  # nothing but spare files in tmp/


def test_a_block_of_a_batch_that_the_disk_fails_is_refused_alone(tmp_path, monkeypatch):
    blocks, store, batch = batch_node(tmp_path)
    real_write = blockstore.os.write
    fds_before = len(os.listdir("/proc/self/fd"))

    def write(fd, data):
        if bytes([2]) * 10 in bytes(data):
            raise OSError(errno.EIO, "I/O error")
        return real_write(fd, data)

    monkeypatch.setattr(blockstore.os, "write", write)
    body, first = batch(1, 3)
    reply = asyncio.run(blocks.put_many(body, first))
    assert [r.error.code if r.error else None for r in reply.results] == [
        None,
        "unavailable",
        None,
    ]
    assert sorted(store.list()) == [f"{1:032x}", f"{3:032x}"]
    consistent(store)
    assert len(os.listdir("/proc/self/fd")) == fds_before


def test_a_flush_that_fails_unexpectedly_fails_its_blocks_and_the_next_goes_on(
    tmp_path, monkeypatch
):
    if blockstore._syncfs is None or BlockStore(tmp_path / "probe", CHUNK).sync_dir:
        pytest.skip("small writes are fsync'd each here")
    blocks, store, batch = batch_node(tmp_path)
    real = BlockStore._durable_many
    calls = []

    def durable_many(self, writers):
        calls.append(len(writers))
        if len(calls) == 1:
            time.sleep(0.1)  # the next batch queues behind this flush meanwhile
            raise RuntimeError("a bug")
        return real(self, writers)

    monkeypatch.setattr(BlockStore, "_durable_many", durable_many)

    async def main():
        one = asyncio.ensure_future(blocks.put_many(*batch(1, 2)))
        await asyncio.sleep(0.03)
        two = asyncio.ensure_future(blocks.put_many(*batch(3, 2)))
        return await asyncio.wait_for(asyncio.gather(one, two), 10)

    first, second = asyncio.run(main())
    assert calls == [2, 2]
    assert [r.error.code for r in first.results] == ["unavailable"] * 2
    assert all(r.stored for r in second.results)
    assert sorted(store.list()) == [f"{3:032x}", f"{4:032x}"]
    consistent(store)


def test_a_flush_that_gets_no_thread_fails_its_blocks(tmp_path, monkeypatch):
    if blockstore._syncfs is None or BlockStore(tmp_path / "probe", CHUNK).sync_dir:
        pytest.skip("small writes are fsync'd each here")
    blocks, store, batch = batch_node(tmp_path)

    def no_thread(fn, *args):
        raise RuntimeError("can't start new thread")

    monkeypatch.setattr(blockstore, "_thread", no_thread)

    async def main():
        return await asyncio.wait_for(blocks.put_many(*batch(1, 3)), 10)

    reply = asyncio.run(main())
    assert [r.error.code for r in reply.results] == ["unavailable"] * 3
    assert list(store.list()) == []
    consistent(store)


def test_writers_cancelled_during_a_flush_end_and_leave_the_store_consistent(tmp_path, monkeypatch):
    """As at a data node's shutdown: ``asyncio.run`` cancels every task, the flusher among
    them, while one batch is being flushed and another waits for it."""
    if blockstore._syncfs is None or BlockStore(tmp_path / "probe", CHUNK).sync_dir:
        pytest.skip("small writes are fsync'd each here")
    blocks, store, batch = batch_node(tmp_path)
    real = blockstore._syncfs

    def slow_syncfs(fd):
        time.sleep(0.2)
        return real(fd)

    monkeypatch.setattr(blockstore, "_syncfs", slow_syncfs)

    writing = []

    async def main():
        writing.append(asyncio.ensure_future(blocks.put_many(*batch(1, 3))))
        await asyncio.sleep(0.05)  # the first batch is in the flush's thread
        writing.append(asyncio.ensure_future(blocks.put_many(*batch(4, 3))))
        await asyncio.sleep(0.01)
        # returning leaves both writers and the flusher to be cancelled by asyncio.run

    ended = threading.Event()

    def run():
        asyncio.run(main())
        ended.set()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    assert ended.wait(10), "the cancelled writers never ended"
    assert all(task.cancelled() for task in writing)
    # The first batch was flushed before its writers heard of it, and is kept complete (a
    # durable block stays); the second was never flushed, and nothing of it is left.
    assert sorted(store.list()) == [f"{n:032x}" for n in (1, 2, 3)]
    consistent(store)


# --- upgrade from trailer version 2, and private files ----------------------------------------


def v2_block(root, block_id: str, data: bytes) -> None:
    """A block file as trailer version 2 left it (no block id in its footer), by hand."""
    crcs = chunk_crcs(data)
    footer = struct.pack(
        "<4sHHIQII", b"PDBT", 2, 0, CHUNK, len(data), checksum.crc(data), len(crcs)
    )
    path = root / "blocks" / block_id[:2] / f"{block_id}.blk"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data + struct.pack(f"<{len(crcs)}I", *crcs) + footer)
    with open(path, "ab") as f:
        f.write(struct.pack("<I", checksum.crc(footer)))


def test_version_2_blocks_are_bound_to_their_block_at_the_first_start(tmp_path):
    data = os.urandom(2 * CHUNK + 3)
    v2_block(tmp_path, BLOCK, data)
    v2_block(tmp_path, "a" * 32, b"")
    bad = tmp_path / "blocks" / "bb" / f"{'b' * 32}.blk"
    bad.parent.mkdir(parents=True, exist_ok=True)
    bad.write_bytes(b"neither version")
    store = BlockStore(tmp_path, CHUNK)
    assert store.checksums(BLOCK).block_id == BLOCK
    assert store.path(BLOCK).read_bytes()[: len(data)] == data
    assert store.checksums("a" * 32).size == 0
    assert [p.name for p in store.quarantine_dir.iterdir()] == [bad.name]
    assert (store.count, store.used) == (2, sum(store.path(b).stat().st_size for b in store.list()))
    assert (tmp_path / "trailers").read_text().strip() == str(checksum.TRAILER_VERSION)
    assert BlockStore(tmp_path, CHUNK).checksums(BLOCK) == store.checksums(BLOCK)  # once


def test_a_block_file_copied_over_another_is_refused(tmp_path):
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"mine")
    write_block(store, "c" * 32, b"else")
    store.path(BLOCK).write_bytes(store.path("c" * 32).read_bytes())
    with pytest.raises(ChecksumMismatch, match="holds block"):
        store.open_block(BLOCK)


def test_data_directories_are_private(tmp_path):
    root = tmp_path / "dn"
    root.mkdir(mode=0o755)
    store = BlockStore(root, CHUNK)
    write_block(store, BLOCK, b"secret")
    for d in (root, store.blocks_dir, store.path(BLOCK).parent, store.tmp_dir):
        assert stat.S_IMODE(d.stat().st_mode) == 0o700, d
    assert stat.S_IMODE(store.path(BLOCK).stat().st_mode) == 0o600
    for spare in store.tmp_dir.iterdir():
        assert stat.S_IMODE(spare.stat().st_mode) == 0o600


def test_a_deleted_block_cannot_be_written_again_but_can_be_copied_over(tmp_path):
    """A leftover write token must not plant other bytes under an id a trim just freed; a copy
    the name node orders replaces whatever is there."""
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"first")
    asyncio.run(store.delete_many([BLOCK]))
    with pytest.raises(InvalidArgument):
        store.writer(BLOCK, None)
    writer = store.writer(BLOCK, None, replace=True)
    writer.write_chunk(b"first", checksum.crc(b"first"))
    asyncio.run(writer.commit(checksum.crc(b"first")))
    writer = store.writer(BLOCK, None, replace=True)  # over the one it holds
    writer.write_chunk(b"again", checksum.crc(b"again"))
    asyncio.run(writer.commit(checksum.crc(b"again")))
    assert (store.count, store.used) == (1, store.path(BLOCK).stat().st_size)
    with pytest.raises(InvalidArgument, match="being written"):
        store.writer(BLOCK, None, replace=True)
        store.writer(BLOCK, None, replace=True)


def test_a_copy_that_lands_after_a_delete_order_is_not_deleted_by_it(tmp_path):
    """The order was for the replica the name node stopped counting; the copy it ordered since
    is another replica, and a block report lists neither while the delete is pending."""
    store = BlockStore(tmp_path, CHUNK)
    write_block(store, BLOCK, b"old")
    store._bury([BLOCK])  # delete_many has begun: its unlinks run in a thread
    assert list(store.list()) == []
    with pytest.raises(NotFound):
        store.open_block(BLOCK)
    writer = store.writer(BLOCK, None, replace=True)
    writer.write_chunk(b"new", checksum.crc(b"new"))
    asyncio.run(writer.commit(checksum.crc(b"new")))
    assert store._unlink(BLOCK) is None  # the thread gets to it now: the copy stays
    assert list(store.list()) == [BLOCK]
    assert store.checksums(BLOCK).crc == checksum.crc(b"new")


def test_tombstones_are_forgotten_once_expired(tmp_path, monkeypatch):
    """A node that deleted many blocks does not keep their tombstones past the hour (nor
    rebuild them all at each order), and a block deleted again is remembered from then."""
    store = BlockStore(tmp_path, CHUNK)
    now = [1000.0]
    monkeypatch.setattr(blockstore.time, "monotonic", lambda: now[0])
    store._bury([f"{i:032x}" for i in range(1000)])
    now[0] += TOMBSTONE_SECONDS / 2
    store._bury([f"{0:032x}", f"{1000:032x}"])  # the first again, and a new one
    now[0] += TOMBSTONE_SECONDS / 2
    store._bury([f"{1001:032x}"])
    assert sorted(store._deleted) == [f"{i:032x}" for i in (0, 1000, 1001)]
    with pytest.raises(InvalidArgument):
        store.writer(f"{0:032x}", None)
    now[0] += TOMBSTONE_SECONDS
    store._bury([])
    assert not store._deleted
    store.writer(f"{0:032x}", None).abort()


def test_tombstones_expire_while_copies_unbury_theirs_in_threads(tmp_path, monkeypatch):
    """A copy made durable in a worker thread unburies its block while a delete order expires
    tombstones on the event loop: neither loses a tombstone still due, nor fails."""
    store = BlockStore(tmp_path, CHUNK)
    now = [TOMBSTONE_SECONDS * 2]
    monkeypatch.setattr(blockstore.time, "monotonic", lambda: now[0])
    expired = [f"{i:032x}" for i in range(2000)]
    due = [f"{i:032x}" for i in range(2000, 2100)]
    switching = sys.getswitchinterval()
    sys.setswitchinterval(1e-6)  # threads switch as often as they can
    try:
        for _ in range(100):
            store._deleted.clear()
            store._deleted.update((b, 0.0) for b in expired)
            store._deleted.update((b, now[0]) for b in due)
            go = threading.Event()

            def copy(go: threading.Event = go) -> None:  # copies made durable meanwhile
                go.wait()
                for block_id in expired:
                    store._unbury(block_id)

            copies = threading.Thread(target=copy)
            copies.start()
            try:
                go.set()
                store._bury([])
            finally:
                copies.join()
            assert list(store._deleted) == due
    finally:
        sys.setswitchinterval(switching)


def lone_put(blocks, store, n, read=None):
    """``Blocks.put`` of one one-chunk block, as a client's lone PUT of it."""
    from pydfs import tokens, wire

    data = bytes([n]) * 100
    frames = (
        wire.FRAME.pack(100, checksum.crc(data)) + data + wire.FRAME.pack(0, checksum.crc(data))
    )
    block_id = f"{n:032x}"
    token = tokens.block_token(b"s" * 32, block_id, "w", 60, [(store.node_id, "http://dn")])
    admitted = blocks.admit(block_id, token, "w")
    reader = wire.body_reader(frames) if read is None else read
    return asyncio.run(blocks.put(block_id, token, admitted, False, len(frames), reader))


@pytest.mark.parametrize(
    ("where", "err", "told"),
    [
        ("open", errno.ENOTDIR, "unavailable"),  # no file can be made: tmp/ gone
        ("fsync", errno.EIO, "unavailable"),
        ("fsync", errno.ENOSPC, "no_space"),  # a full disk met after the bytes were taken
        ("fsync", errno.EDQUOT, "no_space"),
    ],
)
def test_a_lone_write_the_disk_fails_is_refused_so_that_its_writer_goes_elsewhere(
    tmp_path, monkeypatch, caplog, where, err, told
):
    """Not an internal error (which a writer does not send elsewhere): ``Unavailable``, or
    ``NoSpace`` for a full disk; logged with the block and the error, and nothing kept."""
    from pydfs.errors import PydfsError

    blocks, store, _ = batch_node(tmp_path)

    def fail(*args, **kwargs):
        raise OSError(err, os.strerror(err), "/data/tmp/spare.x")

    if where == "open":
        monkeypatch.setattr(store.spares, "take", fail)
    else:
        monkeypatch.setattr(blockstore.os, "fsync", fail)
    with pytest.raises(PydfsError) as refused:
        lone_put(blocks, store, 7)
    assert refused.value.code == told and isinstance(refused.value.__cause__, OSError)
    assert f"{7:032x}" in caplog.text and "/data/tmp/spare.x" in caplog.text
    # A failing disk is told to the name nodes, which spare it new blocks; a full one is not.
    told_them = blocks.dn.heartbeats.write_failure()
    assert told_them == (os.strerror(err) if told == "unavailable" else "")
    consistent(store)
    assert store.count == 0


def test_a_lone_write_whose_writer_went_away_is_not_a_disk_failure(tmp_path, caplog):
    blocks, store, _ = batch_node(tmp_path)

    async def gone(n):
        raise ConnectionResetError("the client went away")

    with pytest.raises(ConnectionResetError):
        lone_put(blocks, store, 8, read=gone)
    assert "not stored" not in caplog.text
    consistent(store)

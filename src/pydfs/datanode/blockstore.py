"""Block files on local disk, each carrying its checksums in a trailer.

Layout under the data directory (0700, files 0600: block bytes are readable only through a
block access token, never by other local accounts)::

    node_id                 this node's stable id
    running                 present while the node runs, and after it died
    trailers                the trailer version every block file has (absent: upgrade them)
    blocks/ab/<id>.blk      the block's bytes from offset 0 (so ranges go out with sendfile),
                            then its checksum trailer (``pydfs.checksum``), which names the block
    tmp/                    blocks being received, and spare empty files; emptied at start
    quarantine/             replicas that failed verification

A block is written with its trailer to a file in ``tmp/``, renamed into place, and then fsync'd;
only then is it acknowledged. On a journaling file system (ext4, XFS, btrfs) that one fsync makes
the rename durable with the data, in one journal commit; elsewhere the directory is fsync'd too.
(An ext4 made without its journal, ``mkfs.ext4 -O ^has_journal``, cannot be told apart from
``/proc/mounts``: it is no place for a data node.)

A crash can thus leave a block file that is incomplete under its final name (renamed, not yet
synced). So a node whose last run did not end cleanly (``running`` is still there) checks every
block file's trailer at start, and quarantines those that do not validate before reporting
any. The scrubber re-reads the data itself later. ``used`` counts the files' bytes on disk,
trailers included.

The file a block is written to is an empty one made ahead of time (``Spares``): creating a file
took 0.03-0.27 ms of kernel time on ext4 here, depending on the file system's state, against
0.005 ms for a rename, and a small block's write should not wait for it (a data node's PUT of a
4 KiB block: 10-20 % less time, side by side).
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import ctypes
import errno
import itertools
import logging
import os
import re
import secrets
import shutil
import sys
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TypeVar, cast

from pydfs import checksum
from pydfs.checksum import BlockChecksums
from pydfs.errors import ChecksumMismatch, InvalidArgument, NoSpace, NotFound, ProtocolError

log = logging.getLogger("pydfs.datanode")

_BLOCK_ID = re.compile(r"[0-9a-f]{32}")


def check_block_id(block_id: str) -> str:
    """Block ids are 32 hex digits: they can never name a file outside the block directory."""
    if not _BLOCK_ID.fullmatch(block_id):
        raise InvalidArgument(f"invalid block id {block_id[:64]!r}")
    return block_id


def block_file(data_dir: Path, block_id: str) -> Path:
    """Where a data node whose data directory is *data_dir* keeps block *block_id*."""
    check_block_id(block_id)
    return data_dir / "blocks" / block_id[:2] / f"{block_id}.blk"


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, text: str) -> None:
    """A small file, replaced atomically and durably (mode 0600)."""
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def fs_type(path: Path) -> str:
    """File-system type of the mount holding *path* (from /proc/mounts), or "unknown"."""
    real = os.path.realpath(path)
    best, kind = "", "unknown"
    try:
        with open("/proc/mounts") as mounts:
            for line in mounts:
                fields = line.split()
                if len(fields) < 3:
                    continue
                point = fields[1].replace("\\040", " ")
                inside = real == point or real.startswith(point.rstrip("/") + "/")
                if inside and len(point) >= len(best):
                    best, kind = point, fields[2]
    except OSError:
        pass
    return kind


# File systems whose fsync of a file makes its latest rename durable too (the rename is in the
# journal transaction, or log, that the fsync commits).
JOURNALED = frozenset({"ext4", "xfs", "btrfs"})


# How long a data node remembers a block it deleted, refusing client writes of it: longer than
# any write token lives, so a leftover token cannot plant other bytes under a block id that a
# trim or a delete order just freed.
TOMBSTONE_SECONDS = 3600.0


class BlockStore:
    def __init__(self, root: Path, chunk_size: int, capacity: int | None = None) -> None:
        self.root = root
        self.chunk_size = chunk_size
        self.capacity = capacity
        self.blocks_dir = root / "blocks"
        self._blocks = str(self.blocks_dir)
        self.tmp_dir = root / "tmp"
        self.quarantine_dir = root / "quarantine"
        root.mkdir(parents=True, exist_ok=True)
        for d in (root, self.blocks_dir, self.tmp_dir, self.quarantine_dir):
            d.mkdir(mode=0o700, exist_ok=True)
            d.chmod(0o700)  # also a directory made before data directories were private
        # All 256 prefix directories exist, durably, before any block is acknowledged: a block
        # renamed into a directory that a crash could forget would be lost with it.
        for prefix in range(256):
            (self.blocks_dir / f"{prefix:02x}").mkdir(mode=0o700, exist_ok=True)
        _fsync_dir(self.blocks_dir)
        _fsync_dir(root)
        for stale in self.tmp_dir.iterdir():
            stale.unlink()
        self.spares = Spares(self.tmp_dir)
        self.sync_dir = fs_type(root) not in JOURNALED
        for sidecar in self.blocks_dir.glob("*/*.crc"):
            self._upgrade(sidecar)
        self.node_id = self._load_node_id()
        self.used = 0
        self.count = 0
        self.reserved = 0  # bytes promised to writes in progress
        self.writing = 0  # writers that may have renamed a block they have not yet synced
        self.receiving: set[str] = set()  # blocks with a writer open
        self.large = 0  # writers of blocks larger than a chunk, at work
        self._flushes: list[_Flush] = []  # small writers waiting for the next flush

        self._flusher: asyncio.Task[None] | None = None
        # block → when this node deleted it (tombstones), the oldest first; changed under
        # _burying, as a write made durable in a thread unburies (after ``renaming``, if both)
        self._deleted: collections.OrderedDict[str, float] = collections.OrderedDict()
        self._burying = threading.Lock()
        # Held by a delete from its check to its unlink, and by a copy's rename into place, so
        # that a copy the name node orders after a delete order is never deleted by it.
        self.renaming = threading.Lock()
        self._running = root / "running"
        unclean = self._running.exists()
        marker = root / "trailers"
        upgrade = not marker.exists()
        if upgrade:
            self._running.touch()  # an upgrade cut short is checked like a crash
            _fsync_dir(root)
        bad = 0
        for block_id in self.list():
            if upgrade:
                intact = self._upgrade_trailer(block_id)
            else:
                intact = not unclean or self._intact(block_id)
            self.used += self.path(block_id).stat().st_size
            self.count += 1
            if not intact:
                self.quarantine(block_id)
                bad += 1
        if bad:
            log.warning("%d block files incomplete or unreadable: quarantined", bad)
        if upgrade:
            _write_durably(marker, f"{checksum.TRAILER_VERSION}\n")
        self._running.touch()
        _fsync_dir(root)

    def _intact(self, block_id: str) -> bool:
        """Does the block file's trailer validate?"""
        try:
            self.checksums(block_id)
        except ChecksumMismatch:
            return False
        return True

    def _upgrade_trailer(self, block_id: str) -> bool:
        """Give a block file of trailer version 2 the footer that names its block (its file's
        name is all there is to go by), and make it private; False for one that validates as
        neither version. The new footer overwrites the old one, so a crash halfway leaves a
        footer that does not validate: the replica is then quarantined and copied anew."""
        with open(self.path(block_id), "r+b") as f:
            os.fchmod(f.fileno(), 0o600)
            try:
                sums = BlockChecksums.read(f.fileno())
                return sums.block_id == block_id
            except ChecksumMismatch:
                pass
            try:
                sums = BlockChecksums.read_v2(f.fileno(), block_id)
            except ChecksumMismatch:
                return False
            os.pwrite(f.fileno(), sums.footer(), sums.size + 4 * len(sums.chunk_crcs))
            os.fsync(f.fileno())
        return True

    def close(self) -> None:
        """Mark a clean stop, unless a write may have left a renamed block unsynced."""
        if self.writing == 0:
            self._running.unlink(missing_ok=True)

    def _load_node_id(self) -> str:
        path = self.root / "node_id"
        try:
            return path.read_text().strip()
        except FileNotFoundError:
            node_id = "dn-" + secrets.token_hex(4)
            _write_durably(path, node_id + "\n")
            return node_id

    def _upgrade(self, sidecar: Path) -> None:
        """Give a first-format block (raw ``.blk`` beside a ``.crc`` sidecar) its trailer.

        The block's first ``size`` bytes are never touched and only the sidecar's removal marks
        the upgrade done, so all of it (truncate to ``size``, append the trailer, fsync, unlink
        the sidecar) is redone from the start after a crash at any step. A sidecar whose block
        is gone was left by a delete; a pair that cannot be read is quarantined.
        """
        path = sidecar.with_suffix(".blk")
        if not _BLOCK_ID.fullmatch(path.stem):
            return
        try:
            sums = BlockChecksums.decode_sidecar(sidecar.read_bytes(), path.stem)
            with open(path, "r+b") as f:
                if os.fstat(f.fileno()).st_size < sums.size:
                    raise ProtocolError("block file shorter than its sidecar says")
                f.truncate(sums.size)
                f.seek(sums.size)
                f.write(sums.trailer())
                f.flush()
                os.fsync(f.fileno())
        except FileNotFoundError:
            pass
        except ProtocolError as exc:
            log.warning("block %s cannot be upgraded (%s): quarantined", path.stem, exc)
            for p in (path, sidecar):
                if p.exists():
                    os.replace(p, self.quarantine_dir / p.name)
            return
        sidecar.unlink()

    def path(self, block_id: str) -> Path:
        return block_file(self.root, block_id)

    def file(self, block_id: str) -> str:
        """``path``, as a string: a small write asks for it a few times, and a ``Path`` costs
        several times as much to build."""
        check_block_id(block_id)
        return f"{self._blocks}/{block_id[:2]}/{block_id}.blk"

    def exists(self, block_id: str) -> bool:
        return os.path.exists(self.file(block_id))

    def list(self) -> Iterator[str]:
        """The blocks this node holds, but those it was ordered to delete (and may not have
        unlinked yet)."""
        for sub in self.blocks_dir.iterdir():
            for entry in os.scandir(sub):
                if entry.name.endswith(".blk"):
                    block_id = entry.name[:-4]
                    if _BLOCK_ID.fullmatch(block_id) and block_id not in self._deleted:
                        yield block_id

    def open_block(self, block_id: str) -> tuple[BinaryIO, BlockChecksums]:
        """The block file, open for reading, and its checksums; ChecksumMismatch if its trailer
        does not validate or names another block (a file copied or renamed over this one);
        NotFound if it is not here, or is being deleted."""
        path = self.path(block_id)
        if block_id in self._deleted:
            raise NotFound(f"block {block_id} deleted from this node")
        try:
            f = open(path, "rb")  # noqa: SIM115 (the caller closes it)
        except FileNotFoundError:
            raise NotFound(f"block {block_id} not on this node") from None
        try:
            sums = BlockChecksums.read(f.fileno())
            if sums.block_id != block_id:
                raise ChecksumMismatch(f"block file {block_id} holds block {sums.block_id}")
            return f, sums
        except BaseException:
            f.close()
            raise

    def checksums(self, block_id: str) -> BlockChecksums:
        f, sums = self.open_block(block_id)
        f.close()
        return sums

    def free(self) -> int:
        disk = shutil.disk_usage(self.root).free - self.reserved
        if self.capacity is not None:
            disk = min(disk, self.capacity - self.used - self.reserved)
        return max(0, disk)

    def total(self) -> int:
        if self.capacity is not None:
            return self.capacity
        return shutil.disk_usage(self.root).total

    def writer(self, block_id: str, expected: int | None, *, replace: bool = False) -> BlockWriter:
        """A writer for a new block; *replace*: a copy the name node ordered, which replaces
        whatever this node holds under that id (only the name node's copy can be counted)."""
        if block_id in self.receiving:
            raise InvalidArgument(f"block {block_id} is being written already")
        if not replace and (self.exists(block_id) or self._tombstoned(block_id)):
            raise InvalidArgument(f"block {block_id} already exists")
        if expected is not None and expected > self.free():
            raise NoSpace(f"data node {self.node_id} has no room for {expected} bytes")
        return BlockWriter(self, block_id, expected or 0)

    def _tombstoned(self, block_id: str) -> bool:
        deleted = self._deleted.get(block_id)
        return deleted is not None and time.monotonic() - deleted < TOMBSTONE_SECONDS

    def _unbury(self, block_id: str) -> None:
        """The block was written anew (by a copy the name node ordered, or after its tombstone
        expired): no older delete order applies to it."""
        with self._burying:
            self._deleted.pop(block_id, None)

    def _bury(self, block_ids: Iterable[str]) -> None:
        """Tombstone *block_ids*, and forget the tombstones that expired, from the oldest: each
        delete order costs what it buries, however many a node deleted within the hour."""
        block_ids = list(block_ids)
        now = time.monotonic()
        deleted = self._deleted
        with self._burying:
            while deleted and now - next(iter(deleted.values())) >= TOMBSTONE_SECONDS:
                deleted.popitem(last=False)
            for block_id in block_ids:
                deleted[block_id] = now
                deleted.move_to_end(block_id)

    async def delete_many(self, block_ids: Iterable[str]) -> int:
        """Delete blocks from a worker thread: unlinking a 64 MiB block takes ~13 ms here (its
        extents are freed), and the blocks of one large file would stall every request to this
        node for seconds. Returns how many there were."""
        block_ids = list(block_ids)
        self._bury(block_ids)
        sizes = await asyncio.to_thread(lambda: [self._unlink(b) for b in block_ids])
        gone = [size for size in sizes if size is not None]
        self.used -= sum(gone)
        self.count -= len(gone)
        return len(gone)

    def _unlink(self, block_id: str) -> int | None:
        """Remove the block's file; its size, or None if it was not there, or was copied anew
        since the order (or could not be removed: the next block report repeats the order)."""
        path = self.path(block_id)
        with self.renaming:
            if block_id not in self._deleted:
                return None
            try:
                size = path.stat().st_size
                path.unlink()
            except FileNotFoundError:
                return None
            except OSError as exc:
                log.error("cannot delete block %s: %s", block_id, exc)
                return None
        return size

    async def commit_many(self, writers: Sequence[BlockWriter]) -> dict[BlockWriter, OSError]:
        """Make sealed small writers durable, together with any others that come meanwhile:
        the writers handed in while a flush runs go in the next, which renames each into place
        and then flushes the file system once for all of them (``syncfs``), where fsyncs one by
        one would each wait for a journal commit of their own (64 small blocks: 0.1 ms each
        against 0.3-0.5 ms here). Returns the writers that failed, with why; the caller
        aborts them.

        Where ``syncfs`` cannot be trusted to report every failure (``_find_syncfs``), where
        the directory needs an fsync of its own, or while a large block is being written (a
        flush of the whole file system would wait for its data too), each is fsync'd in a
        thread of its own, as a lone write's."""
        if not writers:
            return {}
        try:
            if _syncfs is None or self.sync_dir or self.large:
                return await self._each(writers)
            return await self._together(writers)
        finally:
            for writer in writers:
                writer.settle()

    @staticmethod
    async def _each(writers: Sequence[BlockWriter]) -> dict[BlockWriter, OSError]:
        done = await asyncio.gather(
            *(_in_thread(w._durable) for w in writers), return_exceptions=True
        )
        failed: dict[BlockWriter, OSError] = {}
        for writer, outcome in zip(writers, done, strict=True):
            if isinstance(outcome, OSError):
                failed[writer] = outcome
            elif isinstance(outcome, BaseException):
                raise outcome
        return failed

    async def _together(self, writers: Sequence[BlockWriter]) -> dict[BlockWriter, OSError]:
        loop = asyncio.get_running_loop()
        done: asyncio.Future[dict[BlockWriter, OSError]] = loop.create_future()
        group = (list(writers), done)
        self._flushes.append(group)
        if self._flusher is None:
            self._flusher = loop.create_task(self._flush())
            self._flusher.add_done_callback(self._flusher_gone)
        try:
            failed = await asyncio.shield(done)
        except asyncio.CancelledError:
            if group in self._flushes:  # not taken yet: no thread touches these writers
                self._flushes.remove(group)
                done.cancel()
            else:  # the flush's syscalls run to their end regardless (it sets a result)
                await _outlast(done)
            raise
        return {w: failed[w] for w in writers if w in failed}

    async def _flush(self) -> None:
        try:
            while self._flushes:
                group, self._flushes = self._flushes, []
                await self._flush_group(group)
        finally:
            self._flusher = None
            self._fail_waiting()  # only if this task was cancelled (the loop closing)

    async def _flush_group(self, group: Sequence[_Flush]) -> None:
        writers = [w for ws, _ in group for w in ws]
        try:
            work = _thread(self._durable_many, writers)
        except RuntimeError as exc:  # no thread to be had (the executor shut down, no memory)
            log.error("cannot flush %d blocks: %s", len(writers), exc)
            for _, done in group:
                done.set_result({w: OSError(errno.EIO, "no flush: no thread") for w in writers})
            return
        try:
            await _outlast(work)
        except Exception:
            log.exception("flushing %d blocks failed", len(writers))
        finally:
            if work.cancelled() or work.exception() is not None:
                failed = {w: OSError(errno.EIO, "the flush failed") for w in writers}
            else:
                failed = work.result()
            for _, done in group:
                if not done.done():
                    done.set_result(failed)

    def _flusher_gone(self, task: asyncio.Task[None]) -> None:
        if self._flusher is task:  # cancelled before it ever ran
            self._flusher = None
            self._fail_waiting()

    def _fail_waiting(self) -> None:
        waiting, self._flushes = self._flushes, []
        for writers, done in waiting:
            if not done.done():
                done.set_result({w: OSError(errno.EIO, "no flush: stopping") for w in writers})

    def _durable_many(self, writers: Sequence[BlockWriter]) -> dict[BlockWriter, OSError]:
        assert _syncfs is not None
        failed: dict[BlockWriter, OSError] = {}
        renamed: list[BlockWriter] = []
        for writer in writers:
            try:
                writer._rename()
            except OSError as exc:
                failed[writer] = exc
            else:
                renamed.append(writer)
        if not renamed:
            return failed
        # A write that fails to reach the disk after a file was opened is reported to a
        # ``syncfs`` on it (errseq): on the first opened of them, before any of them was
        # written, every failure that touches them is reported (others too: only cautious).
        # A journal that failed its commit, or a file system gone read-only, is reported to an
        # fsync of a file whose changes are in it (its commit done, it costs next to nothing).
        first = min(renamed, key=lambda w: w.opened)
        assert first._fd is not None
        try:
            if _syncfs(first._fd) != 0:
                err = ctypes.get_errno()
                raise OSError(err, f"syncfs: {os.strerror(err)}")
            os.fsync(first._fd)
            if os.fstatvfs(first._fd).f_flag & os.ST_RDONLY:
                raise OSError(errno.EROFS, "the file system went read-only")
        except OSError as exc:
            for writer in renamed:
                failed[writer] = exc
            return failed
        for writer in renamed:
            try:
                writer._closed()
            except OSError as exc:  # durable all the same
                log.warning("closing block %s: %s", writer.block_id, exc)
        return failed

    def quarantine(self, block_id: str) -> None:
        """Move a replica that failed verification out of service, keeping it for inspection."""
        path = self.path(block_id)
        size = path.stat().st_size
        os.replace(path, self.quarantine_dir / path.name)
        self._bury([block_id])
        self.used -= size
        self.count -= 1


class BlockWriter:
    """Receives one block's verified chunks into a temporary file, then makes it durable.
    ``state``: "open" (in ``tmp/``), "renamed" (under its final name, not yet synced), "durable"."""

    def __init__(self, store: BlockStore, block_id: str, reserve: int) -> None:
        self.store = store
        self.block_id = block_id
        self.size = 0
        self.block_crc = 0
        self.chunk_crcs: list[int] = []
        self._short = False
        self._held = b""  # the last chunk, if short, until the trailer goes with it
        self.state = "open"
        self._tmp = store.spares.take()
        self._fd: int | None = os.open(self._tmp, os.O_WRONLY)
        self._reserved = reserve
        store.reserved += reserve
        store.writing += 1
        store.receiving.add(block_id)
        self._replaced = 0  # bytes of the file this one replaced (a copy over a held block)
        self._on_disk: int | None = None  # bytes of the sealed file, trailer included
        self._large = False  # counted in ``store.large``
        self.opened = next(_OPENED)  # its file was opened after those of lower numbers

    def write_chunk(self, data: bytes, crc: int) -> None:
        """Check one chunk against the CRC its writer sent, then append it."""
        assert self._fd is not None
        if self._short:
            raise ProtocolError("only the last chunk of a block may be shorter than a chunk")
        if len(data) > self.store.chunk_size:
            raise ProtocolError("chunk larger than the chunk size")
        self._short = len(data) < self.store.chunk_size
        if self.size and not self._large:  # a second chunk: a large block
            self._large = True
            self.store.large += 1
        if checksum.crc(data) != crc:
            raise ChecksumMismatch(f"block {self.block_id}: chunk failed its CRC32C on arrival")
        self.size += len(data)
        self.block_crc = checksum.crc(data, self.block_crc)
        self.chunk_crcs.append(crc)
        if self.store.capacity is not None and self.size > self._reserved + self.store.free():
            raise NoSpace(f"data node {self.store.node_id} is full")
        if self._short:  # the last chunk: written with the trailer, in one write
            self._held = data
        else:
            self._write(data)

    def _write(self, data: bytes) -> None:
        assert self._fd is not None
        try:
            view = memoryview(data)
            while view:
                view = view[os.write(self._fd, view) :]
        except OSError as exc:
            if exc.errno == errno.ENOSPC:
                raise NoSpace(f"data node {self.store.node_id}: disk full") from None
            raise

    def seal(self, block_crc: int) -> BlockChecksums:
        """Verify the whole block against *block_crc* and append its trailer."""
        if self.block_crc != block_crc:
            raise ChecksumMismatch(f"block {self.block_id}: whole-block CRC32C mismatch")
        sums = BlockChecksums(
            self.block_id, self.store.chunk_size, self.size, self.block_crc, self.chunk_crcs
        )
        trailer = sums.trailer()
        self._write(self._held + trailer)
        self._held = b""
        self._on_disk = sums.size + len(trailer)
        return sums

    async def commit(self, block_crc: int) -> BlockChecksums:
        """Verify the whole block, append its trailer, rename it into place and fsync it.

        A block of one chunk written alone (no other write under way) is made durable on the
        event loop's thread: the hand-off to a worker thread and back costs about 250 µs here,
        as much as the fsync, and a lone small write is what a client writing small files one
        after another waits on. Small writes side by side are flushed together
        (``BlockStore.commit_many``); a larger block is fsync'd in a thread."""
        sums = self.seal(block_crc)
        if self.size <= self.store.chunk_size and self.store.writing > 1:
            failed = await self.store.commit_many([self])
            if self in failed:
                raise failed[self]
            return sums
        try:
            if self.size <= self.store.chunk_size:
                self._durable()
            else:
                await _in_thread(self._durable)
        finally:
            self.settle()
        return sums

    def settle(self) -> None:
        """Count a block made durable (on the loop, never in a thread)."""
        if self.state == "durable" and self._on_disk is not None:
            self.store.used += self._on_disk - self._replaced
            self.store.count += 0 if self._replaced else 1
            self.store.writing -= 1
            self._on_disk = None
            self._release()

    def _durable(self) -> None:
        self._rename()
        assert self._fd is not None
        os.fsync(self._fd)  # not fdatasync: the new name, size and inode must be durable too
        if self.store.sync_dir:
            _fsync_dir(self.store.path(self.block_id).parent)
        self._closed()

    def _rename(self) -> None:
        final = self.store.file(self.block_id)
        with self.store.renaming:
            try:
                self._replaced = os.stat(final).st_size
            except FileNotFoundError:
                self._replaced = 0
            os.replace(self._tmp, final)
            self.store._unbury(self.block_id)
        self.state = "renamed"

    def _closed(self) -> None:
        assert self._fd is not None
        fd, self._fd = self._fd, None  # never closed twice, even if the close fails
        self.state = "durable"
        os.close(fd)

    def abort(self) -> None:
        """Undo a write that will not be acknowledged (a durable block stays: it is complete)."""
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if self.state != "durable":
            path = self._tmp if self.state == "open" else self.store.path(self.block_id)
            self.store.writing -= 1
            self.state = "aborted"
            try:
                path.unlink(missing_ok=True)
            except OSError as exc:  # a failing disk: a file the next start checks, or tmp/
                log.error("cannot remove %s: %s", path, exc)
        self._release()

    def _release(self) -> None:
        self.store.reserved -= self._reserved
        self._reserved = 0
        self.store.receiving.discard(self.block_id)
        if self._large:
            self._large = False
            self.store.large -= 1


_OPENED = itertools.count()
T = TypeVar("T")
_Flush = tuple[list[BlockWriter], "asyncio.Future[dict[BlockWriter, OSError]]"]


def _thread(fn: Callable[..., T], *args: Any) -> asyncio.Future[T]:
    """*fn* run in a worker thread. Not a task (as ``asyncio.to_thread`` would make): a loop
    closing cancels every task, and the caller would stop waiting while the thread works on."""
    return asyncio.get_running_loop().run_in_executor(None, fn, *args)


async def _outlast(work: asyncio.Future[T]) -> T:
    """*work*'s result; a caller cancelled meanwhile still waits for it to end (a thread's
    syscalls run to their end regardless), so that no file is left half renamed behind it."""
    try:
        return await asyncio.shield(work)
    except asyncio.CancelledError:
        while not work.done():
            with contextlib.suppress(asyncio.CancelledError):
                await asyncio.wait([work])
        raise


async def _in_thread(fn: Callable[..., None], *args: Any) -> None:
    """Run *fn* in a worker thread (``_thread``), outlasting a caller's cancellation."""
    await _outlast(_thread(fn, *args))


def _find_syncfs() -> Callable[[int], int] | None:
    """libc's ``syncfs``, where it reports every failure: a failed write of data since Linux
    5.8 (errseq), a failed commit of the file system's journal since 5.17."""
    if not sys.platform.startswith("linux"):
        return None
    try:
        version = tuple(int(p) for p in os.uname().release.split(".")[:2])
        fn = ctypes.CDLL(None, use_errno=True).syncfs
    except (ValueError, AttributeError, OSError):
        return None
    if version < (5, 17):
        return None
    fn.argtypes, fn.restype = [ctypes.c_int], ctypes.c_int
    return cast(Callable[[int], int], fn)


_syncfs = _find_syncfs()


class Spares:
    """Empty files in ``tmp/``, made ahead by a worker thread so that a block write finds one
    ready; when none is left, a writer makes its own."""

    LOW, HIGH = 16, 64  # refill below LOW, up to HIGH

    def __init__(self, tmp_dir: Path) -> None:
        self.tmp_dir = tmp_dir
        self._ready: collections.deque[Path] = collections.deque()
        self._filling = threading.Lock()

    def take(self) -> Path:
        if len(self._ready) < self.LOW and not self._filling.locked():
            threading.Thread(target=self._fill, name="spare-files", daemon=True).start()
        try:
            return self._ready.popleft()
        except IndexError:
            return self._make()

    def _make(self) -> Path:
        path = self.tmp_dir / f"spare.{secrets.token_hex(8)}"
        os.close(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        return path

    def _fill(self) -> None:
        if not self._filling.acquire(blocking=False):
            return
        try:
            while len(self._ready) < self.HIGH:
                self._ready.append(self._make())
        except OSError as exc:  # a full or failing disk: writers will meet it themselves
            log.warning("cannot make spare block files: %s", exc)
        finally:
            self._filling.release()

"""Transfer: a client's file data, moved straight between it and the data nodes.

An upload is started (a lease of its own, or for a small file one from a batch fetched ahead),
streamed block by block (``client.blocks``), renewed while a slow writer keeps it open, and
committed; any failure aborts it, so that nothing half-written ever becomes visible. A read
verifies every block, reports corrupt replicas, and when every replica fails asks the name node
again, provided the file is still the same one. ``AsyncClient`` owns one; its file objects
(``client.files``) and ``pydfs.mount`` move their bytes through it.
"""

from __future__ import annotations

import asyncio
import hashlib
import inspect
import io
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import IO, TYPE_CHECKING, Protocol, cast

import msgspec

from pydfs import paths, tokens, wire
from pydfs.client import blocks
from pydfs.client.commits import Commits
from pydfs.client.puts import Puts
from pydfs.errors import (
    AnswerLost,
    Conflict,
    InvalidPath,
    IsADirectory,
    LimitExceeded,
    PydfsError,
    Unavailable,
)

log = logging.getLogger("pydfs.client")

if TYPE_CHECKING:
    import aiohttp

    from pydfs.rpc import Links, Rpc

LEASE_RENEWAL = 60.0  # seconds between lease renewals of an open upload (leases last 600 s)
SMALL_WRITE = 1 << 20  # a write of at most this many bytes takes its lease from a batch
MAX_BATCH = 64  # leases fetched at once, at most (as many as the name node grants at once)
BATCH_SHELF_LIFE = 300.0  # seconds a batch lease is used for (leases last 600 s)
LIMIT_WAIT = 30.0  # seconds a fetch of leases waits for the user's other writers to make room
KEPT_STATUSES = 4096  # small files' statuses (with read tokens) a client keeps, most recent
KEPT_SIZE = SMALL_WRITE  # the largest file read from a kept status (its bytes wait, held whole)
KEPT_BLOCKS = 4  # and the most blocks (a round trip saved is nothing to a read of many)
GUESS_GRACE = 0.25  # seconds a read from a kept status may go on once the name node answered
KEPT_FOR = 30.0  # seconds a status is read from without a new one: nodes move, tokens travel

Progress = Callable[[int], None]
"""``progress(n)``: *n* more bytes moved. Called often, from the event loop: keep it cheap."""


class AsyncSource(Protocol):
    async def read(self, n: int, /) -> bytes: ...


ByteSource = IO[bytes] | AsyncSource
"""What ``write_stream`` uploads: a binary file, or anything with ``async read(n)``."""


class Connections(Protocol):
    """What a transfer uses of its client (``AsyncClient``, which opens them when first used)."""

    @property
    def rpc(self) -> Rpc: ...
    @property
    def session(self) -> aiohttp.ClientSession: ...
    @property
    def links(self) -> Links: ...
    @property
    def stall_timeout(self) -> float: ...
    @property
    def replication(self) -> int | None: ...
    @property
    def block_size(self) -> int | None: ...
    async def info(self, path: str, *, read: bool = False) -> wire.FileStatus: ...


class Transfer:
    """The uploads and block reads of one client, and its shelves of batch leases."""

    def __init__(self, client: Connections) -> None:
        self._client = client
        self._shelves: dict[tuple[int | None, int | None], _LeaseShelf] = {}
        self.commits = Commits(lambda: client.rpc)
        """The commits of small files, sent to the name node together."""
        self.puts = Puts(lambda: client.links)
        """The writes of small blocks, sent to each data node together."""
        self._kept: OrderedDict[str, tuple[float, wire.FileStatus]] = OrderedDict()

    async def close(self) -> None:
        """Hand the unused batch leases back, so that the name node need not wait for them to
        expire (and those of fetches under way, too)."""
        fetches = [shelf.fetch for shelf in self._shelves.values() if shelf.fetch is not None]
        await asyncio.gather(*fetches, return_exceptions=True)
        unused = [grant for shelf in self._shelves.values() for _, grant in shelf.grants]
        self._shelves.clear()
        if unused:
            await asyncio.gather(*(self._abort(f"/uploads/{g.upload_id}") for g in unused))

    def forget(self) -> None:
        """Drop the unused batch leases without handing them back: they expire on their own."""
        self._shelves.clear()

    # --- writing --------------------------------------------------------------------------

    async def write(
        self,
        path: str,
        stream: ByteSource,
        *,
        overwrite: bool = True,
        replication: int | None = None,
        block_size: int | None = None,
        progress: Progress | None = None,
        expect: list[str] | None = None,
    ) -> wire.FileStatus:
        """``AsyncClient.write_stream``: upload everything *stream* yields to *path*."""
        size = _remaining(stream)
        if size is not None and size <= SMALL_WRITE:
            # A small file: a lease from a batch saves a round trip; its commit names the file
            # and is where permissions are checked, which costs little on a small file.
            file = cast(IO[bytes], stream)
            start = file.tell()
            pos = told = 0  # where this attempt is, and how far progress has been told

            def once(n: int) -> None:  # bytes sent again by the retry are not told twice
                nonlocal pos, told
                pos += n
                if progress is not None and pos > told:
                    progress(pos - told)
                    told = pos

            fetched, grant = await self._batch_lease(replication, block_size)
            try:
                return await self.finish(grant, stream, once, path, overwrite, expect)
            except Conflict as exc:
                if isinstance(exc, AnswerLost):  # committed: writing again would do it twice
                    raise
                # The name node forgot the lease (it restarted): so it did every lease shelved
                # as long ago, which would fail the same way. Drop them and write it once more.
                self._drop_leases(fetched)
                file.seek(start)
                pos = 0
                _, grant = await self._batch_lease(replication, block_size)
                return await self.finish(grant, stream, once, path, overwrite, expect)
        grant = await self.start(path, overwrite, replication, block_size)
        return await self.finish(grant, stream, progress, expect=expect)

    async def start(
        self,
        path: str,
        overwrite: bool = True,
        replication: int | None = None,
        block_size: int | None = None,
    ) -> wire.UploadGrant:
        """Ask for an upload to *path*: a missing parent, or an existing file when not to
        *overwrite*, is refused now rather than at the commit. While the user holds as many
        uploads as allowed, it waits for some to end, for up to ``LIMIT_WAIT`` seconds, as a
        small file's lease does (``_fill``)."""
        client = self._client
        req = wire.UploadRequest(
            path,
            replication=client.replication if replication is None else replication,
            block_size=client.block_size if block_size is None else block_size,
            overwrite=overwrite,
        )
        loop = asyncio.get_running_loop()
        deadline, delay = loop.time() + LIMIT_WAIT, 0.01
        while True:
            try:
                return await client.rpc.call("POST", "/uploads", req, reply=wire.UploadGrant)
            except LimitExceeded:
                if loop.time() + delay > deadline:
                    raise
                await asyncio.sleep(delay)
                delay = min(0.5, delay * 2)

    async def finish(
        self,
        grant: wire.UploadGrant,
        stream: ByteSource,
        progress: Progress | None = None,
        path: str | None = None,
        overwrite: bool = True,
        expect: list[str] | None = None,
    ) -> wire.FileStatus:
        """Stream *stream* into the upload *grant* and commit it (to *path*, for a lease from a
        batch), with the SHA-256 of its content; ``send`` says what happens on a failure."""
        file = None if _reads_async(stream) else cast(IO[bytes], stream)
        seekable = file is not None and file.seekable()
        start = file.tell() if file is not None and seekable else 0
        pos = done = 0  # where the source is, and how far progress has been told
        digest = hashlib.sha256()  # of the whole content, recorded at commit (`pydfs checksum`)

        async def read(n: int) -> bytes:
            nonlocal pos, done
            if file is not None:
                data = file.read(n) or b""
            else:
                data = await cast(AsyncSource, stream).read(n)
            begin, pos = pos, pos + len(data)
            if pos > done:  # bytes read again after a rewind are neither told nor hashed twice
                digest.update(data[done - begin :] if done > begin else data)
                if progress is not None:
                    progress(pos - done)
                done = pos
            return data

        async def rewind(offset: int) -> bool:
            nonlocal pos
            if file is None or not seekable:
                return False
            file.seek(start + offset)
            pos = offset
            return True

        return await self.send(grant, read, rewind, path, overwrite, digest.hexdigest, expect)

    async def send(
        self,
        grant: wire.UploadGrant,
        read: Callable[[int], Awaitable[bytes]],
        rewind: Callable[[int], Awaitable[bool]],
        path: str | None = None,
        overwrite: bool = True,
        sha256: Callable[[], str] | None = None,
        expect: list[str] | None = None,
        keep: list[wire.KeptBlock] | None = None,
    ) -> wire.FileStatus:
        """Store the bytes *read* yields as the upload *grant*'s blocks and commit it, with the
        checksum *sha256* gives once they are all read (if the file still names the blocks
        *expect* lists, when given, keeping those of them *keep* places); abort it on any
        failure (cancellation included), so that nothing of it ever becomes visible.
        ``rewind(offset)`` moves the source back to *offset*, if it can, to send a block again
        elsewhere."""
        client = self._client
        route = f"/uploads/{grant.upload_id}"

        async def allocate(exclude: list[str]) -> wire.BlockGrant:
            alloc = wire.BlockAllocRequest(exclude)
            return await client.rpc.call("POST", f"{route}/blocks", alloc, reply=wire.BlockGrant)

        keepalive = _LeaseKeeper(self._client, route)
        try:
            written: dict[str, str] = {}
            stored = await blocks.write_blocks(
                client.session,
                read,
                grant,
                allocate,
                rewind,
                client.stall_timeout,
                self.puts,
                written,
            )
            checksum = None if sha256 is None else sha256()
            commit = wire.CommitRequest(stored, path, overwrite, checksum, expect, keep or [])
            if not grant.path:  # an upload from a batch: a small file, committed with others
                status = await self.commits.commit(grant.upload_id, commit)
            else:
                status = await client.rpc.call(
                    "POST", f"{route}/commit", commit, reply=wire.FileStatus
                )
            self.keep(_with_tokens(status, written))
            return status
        except BaseException:
            await asyncio.shield(self._abort(route))
            raise
        finally:
            keepalive.stop()

    async def _abort(self, route: str) -> None:
        try:
            await self._client.rpc.call("DELETE", route)
        except PydfsError:
            pass  # the lease expires on its own; its blocks are collected then

    async def _batch_lease(
        self, replication: int | None, block_size: int | None
    ) -> tuple[float, wire.UploadGrant]:
        """A lease from this client's batch for that shape of file, with the loop time it was
        fetched at. When the shelf is empty one writer fetches a batch and the others wait for
        it: one lease at first, then as many as writers wait, at least twice the last batch (at
        most ``MAX_BATCH``), so that a client writing one file asks for no more than it uses and
        many writers at once ask for about one lease each."""
        shelf = self._shelves.setdefault((replication, block_size), _LeaseShelf())
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while shelf.grants:
                fetched, grant = shelf.grants.pop()
                if now - fetched < BATCH_SHELF_LIFE:
                    return fetched, grant
            if shelf.fetch is None:
                shelf.fetch = loop.create_task(self._fill(shelf, replication, block_size))
                shelf.fetch.add_done_callback(_retrieved)
            fetch = shelf.fetch
            shelf.waiting += 1
            try:
                await asyncio.shield(fetch)  # a writer cancelled while waiting leaves the fetch be
            finally:
                shelf.waiting -= 1

    async def _fill(
        self, shelf: _LeaseShelf, replication: int | None, block_size: int | None
    ) -> None:
        """Fetch a batch of leases onto *shelf*, for the writers waiting on it.

        The user's other clients draw on the same allowance of open uploads (the name node's
        ``max_open_uploads``), and the name node grants a batch at most half the room left, so
        that no client takes the last of it. A fetch refused because the user holds as many as
        allowed waits for those writers to commit theirs and asks again, for a single lease,
        for up to ``LIMIT_WAIT`` seconds."""
        client = self._client
        loop = asyncio.get_running_loop()
        try:
            count = min(MAX_BATCH, max(shelf.next_batch, shelf.waiting))
            shelf.next_batch = min(MAX_BATCH, count * 2)
            deadline, delay = loop.time() + LIMIT_WAIT, 0.01
            while True:
                req = wire.UploadBatchRequest(
                    count,
                    client.replication if replication is None else replication,
                    client.block_size if block_size is None else block_size,
                )
                try:
                    batch = await client.rpc.call(
                        "POST", "/uploads/batch", req, reply=wire.UploadBatch
                    )
                    break
                except LimitExceeded:
                    if loop.time() + delay > deadline:
                        raise
                    count = shelf.next_batch = 1  # near the limit: one lease at a time
                    await asyncio.sleep(delay)
                    delay = min(0.5, delay * 2)
            now = loop.time()
            shelf.grants.extend((now, grant) for grant in reversed(batch.uploads))
        finally:
            shelf.fetch = None

    def _drop_leases(self, until: float) -> None:
        """Forget the shelved leases fetched no later than *until* (loop time)."""
        for shelf in self._shelves.values():
            shelf.grants = [(t, grant) for t, grant in shelf.grants if t > until]

    # --- reading --------------------------------------------------------------------------

    async def status(self, path: str) -> wire.FileStatus:
        """What a reader of *path* needs: its status with its blocks' read tokens."""
        status = await self._client.info(path, read=True)
        self.keep(status)
        return status

    def keep(self, status: wire.FileStatus) -> None:
        """Keep a small file's status, with a token for each block, for ``read_path`` (the
        most recent ``KEPT_STATUSES``), with its live replicas only; any other status of its
        path drops the one kept."""
        blocks = status.blocks
        if blocks and any(not n.live for b in blocks for n in b.nodes):
            blocks = [
                msgspec.structs.replace(b, nodes=[n for n in b.nodes if n.live]) for b in blocks
            ]
            status = msgspec.structs.replace(status, blocks=blocks)
        if (
            status.type != "file"
            or not 0 < status.size <= KEPT_SIZE
            or not blocks
            or len(blocks) > KEPT_BLOCKS
            or any(b.token is None or not b.nodes for b in blocks)
        ):
            self._kept.pop(status.path, None)
            return
        self._kept[status.path] = (time.monotonic(), status)
        self._kept.move_to_end(status.path)
        if len(self._kept) > KEPT_STATUSES:
            self._kept.popitem(last=False)

    async def read_path(
        self, path: str, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Verified bytes of *path* as it is now.

        A small file whose status this client kept (from its own write, with the write tokens
        of its blocks, or from an earlier read) is read in one round trip rather than two: its
        blocks are read from that status while the name node is asked for the current one. A
        block id names the same bytes for ever (new bytes get a new block), so if the file still
        names the same blocks, the bytes read are its content as of the name node's answer; if
        not, or if the guess failed or is slow, they are dropped and the file is read from the
        answer, as without a kept status. The name node is asked either way, so a deleted,
        replaced or forbidden file is never served from the past."""
        try:
            key = paths.normalize(path)
        except InvalidPath:
            key = ""  # the name node says what is wrong with it
        kept_at, kept = self._kept.get(key, (0.0, None))
        if kept is not None and (time.monotonic() - kept_at > KEPT_FOR or _expired(kept)):
            kept = None  # the tokens it holds go to no address older than that
        if kept is None:
            async for data in self.read(await self.status(path), offset, length):
                yield data
            return
        corrupt: list[tuple[str, str]] = []
        guess = asyncio.ensure_future(self._read_kept(kept, offset, length, corrupt))
        guessed = None
        try:
            try:
                status = await self.status(path)
            except BaseException:
                self._kept.pop(key, None)  # gone, forbidden, a link: not worth a guess again
                raise
            # The same version, whose replicas are where they were: the guess is good. It is
            # given a moment to end, not the stall timeout of a node that hangs.
            if _same_content(status, kept) and _nodes_as_before(kept, status):
                if not guess.done():
                    await asyncio.wait({guess}, timeout=GUESS_GRACE)
                if guess.done():
                    guessed = guess.result()
        finally:
            guess.cancel()  # if it is not done: the answer is read instead
        if guessed is None:
            async for data in self.read(status, offset, length):
                yield data
            return
        for block, node in corrupt:
            if _holds(status, block, node):  # a replica that moved is no corrupt one
                await self._report_corrupt(block, node)
        if guessed:
            yield guessed

    async def _read_kept(
        self,
        status: wire.FileStatus,
        offset: int,
        length: int | None,
        corrupt: list[tuple[str, str]],
    ) -> bytes | None:
        """The bytes of a kept *status*, or None if they could not be read (its tokens expired,
        its blocks deleted with the file): a guess, which ``read_path`` confirms or drops.
        Replicas found corrupt go into *corrupt*, to be reported once the blocks are confirmed
        to be the file's (a block deleted since is no replica to report)."""

        async def note(block: str, node: str) -> None:
            corrupt.append((block, node))

        try:
            parts = [
                d async for d in self.read(status, offset, length, on_corrupt=note, again=False)
            ]
        except PydfsError:
            return None
        return b"".join(parts)

    async def read(
        self,
        status: wire.FileStatus,
        offset: int = 0,
        length: int | None = None,
        *,
        on_corrupt: Callable[[str, str], Awaitable[None]] | None = None,
        again: bool = True,
    ) -> AsyncIterator[bytes]:
        """Verified bytes of the file *status* describes: readers that have it already skip the
        lookup, and keep reading the same version of the file. ``on_corrupt(block, node)``
        hears of bad replicas (by default, the name node does); without *again*, a block no
        replica of which could be read fails at once, without asking the name node where the
        file's blocks are now."""
        path = status.path
        if status.type == "dir":
            raise IsADirectory(f"{path} is a directory")
        client = self._client
        end = status.size if length is None else min(status.size, offset + length)
        block_start = 0
        for index, block in enumerate(status.blocks or []):
            block_end = block_start + block.size
            if block_end > offset and block_start < end:
                lo, hi = max(offset, block_start) - block_start, min(end, block_end) - block_start
                for attempt in range(3):
                    try:
                        async for data in blocks.read_block(
                            client.session,
                            block,
                            lo,
                            hi,
                            on_corrupt or self._report_corrupt,
                            client.stall_timeout,
                            client.links,
                        ):
                            yield data
                            lo += len(data)
                        break
                    except Unavailable:
                        # Every replica failed: the file may have been replaced, or its nodes
                        # restarted on new addresses. Ask the name node again.
                        if attempt == 2 or not again:
                            raise
                        await asyncio.sleep(0.3 * (attempt + 1))
                        status = await self._still_same(path, status)
                        block = (status.blocks or [])[index]
            block_start = block_end

    async def _report_corrupt(self, block: str, node: str) -> None:
        try:
            await self._client.rpc.call("POST", "/blocks/corrupt", wire.CorruptReplica(block, node))
        except PydfsError:
            pass  # the scrubber will find it anyway

    async def _still_same(self, path: str, status: wire.FileStatus) -> wire.FileStatus:
        """Fresh block locations for *path*, provided it still has the same blocks."""
        try:
            now = await self.status(path)
        except FileNotFoundError:
            raise Conflict(f"{path} was deleted while being read") from None
        if [b.id for b in now.blocks or []] != [b.id for b in status.blocks or []]:
            raise Conflict(f"{path} was replaced while being read; read it again")
        return now


class _LeaseKeeper:
    """Renews an upload's lease every ``LEASE_RENEWAL`` seconds while a slow writer (a trickling
    pipe, a file object fed a line at a time) keeps it open longer than the name node's lease.
    A timer until then, not a task: most uploads (every small file) end long before."""

    def __init__(self, client: Connections, route: str) -> None:
        self._client, self._route = client, route
        self._loop = asyncio.get_running_loop()
        self._timer: asyncio.TimerHandle | None = self._loop.call_later(LEASE_RENEWAL, self._due)
        self._renewing: asyncio.Task[None] | None = None

    def _due(self) -> None:
        self._renewing = self._loop.create_task(self._renew())

    async def _renew(self) -> None:
        try:
            await self._client.rpc.call("POST", f"{self._route}/renew", {})
        except Exception as exc:  # the commit will say what went wrong; keep renewing
            if not isinstance(exc, PydfsError):
                log.warning("renewing %s: %r", self._route, exc)
        if self._timer is not None:
            self._timer = self._loop.call_later(LEASE_RENEWAL, self._due)

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if self._renewing is not None:
            self._renewing.cancel()


class _LeaseShelf:
    """Batch leases not used yet, with the loop time each was fetched at; the fetch of more
    under way, if any, and how many writers wait for it."""

    def __init__(self) -> None:
        self.grants: list[tuple[float, wire.UploadGrant]] = []
        self.next_batch = 1
        self.fetch: asyncio.Task[None] | None = None
        self.waiting = 0


def _same_content(now: wire.FileStatus, kept: wire.FileStatus) -> bool:
    """Does the file *now* hold what *kept* names: the same blocks, so the same bytes (a block
    id names the same bytes for ever: new bytes get a new block)?"""
    return (
        now.type == "file"
        and now.size == kept.size
        and [(b.id, b.size) for b in now.blocks or []]
        == [(b.id, b.size) for b in kept.blocks or []]
    )


def _with_tokens(status: wire.FileStatus, written: dict[str, str]) -> wire.FileStatus:
    """A committed file's status with the write tokens its blocks went with, which read them
    back (none where a block was not written with it: one the commit kept)."""
    blocks = [
        msgspec.structs.replace(b, token=written.get(b.id) or None) for b in status.blocks or []
    ]
    return msgspec.structs.replace(status, blocks=blocks)


def _expired(status: wire.FileStatus) -> bool:
    """Has a token of *status* expired (or will before a read of it gets there)?"""
    soon = time.time() + 1.0
    return any(tokens.block_token_expiry(b.token or "") < soon for b in status.blocks or [])


def _nodes_as_before(kept: wire.FileStatus, now: wire.FileStatus) -> bool:
    """Is every node a read of *kept* may try live *now*, at the same address?"""
    live = {(n.id, n.url) for b in now.blocks or [] for n in b.nodes if n.live}
    return all((n.id, n.url) in live for b in kept.blocks or [] for n in b.nodes)


def _holds(status: wire.FileStatus, block: str, node: str) -> bool:
    return any(b.id == block and any(n.id == node for n in b.nodes) for b in status.blocks or [])


def _retrieved(task: asyncio.Task[None]) -> None:
    """Mark a fetch's failure as seen: the writers that waited for it have raised it, and if
    none were left to wait, it needs no "exception was never retrieved" warning."""
    if not task.cancelled():
        task.exception()


_PLAIN_FILES = (io.BytesIO, io.BufferedReader, io.BufferedRandom, io.FileIO)


def _reads_async(stream: ByteSource) -> bool:
    """Is *stream*'s ``read`` a coroutine function? Python's own files are known not to be
    (asking costs 20 µs, as much as the rest of a small file's client side); anything else,
    an ``io.IOBase`` among them (fsspec's async files are), is asked."""
    return type(stream) not in _PLAIN_FILES and inspect.iscoroutinefunction(stream.read)


def _remaining(stream: ByteSource) -> int | None:
    """How many bytes a seekable file has left, without reading them; None if unknown."""
    if _reads_async(stream):
        return None
    file = cast(IO[bytes], stream)
    try:
        if not file.seekable():
            return None
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
    except (OSError, ValueError, AttributeError):
        return None
    return max(0, end - here)

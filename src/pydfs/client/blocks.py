"""Streaming blocks between the client and data nodes, in constant memory.

Writes send each block as CRC-framed chunks: a block of one chunk to every node at once
(``_fan_out``), a larger one once, to the first node of a pipeline that forwards it on. Reads
verify every chunk against its CRC32C and move on to the next replica, from the same offset,
when a node is unreachable or a chunk fails.

A block of one chunk goes in one body over ``rpc.Links`` (lean kept-alive connections) to every
node at once, and a read of at most a chunk in one answer; anything larger streams through
aiohttp.
"""

from __future__ import annotations

import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TYPE_CHECKING

from pydfs import checksum, rpc, wire
from pydfs.errors import (
    ChecksumMismatch,
    InsufficientNodes,
    InternalError,
    NoSpace,
    NotFound,
    ProtocolError,
    PydfsError,
    Timeout,
    Unauthenticated,
    Unavailable,
)

if TYPE_CHECKING:
    import aiohttp

    from pydfs.client.puts import Puts

log = logging.getLogger("pydfs.client")

STALL_TIMEOUT = 60.0  # seconds a data node may take no bytes, or send none, before we move on
STALE_GRANT = 1.0
"""Seconds after which a block grant not used yet is replaced by a fresh one before its block
is sent: the client cannot know how long the cluster's tokens last, and a source this slow
to give a block's first bytes hardly notices one more call to the name node."""

Reader = Callable[[int], Awaitable[bytes]]
"""``read(n)``: up to *n* bytes of the source; ``b""`` at its end."""


class BlockSource:
    """The bytes of one block, pulled from the file's reader and framed for the wire."""

    def __init__(self, read: Reader, first: bytes, limit: int) -> None:
        """*first*: the block's first chunk, and one byte more if there is more (``first_read``)."""
        self._read = read
        self._first = first
        self._limit = limit
        self.size = 0
        self.crc = 0
        self.last_progress = time.monotonic()

    @property
    def one_chunk(self) -> bool:
        """Is the first chunk all of the block (framed, at most ``wire.WHOLE_BLOCK`` bytes)?"""
        return len(self._first) <= wire.CHUNK_SIZE

    def whole(self) -> bytes | None:
        """The framed block as one body, when it is ``one_chunk``: one write with a length
        instead of a chunked stream of three."""
        data = self._first
        if not self.one_chunk:
            return None
        crc = checksum.crc(data)
        self.size, self.crc = len(data), crc
        return b"".join((wire.FRAME.pack(len(data), crc), data, wire.FRAME.pack(0, crc)))

    async def frames(self) -> AsyncIterator[bytes]:
        data, carry = self._first[: wire.CHUNK_SIZE], self._first[wire.CHUNK_SIZE :]
        while data:
            self.last_progress = time.monotonic()
            crc = checksum.crc(data)
            self.crc = checksum.crc(data, self.crc)
            self.size += len(data)
            yield wire.FRAME.pack(len(data), crc)
            yield data
            want = min(wire.CHUNK_SIZE, self._limit - self.size) - len(carry)
            data = carry + (await _read_full(self._read, want) if want > 0 else b"")
            carry = b""
        yield wire.FRAME.pack(0, self.crc)


def first_read(block_size: int) -> int:
    """How much to read for a block's ``BlockSource``: a chunk, and one byte more to learn
    whether the chunk is the whole block."""
    return min(wire.CHUNK_SIZE + 1, block_size)


async def _read_full(read: Reader, n: int) -> bytes:
    """Exactly *n* bytes unless the source ends first: frames must fill whole chunks."""
    data = await read(n)
    if len(data) in (0, n):
        return data
    parts = [data]
    got = len(data)
    while got < n:
        more = await read(n - got)
        if not more:
            break
        parts.append(more)
        got += len(more)
    return b"".join(parts)


def _timeout(stall_timeout: float) -> aiohttp.ClientTimeout:
    import aiohttp

    return aiohttp.ClientTimeout(total=None, connect=stall_timeout, sock_read=stall_timeout)


async def put_block(
    session: aiohttp.ClientSession,
    grant: wire.BlockGrant,
    source: BlockSource,
    stall_timeout: float = STALL_TIMEOUT,
    links: rpc.Links | Puts | None = None,
) -> wire.StoredBlock:
    """Send one block to its nodes (``fans_out``: to all at once, else down their pipeline);
    the answer lists the nodes that made it durable.

    A first node that takes no bytes for *stall_timeout* seconds (a frozen process, a dead
    link) fails the attempt with ``Timeout``, so the block goes to another pipeline instead of
    hanging the write: TCP alone would wait forever on a full send window."""
    import asyncio  # here, not above: a command that moves no file data needs no event loop

    if fans_out(source, links):
        assert links is not None
        return await _fan_out(links, grant, source)
    head = grant.targets[0]
    url = f"{head.url}{wire.API}/blocks/{grant.block_id}"
    headers = {wire.H_BLOCK_TOKEN: grant.token, "Content-Type": "application/octet-stream"}
    if len(grant.targets) > 1:  # the nodes forward to the targets the token names
        headers[wire.H_PIPELINE] = "1"
    timeout = _timeout(stall_timeout)
    body = source.whole()
    data = source.frames() if body is None else body

    async def send() -> wire.StoredBlock:
        async with session.put(url, data=data, headers=headers, timeout=timeout) as resp:
            await rpc.raise_for_error(resp)
            return wire.decode(await resp.read(), wire.StoredBlock)

    task = asyncio.ensure_future(send())
    try:
        while True:
            done, _ = await asyncio.wait({task}, timeout=stall_timeout / 4)
            if done:
                stored = task.result()
                break
            if time.monotonic() - source.last_progress > stall_timeout:
                raise Timeout(f"data node {head.id} took no data for {stall_timeout:.0f}s")
    except PydfsError:
        raise
    except Exception as exc:
        raise rpc.translate(exc, head.url) from exc
    finally:
        if not task.done():
            task.cancel()
            await asyncio.wait({task})
    return _acknowledged(head, grant.block_id, source, stored)


def fans_out(source: BlockSource, links: rpc.Links | Puts | None) -> bool:
    """Does the block go to all its nodes at once (``_fan_out``), not down a pipeline?"""
    return links is not None and source.one_chunk


async def _fan_out(
    links: rpc.Links | Puts, grant: wire.BlockGrant, source: BlockSource
) -> wire.StoredBlock:
    """A block of one body goes to every target at once, as Swift's proxy sends an object:
    a pipeline would add a hop each way, and both nodes' fsyncs overlap (often into one journal
    commit); ``client.puts`` sends those going to one node meanwhile together. It counts as
    stored on the nodes that made it durable and acknowledged the bytes sent, as a pipeline
    drops a node that fails; if none did, the attempt fails with the first node's error (and
    ``write_blocks`` avoids all of them)."""
    import asyncio

    headers = {wire.H_BLOCK_TOKEN: grant.token}
    route, body = f"/blocks/{grant.block_id}", source.whole()
    assert body is not None  # fans_out
    answers = await asyncio.gather(
        *(links.request(t.url, "PUT", route, body, headers) for t in grant.targets),
        return_exceptions=True,
    )
    nodes: list[str] = []
    errors: list[Exception] = []
    for target, answer in zip(grant.targets, answers, strict=True):
        try:
            if isinstance(answer, BaseException):
                raise answer
            stored = wire.decode(answer.body, wire.StoredBlock)
            stored = _acknowledged(target, grant.block_id, source, stored)
        except (PydfsError, OSError) as exc:
            log.warning("block %s not stored on %s: %s", grant.block_id, target.id, exc)
            errors.append(exc)
        else:
            nodes += stored.nodes
    if not nodes:
        raise errors[0]
    return wire.StoredBlock(grant.block_id, source.size, source.crc, nodes)


def _acknowledged(
    head: wire.NodeRef, block_id: str, source: BlockSource, stored: wire.StoredBlock
) -> wire.StoredBlock:
    if stored.size != source.size or stored.crc != source.crc or not stored.nodes:
        raise ChecksumMismatch(f"data node {head.id} acknowledged different bytes")
    if stored.block_id != block_id:
        raise ProtocolError(f"data node {head.id} acknowledged another block")
    return stored


async def write_blocks(
    session: aiohttp.ClientSession,
    read: Reader,
    grant: wire.UploadGrant,
    allocate: Callable[[list[str]], Awaitable[wire.BlockGrant]],
    rewind: Callable[[int], Awaitable[bool]],
    stall_timeout: float = STALL_TIMEOUT,
    links: rpc.Links | Puts | None = None,
    tokens: dict[str, str] | None = None,
) -> list[wire.StoredBlock]:
    """Write the whole source as blocks; returns what to commit, and puts the write token each
    block went with into *tokens*, if given (it reads the block back).

    A block whose first node fails (or all of whose nodes do, when it fans out) is sent again
    to fresh nodes that avoid the failed ones, up to four tries: a block of one chunk as it is,
    a larger one if the source can be rewound (a local file can; a pipe cannot).

    A block token lasts only so long, and the grant's may have expired before the source gave
    its first bytes (a file opened and written later, a slow pipe) or while a batch lease
    waited to be used: the first block then gets a fresh grant if the source was slow
    (``STALE_GRANT``), and any block refused for its token is sent again under a fresh one.
    """
    stored: list[wire.StoredBlock] = []
    block: wire.BlockGrant | None = grant.block
    failed: list[str] = []
    offset = 0
    granted = time.monotonic()
    while True:
        first = await _read_full(read, first_read(grant.block_size))
        if not first:
            return stored
        if block is not None and time.monotonic() - granted > STALE_GRANT:
            block = None  # not used: the name node trashes it with the upload's leftovers
        refreshed = False
        why: PydfsError | None = None  # this block's last node failure
        for attempt in range(4):
            if block is None:
                try:
                    block = await allocate(failed)
                except InsufficientNodes:
                    if why is None:
                        raise
                    raise why from None  # no node left: why the last one failed says more
            source = BlockSource(read, first, grant.block_size)
            try:
                result = await put_block(session, block, source, stall_timeout, links)
            except Unauthenticated as exc:
                # Refused for its token, by every node it went to: no node is to blame.
                if refreshed or attempt == 3:
                    raise
                refreshed, block = True, None
                refused: PydfsError = exc  # why this try failed
            except (
                Unavailable,
                NoSpace,
                InternalError,
                ChecksumMismatch,
                ProtocolError,
                NotFound,
            ) as exc:
                # The block is nowhere acknowledged: other nodes may take it (a node filled
                # since it last told the name node its room, a failing disk, a defect).
                gone = block.targets if fans_out(source, links) else block.targets[:1]
                failed += [t.id for t in gone]
                block, why, refused = None, exc, exc
                names = ", ".join(t.id for t in gone)
                log.warning("block write to %s failed (%s); retrying", names, exc)
                if attempt == 3:
                    raise
            else:
                failed += [t.id for t in block.targets if t.id not in result.nodes]
                stored.append(result)
                if tokens is not None:
                    tokens[result.block_id] = block.token
                offset += result.size
                block = None
                break
            # Another try: a block of one chunk is all in ``first``; a larger one is read again.
            if not source.one_chunk:
                if not await rewind(offset):
                    raise refused
                first = await _read_full(read, first_read(grant.block_size))
        if stored[-1].size < grant.block_size:
            return stored


async def read_block(
    session: aiohttp.ClientSession,
    block: wire.BlockInfo,
    offset: int,
    end: int,
    on_corrupt: Callable[[str, str], Awaitable[None]] | None = None,
    stall_timeout: float = STALL_TIMEOUT,
    links: rpc.Links | None = None,
) -> AsyncIterator[bytes]:
    """Verified bytes ``[offset, end)`` of *block*, failing over between its replicas;
    ``on_corrupt(block, node)`` hears of every replica that sent a bad chunk, another block's
    bytes, or that its node does not have."""
    problems: list[str] = []
    pos = offset
    for node in block.nodes:
        try:
            while pos < end:
                if links is not None and end - pos <= wire.SMALL_READ:
                    ranges = _read_small(links, node, block, pos, end)
                else:
                    ranges = _read_range(session, node, block, pos, end, stall_timeout)
                async for data, new_pos in ranges:
                    pos = new_pos
                    yield data
            return
        except PydfsError as exc:
            problems.append(f"{node.id}: {exc}")
            log.warning("reading block %s from %s failed: %s", block.id, node.id, exc)
            if isinstance(exc, (ChecksumMismatch, NotFound)) and on_corrupt is not None:
                await on_corrupt(block.id, node.id)
    if not block.nodes:
        problems.append("no replica is known")
    raise Unavailable(f"no replica of block {block.id} could be read ({'; '.join(problems)})")


async def _read_range(
    session: aiohttp.ClientSession,
    node: wire.NodeRef,
    block: wire.BlockInfo,
    pos: int,
    end: int,
    stall_timeout: float,
) -> AsyncIterator[tuple[bytes, int]]:
    url = f"{node.url}{wire.API}/blocks/{block.id}"
    params = {"offset": str(pos), "length": str(end - pos)}
    headers = {wire.H_BLOCK_TOKEN: block.token} if block.token else {}
    timeout = _timeout(stall_timeout)
    try:
        async with session.get(url, params=params, headers=headers, timeout=timeout) as resp:
            await rpc.raise_for_error(resp)
            read = resp.content.readexactly
            async for piece in _pieces(node, block, resp.headers, read, pos, end):
                yield piece
    except PydfsError:
        raise
    except Exception as exc:
        raise rpc.translate(exc, node.url) from exc


async def _read_small(
    links: rpc.Links, node: wire.NodeRef, block: wire.BlockInfo, pos: int, end: int
) -> AsyncIterator[tuple[bytes, int]]:
    """``_read_range`` for a range of at most a chunk: one answer, read whole."""
    params = f"offset={pos}&length={end - pos}"
    headers = {wire.H_BLOCK_TOKEN: block.token} if block.token else None
    answer = await links.request(node.url, "GET", f"/blocks/{block.id}?{params}", None, headers)
    read = wire.body_reader(answer.body)
    async for piece in _pieces(node, block, answer.headers, read, pos, end):
        yield piece


async def _pieces(
    node: wire.NodeRef,
    block: wire.BlockInfo,
    headers: Mapping[str, str],
    readexactly: Callable[[int], Awaitable[bytes]],
    pos: int,
    end: int,
) -> AsyncIterator[tuple[bytes, int]]:
    """The verified parts of a read answer's chunks within ``[pos, end)``, each with the
    position after it."""
    try:
        start = int(headers[wire.H_OFFSET.lower()])
        chunk = int(headers[wire.H_CHUNK_SIZE.lower()])
        size = int(headers[wire.H_BLOCK_SIZE.lower()])
        block_crc = int(headers[wire.H_BLOCK_CRC.lower()])
        crcs = checksum.unpack_crcs(headers[wire.H_CHUNK_CRCS.lower()])
    except (KeyError, ValueError):
        raise ProtocolError(f"{node.id} sent a block without its checksums") from None
    if size != block.size:
        raise ChecksumMismatch(f"replica on {node.id} has {size} bytes, not {block.size}")
    if block_crc != block.crc:  # the replica's trailer names the block the name node recorded
        raise ChecksumMismatch(f"replica on {node.id} is not the block the name node recorded")
    if chunk <= 0:
        raise ProtocolError(f"{node.id} sent a chunk size of {chunk}")
    # Where its chunks start is the node's word too: bytes placed from anywhere after *pos*
    # would come out at the wrong offset, and an answer that covers none of the range would
    # have the reader ask again for ever.
    if start % chunk or not 0 <= start <= pos:
        raise ProtocolError(f"{node.id} answered from byte {start}, not the chunk holding {pos}")
    # The chunk CRCs are the replica's own table: an answer from the block's first byte to its
    # last is bound to the block as a whole too, before its last piece goes out (a table
    # rewritten with the bytes, under a trailer that still names the block, passes chunk by
    # chunk).
    whole = 0 if start == 0 else None
    p = start
    for expected in crcs:
        n = min(chunk, block.size - p)
        data = await readexactly(n)
        if checksum.crc(data) != expected:
            raise ChecksumMismatch(f"chunk at {p} of block {block.id} on {node.id}")
        if whole is not None:
            whole = checksum.crc(data, whole)
            if p + n == block.size and whole != block.crc:
                raise ChecksumMismatch(f"block {block.id} on {node.id}: its chunks are other bytes")
        lo, hi = max(pos, p) - p, min(end, p + n) - p
        p += n
        if hi > lo:
            yield (data if (lo, hi) == (0, n) else data[lo:hi]), min(p, end)
        if p >= end:
            return
    if p <= pos:
        raise ProtocolError(f"{node.id} sent none of the range of block {block.id} asked for")

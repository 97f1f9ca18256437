"""A data node's blocks and the one pipeline every block request goes through.

``Blocks`` is the domain: block tokens, a block's arrival (framed, verified, made durable,
forwarded down a write pipeline), and ranges of stored blocks. ``Pipeline`` is each request kind
carried out once (``pydfs.calls``): a PUT or GET is admitted on its head by its block token,
before any of its body is read; a PUT of one chunk (``wire.WHOLE_BLOCK``) is read whole, a
larger one streams; a GET of the chunks covering a small range (``wire.SMALL_READ``) is read in
one go, a larger one is answered with the open file (sendfile, in aiohttp's routes). aiohttp's
routes (``datanode.app``) and the fast path (``datanode.fastpath``) are adapters over it.

Blocks are deleted only on the name node's orders, which come back with heartbeat replies. A
write goes only to the data nodes its token names (``pydfs.tokens``): down a pipeline, each node
forwards to the next of them, never to an address the client chose.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import logging
import os
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from typing import TYPE_CHECKING, BinaryIO

import aiohttp

from pydfs import checksum, rpc, tokens, wire
from pydfs.calls import Answer, FileRange, Request
from pydfs.datanode import census
from pydfs.datanode.blockstore import BlockWriter, check_block_id
from pydfs.errors import (
    ChecksumMismatch,
    InvalidArgument,
    NoSpace,
    NotFound,
    ProtocolError,
    PydfsError,
    Unavailable,
)
from pydfs.log import HEADER as ID_HEADER
from pydfs.log import REQUEST_ID

if TYPE_CHECKING:
    from pydfs.datanode import DataNode

log = logging.getLogger("pydfs.datanode")

ROUTE = f"{wire.API}/blocks/{{id}}"
BATCH_ROUTE = f"{wire.API}/blocks"
# method, route, endpoint
ENDPOINTS = [("PUT", ROUTE, "put"), ("GET", ROUTE, "get"), ("POST", BATCH_ROUTE, "put_many")]
READ_AT_ONCE = 2 * wire.SMALL_READ  # the chunks covering a small range: one pread, no sendfile
_QUEUE_DEPTH = 32  # frames buffered towards the next node of a pipeline (2 MiB at 64 KiB)
_TOKEN = wire.H_BLOCK_TOKEN.lower()
_PIPELINE = wire.H_PIPELINE.lower()


class Blocks:
    """A data node's blocks as its API sees them: who may write or read one, receiving a block
    (and passing it down a write pipeline), and reading a range of one."""

    def __init__(self, dn: DataNode) -> None:
        self.dn = dn
        self.traffic = census.Traffic()

    def admit(
        self, block_id: str, token: str | None, modes: str
    ) -> tuple[tokens.Mode, list[tokens.Target]]:
        check_block_id(block_id)
        return tokens.check_block_token(
            self.dn.secret, token, block_id, modes, self.dn.store.node_id
        )

    async def put(
        self,
        block_id: str,
        token: str,
        admitted: tuple[tokens.Mode, list[tokens.Target]],
        pipeline: bool,
        expected: int | None,
        read: Callable[[int], Awaitable[bytes]],
    ) -> wire.StoredBlock:
        """Receive a block's frames through *read* (and, with *pipeline*, forward them to the
        next node its token names), make it durable. *admitted*: what ``admit`` found in the
        token, before the body was read.

        A client's write (token mode ``w``) of a block this node holds, or deleted lately, is
        refused: a committed block never changes. A copy the name node ordered (``c``)
        replaces whatever this node holds under the id, which the name node did not count."""
        dn = self.dn
        mode, targets = admitted
        copy = mode == "c"
        next_url = None
        if pipeline and not copy:
            ids = [node for node, _ in targets]
            after = ids.index(dn.store.node_id) + 1
            next_url = targets[after][1] if after < len(targets) else None
        # Refuses (no room, exists, being written) before forwarding.
        with self._disk(block_id):
            writer = dn.store.writer(block_id, expected, replace=copy)

        def write_chunk(data: bytes, crc: int) -> None:
            with self._disk(block_id):
                writer.write_chunk(data, crc)

        forward: Forwarder | None = None
        try:
            # Writes that arrived together all open their writers before any commits: a commit
            # fsyncs on the loop only when it is alone (BlockWriter.commit).
            await asyncio.sleep(0)
            if next_url is not None:
                forward = Forwarder(dn.session, next_url, block_id, token, dn.config.stall_timeout)
            block_crc = await _receive(read, write_chunk, forward)
            with self._disk(block_id):
                await writer.commit(block_crc)
            self.traffic.blocks_received += 1
            self.traffic.bytes_written += writer.size
            arrived = wire.Received(block_id, writer.size, block_crc, "c" if copy else "w")
            dn.heartbeats.received(arrived)
            if copy:
                dn.heartbeats.wake()  # the name node is waiting for this copy to finish
        except BaseException as exc:
            if isinstance(exc, ChecksumMismatch):
                self.traffic.arrival_failures += 1
            writer.abort()
            if forward is not None:
                forward.cancel()
            raise
        nodes = [dn.store.node_id]
        if forward is not None:
            try:
                stored = await forward.result()
            except PydfsError as exc:
                log.warning("pipeline for block %s lost %s: %s", block_id, next_url, exc)
            else:
                if stored.crc == block_crc:
                    nodes += stored.nodes
        return wire.StoredBlock(block_id, writer.size, block_crc, nodes)

    async def put_many(self, body: bytes, first: str) -> wire.BlockBatchReply:
        """Store the blocks of a batch (``wire.pack_blocks``), each as a client's PUT of it
        alone would (its own write token, its frames checked), and make them durable together
        (``BlockStore.commit_many``). A block refused (its token, a bad frame, held already)
        or that could not be made durable is answered so on its own, and the others go on.
        *first*: the block whose token admitted the request on its head, which must lead."""
        dn = self.dn
        blocks = wire.unpack_blocks(body)
        if blocks[0][0].block_id != first:
            raise ProtocolError("a block batch must begin with the block its head names")
        writers: list[tuple[int, BlockWriter, int]] = []  # (place, writer, block CRC)
        results: list[wire.BatchedResult] = []
        try:
            for place, (item, framed) in enumerate(blocks):
                writer = None
                try:
                    self.admit(item.block_id, item.token, "w")
                    writer = dn.store.writer(item.block_id, len(framed))
                    crc = await _receive(wire.body_reader(framed), writer.write_chunk, None)
                    writer.seal(crc)
                except Exception as exc:
                    if writer is not None:
                        writer.abort()
                    results.append(wire.BatchedResult(error=self._refusal(item.block_id, exc)))
                    continue
                writers.append((place, writer, crc))
                results.append(wire.BatchedResult())
            failed = await dn.store.commit_many([writer for _, writer, _ in writers])
        except BaseException:
            for _, writer, _ in writers:
                writer.abort()
            raise
        for place, writer, crc in writers:
            if writer in failed:
                writer.abort()
                error = self._refusal(writer.block_id, failed[writer])
                results[place] = wire.BatchedResult(error=error)
                continue
            self.traffic.blocks_received += 1
            self.traffic.bytes_written += writer.size
            dn.heartbeats.received(wire.Received(writer.block_id, writer.size, crc, "w"))
            stored = wire.StoredBlock(writer.block_id, writer.size, crc, [dn.store.node_id])
            results[place] = wire.BatchedResult(stored=stored)
        return wire.BlockBatchReply(results)

    def _refusal(self, block_id: str, exc: Exception) -> wire.ErrorBody:
        """Why one block of a batch was not stored, as its writer is told."""
        if isinstance(exc, ChecksumMismatch):
            self.traffic.arrival_failures += 1
        if not isinstance(exc, PydfsError):
            exc = self._failed(block_id, exc)
        return wire.ErrorBody(exc.code, exc.message)

    @contextlib.contextmanager
    def _disk(self, block_id: str) -> Iterator[None]:
        """Around the store's work on a block: what its disk refuses is told as ``_failed``."""
        try:
            yield
        except PydfsError:
            raise
        except OSError as exc:
            raise self._failed(block_id, exc) from exc

    def _failed(self, block_id: str, exc: Exception) -> PydfsError:
        """What a writer is told of a block this node could not store: ``NoSpace`` for a
        full disk or quota, else ``Unavailable``, so that it sends the block to other nodes,
        with no more of the error than a 5xx would tell (the log has it)."""
        if isinstance(exc, OSError) and exc.errno in (errno.ENOSPC, errno.EDQUOT):
            log.warning("block %s not stored: %s", block_id, exc)
            return NoSpace(f"data node {self.dn.store.node_id}: disk full")
        heartbeats = self.dn.heartbeats
        # The traceback once, as the disk starts refusing: copies ordered to it meanwhile and
        # refused again need only a line each.
        log.error("block %s not stored: %s", block_id, exc, exc_info=not heartbeats.write_failure())
        if isinstance(exc, OSError):  # the name nodes spare it new blocks for a while
            heartbeats.refused(exc.strerror or type(exc).__name__)
        return Unavailable(f"data node {self.dn.store.node_id} could not store the block")

    def open_range(
        self, block_id: str, offset: str | None, length: str | None
    ) -> tuple[BinaryIO, int, int, dict[str, str]]:
        """The open block file, where the answer starts, how many bytes it has and its headers:
        the whole chunks that cover the range asked for (at most ``MAX_READ_CHUNKS``)."""
        # A replica whose trailer does not validate raises ChecksumMismatch: the reader reports
        # it, and the name node has this node verify (and so quarantine) it.
        f, sums = self.dn.store.open_block(block_id)
        try:
            try:
                first_byte = int("0" if offset is None else offset)
                size = int(length) if length is not None else sums.size
            except ValueError:
                raise InvalidArgument("offset and length must be integers") from None
            if first_byte < 0 or size < 0 or first_byte > sums.size:
                raise InvalidArgument(f"range outside the block (size {sums.size})")
        except BaseException:
            f.close()
            raise
        first, chunks = sums.chunk_range(first_byte, size)
        last = first + min(chunks, wire.MAX_READ_CHUNKS)
        start = first * sums.chunk_size
        count = max(0, min(sums.size, last * sums.chunk_size) - start)
        headers = {
            wire.H_BLOCK_SIZE: str(sums.size),
            wire.H_BLOCK_CRC: str(sums.crc),
            wire.H_CHUNK_SIZE: str(sums.chunk_size),
            wire.H_OFFSET: str(start),
            wire.H_CHUNK_CRCS: checksum.pack_crcs(sums.chunk_crcs[first:last]),
        }
        return f, start, count, headers

    def read(self, block_id: str, f: BinaryIO, start: int, count: int) -> bytes:
        """A small range in one read: less than a sendfile, whose set-up (and the separate
        send of the headers) outweighs the copy it saves."""
        body = os.pread(f.fileno(), count, start)
        if len(body) != count:
            raise NotFound(f"block {block_id} shrank while being read")
        self.counted(count)
        return body

    def counted(self, count: int) -> None:
        """A read of *count* bytes was served."""
        self.traffic.block_reads += 1
        self.traffic.bytes_read += count


class Pipeline:
    """Block PUT and GET, whichever server read them (``calls.Pipeline``)."""

    def __init__(self, blocks: Blocks) -> None:
        self.blocks = blocks

    def admit(self, request: Request) -> None:
        if request.endpoint == "put_many":  # by the token of its first block; each its own
            token = request.headers.get(_TOKEN)
            request.grant = self.blocks.admit(request.query.get("block", ""), token, "w")
            return
        # A write token also reads back the block it wrote: its bearer sent those bytes.
        modes = "wc" if request.endpoint == "put" else "rw"
        token = request.headers.get(_TOKEN)
        request.grant = self.blocks.admit(request.match["id"], token, modes)

    def limit(self, request: Request) -> int | None:
        if request.endpoint == "put_many":
            return wire.MAX_BATCH_BODY
        if request.endpoint == "put":
            small = request.length is not None and request.length <= wire.WHOLE_BLOCK
            return wire.WHOLE_BLOCK if small else None
        return None  # a GET's body, if any, is not read

    def serve(self, request: Request) -> Answer | Awaitable[Answer]:
        if request.endpoint == "put_many":
            return self._put_many(request)
        return self._put(request) if request.endpoint == "put" else self._get(request)

    async def _put_many(self, request: Request) -> Answer:
        reply = await self.blocks.put_many(request.body, request.query["block"])
        return Answer(200, wire.encode(reply))

    async def _put(self, request: Request) -> Answer:
        token = request.headers[_TOKEN]  # admitted: there is one
        read = request.read or wire.body_reader(request.body)
        pipeline = _PIPELINE in request.headers
        stored = await self.blocks.put(
            request.match["id"], token, request.grant, pipeline, request.length, read
        )
        return Answer(200, wire.encode(stored))

    def _get(self, request: Request) -> Answer:
        blocks, block_id, query = self.blocks, request.match["id"], request.query
        f, start, count, headers = blocks.open_range(
            block_id, query.get("offset"), query.get("length")
        )
        if count > READ_AT_ONCE:
            sent = FileRange(f, start, count, lambda: blocks.counted(count))
            return Answer(200, b"", _OCTETS, headers, sent)
        with f:
            return Answer(200, blocks.read(block_id, f, start, count), _OCTETS, headers)


_OCTETS = "application/octet-stream"


async def _receive(
    readexactly: Callable[[int], Awaitable[bytes]],
    write_chunk: Callable[[bytes, int], None],
    forward: Forwarder | None,
) -> int:
    """Read frames until the closing one; returns the whole-block CRC the writer declared."""
    while True:
        try:
            header = await readexactly(wire.FRAME.size)
        except asyncio.IncompleteReadError:
            raise ProtocolError("block stream ended before its closing frame") from None
        length, crc = wire.FRAME.unpack(header)
        if length == 0:
            if forward is not None:
                await forward.send(header)
                await forward.send(None)
            return int(crc)
        if length > wire.CHUNK_SIZE:
            raise ProtocolError("frame longer than a chunk")
        try:
            data = await readexactly(length)
        except asyncio.IncompleteReadError:
            raise ProtocolError("block stream ended inside a frame") from None
        write_chunk(data, crc)
        if forward is not None:
            await forward.send(header + data)


class Forwarder:
    """Streams the frames a data node receives on to the next node of the write pipeline.

    A failing downstream never fails the upstream write: the block is then acknowledged with
    fewer replicas, and the name node's view of its replicas says so.
    """

    def __init__(
        self,
        session: aiohttp.ClientSession,
        next_url: str,
        block_id: str,
        token: str,
        stall_timeout: float,
    ) -> None:
        self._token = token
        self._queue: asyncio.Queue[bytes | None] = asyncio.Queue(_QUEUE_DEPTH)
        self._url = f"{next_url.rstrip('/')}{wire.API}/blocks/{block_id}"
        self._next = next_url
        self._stall = stall_timeout
        self._task: asyncio.Task[wire.StoredBlock] = asyncio.ensure_future(
            self._run(session, next_url)
        )

    async def _body(self) -> AsyncIterator[bytes]:
        while (item := await self._queue.get()) is not None:
            yield item

    async def _run(self, session: aiohttp.ClientSession, url: str) -> wire.StoredBlock:
        headers = {
            wire.H_PIPELINE: "1",  # the next node forwards to the one after it, if any
            ID_HEADER: REQUEST_ID.get() or "-",
            wire.H_BLOCK_TOKEN: self._token,
            "Content-Type": "application/octet-stream",
        }
        timeout = aiohttp.ClientTimeout(total=None, connect=self._stall, sock_read=self._stall)
        try:
            async with session.put(
                self._url, data=self._body(), headers=headers, timeout=timeout
            ) as resp:
                await rpc.raise_for_error(resp)
                return wire.decode(await resp.read(), wire.StoredBlock)
        except Exception as exc:
            raise rpc.translate(exc, url) from exc

    async def send(self, item: bytes | None) -> None:
        if self._task.done():
            return
        if not self._queue.full():
            self._queue.put_nowait(item)
            return
        put = asyncio.ensure_future(self._queue.put(item))
        await asyncio.wait(
            {put, self._task}, timeout=self._stall, return_when=asyncio.FIRST_COMPLETED
        )
        if not put.done():
            put.cancel()
            if not self._task.done():  # the next node took nothing for too long: drop it
                log.warning("pipeline to %s stalled for %.0fs: dropped", self._next, self._stall)
                self._task.cancel()

    def cancel(self) -> None:
        if not self._task.done():
            self._task.cancel()
        elif not self._task.cancelled():
            self._task.exception()  # retrieved: the upstream failure is what gets reported

    async def result(self) -> wire.StoredBlock:
        try:
            return await self._task
        except asyncio.CancelledError:
            if self._task.cancelled():
                raise Unavailable(f"{self._next} stalled") from None
            raise

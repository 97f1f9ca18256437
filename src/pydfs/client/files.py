"""DFS files as Python file objects, in constant memory.

``AsyncReader`` serves reads from a small read-ahead buffer and fetches what is missing with
ranged block reads; it reads the version of the file that was current when it was opened.
``AsyncWriter`` feeds a bounded queue that an upload task drains block by block; the file
appears, whole, only when the writer is closed, and an aborted writer leaves nothing behind.
``Reader`` and ``Writer`` are their blocking ``io`` faces for ``Client``: each method runs the
async one on the client's event loop.
"""

from __future__ import annotations

import asyncio
import io
from collections.abc import Awaitable, Coroutine, Generator
from types import TracebackType
from typing import TYPE_CHECKING, Any, Generic, Protocol, TypeVar

from pydfs import wire
from pydfs.errors import IsADirectory

if TYPE_CHECKING:
    from _typeshed import ReadableBuffer, WriteableBuffer

    from pydfs.client.transfer import Progress, Transfer

READ_AHEAD = 1024 * 1024
"""How much a small read fetches at once; reads at least this large bypass the buffer."""

WRITE_QUEUE = 16
"""Pieces (of at most ``wire.CHUNK_SIZE`` bytes) a writer may run ahead of its upload."""

T = TypeVar("T")


class _AsyncFile(Protocol):
    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object, /
    ) -> None: ...


F = TypeVar("F", bound=_AsyncFile)


class Opening(Generic[F]):
    """What ``AsyncClient.open`` returns: await it for the file, or use it in ``async with``
    (the file is then closed, or for a writer aborted on an exception, at the end)."""

    def __init__(self, coro: Coroutine[Any, Any, F]) -> None:
        self._coro = coro
        self._file: F | None = None

    def __await__(self) -> Generator[Any, None, F]:
        return self._coro.__await__()

    async def __aenter__(self) -> F:
        self._file = await self._coro
        return self._file

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: object
    ) -> None:
        assert self._file is not None
        await self._file.__aexit__(exc_type, exc, tb)


class AsyncReader:
    """A seekable reader of one DFS file (``AsyncClient.open(path, "rb")``)."""

    def __init__(
        self, transfer: Transfer, status: wire.FileStatus, buffer_size: int = READ_AHEAD
    ) -> None:
        self._transfer = transfer
        self.status = status
        self.buffer_size = max(0, buffer_size)  # 0: no read-ahead
        self.closed = False
        self._pos = 0
        self._buf = b""
        self._buf_start = 0

    @classmethod
    async def open(
        cls, transfer: Transfer, path: str, *, buffer_size: int = READ_AHEAD
    ) -> AsyncReader:
        status = await transfer.status(path)
        if status.type == "dir":
            raise IsADirectory(f"{path} is a directory")
        return cls(transfer, status, buffer_size)

    @property
    def name(self) -> str:
        return self.status.path

    @property
    def size(self) -> int:
        return self.status.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def tell(self) -> int:
        self._check_open()
        return self._pos

    def seek(self, offset: int, whence: int = io.SEEK_SET) -> int:
        self._check_open()
        if whence == io.SEEK_SET:
            pos = offset
        elif whence == io.SEEK_CUR:
            pos = self._pos + offset
        elif whence == io.SEEK_END:
            pos = self.size + offset
        else:
            raise ValueError(f"invalid whence ({whence}, should be 0, 1 or 2)")
        if pos < 0:
            raise ValueError(f"negative seek position {pos}")
        self._pos = pos
        return pos

    async def read(self, size: int | None = -1) -> bytes:
        """Up to *size* bytes from the current position (all the rest if *size* < 0)."""
        self._check_open()
        left = max(0, self.size - self._pos)
        size = left if size is None or size < 0 else min(size, left)
        if size == 0:
            return b""
        head = self._take(size)
        size -= len(head)
        if size == 0:
            return head
        if size >= self.buffer_size:  # a large read: straight through, no copy kept
            tail = await self._fetch(self._pos, size)
            self._pos += len(tail)
        else:
            await self._fill()
            tail = self._take(size)
        return head + tail if head else tail

    read1 = read

    async def readinto(self, buffer: WriteableBuffer) -> int:
        view = memoryview(buffer).cast("B")
        data = await self.read(len(view))
        view[: len(data)] = data
        return len(data)

    async def readline(self, size: int | None = -1) -> bytes:
        """The next line, newline included (at most *size* bytes)."""
        size = -1 if size is None else size
        parts: list[bytes] = []
        got = 0
        while size < 0 or got < size:
            part, done = self.take_line(size - got if size >= 0 else -1)
            parts.append(part)
            got += len(part)
            if done:
                break
            await self._fill()
        return b"".join(parts)

    def take_buffered(self, size: int) -> bytes | None:
        """The next *size* bytes (fewer at the end of the file) if the read-ahead buffer holds
        them, else None: lets a blocking caller skip a trip to the event loop."""
        self._check_open()
        size = min(size, max(0, self.size - self._pos))
        i = self._pos - self._buf_start
        if size and not (i >= 0 and i + size <= len(self._buf)):
            return None
        return self._take(size)

    def take_line(self, limit: int = -1) -> tuple[bytes, bool]:
        """From the buffer only: bytes up to the next newline (at most *limit*), and whether
        that ends the line (newline found, *limit* reached or end of file)."""
        self._check_open()
        if self._pos >= self.size or limit == 0:
            return b"", True
        i = self._pos - self._buf_start
        if not 0 <= i < len(self._buf):
            return b"", False
        stop = len(self._buf) if limit < 0 else min(len(self._buf), i + limit)
        newline = self._buf.find(b"\n", i, stop)
        data = self._take((newline + 1 if newline >= 0 else stop) - i)
        ended = newline >= 0 or len(data) == limit or self._pos >= self.size
        return data, ended

    async def read_at(self, offset: int, size: int) -> bytes:
        """Up to *size* bytes at *offset*, leaving the position and the buffer alone."""
        self._check_open()
        return await self._fetch(offset, size)

    async def peek(self, size: int = 0) -> bytes:
        """Buffered bytes from the current position, without moving it (at least one byte
        unless at the end of the file)."""
        self._check_open()
        i = self._pos - self._buf_start
        if not 0 <= i < len(self._buf):
            await self._fill()
            i = 0
        return self._buf[i:]

    async def close(self) -> None:
        self.closed = True
        self._buf = b""

    async def __aenter__(self) -> AsyncReader:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def _check_open(self) -> None:
        if self.closed:
            raise ValueError("I/O operation on closed file")

    def _take(self, size: int) -> bytes:
        i = self._pos - self._buf_start
        if not 0 <= i < len(self._buf):
            return b""
        data = self._buf[i : i + size]
        self._pos += len(data)
        return data

    async def _fill(self) -> None:
        self._buf = await self._fetch(self._pos, max(1, self.buffer_size))
        self._buf_start = self._pos

    async def _fetch(self, offset: int, length: int) -> bytes:
        if offset >= self.size or length <= 0:
            return b""
        parts = [d async for d in self._transfer.read(self.status, offset, length)]
        return b"".join(parts)


class _QueueSource:
    """The ``read(n)`` end of a bounded queue: the upload pulls from it as the writer pushes."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[memoryview | None] = asyncio.Queue(WRITE_QUEUE)
        self._pending = memoryview(b"")
        self._eof = False

    async def read(self, n: int, /) -> bytes:
        while not self._pending:
            if self._eof:
                return b""
            item = await self.queue.get()
            if item is None:
                self._eof = True
                return b""
            self._pending = item
        data, self._pending = self._pending[:n], self._pending[n:]
        return bytes(data)


class AsyncWriter:
    """Writes one DFS file as a stream (``AsyncClient.open(path, "wb")``): ``close()`` commits
    it atomically, ``abort()`` (or an exception out of ``async with``) drops it. Always do one
    of the two: a writer left open holds its upload until the lease expires."""

    def __init__(self, path: str) -> None:
        self.path = path
        self.closed = False
        self.status: wire.FileStatus | None = None
        """What the name node committed, once ``close()`` has returned."""
        self._source = _QueueSource()
        self._task: asyncio.Task[wire.FileStatus] | None = None

    @classmethod
    async def open(
        cls,
        transfer: Transfer,
        path: str,
        overwrite: bool,
        *,
        replication: int | None = None,
        block_size: int | None = None,
        progress: Progress | None = None,
    ) -> AsyncWriter:
        # Ask for the upload now, so that a missing parent or an existing file ("xb") is an
        # error of open() rather than of some later write.
        grant = await transfer.start(path, overwrite, replication, block_size)
        writer = cls(grant.path)
        upload = transfer.finish(grant, writer._source, progress)
        writer._task = asyncio.create_task(upload, name=f"pydfs-upload {grant.path}")
        writer._task.add_done_callback(writer._upload_ended)
        return writer

    @property
    def name(self) -> str:
        return self.path

    def writable(self) -> bool:
        return True

    async def write(self, data: ReadableBuffer) -> int:
        """Queue *data* for the upload; waits while the upload is behind by ``WRITE_QUEUE``
        pieces. Raises the upload's error if it has failed."""
        if self.closed:
            raise ValueError("I/O operation on closed file")
        view = memoryview(data).cast("B")
        if not isinstance(data, bytes):
            view = memoryview(view.tobytes())  # the caller may reuse its buffer
        self._raise_if_failed()
        for i in range(0, len(view), wire.CHUNK_SIZE):
            await self._source.queue.put(view[i : i + wire.CHUNK_SIZE])
            self._raise_if_failed()
        return len(view)

    async def close(self) -> None:
        """Finish the upload and commit the file; raises what made the upload fail."""
        if self.closed:
            return
        self.closed = True
        assert self._task is not None
        if not self._task.done():
            await self._source.queue.put(None)
        self.status = await self._task

    async def abort(self) -> None:
        """Drop the upload: the file (or its old content) stays as it was."""
        task, self.closed = self._task, True
        if task is None or task.done():
            return
        task.cancel()
        await asyncio.wait([task])  # its cleanup (DELETE of the upload) has run once it is done
        if not task.cancelled():
            task.exception()  # retrieved: it is not interesting after an abort

    async def __aenter__(self) -> AsyncWriter:
        return self

    async def __aexit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is None:
            await self.close()
        else:
            await self.abort()

    def _raise_if_failed(self) -> None:
        task = self._task
        if task is not None and task.done():
            self.closed = True
            exc = task.exception()
            if exc is not None:
                raise exc
            raise ValueError("I/O operation on closed file")

    def _upload_ended(self, task: asyncio.Task[wire.FileStatus]) -> None:
        # Failed (or aborted): unblock a write() waiting on the full queue; it then raises.
        while not self._source.queue.empty():
            self._source.queue.get_nowait()


# --- blocking faces -----------------------------------------------------------------------


def _run(loop: asyncio.AbstractEventLoop, aw: Awaitable[T]) -> T:
    async def wait() -> T:
        return await aw

    return asyncio.run_coroutine_threadsafe(wait(), loop).result()


class Reader(io.BufferedIOBase):
    """``Client.open(path, "rb")``: a blocking, seekable binary file over ``AsyncReader``."""

    def __init__(self, aio: AsyncReader, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.aio = aio
        self._loop = loop

    @property
    def name(self) -> str:
        return self.aio.name

    @property
    def size(self) -> int:
        return self.aio.size

    def readable(self) -> bool:
        return True

    def seekable(self) -> bool:
        return True

    def read(self, size: int | None = -1, /) -> bytes:
        if size is not None and size >= 0 and (data := self.aio.take_buffered(size)) is not None:
            return data
        return _run(self._loop, self.aio.read(size))

    def read1(self, size: int = -1, /) -> bytes:
        return self.read(size)

    def readline(self, size: int | None = -1, /) -> bytes:
        size = -1 if size is None else size
        parts: list[bytes] = []
        got = 0
        while size < 0 or got < size:
            part, done = self.aio.take_line(size - got if size >= 0 else -1)
            parts.append(part)
            got += len(part)
            if done or not _run(self._loop, self.aio.peek()):
                break
        return b"".join(parts)

    def readinto(self, buffer: WriteableBuffer, /) -> int:
        return _run(self._loop, self.aio.readinto(buffer))

    def readinto1(self, buffer: WriteableBuffer, /) -> int:
        return _run(self._loop, self.aio.readinto(buffer))

    def peek(self, size: int = 0, /) -> bytes:
        return _run(self._loop, self.aio.peek(size))

    def seek(self, offset: int, whence: int = io.SEEK_SET, /) -> int:
        return self.aio.seek(offset, whence)

    def tell(self) -> int:
        return self.aio.tell()

    def close(self) -> None:
        if not self.closed:
            try:
                _run(self._loop, self.aio.close())
            finally:
                super().close()

    def __enter__(self) -> Reader:
        return self


class Writer(io.BufferedIOBase):
    """``Client.open(path, "wb")``: a blocking binary file over ``AsyncWriter``. ``close()``
    commits; ``abort()``, an exception out of ``with``, or dropping it unclosed, does not."""

    def __init__(self, aio: AsyncWriter, loop: asyncio.AbstractEventLoop) -> None:
        super().__init__()
        self.aio = aio
        self._loop = loop

    @property
    def name(self) -> str:
        return self.aio.name

    @property
    def status(self) -> wire.FileStatus | None:
        return self.aio.status

    def writable(self) -> bool:
        return True

    def write(self, data: ReadableBuffer, /) -> int:
        return _run(self._loop, self.aio.write(data))

    def close(self) -> None:
        if not self.closed:
            try:
                _run(self._loop, self.aio.close())
            finally:
                super().close()

    def abort(self) -> None:
        if not self.closed:
            try:
                _run(self._loop, self.aio.abort())
            finally:
                super().close()

    def __enter__(self) -> Writer:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()

    def __del__(self) -> None:
        # io.IOBase would close(), committing a half-written file: abort instead, without
        # waiting (this may run on the loop's own thread).
        if not self.closed and not self._loop.is_closed():
            asyncio.run_coroutine_threadsafe(self.aio.abort(), self._loop)


def blocking(aio: AsyncReader | AsyncWriter, loop: asyncio.AbstractEventLoop) -> Reader | Writer:
    """The blocking face of an async file whose client runs on *loop*."""
    if isinstance(aio, AsyncReader):
        return Reader(aio, loop)
    return Writer(aio, loop)


__all__ = ["AsyncReader", "AsyncWriter", "Opening", "Reader", "Writer", "blocking"]

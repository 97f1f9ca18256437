"""Reads of a file opened read-only: the version current at ``open()`` (close-to-open), fetched
in chunks ahead of a sequential reader so that ``dd`` and ``cp`` keep the data nodes busy."""

from __future__ import annotations

import asyncio

from pydfs import wire
from pydfs.client import AsyncClient
from pydfs.client.files import AsyncReader

CHUNK = 4 << 20  # what one prefetch fetches


class ReadHandle:
    def __init__(
        self, client: AsyncClient, status: wire.FileStatus, read_ahead: int, *, ino: int
    ) -> None:
        self.status = status
        self.ino = ino  # the kernel's number of the file it reads
        self._reader = AsyncReader(client.transfer, status, buffer_size=0)
        self._ahead = max(0, read_ahead // CHUNK)
        self._chunks: dict[int, asyncio.Task[bytes]] = {}
        self._next = 0  # where a sequential reader reads next

    async def read(self, offset: int, size: int) -> bytes:
        size = min(size, self.status.size - offset)
        if size <= 0:
            return b""
        first, last = offset // CHUNK, (offset + size - 1) // CHUNK
        sequential = offset == self._next or first in self._chunks
        self._next = offset + size
        if not sequential:
            return await self._reader.read_at(offset, size)
        for index in list(self._chunks):
            if index < first - 1:
                self._chunks.pop(index).cancel()
        for index in range(first, last + 1 + self._ahead):
            if index * CHUNK < self.status.size and index not in self._chunks:
                task = asyncio.create_task(self._reader.read_at(index * CHUNK, CHUNK))
                task.add_done_callback(_retrieved)
                self._chunks[index] = task
        parts = []
        for index in range(first, last + 1):
            try:
                data = await asyncio.shield(self._chunks[index])
            except Exception:
                self._chunks.pop(index, None)  # a later read tries again
                raise
            lo = max(offset, index * CHUNK) - index * CHUNK
            hi = min(offset + size, (index + 1) * CHUNK) - index * CHUNK
            parts.append(data[lo:hi])
        return b"".join(parts)

    def close(self) -> None:
        for task in self._chunks.values():
            task.cancel()
        self._chunks.clear()


def _retrieved(task: asyncio.Task[bytes]) -> None:
    """A prefetch nobody awaited (the reader moved on, or closed) fails quietly."""
    if not task.cancelled():
        task.exception()

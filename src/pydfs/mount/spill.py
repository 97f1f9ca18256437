"""A file changed in place (random writes, appends, truncation): a sparse local copy.

The spill file holds the ranges written (or fetched) so far; the rest is still the version the
file had when it was opened (the base), read from the data nodes when needed. ``complete()``
fetches what is missing, so that the spill is the whole new content, ready to be uploaded.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO

from pydfs import wire
from pydfs.client import AsyncClient
from pydfs.client.files import AsyncReader
from pydfs.errors import Conflict

FETCH = 4 << 20  # bytes of the base fetched at once by complete()


class Spill:
    def __init__(
        self,
        client: AsyncClient,
        base: wire.FileStatus | None,
        size: int,
        spill_dir: str | None,
        readable_base: Callable[[], Awaitable[wire.FileStatus]],
    ) -> None:
        """*base*: the version being changed (None: none); *readable_base*: that version with
        read tokens, fetched only if some of it must be read."""
        self._client = client
        self.file: IO[bytes] = tempfile.TemporaryFile(dir=spill_dir)  # noqa: SIM115 - closed by close()
        self._base = base
        self._base_end = min(size, base.size if base else 0)  # base bytes still in the file
        self._readable_base = readable_base
        self._reader: AsyncReader | None = None
        self._have: list[tuple[int, int]] = []  # sorted, disjoint ranges held in the spill
        self.size = size
        os.ftruncate(self.file.fileno(), size)

    async def read(self, offset: int, size: int) -> bytes:
        end = min(offset + size, self.size)
        parts = []
        for start, stop, local in self._pieces(offset, end):
            if local or start >= self._base_end:
                data = os.pread(self.file.fileno(), stop - start, start)  # holes read as zeros
            else:
                data = await self._from_base(start, min(stop, self._base_end))
                data += bytes(max(0, stop - self._base_end))
            parts.append(data)
        return b"".join(parts)

    def write(self, offset: int, data: bytes) -> None:
        os.pwrite(self.file.fileno(), data, offset)
        self._add(offset, offset + len(data))
        self.size = max(self.size, offset + len(data))

    def truncate(self, size: int) -> None:
        os.ftruncate(self.file.fileno(), size)
        self._have = [(a, min(b, size)) for a, b in self._have if a < size]
        self._base_end = min(self._base_end, size)
        self.size = size

    async def complete(self) -> None:
        """Fetch every byte of the base not yet held, so that the spill is the whole file."""
        for start, stop, local in self._pieces(0, self._base_end):
            for at in range(start, stop, FETCH):
                if not local:
                    self.write(at, await self._from_base(at, min(stop, at + FETCH)))
        self._base_end = 0

    def close(self) -> None:
        self.file.close()

    async def _from_base(self, start: int, stop: int) -> bytes:
        if self._reader is None:
            base = await self._readable_base()
            self._reader = AsyncReader(self._client.transfer, base, buffer_size=0)
        data = await self._reader.read_at(start, stop - start)
        if len(data) != stop - start:
            raise Conflict(f"the previous version ended early, at byte {start + len(data)}")
        return data

    def _pieces(self, start: int, stop: int) -> list[tuple[int, int, bool]]:
        """[start, stop) cut into (start, stop, held locally) pieces."""
        pieces = []
        at = start
        for a, b in self._have:
            if b <= at:
                continue
            if a >= stop:
                break
            if a > at:
                pieces.append((at, a, False))
            pieces.append((max(a, at), min(b, stop), True))
            at = min(b, stop)
        if at < stop:
            pieces.append((at, stop, False))
        return pieces

    def _add(self, start: int, stop: int) -> None:
        merged = []
        for a, b in self._have:
            if b < start or a > stop:
                merged.append((a, b))
            else:
                start, stop = min(a, start), max(b, stop)
        merged.append((start, stop))
        merged.sort()
        self._have = merged

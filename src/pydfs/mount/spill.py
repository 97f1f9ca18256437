"""A file changed in place (random writes, appends, truncation): a sparse local copy.

The spill file holds the ranges written so far; the rest is still the version the file had when
it was opened (the base), read from the data nodes when needed. ``commit()`` uploads only the
blocks the writer changed (a write touched them, a truncation cut into them, an append grew
them), reading from the base just the untouched parts of those, and keeps the base's other
blocks by id: blocks are immutable, so the new version shares them with the old.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Awaitable, Callable
from typing import IO

from pydfs import wire
from pydfs.client import AsyncClient
from pydfs.client.files import AsyncReader
from pydfs.errors import Conflict


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
        self._readable_base = readable_base
        self._have: list[tuple[int, int]] = []  # sorted, disjoint ranges held in the spill
        self.size = size
        self._rebase(base, size)
        os.ftruncate(self.file.fileno(), size)

    def _rebase(self, base: wire.FileStatus | None, size: int) -> None:
        self._base = base
        self._base_end = min(size, base.size if base else 0)  # base bytes still in the file
        self._reader: AsyncReader | None = None
        self._dirty: set[int] = set()  # indexes of the blocks written to
        blocks = base.blocks or [] if base else []
        # Blocks can be kept only when each but the last is full: block i is bytes [i*bs, ...).
        regular = base is not None and all(b.size == base.block_size for b in blocks[:-1])
        self._block_size = base.block_size if base and blocks and regular else 0

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
        if self._block_size and data:
            bs = self._block_size
            self._dirty.update(range(offset // bs, (offset + len(data) - 1) // bs + 1))

    def truncate(self, size: int) -> None:
        os.ftruncate(self.file.fileno(), size)
        self._have = [(a, min(b, size)) for a, b in self._have if a < size]
        self._base_end = min(self._base_end, size)
        self.size = size

    def kept(self) -> list[wire.KeptBlock]:
        """The base's blocks the content still holds unchanged, in the same place: not written
        to, not cut by a truncation (even one since undone), and not grown."""
        bs = self._block_size
        if not bs or self._base is None:
            return []
        keep = []
        for i, block in enumerate(self._base.blocks or []):
            end = i * bs + block.size
            unchanged = end <= self._base_end and min(self.size, i * bs + bs) == end
            if unchanged and i not in self._dirty:
                keep.append(wire.KeptBlock(i, block.id))
        return keep

    async def commit(self, path: str, expect: list[str]) -> wire.FileStatus:
        """Replace *path*, if it still names the blocks *expect* lists, with the content: the
        changed blocks uploaded, the others kept. The committed version becomes the base."""
        keep = self.kept()
        bs = self._block_size
        kept = {k.index for k in keep}
        count = -(-self.size // bs) if bs else 1
        ranges = [
            (i * bs, min(self.size, i * bs + bs)) if bs else (0, self.size)
            for i in range(count)
            if i not in kept
        ]
        pos = hashed = 0  # where the upload is in the bytes sent, and how far they are hashed
        digest = hashlib.sha256()  # of the whole content, when it is all sent

        async def read(n: int) -> bytes:
            nonlocal pos, hashed
            skipped = 0
            for start, stop in ranges:
                if pos < skipped + stop - start:
                    at = start + pos - skipped
                    data = await self.read(at, min(n, stop - at))
                    break
                skipped += stop - start
            else:
                return b""
            if pos + len(data) > hashed:
                digest.update(data[hashed - pos :])
                hashed = pos + len(data)
            pos += len(data)
            return data

        async def rewind(offset: int) -> bool:
            nonlocal pos
            pos = offset
            return True

        transfer = self._client.transfer
        grant = await transfer.start(path, block_size=bs or None)
        checksum = None if keep else digest.hexdigest
        status = await transfer.send(grant, read, rewind, sha256=checksum, expect=expect, keep=keep)
        self._rebase(status, status.size)
        return status

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

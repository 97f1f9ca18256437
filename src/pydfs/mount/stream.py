"""A file written front to back, streamed to the data nodes as the writer goes.

The writer's bytes go through a local spool that holds only the block being sent (and what the
writer got ahead of it), so that a block whose first data node dies is sent again elsewhere
from the spool, and memory and disk stay bounded however large the file. The upload is
committed, and the file replaced whole, only by ``finish()``.
"""

from __future__ import annotations

import asyncio
import hashlib
import os
import tempfile
from typing import IO

from pydfs import wire
from pydfs.client import AsyncClient

AHEAD = 8 << 20  # bytes the writer may get ahead of the upload


class Stream:
    def __init__(self, client: AsyncClient, spill_dir: str | None) -> None:
        self._client = client
        self._spill_dir = spill_dir
        self._spool: IO[bytes] = tempfile.TemporaryFile(dir=spill_dir)  # noqa: SIM115
        self._spool_start = 0  # the file offset of the spool's first byte (a block's start)
        self.written = 0
        self._taken = 0  # bytes the upload has read
        self._eof = False
        self._changed = asyncio.Condition()
        self._task: asyncio.Task[wire.FileStatus] | None = None
        self._block_size = 0
        self._digest = hashlib.sha256()  # of every byte written, in order: the file's checksum

    async def start(self, path: str, expect: list[str]) -> None:
        """Ask for the upload (a refusal is the caller's error now, not at the end), to be
        committed only if the file still names the blocks *expect* lists."""
        grant = await self._client.transfer.start(path)
        self._block_size = grant.block_size
        self._task = asyncio.create_task(self._upload(grant, expect))

    async def write(self, data: bytes) -> None:
        assert self._task is not None
        async with self._changed:
            while self.written - self._taken >= AHEAD and not self._task.done():
                await self._changed.wait()
            if self._task.done():
                self._task.result()  # its error; or it ended without us: a bug
                raise RuntimeError("upload ended before its stream")
            os.pwrite(self._spool.fileno(), data, self.written - self._spool_start)
            self._digest.update(data)
            self.written += len(data)
            self._changed.notify_all()

    async def finish(self) -> wire.FileStatus:
        assert self._task is not None
        async with self._changed:
            self._eof = True
            self._changed.notify_all()
        try:
            return await self._task
        finally:
            self._spool.close()

    async def abort(self) -> None:
        if self._task is not None and not self._task.done():
            self._task.cancel()
            await asyncio.wait([self._task])  # its cleanup has aborted the upload
        self._spool.close()

    # --- the upload's side ------------------------------------------------------------------

    async def _read(self, n: int) -> bytes:
        async with self._changed:
            while self._taken >= self.written and not self._eof:
                await self._changed.wait()
            block_start = self._taken - self._taken % self._block_size
            if block_start > self._spool_start:
                self._rotate(block_start)  # the block before is stored: let it go
            data = os.pread(
                self._spool.fileno(),
                min(n, self.written - self._taken),
                self._taken - self._spool_start,
            )
            self._taken += len(data)
            self._changed.notify_all()
            return data

    def _rotate(self, start: int) -> None:
        fresh = tempfile.TemporaryFile(dir=self._spill_dir)  # noqa: SIM115
        keep = os.pread(self._spool.fileno(), self.written - start, start - self._spool_start)
        os.pwrite(fresh.fileno(), keep, 0)
        self._spool.close()
        self._spool, self._spool_start = fresh, start

    async def _rewind(self, offset: int) -> bool:
        if offset < self._spool_start:
            return False
        async with self._changed:
            self._taken = offset
        return True

    async def _upload(self, grant: wire.UploadGrant, expect: list[str]) -> wire.FileStatus:
        """The upload, from a source that can rewind to its current block."""
        try:
            return await self._client.transfer.send(
                grant, self._read, self._rewind, sha256=self._digest.hexdigest, expect=expect
            )
        finally:
            async with self._changed:
                self._changed.notify_all()  # a writer waiting for room learns it is over

"""A file opened for writing: what its writer has written, and how it reaches the cluster.

Content written front to back into an empty file (a new file, or one opened with ``O_TRUNC``)
is streamed: the first ``SMALL`` bytes are kept in memory (a small file is then one block write
and one commit), anything more goes out to the data nodes as it comes (``stream.Stream``).
Anything else (a write elsewhere than the end, a read, a truncation to other than zero, a
file opened for writing without truncation) moves to a sparse local copy (``spill.Spill``)
whose changed blocks are uploaded at ``commit()``, the others kept by id. Either way the name
node replaces the file atomically, so readers see the old content or the new, never a mix
(close-to-open); and only if the file is still the version this writer started from (or last
committed): a file replaced, moved or removed elsewhere meanwhile makes the commit fail
(``Conflict``) rather than lose either side's writes.

Streaming content that then moves to a copy is committed first, to become that copy's base: a
writer that goes back over what it streamed publishes what it had at that moment.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from pydfs import wire
from pydfs.client import AsyncClient
from pydfs.errors import Conflict
from pydfs.mount.spill import Spill
from pydfs.mount.stream import Stream

SMALL = 1 << 20


class WriteHandle:
    def __init__(
        self,
        client: AsyncClient,
        path: Callable[[], str | None],
        version: wire.FileStatus,
        *,
        truncate: bool,
        spill_dir: str | None,
        ino: int = 0,
        committed: Callable[[wire.FileStatus], None] | None = None,
    ) -> None:
        """*path*: where the file is now (None once unlinked through this mount; it raises if the
        file went away elsewhere); *version*: the file when opened; *truncate*: start empty, and
        commit even if nothing is written (``O_TRUNC``); *committed*: told of a commit made while
        the file is open (what was streamed, published as it moves to a copy), which the mount
        must know of as it knows of one at close."""
        self._client = client
        self.ino = ino
        self._committed = committed
        self._path = path
        self._base = None if truncate else version
        self._expect = _blocks(version)  # what the file must still be at commit
        self._failed: Exception | None = None  # a commit that lost what was streamed
        self._spill_dir = spill_dir
        self.size = 0 if truncate else version.size
        self.dirty = truncate
        self.mtime: float | None = None  # a time set while open, to apply after the commit
        self.changed = time.time()
        self.lock = asyncio.Lock()
        self._small = bytearray()
        self._stream: Stream | None = None
        self._spill: Spill | None = None

    @property
    def _streaming(self) -> bool:
        return self._spill is None and (self._base is None or self._base.size == 0)

    async def write(self, offset: int, data: bytes) -> None:
        if self._failed is not None:
            raise self._failed
        if self._streaming and offset == self.size:
            if self._stream is not None:
                await self._stream.write(data)
            else:
                self._small += data
                if len(self._small) > SMALL:
                    await self._start_stream()
        else:
            spill = await self._to_spill()
            spill.write(offset, data)
        self.size = max(self.size, offset + len(data))
        self.dirty = True
        self.changed = time.time()

    async def read(self, offset: int, size: int) -> bytes:
        if self._stream is None and self._spill is None and not self._base_size:
            return bytes(self._small[offset : offset + size])
        spill = await self._to_spill()
        return await spill.read(offset, size)

    async def truncate(self, size: int) -> None:
        if size == self.size and size:  # nothing changes (the kernel asks it of an O_TRUNC-less
            return  # open, `truncate -s` to its size): nor may it be committed as empty
        if size == 0:
            await self._drop()
            self._base = None
        elif size != self.size:
            spill = await self._to_spill()
            spill.truncate(size)
        self.size = size
        self.dirty = True
        self.changed = time.time()

    async def commit(self) -> wire.FileStatus | None:
        """Make the file what was written, if anything was; returns the committed status (None
        when nothing was to do, or the file was unlinked through this mount meanwhile)."""
        if self._failed is not None:
            raise self._failed
        if not self.dirty:
            return None
        path = self._path()
        if path is None:  # unlinked while open: its content goes with it
            await self._drop()
            self.dirty = False
            return None
        if self._stream is not None:
            stream, self._stream = self._stream, None
            try:
                status = await stream.finish()
            except Exception as exc:
                self._failed = exc  # what was streamed is gone: every later commit fails too
                raise
        elif self._spill is not None:
            status = await self._spill.commit(path, self._expect)
        else:
            status = await self._client.write_bytes(path, bytes(self._small), expect=self._expect)
        self.dirty = False
        self._expect = _blocks(status)
        self._small = bytearray()
        self._base = status  # what was written is now the base
        if self.mtime is not None:
            status = await self._client.rpc.call(
                "POST", "/fs/times", wire.TimesRequest(path, self.mtime), reply=wire.FileStatus
            )
            self.mtime = None
        return status

    async def close(self) -> None:
        await self._drop()

    # --- moving between the ways ----------------------------------------------------------

    @property
    def _base_size(self) -> int:
        return self._base.size if self._base else 0

    async def _start_stream(self) -> None:
        path = self._path()
        if path is None:
            raise FileNotFoundError("the file was removed")
        stream = Stream(self._client, self._spill_dir)
        await stream.start(path, self._expect)
        self._stream = stream
        await stream.write(bytes(self._small))
        self._small = bytearray()

    async def _to_spill(self) -> Spill:
        if self._spill is not None:
            return self._spill
        if self._stream is not None:  # publish what was streamed: it becomes the base
            status = await self.commit()
            if status is not None and self._committed is not None:
                self._committed(status)
        spill = Spill(self._client, self._base, self._base_size, self._spill_dir, self._readable)
        if self._small:
            spill.write(0, bytes(self._small))
            self._small = bytearray()
        self._spill = spill
        return spill

    async def _readable(self) -> wire.FileStatus:
        """The base with read tokens: the file as the name node has it now, which must still
        be the base."""
        path = self._path()
        if path is None or self._base is None:
            raise FileNotFoundError("the file was removed")
        status = await self._client.info(path, read=True)
        if [b.id for b in status.blocks or []] != [b.id for b in self._base.blocks or []]:
            raise Conflict(f"{path} was replaced while open for writing")
        return status

    @property
    def streaming(self) -> bool:
        """Is an upload under way? It names the path it started at."""
        return self._stream is not None

    async def _drop(self) -> None:
        self._small = bytearray()
        if self._stream is not None:
            stream, self._stream = self._stream, None
            await stream.abort()
        if self._spill is not None:
            self._spill.close()
            self._spill = None


def _blocks(status: wire.FileStatus) -> list[str]:
    return [b.id for b in status.blocks or []]

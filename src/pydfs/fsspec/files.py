"""``PydfsFile``, fsspec's buffered file over one ``AsyncReader`` or ``AsyncWriter``, and the
fsspec info dict of a status (``details``), which both the file and the filesystem give."""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from fsspec.asyn import sync
from fsspec.spec import AbstractBufferedFile

from pydfs import wire
from pydfs.client.files import AsyncReader, AsyncWriter

if TYPE_CHECKING:
    from pydfs.fsspec.filesystem import PydfsFileSystem


def details(status: wire.FileStatus) -> dict[str, Any]:
    is_dir = status.type == "dir"
    return {
        "name": status.path,
        "size": 0 if is_dir else status.size,
        "type": "directory" if is_dir else "file",
        "mtime": status.mtime,
        "created": status.ctime,
        "owner": status.owner,
        "replication": status.replication,
        "block_size": status.block_size,
    }


class PydfsFile(AbstractBufferedFile):  # type: ignore[misc]
    """A pydfs file for fsspec. Reads are ranged block reads of the version of the file that
    was current at open; writes stream into one upload, committed by ``close()`` (or, in a
    transaction, by ``commit()``) and dropped by ``discard()`` or an exception in ``with``.
    Append ("ab") is not supported: pydfs files are written once."""

    DEFAULT_BLOCK_SIZE = 4 * 2**20
    fs: PydfsFileSystem
    closed: bool

    def __init__(
        self,
        fs: PydfsFileSystem,
        path: str,
        mode: str = "rb",
        block_size: int | str = "default",
        autocommit: bool = True,
        cache_type: str = "readahead",
        cache_options: dict[str, Any] | None = None,
        *,
        replication: int | None = None,
        **kwargs: Any,
    ) -> None:
        self._reader: AsyncReader | None = None
        self._writer: AsyncWriter | None = None
        if mode == "rb":
            self._reader = sync(fs.loop, fs._open_reader, path)
            kwargs["size"] = self._reader.size
        elif mode in ("wb", "xb"):
            options = {} if replication is None else {"replication": replication}
            self._writer = sync(fs.loop, fs._open_writer, path, mode == "wb", **options)
        else:
            raise NotImplementedError(f"mode {mode!r}: pydfs files are written once (wb, xb)")
        super().__init__(
            fs, path, mode, block_size, autocommit, cache_type, cache_options, **kwargs
        )
        if self._reader is not None:
            self.details = details(self._reader.status)

    def _fetch_range(self, start: int, end: int) -> bytes:
        assert self._reader is not None
        data: bytes = sync(self.fs.loop, self._reader.read_at, start, end - start)
        return data

    def _upload_chunk(self, final: bool = False) -> bool:
        assert self._writer is not None
        data = self.buffer.getvalue()
        if data:
            sync(self.fs.loop, self._writer.write, data)
        if final and self.autocommit:
            self.commit()
        return True

    def commit(self) -> None:
        assert self._writer is not None
        sync(self.fs.loop, self._writer.close)

    def discard(self) -> None:
        if self._writer is not None:
            sync(self.fs.loop, self._writer.abort)

    def __exit__(self, exc_type: type[BaseException] | None, *exc: object) -> None:
        if exc_type is not None and self._writer is not None and not self.closed:
            try:
                self.discard()
            finally:
                self.closed = True
        else:
            self.close()

    def __del__(self) -> None:
        # fsspec would close(), committing a half-written file: abort instead, without
        # waiting (this may run on the loop's own thread).
        writer = getattr(self, "_writer", None)
        if (
            writer is not None
            and not getattr(self, "closed", True)
            and not self.fs.loop.is_closed()
        ):
            asyncio.run_coroutine_threadsafe(writer.abort(), self.fs.loop)

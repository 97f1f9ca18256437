"""Client: the blocking SDK, a facade that runs AsyncClient on a private event loop thread."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncGenerator, Awaitable, Iterator, Mapping, Sequence
from typing import IO, Any, Literal, TypeVar, overload

from pydfs import wire
from pydfs.client import files
from pydfs.client.aio import AsyncClient, ByteSource, Progress
from pydfs.errors import PydfsError

T = TypeVar("T")


def _event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's loop where it is installed (a dependency, but on Windows): a small read or
    write costs the client 10-25 % less CPU on it than on asyncio's own (``bench/README.md``)."""
    try:
        import uvloop
    except ImportError:
        return asyncio.new_event_loop()
    return uvloop.new_event_loop()


class Client:
    """Blocking access to a pydfs cluster; every method mirrors ``AsyncClient``'s."""

    def __init__(self, namenode: str | Sequence[str] | None = None, **kwargs: Any) -> None:
        self._loop = _event_loop()
        self._thread = threading.Thread(
            target=self._loop.run_forever, name="pydfs-client", daemon=True
        )
        running = threading.Event()  # close() needs it running, however soon it comes
        self._loop.call_soon(running.set)
        self._thread.start()
        running.wait()
        self._aio = AsyncClient(namenode, **kwargs)

    def _run(self, aw: Awaitable[T]) -> T:
        return files._run(self._loop, aw)

    def _iterate(self, agen: AsyncGenerator[T, None]) -> Iterator[T]:
        try:
            while True:
                try:
                    yield self._run(anext(agen))
                except StopAsyncIteration:
                    return
        finally:
            if self._loop.is_running():
                self._run(agen.aclose())

    def close(self) -> None:
        if self._loop.is_running():
            self._run(self._aio.close())
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join()
            self._loop.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def namenode(self) -> str:
        return self._aio.namenode

    def info(self, path: str, *, read: bool = False) -> wire.FileStatus:
        return self._run(self._aio.info(path, read=read))

    def ls(self, path: str = "/") -> list[wire.FileStatus]:
        return self._run(self._aio.ls(path))

    def checksum(self, path: str) -> wire.FileChecksum:
        return self._run(self._aio.checksum(path))

    def exists(self, path: str) -> bool:
        return self._run(self._aio.exists(path))

    def mkdir(self, path: str, *, parents: bool = False) -> wire.FileStatus:
        return self._run(self._aio.mkdir(path, parents=parents))

    def touch(self, path: str) -> wire.FileStatus:
        return self._run(self._aio.touch(path))

    def symlink(self, path: str, target: str) -> wire.FileStatus:
        return self._run(self._aio.symlink(path, target))

    def readlink(self, path: str) -> str:
        return self._run(self._aio.readlink(path))

    def delete(self, path: str) -> None:
        self._run(self._aio.delete(path))

    def rmdir(self, path: str, *, recursive: bool = False) -> None:
        self._run(self._aio.rmdir(path, recursive=recursive))

    def delete_many(
        self,
        targets: list[str],
        *,
        recursive: bool = False,
        type: Literal["file", "dir", "any"] = "any",
    ) -> list[str]:
        return self._run(self._aio.delete_many(targets, recursive=recursive, type=type))

    def copy(self, src: str, dst: str | None = None, *, overwrite: bool = False) -> wire.FileStatus:
        return self._run(self._aio.copy(src, dst, overwrite=overwrite))

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> wire.FileStatus:
        return self._run(self._aio.move(src, dst, overwrite=overwrite))

    def format(self) -> wire.FormatReply:
        return self._run(self._aio.format())

    def space(self) -> wire.Space:
        return self._run(self._aio.space())

    def datanodes(self) -> list[wire.DataNodeState]:
        return self._run(self._aio.datanodes())

    def namenode_state(self) -> wire.NameNodeState:
        return self._run(self._aio.namenode_state())

    def setrep(self, path: str, replication: int) -> int:
        return self._run(self._aio.setrep(path, replication))

    def fsck(self, path: str = "/", *, files: bool = False) -> wire.FsckReport:
        return self._run(self._aio.fsck(path, files=files))

    def backup(self, out: IO[bytes]) -> wire.Backup:
        return self._run(self._aio.backup(out))

    def delete_orphans(self) -> wire.Orphans:
        return self._run(self._aio.delete_orphans())

    def decommission(self, node: str, *, undo: bool = False) -> wire.DataNodeState:
        return self._run(self._aio.decommission(node, undo=undo))

    def whoami(self) -> wire.UserInfo:
        return self._run(self._aio.whoami())

    def chmod(self, path: str, mode: int, *, recursive: bool = False) -> int:
        return self._run(self._aio.chmod(path, mode, recursive=recursive))

    def chown(
        self,
        path: str,
        owner: str | None = None,
        group: str | None = None,
        *,
        recursive: bool = False,
    ) -> int:
        return self._run(self._aio.chown(path, owner, group, recursive=recursive))

    def users(self) -> list[wire.UserInfo]:
        return self._run(self._aio.users())

    def add_user(self, name: str, *, admin: bool = False, groups: list[str] | None = None) -> str:
        return self._run(self._aio.add_user(name, admin=admin, groups=groups))

    def remove_user(self, name: str) -> None:
        self._run(self._aio.remove_user(name))

    def reset_token(self, name: str) -> str:
        return self._run(self._aio.reset_token(name))

    def write_bytes(self, path: str, data: bytes, **kwargs: Any) -> wire.FileStatus:
        return self._run(self._aio.write_bytes(path, data, **kwargs))

    def write_many(
        self, files: Mapping[str, bytes], **kwargs: Any
    ) -> dict[str, wire.FileStatus | PydfsError]:
        return self._run(self._aio.write_many(files, **kwargs))

    def write_stream(self, path: str, stream: ByteSource, **kwargs: Any) -> wire.FileStatus:
        return self._run(self._aio.write_stream(path, stream, **kwargs))

    def upload(self, local: str | os.PathLike[str], path: str, **kwargs: Any) -> wire.FileStatus:
        return self._run(self._aio.upload(local, path, **kwargs))

    def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        return self._run(self._aio.read_bytes(path, offset, length))

    def download(
        self,
        path: str,
        local: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
    ) -> int:
        return self._run(self._aio.download(path, local, overwrite=overwrite, progress=progress))

    @overload
    def open(self, path: str, mode: Literal["rb"] = "rb", **options: Any) -> files.Reader: ...

    @overload
    def open(self, path: str, mode: Literal["wb", "xb"], **options: Any) -> files.Writer: ...

    def open(self, path: str, mode: str = "rb", **options: Any) -> files.Reader | files.Writer:
        return files.blocking(self._run(self._aio.open(path, mode, **options)), self._loop)  # type: ignore[call-overload]

    def walk(self, path: str = "/") -> Iterator[tuple[str, list[str], list[str]]]:
        return self._iterate(self._aio.walk(path))

"""AsyncClient: the one implementation of the SDK (the CLI and the blocking Client use it).

Metadata goes to the name node as JSON; file bytes go straight between this process and the data
nodes (``client.blocks``). Paths are absolute DFS paths; relative ones resolve against ``/``.

asyncio and ``client.files`` are imported by the methods that move file data, so that a CLI
command that only asks the name node (over ``rpc.Rpc``) never imports them.
"""

from __future__ import annotations

import contextlib
import errno
import inspect
import io
import os
import secrets
import stat
from collections.abc import AsyncGenerator, AsyncIterator, Callable
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, Protocol, cast, overload

from pydfs import paths, rpc, wire
from pydfs.client import blocks
from pydfs.config import ClientConfig
from pydfs.errors import Conflict, InvalidArgument, IsADirectory, PydfsError, Unavailable

if TYPE_CHECKING:
    import asyncio

    import aiohttp

    from pydfs.client import files

LEASE_RENEWAL = 60.0  # seconds between lease renewals of an open upload (leases last 600 s)
SMALL_WRITE = 1 << 20  # a write of at most this many bytes takes its lease from a batch
MAX_BATCH = 64  # leases fetched at once, at most (as many as the name node grants at once)
BATCH_SHELF_LIFE = 300.0  # seconds a batch lease is used for (leases last 600 s)

Progress = Callable[[int], None]
"""``progress(n)``: *n* more bytes moved. Called often, from the event loop: keep it cheap."""


class AsyncSource(Protocol):
    async def read(self, n: int, /) -> bytes: ...


ByteSource = IO[bytes] | AsyncSource
"""What ``write_stream`` uploads: a binary file, or anything with ``async read(n)``."""


def resolve_namenode(namenode: str | None, config: ClientConfig | None = None) -> str:
    url = namenode or os.environ.get("PYDFS_NAMENODE") or (config or ClientConfig.read()).namenode
    if not url:
        raise InvalidArgument(
            "no name node configured: pass --namenode URL, set PYDFS_NAMENODE, "
            "or start a local cluster with `pydfs cluster up`"
        )
    if not url.startswith(("http://", "https://")):
        url = "http://" + url
    return url.rstrip("/")


class AsyncClient:
    """A connection to one pydfs cluster. Use ``async with AsyncClient(url) as fs: ...``.

    The token (from ``pydfs login``) comes from *token*, else ``$PYDFS_TOKEN``, else the client
    config; *ca* (a CA bundle to verify an HTTPS name node) from *ca*, ``$PYDFS_CA`` or the config.
    """

    def __init__(
        self,
        namenode: str | None = None,
        *,
        token: str | None = None,
        ca: str | os.PathLike[str] | None = None,
        replication: int | None = None,
        block_size: int | None = None,
        stall_timeout: float = blocks.STALL_TIMEOUT,
    ) -> None:
        config = ClientConfig.read()
        self.stall_timeout = stall_timeout  # a data node silent this long is passed over
        self.namenode = resolve_namenode(namenode, config)
        self.token = token or os.environ.get("PYDFS_TOKEN") or config.token
        self.ca = ca or os.environ.get("PYDFS_CA") or config.ca
        self.user = config.user  # the name `pydfs login` saw, if any (for the default cwd)
        self.replication = replication
        self.block_size = block_size
        self._session: aiohttp.ClientSession | None = None
        self._links: rpc.Links | None = None
        self._rpc: rpc.Rpc | None = None
        self._leases: dict[tuple[int | None, int | None], _LeaseShelf] = {}

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        import asyncio

        fetches = [shelf.fetch for shelf in self._leases.values() if shelf.fetch is not None]
        await asyncio.gather(*fetches, return_exceptions=True)  # their leases, too, go back
        unused = [grant for shelf in self._leases.values() for _, grant in shelf.grants]
        self._leases.clear()
        if unused:  # handed back, so that the name node need not wait for them to expire
            await asyncio.gather(*(self._abort(f"/uploads/{g.upload_id}") for g in unused))
        if self._rpc is not None:
            self._rpc.close()
            self._rpc = None
        if self._links is not None:
            self._links.close()
            self._links = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    def close_now(self) -> None:
        """Drop every connection at once, without waiting (unused leases are left to expire):
        for a finalizer, which may run on the loop's own thread and so cannot wait for
        ``close()``. The connections finish closing on that loop, which must not have closed."""
        self._leases.clear()
        closers: list[Callable[[], object]] = []
        if self._session is not None and self._session.connector is not None:
            closers.append(self._session.connector._close)  # aiohttp's at once: session too
        closers += [c.close for c in (self._links, self._rpc) if c is not None]
        for close in closers:
            with contextlib.suppress(RuntimeError):  # a closed loop takes no more callbacks
                close()
        self._rpc = self._links = self._session = None  # after: a session dropped open warns

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = rpc.new_session(ca=self.ca)
        return self._session

    @property
    def links(self) -> rpc.Links:
        if self._links is None:
            self._links = rpc.Links(self.ca, self.stall_timeout)
        return self._links

    @property
    def rpc(self) -> rpc.Rpc:
        if self._rpc is None:
            headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
            self._rpc = rpc.Rpc(self.namenode, ca=self.ca, headers=headers)
        return self._rpc

    # --- namespace ------------------------------------------------------------------------

    async def info(self, path: str, *, read: bool = False) -> wire.FileStatus:
        """Status of *path*; with *read*, also the block read tokens (r permission needed)."""
        params = {"path": path, "read": "1"} if read else {"path": path}
        return await self.rpc.call("GET", "/fs/stat", reply=wire.FileStatus, params=params)

    async def whoami(self) -> wire.UserInfo:
        return await self.rpc.call("GET", "/auth/whoami", reply=wire.UserInfo)

    async def chmod(self, path: str, mode: int, *, recursive: bool = False) -> int:
        req = wire.ChmodRequest(path, mode, recursive)
        return (await self.rpc.call("POST", "/fs/chmod", req, reply=dict[str, int]))["changed"]

    async def chown(
        self,
        path: str,
        owner: str | None = None,
        group: str | None = None,
        *,
        recursive: bool = False,
    ) -> int:
        req = wire.ChownRequest(path, owner, group, recursive)
        return (await self.rpc.call("POST", "/fs/chown", req, reply=dict[str, int]))["changed"]

    # --- users (admins) -------------------------------------------------------------------

    async def users(self) -> list[wire.UserInfo]:
        return (await self.rpc.call("GET", "/users", reply=wire.UserList)).users

    async def add_user(
        self, name: str, *, admin: bool = False, groups: list[str] | None = None
    ) -> str:
        """Create a user with a home directory; returns its token (shown only now)."""
        req = wire.NewUser(name, admin, groups or [])
        return (await self.rpc.call("POST", "/users", req, reply=wire.UserToken)).token

    async def remove_user(self, name: str) -> None:
        await self.rpc.call("POST", "/users/remove", wire.UserName(name))

    async def reset_token(self, name: str) -> str:
        req = wire.UserName(name)
        return (await self.rpc.call("POST", "/users/reset-token", req, reply=wire.UserToken)).token

    async def checksum(self, path: str) -> wire.FileChecksum:
        """The SHA-256 of *path*'s content as its writer computed it while uploading (``sha256``
        is None for a file written without one); r permission needed."""
        return await self.rpc.call(
            "GET", "/fs/checksum", reply=wire.FileChecksum, params={"path": path}
        )

    async def ls(self, path: str = "/") -> list[wire.FileStatus]:
        listing = await self.rpc.call("GET", "/fs/list", reply=wire.Listing, params={"path": path})
        return listing.entries

    async def exists(self, path: str) -> bool:
        try:
            await self.info(path)
        except FileNotFoundError:
            return False
        return True

    async def mkdir(self, path: str, *, parents: bool = False) -> wire.FileStatus:
        req = wire.MkdirRequest(path, parents)
        return await self.rpc.call("POST", "/fs/mkdir", req, reply=wire.FileStatus)

    async def touch(self, path: str) -> wire.FileStatus:
        return await self.rpc.call(
            "POST", "/fs/create", wire.PathRequest(path), reply=wire.FileStatus
        )

    async def delete(self, path: str) -> None:
        """Delete a file (not a directory: see ``rmdir``)."""
        await self.rpc.call("POST", "/fs/delete", wire.DeleteRequest(path, type="file"))

    async def rmdir(self, path: str, *, recursive: bool = False) -> None:
        await self.rpc.call("POST", "/fs/delete", wire.DeleteRequest(path, recursive, "dir"))

    async def delete_many(
        self,
        targets: list[str],
        *,
        recursive: bool = False,
        type: Literal["file", "dir", "any"] = "any",
    ) -> list[str]:
        """Delete many paths, ``wire.MAX_DELETE_BATCH`` to a request; each request deletes all
        of its paths or none. *type* "file" refuses directories, "dir" files. Returns the paths
        that were not there."""
        missing: list[str] = []
        for i in range(0, len(targets), wire.MAX_DELETE_BATCH):
            req = wire.DeleteManyRequest(targets[i : i + wire.MAX_DELETE_BATCH], recursive, type)
            reply = await self.rpc.call("POST", "/fs/delete-many", req, reply=wire.DeleteManyReply)
            missing += reply.missing
        return missing

    async def copy(
        self, src: str, dst: str | None = None, *, overwrite: bool = False
    ) -> wire.FileStatus:
        req = wire.CopyRequest(src, dst, overwrite)
        return await self.rpc.call("POST", "/fs/copy", req, reply=wire.FileStatus)

    async def move(self, src: str, dst: str, *, overwrite: bool = False) -> wire.FileStatus:
        req = wire.MoveRequest(src, dst, overwrite)
        return await self.rpc.call("POST", "/fs/move", req, reply=wire.FileStatus)

    async def format(self) -> wire.FormatReply:
        return await self.rpc.call("POST", "/fs/format", {}, reply=wire.FormatReply)

    async def space(self) -> wire.Space:
        return await self.rpc.call("GET", "/cluster/space", reply=wire.Space)

    async def datanodes(self) -> list[wire.DataNodeState]:
        return (await self.rpc.call("GET", "/cluster/datanodes", reply=wire.DataNodeList)).nodes

    async def setrep(self, path: str, replication: int) -> int:
        """Set the replication factor of a file or of every file below a directory; the
        cluster then copies or trims replicas to match. Returns how many files changed."""
        req = wire.SetReplicationRequest(path, replication)
        reply = await self.rpc.call("POST", "/fs/setrep", req, reply=dict[str, int])
        return reply["files"]

    async def fsck(self, path: str = "/", *, files: bool = False) -> wire.FsckReport:
        params = {"path": path, "files": "1" if files else "0"}
        return await self.rpc.call("GET", "/fsck", reply=wire.FsckReport, params=params)

    async def decommission(self, node: str, *, undo: bool = False) -> wire.DataNodeState:
        route = "/cluster/recommission" if undo else "/cluster/decommission"
        return await self.rpc.call("POST", route, wire.NodeRequest(node), reply=wire.DataNodeState)

    # --- writing --------------------------------------------------------------------------

    async def write_stream(
        self,
        path: str,
        stream: ByteSource,
        *,
        overwrite: bool = True,
        replication: int | None = None,
        block_size: int | None = None,
        progress: Progress | None = None,
    ) -> wire.FileStatus:
        """Upload everything *stream* yields to *path*; the file appears, whole, only at the end.

        *stream* has ``read(n)``, plain or ``async``. A seekable stream lets a block whose first
        data node fails be sent again elsewhere. ``progress(n)`` hears of every *n* new bytes
        taken from *stream* (bytes sent again after a failure are not counted twice).
        """
        size = _remaining(stream)
        if size is not None and size <= SMALL_WRITE:
            # A small file: a lease from a batch saves a round trip; its commit names the file
            # and is where permissions are checked, which costs little on a small file.
            file = cast(IO[bytes], stream)
            start = file.tell()
            pos = told = 0  # where this attempt is, and how far progress has been told

            def once(n: int) -> None:  # bytes sent again by the retry are not told twice
                nonlocal pos, told
                pos += n
                if progress is not None and pos > told:
                    progress(pos - told)
                    told = pos

            fetched, grant = await self._batch_lease(replication, block_size)
            try:
                return await self._finish_upload(grant, stream, once, path, overwrite)
            except Conflict:
                # The name node forgot the lease (it restarted): so it did every lease shelved
                # as long ago, which would fail the same way. Drop them and write it once more.
                self._drop_leases(fetched)
                file.seek(start)
                pos = 0
                _, grant = await self._batch_lease(replication, block_size)
                return await self._finish_upload(grant, stream, once, path, overwrite)
        grant = await self._start_upload(path, overwrite, replication, block_size)
        return await self._finish_upload(grant, stream, progress)

    async def _batch_lease(
        self, replication: int | None, block_size: int | None
    ) -> tuple[float, wire.UploadGrant]:
        """A lease from this client's batch for that shape of file, with the loop time it was
        fetched at. When the shelf is empty one writer fetches a batch and the others wait for
        it: one lease at first, then as many as writers wait, at least twice the last batch (at
        most ``MAX_BATCH``), so that a client writing one file asks for no more than it uses and
        many writers at once ask for about one lease each."""
        import asyncio

        shelf = self._leases.setdefault((replication, block_size), _LeaseShelf())
        loop = asyncio.get_running_loop()
        while True:
            now = loop.time()
            while shelf.grants:
                fetched, grant = shelf.grants.pop()
                if now - fetched < BATCH_SHELF_LIFE:
                    return fetched, grant
            if shelf.fetch is None:
                shelf.fetch = loop.create_task(self._fill(shelf, replication, block_size))
                shelf.fetch.add_done_callback(_retrieved)
            fetch = shelf.fetch
            shelf.waiting += 1
            try:
                await asyncio.shield(fetch)  # a writer cancelled while waiting leaves the fetch be
            finally:
                shelf.waiting -= 1

    async def _fill(
        self, shelf: _LeaseShelf, replication: int | None, block_size: int | None
    ) -> None:
        """Fetch a batch of leases onto *shelf*, for the writers waiting on it."""
        import asyncio

        try:
            count = min(MAX_BATCH, max(shelf.next_batch, shelf.waiting))
            req = wire.UploadBatchRequest(
                count,
                self.replication if replication is None else replication,
                self.block_size if block_size is None else block_size,
            )
            shelf.next_batch = min(MAX_BATCH, count * 2)
            batch = await self.rpc.call("POST", "/uploads/batch", req, reply=wire.UploadBatch)
            now = asyncio.get_running_loop().time()
            shelf.grants.extend((now, grant) for grant in reversed(batch.uploads))
        finally:
            shelf.fetch = None

    def _drop_leases(self, until: float) -> None:
        """Forget the shelved leases fetched no later than *until* (loop time)."""
        for shelf in self._leases.values():
            shelf.grants = [(t, grant) for t, grant in shelf.grants if t > until]

    async def _start_upload(
        self, path: str, overwrite: bool, replication: int | None, block_size: int | None
    ) -> wire.UploadGrant:
        req = wire.UploadRequest(
            path,
            replication=self.replication if replication is None else replication,
            block_size=self.block_size if block_size is None else block_size,
            overwrite=overwrite,
        )
        return await self.rpc.call("POST", "/uploads", req, reply=wire.UploadGrant)

    async def _finish_upload(
        self,
        grant: wire.UploadGrant,
        stream: ByteSource,
        progress: Progress | None = None,
        path: str | None = None,
        overwrite: bool = True,
    ) -> wire.FileStatus:
        """Stream *stream* into the upload *grant* and commit it (to *path*, for a lease from a
        batch); abort it on any failure (cancellation included), so that nothing of it ever
        becomes visible."""
        import asyncio
        import hashlib

        route = f"/uploads/{grant.upload_id}"
        file = None if inspect.iscoroutinefunction(stream.read) else cast(IO[bytes], stream)
        seekable = file is not None and file.seekable()
        start = file.tell() if file is not None and seekable else 0
        pos = done = 0  # where the source is, and how far progress has been told
        digest = hashlib.sha256()  # of the whole content, recorded at commit (`pydfs checksum`)

        async def read(n: int) -> bytes:
            nonlocal pos, done
            if file is not None:
                data = file.read(n) or b""
            else:
                data = await cast(AsyncSource, stream).read(n)
            begin, pos = pos, pos + len(data)
            if pos > done:  # bytes read again after a rewind are neither told nor hashed twice
                digest.update(data[done - begin :] if done > begin else data)
                if progress is not None:
                    progress(pos - done)
                done = pos
            return data

        async def rewind(offset: int) -> bool:
            nonlocal pos
            if file is None or not seekable:
                return False
            file.seek(start + offset)
            pos = offset
            return True

        async def allocate(exclude: list[str]) -> wire.BlockGrant:
            alloc = wire.BlockAllocRequest(exclude)
            return await self.rpc.call("POST", f"{route}/blocks", alloc, reply=wire.BlockGrant)

        keepalive = asyncio.ensure_future(self._keep_lease(route))
        try:
            stored = await blocks.write_blocks(
                self.session, read, grant, allocate, rewind, self.stall_timeout, self.links
            )
            commit = wire.CommitRequest(stored, path, overwrite, digest.hexdigest())
            return await self.rpc.call("POST", f"{route}/commit", commit, reply=wire.FileStatus)
        except BaseException:
            await asyncio.shield(self._abort(route))
            raise
        finally:
            keepalive.cancel()

    async def _keep_lease(self, route: str) -> None:
        """Renew an upload's lease while a slow writer (a trickling pipe, a file object fed a
        line at a time) keeps it open longer than the name node's lease."""
        import asyncio

        while True:
            await asyncio.sleep(LEASE_RENEWAL)
            try:
                await self.rpc.call("POST", f"{route}/renew", {})
            except PydfsError:
                pass  # the commit will say what went wrong

    async def _abort(self, route: str) -> None:
        try:
            await self.rpc.call("DELETE", route)
        except PydfsError:
            pass  # the lease expires on its own; its blocks are collected then

    async def write_bytes(self, path: str, data: bytes, **kwargs: Any) -> wire.FileStatus:
        return await self.write_stream(path, io.BytesIO(data), **kwargs)

    async def upload(
        self, local: str | os.PathLike[str], path: str, **kwargs: Any
    ) -> wire.FileStatus:
        """Upload a local file; takes ``write_stream``'s keywords (``progress`` among them)."""
        with open(local, "rb") as f:
            return await self.write_stream(path, f, **kwargs)

    @overload
    def open(
        self, path: str, mode: Literal["rb"] = "rb", *, buffer_size: int = ...
    ) -> files.Opening[files.AsyncReader]: ...

    @overload
    def open(
        self,
        path: str,
        mode: Literal["wb", "xb"],
        *,
        replication: int | None = ...,
        block_size: int | None = ...,
        progress: Progress | None = ...,
    ) -> files.Opening[files.AsyncWriter]: ...

    def open(self, path: str, mode: str = "rb", **options: Any) -> files.Opening[Any]:
        """Open *path* as a file object: ``async with fs.open(p) as f`` or ``f = await fs.open(p)``.

        ``"rb"`` gives an ``AsyncReader`` (seekable; ranged reads through a small read-ahead
        buffer). ``"wb"`` (replace) and ``"xb"`` (must not exist) give an ``AsyncWriter`` that
        streams into an upload and commits it, atomically, on ``close()``; leaving the ``with``
        block by an exception, or ``abort()``, drops it and leaves any old content in place.
        """
        from pydfs.client import files

        if mode == "rb":
            return files.Opening(files.AsyncReader.open(self, path, **options))
        if mode in ("wb", "xb"):
            return files.Opening(files.AsyncWriter.open(self, path, mode == "wb", **options))
        raise InvalidArgument(f"mode {mode!r} is not supported: use 'rb', 'wb' or 'xb'")

    async def walk(self, path: str = "/") -> AsyncGenerator[tuple[str, list[str], list[str]], None]:
        """Like ``os.walk`` (top down): ``(dirpath, dirnames, filenames)`` for every directory
        under *path*, *path* included. Prune ``dirnames`` in place to skip subtrees; a directory
        that disappears during the walk is skipped, as ``os.walk`` does."""
        top = await self.info(path)
        if top.type != "dir":
            return
        pending = [top.path]
        while pending:
            directory = pending.pop()
            try:
                entries = await self.ls(directory)
            except (FileNotFoundError, NotADirectoryError):
                continue
            dirnames = [e.name for e in entries if e.type == "dir"]
            filenames = [e.name for e in entries if e.type != "dir"]
            yield directory, dirnames, filenames
            pending.extend(paths.join(directory, name) for name in reversed(dirnames))

    # --- reading --------------------------------------------------------------------------

    async def read_stream(
        self,
        path: str,
        offset: int = 0,
        length: int | None = None,
        *,
        progress: Progress | None = None,
    ) -> AsyncGenerator[bytes, None]:
        """Verified bytes of *path* from *offset*, as they arrive; ``progress(n)`` hears of each
        piece."""
        async for data in self._read_status(await self.info(path, read=True), offset, length):
            if progress is not None:
                progress(len(data))
            yield data

    async def _read_status(
        self, status: wire.FileStatus, offset: int = 0, length: int | None = None
    ) -> AsyncIterator[bytes]:
        """Bytes of the file *status* describes: readers that have it already skip the lookup,
        and keep reading the same version of the file."""
        path = status.path
        if status.type == "dir":
            raise IsADirectory(f"{path} is a directory")
        end = status.size if length is None else min(status.size, offset + length)
        block_start = 0
        for index, block in enumerate(status.blocks or []):
            block_end = block_start + block.size
            if block_end > offset and block_start < end:
                lo, hi = max(offset, block_start) - block_start, min(end, block_end) - block_start
                for attempt in range(3):
                    try:
                        async for data in blocks.read_block(
                            self.session,
                            block,
                            lo,
                            hi,
                            self._report_corrupt,
                            self.stall_timeout,
                            self.links,
                        ):
                            yield data
                            lo += len(data)
                        break
                    except Unavailable:
                        # Every replica failed: the file may have been replaced, or its nodes
                        # restarted on new addresses. Ask the name node again.
                        if attempt == 2:
                            raise
                        import asyncio

                        await asyncio.sleep(0.3 * (attempt + 1))
                        status = await self._still_same(path, status)
                        block = (status.blocks or [])[index]
            block_start = block_end

    async def _report_corrupt(self, block: str, node: str) -> None:
        try:
            await self.rpc.call("POST", "/blocks/corrupt", wire.CorruptReplica(block, node))
        except PydfsError:
            pass  # the scrubber will find it anyway

    async def _still_same(self, path: str, status: wire.FileStatus) -> wire.FileStatus:
        """Fresh block locations for *path*, provided it still has the same blocks."""
        try:
            now = await self.info(path, read=True)
        except FileNotFoundError:
            raise Conflict(f"{path} was deleted while being read") from None
        if [b.id for b in now.blocks or []] != [b.id for b in status.blocks or []]:
            raise Conflict(f"{path} was replaced while being read; read it again")
        return now

    async def read_bytes(self, path: str, offset: int = 0, length: int | None = None) -> bytes:
        return b"".join([d async for d in self.read_stream(path, offset, length)])

    async def download(
        self,
        path: str,
        local: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        progress: Progress | None = None,
        status: wire.FileStatus | None = None,
    ) -> int:
        """Save *path* to a local file, atomically: a failed download leaves nothing behind, and
        downloads to the same file at once leave one of them whole. A target that is not a
        regular file (``/dev/null``, a FIFO) is written in place, never replaced.
        ``progress(n)`` hears of every *n* bytes written. *status*: what ``info(path,
        read=True)`` answered, for a caller that has asked already."""
        target = Path(local)
        if status is None:
            status = await self.info(path, read=True)
        try:
            regular = stat.S_ISREG(target.stat().st_mode)
        except FileNotFoundError:
            pass
        else:
            if not regular:
                with open(target, "wb") as f:
                    return await self._save(status, f, progress)
            if not overwrite:
                raise FileExistsError(f"{target} exists (use --force to overwrite it)")
        # A name of its own beside the target, so that the rename stays on one file system;
        # created as open() would, so that the file gets the mode the umask gives.
        while True:
            tmp = target.with_name(f".{target.name}.{secrets.token_hex(4)}.pydfs-part")
            try:
                fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o666)
                break
            except FileExistsError:
                continue
            except FileNotFoundError:  # named as the user wrote it, not as the part file
                raise FileNotFoundError(
                    errno.ENOENT, "no such directory", str(target.parent)
                ) from None
        try:
            with open(fd, "wb") as f:
                size = await self._save(status, f, progress)
            os.replace(tmp, target)
        finally:
            tmp.unlink(missing_ok=True)
        return size

    async def _save(
        self, status: wire.FileStatus, file: IO[bytes], progress: Progress | None
    ) -> int:
        size = 0
        async for data in self._read_status(status):
            file.write(data)
            size += len(data)
            if progress is not None:
                progress(len(data))
        return size


class _LeaseShelf:
    """Batch leases not used yet, with the loop time each was fetched at; the fetch of more
    under way, if any, and how many writers wait for it."""

    def __init__(self) -> None:
        self.grants: list[tuple[float, wire.UploadGrant]] = []
        self.next_batch = 1
        self.fetch: asyncio.Task[None] | None = None
        self.waiting = 0


def _retrieved(task: asyncio.Task[None]) -> None:
    """Mark a fetch's failure as seen: the writers that waited for it have raised it, and if
    none were left to wait, it needs no "exception was never retrieved" warning."""
    if not task.cancelled():
        task.exception()


def _remaining(stream: ByteSource) -> int | None:
    """How many bytes a seekable file has left, without reading them; None if unknown."""
    if inspect.iscoroutinefunction(stream.read):
        return None
    file = cast(IO[bytes], stream)
    try:
        if not file.seekable():
            return None
        here = file.tell()
        end = file.seek(0, io.SEEK_END)
        file.seek(here)
    except (OSError, ValueError, AttributeError):
        return None
    return max(0, end - here)


__all__ = [
    "AsyncClient",
    "AsyncSource",
    "ByteSource",
    "Progress",
    "resolve_namenode",
]

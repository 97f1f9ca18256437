"""AsyncClient: the one implementation of the SDK (the CLI and the blocking Client use it).

Metadata goes to the name node as JSON; file bytes go straight between this process and the data
nodes, through the client's ``Transfer`` (``client.transfer``). Paths are absolute DFS paths;
relative ones resolve against ``/``.

``client.files`` is imported by ``open``, so that a CLI command that only asks the name node
(over ``rpc.Rpc``) never imports it.
"""

from __future__ import annotations

import asyncio
import contextlib
import errno
import io
import os
import secrets
import stat
from collections.abc import AsyncGenerator, Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Literal, overload

from pydfs import paths, rpc, wire
from pydfs.client import blocks
from pydfs.client.transfer import AsyncSource, ByteSource, Progress, Transfer
from pydfs.config import ClientConfig, namenode_urls
from pydfs.errors import ChecksumMismatch, InvalidArgument, PydfsError
from pydfs.rpc import FAILOVER_TIMEOUT

BACKUP_WAIT = 1800.0  # seconds a metadata backup may take to start arriving
WRITE_MANY_CONCURRENCY = 128  # small files ``write_many`` has on their way at once
LARGE_AT_ONCE = 16  # larger files it has on their way beside them, at most
WAVES = 2  # waves of small files on their way at once: one's commits beside the next's blocks

if TYPE_CHECKING:
    import aiohttp

    from pydfs.client import files


def resolve_namenodes(
    namenode: str | Sequence[str] | None, config: ClientConfig | None = None
) -> list[str]:
    """The cluster's name nodes: *namenode* (one URL, a comma-separated list, or a list), else
    ``$PYDFS_NAMENODE``, else the client config's; ``host:port`` means ``http://host:port``."""
    given = namenode or os.environ.get("PYDFS_NAMENODE") or (config or ClientConfig.read()).namenode
    if not given or not any(u.strip() for u in _split(given)):
        raise InvalidArgument(
            "no name node configured: pass --namenode URL (or URL1,URL2), set PYDFS_NAMENODE, "
            "or start a local cluster with `pydfs cluster up`"
        )
    return [
        u if u.startswith(("http://", "https://")) else "http://" + u for u in namenode_urls(given)
    ]


def resolve_namenode(
    namenode: str | Sequence[str] | None, config: ClientConfig | None = None
) -> str:
    """``resolve_namenodes``, comma-separated: what a message or the client config shows."""
    return ",".join(resolve_namenodes(namenode, config))


def _split(value: str | Sequence[str]) -> list[str]:
    return value.split(",") if isinstance(value, str) else list(value)


class AsyncClient:
    """A connection to one pydfs cluster. Use ``async with AsyncClient(url) as fs: ...``.

    *namenode* is the cluster's name node, or several (a list, or ``"URL1,URL2"``): a call goes
    on to the next when one cannot be reached or cannot serve, for *failover_timeout* seconds
    (``rpc.Rpc``). The token (from ``pydfs login``) comes from *token*, else ``$PYDFS_TOKEN``,
    else the client config; *ca* (a CA bundle to verify an HTTPS name node) from *ca*,
    ``$PYDFS_CA`` or the config.
    """

    def __init__(
        self,
        namenode: str | Sequence[str] | None = None,
        *,
        token: str | None = None,
        ca: str | os.PathLike[str] | None = None,
        replication: int | None = None,
        block_size: int | None = None,
        stall_timeout: float = blocks.STALL_TIMEOUT,
        call_timeout: float | None = None,
        failover_timeout: float | None = None,
    ) -> None:
        config = ClientConfig.read()
        self.call_timeout = call_timeout  # seconds a name node call may take (None: no limit)
        self.stall_timeout = stall_timeout  # a data node silent this long is passed over
        self.namenodes = resolve_namenodes(namenode, config)
        self.namenode = ",".join(self.namenodes)  # as messages and the client config show it
        self.failover_timeout = failover_timeout or config.failover_timeout or FAILOVER_TIMEOUT
        self.token = token or os.environ.get("PYDFS_TOKEN") or config.token
        self.ca = ca or os.environ.get("PYDFS_CA") or config.ca
        self.user = config.user  # the name `pydfs login` saw, if any (for the default cwd)
        self.replication = replication
        self.block_size = block_size
        self._session: aiohttp.ClientSession | None = None
        self._links: rpc.Links | None = None
        self._rpc: rpc.Rpc | None = None
        self.transfer = Transfer(self)
        """Moves file data for this client: its file objects and ``pydfs.mount`` use it too."""

    async def __aenter__(self) -> AsyncClient:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def close(self) -> None:
        await self.transfer.close()
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
        self.transfer.forget()
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
            self._rpc = rpc.Rpc(
                self.namenodes,
                ca=self.ca,
                headers=headers,
                call_timeout=self.call_timeout,
                failover_timeout=self.failover_timeout,
            )
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

    async def symlink(self, path: str, target: str) -> wire.FileStatus:
        """A symbolic link at *path* to *target* (any text: stored as given, never checked)."""
        req = wire.SymlinkRequest(path, target)
        return await self.rpc.call("POST", "/fs/symlink", req, reply=wire.FileStatus)

    async def readlink(self, path: str) -> str:
        status = await self.info(path)
        if status.target is None:
            raise InvalidArgument(f"{path} is not a symbolic link")
        return status.target

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

    async def namenode_state(self) -> wire.NameNodeState:
        """The name node this client talks to: whether it leads, its metadata store."""
        return await self.rpc.call("GET", "/cluster/namenode", reply=wire.NameNodeState)

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

    async def delete_orphans(self) -> wire.Orphans:
        """After a restore of the metadata, let data nodes delete the blocks no file names
        (written after the backup); what they were. Admins only."""
        return await self.rpc.call("POST", "/fsck/delete-orphans", reply=wire.Orphans)

    async def backup(self, out: IO[bytes]) -> wire.Backup:
        """Write a consistent copy of the metadata, taken now, to *out*, in constant memory
        (admins only). ``ChecksumMismatch`` if what arrived is not what the name node hashed:
        write to a temporary file, and keep it only if this returns."""
        import hashlib

        import aiohttp

        url = f"{self.namenode}{wire.API}/admin/backup"
        headers = {"Authorization": f"Bearer {self.token}"} if self.token else {}
        # The copy is taken and checked before the first byte comes: a large one takes a while.
        timeout = aiohttp.ClientTimeout(connect=rpc.CONNECT_TIMEOUT, sock_read=BACKUP_WAIT)
        digest, size = hashlib.sha256(), 0
        try:
            async with self.session.post(url, headers=headers, timeout=timeout) as resp:
                await rpc.raise_for_error(resp)
                async for chunk in resp.content.iter_chunked(1 << 20):
                    digest.update(chunk)
                    out.write(chunk)
                    size += len(chunk)
                info = wire.Backup(
                    size,
                    resp.headers.get(wire.H_SHA256, ""),
                    int(resp.headers.get(wire.H_SCHEMA, "0")),
                    float(resp.headers.get(wire.H_TAKEN, "0")),
                )
        except Exception as exc:
            raise rpc.translate(exc, url) from exc
        if digest.hexdigest() != info.sha256:
            raise ChecksumMismatch(
                f"the backup received ({size} bytes) is not the one the name node sent "
                f"(SHA-256 {info.sha256 or 'missing'})"
            )
        return info

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
        expect: list[str] | None = None,
    ) -> wire.FileStatus:
        """Upload everything *stream* yields to *path*; the file appears, whole, only at the end;
        with *expect*, only if the file is still there and names exactly those blocks.

        *stream* has ``read(n)``, plain or ``async``. A seekable stream lets a block whose first
        data node fails be sent again elsewhere. ``progress(n)`` hears of every *n* new bytes
        taken from *stream* (bytes sent again after a failure are not counted twice).
        """
        return await self.transfer.write(
            path,
            stream,
            overwrite=overwrite,
            replication=replication,
            block_size=block_size,
            progress=progress,
            expect=expect,
        )

    async def write_bytes(self, path: str, data: bytes, **kwargs: Any) -> wire.FileStatus:
        return await self.write_stream(path, io.BytesIO(data), **kwargs)

    async def write_many(
        self,
        files: Mapping[str, bytes],
        *,
        overwrite: bool = True,
        replication: int | None = None,
        block_size: int | None = None,
        concurrency: int = WRITE_MANY_CONCURRENCY,
    ) -> dict[str, wire.FileStatus | PydfsError]:
        """Write many files, each as ``write_bytes`` would: small ones (a chunk at most)
        *concurrency* at a time, in ``WAVES`` waves, larger ones ``LARGE_AT_ONCE`` at a time
        beside them (so that all stay well under a user's limit of open uploads). Small ones
        take their leases from batches, their blocks go to each data node together
        (``client.puts``) and their commits to the name node (``client.commits``), so that the
        lot costs a few requests and fsyncs rather than some of each per file. Every file is
        on its own: the answer maps each path to its status, or to the error that refused it
        (nothing of that file stored); only a failure of the whole (cancellation, a bug)
        raises."""

        async def one(path: str, data: bytes) -> wire.FileStatus | PydfsError:
            try:
                return await self.write_bytes(
                    path, data, overwrite=overwrite, replication=replication, block_size=block_size
                )
            except PydfsError as exc:
                return exc

        # Small files go in waves: those that start together take their leases, send their
        # blocks and commit together, a few requests for the lot (``client.puts``, ``commits``).
        # Larger ones, whose writes take longer than a wave should wait, go beside them.
        width = max(1, concurrency)
        wave_size = -(-width // WAVES)  # the waves on their way hold *concurrency* files in all
        small = [(p, d) for p, d in files.items() if len(d) <= wire.CHUNK_SIZE]
        large = [(p, d) for p, d in files.items() if len(d) > wire.CHUNK_SIZE]
        limit = asyncio.Semaphore(min(width, LARGE_AT_ONCE))

        async def bounded(path: str, data: bytes) -> wire.FileStatus | PydfsError:
            async with limit:
                return await one(path, data)

        tasks: dict[str, asyncio.Task[wire.FileStatus | PydfsError]] = {}

        waves = asyncio.Semaphore(WAVES)

        async def wave(files: list[tuple[str, bytes]]) -> None:
            async with waves, asyncio.TaskGroup() as group:
                tasks.update((p, group.create_task(one(p, d))) for p, d in files)

        async with asyncio.TaskGroup() as group:
            tasks.update((p, group.create_task(bounded(p, d))) for p, d in large)
            for start in range(0, len(small), wave_size):
                group.create_task(wave(small[start : start + wave_size]))
        return {path: tasks[path].result() for path in files}

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

        transfer = self.transfer
        if mode == "rb":
            return files.Opening(files.AsyncReader.open(transfer, path, **options))
        if mode in ("wb", "xb"):
            return files.Opening(files.AsyncWriter.open(transfer, path, mode == "wb", **options))
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
        async for data in self.transfer.read_path(path, offset, length):
            if progress is not None:
                progress(len(data))
            yield data

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
        async for data in self.transfer.read(status):
            file.write(data)
            size += len(data)
            if progress is not None:
                progress(len(data))
        return size


__all__ = [
    "AsyncClient",
    "AsyncSource",
    "ByteSource",
    "Progress",
    "resolve_namenode",
    "resolve_namenodes",
]

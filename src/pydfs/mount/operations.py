"""The FUSE operations: each kernel request becomes one or two name node calls (metadata) or
reads and writes that go straight to the data nodes (file bytes).

Every name node call has a time limit (the client's ``call_timeout``), so that an unreachable
name node makes the caller's system call fail (EIO) rather than hang; the next call tries again,
so the mount recovers when the name node is back.

A file changed elsewhere under an open handle: a reader keeps the version it opened (its inode
number is that version's, ``Inodes``) or fails once its blocks are gone; a writer's close fails
(ESTALE) if the file it opened was replaced, moved or removed elsewhere, rather than replace
another's writes or recreate the file. A file this mount changes under an open reader takes a
new number too (``_changed``), so that the reader's pages stay in its own number's page cache.
"""

from __future__ import annotations

import errno
import functools
import logging
import os
import stat
from collections.abc import Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar, cast

import msgspec
import pyfuse3

from pydfs import errors, paths, wire
from pydfs.client import AsyncClient
from pydfs.mount.identity import Identity
from pydfs.mount.inodes import Inodes, Node, same_version
from pydfs.mount.reading import ReadHandle
from pydfs.mount.writeback import WriteHandle

log = logging.getLogger("pydfs.mount")

_ERRNO: list[tuple[type[Exception], int]] = [
    (errors.NotFound, errno.ENOENT),
    (errors.AlreadyExists, errno.EEXIST),
    (errors.NotADirectory, errno.ENOTDIR),
    (errors.IsADirectory, errno.EISDIR),
    (errors.DirectoryNotEmpty, errno.ENOTEMPTY),
    (errors.PermissionDenied, errno.EACCES),
    (errors.InvalidPath, errno.EINVAL),
    (errors.InvalidArgument, errno.EINVAL),
    (errors.NoSpace, errno.ENOSPC),
    (errors.InsufficientNodes, errno.ENOSPC),
    (errors.LimitExceeded, errno.EDQUOT),
    (errors.Conflict, errno.ESTALE),  # the file was replaced, moved or removed meanwhile
]


def errno_of(exc: BaseException) -> int:
    for kind, number in _ERRNO:
        if isinstance(exc, kind):
            return number
    if isinstance(exc, errors.PydfsError | TimeoutError):
        return errno.EIO  # unreachable, timed out, refused for a reason no errno names
    if isinstance(exc, OSError) and exc.errno:
        return exc.errno
    return errno.EIO


F = TypeVar("F", bound=Callable[..., Coroutine[Any, Any, Any]])


def fuse_errors(fn: F) -> F:
    """Turn what an operation raises into the errno the caller's system call returns."""

    @functools.wraps(fn)
    async def wrapper(*args: Any) -> Any:
        try:
            return await fn(*args)
        except pyfuse3.FUSEError:
            raise
        except Exception as exc:
            number = errno_of(exc)
            expected = isinstance(exc, errors.PydfsError | OSError | TimeoutError)
            level = logging.WARNING if number == errno.EIO else logging.DEBUG
            log.log(
                level, "%s: %s", fn.__name__, str(exc) or type(exc).__name__, exc_info=not expected
            )
            raise pyfuse3.FUSEError(number) from None

    return cast(F, wrapper)


@dataclass
class Options:
    ttl: float = 1.0  # seconds attributes and entries are cached, here and by the kernel
    read_ahead: int = 16 << 20  # bytes fetched ahead of a sequential reader
    spill_dir: str | None = None  # where files changed in place are kept until uploaded


class Operations(pyfuse3.Operations):
    def __init__(
        self, client: AsyncClient, identity: Identity, root: str, options: Options
    ) -> None:
        super().__init__()
        self.client = client
        self.identity = identity
        self.options = options
        self.inodes = Inodes(root, identity, options.ttl)
        self._handles: dict[int, ReadHandle | WriteHandle] = {}
        self._readers: dict[int, set[ReadHandle]] = {}  # by inode
        self._writers: dict[int, set[WriteHandle]] = {}  # by inode
        self._listings: dict[int, tuple[int, list[wire.FileStatus]]] = {}  # (dir, entries)
        self._next_fh = 1

    # --- attributes -----------------------------------------------------------------------

    async def _stat(self, path: str) -> wire.FileStatus:
        status = self.inodes.cached(path)
        if status is not None:
            return status
        if self.inodes.known_missing(path):
            raise pyfuse3.FUSEError(errno.ENOENT)
        try:
            status = await self.client.info(path)
        except FileNotFoundError:
            self.inodes.missing(path)
            raise
        self.inodes.remember(path, status)
        return status

    def _attributes(self, node: Node, status: wire.FileStatus) -> pyfuse3.EntryAttributes:
        """*status* as the kernel should see it: with what an open writer holds."""
        writers = self._writers.get(node.ino)
        if writers:
            latest = max(writers, key=lambda w: w.changed)
            if latest.dirty:
                mtime = latest.mtime if latest.mtime is not None else latest.changed
                status = msgspec.structs.replace(status, size=latest.size, mtime=mtime)
        return self.inodes.attributes(node, status)

    async def _entry(self, path: str, status: wire.FileStatus) -> pyfuse3.EntryAttributes:
        node = self.inodes.remember(path, status, lookup=True)
        return self._attributes(node, status)

    @fuse_errors
    async def lookup(
        self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self.inodes.child(parent_inode, name)
        try:
            status = await self._stat(path)
        except (FileNotFoundError, pyfuse3.FUSEError):
            if self.inodes.known_missing(path):
                negative = pyfuse3.EntryAttributes()  # the kernel caches the miss, for the TTL
                negative.st_ino = 0
                negative.entry_timeout = self.options.ttl
                return negative
            raise
        return await self._entry(path, status)

    async def forget(self, inode_list: Sequence[tuple[int, int]]) -> None:
        for ino, count in inode_list:
            self.inodes.forget(ino, count)

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        node = self.inodes.node(inode)
        if node.path is not None:
            status = await self._stat(node.path)
            if self.inodes.remember(node.path, status) is node:
                return self._attributes(node, status)
        # Unlinked or replaced, still open: the version it was (what its handles read).
        if node.known is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return self._attributes(node, node.known)

    @fuse_errors
    async def setattr(
        self,
        inode: int,
        attr: pyfuse3.EntryAttributes,
        fields: pyfuse3.SetattrFields,
        fh: int | None,
        ctx: pyfuse3.RequestContext,
    ) -> pyfuse3.EntryAttributes:
        path = self.inodes.path(inode)
        handle = self._handles.get(fh) if fh is not None else None
        writer = handle if isinstance(handle, WriteHandle) else self._writer(inode)
        if fields.update_size:
            if writer is not None:
                async with writer.lock:
                    await writer.truncate(attr.st_size)
            else:
                await self._truncate(inode, path, attr.st_size)
        if fields.update_mode:
            await self.client.chmod(path, attr.st_mode & 0o1777)
        if fields.update_uid or fields.update_gid:
            await self._chown(path, attr, fields)
        if fields.update_mtime:
            mtime = attr.st_mtime_ns / 1e9
            if writer is not None and writer.dirty:
                writer.mtime = mtime  # the commit would overwrite it: set after the commit
            else:
                await self.client.rpc.call(
                    "POST", "/fs/times", wire.TimesRequest(path, mtime), reply=wire.FileStatus
                )
        self.inodes.stale(path)
        status = await self.client.info(path)
        node = self._changed(inode, status)
        return self._attributes(node or self.inodes.node(inode), status)

    async def _truncate(self, inode: int, path: str, size: int) -> None:
        base = await self.client.info(path)
        if self.inodes.remember(path, base).ino != inode:
            raise pyfuse3.FUSEError(errno.ESTALE)  # replaced elsewhere meanwhile
        writer = WriteHandle(
            self.client, lambda: path, base, truncate=size == 0, spill_dir=self.options.spill_dir
        )
        try:
            await writer.truncate(size)
            await writer.commit()
        finally:
            await writer.close()

    async def _chown(
        self, path: str, attr: pyfuse3.EntryAttributes, fields: pyfuse3.SetattrFields
    ) -> None:
        status = await self.client.info(path)
        owner = self.identity.owner_named(attr.st_uid) if fields.update_uid else None
        group = self.identity.group_named(attr.st_gid) if fields.update_gid else None
        # The mounting user's own uid is its pydfs user (the name node decides whether it may
        # take the file); its own gid stands for whatever group the file has, so that tools
        # that preserve ownership (cp -a, tar, rsync) keep the group it inherited.
        if owner == status.owner:
            owner = None
        if group in (status.group, None) or attr.st_gid == self.identity.gid:
            group = None
        if owner is not None or group is not None:
            await self.client.chown(path, owner, group)

    @fuse_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        status = await self._stat(self.inodes.path(inode))
        return self.identity.may(status, mode & 7)

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        space = await self.client.space()
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = 4096
        st.f_blocks = space.raw_capacity // max(1, space.replication) // 4096
        st.f_bfree = st.f_bavail = space.usable // 4096
        st.f_files = st.f_ffree = st.f_favail = 1 << 32
        st.f_namemax = 255
        return st

    # --- directories ----------------------------------------------------------------------

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        path = self.inodes.path(inode)
        entries = await self.client.ls(path)
        fh = self._fh()
        self._listings[fh] = (inode, entries)
        return fh

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        inode, entries = self._listings.get(fh, (0, []))
        node = self.inodes.node(inode) if inode else None
        parent = self.inodes.ino_of(paths.parent(node.path)) if node and node.path else None
        dots = [(b".", inode), (b"..", parent or inode)]
        for index in range(start_id, 2 + len(entries)):
            if index < 2:  # the kernel holds no lookup of these
                name, ino = dots[index]
                if not pyfuse3.readdir_reply(token, name, _directory(ino), index + 1):
                    break
                continue
            status = entries[index - 2]
            node = self.inodes.remember(status.path, status)
            attrs = self._attributes(node, status)
            if not pyfuse3.readdir_reply(token, status.name.encode(), attrs, index + 1):
                break
            node.lookups += 1  # the kernel holds what readdirplus gave it

    async def releasedir(self, fh: int) -> None:
        self._listings.pop(fh, None)

    async def fsyncdir(self, fh: int, datasync: bool) -> None:
        return  # every namespace change is durable when its call returns

    @fuse_errors
    async def mkdir(
        self, parent_inode: int, name: bytes, mode: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        path = self.inodes.child(parent_inode, name)
        status = await self.client.mkdir(path)
        status = await self._set_mode(status, mode & ~ctx.umask)
        self.inodes.stale(path)
        return await self._entry(path, status)

    async def _set_mode(self, status: wire.FileStatus, mode: int) -> wire.FileStatus:
        mode &= 0o1777
        if status.mode != mode:
            await self.client.chmod(status.path, mode)
            status = msgspec.structs.replace(status, mode=mode)
        return status

    @fuse_errors
    async def unlink(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self.inodes.child(parent_inode, name)
        await self.client.delete(path)
        self.inodes.removed(path)

    @fuse_errors
    async def rmdir(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> None:
        path = self.inodes.child(parent_inode, name)
        await self.client.rmdir(path)
        self.inodes.removed(path)

    @fuse_errors
    async def rename(
        self,
        parent_inode_old: int,
        name_old: bytes,
        parent_inode_new: int,
        name_new: bytes,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> None:
        if flags & pyfuse3.RENAME_EXCHANGE:
            raise pyfuse3.FUSEError(errno.EINVAL)  # the namespace cannot swap two entries
        src = self.inodes.child(parent_inode_old, name_old)
        dst = self.inodes.child(parent_inode_new, name_new)
        await self._publish_streams(src)
        overwrite = not flags & pyfuse3.RENAME_NOREPLACE
        move = wire.MoveRequest(src, dst, overwrite, into=False)
        try:
            await self.client.rpc.call("POST", "/fs/move", move, reply=wire.FileStatus)
        except errors.AlreadyExists:
            if not overwrite:
                raise
            # The name node replaces files only; rename(2) also replaces an empty directory
            # by a directory, and says EISDIR or ENOTDIR when the two kinds differ.
            source = await self.client.info(src)
            target = await self.client.info(dst)
            if target.type == "dir" and source.type != "dir":
                raise pyfuse3.FUSEError(errno.EISDIR) from None
            if target.type != "dir" and source.type == "dir":
                raise pyfuse3.FUSEError(errno.ENOTDIR) from None
            await self.client.rmdir(dst)  # refused unless empty: ENOTEMPTY
            self.inodes.removed(dst)
            await self.client.rpc.call("POST", "/fs/move", move, reply=wire.FileStatus)
        self.inodes.moved(src, dst)

    async def _publish_streams(self, path: str) -> None:
        """Commit the uploads under way of files at or below *path*, about to move: an upload
        names the path it started at (their writers go on, in place)."""
        prefix = path.rstrip("/") + "/"
        for writers in list(self._writers.values()):
            for writer in list(writers):
                where = self.inodes.node(writer.ino).path or ""
                if writer.streaming and (where == path or where.startswith(prefix)):
                    await self._commit(writer)

    @fuse_errors
    async def link(
        self, inode: int, new_parent_inode: int, new_name: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        # A pydfs file is one namespace entry (its blocks are shared by copies, not by names):
        # two names for one mutable file would need link counts the namespace does not keep.
        raise pyfuse3.FUSEError(errno.EPERM)

    # --- symbolic links ------------------------------------------------------------------

    @fuse_errors
    async def symlink(
        self, parent_inode: int, name: bytes, target: bytes, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        """The name node keeps the target as text and never follows it; the kernel does."""
        path = self.inodes.child(parent_inode, name)
        try:
            text = target.decode()
        except UnicodeDecodeError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None  # names are UTF-8 in pydfs
        status = await self.client.symlink(path, text)
        self.inodes.stale(path)
        return await self._entry(path, status)

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        node = self.inodes.node(inode)
        status = await self._stat(node.path) if node.path is not None else node.known
        if status is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        if status.target is None:
            raise pyfuse3.FUSEError(errno.EINVAL)
        return status.target.encode()

    # --- files ----------------------------------------------------------------------------

    @fuse_errors
    async def create(
        self,
        parent_inode: int,
        name: bytes,
        mode: int,
        flags: int,
        ctx: pyfuse3.RequestContext,
    ) -> tuple[pyfuse3.FileInfo, pyfuse3.EntryAttributes]:
        path = self.inodes.child(parent_inode, name)
        truncate = False  # a new file is empty already
        try:
            status = await self.client.touch(path)
        except errors.AlreadyExists:
            if flags & os.O_EXCL:
                raise
            status = await self.client.info(path)  # made meanwhile: open it
            if status.type == "dir":
                raise
            truncate = bool(flags & os.O_TRUNC)
            writing = truncate or flags & os.O_ACCMODE != os.O_RDONLY
            if writing and not self.identity.may(status, 2):
                raise pyfuse3.FUSEError(errno.EACCES) from None
        else:
            status = await self._set_mode(status, mode & ~ctx.umask)
        self.inodes.stale(path)
        attrs = await self._entry(path, status)
        node = self.inodes.node(attrs.st_ino)
        return self._open_writer(node, status, truncate=truncate), attrs

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        node = self.inodes.node(inode)
        if node.path is None:  # gone; if replaced elsewhere, the kernel looks the name up again
            raise pyfuse3.FUSEError(errno.ESTALE if node.lost else errno.ENOENT)
        path = node.path
        reading = flags & os.O_ACCMODE == os.O_RDONLY and not flags & os.O_TRUNC
        status = await self.client.info(path, read=reading)  # close-to-open: always asked
        if status.type == "dir":
            raise pyfuse3.FUSEError(errno.EISDIR)
        if self.inodes.remember(path, status) is not node:
            # Another version than the kernel's inode: ESTALE makes the kernel look the name
            # up again (getting the new version's inode) and open that.
            raise pyfuse3.FUSEError(errno.ESTALE)
        if reading:
            fh = self._fh()
            handle = ReadHandle(self.client, status, self.options.read_ahead, ino=node.ino)
            self._handles[fh] = handle
            self._readers.setdefault(node.ino, set()).add(handle)
            # The kernel keeps the pages it has only if they are of this very version.
            version = tuple(b.id for b in status.blocks or [])
            keep, node.cached_version = node.cached_version == version, version
            return pyfuse3.FileInfo(fh=fh, keep_cache=keep)
        if not self.identity.may(status, 2):
            raise pyfuse3.FUSEError(errno.EACCES)
        return self._open_writer(node, status, truncate=bool(flags & os.O_TRUNC))

    def _open_writer(
        self, node: Node, status: wire.FileStatus, *, truncate: bool
    ) -> pyfuse3.FileInfo:
        def where() -> str | None:
            if node.path is None and node.lost:
                raise errors.Conflict(
                    f"{status.path} was replaced, moved or removed elsewhere while open for "
                    "writing: its writes are not saved"
                )
            return node.path

        handle = WriteHandle(
            self.client,
            where,
            status,
            truncate=truncate,
            spill_dir=self.options.spill_dir,
            ino=node.ino,
            committed=lambda made: self._committed(node.ino, made),
        )
        fh = self._fh()
        self._handles[fh] = handle
        self._writers.setdefault(node.ino, set()).add(handle)
        node.cached_version = None
        return pyfuse3.FileInfo(fh=fh, keep_cache=False)

    def _writer(self, ino: int) -> WriteHandle | None:
        writers = self._writers.get(ino)
        return max(writers, key=lambda w: w.changed) if writers else None

    def _fh(self) -> int:
        fh, self._next_fh = self._next_fh, self._next_fh + 1
        return fh

    def _handle(self, fh: int) -> ReadHandle | WriteHandle:
        handle = self._handles.get(fh)
        if handle is None:
            raise pyfuse3.FUSEError(errno.EBADF)
        return handle

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        handle = self._handle(fh)
        if isinstance(handle, ReadHandle):
            return await handle.read(off, size)
        async with handle.lock:
            return await handle.read(off, size)

    @fuse_errors
    async def write(self, fh: int, off: int, buf: bytes) -> int:
        handle = self._handle(fh)
        if not isinstance(handle, WriteHandle):
            raise pyfuse3.FUSEError(errno.EBADF)
        async with handle.lock:
            await handle.write(off, buf)
        return len(buf)

    @fuse_errors
    async def flush(self, fh: int) -> None:
        handle = self._handle(fh)
        if isinstance(handle, WriteHandle):
            await self._commit(handle)

    @fuse_errors
    async def fsync(self, fh: int, datasync: bool) -> None:
        await self.flush(fh)

    async def _commit(self, handle: WriteHandle) -> None:
        try:
            async with handle.lock:
                status = await handle.commit()
        except Exception as exc:  # the caller's close() or fsync() fails: say why here too
            log.warning("writes not saved: %s", str(exc) or type(exc).__name__)
            raise pyfuse3.FUSEError(errno_of(exc)) from None
        if status is not None:
            self._committed(handle.ino, status)

    def _committed(self, ino: int, status: wire.FileStatus) -> None:
        """A writer open on *ino* committed *status*."""
        self.inodes.stale(status.path)
        node = self._changed(ino, status)
        if node is not None:
            node.cached_version = None

    def _changed(self, ino: int, status: wire.FileStatus) -> Node | None:
        """This mount changed *ino*'s file to *status*. A reader still open on it keeps the
        version it opened, and its reads land in the kernel's page cache of *ino* (one per
        inode, shared by its handles; FUSE takes no handle off it once open), where later opens
        would read them: the file then takes a new number (``Inodes.changed``), and the kernel
        forgets its entry, to look the name up again."""
        pinned = any(not same_version(r.status, status) for r in self._readers.get(ino, ()))
        before = self.inodes.ino_of(status.path)
        node = self.inodes.changed(ino, status, pinned=pinned)
        parent = self.inodes.ino_of(paths.parent(status.path))
        if before is not None and self.inodes.ino_of(status.path) != before and parent is not None:
            name = paths.basename(status.path).encode()
            pyfuse3.invalidate_entry_async(parent, name, ignore_enoent=True)
        return node

    async def release(self, fh: int) -> None:
        handle = self._handles.pop(fh, None)
        if isinstance(handle, ReadHandle):
            handle.close()
            _unlist(self._readers, handle)
        elif handle is not None:
            try:
                await self._commit(handle)
            except pyfuse3.FUSEError:
                pass  # logged; close() was told at flush
            finally:
                await handle.close()
                _unlist(self._writers, handle)

    async def close(self) -> None:
        """Drop what is still open (an unmount with files open: their writes are lost, as
        an uncommitted upload is)."""
        for handle in list(self._handles.values()):
            if isinstance(handle, WriteHandle):
                await handle.close()
            else:
                handle.close()
        self._handles.clear()
        self._readers.clear()

    # --- what pydfs does not hold ---------------------------------------------------------

    @fuse_errors
    async def mknod(
        self, parent_inode: int, name: bytes, mode: int, rdev: int, ctx: pyfuse3.RequestContext
    ) -> pyfuse3.EntryAttributes:
        raise pyfuse3.FUSEError(errno.EPERM)  # regular files and directories only


def _directory(ino: int) -> pyfuse3.EntryAttributes:
    """What readdir tells of ``.`` and ``..``: their inode and that they are directories."""
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = ino
    entry.st_mode = stat.S_IFDIR | 0o755
    return entry


H = TypeVar("H", ReadHandle, WriteHandle)


def _unlist(by_inode: dict[int, set[H]], handle: H) -> None:
    """Take a released *handle* off its inode's open handles."""
    handles = by_inode.get(handle.ino)
    if handles is not None:
        handles.discard(handle)
        if not handles:
            del by_inode[handle.ino]

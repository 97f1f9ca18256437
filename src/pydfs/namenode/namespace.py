"""The directory tree's operations: every change of its shape, each one transaction (a file's
new content is committed by ``commits``).

Paths arrive normalised (``pydfs.paths``). Each mutating method is one durable transaction, so a
crash leaves either the old or the new state. Blocks are immutable and may be shared: a copy
shares its source's blocks, and a block is released (its replicas queued for deletion in the
trash) only when no file names it any more.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from pydfs import paths, wire
from pydfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    InvalidPath,
    IsADirectory,
    NotADirectory,
    NotFound,
)
from pydfs.namenode import status
from pydfs.namenode.auth import SYSTEM, User, home_of
from pydfs.namenode.membership import Membership
from pydfs.namenode.permissions import R, W, X, allowed, check, check_sticky
from pydfs.namenode.store import Inode, Store, Tx
from pydfs.namenode.store.interface import NewInode, Placed
from pydfs.namenode.tree import ROOT_ID, Tree, Walk


def no_file_named_as_directory(path: str, existing: Inode | None, directory: bool) -> None:
    """``touch f/`` or ``put x nodir/``: a name written with a trailing '/' is a directory's,
    as ``open(2)`` and coreutils take it (an existing directory is refused by the caller)."""
    if directory and (existing is None or not existing.is_dir):
        raise NotADirectory(f"{path}/: not a directory")


def _not_followed(path: str, target: str) -> None:
    """Reading a link: the name node does not follow it (a mount's kernel does)."""
    raise InvalidArgument(f"{path} is a symbolic link to {target}: pydfs does not follow links")


class Namespace:
    def __init__(
        self,
        store: Store,
        membership: Membership,
        *,
        replication: int,
        block_size: int,
        umask: int = 0o022,
    ) -> None:
        self.store = store
        self.membership = membership
        self.replication = replication
        self.block_size = block_size
        self.umask = umask
        self.tree = Tree(store)
        # Signs read tokens for the blocks of a file a caller opens (set by the name node).
        self.read_token: Callable[[str], str] | None = None

    async def open(self) -> None:
        """Make the root of a fresh namespace."""
        async with self.store.write() as tx:
            if await tx.inodes.get(ROOT_ID) is None:
                root = NewInode(0, "", "d", SYSTEM, SYSTEM, 0o755, time.time())
                await tx.inodes.insert(root, inode_id=ROOT_ID)

    # --- lookups --------------------------------------------------------------------------

    async def lookup(
        self, path: str, user: User | None = None, *, in_it: bool = False
    ) -> Inode | None:
        async with self.tree.reading() as walk:
            return await walk.lookup(path, user, in_it=in_it)

    async def resolve_dir(
        self, path: str, user: User | None = None, *, in_it: bool = False
    ) -> Inode:
        async with self.tree.reading() as walk:
            return await walk.resolve_dir(path, user, in_it=in_it)

    async def status_of(
        self, tx: Tx, node: Inode, path: str, *, tokens: bool = False
    ) -> wire.FileStatus:
        """With its blocks, if a file."""
        if node.type != "f":
            return status.of(node, path)
        return self.status_with(node, path, await tx.blocks.of_file(node.id), tokens=tokens)

    def status_with(
        self, node: Inode, path: str, placed: list[Placed], *, tokens: bool = False
    ) -> wire.FileStatus:
        """A file's status, its blocks *placed* as ``Blocks.of_file`` finds them."""
        read_token = self.read_token if tokens else None
        return status.of(node, path, status.blocks(placed, self.membership, read_token))

    async def stat(
        self, path: str, user: User | None = None, *, read: bool = False
    ) -> wire.FileStatus:
        """A file's or directory's status with its blocks; with *read*, the caller wants to read
        the file, must have r on it, and gets block read tokens. A caller without r gets no
        blocks: their CRCs would tell a small file's content (a 4-digit PIN in a moment)."""
        async with self.tree.reading() as walk:
            node = await walk.resolve(path, user)
            if read and node.target is not None:
                _not_followed(path, node.target)
            if not node.is_dir and not allowed(user, node.owner, node.group, node.mode, R):
                if read:
                    check(user, node, R, path)
                return status.of(node, path)
            return await self.status_of(walk.tx, node, path, tokens=read)

    async def listdir(self, path: str, user: User | None = None) -> wire.Listing:
        async with self.tree.reading() as walk:
            node = await walk.resolve(path, user)
            if not node.is_dir:
                return wire.Listing(path, [status.of(node, path)])
            check(user, node, R, path)
            return status.listing(path, await walk.tx.inodes.entries(node.id))

    async def listdir_page(
        self,
        path: str,
        user: User | None = None,
        *,
        limit: int,
        after: str | None = None,
        before: str | None = None,
    ) -> status.DirPage:
        """At most *limit* entries of a directory, in name order: the first ones, those after
        the name *after*, or the last ones before the name *before*. For a directory too large
        to show whole; names are unique, so the pages neither repeat nor skip an entry."""
        if any(name is not None and "\0" in name for name in (after, before)):
            raise InvalidPath("a page starts after or before a name, and no name holds a NUL")
        async with self.tree.reading() as walk:
            node = await walk.resolve_dir(path, user)
            check(user, node, R, path)
            inodes = walk.tx.inodes
            children = await inodes.page(node.id, limit, after=after, before=before)
            kinds = await inodes.tally(node.id)
            earlier = bool(children) and await inodes.beyond(node.id, children[0].name, False)
            later = bool(children) and await inodes.beyond(node.id, children[-1].name, True)
        dirs, _ = kinds.get("d", (0, 0))
        files, size = kinds.get("f", (0, 0))
        prefix = path.rstrip("/") + "/"
        entries = [status.of(n, prefix + n.name) for n in children]
        return status.DirPage(path, entries, earlier, later, dirs, files, size)

    # --- directories ----------------------------------------------------------------------

    async def insert(
        self,
        tx: Tx,
        parent: Inode,
        name: str,
        type: str,
        user: User | None,
        *,
        size: int = 0,
        replication: int = 0,
        block_size: int = 0,
        mode: int | None = None,
        owner: str | None = None,
        group: str | None = None,
        target: str | None = None,
        sha256: str | None = None,
    ) -> Inode:
        """A new inode owned by *user*, in its parent's group (as BSD and HDFS do), with the
        mode bits 0777 (directories) or 0666 (files) less the umask, unless *mode* is given;
        returned as stored, without reading it back."""
        now = time.time()
        if mode is None:
            mode = (0o777 if type == "d" else 0o666) & ~self.umask
        if owner is None:
            owner = user.name if user is not None else SYSTEM
        group = group or parent.group
        new = NewInode(
            parent.id, name, type, owner, group, mode, now, size, replication, block_size, target
        )
        inode_id = await tx.inodes.insert(new, sha256=sha256)
        await tx.inodes.touch([parent.id], now)
        return Inode(
            inode_id,
            parent.id,
            name,
            type,
            size,
            now,
            now,
            owner,
            replication,
            block_size,
            group,
            mode,
            target,
        )

    async def mkdir(
        self,
        path: str,
        user: User | None = None,
        *,
        parents: bool = False,
        mode: int | None = None,
        group: str | None = None,
    ) -> wire.FileStatus:
        if path == paths.ROOT:
            if parents:
                return await self.stat(path, user)
            raise AlreadyExists("/ already exists")
        async with self.tree.writing() as walk:
            made = await self._mkdir(walk, path, user, parents=parents, mode=mode, group=group)
        return status.of(made, path)

    async def _mkdir(
        self,
        walk: Walk,
        path: str,
        user: User | None,
        *,
        parents: bool = False,
        mode: int | None = None,
        owner: str | None = None,
        group: str | None = None,
    ) -> Inode:
        todo = [path]  # the path, then each missing ancestor, up to an existing one
        while (parent := await walk.lookup(paths.parent(todo[-1]), user, in_it=True)) is None:
            if not parents:
                raise NotFound(f"{paths.parent(path)}: no such directory (use -p to create it)")
            todo.append(paths.parent(todo[-1]))
        if len(todo) == 1 and parent.is_dir:
            check(user, parent, X, paths.parent(path))
            existing = await walk.tx.inodes.child(parent.id, paths.basename(path))
            if existing is not None:
                if parents and existing.is_dir:
                    return existing
                raise AlreadyExists(f"{path} already exists")
        for p in reversed(todo):
            if not parent.is_dir:
                raise NotADirectory(f"{paths.parent(p)} is not a directory")
            check(user, parent, W | X, paths.parent(p))
            last = p == path
            try:
                made = await self.insert(
                    walk.tx,
                    parent,
                    paths.basename(p),
                    "d",
                    user,
                    mode=mode if last else None,
                    owner=owner if last else None,
                    group=group if last else None,
                )
            except AlreadyExists:
                # Made meanwhile through another name node (a shared store at READ COMMITTED):
                # with -p, a directory goes on as if it had been there.
                found = await walk.tx.inodes.child(parent.id, paths.basename(p))
                if not parents or found is None or (last and not found.is_dir):
                    raise
                made = found
            parent = made
        return parent

    async def create_file(
        self, path: str, user: User | None = None, *, directory: bool = False
    ) -> wire.FileStatus:
        """An empty file at *path*; *directory*: the caller wrote *path* as a directory's
        (``paths.names_directory``), where no file is made."""
        if path == paths.ROOT:
            raise AlreadyExists("/ already exists")
        async with self.tree.writing() as walk:
            parent, existing = await walk.entry(path, user)
            no_file_named_as_directory(path, existing, directory)
            if existing is not None:
                raise AlreadyExists(f"{path} already exists")
            check(user, parent, W, paths.parent(path))
            made = await self.insert(
                walk.tx,
                parent,
                paths.basename(path),
                "f",
                user,
                replication=self.replication,
                block_size=self.block_size,
            )
            return status.of(made, path, [])  # a new file names no block

    async def symlink(self, path: str, target: str, user: User | None = None) -> wire.FileStatus:
        """A symbolic link at *path* to *target*: any text, stored as given, never resolved or
        followed by the name node (its walks see the link itself, as ``lstat`` does)."""
        if not target or "\0" in target or len(target.encode()) > wire.MAX_LINK_TARGET:
            raise InvalidArgument(
                f"a link target is 1 to {wire.MAX_LINK_TARGET} bytes without NUL characters"
            )
        if path == paths.ROOT:
            raise AlreadyExists("/ already exists")
        async with self.tree.writing() as walk:
            parent, existing = await walk.entry(path, user)
            if existing is not None:
                raise AlreadyExists(f"{path} already exists")
            check(user, parent, W, paths.parent(path))
            made = await self.insert(
                walk.tx, parent, paths.basename(path), "l", user, mode=0o777, target=target
            )
            return status.of(made, path)

    async def readlink(self, path: str, user: User | None = None) -> str:
        async with self.tree.reading() as walk:
            node = await walk.resolve(path, user)
        if node.target is None:
            raise InvalidArgument(f"{path} is not a symbolic link")
        return node.target

    # --- removal --------------------------------------------------------------------------

    @staticmethod
    async def _release(tx: Tx, nodes: Iterable[Inode], *, keep_inodes: bool = False) -> int:
        """Drop the content of *nodes* (and the inodes unless *keep_inodes*); their blocks go
        to the trash unless another file still names them. Returns how many files lost their
        content."""
        nodes = list(nodes)
        ids = [n.id for n in nodes]
        named = await tx.blocks.detach(ids)
        if not keep_inodes:
            await tx.inodes.delete(ids)
        await tx.blocks.release(named)
        return sum(n.type == "f" for n in nodes)

    async def delete(
        self, path: str, user: User | None = None, *, recursive: bool = False, type: str = "any"
    ) -> int:
        """Remove a file or directory; returns how many files went with it."""
        async with self.tree.writing() as walk:
            return await self._delete_in(walk, path, user, recursive=recursive, type=type)

    async def delete_many(
        self,
        targets: list[str],
        user: User | None = None,
        *,
        recursive: bool = False,
        type: str = "any",
    ) -> tuple[int, list[str]]:
        """Remove several files or directories in one transaction, deepest first, each as
        ``delete`` would: all of them, or (on any refusal but a missing path) none. Returns
        how many files went, and the paths that were not there (a path below one removed
        earlier in the batch among them)."""
        files, missing = 0, []
        async with self.tree.writing() as walk:
            for path in sorted(set(targets), key=lambda p: (-p.count("/"), p)):
                try:
                    files += await self._delete_in(walk, path, user, recursive=recursive, type=type)
                except NotFound:
                    missing.append(path)
        return files, missing

    async def _delete_in(
        self, walk: Walk, path: str, user: User | None, *, recursive: bool, type: str
    ) -> int:
        if path == paths.ROOT:
            raise InvalidArgument("the root directory cannot be deleted (use initialize)")
        tx = walk.tx
        node = await walk.resolve(path, user)
        if type == "file" and node.is_dir:
            raise IsADirectory(f"{path} is a directory")
        if type == "dir" and not node.is_dir:
            raise NotADirectory(f"{path} is not a directory")
        if node.is_dir:
            await walk.reshape()
        if node.is_dir and not recursive and await tx.inodes.has_children(node.id):
            raise DirectoryNotEmpty(f"{path} is not empty")
        parent = await tx.inodes.get(node.parent)
        if parent is None:  # its directory removed meanwhile, through another name node
            raise NotFound(f"{path}: no such file or directory")
        check(user, parent, W | X, paths.parent(path))
        check_sticky(user, parent, node, path)
        doomed = await walk.reach(node, user, want=R | W | X)  # as ``rm -r`` needs
        files = await self._release(tx, doomed)
        await tx.inodes.touch([node.parent], time.time())
        return files

    async def format(self) -> tuple[int, int]:
        """Remove everything but the root; returns (files, blocks) removed."""
        async with self.tree.writing() as walk:
            await walk.reshape()
            tx = walk.tx
            files = (await tx.inodes.counts()).get("f", 0)
            blocks = await tx.blocks.release_all()
            await tx.inodes.delete_all_but(ROOT_ID)
            await tx.inodes.touch([ROOT_ID], time.time())
        return files, blocks

    # --- copies and moves ------------------------------------------------------------------

    async def _target(
        self, walk: Walk, src: str, dst: str, user: User | None
    ) -> tuple[str, Inode | None]:
        """Where a copy or move of *src* to *dst* lands: into *dst* when it is a directory."""
        existing = await walk.lookup(dst, user)
        if existing is not None and existing.is_dir:
            dst = paths.join(dst, paths.basename(src))
            existing = await walk.lookup(dst, user)
        return dst, existing

    @staticmethod
    async def _free_copy_name(walk: Walk, src: str) -> str:
        directory, name = paths.parent(src), paths.basename(src)
        stem, dot, ext = name.rpartition(".")
        if not stem:  # no extension, or a dot file such as ".profile"
            stem, dot, ext = name, "", ""
        for n in range(1, 10_000):
            label = "copy" if n == 1 else f"copy {n}"
            candidate = paths.join(directory, f"{stem} ({label}){dot}{ext}")
            if await walk.lookup(candidate) is None:
                return candidate
        raise AlreadyExists(f"no free name for a copy of {src}")

    async def copy(
        self, src: str, dst: str | None, user: User | None = None, *, overwrite: bool = False
    ) -> wire.FileStatus:
        """Copy a file by sharing its immutable blocks: no byte moves."""
        async with self.tree.writing() as walk:
            tx = walk.tx
            source = await walk.resolve(src, user)
            if source.is_dir:
                raise IsADirectory(f"{src} is a directory (file_copy copies files)")
            check(user, source, R, src)
            if dst is None:
                target, existing = await self._free_copy_name(walk, src), None
            else:
                target, existing = await self._target(walk, src, dst, user)
            if target == src:
                raise AlreadyExists(f"{src} cannot be copied onto itself")
            parent = await walk.resolve_dir(paths.parent(target), user)
            check(user, parent, W | X, paths.parent(target))
            if existing is not None:
                if existing.is_dir:
                    raise IsADirectory(f"{target} is a directory")
                if not overwrite:
                    raise AlreadyExists(f"{target} already exists")
                check_sticky(user, parent, existing, target)
                # Blocks it shares with the source survive: the source still names them.
                await self._release(tx, [existing])
            copied = await self.insert(
                tx,
                parent,
                paths.basename(target),
                source.type,  # a link's copy is a link (to the same target)
                user,
                size=source.size,
                replication=source.replication,
                block_size=source.block_size,
                mode=0o777 if source.target is not None else None,
                target=source.target,
            )
            await tx.blocks.share(source.id, copied.id)
            # The source is held from here: read again what a replace committed since the walk
            # (a size of one version with the blocks of another would be a wrong file).
            held = await tx.inodes.get(source.id)
            if held is None:
                raise NotFound(f"{src} was removed meanwhile")
            shape = (held.size, held.replication, held.block_size)
            if shape != (source.size, source.replication, source.block_size):
                await tx.inodes.set_content(
                    copied.id,
                    size=held.size,
                    mtime=copied.mtime,
                    replication=held.replication,
                    block_size=held.block_size,
                )
                copied = copied._replace(
                    size=held.size, replication=held.replication, block_size=held.block_size
                )
            await tx.inodes.set_sha256(copied.id, await tx.inodes.sha256(source.id))  # same bytes
            return await self.status_of(tx, copied, target)

    async def move(
        self,
        src: str,
        dst: str,
        user: User | None = None,
        *,
        overwrite: bool = False,
        into: bool = True,
    ) -> wire.FileStatus:
        """Move *src* to *dst*, or into *dst* when it is a directory and *into* is true (as
        ``mv``; without *into*, as ``rename(2)``, *dst* is the new name whatever stands there)."""
        if src == paths.ROOT:
            raise InvalidArgument("the root directory cannot be moved")
        async with self.tree.writing() as walk:
            tx = walk.tx
            source = await walk.resolve(src, user)
            if source.is_dir:  # what walks meet changes; a file moved is not met on the way
                await walk.reshape()
            if into:
                target, existing = await self._target(walk, src, dst, user)
            else:
                target, existing = dst, await walk.lookup(dst, user)
            if target == src:
                return status.of(source, src)
            if source.is_dir and paths.is_within(target, src):
                raise InvalidArgument(f"cannot move {src} into itself")
            parent = await walk.resolve_dir(paths.parent(target), user)
            old_parent = await tx.inodes.get(source.parent)
            if old_parent is None:  # moved away and its directory removed, by another name node
                raise NotFound(f"{src}: no such file or directory")
            check(user, old_parent, W | X, paths.parent(src))
            check_sticky(user, old_parent, source, src)
            check(user, parent, W | X, paths.parent(target))
            if existing is not None:
                if existing.is_dir or source.is_dir:
                    raise AlreadyExists(f"{target} already exists")
                if not overwrite:
                    raise AlreadyExists(f"{target} already exists (use --force to replace it)")
                check_sticky(user, parent, existing, target)
                await self._release(tx, [existing])
            await tx.inodes.rename(source.id, parent.id, paths.basename(target))
            await tx.inodes.touch({parent.id, source.parent}, time.time())
            moved = await tx.inodes.get(source.id)
            assert moved is not None
            return await self.status_of(tx, moved, target)

    async def checksum(self, path: str, user: User | None = None) -> wire.FileChecksum:
        """The SHA-256 recorded when *path* was written (r permission needed, as to read it)."""
        async with self.tree.reading() as walk:
            node = await walk.resolve(path, user)
            if node.is_dir:
                return wire.FileChecksum(path, "dir", 0)
            if node.target is not None:
                _not_followed(path, node.target)
            check(user, node, R, path)
            return wire.FileChecksum(path, "file", node.size, await walk.tx.inodes.sha256(node.id))

    # --- the layout every file system has ---------------------------------------------------

    async def layout(self, users: Iterable[str]) -> None:
        """What a fresh or just initialised file system holds, in one transaction: /tmp (1777)
        and each user's home (see ``make_home``)."""
        async with self.tree.writing() as walk:
            if await walk.lookup("/tmp") is None:
                await self._mkdir(walk, "/tmp", None, mode=0o1777)
            for name in users:
                await self._make_home(walk, name)

    async def make_home(self, name: str) -> str:
        """``/user/NAME``, owned by the user, in its own group, 0750 (HDFS keeps homes there),
        made in one transaction with ``/user`` if that is missing."""
        async with self.tree.writing() as walk:
            return await self._make_home(walk, name)

    async def _make_home(self, walk: Walk, name: str) -> str:
        home = home_of(name)
        if await walk.lookup("/user") is None:
            await self._mkdir(walk, "/user", None, mode=0o755)
        if await walk.lookup(home) is None:
            await self._mkdir(walk, home, None, mode=0o750, owner=name, group=name)
        return home

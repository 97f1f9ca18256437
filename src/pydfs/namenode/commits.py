"""A file's content, committed: the one transaction that makes a path name exactly the blocks
its writer stored, creating or replacing the file, and the checks that refuse it.

Uploads commit through here, one file at a time (``commit_file``) or a batch whose files are each
checked on their own (``check_commit``, then ``apply_commit``). A commit may expect the version
its writer started from, and keep some of that version's blocks in place (``_layout``).
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from typing import NamedTuple

from pydfs import paths, wire
from pydfs.errors import AlreadyExists, Conflict, InvalidArgument, IsADirectory
from pydfs.namenode.auth import User
from pydfs.namenode.namespace import Namespace, no_file_named_as_directory
from pydfs.namenode.permissions import W, check
from pydfs.namenode.store import Inode, Tx
from pydfs.namenode.store.interface import Block, Placed
from pydfs.namenode.tree import Walk


async def _still_version(
    tx: Tx, path: str, existing: Inode | None, expect: list[str]
) -> list[Block]:
    """Refuse a commit whose writer started from another version of *path* than the one there
    now (or from one since removed or moved away); returns that version's blocks."""
    if existing is None:
        raise Conflict(f"{path} was removed or moved away while open for writing")
    current = [p.block for p in await tx.blocks.of_file(existing.id)]
    if [b.id for b in current] != expect:
        raise Conflict(f"{path} was replaced while open for writing")
    return current


def _layout(
    path: str,
    written: list[wire.StoredBlock],
    keep: list[wire.KeptBlock],
    current: list[Block],
    block_size: int,
) -> list[Block]:
    """The new version's blocks: those *keep* places, taken from *current* (the version the
    file names now), and *written* in the other places, in order. With blocks kept, every
    block but the last must be full, so that a kept block holds the same bytes as before."""
    new = [Block(b.block_id, b.size, b.crc) for b in written]
    if not keep:
        return new
    named = {b.id: b for b in current}
    placed: dict[int, Block] = {}
    for k in keep:
        if k.block_id not in named:
            raise Conflict(f"{path} no longer names block {k.block_id}")
        placed[k.index] = named[k.block_id]
    fill = iter(new)
    layout = [placed[i] if i in placed else next(fill) for i in range(len(new) + len(keep))]
    if any(b.size != block_size for b in layout[:-1]) or layout[-1].size > block_size:
        raise InvalidArgument(f"blocks kept in {path} must all be full but the last")
    return layout


class FileCommit(NamedTuple):
    """A file's commit as ``Commits.check_commit`` allowed it, for ``apply_commit``."""

    path: str
    user: User | None
    parent: Inode
    existing: Inode | None
    replication: int
    block_size: int
    blocks: list[wire.StoredBlock]
    layout: list[Block]
    sha256: str | None
    overwrite: bool
    expected: set[str] | None  # the blocks the version it expects names (a commit with expect)


async def _writable(
    walk: Walk, path: str, user: User | None, *, overwrite: bool, directory: bool = False
) -> tuple[Inode, Inode | None]:
    """The parent directory of *path* and the file there now, if *user* may write it."""
    if path == paths.ROOT:
        raise IsADirectory("/ is a directory")
    parent, existing = await walk.entry(path, user)
    no_file_named_as_directory(path, existing, directory)
    if existing is None:
        check(user, parent, W, paths.parent(path))
    elif existing.is_dir:
        raise IsADirectory(f"{path} is a directory")
    elif existing.target is not None:  # never followed: write to where it points instead
        raise AlreadyExists(f"{path} is a symbolic link")
    elif not overwrite:
        raise AlreadyExists(f"{path} already exists")
    else:
        check(user, existing, W, path)
    return parent, existing


class Commits:
    def __init__(self, namespace: Namespace) -> None:
        self.namespace = namespace
        self.tree = namespace.tree

    async def check_writable(
        self, path: str, user: User | None, *, overwrite: bool, directory: bool = False
    ) -> None:
        """Refuse early what ``commit_file`` of *path* by *user* would refuse; *directory* as
        for ``Namespace.create_file``."""
        async with self.tree.reading() as walk:
            await _writable(walk, path, user, overwrite=overwrite, directory=directory)

    async def commit_file(
        self,
        path: str,
        user: User | None,
        *,
        replication: int,
        block_size: int,
        blocks: list[wire.StoredBlock],
        overwrite: bool,
        sha256: str | None = None,
        before: Callable[[Tx], Awaitable[None]] | None = None,
        expect: list[str] | None = None,
        keep: list[wire.KeptBlock] | None = None,
    ) -> wire.FileStatus:
        """Make *path* name exactly *blocks*, atomically creating or replacing the file (and
        recording *sha256*, the hash its writer computed, or none); *before* runs first in the
        same transaction (an upload's bookkeeping); *expect*: only if the file is there and
        names exactly these blocks now; *keep*: blocks of that version the new one keeps, in
        the places they name (``_layout``)."""
        async with self.tree.writing() as walk:
            if before is not None:
                await before(walk.tx)
            commit = await self.check_commit(
                walk,
                path,
                user,
                replication=replication,
                block_size=block_size,
                blocks=blocks,
                overwrite=overwrite,
                sha256=sha256,
                expect=expect,
                keep=keep,
            )
            return await self.apply_commit(walk, commit)

    async def check_commit(
        self,
        walk: Walk,
        path: str,
        user: User | None,
        *,
        replication: int,
        block_size: int,
        blocks: list[wire.StoredBlock],
        overwrite: bool,
        sha256: str | None = None,
        expect: list[str] | None = None,
        keep: list[wire.KeptBlock] | None = None,
        directory: bool = False,
    ) -> FileCommit:
        """Everything ``commit_file`` refuses, refused in *walk*'s transaction without changing
        anything, so that a batch can refuse one file and go on (``apply_commit`` then makes
        the change); *directory* as for ``Namespace.create_file``."""
        if path == paths.ROOT:
            raise IsADirectory("/ is a directory")
        if keep and expect is None:
            raise InvalidArgument("a commit keeps only blocks of the version it expects")
        tx = walk.tx
        parent, existing = await _writable(
            walk, path, user, overwrite=overwrite, directory=directory
        )
        current = [] if expect is None else await _still_version(tx, path, existing, expect)
        if keep and existing is not None and existing.block_size != block_size:
            raise InvalidArgument(f"blocks kept in {path} need its block size")
        layout = _layout(path, blocks, keep or [], current, block_size)
        expected = None if expect is None else {b.id for b in current}
        return FileCommit(
            path,
            user,
            parent,
            existing,
            replication,
            block_size,
            blocks,
            layout,
            sha256,
            overwrite,
            expected,
        )

    async def apply_commit(self, walk: Walk, commit: FileCommit) -> wire.FileStatus:
        """Make the change ``check_commit`` found allowed, in the same transaction."""
        tx, path, blocks, layout = walk.tx, commit.path, commit.blocks, commit.layout
        now = time.time()
        size = sum(b.size for b in layout)
        named: set[str] = set()
        existing = commit.existing
        made: Inode | None = None
        if existing is None:
            try:
                made = await self.namespace.insert(
                    tx,
                    commit.parent,
                    paths.basename(path),
                    "f",
                    commit.user,
                    size=size,
                    replication=commit.replication,
                    block_size=commit.block_size,
                    sha256=commit.sha256,
                )
                inode_id = made.id
            except AlreadyExists:
                if not commit.overwrite:
                    raise
                # A writer through another name node committed the path meanwhile (a shared
                # store at READ COMMITTED): replace its file, as if it came first.
                _, existing = await _writable(walk, path, commit.user, overwrite=True)
        if existing is not None:
            # Replacing content keeps the file's owner, group and mode, as a POSIX write does.
            # Its blocks are released once the new ones are attached: those kept stay.
            named = await tx.blocks.detach([existing.id])
            if commit.expected is not None and named != commit.expected:
                raise Conflict(f"{path} was replaced while open for writing")
            await tx.inodes.set_content(
                existing.id,
                size=size,
                mtime=now,
                replication=commit.replication,
                block_size=commit.block_size,
            )
            inode_id = existing.id
        await tx.blocks.add([Block(b.block_id, b.size, b.crc) for b in blocks], now)
        await tx.blocks.add_replicas([(b.block_id, n) for b in blocks for n in b.nodes], now)
        await tx.blocks.attach(inode_id, [b.id for b in layout])
        await tx.blocks.release(named)
        if made is None:
            await tx.inodes.set_sha256(inode_id, commit.sha256)
            replaced = await tx.inodes.get(inode_id)
            assert replaced is not None
            return await self.namespace.status_of(tx, replaced, path)
        # A new file names only the blocks just written, on the nodes just added: nothing to
        # read back.
        placed = [Placed(Block(b.block_id, b.size, b.crc), sorted(set(b.nodes))) for b in blocks]
        return self.namespace.status_with(made, path, placed)

"""What exists in the tree, changed in place: modes, owners, groups, replication factors and
modification times, of one entry or of all below a directory (each change one transaction)."""

from __future__ import annotations

import math

from pydfs import wire
from pydfs.errors import InvalidArgument, PermissionDenied
from pydfs.namenode import status
from pydfs.namenode.auth import User
from pydfs.namenode.permissions import MODE_BITS, W, allowed, check
from pydfs.namenode.store import Inode
from pydfs.namenode.tree import Tree, Walk

MAX_TIME = 1e11  # seconds either side of 1970 a modification time may be set to


class Attributes:
    def __init__(self, tree: Tree) -> None:
        self.tree = tree

    async def set_mtime(self, path: str, mtime: float, user: User | None = None) -> wire.FileStatus:
        """Set the modification time (``touch``, ``cp -p``, ``tar x``): its owner, an admin, or
        whoever may write it may."""
        if not math.isfinite(mtime) or not -MAX_TIME < mtime < MAX_TIME:
            raise InvalidArgument(f"modification time {mtime} out of range")
        async with self.tree.writing() as walk:
            node = await walk.resolve(path, user)
            if user is not None and user.name != node.owner:
                check(user, node, W, path)
            await walk.tx.inodes.touch([node.id], mtime)
        return status.of(node._replace(mtime=mtime), path)

    async def setrep(self, path: str, replication: int, user: User | None = None) -> int:
        """Set the replication factor of a file, or of every file below a directory (the caller
        needs w on each file, as HDFS asks, and r+x on each directory: see ``_walk``)."""
        async with self.tree.writing() as walk:
            node = await walk.resolve(path, user)
            files = [n for n in await walk.reach(node, user) if not n.is_dir]
            await self._check_each(walk, user, W, files)
            return await walk.tx.inodes.set_replication([n.id for n in files], replication)

    @staticmethod
    async def _check_each(walk: Walk, user: User | None, want: int, nodes: list[Inode]) -> None:
        """Every one of *nodes* must grant *user* the *want* bits (a refusal names the first
        that does not: ``_walk`` gave only what the user sees)."""
        for node in sorted(nodes, key=lambda n: n.id):
            if not allowed(user, node.owner, node.group, node.mode, want):
                raise PermissionDenied(f"{await walk.path_of(node.id)}: permission denied")

    async def chmod(
        self, path: str, mode: int, user: User | None = None, *, recursive: bool = False
    ) -> int:
        """Set mode bits; only an owner (of everything it touches) or an admin may."""
        if not 0 <= mode <= MODE_BITS:
            raise InvalidArgument(f"mode {mode:o} out of range (0 to 1777 octal)")
        async with self.tree.writing() as walk:
            ids = await self._select_owned(walk, path, user, recursive=recursive, what="chmod")
            return await walk.tx.inodes.set_mode(ids, mode)

    async def chown(
        self,
        path: str,
        owner: str | None,
        group: str | None,
        user: User | None = None,
        *,
        recursive: bool = False,
    ) -> int:
        """Change owner (admins only) and/or group (an owner may pick a group it is in)."""
        if user is not None and not user.admin:
            if owner is not None and owner != user.name:
                raise PermissionDenied("only an admin may give files away")
            if group is not None and not user.in_group(group):
                raise PermissionDenied(f"you are not a member of group {group!r}")
        async with self.tree.writing() as walk:
            ids = await self._select_owned(walk, path, user, recursive=recursive, what="chown")
            return await walk.tx.inodes.set_owner(ids, owner, group)

    async def _select_owned(
        self, walk: Walk, path: str, user: User | None, *, recursive: bool, what: str
    ) -> list[int]:
        """*path* (and, with *recursive*, all below it), refusing unless *user* owns every one
        of them or is an admin. The walk enters the directories *user* owns even without r+x
        on them (it could give itself those bits), and no other directory it may not list (see
        ``_walk``). A directory among them reshapes the tree (a walk reads its mode and owner);
        files alone do not."""
        node = await walk.resolve(path, user)
        nodes = await walk.reach(node, user, owned=True) if recursive else [node]
        if user is not None and not user.admin:
            foreign = sorted((n for n in nodes if n.owner != user.name), key=lambda n: n.id)
            if foreign:
                where = await walk.path_of(foreign[0].id)
                raise PermissionDenied(f"{where}: only the owner or an admin may {what}")
        if any(n.is_dir for n in nodes):
            await walk.reshape()
        return [n.id for n in nodes]

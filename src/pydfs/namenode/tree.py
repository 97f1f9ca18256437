"""Walking paths down the directory tree, with a cache of the directories met on the way.

A deep path costs one query, not one per component: directories met on the way down are
remembered by (parent id, name). A walk reads only their id, type, owner, group and mode, so a
write that changes none of these for a directory (new entries, sizes, times, replication,
blocks, files deleted, moved or given a new mode or owner) keeps the cache; any other (a
directory moved or deleted, or given a new mode or owner) *reshapes* the tree. A reshaping
write empties this cache at once and bumps the store's generation as it commits, and every
walk first compares the generation with the one its cache was filled at: a tree reshaped
through another name node sharing the store empties it too.
Rows are remembered only under the generation they were read under: a write remembers what it
walked once it is durable, and others may reshape the tree meanwhile; a read remembers what it
read at once (a store whose reads may see changes not yet committed bumps the generation if
they fail to commit).
"""

from __future__ import annotations

from typing import Any

from pydfs import paths
from pydfs.errors import InternalError, NotADirectory, NotFound, PermissionDenied
from pydfs.namenode.auth import User
from pydfs.namenode.permissions import R, X, check, enterable
from pydfs.namenode.store import Inode, Store, Tx

ROOT_ID = 1
MAX_CACHED_DIRS = 20_000  # about 10 MiB

Key = tuple[int, str]


class Walk:
    """A transaction as the tree sees it: lookups through the cache and, in a write, what they
    met on the way, kept till it commits unless it reshapes the tree."""

    def __init__(self, tx: Tx, tree: Tree, *, writing: bool) -> None:
        self.tx = tx
        self._tree = tree
        self._writing = writing
        self._met: dict[Key, Inode] | None = {}
        self.stamp: int | None = None  # the generation its walks read the tree under

    async def reshape(self) -> None:
        """This write changes what a walk down a path meets: nothing cached holds any more,
        or is added."""
        self._met = None
        self._tree.forget()
        await self.tx.reshaped()

    def remember(self, key: Key, node: Inode) -> None:
        if not self._writing:
            self._tree.remember(key, node, self.stamp)
        elif self._met is not None:  # this transaction may have made it, and be rolled back
            self._met[key] = node

    async def lookup(
        self, path: str, user: User | None = None, *, in_it: bool = False
    ) -> Inode | None:
        """The inode at *path*, or None; a file in the middle of the path is an error, and so
        is a directory on the way that *user* may not search (x). *in_it*: the caller reads
        only what a walk does (it makes an entry in the directory), so a cached one will do."""
        dirs = self._tree.cached(await self.tx.generation())
        if self.stamp is None:  # the first walk's: what is met under a later one is not kept
            self.stamp = self._tree.generation
        names = paths.split(path)
        node = dirs.get((0, "")) if names else None  # the root, on the way (its times unread)
        if node is None:
            node = await self.tx.inodes.get(ROOT_ID)
            assert node is not None
            if names:
                self.remember((0, ""), node)
        walked = ""
        last = len(names) - 1
        for i, name in enumerate(names):
            if not node.is_dir:
                raise NotADirectory(f"{walked} is not a directory")
            check(user, node, X, walked or "/")
            on_way = i < last or in_it
            child = dirs.get((node.id, name)) if on_way else None
            if child is None:
                child = await self.tx.inodes.child(node.id, name)
                if child is None:
                    return None
                if on_way and child.is_dir:
                    self.remember((node.id, name), child)
            node = child
            walked += "/" + name
        return node

    async def resolve(self, path: str, user: User | None = None, *, in_it: bool = False) -> Inode:
        node = await self.lookup(path, user, in_it=in_it)
        if node is None:
            raise NotFound(f"{path}: no such file or directory")
        return node

    async def resolve_dir(
        self, path: str, user: User | None = None, *, in_it: bool = False
    ) -> Inode:
        node = await self.resolve(path, user, in_it=in_it)
        if not node.is_dir:
            raise NotADirectory(f"{path} is not a directory")
        return node

    async def entry(self, path: str, user: User | None = None) -> tuple[Inode, Inode | None]:
        """The directory *path* is in, and what *path* names there (None: nothing), for a
        caller that makes or replaces that entry. Reaching it takes x on that directory too, as
        a lookup of *path* does, before anything in it is told."""
        parent = await self.resolve_dir(paths.parent(path), user, in_it=True)
        check(user, parent, X, paths.parent(path))
        return parent, await self.tx.inodes.child(parent.id, paths.basename(path))

    async def reach(
        self, node: Inode, user: User | None, *, want: int = R | X, owned: bool = False
    ) -> list[Inode]:
        """*node* and what lies below it, for a recursive operation by *user*; a directory it
        may not enter that holds entries refuses the operation, naming that directory (see
        ``permissions.enterable``)."""
        subtree = await self.tx.inodes.subtree(node.id) if node.is_dir else [node]
        reached, closed = enterable(subtree, user, want=want, owned=owned)
        if closed is not None:
            raise PermissionDenied(f"{await self.path_of(closed.id)}: permission denied")
        return reached

    async def path_of(self, inode_id: int) -> str:
        parts: list[str] = []
        while inode_id != ROOT_ID:
            node = await self.tx.inodes.get(inode_id)
            if node is None:
                break
            parts.append(node.name)
            if len(parts) > paths.MAX_PATH_BYTES // 2:  # deeper than any path: a cycle
                raise InternalError(f"inode {inode_id} is in a cycle of the tree")
            inode_id = node.parent
        return "/" + "/".join(reversed(parts))


class Tree:
    def __init__(self, store: Store) -> None:
        self.store = store
        self._dirs: dict[Key, Inode] = {}
        self.generation: int | None = None  # the store's, when the cache was (re)started

    def forget(self) -> None:
        self._dirs.clear()

    def cached(self, generation: int) -> dict[Key, Inode]:
        """The cache, emptied first if the tree was reshaped (to *generation*, the store's now)
        since it was filled."""
        if generation != self.generation:
            self._dirs.clear()
            self.generation = generation
        return self._dirs

    def remember(self, key: Key, node: Inode, stamp: int | None) -> None:
        """Keep what a walk read under generation *stamp*, unless the cache has moved on since
        (then it may be from before a reshape the cache already knows of)."""
        if stamp != self.generation:
            return
        if len(self._dirs) >= MAX_CACHED_DIRS:
            self._dirs.clear()
        self._dirs[key] = node

    def reading(self) -> _Reading:
        return _Reading(self)

    def writing(self) -> _Writing:
        """``store.write()``, remembering what its walks met once it has committed."""
        return _Writing(self)


class _Reading:
    """``Tree.reading()``: a class, not a generator, as it wraps nearly every request."""

    __slots__ = ("inner", "tree")

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.inner = tree.store.read()

    async def __aenter__(self) -> Walk:
        return Walk(await self.inner.__aenter__(), self.tree, writing=False)

    async def __aexit__(self, *exc: Any) -> None:
        await self.inner.__aexit__(*exc)


class _Writing:
    __slots__ = ("inner", "tree", "walk")

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.inner = tree.store.write()
        self.walk: Walk | None = None

    async def __aenter__(self) -> Walk:
        self.walk = Walk(await self.inner.__aenter__(), self.tree, writing=True)
        return self.walk

    async def __aexit__(self, kind: type[BaseException] | None, *exc: Any) -> None:
        await self.inner.__aexit__(kind, *exc)  # committed, and durable: others ran meanwhile
        walk = self.walk
        if kind is None and walk is not None and walk._met:
            for key, node in walk._met.items():
                self.tree.remember(key, node, walk.stamp)

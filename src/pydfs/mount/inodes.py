"""Inode numbers for DFS paths, and the short-lived attribute cache behind them.

The name node speaks in paths; the kernel in inode numbers it holds until it ``forget``s them.
Each path met gets a number, kept while the kernel holds it (its lookup count). A rename moves
the numbers of everything below; an unlink or a rename over a file detaches the old number from
its path, so that a file still open keeps its number and a new file of that name gets another.

A number also stands for one version of a file: a file replaced elsewhere (new blocks) gets a
new number when the mount learns of it, as a file renamed over another does, so that a handle
open on the old version keeps that version's size and attributes, and the kernel's page cache
of that number (one per number, shared by its handles) holds that version's pages only. The
mount's own writes keep their file's number, unless a reader is still open on the version
before (``changed``): the path then takes a new number, and the old one stays at the path for
the handles open on it (a writer among them goes on writing to the file).

Statuses and misses are cached for ``ttl`` seconds, as the kernel caches what it is told: a
change made elsewhere shows within that time, changes made through this mount at once.
"""

from __future__ import annotations

import errno
import stat
import time
from dataclasses import dataclass

import pyfuse3

from pydfs import paths, wire
from pydfs.mount.identity import Identity

BLOCK_SIZE = 1 << 20  # st_blksize: cp and friends use it as their buffer size


@dataclass
class Node:
    ino: int
    path: str | None  # None once unlinked (or replaced) while the kernel still holds it
    # A number the path left for a newer one (``changed``) keeps it, and follows its renames.
    lookups: int = 0
    status: wire.FileStatus | None = None
    fetched: float = 0.0
    cached_version: tuple[str, ...] | None = None  # the blocks whose pages the kernel may hold
    known: wire.FileStatus | None = None  # the last status of its version, kept once detached
    lost: bool = False  # detached by a change made elsewhere, not by this mount


class Inodes:
    def __init__(self, root: str, identity: Identity, ttl: float) -> None:
        self.identity = identity
        self.ttl = ttl
        self._nodes: dict[int, Node] = {pyfuse3.ROOT_INODE: Node(pyfuse3.ROOT_INODE, root, 1)}
        self._by_path: dict[str, int] = {root: pyfuse3.ROOT_INODE}
        self._missing: dict[str, float] = {}
        self._next = pyfuse3.ROOT_INODE + 1

    # --- numbers ----------------------------------------------------------------------------

    def node(self, ino: int) -> Node:
        node = self._nodes.get(ino)
        if node is None:
            raise pyfuse3.FUSEError(errno.ESTALE)
        return node

    def path(self, ino: int) -> str:
        path = self.node(ino).path
        if path is None:
            raise pyfuse3.FUSEError(errno.ENOENT)
        return path

    def child(self, ino: int, name: bytes) -> str:
        """The DFS path of *name* in directory *ino*."""
        try:
            text = name.decode()
        except UnicodeDecodeError:
            raise pyfuse3.FUSEError(errno.EINVAL) from None  # pydfs names are UTF-8
        return paths.join(self.path(ino), text)

    def remember(self, path: str, status: wire.FileStatus, *, lookup: bool = False) -> Node:
        """The node of *path*, now known to be *status* (a new one if *status* is another
        version than its node's); *lookup*: the kernel now holds it."""
        ino = self._by_path.get(path)
        if ino is not None and ino != pyfuse3.ROOT_INODE:
            known = self._nodes[ino].known
            if known is not None and not same_version(known, status):
                self._detach(path, lost=True)
                ino = None
        node = self._new(path) if ino is None else self._nodes[ino]
        node.status, node.known, node.fetched = status, status, time.monotonic()
        self._missing.pop(path, None)
        if lookup:
            node.lookups += 1
        return node

    def changed(self, ino: int, status: wire.FileStatus, *, pinned: bool = False) -> Node | None:
        """This mount changed *ino*'s file: *status* is what it is now. New content stays under
        *ino* unless readers open on it are *pinned* to another version: their reads go on
        filling the kernel's page cache of *ino*, where opens from now on would find the old
        pages, so the path then takes a new number, and *ino* keeps the path for its handles.
        A change of attributes only leaves the path with the number it has."""
        node = self._nodes.get(ino)
        if node is None or node.path is None:
            return node
        renewed = node.known is None or not same_version(node.known, status)
        mapped = self._nodes.get(self._by_path.get(node.path, ino))
        if not renewed:
            current = node if mapped is None else mapped
        elif not pinned:
            current = node
        elif mapped is None or mapped is node or mapped.lookups > 0:
            current = self._new(node.path)
        else:  # a number made for an earlier change, which the kernel never saw: it will do
            current = mapped
        node.status, node.known, node.fetched = status, status, time.monotonic()
        current.status, current.known, current.fetched = status, status, node.fetched
        self._point(node.path, current)
        self._missing.pop(node.path, None)
        return node

    def _new(self, path: str) -> Node:
        ino, self._next = self._next, self._next + 1
        node = self._nodes[ino] = Node(ino, path)
        self._point(path, node)
        return node

    def _point(self, path: str, node: Node) -> None:
        """*path* is *node*'s now. A number it was before that the kernel never looked up (one
        made for an earlier change, see ``changed``) is dropped: nothing can reach it any more,
        and no ``forget`` will come for it."""
        before = self._by_path.get(path)
        self._by_path[path] = node.ino
        if before is not None and before != node.ino and before != pyfuse3.ROOT_INODE:
            old = self._nodes.get(before)
            if old is not None and old.lookups <= 0:
                del self._nodes[before]

    def forget(self, ino: int, count: int) -> None:
        node = self._nodes.get(ino)
        if node is None or ino == pyfuse3.ROOT_INODE:
            return
        node.lookups -= count
        if node.lookups <= 0:
            del self._nodes[ino]
            if node.path is not None and self._by_path.get(node.path) == ino:
                del self._by_path[node.path]

    def ino_of(self, path: str) -> int | None:
        return self._by_path.get(path)

    # --- the cache ----------------------------------------------------------------------------

    def cached(self, path: str) -> wire.FileStatus | None:
        ino = self._by_path.get(path)
        if ino is None:
            return None
        node = self._nodes[ino]
        if node.status is None or time.monotonic() - node.fetched > self.ttl:
            return None
        return node.status

    def known_missing(self, path: str) -> bool:
        seen = self._missing.get(path)
        return seen is not None and time.monotonic() - seen <= self.ttl

    def missing(self, path: str) -> None:
        """*path* does not exist: forget its node's path, remember the miss for ``ttl``."""
        self._detach(path, lost=True)
        if len(self._missing) > 10_000:
            self._missing.clear()
        self._missing[path] = time.monotonic()

    def stale(self, path: str) -> None:
        """*path* changed: its cached status no longer holds (its parent's times changed)."""
        for p in (path, paths.parent(path)):
            ino = self._by_path.get(p)
            if ino is not None:
                self._nodes[ino].status = None
        self._missing.pop(path, None)

    def removed(self, path: str) -> None:
        """This mount removed *path* (or renamed another file over it)."""
        self.stale(path)
        self._detach(path, lost=False)

    def moved(self, src: str, dst: str) -> None:
        """*src* is now *dst*: it and everything below it keep their numbers."""
        self.stale(src)
        self.removed(dst)
        for path, node in self._at(src):
            new = dst + path[len(src) :]
            if self._by_path.get(path) == node.ino:
                del self._by_path[path]
                self._by_path[new] = node.ino
            node.path, node.status = new, None

    def _detach(self, path: str, *, lost: bool) -> None:
        for p, node in self._at(path):
            if node.ino == pyfuse3.ROOT_INODE:  # the mounted directory itself went away
                continue
            if self._by_path.get(p) == node.ino:
                del self._by_path[p]
            node.path, node.status, node.lost = None, None, lost
            if node.lookups <= 0:  # the kernel never had it: nothing can reach it now
                del self._nodes[node.ino]

    def _at(self, path: str) -> list[tuple[str, Node]]:
        """The nodes at *path* or below it (numbers the paths left for newer ones too), with
        their paths."""
        prefix = path.rstrip("/") + "/"
        return [
            (n.path, n)
            for n in self._nodes.values()
            if n.path is not None and (n.path == path or n.path.startswith(prefix))
        ]

    # --- attributes ---------------------------------------------------------------------------

    def attributes(self, node: Node, status: wire.FileStatus) -> pyfuse3.EntryAttributes:
        entry = pyfuse3.EntryAttributes()
        entry.st_ino = node.ino
        entry.entry_timeout = entry.attr_timeout = self.ttl
        entry.st_mode = _KINDS[status.type] | (status.mode & 0o7777)
        entry.st_nlink = 2 if status.type == "dir" else 1
        entry.st_uid = self.identity.uid_of(status.owner)
        entry.st_gid = self.identity.gid_of(status.group or status.owner)
        # A link's size is its target's length, as lstat(2) tells it.
        size = status.size if status.target is None else len(status.target.encode())
        entry.st_size = size
        entry.st_blksize = BLOCK_SIZE
        entry.st_blocks = (size + 511) // 512 if status.target is None else 0
        mtime = int(status.mtime * 1e9)
        entry.st_mtime_ns = entry.st_atime_ns = mtime
        entry.st_ctime_ns = max(mtime, int(status.ctime * 1e9))
        return entry


_KINDS = {"file": stat.S_IFREG, "dir": stat.S_IFDIR, "symlink": stat.S_IFLNK}


def same_version(a: wire.FileStatus, b: wire.FileStatus) -> bool:
    """Are *a* and *b* the same content of a file (or both directories)? By their blocks when
    both name them (a listing does not), else by size and modification time."""
    if a.type != b.type:
        return False
    if a.type != "file":
        return a.target == b.target
    if a.blocks is not None and b.blocks is not None:
        return [x.id for x in a.blocks] == [x.id for x in b.blocks]
    return (a.size, a.mtime) == (b.size, b.mtime)

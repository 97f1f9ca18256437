"""The directory tree and each file's list of blocks: every namespace operation, transactional.

Paths arrive normalised (``pydfs.paths``). Each mutating method is one durable transaction, so a
crash leaves either the old or the new state. Blocks are immutable and may be shared: a copy
shares its source's blocks, and a block is released (its replicas queued for deletion in
``trash``) only when no file names it any more.
"""

from __future__ import annotations

import dataclasses
import math
import random
import sqlite3
import time
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from pydfs import paths, wire
from pydfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)
from pydfs.namenode.auth import MODE_BITS, STICKY, SYSTEM, R, User, W, X, allowed
from pydfs.namenode.membership import Membership
from pydfs.namenode.store import Store

ROOT_ID = 1
_COLS = "id, parent, name, type, size, mtime, ctime, owner, replication, block_size, grp, mode"
MAX_CACHED_DIRS = 20_000  # about 10 MiB
MAX_TIME = 1e11  # seconds either side of 1970 a modification time may be set to


@dataclass(frozen=True, slots=True)
class Inode:
    id: int
    parent: int
    name: str
    type: str
    size: int
    mtime: float
    ctime: float
    owner: str
    replication: int
    block_size: int
    group: str
    mode: int

    @property
    def is_dir(self) -> bool:
        return self.type == "d"


def _check(user: User | None, node: Inode, want: int, path: str) -> None:
    if not allowed(user, node.owner, node.group, node.mode, want):
        raise PermissionDenied(f"{path}: permission denied")


def _check_sticky(user: User | None, parent: Inode, node: Inode, path: str) -> None:
    """In a sticky directory (such as /tmp) only an entry's owner may remove or rename it."""
    sticky = parent.mode & STICKY and user is not None and not user.admin
    if sticky and user is not None and user.name not in (node.owner, parent.owner):
        raise PermissionDenied(f"{path}: permission denied (sticky directory)")


def _no_file_named_as_directory(path: str, existing: Inode | None, directory: bool) -> None:
    """``touch f/`` or ``put x nodir/``: a name written with a trailing '/' is a directory's,
    as ``open(2)`` and coreutils take it (an existing directory is refused by the caller)."""
    if directory and (existing is None or not existing.is_dir):
        raise NotADirectory(f"{path}/: not a directory")


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
        self.db = store.db
        self.membership = membership
        self.replication = replication
        self.block_size = block_size
        self.umask = umask
        # Signs read tokens for the blocks of a file a caller opens (set by the name node).
        self.read_token: Callable[[str], str] | None = None
        # Directories met on the way down paths, by (parent id, name), so that a deep path
        # costs one query rather than one per component. A walk reads only their id, type,
        # owner, group and mode. Writes that change none of these for a directory (new
        # entries, sizes, times, replication, blocks, deleted files) go through ``_write``,
        # which keeps the cache; any other write to inodes goes through ``_reshape`` (or
        # calls ``_reshaping``), which empties it. Only committed rows are remembered.
        self._dirs: dict[tuple[int, str], Inode] = {}
        self._met: dict[tuple[int, str], Inode] | None = None  # in a _write, till it commits
        self.db.execute("PRAGMA temp_store=MEMORY")
        for table in ("subtree", "doomed_blocks", "report", "serving", "live"):
            kind = "INTEGER" if table == "subtree" else "TEXT"
            self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (id {kind} PRIMARY KEY)")
        if self._get(ROOT_ID) is None:
            now = time.time()
            with store.write() as db:
                db.execute(
                    f"INSERT INTO inodes ({_COLS}) "
                    "VALUES (?, 0, '', 'd', 0, ?, ?, ?, 0, 0, ?, 493)",
                    (ROOT_ID, now, now, SYSTEM, SYSTEM),
                )

    # --- lookups --------------------------------------------------------------------------

    def _get(self, inode_id: int) -> Inode | None:
        row = self.db.execute(f"SELECT {_COLS} FROM inodes WHERE id = ?", (inode_id,)).fetchone()
        return Inode(*row) if row else None

    def _child(self, parent: int, name: str) -> Inode | None:
        row = self.db.execute(
            f"SELECT {_COLS} FROM inodes WHERE parent = ? AND name = ?", (parent, name)
        ).fetchone()
        return Inode(*row) if row else None

    def lookup(self, path: str, user: User | None = None, *, in_it: bool = False) -> Inode | None:
        """The inode at *path*, or None; a file in the middle of the path is an error, and so
        is a directory on the way that *user* may not search (x). *in_it*: the caller reads
        only what a walk does (it makes an entry in the directory), so a cached one will do."""
        names = paths.split(path)
        dirs = self._dirs
        node = dirs.get((0, "")) if names else None  # the root, on the way (its times unread)
        if node is None:
            node = self._get(ROOT_ID)
            assert node is not None
            if names:
                self._remember((0, ""), node)
        walked = ""
        last = len(names) - 1
        for i, name in enumerate(names):
            if not node.is_dir:
                raise NotADirectory(f"{walked} is not a directory")
            _check(user, node, X, walked or "/")
            on_way = i < last or in_it
            child = dirs.get((node.id, name)) if on_way else None
            if child is None:
                child = self._child(node.id, name)
                if child is None:
                    return None
                if on_way and child.is_dir:
                    self._remember((node.id, name), child)
            node = child
            walked += "/" + name
        return node

    def _remember(self, key: tuple[int, str], node: Inode) -> None:
        if not self.db.in_transaction:
            if len(self._dirs) >= MAX_CACHED_DIRS:
                self._dirs.clear()
            self._dirs[key] = node
        elif self._met is not None:  # this transaction may have made it, and be rolled back
            self._met[key] = node

    @contextmanager
    def _write(self) -> Iterator[sqlite3.Connection]:
        """``store.write()`` for a change no walk down a path meets (see ``__init__``): the
        directories it walked through are remembered once it commits."""
        assert not self.db.in_transaction, "namespace writes do not nest"
        self._met = {}
        try:
            with self.store.write() as db:
                yield db
            if self._met is not None:
                if len(self._dirs) + len(self._met) > MAX_CACHED_DIRS:
                    self._dirs.clear()
                self._dirs.update(self._met)
        finally:
            self._met = None

    def _reshaping(self) -> None:
        """Within a ``_write``: it changes what a walk down a path meets (names, parents,
        modes, owners, deleted directories): nothing cached holds any more, or is added."""
        self._dirs.clear()
        self._met = None

    @contextmanager
    def _reshape(self) -> Iterator[sqlite3.Connection]:
        with self._write() as db:
            self._reshaping()
            yield db

    def resolve(self, path: str, user: User | None = None, *, in_it: bool = False) -> Inode:
        node = self.lookup(path, user, in_it=in_it)
        if node is None:
            raise NotFound(f"{path}: no such file or directory")
        return node

    def resolve_dir(self, path: str, user: User | None = None, *, in_it: bool = False) -> Inode:
        node = self.resolve(path, user, in_it=in_it)
        if not node.is_dir:
            raise NotADirectory(f"{path} is not a directory")
        return node

    def _status(
        self, node: Inode, path: str, *, with_blocks: bool = False, tokens: bool = False
    ) -> wire.FileStatus:
        return wire.FileStatus(
            path=path,
            name=node.name or "/",
            type="dir" if node.is_dir else "file",
            size=node.size,
            mtime=node.mtime,
            ctime=node.ctime,
            owner=node.owner,
            group=node.group,
            mode=node.mode,
            replication=node.replication,
            block_size=node.block_size,
            blocks=self._blocks(node.id, tokens) if with_blocks and not node.is_dir else None,
        )

    def _blocks(self, inode_id: int, tokens: bool = False) -> list[wire.BlockInfo]:
        rows = self.db.execute(
            "SELECT b.id, b.size, b.crc, r.node FROM file_blocks fb "
            "JOIN blocks b ON b.id = fb.block LEFT JOIN replicas r ON r.block = b.id "
            "WHERE fb.inode = ? ORDER BY fb.idx, r.node",
            (inode_id,),
        )
        blocks: list[wire.BlockInfo] = []
        for block_id, size, crc, node_id in rows:
            if not blocks or blocks[-1].id != block_id:
                blocks.append(wire.BlockInfo(block_id, size, crc, []))
            if node_id is not None:
                blocks[-1].nodes.append(self.membership.ref(node_id))
        for block in blocks:
            # Readers take the first replica: spread them over live nodes, dead ones last.
            random.shuffle(block.nodes)
            block.nodes.sort(key=lambda n: not n.live)
            if tokens and self.read_token is not None:
                block.token = self.read_token(block.id)
        return blocks

    def stat(self, path: str, user: User | None = None, *, read: bool = False) -> wire.FileStatus:
        """A file's or directory's status with its blocks; with *read*, the caller wants to read
        the file, must have r on it, and gets block read tokens."""
        node = self.resolve(path, user)
        if read and not node.is_dir:
            _check(user, node, R, path)
        return self._status(node, path, with_blocks=True, tokens=read)

    def listdir(self, path: str, user: User | None = None) -> wire.Listing:
        node = self.resolve(path, user)
        if not node.is_dir:
            return wire.Listing(path, [self._status(node, path)])
        _check(user, node, R, path)
        # Straight from rows to statuses: names were validated when stored, and a large
        # directory is where per-entry work shows.
        prefix = path.rstrip("/") + "/"
        status = wire.FileStatus
        rows = self.db.execute(
            "SELECT name, type, size, mtime, ctime, owner, grp, mode, replication, block_size "
            "FROM inodes WHERE parent = ? ORDER BY name",
            (node.id,),
        )
        return wire.Listing(
            path,
            [
                status(prefix + n, n, "dir" if t == "d" else "file", s, mt, ct, o, g, m, r, bs)
                for n, t, s, mt, ct, o, g, m, r, bs in rows
            ],
        )

    # --- directories ----------------------------------------------------------------------

    def _insert(
        self,
        db: sqlite3.Connection,
        parent: Inode,
        name: str,
        type: str,
        user: User | None,
        *,
        size: int = 0,
        replication: int = 0,
        block_size: int = 0,
        mode: int | None = None,
        group: str | None = None,
    ) -> int:
        """A new inode owned by *user*, in its parent's group (as BSD and HDFS do), with the
        mode bits 0777 (directories) or 0666 (files) less the umask, unless *mode* is given."""
        now = time.time()
        if mode is None:
            mode = (0o777 if type == "d" else 0o666) & ~self.umask
        cur = db.execute(
            "INSERT INTO inodes (parent, name, type, size, mtime, ctime, owner, replication, "
            "block_size, grp, mode) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                parent.id,
                name,
                type,
                size,
                now,
                now,
                user.name if user is not None else SYSTEM,
                replication,
                block_size,
                group or parent.group,
                mode,
            ),
        )
        db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, parent.id))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def mkdir(
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
                return self.stat(path, user)
            raise AlreadyExists("/ already exists")
        with self._write() as db:
            todo = [path]  # the path, then each missing ancestor, up to an existing one
            while (parent := self.lookup(paths.parent(todo[-1]), user, in_it=True)) is None:
                if not parents:
                    raise NotFound(f"{paths.parent(path)}: no such directory (use -p to create it)")
                todo.append(paths.parent(todo[-1]))
            if len(todo) == 1 and parent.is_dir:
                _check(user, parent, X, paths.parent(path))
                existing = self._child(parent.id, paths.basename(path))
                if existing is not None:
                    if parents and existing.is_dir:
                        return self._status(existing, path)
                    raise AlreadyExists(f"{path} already exists")
            for p in reversed(todo):
                if not parent.is_dir:
                    raise NotADirectory(f"{paths.parent(p)} is not a directory")
                _check(user, parent, W | X, paths.parent(p))
                last = p == path
                made = self._get(
                    self._insert(
                        db,
                        parent,
                        paths.basename(p),
                        "d",
                        user,
                        mode=mode if last else None,
                        group=group if last else None,
                    )
                )
                assert made is not None
                parent = made
        return self._status(parent, path)

    def create_file(
        self, path: str, user: User | None = None, *, directory: bool = False
    ) -> wire.FileStatus:
        """An empty file at *path*; *directory*: the caller wrote *path* as a directory's
        (``paths.names_directory``), where no file is made."""
        if path == paths.ROOT:
            raise AlreadyExists("/ already exists")
        with self._write() as db:
            parent = self.resolve_dir(paths.parent(path), user, in_it=True)
            existing = self._child(parent.id, paths.basename(path))
            _no_file_named_as_directory(path, existing, directory)
            if existing is not None:
                raise AlreadyExists(f"{path} already exists")
            _check(user, parent, W | X, paths.parent(path))
            made = self._insert(
                db,
                parent,
                paths.basename(path),
                "f",
                user,
                replication=self.replication,
                block_size=self.block_size,
            )
        return self._made(made, path)

    def _made(self, inode_id: int, path: str) -> wire.FileStatus:
        """The status of a file just written at *path*, without walking the path again."""
        node = self._get(inode_id)
        assert node is not None
        return self._status(node, path, with_blocks=True)

    def check_writable(
        self, path: str, user: User | None, *, overwrite: bool, directory: bool = False
    ) -> None:
        """Refuse early what ``commit_file`` of *path* by *user* would refuse; *directory* as
        for ``create_file``."""
        self._writable(path, user, overwrite=overwrite, directory=directory)

    def _writable(
        self, path: str, user: User | None, *, overwrite: bool, directory: bool = False
    ) -> tuple[Inode, Inode | None]:
        """The parent directory of *path* and the file there now, if *user* may write it."""
        if path == paths.ROOT:
            raise IsADirectory("/ is a directory")
        parent = self.resolve_dir(paths.parent(path), user, in_it=True)
        existing = self._child(parent.id, paths.basename(path))
        _no_file_named_as_directory(path, existing, directory)
        if existing is None:
            _check(user, parent, W | X, paths.parent(path))
        elif existing.is_dir:
            raise IsADirectory(f"{path} is a directory")
        elif not overwrite:
            raise AlreadyExists(f"{path} already exists")
        else:
            _check(user, existing, W, path)
        return parent, existing

    # --- removal --------------------------------------------------------------------------

    def _select_subtree(self, db: sqlite3.Connection, inode_id: int) -> None:
        db.execute("DELETE FROM temp.subtree")
        db.execute(
            "INSERT INTO temp.subtree WITH RECURSIVE sub(id) AS (SELECT ? UNION ALL "
            "SELECT i.id FROM inodes i JOIN sub ON i.parent = sub.id) SELECT id FROM sub",
            (inode_id,),
        )

    def _release_doomed(self, db: sqlite3.Connection, *, keep_inodes: bool = False) -> int:
        """Drop the content of every inode in temp.subtree (and the inodes unless *keep_inodes*);
        returns the number of files whose content was dropped."""
        db.execute("DELETE FROM temp.doomed_blocks")
        db.execute(
            "INSERT OR IGNORE INTO temp.doomed_blocks SELECT block FROM file_blocks "
            "WHERE inode IN (SELECT id FROM temp.subtree)"
        )
        db.execute("DELETE FROM file_blocks WHERE inode IN (SELECT id FROM temp.subtree)")
        (files,) = db.execute(
            "SELECT count(*) FROM inodes WHERE type = 'f' AND id IN (SELECT id FROM temp.subtree)"
        ).fetchone()
        if not keep_inodes:
            db.execute("DELETE FROM inodes WHERE id IN (SELECT id FROM temp.subtree)")
        self._collect_unreferenced(db)
        return int(files)

    def _release_file(self, db: sqlite3.Connection, inode_id: int, *, keep_inode: bool) -> None:
        """Drop one file's content (and the file itself unless *keep_inode*); its blocks go
        to the trash unless another file still names them."""
        self._select_one(db, inode_id)
        self._release_doomed(db, keep_inodes=keep_inode)

    def _collect_unreferenced(self, db: sqlite3.Connection) -> None:
        """Blocks in temp.doomed_blocks that no file names any more go to the trash."""
        db.execute(
            "DELETE FROM temp.doomed_blocks WHERE EXISTS "
            "(SELECT 1 FROM file_blocks fb WHERE fb.block = temp.doomed_blocks.id)"
        )
        db.execute(
            "INSERT OR IGNORE INTO trash (node, block) SELECT node, block FROM replicas "
            "WHERE block IN (SELECT id FROM temp.doomed_blocks)"
        )
        db.execute("DELETE FROM replicas WHERE block IN (SELECT id FROM temp.doomed_blocks)")
        db.execute("DELETE FROM blocks WHERE id IN (SELECT id FROM temp.doomed_blocks)")

    def _walk(
        self,
        db: sqlite3.Connection,
        node: Inode,
        user: User | None,
        *,
        want: int = R | X,
        owned: bool = False,
    ) -> None:
        """Put *node* and what lies below it in temp.subtree, for a recursive operation by *user*.

        The walk enters only the directories that grant *user* the *want* bits (r and x at
        least, so it never reads a directory the user could not list), or with *owned* those
        the user owns. A directory it cannot enter that holds entries refuses the operation,
        which then changes nothing, and the refusal names that directory: a name the user sees
        already (in the directory the walk came from, or as the path given), never one below
        it. So ``setrep 1 /`` as a plain user answers ``/user/alice: permission denied``, not
        the names of alice's files. (HDFS's shell, walking the same way, names the same
        directory but changes the rest.)
        """
        if user is None or user.admin:
            self._select_subtree(db, node.id)
            return

        def enters(owner: str, group: str, mode: int) -> bool:
            return allowed(user, owner, group, mode, want) or (owned and owner == user.name)

        db.create_function("pydfs_enters", 3, enters)
        db.execute("DELETE FROM temp.subtree")
        db.execute(
            "INSERT INTO temp.subtree WITH RECURSIVE sub(id, open) AS (SELECT ?, ? UNION ALL "
            "SELECT i.id, i.type = 'd' AND pydfs_enters(i.owner, i.grp, i.mode) "
            "FROM inodes i JOIN sub ON i.parent = sub.id WHERE sub.open) SELECT id FROM sub",
            (node.id, node.is_dir and enters(node.owner, node.group, node.mode)),
        )
        closed = db.execute(
            "SELECT i.id FROM inodes i WHERE i.id IN (SELECT id FROM temp.subtree) "
            "AND i.type = 'd' AND NOT pydfs_enters(i.owner, i.grp, i.mode) "
            "AND EXISTS (SELECT 1 FROM inodes c WHERE c.parent = i.id) ORDER BY i.id LIMIT 1"
        ).fetchone()
        if closed:
            raise PermissionDenied(f"{self._path_of(closed[0])}: permission denied")

    def delete(
        self, path: str, user: User | None = None, *, recursive: bool = False, type: str = "any"
    ) -> int:
        """Remove a file or directory; returns how many files went with it."""
        if path == paths.ROOT:
            raise InvalidArgument("the root directory cannot be deleted (use initialize)")
        with self._write() as db:
            node = self.resolve(path, user)
            if type == "file" and node.is_dir:
                raise IsADirectory(f"{path} is a directory")
            if type == "dir" and not node.is_dir:
                raise NotADirectory(f"{path} is not a directory")
            if node.is_dir:
                self._reshaping()
            if node.is_dir and not recursive:
                child = db.execute("SELECT 1 FROM inodes WHERE parent = ? LIMIT 1", (node.id,))
                if child.fetchone():
                    raise DirectoryNotEmpty(f"{path} is not empty")
            parent = self._get(node.parent)
            assert parent is not None
            _check(user, parent, W | X, paths.parent(path))
            _check_sticky(user, parent, node, path)
            self._walk(db, node, user, want=R | W | X)  # as ``rm -r`` needs, to empty one
            files = self._release_doomed(db)
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (time.time(), node.parent))
        return files

    def format(self) -> tuple[int, int]:
        """Remove everything but the root; returns (files, blocks) removed."""
        with self._reshape() as db:
            (files,) = db.execute("SELECT count(*) FROM inodes WHERE type = 'f'").fetchone()
            (blocks,) = db.execute("SELECT count(*) FROM blocks").fetchone()
            db.execute("INSERT OR IGNORE INTO trash (node, block) SELECT node, block FROM replicas")
            for table in ("replicas", "file_blocks", "blocks"):
                db.execute(f"DELETE FROM {table}")
            db.execute("DELETE FROM inodes WHERE id != ?", (ROOT_ID,))
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (time.time(), ROOT_ID))
        return int(files), int(blocks)

    # --- writes, copies and moves ---------------------------------------------------------

    def commit_file(
        self,
        path: str,
        user: User | None,
        *,
        replication: int,
        block_size: int,
        blocks: list[wire.StoredBlock],
        overwrite: bool,
    ) -> wire.FileStatus:
        """Make *path* name exactly *blocks*, atomically creating or replacing the file."""
        if path == paths.ROOT:
            raise IsADirectory("/ is a directory")
        now = time.time()
        size = sum(b.size for b in blocks)
        with self._write() as db:
            parent, existing = self._writable(path, user, overwrite=overwrite)
            name = paths.basename(path)
            if existing is not None:
                # Replacing content keeps the file's owner, group and mode, as a POSIX write does.
                self._release_file(db, existing.id, keep_inode=True)
                db.execute(
                    "UPDATE inodes SET size = ?, mtime = ?, replication = ?, block_size = ? "
                    "WHERE id = ?",
                    (size, now, replication, block_size, existing.id),
                )
                inode_id = existing.id
            else:
                inode_id = self._insert(
                    db,
                    parent,
                    name,
                    "f",
                    user,
                    size=size,
                    replication=replication,
                    block_size=block_size,
                )
            db.executemany(
                "INSERT INTO blocks (id, size, crc, ctime) VALUES (?, ?, ?, ?)",
                [(b.block_id, b.size, b.crc, now) for b in blocks],
            )
            db.executemany(
                "INSERT OR IGNORE INTO replicas (block, node, added) VALUES (?, ?, ?)",
                [(b.block_id, n, now) for b in blocks for n in b.nodes],
            )
            db.executemany(
                "INSERT INTO file_blocks (inode, idx, block) VALUES (?, ?, ?)",
                [(inode_id, i, b.block_id) for i, b in enumerate(blocks)],
            )
        return self._made(inode_id, path)

    def _target(self, src: str, dst: str, user: User | None) -> tuple[str, Inode | None]:
        """Where a copy or move of *src* to *dst* lands: into *dst* when it is a directory."""
        existing = self.lookup(dst, user)
        if existing is not None and existing.is_dir:
            dst = paths.join(dst, paths.basename(src))
            existing = self.lookup(dst, user)
        return dst, existing

    def _free_copy_name(self, src: str) -> str:
        directory, name = paths.parent(src), paths.basename(src)
        stem, dot, ext = name.rpartition(".")
        if not stem:  # no extension, or a dot file such as ".profile"
            stem, dot, ext = name, "", ""
        for n in range(1, 10_000):
            label = "copy" if n == 1 else f"copy {n}"
            candidate = paths.join(directory, f"{stem} ({label}){dot}{ext}")
            if self.lookup(candidate) is None:
                return candidate
        raise AlreadyExists(f"no free name for a copy of {src}")

    def copy(
        self, src: str, dst: str | None, user: User | None = None, *, overwrite: bool = False
    ) -> wire.FileStatus:
        """Copy a file by sharing its immutable blocks: no byte moves."""
        with self._write() as db:
            source = self.resolve(src, user)
            if source.is_dir:
                raise IsADirectory(f"{src} is a directory (file_copy copies files)")
            _check(user, source, R, src)
            if dst is None:
                target, existing = self._free_copy_name(src), None
            else:
                target, existing = self._target(src, dst, user)
            if target == src:
                raise AlreadyExists(f"{src} cannot be copied onto itself")
            parent = self.resolve_dir(paths.parent(target), user)
            _check(user, parent, W | X, paths.parent(target))
            if existing is not None:
                if existing.is_dir:
                    raise IsADirectory(f"{target} is a directory")
                if not overwrite:
                    raise AlreadyExists(f"{target} already exists")
                _check_sticky(user, parent, existing, target)
                # Blocks it shares with the source survive: the source still names them.
                self._release_file(db, existing.id, keep_inode=False)
            inode_id = self._insert(
                db,
                parent,
                paths.basename(target),
                "f",
                user,
                size=source.size,
                replication=source.replication,
                block_size=source.block_size,
            )
            db.execute(
                "INSERT INTO file_blocks (inode, idx, block) "
                "SELECT ?, idx, block FROM file_blocks WHERE inode = ?",
                (inode_id, source.id),
            )
        return self.stat(target)

    def move(
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
        with self._reshape() as db:
            source = self.resolve(src, user)
            if into:
                target, existing = self._target(src, dst, user)
            else:
                target, existing = dst, self.lookup(dst, user)
            if target == src:
                return self._status(source, src)
            if source.is_dir and paths.is_within(target, src):
                raise InvalidArgument(f"cannot move {src} into itself")
            parent = self.resolve_dir(paths.parent(target), user)
            old_parent = self._get(source.parent)
            assert old_parent is not None
            _check(user, old_parent, W | X, paths.parent(src))
            _check_sticky(user, old_parent, source, src)
            _check(user, parent, W | X, paths.parent(target))
            if existing is not None:
                if existing.is_dir or source.is_dir:
                    raise AlreadyExists(f"{target} already exists")
                if not overwrite:
                    raise AlreadyExists(f"{target} already exists (use --force to replace it)")
                _check_sticky(user, parent, existing, target)
                self._release_file(db, existing.id, keep_inode=False)
            now = time.time()
            db.execute(
                "UPDATE inodes SET parent = ?, name = ? WHERE id = ?",
                (parent.id, paths.basename(target), source.id),
            )
            db.execute(
                "UPDATE inodes SET mtime = ? WHERE id IN (?, ?)", (now, parent.id, source.parent)
            )
        return self.stat(target)

    def set_mtime(self, path: str, mtime: float, user: User | None = None) -> wire.FileStatus:
        """Set the modification time (``touch``, ``cp -p``, ``tar x``): its owner, an admin, or
        whoever may write it may."""
        if not math.isfinite(mtime) or not -MAX_TIME < mtime < MAX_TIME:
            raise InvalidArgument(f"modification time {mtime} out of range")
        with self._write() as db:
            node = self.resolve(path, user)
            if user is not None and user.name != node.owner:
                _check(user, node, W, path)
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (mtime, node.id))
        return self._status(dataclasses.replace(node, mtime=mtime), path)

    # --- data node bookkeeping ------------------------------------------------------------

    def reconcile(
        self, node_id: str, reported: Iterable[str], in_flight: set[str], listed_after: float
    ) -> list[str]:
        """Apply a full block report: trash the replicas nobody needs, forget the counted ones
        the node no longer has (unless counted after *listed_after*, when its listing may have
        begun), and return the blocks it holds that are not counted there: the node is to
        verify them, and they count once it reports them good with the recorded CRC
        (``add_replicas``), never on its word alone."""
        with self.store.write() as db:
            db.execute("DELETE FROM temp.report")
            db.executemany("INSERT OR IGNORE INTO temp.report VALUES (?)", ((b,) for b in reported))
            # A replica with a delete order still pending is on its way out (trimmed, say):
            # counting it again would let the next trim take a real copy.
            uncounted = [
                block_id
                for (block_id,) in db.execute(
                    "SELECT r.id FROM temp.report r "
                    "WHERE EXISTS (SELECT 1 FROM blocks b WHERE b.id = r.id) "
                    "AND NOT EXISTS (SELECT 1 FROM replicas x WHERE x.block = r.id AND x.node = ?) "
                    "AND NOT EXISTS (SELECT 1 FROM trash t WHERE t.node = ? AND t.block = r.id)",
                    (node_id, node_id),
                )
            ]
            unknown = [
                block_id
                for (block_id,) in db.execute(
                    "SELECT r.id FROM temp.report r "
                    "WHERE NOT EXISTS (SELECT 1 FROM blocks b WHERE b.id = r.id)"
                )
                if block_id not in in_flight
            ]
            db.executemany(
                "INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)",
                ((node_id, b) for b in unknown),
            )
            db.execute(
                "DELETE FROM replicas WHERE node = ? AND block NOT IN (SELECT id FROM temp.report) "
                "AND added < ?",
                (node_id, listed_after),
            )
            db.execute(
                "DELETE FROM trash WHERE node = ? AND block NOT IN (SELECT id FROM temp.report)",
                (node_id,),
            )
        return uncounted

    def trash_for(self, node_id: str, limit: int = 10_000) -> list[str]:
        """Hand out (and forget) replicas *node_id* must delete. An order lost with a crashed
        data node is repaired by its next block report: an unknown block is trashed again, and
        a surplus replica of a live block is counted again and trimmed again."""
        rows = self.db.execute(
            "SELECT block FROM trash WHERE node = ? LIMIT ?", (node_id, limit)
        ).fetchall()
        if not rows:
            return []
        with self.store.write() as db:
            db.executemany(
                "DELETE FROM trash WHERE node = ? AND block = ?", ((node_id, b) for (b,) in rows)
            )
        return [b for (b,) in rows]

    def trash_blocks(self, pairs: Iterable[tuple[str, str]]) -> None:
        """Queue (node, block) replicas of blocks never committed, such as an aborted upload's."""
        pairs = list(pairs)
        if pairs:  # most commits use every block they were granted: no transaction for none
            with self.store.write() as db:
                db.executemany("INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)", pairs)

    # --- replication ----------------------------------------------------------------------

    def _set_nodes(self, table: str, nodes: set[str]) -> None:
        self.db.execute(f"DELETE FROM temp.{table}")
        self.db.executemany(f"INSERT INTO temp.{table} VALUES (?)", ((n,) for n in nodes))

    def add_replicas(
        self, node_id: str, received: list[wire.Received], in_flight: dict[str, list[str]]
    ) -> tuple[int, list[str]]:
        """A data node stored, or verified, these replicas. One of a committed block counts
        only if its size and CRC are those recorded (a committed block never changes: other
        bytes under its id, a swapped file's, are trashed and returned as bad) and the name node
        asked for it: a copy it ordered, or a replica it had verified because no counted one
        is left on a live node. A client's write counts through its commit alone: a CRC32C is
        no proof against bytes made to match one, so a late write, under a leftover token, is
        trashed. One of an upload still in flight is counted by its commit, if the grant named
        this node; anything else is trashed. Returns how many replicas this changed, and the
        bad ones."""
        changed, bad = 0, []
        now = time.time()
        live = {n.id for n in self.membership.live()}
        with self.store.write() as db:
            for got in received:
                row = db.execute(
                    "SELECT size, crc FROM blocks WHERE id = ?", (got.block,)
                ).fetchone()
                if row is not None and (got.size, got.crc) == tuple(row):
                    counted = [
                        n
                        for (n,) in db.execute(
                            "SELECT node FROM replicas WHERE block = ?", (got.block,)
                        )
                    ]
                    wanted = got.how == "c" or (
                        got.how == "v" and not any(n in live for n in counted)
                    )
                    if node_id in counted or not wanted:
                        if node_id not in counted:  # surplus and unasked for: never a last copy
                            changed += db.execute(
                                "INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)",
                                (node_id, got.block),
                            ).rowcount
                        continue
                    changed += db.execute(
                        "INSERT OR IGNORE INTO replicas (block, node, added) VALUES (?, ?, ?)",
                        (got.block, node_id, now),
                    ).rowcount
                    # A fresh copy must not fall to a delete order given for an older one.
                    db.execute(
                        "DELETE FROM trash WHERE node = ? AND block = ?", (node_id, got.block)
                    )
                    continue
                if row is not None:
                    bad.append(got.block)
                    changed += db.execute(
                        "DELETE FROM replicas WHERE block = ? AND node = ?", (got.block, node_id)
                    ).rowcount
                elif node_id in in_flight.get(got.block, ()):
                    continue
                changed += db.execute(
                    "INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)", (node_id, got.block)
                ).rowcount
        return changed, bad

    def drop_replicas(self, node_id: str, blocks: list[str]) -> None:
        """Forget replicas that *node_id* no longer has (it quarantined them)."""
        with self.store.write() as db:
            db.executemany(
                "DELETE FROM replicas WHERE node = ? AND block = ?", ((node_id, b) for b in blocks)
            )

    def drop_replicas_of_block(self, block: str, nodes: list[str]) -> None:
        """Surplus replicas: forget them and order their nodes to delete them."""
        with self.store.write() as db:
            for node in nodes:
                db.execute("DELETE FROM replicas WHERE block = ? AND node = ?", (block, node))
                db.execute("INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)", (node, block))

    def block_size_of(self, block: str) -> int:
        row = self.db.execute("SELECT size FROM blocks WHERE id = ?", (block,)).fetchone()
        return int(row[0]) if row else 0

    _REQUIRED = (
        "SELECT fb.block AS id, max(i.replication) AS req FROM file_blocks fb "
        "JOIN inodes i ON i.id = fb.inode GROUP BY fb.block"
    )
    _SERVING = (
        "SELECT r.block AS id, count(*) AS n FROM replicas r "
        "WHERE r.node IN (SELECT id FROM temp.serving) GROUP BY r.block"
    )

    def replication_work(self, serving: set[str]) -> list[tuple[str, int, int, list[str]]]:
        """(block, size, required replicas, nodes holding it) for every block whose count of
        replicas on serving nodes is not what its files require; the fewest replicas first."""
        self._set_nodes("serving", serving)
        rows = self.db.execute(
            f"WITH req AS ({self._REQUIRED}), cnt AS ({self._SERVING}) "
            "SELECT req.id, b.size, req.req FROM req JOIN blocks b ON b.id = req.id "
            "LEFT JOIN cnt ON cnt.id = req.id WHERE coalesce(cnt.n, 0) != req.req "
            "ORDER BY coalesce(cnt.n, 0), req.id"
        ).fetchall()
        work = []
        for block, size, required in rows:
            holders = [
                n for (n,) in self.db.execute("SELECT node FROM replicas WHERE block = ?", (block,))
            ]
            work.append((block, int(size), int(required), holders))
        return work

    def blocks_needing(self, node_id: str, serving: set[str]) -> int:
        """How many blocks on *node_id* still lack their replicas on serving nodes."""
        self._set_nodes("serving", serving)
        (count,) = self.db.execute(
            f"WITH req AS ({self._REQUIRED}), cnt AS ({self._SERVING}) "
            "SELECT count(*) FROM replicas r JOIN req ON req.id = r.block "
            "LEFT JOIN cnt ON cnt.id = r.block WHERE r.node = ? AND coalesce(cnt.n, 0) < req.req",
            (node_id,),
        ).fetchone()
        return int(count)

    def setrep(self, path: str, replication: int, user: User | None = None) -> int:
        """Set the replication factor of a file, or of every file below a directory (the caller
        needs w on each file, as HDFS asks, and r+x on each directory: see ``_walk``)."""
        with self._write() as db:
            node = self.resolve(path, user)
            self._walk(db, node, user)
            self._check_each(user, W, "type = 'f'")
            cur = db.execute(
                "UPDATE inodes SET replication = ? "
                "WHERE type = 'f' AND id IN (SELECT id FROM temp.subtree)",
                (replication,),
            )
        return cur.rowcount

    def _check_each(self, user: User | None, want: int, where: str) -> None:
        """Every inode in temp.subtree matching *where* must grant *user* the *want* bits (a
        refusal names the first that does not: ``_walk`` put in only what the user sees)."""
        if user is None or user.admin:
            return
        for node_id, owner, group, mode in self.db.execute(
            f"SELECT id, owner, grp, mode FROM inodes "
            f"WHERE id IN (SELECT id FROM temp.subtree) AND {where}"
        ):
            if not allowed(user, owner, group, mode, want):
                raise PermissionDenied(f"{self._path_of(node_id)}: permission denied")

    # --- permissions ----------------------------------------------------------------------

    def chmod(
        self, path: str, mode: int, user: User | None = None, *, recursive: bool = False
    ) -> int:
        """Set mode bits; only an owner (of everything it touches) or an admin may."""
        if not 0 <= mode <= MODE_BITS:
            raise InvalidArgument(f"mode {mode:o} out of range (0 to 1777 octal)")
        with self._reshape() as db:
            self._select_owned(db, path, user, recursive=recursive, what="chmod")
            cur = db.execute(
                "UPDATE inodes SET mode = ? WHERE id IN (SELECT id FROM temp.subtree)", (mode,)
            )
        return cur.rowcount

    def chown(
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
        with self._reshape() as db:
            self._select_owned(db, path, user, recursive=recursive, what="chown")
            cur = db.execute(
                "UPDATE inodes SET owner = coalesce(?, owner), grp = coalesce(?, grp) "
                "WHERE id IN (SELECT id FROM temp.subtree)",
                (owner, group),
            )
        return cur.rowcount

    def _select_owned(
        self, db: sqlite3.Connection, path: str, user: User | None, *, recursive: bool, what: str
    ) -> None:
        """Put *path* (and, with *recursive*, all below it) in temp.subtree, refusing unless
        *user* owns every one of them or is an admin. The walk enters the directories *user*
        owns even without r+x on them (it could give itself those bits), and no other directory
        it may not list (see ``_walk``)."""
        node = self.resolve(path, user)
        self._walk(db, node, user, owned=True) if recursive else self._select_one(db, node.id)
        if user is None or user.admin:
            return
        foreign = db.execute(
            "SELECT id FROM inodes WHERE id IN (SELECT id FROM temp.subtree) AND owner != ? "
            "ORDER BY id LIMIT 1",
            (user.name,),
        ).fetchone()
        if foreign:
            raise PermissionDenied(
                f"{self._path_of(foreign[0])}: only the owner or an admin may {what}"
            )

    def _select_one(self, db: sqlite3.Connection, inode_id: int) -> None:
        db.execute("DELETE FROM temp.subtree")
        db.execute("INSERT INTO temp.subtree VALUES (?)", (inode_id,))

    def make_home(self, name: str) -> str:
        """``/user/NAME``, owned by the user, in its own group, 0750 (HDFS keeps homes there)."""
        home = f"/user/{name}"
        if self.lookup("/user") is None:
            self.mkdir("/user", mode=0o755)
        if self.lookup(home) is None:
            self.mkdir(home, mode=0o750)
            with self._reshape() as db:
                node = self.resolve(home)
                db.execute(
                    "UPDATE inodes SET owner = ?, grp = ? WHERE id = ?", (name, name, node.id)
                )
        return home

    def _path_of(self, inode_id: int) -> str:
        parts = []
        while inode_id != ROOT_ID:
            node = self._get(inode_id)
            if node is None:
                break
            parts.append(node.name)
            inode_id = node.parent
        return "/" + "/".join(reversed(parts))

    def fsck(
        self, path: str, live: set[str], serving: set[str], corrupt: set[str], *, files: bool
    ) -> wire.FsckReport:
        """Block health below *path*: healthy (enough replicas on serving nodes), under-replicated
        (readable, but too few), missing (no replica on a live node), corrupt (a replica failed
        verification and has not been replaced yet)."""
        node = self.resolve(path)
        self._select_subtree(self.db, node.id)
        self._set_nodes("serving", serving)
        self._set_nodes("live", live)
        rows = self.db.execute(
            f"WITH req AS ({self._REQUIRED}), cnt AS ({self._SERVING}), "
            "readable AS (SELECT r.block AS id, count(*) AS n FROM replicas r "
            "WHERE r.node IN (SELECT id FROM temp.live) GROUP BY r.block) "
            "SELECT fb.inode, fb.block, req.req, coalesce(cnt.n, 0), coalesce(readable.n, 0) "
            "FROM file_blocks fb JOIN req ON req.id = fb.block "
            "LEFT JOIN cnt ON cnt.id = fb.block LEFT JOIN readable ON readable.id = fb.block "
            "WHERE fb.inode IN (SELECT id FROM temp.subtree) ORDER BY fb.inode, fb.idx"
        )
        report = wire.FsckReport(path=path)
        per_file: dict[int, wire.FileHealth] = {}
        for inode, block, required, have, readable in rows:
            health = per_file.get(inode)
            if health is None:
                health = per_file[inode] = wire.FileHealth(path="")
            health.blocks += 1
            report.blocks += 1
            if readable == 0:
                health.missing += 1
                report.missing += 1
            elif have < required:
                health.under_replicated += 1
                report.under_replicated += 1
            else:
                health.healthy += 1
                report.healthy += 1
            if block in corrupt:
                health.corrupt += 1
                report.corrupt += 1
        (report.files,) = self.db.execute(
            "SELECT count(*) FROM inodes WHERE type = 'f' AND id IN (SELECT id FROM temp.subtree)"
        ).fetchone()
        if files:
            for inode, health in sorted(per_file.items()):
                health.path = self._path_of(inode)
                report.file_details.append(health)
        return report

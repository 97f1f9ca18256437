"""The directory tree and each file's list of blocks: every namespace operation, transactional.

Paths arrive normalised (``pydfs.paths``). Each mutating method is one durable transaction, so a
crash leaves either the old or the new state. Blocks are immutable and may be shared: a copy
shares its source's blocks, and a block is released (its replicas queued for deletion in
``trash``) only when no file names it any more.
"""

from __future__ import annotations

import random
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass

from pydfs import paths, wire
from pydfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
)
from pydfs.namenode.membership import Membership
from pydfs.namenode.store import Store

ROOT_ID = 1
_COLS = "id, parent, name, type, size, mtime, ctime, owner, replication, block_size"


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

    @property
    def is_dir(self) -> bool:
        return self.type == "d"


class Namespace:
    def __init__(
        self,
        store: Store,
        membership: Membership,
        *,
        replication: int,
        block_size: int,
        lost_replica_grace: float = 300.0,
    ) -> None:
        self.store = store
        self.db = store.db
        self.membership = membership
        self.replication = replication
        self.block_size = block_size
        self.lost_replica_grace = lost_replica_grace
        self.db.execute("PRAGMA temp_store=MEMORY")
        for table in ("subtree", "doomed_blocks", "report", "serving", "live"):
            kind = "INTEGER" if table == "subtree" else "TEXT"
            self.db.execute(f"CREATE TEMP TABLE IF NOT EXISTS {table} (id {kind} PRIMARY KEY)")
        if self._get(ROOT_ID) is None:
            now = time.time()
            with store.write() as db:
                db.execute(
                    f"INSERT INTO inodes ({_COLS}) VALUES (?, 0, '', 'd', 0, ?, ?, 'root', 0, 0)",
                    (ROOT_ID, now, now),
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

    def lookup(self, path: str) -> Inode | None:
        """The inode at *path*, or None; a file in the middle of the path is an error."""
        node = self._get(ROOT_ID)
        assert node is not None
        walked = ""
        for name in paths.split(path):
            if not node.is_dir:
                raise NotADirectory(f"{walked} is not a directory")
            child = self._child(node.id, name)
            if child is None:
                return None
            node = child
            walked += "/" + name
        return node

    def resolve(self, path: str) -> Inode:
        node = self.lookup(path)
        if node is None:
            raise NotFound(f"{path}: no such file or directory")
        return node

    def resolve_dir(self, path: str) -> Inode:
        node = self.resolve(path)
        if not node.is_dir:
            raise NotADirectory(f"{path} is not a directory")
        return node

    def _status(self, node: Inode, path: str, *, with_blocks: bool = False) -> wire.FileStatus:
        return wire.FileStatus(
            path=path,
            name=node.name or "/",
            type="dir" if node.is_dir else "file",
            size=node.size,
            mtime=node.mtime,
            ctime=node.ctime,
            owner=node.owner,
            replication=node.replication,
            block_size=node.block_size,
            blocks=self._blocks(node.id) if with_blocks and not node.is_dir else None,
        )

    def _blocks(self, inode_id: int) -> list[wire.BlockInfo]:
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
        return blocks

    def stat(self, path: str) -> wire.FileStatus:
        return self._status(self.resolve(path), path, with_blocks=True)

    def listdir(self, path: str) -> wire.Listing:
        node = self.resolve(path)
        if not node.is_dir:
            return wire.Listing(path, [self._status(node, path)])
        rows = self.db.execute(
            f"SELECT {_COLS} FROM inodes WHERE parent = ? ORDER BY name", (node.id,)
        )
        children = [Inode(*row) for row in rows]
        return wire.Listing(path, [self._status(c, paths.join(path, c.name)) for c in children])

    # --- directories ----------------------------------------------------------------------

    def _insert(
        self,
        db: sqlite3.Connection,
        parent: Inode,
        name: str,
        type: str,
        owner: str,
        *,
        size: int = 0,
        replication: int = 0,
        block_size: int = 0,
    ) -> int:
        now = time.time()
        cur = db.execute(
            "INSERT INTO inodes (parent, name, type, size, mtime, ctime, owner, replication, "
            "block_size) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (parent.id, name, type, size, now, now, owner, replication, block_size),
        )
        db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (now, parent.id))
        assert cur.lastrowid is not None
        return cur.lastrowid

    def mkdir(self, path: str, owner: str, *, parents: bool = False) -> wire.FileStatus:
        with self.store.write() as db:
            existing = self.lookup(path)
            if existing is not None:
                if parents and existing.is_dir:
                    return self._status(existing, path)
                raise AlreadyExists(f"{path} already exists")
            todo = [path]
            while (parent := self.lookup(paths.parent(todo[-1]))) is None:
                if not parents:
                    raise NotFound(f"{paths.parent(path)}: no such directory (use -p to create it)")
                todo.append(paths.parent(todo[-1]))
            for p in reversed(todo):
                if not parent.is_dir:
                    raise NotADirectory(f"{paths.parent(p)} is not a directory")
                self._insert(db, parent, paths.basename(p), "d", owner)
                parent = self.resolve(p)
        return self._status(parent, path)

    def create_file(self, path: str, owner: str) -> wire.FileStatus:
        if path == paths.ROOT:
            raise AlreadyExists("/ already exists")
        with self.store.write() as db:
            parent = self.resolve_dir(paths.parent(path))
            if self._child(parent.id, paths.basename(path)) is not None:
                raise AlreadyExists(f"{path} already exists")
            self._insert(
                db,
                parent,
                paths.basename(path),
                "f",
                owner,
                replication=self.replication,
                block_size=self.block_size,
            )
        return self.stat(path)

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
        db.execute("DELETE FROM temp.subtree")
        db.execute("INSERT INTO temp.subtree VALUES (?)", (inode_id,))
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

    def delete(self, path: str, *, recursive: bool = False, type: str = "any") -> int:
        """Remove a file or directory; returns how many files went with it."""
        if path == paths.ROOT:
            raise InvalidArgument("the root directory cannot be deleted (use initialize)")
        with self.store.write() as db:
            node = self.resolve(path)
            if type == "file" and node.is_dir:
                raise IsADirectory(f"{path} is a directory")
            if type == "dir" and not node.is_dir:
                raise NotADirectory(f"{path} is not a directory")
            if node.is_dir and not recursive:
                child = db.execute("SELECT 1 FROM inodes WHERE parent = ? LIMIT 1", (node.id,))
                if child.fetchone():
                    raise DirectoryNotEmpty(f"{path} is not empty")
            self._select_subtree(db, node.id)
            files = self._release_doomed(db)
            db.execute("UPDATE inodes SET mtime = ? WHERE id = ?", (time.time(), node.parent))
        return files

    def format(self) -> tuple[int, int]:
        """Remove everything but the root; returns (files, blocks) removed."""
        with self.store.write() as db:
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
        owner: str,
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
        with self.store.write() as db:
            parent = self.resolve_dir(paths.parent(path))
            name = paths.basename(path)
            existing = self._child(parent.id, name)
            if existing is not None:
                if existing.is_dir:
                    raise IsADirectory(f"{path} is a directory")
                if not overwrite:
                    raise AlreadyExists(f"{path} already exists")
                self._release_file(db, existing.id, keep_inode=True)
                db.execute(
                    "UPDATE inodes SET size = ?, mtime = ?, replication = ?, block_size = ?, "
                    "owner = ? WHERE id = ?",
                    (size, now, replication, block_size, owner, existing.id),
                )
                inode_id = existing.id
            else:
                inode_id = self._insert(
                    db,
                    parent,
                    name,
                    "f",
                    owner,
                    size=size,
                    replication=replication,
                    block_size=block_size,
                )
            db.executemany(
                "INSERT INTO blocks (id, size, crc, ctime) VALUES (?, ?, ?, ?)",
                [(b.block_id, b.size, b.crc, now) for b in blocks],
            )
            db.executemany(
                "INSERT OR IGNORE INTO replicas (block, node) VALUES (?, ?)",
                [(b.block_id, n) for b in blocks for n in b.nodes],
            )
            db.executemany(
                "INSERT INTO file_blocks (inode, idx, block) VALUES (?, ?, ?)",
                [(inode_id, i, b.block_id) for i, b in enumerate(blocks)],
            )
        return self.stat(path)

    def _target(self, src: str, dst: str) -> tuple[str, Inode | None]:
        """Where a copy or move of *src* to *dst* lands: into *dst* when it is a directory."""
        existing = self.lookup(dst)
        if existing is not None and existing.is_dir:
            dst = paths.join(dst, paths.basename(src))
            existing = self.lookup(dst)
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
        self, src: str, dst: str | None, owner: str, *, overwrite: bool = False
    ) -> wire.FileStatus:
        """Copy a file by sharing its immutable blocks: no byte moves."""
        with self.store.write() as db:
            source = self.resolve(src)
            if source.is_dir:
                raise IsADirectory(f"{src} is a directory (file_copy copies files)")
            if dst is None:
                target, existing = self._free_copy_name(src), None
            else:
                target, existing = self._target(src, dst)
            if target == src:
                raise AlreadyExists(f"{src} cannot be copied onto itself")
            parent = self.resolve_dir(paths.parent(target))
            if existing is not None:
                if existing.is_dir:
                    raise IsADirectory(f"{target} is a directory")
                if not overwrite:
                    raise AlreadyExists(f"{target} already exists")
                # Blocks it shares with the source survive: the source still names them.
                self._release_file(db, existing.id, keep_inode=False)
            inode_id = self._insert(
                db,
                parent,
                paths.basename(target),
                "f",
                owner,
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

    def move(self, src: str, dst: str, *, overwrite: bool = False) -> wire.FileStatus:
        if src == paths.ROOT:
            raise InvalidArgument("the root directory cannot be moved")
        with self.store.write() as db:
            source = self.resolve(src)
            target, existing = self._target(src, dst)
            if target == src:
                return self._status(source, src)
            if source.is_dir and paths.is_within(target, src):
                raise InvalidArgument(f"cannot move {src} into itself")
            parent = self.resolve_dir(paths.parent(target))
            if existing is not None:
                if existing.is_dir or source.is_dir:
                    raise AlreadyExists(f"{target} already exists")
                if not overwrite:
                    raise AlreadyExists(f"{target} already exists (use --force to replace it)")
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

    # --- data node bookkeeping ------------------------------------------------------------

    def reconcile(self, node_id: str, reported: Iterable[str], in_flight: set[str]) -> None:
        """Apply a full block report: count the replicas we know, trash those nobody needs, and
        forget replicas the node no longer has (unless they are too new to be in its report)."""
        with self.store.write() as db:
            db.execute("DELETE FROM temp.report")
            db.executemany("INSERT OR IGNORE INTO temp.report VALUES (?)", ((b,) for b in reported))
            # A replica with a delete order still pending is on its way out (trimmed, say):
            # counting it again would let the next trim take a real copy.
            db.execute(
                "INSERT OR IGNORE INTO replicas (block, node) SELECT r.id, ? FROM temp.report r "
                "WHERE EXISTS (SELECT 1 FROM blocks b WHERE b.id = r.id) "
                "AND NOT EXISTS (SELECT 1 FROM trash t WHERE t.node = ? AND t.block = r.id)",
                (node_id, node_id),
            )
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
                "AND block IN (SELECT id FROM blocks WHERE ctime < ?)",
                (node_id, time.time() - self.lost_replica_grace),
            )
            db.execute(
                "DELETE FROM trash WHERE node = ? AND block NOT IN (SELECT id FROM temp.report)",
                (node_id,),
            )

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
        with self.store.write() as db:
            db.executemany("INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)", pairs)

    # --- replication ----------------------------------------------------------------------

    def _set_nodes(self, table: str, nodes: set[str]) -> None:
        self.db.execute(f"DELETE FROM temp.{table}")
        self.db.executemany(f"INSERT INTO temp.{table} VALUES (?)", ((n,) for n in nodes))

    def add_replicas(self, node_id: str, blocks: list[str], in_flight: set[str]) -> int:
        """A data node stored *blocks*: count the known ones, trash those nobody will commit.
        Returns how many replicas this changed (a client write's were counted at its commit)."""
        changed = 0
        with self.store.write() as db:
            for block in blocks:
                if db.execute("SELECT 1 FROM blocks WHERE id = ?", (block,)).fetchone():
                    changed += db.execute(
                        "INSERT OR IGNORE INTO replicas (block, node) VALUES (?, ?)",
                        (block, node_id),
                    ).rowcount
                    # A fresh copy must not fall to a delete order given for an older one.
                    db.execute("DELETE FROM trash WHERE node = ? AND block = ?", (node_id, block))
                elif block not in in_flight:
                    changed += db.execute(
                        "INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)", (node_id, block)
                    ).rowcount
        return changed

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

    def setrep(self, path: str, replication: int) -> int:
        """Set the replication factor of a file, or of every file below a directory."""
        with self.store.write() as db:
            node = self.resolve(path)
            self._select_subtree(db, node.id)
            cur = db.execute(
                "UPDATE inodes SET replication = ? "
                "WHERE type = 'f' AND id IN (SELECT id FROM temp.subtree)",
                (replication,),
            )
        return cur.rowcount

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

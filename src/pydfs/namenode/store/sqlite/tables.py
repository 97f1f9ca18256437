"""The repositories of ``store.interface`` in SQLite's dialect, over one connection.

Sets of ids travel as one JSON array (``json_each``), so that a statement's text never depends
on how many there are; ``touch``, which every new entry makes, names its one or two ids
instead (a JSON array costs that statement several times its work).
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Iterable

from pydfs.errors import AlreadyExists
from pydfs.namenode.store.interface import (
    Block,
    BlockHealth,
    DataNodeRow,
    Entry,
    Inode,
    Misreplicated,
    NewInode,
    Orphans,
    Placed,
    Restored,
    UploadRow,
    UserRow,
)

_COLS = (
    "id, parent, name, type, size, mtime, ctime, owner, replication, block_size, grp, mode, target"
)
_ENTRY = "name, type, size, mtime, ctime, owner, grp, mode, replication, block_size, target"
_ANY = "(SELECT value FROM json_each(?))"  # the members of a JSON array parameter


_inode = Inode._make


def _array(ids: Iterable[object]) -> str:
    return json.dumps(list(ids))


class Inodes:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def get(self, inode_id: int) -> Inode | None:
        row = self.db.execute(f"SELECT {_COLS} FROM inodes WHERE id = ?", (inode_id,)).fetchone()
        return _inode(row) if row else None

    async def child(self, parent: int, name: str) -> Inode | None:
        row = self.db.execute(
            f"SELECT {_COLS} FROM inodes WHERE parent = ? AND name = ?", (parent, name)
        ).fetchone()
        return _inode(row) if row else None

    async def entries(self, parent: int) -> Iterable[Entry]:
        return self.db.execute(
            f"SELECT {_ENTRY} FROM inodes WHERE parent = ? ORDER BY name", (parent,)
        )

    async def has_children(self, inode_id: int) -> bool:
        row = self.db.execute("SELECT 1 FROM inodes WHERE parent = ? LIMIT 1", (inode_id,))
        return row.fetchone() is not None

    async def page(
        self, parent: int, limit: int, *, after: str | None = None, before: str | None = None
    ) -> list[Inode]:
        bound: tuple[str, ...] = ()
        clause, order = "", "ASC"
        if before is not None:
            clause, bound, order = "AND name < ?", (before,), "DESC"
        elif after is not None:
            clause, bound = "AND name > ?", (after,)
        rows = self.db.execute(
            f"SELECT {_COLS} FROM inodes WHERE parent = ? {clause} ORDER BY name {order} LIMIT ?",
            (parent, *bound, limit),
        ).fetchall()
        return list(map(_inode, reversed(rows) if before is not None else rows))

    async def beyond(self, parent: int, name: str, later: bool) -> bool:
        op = ">" if later else "<"
        sql = f"SELECT 1 FROM inodes WHERE parent = ? AND name {op} ? LIMIT 1"
        return self.db.execute(sql, (parent, name)).fetchone() is not None

    async def tally(self, parent: int) -> dict[str, tuple[int, int]]:
        rows = self.db.execute(
            "SELECT type, count(*), coalesce(sum(size), 0) FROM inodes WHERE parent = ? "
            "GROUP BY type",
            (parent,),
        )
        return {kind: (int(n), int(total)) for kind, n, total in rows}

    async def subtree(self, inode_id: int) -> list[Inode]:
        rows = self.db.execute(
            "WITH RECURSIVE sub(id, depth) AS (SELECT ?, 0 UNION ALL "
            "SELECT i.id, sub.depth + 1 FROM inodes i JOIN sub ON i.parent = sub.id) "
            f"SELECT {', '.join('i.' + c for c in _COLS.split(', '))} "
            "FROM sub JOIN inodes i ON i.id = sub.id ORDER BY sub.depth, i.id",
            (inode_id,),
        )
        return list(map(_inode, rows))

    async def insert(
        self, new: NewInode, *, inode_id: int | None = None, sha256: str | None = None
    ) -> int:
        try:
            cur = self.db.execute(
                "INSERT INTO inodes (id, parent, name, type, size, mtime, ctime, owner, "
                "replication, block_size, grp, mode, target, sha256) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    inode_id,
                    new.parent,
                    new.name,
                    new.type,
                    new.size,
                    new.mtime,
                    new.mtime,
                    new.owner,
                    new.replication,
                    new.block_size,
                    new.group,
                    new.mode,
                    new.target,
                    sha256,
                ),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"{new.name} already exists") from None
        assert cur.lastrowid is not None
        return cur.lastrowid

    async def touch(self, inode_ids: Iterable[int], mtime: float) -> None:
        self.db.executemany(
            "UPDATE inodes SET mtime = ? WHERE id = ?", [(mtime, i) for i in inode_ids]
        )

    async def set_content(
        self, inode_id: int, *, size: int, mtime: float, replication: int, block_size: int
    ) -> None:
        self.db.execute(
            "UPDATE inodes SET size = ?, mtime = ?, replication = ?, block_size = ? WHERE id = ?",
            (size, mtime, replication, block_size, inode_id),
        )

    async def rename(self, inode_id: int, parent: int, name: str) -> None:
        self.db.execute(
            "UPDATE inodes SET parent = ?, name = ? WHERE id = ?", (parent, name, inode_id)
        )

    async def delete(self, inode_ids: list[int]) -> None:
        self.db.execute(f"DELETE FROM inodes WHERE id IN {_ANY}", (_array(inode_ids),))

    async def delete_all_but(self, inode_id: int) -> None:
        self.db.execute("DELETE FROM inodes WHERE id != ?", (inode_id,))

    async def set_mode(self, inode_ids: list[int], mode: int) -> int:
        cur = self.db.execute(
            f"UPDATE inodes SET mode = ? WHERE id IN {_ANY}", (mode, _array(inode_ids))
        )
        return cur.rowcount

    async def set_owner(self, inode_ids: list[int], owner: str | None, group: str | None) -> int:
        cur = self.db.execute(
            "UPDATE inodes SET owner = coalesce(?, owner), grp = coalesce(?, grp) "
            f"WHERE id IN {_ANY}",
            (owner, group, _array(inode_ids)),
        )
        return cur.rowcount

    async def set_replication(self, inode_ids: list[int], replication: int) -> int:
        cur = self.db.execute(
            f"UPDATE inodes SET replication = ? WHERE type = 'f' AND id IN {_ANY}",
            (replication, _array(inode_ids)),
        )
        return cur.rowcount

    async def sha256(self, inode_id: int) -> str | None:
        row = self.db.execute("SELECT sha256 FROM inodes WHERE id = ?", (inode_id,)).fetchone()
        return row[0] if row else None

    async def set_sha256(self, inode_id: int, sha256: str | None) -> None:
        self.db.execute("UPDATE inodes SET sha256 = ? WHERE id = ?", (sha256, inode_id))

    async def counts(self) -> dict[str, int]:
        """From the census triggers keep (migration 0006), not a count of every row."""
        rows = self.db.execute(
            "SELECT kind, n FROM census WHERE kind IN ('f', 'd') OR (kind = 'l' AND n > 0)"
        )
        return dict(rows)


# The factor each named block needs (the highest of its files'), and its replicas on the nodes
# in the JSON array parameter.
_REQUIRED = (
    "SELECT fb.block AS id, max(i.replication) AS req FROM file_blocks fb "
    "JOIN inodes i ON i.id = fb.inode GROUP BY fb.block"
)
_ON = "SELECT r.block AS id, count(*) AS n FROM replicas r WHERE r.node IN {} GROUP BY r.block"


class BlockMap:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def get(self, block_id: str) -> Block | None:
        row = self.db.execute(
            "SELECT id, size, crc FROM blocks WHERE id = ?", (block_id,)
        ).fetchone()
        return Block(*row) if row else None

    async def of_file(self, inode_id: int) -> list[Placed]:
        rows = self.db.execute(
            "SELECT b.id, b.size, b.crc, r.node FROM file_blocks fb "
            "JOIN blocks b ON b.id = fb.block LEFT JOIN replicas r ON r.block = b.id "
            "WHERE fb.inode = ? ORDER BY fb.idx, r.node",
            (inode_id,),
        )
        placed: list[Placed] = []
        for block_id, size, crc, node in rows:
            if not placed or placed[-1].block.id != block_id:
                placed.append(Placed(Block(block_id, size, crc), []))
            if node is not None:
                placed[-1].nodes.append(node)
        return placed

    async def add(self, blocks: list[Block], ctime: float) -> None:
        self.db.executemany(
            "INSERT INTO blocks (id, size, crc, ctime) VALUES (?, ?, ?, ?)",
            [(b.id, b.size, b.crc, ctime) for b in blocks],
        )

    async def attach(self, inode_id: int, block_ids: list[str]) -> None:
        self.db.executemany(
            "INSERT INTO file_blocks (inode, idx, block) VALUES (?, ?, ?)",
            [(inode_id, i, b) for i, b in enumerate(block_ids)],
        )

    async def share(self, source: int, target: int) -> None:
        self.db.execute(
            "INSERT INTO file_blocks (inode, idx, block) "
            "SELECT ?, idx, block FROM file_blocks WHERE inode = ?",
            (target, source),
        )

    async def detach(self, inode_ids: list[int]) -> set[str]:
        ids = _array(inode_ids)
        named = {
            b
            for (b,) in self.db.execute(
                f"SELECT block FROM file_blocks WHERE inode IN {_ANY}", (ids,)
            )
        }
        self.db.execute(f"DELETE FROM file_blocks WHERE inode IN {_ANY}", (ids,))
        return named

    async def release(self, block_ids: set[str]) -> None:
        if not block_ids:
            return
        doomed = _array(
            b
            for (b,) in self.db.execute(
                "SELECT value FROM json_each(?) WHERE NOT EXISTS "
                "(SELECT 1 FROM file_blocks fb WHERE fb.block = value)",
                (_array(block_ids),),
            )
        )
        self.db.execute(
            "INSERT OR IGNORE INTO trash (node, block) SELECT node, block FROM replicas "
            f"WHERE block IN {_ANY}",
            (doomed,),
        )
        self.db.execute(f"DELETE FROM replicas WHERE block IN {_ANY}", (doomed,))
        self.db.execute(f"DELETE FROM blocks WHERE id IN {_ANY}", (doomed,))

    async def release_all(self) -> int:
        count = await self.count()
        self.db.execute(
            "INSERT OR IGNORE INTO trash (node, block) SELECT node, block FROM replicas"
        )
        for table in ("replicas", "file_blocks", "blocks"):
            self.db.execute(f"DELETE FROM {table}")
        return int(count)

    async def count(self) -> int:
        (count,) = self.db.execute("SELECT n FROM census WHERE kind = 'b'").fetchone()
        return int(count)

    async def known(self, block_ids: Iterable[str]) -> set[str]:
        rows = self.db.execute(f"SELECT id FROM blocks WHERE id IN {_ANY}", (_array(block_ids),))
        return {b for (b,) in rows}

    async def holders(self, block_id: str) -> list[str]:
        rows = self.db.execute(
            "SELECT node FROM replicas WHERE block = ? ORDER BY node", (block_id,)
        )
        return [n for (n,) in rows]

    async def holds(self, node: str, block_id: str) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM replicas WHERE node = ? AND block = ?", (node, block_id)
        ).fetchone()
        return row is not None

    async def on_node(self, node: str) -> dict[str, float]:
        return dict(self.db.execute("SELECT block, added FROM replicas WHERE node = ?", (node,)))

    async def add_replica(self, block_id: str, node: str, added: float) -> bool:
        cur = self.db.execute(
            "INSERT OR IGNORE INTO replicas (block, node, added) VALUES (?, ?, ?)",
            (block_id, node, added),
        )
        return cur.rowcount > 0

    async def add_replicas(self, pairs: list[tuple[str, str]], added: float) -> None:
        self.db.executemany(
            "INSERT OR IGNORE INTO replicas (block, node, added) VALUES (?, ?, ?)",
            [(block, node, added) for block, node in pairs],
        )

    async def drop_replicas(self, pairs: Iterable[tuple[str, str]]) -> int:
        before = self.db.total_changes
        self.db.executemany("DELETE FROM replicas WHERE block = ? AND node = ?", pairs)
        return self.db.total_changes - before

    async def trash(self, pairs: Iterable[tuple[str, str]]) -> int:
        before = self.db.total_changes
        self.db.executemany("INSERT OR IGNORE INTO trash (node, block) VALUES (?, ?)", pairs)
        return self.db.total_changes - before

    async def trash_unknown(self, pairs: Iterable[tuple[str, str]]) -> int:
        before = self.db.total_changes
        self.db.executemany(
            "INSERT OR IGNORE INTO trash (node, block) SELECT ?1, ?2 "
            "WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE id = ?2) "
            "AND NOT EXISTS (SELECT 1 FROM upload_blocks WHERE block = ?2 "
            "AND instr(',' || nodes || ',', ',' || ?1 || ',') > 0)",
            pairs,
        )
        return self.db.total_changes - before

    async def untrash(self, pairs: Iterable[tuple[str, str]]) -> None:
        self.db.executemany("DELETE FROM trash WHERE node = ? AND block = ?", pairs)

    async def trashed_on(self, node: str, limit: int | None = None) -> list[str]:
        rows = self.db.execute(
            "SELECT block FROM trash WHERE node = ? LIMIT ?", (node, -1 if limit is None else limit)
        )
        return [b for (b,) in rows]

    async def misreplicated(self, serving: set[str]) -> list[Misreplicated]:
        rows = self.db.execute(
            f"WITH req AS ({_REQUIRED}), cnt AS ({_ON.format(_ANY)}) "
            "SELECT req.id, b.size, req.req FROM req JOIN blocks b ON b.id = req.id "
            "LEFT JOIN cnt ON cnt.id = req.id WHERE coalesce(cnt.n, 0) != req.req "
            "ORDER BY coalesce(cnt.n, 0), req.id",
            (_array(serving),),
        ).fetchall()
        return [
            Misreplicated(block, int(size), int(required), await self.holders(block))
            for block, size, required in rows
        ]

    async def lacking_on(self, node: str, serving: set[str]) -> int:
        (count,) = self.db.execute(
            f"WITH req AS ({_REQUIRED}), cnt AS ({_ON.format(_ANY)}) "
            "SELECT count(*) FROM replicas r JOIN req ON req.id = r.block "
            "LEFT JOIN cnt ON cnt.id = r.block WHERE r.node = ? AND coalesce(cnt.n, 0) < req.req",
            (_array(serving), node),
        ).fetchone()
        return int(count)

    async def health(
        self, inode_ids: list[int], serving: set[str], live: set[str]
    ) -> list[BlockHealth]:
        rows = self.db.execute(
            f"WITH req AS ({_REQUIRED}), cnt AS ({_ON.format(_ANY)}), "
            f"readable AS ({_ON.format(_ANY)}) "
            "SELECT fb.inode, fb.block, req.req, coalesce(cnt.n, 0), coalesce(readable.n, 0) "
            "FROM file_blocks fb JOIN req ON req.id = fb.block "
            "LEFT JOIN cnt ON cnt.id = fb.block LEFT JOIN readable ON readable.id = fb.block "
            f"WHERE fb.inode IN {_ANY} ORDER BY fb.inode, fb.idx",
            (_array(serving), _array(live), _array(inode_ids)),
        )
        return [BlockHealth(*row) for row in rows]


class Users:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def lock(self, key: str = "") -> None:
        """Nothing to hold: one process writes, one transaction at a time."""

    _COLS = "name, token_hash, admin, groups, ctime"

    @staticmethod
    def _row(row: tuple[str, str, int, str, float]) -> UserRow:
        name, token_hash, admin, groups, ctime = row
        return UserRow(
            name, token_hash, bool(admin), tuple(g for g in groups.split(",") if g), ctime
        )

    async def by_token_hash(self, token_hash: str) -> UserRow | None:
        row = self.db.execute(
            f"SELECT {self._COLS} FROM users WHERE token_hash = ?", (token_hash,)
        ).fetchone()
        return self._row(row) if row else None

    async def by_name(self, name: str) -> UserRow | None:
        row = self.db.execute(f"SELECT {self._COLS} FROM users WHERE name = ?", (name,)).fetchone()
        return self._row(row) if row else None

    async def all(self) -> list[UserRow]:
        return [
            self._row(r) for r in self.db.execute(f"SELECT {self._COLS} FROM users ORDER BY name")
        ]

    async def add(self, user: UserRow) -> None:
        try:
            self.db.execute(
                f"INSERT INTO users ({self._COLS}) VALUES (?, ?, ?, ?, ?)",
                (user.name, user.token_hash, int(user.admin), ",".join(user.groups), user.ctime),
            )
        except sqlite3.IntegrityError:
            raise AlreadyExists(f"user {user.name!r} already exists") from None

    async def remove(self, names: Iterable[str]) -> None:
        self.db.executemany("DELETE FROM users WHERE name = ?", ((n,) for n in names))

    async def set_token_hash(self, name: str, token_hash: str) -> None:
        self.db.execute("UPDATE users SET token_hash = ? WHERE name = ?", (token_hash, name))

    async def set_groups(self, name: str, groups: tuple[str, ...]) -> None:
        self.db.execute("UPDATE users SET groups = ? WHERE name = ?", (",".join(groups), name))


class DataNodes:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def all(self) -> list[DataNodeRow]:
        rows = self.db.execute("SELECT id, url, admin_state FROM datanodes ORDER BY id")
        return [DataNodeRow(*row) for row in rows]

    async def put(self, node_id: str, url: str) -> None:
        self.db.execute(
            "INSERT INTO datanodes (id, url) VALUES (?, ?) "
            "ON CONFLICT (id) DO UPDATE SET url = excluded.url",
            (node_id, url),
        )

    async def set_admin_state(self, node_id: str, state: str) -> None:
        self.db.execute("UPDATE datanodes SET admin_state = ? WHERE id = ?", (state, node_id))


class Uploads:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    _COLS = "id, user, path, replication, block_size, overwrite, started, expires"

    @staticmethod
    def _row(row: tuple[str, str, str | None, int, int, int, float, float]) -> UploadRow:
        uid, user, path, replication, block_size, overwrite, started, expires = row
        return UploadRow(
            uid, user, path, replication, block_size, bool(overwrite), started, expires
        )

    async def open(self, upload: UploadRow) -> None:
        self.db.execute(
            f"INSERT INTO uploads ({self._COLS}) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (*upload[:5], int(upload.overwrite), upload.started, upload.expires),
        )

    async def get(self, upload_id: str) -> UploadRow | None:
        row = self.db.execute(
            f"SELECT {self._COLS} FROM uploads WHERE id = ?", (upload_id,)
        ).fetchone()
        return self._row(row) if row else None

    async def renew(self, upload_id: str, expires: float) -> None:
        self.db.execute("UPDATE uploads SET expires = ? WHERE id = ?", (expires, upload_id))

    async def grant(self, upload_id: str, block_id: str, nodes: list[str]) -> None:
        self.db.execute(
            "INSERT INTO upload_blocks (block, upload, nodes) VALUES (?, ?, ?)",
            (block_id, upload_id, ",".join(nodes)),
        )

    async def granted(self, upload_id: str) -> dict[str, list[str]]:
        rows = self.db.execute(
            "SELECT block, nodes FROM upload_blocks WHERE upload = ?", (upload_id,)
        )
        return {block: nodes.split(",") for block, nodes in rows}

    async def close(self, upload_id: str) -> None:
        self.db.execute("DELETE FROM upload_blocks WHERE upload = ?", (upload_id,))
        self.db.execute("DELETE FROM uploads WHERE id = ?", (upload_id,))

    async def open_by(self, user: str) -> int:
        (count,) = self.db.execute(
            "SELECT count(*) FROM uploads WHERE user = ?", (user,)
        ).fetchone()
        return int(count)

    async def expired(self, now: float) -> list[str]:
        return [u for (u,) in self.db.execute("SELECT id FROM uploads WHERE expires < ?", (now,))]

    async def all(self) -> list[tuple[UploadRow, int]]:
        rows = self.db.execute(
            f"SELECT {', '.join('u.' + c for c in self._COLS.split(', '))}, "
            "(SELECT count(*) FROM upload_blocks b WHERE b.upload = u.id) "
            "FROM uploads u ORDER BY u.started, u.id"
        )
        return [(self._row(row[:8]), int(row[8])) for row in rows]

    async def grant_of(self, block_id: str) -> list[str] | None:
        row = self.db.execute(
            "SELECT nodes FROM upload_blocks WHERE block = ?", (block_id,)
        ).fetchone()
        return row[0].split(",") if row else None

    async def in_flight(self, block_ids: Iterable[str]) -> set[str]:
        rows = self.db.execute(
            f"SELECT block FROM upload_blocks WHERE block IN {_ANY}", (_array(block_ids),)
        )
        return {b for (b,) in rows}


class Restore:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def state(self) -> Restored | None:
        row = self.db.execute(
            "SELECT taken, restored FROM provenance WHERE restored IS NOT NULL"
        ).fetchone()
        return Restored(*row) if row else None

    async def keep(self, node: str, blocks: set[str]) -> list[str]:
        held = _array(sorted(blocks))
        self.db.execute(f"DELETE FROM orphans WHERE node = ? AND block NOT IN {_ANY}", (node, held))
        self.db.execute(
            "INSERT OR IGNORE INTO orphans (node, block) SELECT ?, value FROM json_each(?)",
            (node, held),
        )
        rows = self.db.execute(
            "SELECT block FROM orphans WHERE node = ? AND size IS NULL ORDER BY block", (node,)
        )
        return [b for (b,) in rows]

    async def measured(self, node: str, block: str, size: int) -> None:
        self.db.execute(
            "INSERT INTO orphans (node, block, size) VALUES (?, ?, ?) "
            "ON CONFLICT (node, block) DO UPDATE SET size = excluded.size",
            (node, block, size),
        )

    async def orphans(self) -> Orphans:
        row = self.db.execute(
            "SELECT count(*), coalesce(sum(n), 0), coalesce(sum(size), 0), "
            "coalesce(sum(size IS NULL), 0) "
            "FROM (SELECT count(*) AS n, max(size) AS size FROM orphans GROUP BY block)"
        ).fetchone()
        return Orphans(*(int(v) for v in row))

    async def finish(self) -> Orphans:
        kept = await self.orphans()
        self.db.execute("DELETE FROM orphans")
        self.db.execute("UPDATE provenance SET restored = NULL")
        return kept

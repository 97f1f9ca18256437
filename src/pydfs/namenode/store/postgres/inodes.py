"""The directory tree's repository (``interface.Inodes``) in PostgreSQL's dialect, over one
transaction's ``Session``; the locks it takes are drawn in the package's docstring."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import asyncpg

from pydfs.errors import AlreadyExists, DirectoryNotEmpty, InvalidArgument, NotFound
from pydfs.namenode.store.interface import Entry, Inode, NewInode
from pydfs.namenode.store.postgres import rowcount

if TYPE_CHECKING:
    from pydfs.namenode.store.postgres import Tx

_NAMES = (
    "id",
    "parent",
    "name",
    "type",
    "size",
    "mtime",
    "ctime",
    "owner",
    "replication",
    "block_size",
    "grp",
    "mode",
    "target",
)
# An inode's columns, as ``Inode`` takes them: the root's NULL parent is 0 there.
_COLS = ", ".join("coalesce(parent, 0)" if c == "parent" else c for c in _NAMES)
_ENTRY = "name, type, size, mtime, ctime, owner, grp, mode, replication, block_size, target"
_I_COLS = ", ".join("coalesce(i.parent, 0)" if c == "parent" else f"i.{c}" for c in _NAMES)

# Moves of a directory to another directory hold this transaction-level advisory lock, as
# Linux's rename of a directory across directories holds its file system's rename mutex: with
# it, the check that the target is not below the directory moved cannot go stale.
MOVE_LOCK = 0x70796466_73_6D76  # "pydfs" "mv"


def _inode(row: tuple[Any, ...]) -> Inode:
    return Inode(*row)


class Inodes:
    def __init__(self, tx: Tx) -> None:
        self.tx = tx
        self.q = tx.session

    async def get(self, inode_id: int) -> Inode | None:
        rows = await self.q.fetch(f"SELECT {_COLS} FROM inodes WHERE id = $1", inode_id)
        return _inode(rows[0]) if rows else None

    async def child(self, parent: int, name: str) -> Inode | None:
        rows = await self.q.fetch(
            f"SELECT {_COLS} FROM inodes WHERE parent = $1 AND name = $2", parent, name
        )
        return _inode(rows[0]) if rows else None

    async def entries(self, parent: int) -> list[Entry]:
        rows = await self.q.fetch(
            f"SELECT {_ENTRY} FROM inodes WHERE parent = $1 ORDER BY name", parent
        )
        return [tuple(r) for r in rows]

    async def has_children(self, inode_id: int) -> bool:
        return bool(await self.q.fetch("SELECT 1 FROM inodes WHERE parent = $1 LIMIT 1", inode_id))

    async def page(
        self, parent: int, limit: int, *, after: str | None = None, before: str | None = None
    ) -> list[Inode]:
        if before is not None:
            rows = await self.q.fetch(
                f"SELECT {_COLS} FROM inodes WHERE parent = $1 AND name < $2 "
                "ORDER BY name DESC LIMIT $3",
                parent,
                before,
                limit,
            )
            return [_inode(r) for r in reversed(rows)]
        rows = await self.q.fetch(
            f"SELECT {_COLS} FROM inodes WHERE parent = $1 AND ($2::text IS NULL OR name > $2) "
            "ORDER BY name LIMIT $3",
            parent,
            after,
            limit,
        )
        return [_inode(r) for r in rows]

    async def beyond(self, parent: int, name: str, later: bool) -> bool:
        op = ">" if later else "<"
        sql = f"SELECT 1 FROM inodes WHERE parent = $1 AND name {op} $2 LIMIT 1"
        return bool(await self.q.fetch(sql, parent, name))

    async def tally(self, parent: int) -> dict[str, tuple[int, int]]:
        rows = await self.q.fetch(
            "SELECT type, count(*), coalesce(sum(size), 0) FROM inodes WHERE parent = $1 "
            "GROUP BY type",
            parent,
        )
        return {kind: (int(n), int(total)) for kind, n, total in rows}

    async def subtree(self, inode_id: int) -> list[Inode]:
        rows = await self.q.fetch(
            "WITH RECURSIVE sub(id, depth) AS (SELECT $1::bigint, 0 UNION ALL "
            "SELECT i.id, sub.depth + 1 FROM inodes i JOIN sub ON i.parent = sub.id) "
            f"SELECT {_I_COLS} FROM sub JOIN inodes i ON i.id = sub.id ORDER BY sub.depth, i.id",
            inode_id,
        )
        return [_inode(r) for r in rows]

    async def insert(
        self, new: NewInode, *, inode_id: int | None = None, sha256: str | None = None
    ) -> int:
        """A name taken is found without aborting the transaction (``ON CONFLICT``); a parent
        gone (removed by a transaction that committed first) is ``NotFound``."""
        self.tx.structural = True
        try:
            rows = await self.q.fetch(
                "INSERT INTO inodes (id, parent, name, type, size, mtime, ctime, owner, "
                "replication, block_size, grp, mode, target, sha256) "
                "VALUES (coalesce($1, nextval('inode_ids')), "
                "nullif($2::bigint, 0), $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12, $13) "
                "ON CONFLICT ON CONSTRAINT inodes_parent_name DO NOTHING RETURNING id",
                inode_id,
                new.parent,
                new.name,
                new.type,
                new.size,
                new.mtime,
                new.owner,
                new.replication,
                new.block_size,
                new.group,
                new.mode,
                new.target,
                sha256,
                pin=0,
            )
        except asyncpg.UniqueViolationError:  # the id (only the root's is given)
            raise AlreadyExists(f"{new.name or '/'} already exists") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"{new.name}: its directory was removed") from None
        if not rows:
            raise AlreadyExists(f"{new.name} already exists")
        return int(rows[0][0])

    async def touch(self, inode_ids: Iterable[int], mtime: float) -> None:
        """In a transaction that also makes, moves or removes entries, this records that their
        directories changed: applied just after the commit (``Tx.changed``), never holding a
        directory's row across a commit, so creators in one directory do not queue for it.
        Otherwise (``touch``, ``cp -p``) the time is set here, as given."""
        ids = sorted(set(inode_ids))
        if self.tx.structural:
            self.tx.changed(ids, mtime)
        else:
            await self.q.execute(
                "UPDATE inodes SET mtime = $1 WHERE id = ANY($2::bigint[])", mtime, ids
            )

    async def set_content(
        self, inode_id: int, *, size: int, mtime: float, replication: int, block_size: int
    ) -> None:
        await self.q.execute(
            "UPDATE inodes SET size = $1, mtime = $2, replication = $3, block_size = $4 "
            "WHERE id = $5",
            size,
            mtime,
            replication,
            block_size,
            inode_id,
        )

    async def rename(self, inode_id: int, parent: int, name: str) -> None:
        """A directory moved to another directory: under ``MOVE_LOCK``, and refused if the
        target is the directory or below it, as committed now (the caller's check was made on
        paths it walked before it held the lock)."""
        self.tx.structural = True
        rows = await self.q.fetch("SELECT type, parent FROM inodes WHERE id = $1", inode_id)
        if not rows:
            raise NotFound(f"{name}: what was to be moved was removed meanwhile")
        if rows[0][0] == "d" and rows[0][1] != parent:
            await self.q.execute("SELECT pg_advisory_xact_lock($1)", MOVE_LOCK)
            below = await self.q.fetch(
                "WITH RECURSIVE up(id) AS (SELECT $1::bigint UNION "
                "SELECT i.parent FROM inodes i JOIN up ON i.id = up.id "
                "WHERE i.parent IS NOT NULL) SELECT 1 FROM up WHERE id = $2",
                parent,
                inode_id,
            )
            if below:
                raise InvalidArgument("cannot move a directory into itself")
        try:
            status = await self.q.execute(
                "UPDATE inodes SET parent = $1, name = $2 WHERE id = $3", parent, name, inode_id
            )
        except asyncpg.UniqueViolationError:
            raise AlreadyExists(f"{name} already exists") from None
        except asyncpg.ForeignKeyViolationError:
            raise NotFound(f"{name}: the target directory was removed") from None
        if not rowcount.of_status(status):
            raise NotFound(f"{name}: what was to be moved was removed meanwhile")

    async def delete(self, inode_ids: list[int]) -> None:
        self.tx.structural = True
        try:
            await self.q.execute("DELETE FROM inodes WHERE id = ANY($1::bigint[])", inode_ids)
        except asyncpg.ForeignKeyViolationError:
            raise DirectoryNotEmpty(
                "a directory being removed gained an entry meanwhile; try again"
            ) from None

    async def delete_all_but(self, inode_id: int) -> None:
        self.tx.structural = True
        await self.q.execute("DELETE FROM inodes WHERE id != $1", inode_id)

    async def set_mode(self, inode_ids: list[int], mode: int) -> int:
        return rowcount.of_status(
            await self.q.execute(
                "UPDATE inodes SET mode = $1 WHERE id = ANY($2::bigint[])", mode, inode_ids
            )
        )

    async def set_owner(self, inode_ids: list[int], owner: str | None, group: str | None) -> int:
        return rowcount.of_status(
            await self.q.execute(
                "UPDATE inodes SET owner = coalesce($1, owner), grp = coalesce($2, grp) "
                "WHERE id = ANY($3::bigint[])",
                owner,
                group,
                inode_ids,
            )
        )

    async def set_replication(self, inode_ids: list[int], replication: int) -> int:
        return rowcount.of_status(
            await self.q.execute(
                "UPDATE inodes SET replication = $1 WHERE type = 'f' AND id = ANY($2::bigint[])",
                replication,
                inode_ids,
            )
        )

    async def sha256(self, inode_id: int) -> str | None:
        rows = await self.q.fetch("SELECT sha256 FROM inodes WHERE id = $1", inode_id)
        return rows[0][0] if rows else None

    async def set_sha256(self, inode_id: int, sha256: str | None) -> None:
        await self.q.execute("UPDATE inodes SET sha256 = $1 WHERE id = $2", sha256, inode_id)

    async def counts(self) -> dict[str, int]:
        """Exact for a namespace of up to ``rowcount.CENSUS_EXACT`` inodes; above, the live-row
        estimate PostgreSQL's statistics keep, shared between the types as its sample of the
        column found them. No counter row: every create would queue for it."""
        rows = await self.q.fetch(
            "SELECT type, count(*) FROM (SELECT type FROM inodes LIMIT $1) AS s GROUP BY type",
            rowcount.CENSUS_EXACT + 1,
        )
        sample = {kind: int(n) for kind, n in rows}
        if sum(sample.values()) <= rowcount.CENSUS_EXACT:
            return sample
        total = await rowcount.estimate(self.q, "inodes")
        stats = await self.q.fetch(
            "SELECT most_common_vals::text::text[], most_common_freqs FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = 'inodes' AND attname = 'type'"
        )
        if stats and stats[0][0] is not None:
            shares = dict(zip(stats[0][0], stats[0][1], strict=True))
        else:
            shares = {kind: n / sum(sample.values()) for kind, n in sample.items()}
        return {kind: round(total * share) for kind, share in shares.items()}

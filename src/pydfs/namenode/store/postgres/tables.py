"""The repositories of ``store.interface`` in PostgreSQL's dialect, over one transaction's
``Session`` (see the package's docstring for the isolation level and the locks).

Sets travel as arrays (``= ANY($1)``, ``unnest``), so that a statement's text never depends on
how many there are and each is prepared once per connection.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

import asyncpg

from pydfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InternalError,
    InvalidArgument,
    NotFound,
)
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

# Below this many rows a census counts them (cheaply); above it, PostgreSQL's own estimate is
# exact enough for a metrics gauge, and a scrape never scans a large table.
CENSUS_EXACT = 10_000

# Moves of a directory to another directory hold this transaction-level advisory lock, as
# Linux's rename of a directory across directories holds its file system's rename mutex: with
# it, the check that the target is not below the directory moved cannot go stale.
MOVE_LOCK = 0x70796466_73_6D76  # "pydfs" "mv"
USERS_LOCK = 0x7573  # "us": the class of ``Users.lock``'s advisory locks, keyed by a hash


def _inode(row: tuple[Any, ...]) -> Inode:
    return Inode(*row)


def _count(status: str) -> int:
    """The row count of a command's status ("UPDATE 3", "INSERT 0 2")."""
    return int(status.rsplit(" ", 1)[-1])


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

    async def insert(self, new: NewInode, *, inode_id: int | None = None) -> int:
        """A name taken is found without aborting the transaction (``ON CONFLICT``); a parent
        gone (removed by a transaction that committed first) is ``NotFound``."""
        self.tx.structural = True
        try:
            rows = await self.q.fetch(
                "INSERT INTO inodes (id, parent, name, type, size, mtime, ctime, owner, "
                "replication, block_size, grp, mode, target) "
                "VALUES (coalesce($1, nextval('inode_ids')), "
                "nullif($2::bigint, 0), $3, $4, $5, $6, $6, $7, $8, $9, $10, $11, $12) "
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
        if not _count(status):
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
        return _count(
            await self.q.execute(
                "UPDATE inodes SET mode = $1 WHERE id = ANY($2::bigint[])", mode, inode_ids
            )
        )

    async def set_owner(self, inode_ids: list[int], owner: str | None, group: str | None) -> int:
        return _count(
            await self.q.execute(
                "UPDATE inodes SET owner = coalesce($1, owner), grp = coalesce($2, grp) "
                "WHERE id = ANY($3::bigint[])",
                owner,
                group,
                inode_ids,
            )
        )

    async def set_replication(self, inode_ids: list[int], replication: int) -> int:
        return _count(
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
        """Exact for a namespace of up to ``CENSUS_EXACT`` inodes; above, the live-row estimate
        PostgreSQL's statistics keep, shared between the types as its sample of the column
        found them. No counter row: every create would queue for it."""
        rows = await self.q.fetch(
            "SELECT type, count(*) FROM (SELECT type FROM inodes LIMIT $1) AS s GROUP BY type",
            CENSUS_EXACT + 1,
        )
        sample = {kind: int(n) for kind, n in rows}
        if sum(sample.values()) <= CENSUS_EXACT:
            return sample
        total = await _live_rows(self.q, "inodes")
        stats = await self.q.fetch(
            "SELECT most_common_vals::text::text[], most_common_freqs FROM pg_stats "
            "WHERE schemaname = current_schema() AND tablename = 'inodes' AND attname = 'type'"
        )
        if stats and stats[0][0] is not None:
            shares = dict(zip(stats[0][0], stats[0][1], strict=True))
        else:
            shares = {kind: n / sum(sample.values()) for kind, n in sample.items()}
        return {kind: round(total * share) for kind, share in shares.items()}


async def _live_rows(q: Any, table: str) -> int:
    rows = await q.fetch(
        "SELECT greatest(s.n_live_tup, c.reltuples::bigint) FROM pg_class c "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = $1::regclass",
        table,
    )
    return int(rows[0][0] or 0)


# The factor each named block needs (the highest of its files'), and its replicas on the nodes
# in the array parameter $1.
_REQUIRED = (
    "SELECT fb.block AS id, max(i.replication) AS req FROM file_blocks fb "
    "JOIN inodes i ON i.id = fb.inode GROUP BY fb.block"
)
_ON = "SELECT r.block AS id, count(*) AS n FROM replicas r WHERE r.node = ANY({}) GROUP BY r.block"


class BlockMap:
    def __init__(self, tx: Tx) -> None:
        self.q = tx.session

    async def get(self, block_id: str) -> Block | None:
        rows = await self.q.fetch("SELECT id, size, crc FROM blocks WHERE id = $1", block_id)
        return Block(*rows[0]) if rows else None

    async def of_file(self, inode_id: int) -> list[Placed]:
        rows = await self.q.fetch(
            "SELECT b.id, b.size, b.crc, r.node FROM file_blocks fb "
            "JOIN blocks b ON b.id = fb.block LEFT JOIN replicas r ON r.block = b.id "
            "WHERE fb.inode = $1 ORDER BY fb.idx, r.node",
            inode_id,
        )
        placed: list[Placed] = []
        for block_id, size, crc, node in rows:
            if not placed or placed[-1].block.id != block_id:
                placed.append(Placed(Block(block_id, size, crc), []))
            if node is not None:
                placed[-1].nodes.append(node)
        return placed

    async def add(self, blocks: list[Block], ctime: float) -> None:
        await self.q.execute(
            "INSERT INTO blocks (id, size, crc, ctime) "
            "SELECT id, size, crc, $4 FROM unnest($1::text[], $2::bigint[], $3::bigint[]) "
            "AS t(id, size, crc)",
            [b.id for b in blocks],
            [b.size for b in blocks],
            [b.crc for b in blocks],
            ctime,
        )

    async def attach(self, inode_id: int, block_ids: list[str]) -> None:
        try:
            await self.q.execute(
                "INSERT INTO file_blocks (inode, idx, block) SELECT $1, n - 1, b "
                "FROM unnest($2::text[]) WITH ORDINALITY AS t(b, n)",
                inode_id,
                block_ids,
            )
        except asyncpg.ForeignKeyViolationError:
            raise NotFound("the file was removed meanwhile") from None

    async def share(self, source: int, target: int) -> None:
        """The source is held (``FOR SHARE``) till the commit: a concurrent removal of it
        waits, then finds the blocks named by the copy and keeps them."""
        if not await self.q.fetch("SELECT 1 FROM inodes WHERE id = $1 FOR SHARE", source):
            raise NotFound("the file copied was removed meanwhile")
        await self.q.execute(
            "INSERT INTO file_blocks (inode, idx, block) "
            "SELECT $1, idx, block FROM file_blocks WHERE inode = $2",
            target,
            source,
        )

    async def detach(self, inode_ids: list[int]) -> set[str]:
        """Holds the files' rows first (``FOR UPDATE``), in id order: a concurrent copy of one
        of them, or another change of its content, commits before or after this one, never
        across it. The blocks are taken by a statement of their own, after the hold: one
        statement sees what was committed when it began, and would miss the blocks a change
        it waited for attached."""
        await self.q.fetch(
            "SELECT id FROM inodes WHERE id = ANY($1::bigint[]) ORDER BY id FOR UPDATE",
            inode_ids,
        )
        rows = await self.q.fetch(
            "DELETE FROM file_blocks WHERE inode = ANY($1::bigint[]) RETURNING block", inode_ids
        )
        return {b for (b,) in rows}

    async def release(self, block_ids: set[str]) -> None:
        if not block_ids:
            return
        await self.q.execute(
            "WITH doomed AS (SELECT b FROM unnest($1::text[]) AS t(b) WHERE NOT EXISTS "
            "(SELECT 1 FROM file_blocks fb WHERE fb.block = t.b)), "
            "gone AS (DELETE FROM replicas r USING doomed WHERE r.block = doomed.b "
            "RETURNING r.node, r.block), "
            "trashed AS (INSERT INTO trash (node, block) SELECT node, block FROM gone "
            "ON CONFLICT DO NOTHING) "
            "DELETE FROM blocks WHERE id IN (SELECT b FROM doomed)",
            sorted(block_ids),
        )

    async def release_all(self) -> int:
        await self.q.execute(
            "INSERT INTO trash (node, block) SELECT node, block FROM replicas "
            "ON CONFLICT DO NOTHING"
        )
        await self.q.execute("DELETE FROM replicas")
        await self.q.execute("DELETE FROM file_blocks")
        return _count(await self.q.execute("DELETE FROM blocks"))

    async def count(self) -> int:
        """Exact up to ``CENSUS_EXACT`` blocks, PostgreSQL's estimate above (see
        ``Inodes.counts``)."""
        rows = await self.q.fetch(
            "SELECT count(*) FROM (SELECT 1 FROM blocks LIMIT $1) AS s", CENSUS_EXACT + 1
        )
        counted = int(rows[0][0])
        return counted if counted <= CENSUS_EXACT else await _live_rows(self.q, "blocks")

    async def known(self, block_ids: Iterable[str]) -> set[str]:
        rows = await self.q.fetch(
            "SELECT id FROM blocks WHERE id = ANY($1::text[])", list(block_ids)
        )
        return {b for (b,) in rows}

    async def holders(self, block_id: str) -> list[str]:
        rows = await self.q.fetch(
            "SELECT node FROM replicas WHERE block = $1 ORDER BY node", block_id
        )
        return [n for (n,) in rows]

    async def holds(self, node: str, block_id: str) -> bool:
        return bool(
            await self.q.fetch(
                "SELECT 1 FROM replicas WHERE node = $1 AND block = $2", node, block_id
            )
        )

    async def on_node(self, node: str) -> dict[str, float]:
        return dict(await self.q.fetch("SELECT block, added FROM replicas WHERE node = $1", node))

    async def add_replica(self, block_id: str, node: str, added: float) -> bool:
        status = await self.q.execute(
            "INSERT INTO replicas (block, node, added) VALUES ($1, $2, $3) ON CONFLICT DO NOTHING",
            block_id,
            node,
            added,
        )
        return _count(status) > 0

    async def add_replicas(self, pairs: list[tuple[str, str]], added: float) -> None:
        await self.q.execute(
            "INSERT INTO replicas (block, node, added) "
            "SELECT DISTINCT b, n, $3::float8 FROM unnest($1::text[], $2::text[]) AS t(b, n) "
            "ON CONFLICT DO NOTHING",
            [b for b, _ in pairs],
            [n for _, n in pairs],
            added,
        )

    async def drop_replicas(self, pairs: Iterable[tuple[str, str]]) -> int:
        pairs = list(pairs)
        return _count(
            await self.q.execute(
                "DELETE FROM replicas r USING unnest($1::text[], $2::text[]) AS t(b, n) "
                "WHERE r.block = t.b AND r.node = t.n",
                [b for b, _ in pairs],
                [n for _, n in pairs],
            )
        )

    async def trash(self, pairs: Iterable[tuple[str, str]]) -> int:
        pairs = list(pairs)
        return _count(
            await self.q.execute(
                "INSERT INTO trash (node, block) "
                "SELECT DISTINCT n, b FROM unnest($1::text[], $2::text[]) AS t(n, b) "
                "ON CONFLICT DO NOTHING",
                [n for n, _ in pairs],
                [b for _, b in pairs],
            )
        )

    async def trash_unknown(self, pairs: Iterable[tuple[str, str]]) -> int:
        pairs = list(pairs)
        return _count(
            await self.q.execute(
                "INSERT INTO trash (node, block) "
                "SELECT DISTINCT n, b FROM unnest($1::text[], $2::text[]) AS t(n, b) "
                "WHERE NOT EXISTS (SELECT 1 FROM blocks WHERE id = t.b) "
                "AND NOT EXISTS "
                "(SELECT 1 FROM upload_blocks WHERE block = t.b AND t.n = ANY(nodes)) "
                "ON CONFLICT DO NOTHING",
                [n for n, _ in pairs],
                [b for _, b in pairs],
            )
        )

    async def untrash(self, pairs: Iterable[tuple[str, str]]) -> None:
        pairs = list(pairs)
        await self.q.execute(
            "DELETE FROM trash t USING unnest($1::text[], $2::text[]) AS p(n, b) "
            "WHERE t.node = p.n AND t.block = p.b",
            [n for n, _ in pairs],
            [b for _, b in pairs],
        )

    async def trashed_on(self, node: str, limit: int | None = None) -> list[str]:
        rows = await self.q.fetch("SELECT block FROM trash WHERE node = $1 LIMIT $2", node, limit)
        return [b for (b,) in rows]

    async def misreplicated(self, serving: set[str]) -> list[Misreplicated]:
        rows = await self.q.fetch(
            f"WITH req AS ({_REQUIRED}), cnt AS ({_ON.format('$1::text[]')}) "
            "SELECT req.id, b.size, req.req, coalesce(cnt.n, 0) AS n, "
            "(SELECT array_agg(r.node ORDER BY r.node) FROM replicas r WHERE r.block = req.id) "
            "FROM req JOIN blocks b ON b.id = req.id "
            "LEFT JOIN cnt ON cnt.id = req.id WHERE coalesce(cnt.n, 0) != req.req "
            "ORDER BY n, req.id",
            sorted(serving),
        )
        return [
            Misreplicated(block, int(size), int(required), list(holders or []))
            for block, size, required, _, holders in rows
        ]

    async def lacking_on(self, node: str, serving: set[str]) -> int:
        rows = await self.q.fetch(
            f"WITH req AS ({_REQUIRED}), cnt AS ({_ON.format('$1::text[]')}) "
            "SELECT count(*) FROM replicas r JOIN req ON req.id = r.block "
            "LEFT JOIN cnt ON cnt.id = r.block WHERE r.node = $2 AND coalesce(cnt.n, 0) < req.req",
            sorted(serving),
            node,
        )
        return int(rows[0][0])

    async def health(
        self, inode_ids: list[int], serving: set[str], live: set[str]
    ) -> list[BlockHealth]:
        rows = await self.q.fetch(
            f"WITH req AS ({_REQUIRED}), cnt AS ({_ON.format('$1::text[]')}), "
            f"readable AS ({_ON.format('$2::text[]')}) "
            "SELECT fb.inode, fb.block, req.req, coalesce(cnt.n, 0), coalesce(readable.n, 0) "
            "FROM file_blocks fb JOIN req ON req.id = fb.block "
            "LEFT JOIN cnt ON cnt.id = fb.block LEFT JOIN readable ON readable.id = fb.block "
            "WHERE fb.inode = ANY($3::bigint[]) ORDER BY fb.inode, fb.idx",
            sorted(serving),
            sorted(live),
            inode_ids,
        )
        return [BlockHealth(int(i), b, int(req), int(n), int(ok)) for i, b, req, n, ok in rows]


class Users:
    _COLS = "name, token_hash, admin, groups, ctime"

    def __init__(self, tx: Tx) -> None:
        self.q = tx.session

    async def lock(self, key: str = "") -> None:
        await self.q.execute("SELECT pg_advisory_xact_lock($1, hashtext($2))", USERS_LOCK, key)

    @staticmethod
    def _row(row: tuple[Any, ...]) -> UserRow:
        name, token_hash, admin, groups, ctime = row
        return UserRow(name, token_hash, admin, tuple(groups), ctime)

    async def by_token_hash(self, token_hash: str) -> UserRow | None:
        rows = await self.q.fetch(
            f"SELECT {self._COLS} FROM users WHERE token_hash = $1", token_hash
        )
        return self._row(rows[0]) if rows else None

    async def by_name(self, name: str) -> UserRow | None:
        rows = await self.q.fetch(f"SELECT {self._COLS} FROM users WHERE name = $1", name)
        return self._row(rows[0]) if rows else None

    async def all(self) -> list[UserRow]:
        rows = await self.q.fetch(f"SELECT {self._COLS} FROM users ORDER BY name")
        return [self._row(r) for r in rows]

    async def add(self, user: UserRow) -> None:
        status = await self.q.execute(
            f"INSERT INTO users ({self._COLS}) VALUES ($1, $2, $3, $4, $5) ON CONFLICT DO NOTHING",
            user.name,
            user.token_hash,
            user.admin,
            list(user.groups),
            user.ctime,
        )
        if not _count(status):
            raise AlreadyExists(f"user {user.name!r} already exists")

    async def remove(self, names: Iterable[str]) -> None:
        await self.q.execute("DELETE FROM users WHERE name = ANY($1::text[])", list(names))

    async def set_token_hash(self, name: str, token_hash: str) -> None:
        await self.q.execute("UPDATE users SET token_hash = $1 WHERE name = $2", token_hash, name)

    async def set_groups(self, name: str, groups: tuple[str, ...]) -> None:
        await self.q.execute("UPDATE users SET groups = $1 WHERE name = $2", list(groups), name)


class DataNodes:
    def __init__(self, tx: Tx) -> None:
        self.q = tx.session

    async def all(self) -> list[DataNodeRow]:
        rows = await self.q.fetch("SELECT id, url, admin_state FROM datanodes ORDER BY id")
        return [DataNodeRow(*r) for r in rows]

    async def put(self, node_id: str, url: str) -> None:
        await self.q.execute(
            "INSERT INTO datanodes (id, url) VALUES ($1, $2) "
            "ON CONFLICT (id) DO UPDATE SET url = excluded.url WHERE datanodes.url != excluded.url",
            node_id,
            url,
        )

    async def set_admin_state(self, node_id: str, state: str) -> None:
        await self.q.execute("UPDATE datanodes SET admin_state = $1 WHERE id = $2", state, node_id)


class Uploads:
    _COLS = 'id, "user", path, replication, block_size, overwrite, started, expires'

    def __init__(self, tx: Tx) -> None:
        self.q = tx.session

    async def open(self, upload: UploadRow) -> None:
        await self.q.execute(
            f"INSERT INTO uploads ({self._COLS}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8)",
            *upload,
        )

    async def get(self, upload_id: str) -> UploadRow | None:
        rows = await self.q.fetch(f"SELECT {self._COLS} FROM uploads WHERE id = $1", upload_id)
        return UploadRow(*rows[0]) if rows else None

    async def renew(self, upload_id: str, expires: float) -> None:
        await self.q.execute("UPDATE uploads SET expires = $1 WHERE id = $2", expires, upload_id)

    async def grant(self, upload_id: str, block_id: str, nodes: list[str]) -> None:
        await self.q.execute(
            "INSERT INTO upload_blocks (block, upload, nodes) VALUES ($1, $2, $3)",
            block_id,
            upload_id,
            nodes,
        )

    async def granted(self, upload_id: str) -> dict[str, list[str]]:
        rows = await self.q.fetch(
            "SELECT block, nodes FROM upload_blocks WHERE upload = $1", upload_id
        )
        return {block: list(nodes) for block, nodes in rows}

    async def close(self, upload_id: str) -> None:
        await self.q.execute(
            "WITH grants AS (DELETE FROM upload_blocks WHERE upload = $1) "
            "DELETE FROM uploads WHERE id = $1",
            upload_id,
        )

    async def open_by(self, user: str) -> int:
        rows = await self.q.fetch('SELECT count(*) FROM uploads WHERE "user" = $1', user)
        return int(rows[0][0])

    async def expired(self, now: float) -> list[str]:
        rows = await self.q.fetch("SELECT id FROM uploads WHERE expires < $1", now)
        return [u for (u,) in rows]

    async def all(self) -> list[tuple[UploadRow, int]]:
        cols = ", ".join(f"u.{c}" for c in self._COLS.split(", "))
        rows = await self.q.fetch(
            f"SELECT {cols}, (SELECT count(*) FROM upload_blocks b WHERE b.upload = u.id) "
            "FROM uploads u ORDER BY u.started, u.id"
        )
        return [(UploadRow(*r[:8]), int(r[8])) for r in rows]

    async def grant_of(self, block_id: str) -> list[str] | None:
        rows = await self.q.fetch("SELECT nodes FROM upload_blocks WHERE block = $1", block_id)
        return list(rows[0][0]) if rows else None

    async def in_flight(self, block_ids: Iterable[str]) -> set[str]:
        rows = await self.q.fetch(
            "SELECT block FROM upload_blocks WHERE block = ANY($1::text[])", list(block_ids)
        )
        return {b for (b,) in rows}


class NeverRestored:
    """Metadata on PostgreSQL is restored by PostgreSQL's tools, never by ``pydfs namenode
    restore``: it is never in the state that keeps unnamed blocks."""

    async def state(self) -> Restored | None:
        return None

    async def keep(self, node: str, blocks: set[str]) -> list[str]:
        raise InternalError("no restore of PostgreSQL metadata awaits an admin")

    async def measured(self, node: str, block: str, size: int) -> None:
        raise InternalError("no restore of PostgreSQL metadata awaits an admin")

    async def orphans(self) -> Orphans:
        return Orphans(0, 0, 0, 0)

    async def finish(self) -> Orphans:
        return Orphans(0, 0, 0, 0)

"""The block map's repository (``interface.BlockMap``: blocks, the files that name them, their
replicas, the trash) in PostgreSQL's dialect, over one transaction's ``Session``."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING

import asyncpg

from pydfs.errors import NotFound
from pydfs.namenode.store.interface import Block, BlockHealth, Misreplicated, Placed
from pydfs.namenode.store.postgres import rowcount

if TYPE_CHECKING:
    from pydfs.namenode.store.postgres import Tx

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
        return rowcount.of_status(await self.q.execute("DELETE FROM blocks"))

    async def count(self) -> int:
        """Exact up to ``rowcount.CENSUS_EXACT`` blocks, PostgreSQL's estimate above (see
        ``Inodes.counts``)."""
        rows = await self.q.fetch(
            "SELECT count(*) FROM (SELECT 1 FROM blocks LIMIT $1) AS s", rowcount.CENSUS_EXACT + 1
        )
        counted = int(rows[0][0])
        return (
            counted
            if counted <= rowcount.CENSUS_EXACT
            else await rowcount.estimate(self.q, "blocks")
        )

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
        return rowcount.of_status(status) > 0

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
        return rowcount.of_status(
            await self.q.execute(
                "DELETE FROM replicas r USING unnest($1::text[], $2::text[]) AS t(b, n) "
                "WHERE r.block = t.b AND r.node = t.n",
                [b for b, _ in pairs],
                [n for _, n in pairs],
            )
        )

    async def trash(self, pairs: Iterable[tuple[str, str]]) -> int:
        pairs = list(pairs)
        return rowcount.of_status(
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
        return rowcount.of_status(
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

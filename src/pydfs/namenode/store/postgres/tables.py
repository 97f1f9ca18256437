"""The smaller repositories in PostgreSQL's dialect, over one transaction's ``Session``: users,
data nodes and uploads, and the restore PostgreSQL's metadata never awaits."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from pydfs.errors import AlreadyExists, InternalError
from pydfs.namenode.store.interface import DataNodeRow, Orphans, Restored, UploadRow, UserRow
from pydfs.namenode.store.postgres import rowcount

if TYPE_CHECKING:
    from pydfs.namenode.store.postgres import Tx

USERS_LOCK = 0x7573  # "us": the class of ``Users.lock``'s advisory locks, keyed by a hash


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
        if not rowcount.of_status(status):
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

"""The lease on background work in PostgreSQL (see ``interface.Leader``)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from pydfs.namenode.store.interface import Lease

if TYPE_CHECKING:
    from pydfs.namenode.store.postgres import Tx


_NOW = "extract(epoch FROM clock_timestamp())::float8"


class Leader:
    """The lease row, timed by the server's clock."""

    def __init__(self, tx: Tx) -> None:
        self.q = tx.session

    async def claim(self, holder: str, url: str, ttl: float) -> Lease:
        await self.q.execute(
            "UPDATE leader SET epoch = epoch + (holder != $1)::int, holder = $1, url = $2, "
            f"expires = {_NOW} + $3 WHERE id = 1 AND (holder = $1 OR expires <= {_NOW})",
            holder,
            url,
            ttl,
        )
        return await self.current()

    async def holds(self, holder: str, epoch: int) -> bool:
        # FOR SHARE: a claim's UPDATE waits for this transaction, so the lease cannot change
        # hands while a leader's write is under way.
        rows = await self.q.fetch(
            "SELECT 1 FROM leader WHERE id = 1 AND holder = $1 AND epoch = $2 "
            f"AND expires > {_NOW} FOR SHARE",
            holder,
            epoch,
        )
        return bool(rows)

    async def resign(self, holder: str) -> None:
        await self.q.execute("UPDATE leader SET expires = 0 WHERE id = 1 AND holder = $1", holder)

    async def nudge(self) -> None:
        await self.q.execute("UPDATE leader SET nudges = nudges + 1 WHERE id = 1")

    async def current(self) -> Lease:
        rows = await self.q.fetch(
            f"SELECT holder, url, epoch, expires - {_NOW}, nudges FROM leader WHERE id = 1"
        )
        return Lease(*rows[0])

"""The lease on background work in SQLite (see ``interface.Leader``)."""

from __future__ import annotations

import sqlite3
import time

from pydfs.namenode.store.interface import Lease


class Leader:
    """The lease row; times by this machine's clock (one name node uses an SQLite store)."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def claim(self, holder: str, url: str, ttl: float) -> Lease:
        now = time.time()
        self.db.execute(
            "UPDATE leader SET epoch = epoch + (holder != ?), holder = ?, url = ?, expires = ? "
            "WHERE id = 1 AND (holder = ? OR expires <= ?)",
            (holder, holder, url, now + ttl, holder, now),
        )
        return await self.current()

    async def holds(self, holder: str, epoch: int) -> bool:
        row = self.db.execute(
            "SELECT 1 FROM leader WHERE id = 1 AND holder = ? AND epoch = ? AND expires > ?",
            (holder, epoch, time.time()),
        ).fetchone()
        return row is not None

    async def resign(self, holder: str) -> None:
        self.db.execute("UPDATE leader SET expires = 0 WHERE id = 1 AND holder = ?", (holder,))

    async def nudge(self) -> None:
        self.db.execute("UPDATE leader SET nudges = nudges + 1 WHERE id = 1")

    async def current(self) -> Lease:
        row = self.db.execute(
            "SELECT holder, url, epoch, expires - ?, nudges FROM leader WHERE id = 1",
            (time.time(),),
        ).fetchone()
        return Lease(*row)

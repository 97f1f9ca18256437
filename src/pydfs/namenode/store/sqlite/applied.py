"""Requests applied recently (``interface.Requests``) in SQLite: recorded by a write's commit
(``record``, in the store's ``_Writing``), answered and pruned here."""

from __future__ import annotations

import sqlite3
import time

from pydfs.namenode.store.interface import APPLYING, Applied, AppliedElsewhere, Applying


def pending() -> Applying | None:
    """The request a commit now records, if it is the first commit of its attempt."""
    applying = APPLYING.get()
    return None if applying is None or applying.recorded else applying


def record(db: sqlite3.Connection, applying: Applying) -> None:
    """Record *applying* in the open transaction; ``AppliedElsewhere`` if another attempt did."""
    try:
        db.execute(
            "INSERT INTO applied (usr, id, attempt, at) VALUES (?, ?, ?, ?)",
            (applying.user, applying.request_id, applying.attempt, time.time()),
        )
    except sqlite3.IntegrityError:
        raise AppliedElsewhere(applying.request_id) from None


class Requests:
    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    async def applied(self, user: str, request_id: str) -> Applied | None:
        row = self.db.execute(
            "SELECT attempt, at, status, body FROM applied WHERE usr = ? AND id = ?",
            (user, request_id),
        ).fetchone()
        return Applied(*row) if row else None

    async def answer(self, user: str, request_id: str, status: int, body: bytes) -> None:
        self.db.execute(
            "UPDATE applied SET status = ?, body = ? WHERE usr = ? AND id = ?",
            (status, body, user, request_id),
        )

    async def prune(self, before: float, limit: int) -> int:
        return self.db.execute(
            "DELETE FROM applied WHERE (usr, id) IN "
            "(SELECT usr, id FROM applied WHERE at < ? ORDER BY at LIMIT ?)",
            (before, limit),
        ).rowcount

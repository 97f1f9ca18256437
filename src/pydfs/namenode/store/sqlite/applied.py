"""Requests applied recently (``interface.Requests``) in SQLite: recorded by a write's commit
(``record``, in the store's ``_Writing``), pruned here. Their answers are kept in memory
(``Answers``): one process owns the file, so a retry can only come to it, and a process that
died took the answers away as a name node sharing a store with it would (``AnswerLost``); a
transaction of their own would cost each change more than the change's own commit."""

from __future__ import annotations

import sqlite3
import time
from collections import OrderedDict

from pydfs.namenode.store.interface import Applied, AppliedElsewhere, Applying


def record(db: sqlite3.Connection, applying: Applying) -> None:
    """Record *applying* in the open transaction; ``AppliedElsewhere`` if another attempt did."""
    try:
        db.execute(
            "INSERT INTO applied (usr, id, attempt, at) VALUES (?, ?, ?, ?)",
            (applying.user, applying.request_id, applying.attempt, time.time()),
        )
    except sqlite3.IntegrityError:
        raise AppliedElsewhere(applying.request_id) from None


# An OrderedDict, not a dict: the oldest goes as each new one comes, and a dict finds its
# first entry by stepping over every slot deleted before it, until it is resized (that step
# alone took up to 56 µs; bench/sustained.py showed a name node's CPU per change climb).
Answers = OrderedDict[tuple[str, str], tuple[float, int, bytes]]
"""(user, request id): (when answered, status, body), the oldest first."""

# Answers kept at most, the latest: a name node making thousands of changes a second would
# otherwise hold every answer of the last ten minutes (about 600 MiB for a million creates). A
# client sends a request again within seconds; one older than this many changes is told that it
# was applied, its answer lost.
MAX_ANSWERS = 65_536


class Requests:
    def __init__(self, db: sqlite3.Connection, answers: Answers) -> None:
        self.db = db
        self.answers = answers

    async def applied(self, user: str, request_id: str) -> Applied | None:
        row = self.db.execute(
            "SELECT attempt, at FROM applied WHERE usr = ? AND id = ?", (user, request_id)
        ).fetchone()
        if row is None:
            return None
        _, status, body = self.answers.get((user, request_id), (0.0, None, None))
        return Applied(row[0], row[1], status, body)

    async def prune(self, before: float, limit: int) -> int:
        answers = self.answers
        while answers and next(iter(answers.values()))[0] < before:
            answers.popitem(last=False)
        return self.db.execute(
            "DELETE FROM applied WHERE (usr, id) IN "
            "(SELECT usr, id FROM applied WHERE at < ? ORDER BY at LIMIT ?)",
            (before, limit),
        ).rowcount

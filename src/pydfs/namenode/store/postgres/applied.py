"""Requests applied recently (``interface.Requests``) in PostgreSQL: recorded by a write's
commit, in the round trip of its ``COMMIT`` (``record``: no round trip of its own), answered in
one round trip that waits for no flush (``answer``), pruned here."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from pydfs.namenode.store.interface import Applied, Applying

if TYPE_CHECKING:
    from pydfs.namenode.store.postgres import Tx

CONSTRAINT = "applied_pkey"  # a unique violation of it: another attempt recorded the request


def record(applying: Applying) -> str:
    """The statement that records *applying*, its values written out (the commit's round trip
    takes no parameters); a unique violation of ``CONSTRAINT`` if another attempt did."""
    values = ", ".join(
        [
            _literal(applying.user),
            _literal(applying.request_id),
            _literal(applying.attempt),
            repr(time.time()),
        ]
    )
    return f"INSERT INTO applied (usr, id, attempt, at) VALUES ({values}); "


def answer(user: str, request_id: str, status: int, body: bytes) -> str:
    """The transaction that records a request's answer, as soft state: one round trip."""
    return (
        "BEGIN; SET LOCAL synchronous_commit = off; "
        f"UPDATE applied SET status = {int(status)}, body = '\\x{body.hex()}'::bytea "
        f"WHERE usr = {_literal(user)} AND id = {_literal(request_id)}; COMMIT"
    )


def _literal(text: str) -> str:
    """A string constant (standard_conforming_strings, PostgreSQL's default since 9.1)."""
    if "\0" in text:
        raise ValueError("NUL in a request's user or id")
    return "'" + text.replace("'", "''") + "'"


class Requests:
    def __init__(self, tx: Tx) -> None:
        self.q = tx.session

    async def applied(self, user: str, request_id: str) -> Applied | None:
        rows = await self.q.fetch(
            "SELECT attempt, at, status, body FROM applied WHERE usr = $1 AND id = $2",
            user,
            request_id,
        )
        return Applied(*rows[0]) if rows else None

    async def prune(self, before: float, limit: int) -> int:
        status = await self.q.execute(
            "DELETE FROM applied WHERE (usr, id) IN "
            "(SELECT usr, id FROM applied WHERE at < $1 ORDER BY at LIMIT $2)",
            before,
            limit,
        )
        return int(status.rsplit(" ", 1)[-1])

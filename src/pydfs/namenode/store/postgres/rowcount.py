"""Row counts, as the repositories need them: what a statement changed, and how many rows a
table holds, without a scan of a large one (the census's gauges)."""

from __future__ import annotations

from typing import Any

# Below this many rows a census counts them (cheaply); above it, PostgreSQL's own estimate is
# exact enough for a metrics gauge, and a scrape never scans a large table.
CENSUS_EXACT = 10_000


def of_status(status: str) -> int:
    """The row count of a command's status ("UPDATE 3", "INSERT 0 2")."""
    return int(status.rsplit(" ", 1)[-1])


async def estimate(q: Any, table: str) -> int:
    """PostgreSQL's estimate of *table*'s live rows."""
    rows = await q.fetch(
        "SELECT greatest(s.n_live_tup, c.reltuples::bigint) FROM pg_class c "
        "LEFT JOIN pg_stat_user_tables s ON s.relid = c.oid WHERE c.oid = $1::regclass",
        table,
    )
    return int(rows[0][0] or 0)

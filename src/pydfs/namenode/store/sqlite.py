"""The default metadata store: one SQLite database in WAL mode with fsync'd commits.

Every change runs in one ``BEGIN IMMEDIATE`` transaction (``Store.write()``) and is durable when it
returns: ``synchronous=FULL`` makes each commit fsync the write-ahead log. Schema migrations are the
numbered files in ``migrations/``; the version applied is kept in ``PRAGMA user_version``.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from importlib import resources
from pathlib import Path

from pydfs.errors import InternalError


def _migrations() -> list[tuple[int, str]]:
    found = []
    for entry in resources.files("pydfs.namenode.store").joinpath("migrations").iterdir():
        if entry.name.endswith(".sql"):
            found.append((int(entry.name.split("_", 1)[0]), entry.read_text()))
    return sorted(found)


class Store:
    """A SQLite connection used from the name node's event loop thread only."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=FULL")
        self.db.execute("PRAGMA foreign_keys=OFF")
        self.db.execute("PRAGMA cache_size=-65536")
        self._migrate()

    def _migrate(self) -> None:
        (current,) = self.db.execute("PRAGMA user_version").fetchone()
        migrations = _migrations()
        newest = migrations[-1][0] if migrations else 0
        if current > newest:
            raise InternalError(
                f"metadata schema version {current} is newer than this pydfs ({newest})"
            )
        for version, sql in migrations:
            if version > current:
                with self.write() as db:
                    for statement in _statements(sql):
                        db.execute(statement)
                    db.execute(f"PRAGMA user_version={version}")

    @contextmanager
    def write(self) -> Iterator[sqlite3.Connection]:
        """One atomic, durable transaction."""
        self.db.execute("BEGIN IMMEDIATE")
        try:
            yield self.db
        except BaseException:
            self.db.execute("ROLLBACK")
            raise
        else:
            self.db.execute("COMMIT")

    def close(self) -> None:
        self.db.close()


def _statements(sql: str) -> Iterator[str]:
    buf = ""
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()

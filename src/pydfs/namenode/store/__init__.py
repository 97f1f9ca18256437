"""Metadata storage behind the name node: the interface every backend implements
(``store.interface``) and ``open_store``, which opens one by URL. SQLite is the default."""

from __future__ import annotations

from pathlib import Path

from pydfs.errors import InvalidArgument
from pydfs.namenode.store.interface import Inode, Store, Tx

__all__ = ["Inode", "Store", "Tx", "open_store", "sqlite_url"]


def sqlite_url(path: Path) -> str:
    return f"sqlite://{path.resolve()}"


def open_store(url: str) -> Store:
    """``sqlite:///absolute/path``, or ``postgresql://[user[:password]@]host[:port]/database``
    (any URL libpq takes; the PostgreSQL backend needs the ``postgres`` extra)."""
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite" and sep and rest.startswith("/"):
        from pydfs.namenode.store.sqlite import Store as SqliteStore

        return SqliteStore(Path(rest))
    if scheme in ("postgresql", "postgres") and sep:
        try:
            from pydfs.namenode.store.postgres import Store as PostgresStore
        except ImportError:
            raise InvalidArgument(
                "the PostgreSQL metadata store needs asyncpg: pip install 'pydfs[postgres]'"
            ) from None
        return PostgresStore(url)
    shown = url.split("://", 1)[0] + "://..." if sep else url
    raise InvalidArgument(
        f"unknown metadata store {shown!r} (expected sqlite:///absolute/path or "
        "postgresql://host/database)"
    )

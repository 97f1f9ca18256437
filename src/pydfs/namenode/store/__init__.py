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
    """``sqlite:///absolute/path``; other schemes name backends still to come."""
    scheme, sep, rest = url.partition("://")
    if scheme == "sqlite" and sep and rest.startswith("/"):
        from pydfs.namenode.store.sqlite import Store as SqliteStore

        return SqliteStore(Path(rest))
    raise InvalidArgument(f"unknown metadata store {url!r} (expected sqlite:///absolute/path)")

"""Metadata storage behind the name node; SQLite is the default (and, for now, only) backend."""

from pydfs.namenode.store.sqlite import Store

__all__ = ["Store"]

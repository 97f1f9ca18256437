"""Fixtures: the name node's parts over a real SQLite store (see ``parts``)."""

import asyncio
from typing import Any

import pytest
from tests.unit.namenode.parts import Blocking, open_parts

from pydfs.namenode.store.sqlite import Store


@pytest.fixture
def loop():
    loop = asyncio.new_event_loop()
    yield loop
    loop.close()


@pytest.fixture
def blocking(loop):
    """Wrap an async part for a plain test."""
    return lambda target: Blocking(target, loop)


@pytest.fixture
def open_store(tmp_path):
    """Open (or reopen) the store kept in one SQLite file; everything opened is closed."""
    stores = []

    def open_() -> Store:
        store = Store(tmp_path / "ns.sqlite3")
        stores.append(store)
        return store

    yield open_
    for store in stores:
        store.close()


@pytest.fixture
def open_ns(open_store, loop):
    """Open (or reopen) the namespace kept in one SQLite file."""

    def open_(**kwargs: Any) -> Any:
        return open_parts(open_store(), loop, **kwargs)

    return open_


@pytest.fixture
def ns(open_ns):
    return open_ns()

"""Fixtures: the name node's parts over a real SQLite store (see ``parts``), and an empty store
of each backend (``any_store``)."""

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from tests.unit.namenode.parts import Blocking, open_parts

from pydfs.namenode.store import Store as StoreApi
from pydfs.namenode.store import open_store as open_any_store
from pydfs.namenode.store import sqlite_url
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


@pytest_asyncio.fixture(params=["sqlite", "postgres"])
async def any_store(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[StoreApi]:
    """An empty store of each backend (PostgreSQL on the tests' own server)."""
    if request.param == "postgres":
        url = request.getfixturevalue("postgres_url")
    else:
        url = sqlite_url(tmp_path / "ns.sqlite3")
    opened = open_any_store(url)
    yield opened
    await opened.aclose()

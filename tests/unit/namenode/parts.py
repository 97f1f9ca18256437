"""The name node's parts over a real SQLite store, for tests written as plain functions.

The parts are async (``store.interface``); ``Blocking`` runs each coroutine method a test calls
to its end on the test's own event loop, so that a test reads as the sequence of calls it makes.
"""

import asyncio
import inspect
import time
from typing import Any

from pydfs.namenode.attributes import Attributes
from pydfs.namenode.blockmap import BlockMap
from pydfs.namenode.commits import Commits
from pydfs.namenode.leadership import Leadership
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.store.interface import UploadRow
from pydfs.namenode.store.sqlite import Store

BLOCK_SIZE = 64 * 1024

_WRAPPED = (
    "Membership",
    "Namespace",
    "Commits",
    "BlockMap",
    "Uploads",
    "Replicator",
    "Users",
    "Suspects",
)


def unwrap(value: Any) -> Any:
    return object.__getattribute__(value, "_target") if isinstance(value, Blocking) else value


class Blocking:
    """*target* with its coroutine methods made plain (and its parts wrapped alike)."""

    def __init__(self, target: Any, loop: asyncio.AbstractEventLoop) -> None:
        object.__setattr__(self, "_target", target)
        object.__setattr__(self, "_loop", loop)

    def __getattr__(self, name: str) -> Any:
        target, loop = (
            object.__getattribute__(self, "_target"),
            object.__getattribute__(self, "_loop"),
        )
        value = getattr(target, name)
        if type(value).__name__ in _WRAPPED:
            return Blocking(value, loop)
        if not (inspect.ismethod(value) or inspect.isfunction(value)):
            return value

        def call(*args: Any, **kwargs: Any) -> Any:
            args = tuple(unwrap(a) for a in args)
            kwargs = {k: unwrap(v) for k, v in kwargs.items()}
            result = value(*args, **kwargs)
            return loop.run_until_complete(result) if inspect.isawaitable(result) else result

        return call

    def __setattr__(self, name: str, value: Any) -> None:
        setattr(object.__getattribute__(self, "_target"), name, unwrap(value))


def parts_loop(value: Blocking) -> asyncio.AbstractEventLoop:
    loop: asyncio.AbstractEventLoop = object.__getattribute__(value, "_loop")
    return loop


class Parts:
    """The namespace, its commits and the block map over one store: what the tests call ``ns``."""

    def __init__(self, store: Store, membership: Membership, **kwargs: Any) -> None:
        self.store = store
        self.db = store.db
        self.membership = membership
        self.namespace = Namespace(store, membership, **kwargs)
        self.leadership = Leadership(store)  # alone on its store: leads once renewed
        self.blockmap = BlockMap(store, membership, self.namespace.tree, self.leadership)
        self.attributes = Attributes(self.namespace.tree)
        self.commits = Commits(self.namespace)

    def __getattr__(self, name: str) -> Any:
        for part in ("namespace", "commits", "attributes"):
            if hasattr(self.__dict__[part], name):
                return getattr(self.__dict__[part], name)
        return getattr(self.__dict__["blockmap"], name)


def open_parts(store: Store, loop: asyncio.AbstractEventLoop, **kwargs: Any) -> Any:
    """The namespace and block map over *store*, opened as a name node opens them."""
    membership = Membership(store, dead_after=30, **kwargs)
    loop.run_until_complete(membership.load())
    parts = Parts(store, membership, replication=2, block_size=BLOCK_SIZE)
    loop.run_until_complete(parts.namespace.open())
    loop.run_until_complete(parts.leadership.renew())
    return Blocking(parts, loop)


def plant_grant(ns: Any, block: str, nodes: list[str], upload: str = "u" * 32) -> None:
    """An open upload (of nobody) whose grant named *nodes* for *block*."""
    store = unwrap(ns).store
    with store.transaction() as db:
        if db.execute("SELECT 1 FROM uploads WHERE id = ?", (upload,)).fetchone() is None:
            row = UploadRow(upload, "nobody", None, 2, BLOCK_SIZE, False, 0.0, time.time() + 600)
            db.execute(
                "INSERT INTO uploads VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (*row[:5], int(row.overwrite), row.started, row.expires),
            )
        db.execute(
            "INSERT INTO upload_blocks (block, upload, nodes) VALUES (?, ?, ?)",
            (block, upload, ",".join(nodes)),
        )


def in_flight(part: Any) -> set[str]:
    """Every block granted to an open upload, in the store of *part*."""
    return {b for (b,) in unwrap(part).store.db.execute("SELECT block FROM upload_blocks")}

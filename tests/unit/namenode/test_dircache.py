"""The name node's directory cache, against a namespace without it: the same random operations
by several users (mkdir, create, commit, copy, move, delete, chmod, chown, setrep, initialize,
homes, and every kind of lookup) must give the same answers and the same errors."""

from __future__ import annotations

import asyncio
import random
import time
from pathlib import Path
from typing import Any

import pytest
from tests.unit.namenode.parts import open_parts, unwrap

from pydfs import wire
from pydfs.errors import PermissionDenied, PydfsError
from pydfs.namenode.auth import User
from pydfs.namenode.store.sqlite import Store

USERS = [
    None,
    User("admin", admin=True),
    User("alice", groups=frozenset({"staff"})),
    User("bob", groups=frozenset({"staff"})),
    User("carol"),
]
NAMES = ["a", "b", "c"]
MODES = [0o000, 0o700, 0o755, 0o711, 0o1777, 0o777, 0o070, 0o701, 0o1755, 0o750, 0o644]


def comparable(x: Any) -> Any:
    if isinstance(x, wire.FileStatus):
        blocks = None
        if x.blocks is not None:
            blocks = [(b.id, b.size, b.crc, sorted(n.id for n in b.nodes)) for b in x.blocks]
        fields = (x.path, x.name, x.type, x.size, x.owner, x.group, x.mode, x.replication)
        return (*fields, x.block_size, blocks)
    if isinstance(x, wire.Listing):
        return (x.path, [comparable(e) for e in x.entries])
    if hasattr(x, "mode"):  # an Inode
        return (x.id, x.parent, x.name, x.type, x.owner, x.group, x.mode, x.replication)
    return x


def random_call(rng: random.Random, serial: list[int]) -> tuple[str, list[Any], dict[str, Any]]:
    user = rng.choice(USERS)

    def path() -> str:
        return "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(0, 4)))

    def flag(p: float = 0.5) -> bool:
        return rng.random() < p

    p, q, k = path(), path(), rng.random()
    if rng.random() < 0.6:  # mostly the writes that keep the cache, and lookups
        k = rng.choice([0.05, 0.15, 0.25, 0.33, 0.7, 0.8, 0.85, 0.9, 0.95])
    if k < 0.12:
        return "mkdir", [p, user], {"parents": flag(), "mode": rng.choice([None, *MODES])}
    if k < 0.20:
        return "create_file", [p, user], {}
    if k < 0.30:
        serial[0] += 1
        blocks = [wire.StoredBlock(f"{serial[0]:032x}", 10, 1, ["dn-1"])]
        kw = {"replication": 1, "block_size": 1024, "blocks": blocks, "overwrite": flag()}
        return "commit_file", [p, user], kw
    if k < 0.35:
        return "copy", [p, q if flag(0.8) else None, user], {"overwrite": flag()}
    if k < 0.42:
        return "move", [p, q, user], {"overwrite": flag()}
    if k < 0.48:
        return "delete", [p, user], {"recursive": flag()}
    if k < 0.56:
        return "chmod", [p, rng.choice(MODES), user], {"recursive": flag(0.4)}
    if k < 0.61:
        owner = rng.choice([None, "alice", "bob", "carol"])
        group = rng.choice([None, "staff", "alice", "bob"])
        return "chown", [p, owner, group, user], {"recursive": flag(0.4)}
    if k < 0.63:
        return "setrep", [p, 3, user], {}
    if k < 0.64:
        return "format", [], {}
    if k < 0.65:
        return "make_home", [rng.choice(["alice", "bob"])], {}
    if k < 0.75:
        return "stat", [p, user], {"read": flag()}
    if k < 0.82:
        return "listdir", [p, user], {}
    if k < 0.88:
        return "check_writable", [p, user], {"overwrite": flag()}
    if k < 0.94:
        return "lookup", [p, user], {"in_it": flag(0.3)}
    return "resolve_dir", [p, user], {"in_it": flag(0.3)}


@pytest.mark.parametrize("seed", range(20))
def test_the_cache_never_changes_an_answer(tmp_path: Path, seed: int, loop: Any) -> None:
    stores = [Store(tmp_path / "cached.sqlite3"), Store(tmp_path / "uncached.sqlite3")]
    cached, uncached = (open_parts(s, loop) for s in stores)

    def nothing_cached(generation: int) -> dict[Any, Any]:
        return {}

    unwrap(uncached).namespace.tree.cached = nothing_cached
    cache = unwrap(cached).namespace.tree._dirs
    rng, serial, most_cached = random.Random(seed), [0], 0
    try:
        for step in range(400):
            name, args, kwargs = random_call(rng, serial)
            answers = []
            for ns in (cached, uncached):
                try:
                    answers.append(("ok", comparable(getattr(ns, name)(*args, **kwargs))))
                except PydfsError as exc:
                    answers.append((type(exc).__name__, str(exc)))
            assert answers[0] == answers[1], f"step {step}: {name}{tuple(args)} {kwargs}"
            most_cached = max(most_cached, len(cache))
        assert most_cached > 0, "the cache was never used"
    finally:
        for store in stores:
            store.close()


def changes_of_names(
    rng: random.Random, serial: list[int]
) -> tuple[str, list[Any], dict[str, Any]]:
    """``random_call``, with more of what may or may not reshape the tree: moves (into a
    directory or onto a name), modes and owners, and new files to move."""
    user = rng.choice(USERS)

    def path() -> str:
        return "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 4)))

    k = rng.random()
    if k < 0.15:
        kwargs = {"overwrite": rng.random() < 0.6, "into": rng.random() < 0.7}
        return "move", [path(), path(), user], kwargs
    if k < 0.25:
        return "chmod", [path(), rng.choice(MODES), user], {"recursive": rng.random() < 0.4}
    if k < 0.30:
        owner, group = rng.choice([None, "alice", "bob"]), rng.choice([None, "staff"])
        return "chown", [path(), owner, group, user], {"recursive": rng.random() < 0.4}
    if k < 0.40:
        return "create_file", [path(), rng.choice(USERS[:3])], {}
    return random_call(rng, serial)


@pytest.mark.parametrize("seed", range(10))
def test_two_name_nodes_caching_answer_as_one_without(tmp_path: Path, seed: int, loop: Any):
    """Each call through either of two name nodes sharing a store, both caching, answers as a
    namespace without a cache does: what one changes, the other never walks from its cache."""
    shared, alone = Store(tmp_path / "shared.sqlite3"), Store(tmp_path / "uncached.sqlite3")
    nodes = [open_parts(shared, loop), open_parts(shared, loop)]
    uncached = open_parts(alone, loop)
    unwrap(uncached).namespace.tree.cached = lambda generation: {}
    rng, serial = random.Random(seed), [0]
    try:
        for step in range(400):
            name, args, kwargs = changes_of_names(rng, serial)
            answers = []
            for ns in (rng.choice(nodes), uncached):
                try:
                    answers.append(("ok", comparable(getattr(ns, name)(*args, **kwargs))))
                except PydfsError as exc:
                    answers.append((type(exc).__name__, str(exc)))
            assert answers[0] == answers[1], f"step {step}: {name}{tuple(args)} {kwargs}"
    finally:
        shared.close()
        alone.close()


def test_a_tree_reshaped_through_another_name_node_is_never_walked_from_a_cache(
    open_store: Any, loop: Any
) -> None:
    """Two name nodes on one store: a rename through one empties the other's cache (the
    store's generation), so the other never walks a path that no longer exists."""
    store = open_store()
    one, two = open_parts(store, loop), open_parts(store, loop)
    admin = User("admin", admin=True)
    one.mkdir("/a/b", admin, parents=True)
    two.create_file("/a/b/f", admin)  # /a and /a/b remembered by two's walk
    assert unwrap(two).namespace.tree._dirs
    one.move("/a", "/c", admin)
    assert two.lookup("/a/b") is None
    assert two.lookup("/a/b/f") is None
    assert two.stat("/c/b/f").path == "/c/b/f"


def test_a_write_remembers_its_walk_only_if_no_reshape_came_between(open_store: Any, loop: Any):
    """A create walks /a/b, then waits for its fsync; a chmod that closes /a/b commits in that
    wait. What the create walked must not come back into the cache once it is durable: the
    next create by the same user in /a/b is refused."""
    store = open_store()
    ns = open_parts(store, loop)
    parts = unwrap(ns)
    admin, alice = User("admin", admin=True), User("alice")
    ns.mkdir("/a/b", admin, parents=True, mode=0o777)
    real_sync = store.sync

    def slow_sync() -> None:  # a slow disk: the create's fsync outlasts the chmod's commit
        time.sleep(0.1)
        real_sync()

    store.sync = slow_sync

    async def crowd() -> None:
        await store._lock.acquire()  # they arrive together and queue
        create = asyncio.ensure_future(parts.namespace.create_file("/a/b/f1", alice))
        close = asyncio.ensure_future(parts.attributes.chmod("/a/b", 0o700, admin))
        read = asyncio.ensure_future(parts.namespace.stat("/", admin))
        await asyncio.sleep(0.01)
        store._lock.release()
        await asyncio.gather(create, close, read)

    loop.run_until_complete(crowd())
    with pytest.raises(PermissionDenied):
        ns.create_file("/a/b/f2", alice)


def test_only_changes_to_directories_empty_the_cache(open_store: Any, loop: Any) -> None:
    """A walk meets directories only: a file moved, or given a mode or an owner, changes
    nothing it meets, and keeps the cache (on every name node: the generation stays); the same
    of a directory empties it."""
    store = open_store()
    ns = open_parts(store, loop)
    tree = unwrap(ns).namespace.tree
    ns.mkdir("/a/b/c", parents=True)
    ns.mkdir("/d")
    ns.create_file("/a/b/c/f")

    def generation() -> int:
        async def read() -> int:
            async with store.read() as tx:
                return int(await tx.generation())

        return loop.run_until_complete(read())

    before = generation()
    for change in (
        lambda: ns.move("/a/b/c/f", "/a/b/c/g"),
        lambda: ns.move("/a/b/c/g", "/d"),
        lambda: ns.chmod("/d/g", 0o600),
        lambda: ns.chown("/d/g", "alice", None),
    ):
        ns.stat("/a/b/c/")  # walked: /a, /a/b and /a/b/c are cached
        change()
        assert len(tree._dirs) >= 3, change
    assert generation() == before
    for change in (
        lambda: ns.chmod("/d", 0o755),
        lambda: ns.chown("/a/b", "alice", None),
        lambda: ns.move("/a/b/c", "/d"),
        lambda: ns.chmod("/a", 0o755, recursive=True),
    ):
        ns.stat("/a/b/")
        assert tree._dirs
        change()
        assert not tree._dirs, change
        now = generation()
        assert now > before, change
        before = now

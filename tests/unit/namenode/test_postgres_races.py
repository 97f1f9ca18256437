"""Races on the PostgreSQL store (READ COMMITTED): what the schema and its locks keep true when
transactions, of one name node or of two sharing the database, interleave. Each test holds one
transaction open at the point of the race and lets another run into it."""

from __future__ import annotations

import asyncio
import random
from collections.abc import AsyncIterator
from typing import Any

import asyncpg
import pytest
import pytest_asyncio

from pydfs.errors import (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.store import Store, open_store
from pydfs.namenode.store.interface import Block, NewInode
from pydfs.namenode.store.postgres import tables

pytestmark = pytest.mark.asyncio

ROOT = 1


def new(parent: int, name: str, type: str = "f") -> NewInode:
    return NewInode(parent, name, type, "alice", "staff", 0o755, 1.0)


@pytest_asyncio.fixture
async def stores(postgres_url: str) -> AsyncIterator[tuple[Store, Store]]:
    """Two stores on one database, as two name nodes have; the root made."""
    one, two = open_store(postgres_url), open_store(postgres_url)
    async with one.write() as tx:
        await tx.inodes.insert(NewInode(0, "", "d", "root", "root", 0o755, 0.0), inode_id=ROOT)
    yield one, two
    await one.aclose()
    await two.aclose()


async def _held(store: Store, work: Any, release: asyncio.Event, done: asyncio.Event) -> None:
    """Run *work* in a write, then hold the transaction open until *release*."""
    async with store.write() as tx:
        await work(tx)
        done.set()
        await release.wait()


async def test_crossed_directory_moves_cannot_make_a_cycle(stores: tuple[Store, Store]) -> None:
    """``mv /a /b/`` and ``mv /b /a/`` at once: the second to take the move lock finds the first
    committed and is refused, rather than leave a and b each other's parent, cut off from /."""
    one, two = stores
    async with one.write() as tx:
        a = await tx.inodes.insert(new(ROOT, "a", "d"))
        b = await tx.inodes.insert(new(ROOT, "b", "d"))
    release, moved = asyncio.Event(), asyncio.Event()
    first = asyncio.create_task(_held(one, lambda tx: tx.inodes.rename(a, b, "a"), release, moved))
    await moved.wait()

    async def second() -> None:
        async with two.write() as tx:
            await tx.inodes.rename(b, a, "b")

    racing = asyncio.create_task(second())
    await asyncio.sleep(0.2)  # it waits for the lock the first holds
    assert not racing.done()
    release.set()
    await first
    with pytest.raises(InvalidArgument):
        await racing
    async with two.read() as tx:
        assert (await tx.inodes.get(a)).parent == b  # type: ignore[union-attr]
        assert (await tx.inodes.get(b)).parent == ROOT  # type: ignore[union-attr]


async def test_rmdir_racing_a_create_inside_leaves_no_orphan(stores: tuple[Store, Store]) -> None:
    one, two = stores
    async with one.write() as tx:
        d = await tx.inodes.insert(new(ROOT, "d", "d"))
    # The create commits first: the removal, which found the directory empty, is refused.
    release, made = asyncio.Event(), asyncio.Event()
    create = asyncio.create_task(
        _held(one, lambda tx: tx.inodes.insert(new(d, "f")), release, made)
    )
    await made.wait()
    with pytest.raises(DirectoryNotEmpty):
        async with two.write() as tx:
            assert not await tx.inodes.has_children(d)  # the create is not committed yet
            remover = asyncio.get_running_loop().call_later(0.1, release.set)
            await tx.inodes.delete([d])  # waits for the create, then finds its entry
    remover.cancel()
    await create
    # The removal commits first: the create, which found the directory, is refused.
    async with one.write() as tx:
        e = await tx.inodes.insert(new(ROOT, "e", "d"))
    release, removed = asyncio.Event(), asyncio.Event()
    rmdir = asyncio.create_task(_held(one, lambda tx: tx.inodes.delete([e]), release, removed))
    await removed.wait()
    asyncio.get_running_loop().call_later(0.1, release.set)
    with pytest.raises(NotFound):
        async with two.write() as tx:
            assert await tx.inodes.get(e) is not None  # the removal is not committed yet
            await tx.inodes.insert(new(e, "f"))
    await rmdir
    async with two.read() as tx:
        assert await tx.inodes.get(e) is None
        assert await tx.inodes.entries(d) != []


async def test_creators_in_one_directory_do_not_queue_for_it(
    stores: tuple[Store, Store],
) -> None:
    """A create changes its directory's time, but does not hold the directory's row till it
    commits: another create there commits while the first is still open."""
    one, two = stores
    async with one.write() as tx:
        d = await tx.inodes.insert(new(ROOT, "d", "d"))
    release, made = asyncio.Event(), asyncio.Event()

    async def create(tx: Any) -> None:
        await tx.inodes.insert(new(d, "first"))
        await tx.inodes.touch([d], 50.0)

    first = asyncio.create_task(_held(one, create, release, made))
    await made.wait()
    try:
        async with asyncio.timeout(5):
            async with two.write() as tx:
                await tx.inodes.insert(new(d, "second"))
                await tx.inodes.touch([d], 60.0)
    finally:
        release.set()
        await first
    async with two.read() as tx:
        assert [e[0] for e in await tx.inodes.entries(d)] == ["first", "second"]
        assert (await tx.inodes.get(d)).mtime == 60.0  # type: ignore[union-attr]


async def test_a_deadlock_is_replayed_unseen_by_either_caller(
    stores: tuple[Store, Store],
) -> None:
    """Two transactions change two inodes in opposite orders: PostgreSQL aborts one, which is
    rolled back and replayed (its statements give what they gave before); both callers see
    only success."""
    one, two = stores
    async with one.write() as tx:
        x = await tx.inodes.insert(new(ROOT, "x"))
        y = await tx.inodes.insert(new(ROOT, "y"))
    both = asyncio.Barrier(2)

    async def crossed(store: Store, first: int, then: int, mode: int) -> None:
        async with store.write() as tx:
            assert await tx.inodes.set_mode([first], mode) == 1
            await both.wait()
            assert await tx.inodes.set_mode([then], mode) == 1

    await asyncio.gather(crossed(one, x, y, 0o600), crossed(two, y, x, 0o640))
    async with one.read() as tx:
        modes = {(await tx.inodes.get(i)).mode for i in (x, y)}  # type: ignore[union-attr]
    assert len(modes) == 1  # one transaction's after the other's, not a mix


async def test_a_replay_that_reads_otherwise_fails_whole(stores: tuple[Store, Store]) -> None:
    """The transaction aborted by a deadlock read something the winner changed: it cannot be
    replayed unchanged, so it fails (503, try again) and nothing of it stays."""
    one, two = stores
    async with one.write() as tx:
        x = await tx.inodes.insert(new(ROOT, "x"))
        y = await tx.inodes.insert(new(ROOT, "y"))
        await tx.blocks.add([Block("bx", 1, 1), Block("by", 1, 1)], 0.0)
        await tx.blocks.attach(x, ["bx"])
        await tx.blocks.attach(y, ["by"])
    both = asyncio.Barrier(2)

    async def crossed(store: Store, first: int, then: int) -> set[str]:
        async with store.write() as tx:
            named = await tx.blocks.detach([first])
            await both.wait()
            return named | await tx.blocks.detach([then])

    got = await asyncio.gather(crossed(one, x, y), crossed(two, y, x), return_exceptions=True)
    assert sorted(type(g).__name__ for g in got) == ["Contention", "set"]
    assert {"bx", "by"} in got
    async with one.read() as tx:
        assert await tx.blocks.of_file(x) == [] and await tx.blocks.of_file(y) == []


async def test_a_copy_keeps_blocks_a_concurrent_removal_releases(
    stores: tuple[Store, Store],
) -> None:
    """rm of a file while a copy of it shares its blocks: the removal waits for the copy,
    then finds the blocks named by it and keeps them."""
    one, two = stores
    async with one.write() as tx:
        f = await tx.inodes.insert(new(ROOT, "f"))
        await tx.blocks.add([Block("b", 1, 1)], 0.0)
        await tx.blocks.attach(f, ["b"])
    release, shared = asyncio.Event(), asyncio.Event()

    async def copy(tx: Any) -> None:
        g = await tx.inodes.insert(new(ROOT, "g"))
        await tx.blocks.share(f, g)

    copying = asyncio.create_task(_held(one, copy, release, shared))
    await shared.wait()
    asyncio.get_running_loop().call_later(0.1, release.set)
    async with two.write() as tx:
        named = await tx.blocks.detach([f])
        await tx.inodes.delete([f])
        await tx.blocks.release(named)
    await copying
    async with two.read() as tx:
        g = await tx.inodes.child(ROOT, "g")
        assert g is not None
        assert [p.block.id for p in await tx.blocks.of_file(g.id)] == ["b"]
        assert await tx.blocks.count() == 1


async def test_a_reshape_through_one_store_moves_the_others_generation(
    stores: tuple[Store, Store],
) -> None:
    one, two = stores
    async with two.read() as tx:
        before = await tx.generation()
    async with one.write() as tx:
        await tx.inodes.insert(new(ROOT, "plain"))
    async with two.read() as tx:
        assert await tx.generation() == before
    async with one.write() as tx:
        await tx.reshaped()
    async with two.read() as tx:
        assert await tx.generation() == before + 1


async def test_counts_are_estimates_past_the_exact_census(
    postgres_url: str, stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    one, _ = stores
    async with one.write() as tx:
        d = await tx.inodes.insert(new(ROOT, "d", "d"))
        for i in range(30):
            await tx.inodes.insert(new(d, f"f{i}"))
    conn = await asyncpg.connect(postgres_url)
    try:
        await conn.execute("ANALYZE inodes")
    finally:
        await conn.close()
    monkeypatch.setattr(tables, "CENSUS_EXACT", 10)  # so that 32 inodes are "many"
    async with one.read() as tx:
        counts = await tx.inodes.counts()
    assert counts == {"d": 2, "f": 30}  # the statistics of a table ANALYZE read whole


# --- two name nodes' namespaces on one database --------------------------------------------

NAMES = ["a", "b", "c", "d"]
EXPECTED = (
    AlreadyExists,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    Unavailable,  # Contention: a transaction that could not be replayed unchanged
)


def _random_path(rng: random.Random) -> str:
    return "/" + "/".join(rng.choice(NAMES) for _ in range(rng.randint(1, 3)))


async def _namespace(store: Store) -> Namespace:
    membership = Membership(store, dead_after=30)
    await membership.load()
    ns = Namespace(store, membership, replication=1, block_size=65536)
    await ns.open()
    return ns


async def test_two_namenodes_racing_moves_rmdirs_and_creates_keep_one_tree(
    postgres_url: str, stores: tuple[Store, Store]
) -> None:
    """Random moves across directories, removals and creates from eight clients of two name
    nodes at once; then the tree has one root, no cycle, no orphan, every entry reachable,
    and each name node lists exactly what is stored."""
    namespaces = [await _namespace(store) for store in stores]
    for name in NAMES:
        await namespaces[0].mkdir(f"/{name}")
    done: list[str] = []

    async def client(seed: int) -> None:
        rng = random.Random(seed)
        ns = namespaces[seed % 2]
        for _ in range(100):
            op = rng.choice(["mv", "mv", "mv", "mkdir", "create", "rmdir", "rm -r"])
            src, dst = _random_path(rng), _random_path(rng)
            try:
                if op == "mv":
                    await ns.move(src, dst)
                elif op == "mkdir":
                    await ns.mkdir(src)
                elif op == "create":
                    await ns.create_file(src + "-f")
                elif op == "rmdir":
                    await ns.delete(src, type="dir")
                else:
                    await ns.delete(src, recursive=True)
                done.append(op)
            except EXPECTED:
                pass

    await asyncio.gather(*(client(seed) for seed in range(8)))
    assert {"mv", "mkdir", "create"} <= set(done)

    conn = await asyncpg.connect(postgres_url)
    try:
        roots = await conn.fetch("SELECT id FROM inodes WHERE parent IS NULL")
        total = await conn.fetchval("SELECT count(*) FROM inodes")
        reachable = await conn.fetchval(
            "WITH RECURSIVE down(id) AS (SELECT 1::bigint UNION "
            "SELECT i.id FROM inodes i JOIN down ON i.parent = down.id) "
            "SELECT count(*) FROM down"
        )
        orphans = await conn.fetchval(
            "SELECT count(*) FROM inodes i WHERE i.parent IS NOT NULL "
            "AND NOT EXISTS (SELECT 1 FROM inodes p WHERE p.id = i.parent AND p.type = 'd')"
        )
    finally:
        await conn.close()
    assert [r[0] for r in roots] == [ROOT]
    assert orphans == 0
    assert reachable == total  # a cycle would be unreachable from the root

    async def listed(ns: Namespace, path: str) -> int:
        entries = (await ns.listdir(path)).entries
        counted = 1
        for entry in entries:
            child = path.rstrip("/") + "/" + entry.name
            counted += await listed(ns, child) if entry.type == "dir" else 1
        return counted

    for ns in namespaces:
        assert await listed(ns, "/") == total

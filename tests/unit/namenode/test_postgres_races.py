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

from pydfs import wire
from pydfs.errors import (
    AlreadyExists,
    Conflict,
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
    Unavailable,
)
from pydfs.namenode.commits import Commits
from pydfs.namenode.membership import Membership
from pydfs.namenode.namespace import Namespace
from pydfs.namenode.store import Store, open_store
from pydfs.namenode.store.interface import Block, NewInode
from pydfs.namenode.store.postgres import blockmap, inodes, rowcount

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
    monkeypatch.setattr(rowcount, "CENSUS_EXACT", 10)  # so that 32 inodes are "many"
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


# --- writers of one path through two name nodes ----------------------------------------------


def _stored(*names: str) -> list[wire.StoredBlock]:
    return [wire.StoredBlock(name, 10, 1, ["dn-1"]) for name in names]


async def _commit(ns: Namespace, path: str, *blocks: str) -> wire.FileStatus:
    return await Commits(ns).commit_file(
        path, None, replication=1, block_size=1024, blocks=_stored(*blocks), overwrite=True
    )


async def _named(store: Store, path: str) -> list[str]:
    async with store.read() as tx:
        f = await tx.inodes.child(ROOT, path.lstrip("/"))
        assert f is not None
        return [p.block.id for p in await tx.blocks.of_file(f.id)]


async def test_writers_of_one_new_path_end_with_the_last_ones_file(
    stores: tuple[Store, Store],
) -> None:
    """``put -f`` of a path that does not exist yet, from two name nodes: the second to commit
    finds the first's file when it makes its own, and replaces it, as if it had come later."""
    one, two = stores
    release, made = asyncio.Event(), asyncio.Event()

    async def first(tx: Any) -> None:
        f = await tx.inodes.insert(new(ROOT, "f"))
        await tx.blocks.add([Block("first", 10, 1)], 0.0)
        await tx.blocks.attach(f, ["first"])

    writing = asyncio.create_task(_held(one, first, release, made))
    await made.wait()
    asyncio.get_running_loop().call_later(0.1, release.set)
    await _commit(await _namespace(two), "/f", "second")  # waits for the first, then replaces
    await writing
    assert await _named(one, "/f") == ["second"]
    async with one.read() as tx:
        assert await tx.blocks.get("first") is None  # released, not left named by nothing


async def test_writers_replacing_one_file_leave_one_whole_version(
    stores: tuple[Store, Store],
) -> None:
    """``put -f`` over an existing file from two name nodes: the second to commit releases what
    the first attached, never keeps it beside its own blocks."""
    one, two = stores
    ns = await _namespace(two)
    await _commit(ns, "/f", "old")
    release, replaced = asyncio.Event(), asyncio.Event()

    async def first(tx: Any) -> None:
        f = await tx.inodes.child(ROOT, "f")
        named = await tx.blocks.detach([f.id])
        await tx.blocks.add([Block("first-0", 10, 1), Block("first-1", 10, 1)], 0.0)
        await tx.blocks.attach(f.id, ["first-0", "first-1"])
        await tx.blocks.release(named)

    writing = asyncio.create_task(_held(one, first, release, replaced))
    await replaced.wait()
    asyncio.get_running_loop().call_later(0.1, release.set)
    await _commit(ns, "/f", "second")  # waits for the first's hold on the file
    await writing
    assert await _named(one, "/f") == ["second"]
    async with one.read() as tx:
        assert await tx.blocks.get("first-0") is None and await tx.blocks.get("first-1") is None


async def test_a_writer_expecting_the_version_a_racer_replaced_is_refused(
    stores: tuple[Store, Store],
) -> None:
    """A commit that expects the file's current blocks (a writer that changed part of it)
    while another name node replaces the file: it sees the replacement once it holds the file,
    and is refused whole, rather than applied over a version it never read."""
    one, two = stores
    ns = await _namespace(two)
    await _commit(ns, "/f", "old")
    release, replaced = asyncio.Event(), asyncio.Event()

    async def first(tx: Any) -> None:
        f = await tx.inodes.child(ROOT, "f")
        named = await tx.blocks.detach([f.id])
        await tx.blocks.add([Block("first", 10, 1)], 0.0)
        await tx.blocks.attach(f.id, ["first"])
        await tx.blocks.release(named)

    writing = asyncio.create_task(_held(one, first, release, replaced))
    await replaced.wait()
    asyncio.get_running_loop().call_later(0.1, release.set)
    with pytest.raises(Conflict, match="replaced while open"):
        await Commits(ns).commit_file(
            "/f",
            None,
            replication=1,
            block_size=1024,
            blocks=_stored("second"),
            overwrite=True,
            expect=["old"],
        )
    await writing
    assert await _named(one, "/f") == ["first"]


async def test_mkdir_p_racing_another_keeps_the_directory_the_other_made(
    stores: tuple[Store, Store],
) -> None:
    """``mkdir -p /a/b`` while another name node makes /a: it goes on inside that /a (but a
    plain ``mkdir /a`` is refused, as it would be had the other come first)."""
    one, two = stores
    ns = await _namespace(two)

    async def racing(name: str) -> asyncio.Task[None]:
        release, made = asyncio.Event(), asyncio.Event()
        work = lambda tx: tx.inodes.insert(new(ROOT, name, "d"))  # noqa: E731
        making = asyncio.create_task(_held(one, work, release, made))
        await made.wait()
        asyncio.get_running_loop().call_later(0.1, release.set)
        return making

    making = await racing("a")
    await ns.mkdir("/a/b", parents=True)  # waits for the other's /a, then makes b in it
    await making
    async with one.read() as tx:
        a = await tx.inodes.child(ROOT, "a")
        assert a is not None and [e[0] for e in await tx.inodes.entries(a.id)] == ["b"]
    making = await racing("c")
    with pytest.raises(AlreadyExists):
        await ns.mkdir("/c")
    await making


async def test_a_delete_whose_directory_another_removed_meanwhile_finds_nothing(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``rm /a/f`` through one name node while another removes /a: once /a is gone, the first
    answers "no such file" (it failed on an assertion, a 500)."""
    one, two = stores
    ns_one, ns_two = await _namespace(one), await _namespace(two)
    await ns_one.mkdir("/a")
    await ns_one.create_file("/a/f")
    original = inodes.Inodes.get
    removed: list[bool] = []

    async def get(self: inodes.Inodes, inode_id: int) -> Any:
        if not removed and inode_id != ROOT:  # the delete looks up /a/f's directory
            removed.append(True)
            await ns_two.delete("/a", recursive=True)
        return await original(self, inode_id)

    monkeypatch.setattr(inodes.Inodes, "get", get)
    with pytest.raises(NotFound):
        await ns_one.delete("/a/f")
    assert removed


async def test_a_copy_racing_a_replace_of_its_source_is_of_one_version(
    stores: tuple[Store, Store], monkeypatch: pytest.MonkeyPatch
) -> None:
    """``cp /f /g`` through one name node while another replaces /f between the copy's walk
    and its hold on /f: the copy is the new version whole (its size with its blocks), never
    the old size with the new blocks."""
    one, two = stores
    a, b = await _namespace(one), await _namespace(two)
    await _commit(a, "/f", "old")
    share = blockmap.BlockMap.share

    async def late(self: Any, source: int, target: int) -> None:
        replaced = [wire.StoredBlock(n, 1000, 1, ["dn-1"]) for n in ("new-0", "new-1")]
        await Commits(b).commit_file(
            "/f", None, replication=1, block_size=1024, blocks=replaced, overwrite=True
        )
        await share(self, source, target)

    monkeypatch.setattr(blockmap.BlockMap, "share", late)
    await a.copy("/f", "/g")
    monkeypatch.setattr(blockmap.BlockMap, "share", share)
    g = await a.stat("/g")
    assert [x.id for x in g.blocks] == ["new-0", "new-1"]
    assert g.size == 2000

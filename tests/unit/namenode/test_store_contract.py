"""The contract of ``store.interface``: what every metadata backend must do, run against each
one (SQLite, and PostgreSQL on a server the tests start: ``pydfs.local_postgres``). The name node's
modules rely on exactly this."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest
import pytest_asyncio

from pydfs.errors import AlreadyExists, InvalidArgument
from pydfs.namenode.store import Store, open_store
from pydfs.namenode.store.interface import (
    APPLYING,
    AppliedElsewhere,
    Applying,
    Block,
    NewInode,
    UploadRow,
    UserRow,
)

pytestmark = pytest.mark.asyncio

ROOT = 1


@pytest_asyncio.fixture
async def store(any_store: Store) -> Store:
    async with any_store.write() as tx:
        await tx.inodes.insert(NewInode(0, "", "d", "root", "root", 0o755, 0.0), inode_id=ROOT)
    return any_store


def new(parent: int, name: str, type: str = "f", **kwargs: object) -> NewInode:
    return NewInode(parent, name, type, "alice", "staff", 0o644, 1.0, **kwargs)  # type: ignore[arg-type]


async def test_an_unknown_url_is_refused() -> None:
    for url in ("mysql://x", "sqlite://relative/path", "nothing", "postgresql:/no-slashes"):
        with pytest.raises(InvalidArgument):
            open_store(url)


async def test_inodes_insert_get_child_and_entries_sorted(store: Store) -> None:
    async with store.write() as tx:
        d = await tx.inodes.insert(new(ROOT, "d", "d"))
        b = await tx.inodes.insert(
            new(d, "b", size=5, replication=2, block_size=4096), sha256="5a" * 32
        )
        a = await tx.inodes.insert(new(d, "a"))
        with pytest.raises(AlreadyExists):
            await tx.inodes.insert(new(d, "b"))
    async with store.read() as tx:
        got = await tx.inodes.get(b)
        assert got is not None
        assert (got.parent, got.name, got.type, got.size, got.replication) == (d, "b", "f", 5, 2)
        assert (got.owner, got.group, got.mode, got.block_size) == ("alice", "staff", 0o644, 4096)
        assert await tx.inodes.child(d, "b") == got
        assert await tx.inodes.child(d, "zz") is None
        assert (await tx.inodes.sha256(b), await tx.inodes.sha256(a)) == ("5a" * 32, None)
        entries = list(await tx.inodes.entries(d))  # an iterable, read inside the transaction
        assert [e[0] for e in entries] == ["a", "b"]
        assert entries[1] == (
            *(got.name, got.type, got.size, got.mtime, got.ctime, got.owner, got.group),
            *(got.mode, got.replication, got.block_size, got.target),
        )
        assert await tx.inodes.has_children(d) and not await tx.inodes.has_children(b)
        assert (await tx.inodes.counts()) == {"d": 2, "f": 2}


async def test_subtree_lists_parents_before_children(store: Store) -> None:
    async with store.write() as tx:
        a = await tx.inodes.insert(new(ROOT, "a", "d"))
        b = await tx.inodes.insert(new(a, "b", "d"))
        f = await tx.inodes.insert(new(b, "f"))
        await tx.inodes.insert(new(ROOT, "elsewhere"))
    async with store.read() as tx:
        ids = [n.id for n in await tx.inodes.subtree(a)]
        assert ids == [a, b, f]
        assert [n.id for n in await tx.inodes.subtree(f)] == [f]


async def test_inode_updates(store: Store) -> None:
    async with store.write() as tx:
        d = await tx.inodes.insert(new(ROOT, "d", "d"))
        f = await tx.inodes.insert(new(d, "f"))
        await tx.inodes.touch([d, f], 99.0)
        await tx.inodes.set_content(f, size=7, mtime=100.0, replication=3, block_size=8192)
        await tx.inodes.rename(f, ROOT, "g")
        assert await tx.inodes.set_mode([d, f], 0o700) == 2
        assert await tx.inodes.set_owner([f], None, "other") == 1
        assert await tx.inodes.set_replication([d, f], 1) == 1  # files only
    async with store.read() as tx:
        g = await tx.inodes.child(ROOT, "g")
        assert g is not None and g.id == f
        assert (g.size, g.mtime, g.replication, g.block_size) == (7, 100.0, 1, 8192)
        assert (g.mode, g.owner, g.group) == (0o700, "alice", "other")
        dir_ = await tx.inodes.get(d)
        assert dir_ is not None and dir_.mtime == 99.0 and dir_.mode == 0o700
    async with store.write() as tx:
        await tx.inodes.delete([f])
        await tx.inodes.delete_all_but(ROOT)
    async with store.read() as tx:
        assert list(await tx.inodes.entries(ROOT)) == []
        assert (await tx.inodes.counts()).get("f", 0) == 0


async def test_a_read_sees_one_moment(store: Store) -> None:
    """A write committed while a read is under way (or waiting for it, on a backend whose
    reads exclude writes) is not seen by that read: a file's size and its blocks, read one
    after the other, are of one version."""
    async with store.write() as tx:
        f = await tx.inodes.insert(new(ROOT, "f"))
        await tx.blocks.add([Block("old", 1, 0)], 1.0)
        await tx.blocks.attach(f, ["old"])
        await tx.inodes.set_content(f, size=1, mtime=1.0, replication=1, block_size=4096)

    async def replace() -> None:
        async with store.write() as tx:
            await tx.blocks.add([Block("new", 2, 0)], 2.0)
            await tx.blocks.detach([f])
            await tx.blocks.attach(f, ["new"])
            await tx.inodes.set_content(f, size=2, mtime=2.0, replication=1, block_size=4096)

    async with store.read() as tx:
        node = await tx.inodes.get(f)
        writer = asyncio.create_task(replace())
        await asyncio.wait({writer}, timeout=5.0 if store.shared else 0.1)
        placed = await tx.blocks.of_file(f)
    await writer
    assert node is not None and node.size == 1
    assert [p.block.id for p in placed] == ["old"]
    async with store.read() as tx:
        assert [p.block.id for p in await tx.blocks.of_file(f)] == ["new"]


async def test_a_failed_write_changes_nothing(store: Store) -> None:
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await tx.inodes.insert(new(ROOT, "ghost"))
            raise RuntimeError("rolled back")
    async with store.read() as tx:
        assert await tx.inodes.child(ROOT, "ghost") is None


async def test_blocks_files_replicas_and_release(store: Store) -> None:
    async with store.write() as tx:
        f = await tx.inodes.insert(new(ROOT, "f"))
        g = await tx.inodes.insert(new(ROOT, "g"))
        await tx.blocks.add([Block("b1", 10, 1), Block("b2", 20, 2)], time.time())
        await tx.blocks.attach(f, ["b2", "b1"])
        await tx.blocks.add_replicas([("b1", "n1"), ("b1", "n2"), ("b2", "n1")], 5.0)
        await tx.blocks.share(f, g)
    async with store.read() as tx:
        placed = await tx.blocks.of_file(f)
        assert [(p.block.id, sorted(p.nodes)) for p in placed] == [
            ("b2", ["n1"]),
            ("b1", ["n1", "n2"]),
        ]
        assert [p.block.id for p in await tx.blocks.of_file(g)] == ["b2", "b1"]
        assert await tx.blocks.get("b1") == Block("b1", 10, 1)
        assert await tx.blocks.known(["b1", "zz"]) == {"b1"}
        assert await tx.blocks.holders("b1") == ["n1", "n2"]
        assert await tx.blocks.holds("n2", "b1") and not await tx.blocks.holds("n2", "b2")
        assert await tx.blocks.on_node("n1") == {"b1": 5.0, "b2": 5.0}
        assert await tx.blocks.count() == 2
    async with store.write() as tx:
        named = await tx.blocks.detach([f])
        assert named == {"b1", "b2"}
        await tx.blocks.release(named)  # g still names them: nothing goes
    async with store.read() as tx:
        assert await tx.blocks.count() == 2 and await tx.blocks.trashed_on("n1") == []
    async with store.write() as tx:
        await tx.blocks.release(await tx.blocks.detach([g]))
    async with store.read() as tx:
        assert await tx.blocks.count() == 0
        assert sorted(await tx.blocks.trashed_on("n1")) == ["b1", "b2"]
        assert await tx.blocks.trashed_on("n2") == ["b1"]


async def test_blocks_attached_again_before_release_stay(store: Store) -> None:
    """A new version of a file that keeps some of the old one's blocks: they are detached,
    attached again in the same transaction, and the release spares them."""
    async with store.write() as tx:
        f = await tx.inodes.insert(new(ROOT, "f"))
        await tx.blocks.add([Block("old1", 10, 1), Block("old2", 5, 2)], 1.0)
        await tx.blocks.attach(f, ["old1", "old2"])
        await tx.blocks.add_replicas([("old1", "n1"), ("old2", "n1")], 1.0)
    async with store.write() as tx:
        named = await tx.blocks.detach([f])
        await tx.blocks.add([Block("new", 7, 3)], 2.0)
        await tx.blocks.attach(f, ["old1", "new"])
        await tx.blocks.release(named)
    async with store.read() as tx:
        assert [p.block.id for p in await tx.blocks.of_file(f)] == ["old1", "new"]
        assert await tx.blocks.holders("old1") == ["n1"]
        assert await tx.blocks.trashed_on("n1") == ["old2"]


async def test_replica_and_trash_bookkeeping(store: Store) -> None:
    async with store.write() as tx:
        await tx.blocks.add([Block("b", 1, 1)], 0.0)
        assert await tx.blocks.add_replica("b", "n1", 1.0)
        assert not await tx.blocks.add_replica("b", "n1", 2.0)  # counted once
        assert await tx.blocks.drop_replicas([("b", "n1"), ("b", "n9")]) == 1
        assert await tx.blocks.trash([("n1", "b"), ("n1", "b"), ("n2", "x")]) == 2
        await tx.blocks.untrash([("n2", "x")])
    async with store.read() as tx:
        assert await tx.blocks.trashed_on("n1") == ["b"]
        assert await tx.blocks.trashed_on("n2") == []
        assert await tx.blocks.trashed_on("n1", 0) == []
    async with store.write() as tx:
        assert await tx.blocks.release_all() == 1
    async with store.read() as tx:
        assert await tx.blocks.count() == 0


async def test_replication_queries(store: Store) -> None:
    async with store.write() as tx:
        f = await tx.inodes.insert(new(ROOT, "f", replication=2))
        g = await tx.inodes.insert(new(ROOT, "g", replication=3))
        await tx.blocks.add([Block("b1", 10, 1), Block("b2", 10, 1)], 0.0)
        await tx.blocks.attach(f, ["b1", "b2"])
        await tx.blocks.attach(g, ["b2"])  # b2 needs 3: the highest of its files
        await tx.blocks.add_replicas([("b1", "n1"), ("b1", "n2"), ("b2", "n1")], 0.0)
    async with store.read() as tx:
        work = await tx.blocks.misreplicated({"n1", "n2"})
        assert [(w.block, w.size, w.required, w.holders) for w in work] == [("b2", 10, 3, ["n1"])]
        fewest_first = await tx.blocks.misreplicated({"n2"})
        assert [w.block for w in fewest_first] == ["b2", "b1"]
        assert await tx.blocks.lacking_on("n1", {"n1", "n2"}) == 1
        health = await tx.blocks.health([f], {"n1"}, {"n1", "n2"})
        assert [(h.inode, h.block, h.required, h.serving, h.readable) for h in health] == [
            (f, "b1", 2, 1, 2),
            (f, "b2", 3, 1, 1),
        ]


async def test_users(store: Store) -> None:
    alice = UserRow("alice", "h1", False, ("staff",), 1.0)
    async with store.write() as tx:
        await tx.users.add(alice)
        await tx.users.add(UserRow("bob", "h2", True, (), 2.0))
        with pytest.raises(AlreadyExists):
            await tx.users.add(UserRow("alice", "h3", False, (), 3.0))
        await tx.users.set_groups("bob", ("a", "b"))
        await tx.users.set_token_hash("bob", "h4")
    async with store.read() as tx:
        assert await tx.users.by_token_hash("h1") == alice
        assert await tx.users.by_name("alice") == alice
        bob = await tx.users.by_name("bob")
        assert bob is not None and bob.admin and bob.groups == ("a", "b")
        assert await tx.users.by_token_hash("h2") is None
        assert [u.name for u in await tx.users.all()] == ["alice", "bob"]
    async with store.write() as tx:
        await tx.users.remove(["alice"])
    async with store.read() as tx:
        assert await tx.users.by_name("alice") is None


async def test_datanodes(store: Store) -> None:
    async with store.write() as tx:
        await tx.datanodes.put("n1", "http://a")
        await tx.datanodes.put("n1", "http://b")
        await tx.datanodes.put("n0", "http://c")
        await tx.datanodes.set_admin_state("n1", "decommissioning")
    async with store.read() as tx:
        rows = await tx.datanodes.all()
    assert [(r.id, r.url, r.admin_state) for r in rows] == [
        ("n0", "http://c", "normal"),
        ("n1", "http://b", "decommissioning"),
    ]


async def test_uploads_and_their_grants(store: Store) -> None:
    first = UploadRow("u1", "alice", "/f", 2, 4096, False, 10.0, 100.0)
    second = UploadRow("u2", "alice", None, 1, 4096, True, 20.0, 50.0)
    async with store.write(durable=False) as tx:
        await tx.uploads.open(first)
        await tx.uploads.open(second)
        await tx.uploads.grant("u1", "b1", ["n1", "n2"])
        await tx.uploads.grant("u1", "b2", ["n2"])
        await tx.uploads.renew("u2", 60.0)
    async with store.read() as tx:
        assert await tx.uploads.get("u1") == first
        assert await tx.uploads.granted("u1") == {"b1": ["n1", "n2"], "b2": ["n2"]}
        assert await tx.uploads.grant_of("b1") == ["n1", "n2"]
        assert await tx.uploads.grant_of("zz") is None
        assert await tx.uploads.in_flight(["b1", "zz"]) == {"b1"}
        assert await tx.uploads.open_by("alice") == 2 and await tx.uploads.open_by("bob") == 0
        assert await tx.uploads.expired(70.0) == ["u2"]
        listing = await tx.uploads.all()
        assert [(u.id, blocks) for u, blocks in listing] == [("u1", 2), ("u2", 0)]
        assert listing[1][0].expires == 60.0
    async with store.write(durable=False) as tx:
        await tx.uploads.close("u1")
    async with store.read() as tx:
        assert await tx.uploads.get("u1") is None
        assert await tx.uploads.in_flight(["b1", "b2"]) == set()


async def test_the_generation_moves_only_with_writes_that_reshape(store: Store) -> None:
    async with store.read() as tx:
        before = await tx.generation()
    async with store.write() as tx:
        await tx.inodes.insert(new(ROOT, "plain"))
    async with store.read() as tx:
        assert await tx.generation() == before
    with pytest.raises(RuntimeError):
        async with store.write() as tx:
            await tx.reshaped()
            raise RuntimeError("rolled back: the shape did not change")
    async with store.read() as tx:
        assert await tx.generation() == before
    async with store.write() as tx:
        await tx.reshaped()
    async with store.read() as tx:
        assert await tx.generation() != before


async def test_pages_of_a_directory_and_its_tally(store: Store) -> None:
    async with store.write() as tx:
        d = await tx.inodes.insert(new(ROOT, "d", "d"))
        for name in "edcba":
            await tx.inodes.insert(new(d, name, size=10))
        await tx.inodes.insert(new(d, "sub", "d"))
        await tx.inodes.set_sha256(d + 1, "ab" * 32)
    async with store.read() as tx:
        names = [n.name for n in await tx.inodes.page(d, 2)]
        assert names == ["a", "b"]
        assert [n.name for n in await tx.inodes.page(d, 2, after="b")] == ["c", "d"]
        assert [n.name for n in await tx.inodes.page(d, 2, before="c")] == ["a", "b"]
        assert [n.name for n in await tx.inodes.page(d, 9, after="d")] == ["e", "sub"]
        assert await tx.inodes.beyond(d, "b", True) and not await tx.inodes.beyond(d, "a", False)
        assert await tx.inodes.tally(d) == {"f": (5, 50), "d": (1, 0)}
        assert await tx.inodes.sha256(d + 1) == "ab" * 32
        assert await tx.inodes.sha256(d + 2) is None


async def test_symbolic_links_keep_their_target(store: Store) -> None:
    """A third type, 'l', with its target as given (any text, never resolved)."""
    target = "../ünï/" + "x" * 4000
    async with store.write() as tx:
        d = await tx.inodes.insert(new(ROOT, "d", "d"))
        link = await tx.inodes.insert(new(d, "link", "l", target=target))
        await tx.inodes.insert(new(d, "dangling", "l", target="nowhere"))
        f = await tx.inodes.insert(new(d, "f"))
        with pytest.raises(AlreadyExists):
            await tx.inodes.insert(new(d, "link", "l", target="again"))
        await tx.inodes.rename(link, ROOT, "moved")
    async with store.read() as tx:
        got = await tx.inodes.get(link)
        assert got is not None and (got.type, got.target, got.is_dir) == ("l", target, False)
        assert await tx.inodes.child(ROOT, "moved") == got
        assert (await tx.inodes.get(f)) is not None and (await tx.inodes.get(f)).target is None  # type: ignore[union-attr]
        listed = {e[0]: e[-1] for e in await tx.inodes.entries(d)}
        assert listed == {"dangling": "nowhere", "f": None}
        assert [n.target for n in await tx.inodes.page(d, 1)] == ["nowhere"]
        assert [n.type for n in await tx.inodes.subtree(d)] == ["d", "l", "f"]
        assert (await tx.inodes.counts()) == {"d": 2, "f": 1, "l": 2}
        assert (await tx.inodes.tally(d))["l"] == (1, 0)
    async with store.write() as tx:
        await tx.inodes.delete([link])
    async with store.read() as tx:
        assert await tx.inodes.get(link) is None
        assert (await tx.inodes.counts()).get("l") == 1


async def test_a_store_awaits_no_restore_and_backs_up_or_says_how(
    store: Store, tmp_path: Path
) -> None:
    async with store.read() as tx:
        assert await tx.restore.state() is None
        assert await tx.restore.orphans() == (0, 0, 0, 0)
    dest = tmp_path / "copy"
    if store.url.startswith("sqlite:"):
        info = await store.backup(dest)
        assert info.size == dest.stat().st_size > 0 and len(info.sha256) == 64
    else:
        with pytest.raises(InvalidArgument, match="pg_dump"):
            await store.backup(dest)
        assert not dest.exists()


# --- requests applied once ----------------------------------------------------------------


async def write_as(store: Store, applying: Applying, name: str) -> None:
    """A change (an inode *name* under the root) made for the request *applying*."""
    token = APPLYING.set(applying)
    try:
        async with store.write() as tx:
            await tx.inodes.insert(new(ROOT, name))
    finally:
        APPLYING.reset(token)


async def test_a_write_records_the_request_it_applies_with_its_change(store: Store) -> None:
    first = Applying("alice", "a" * 32, "attempt1")
    await write_as(store, first, "f")
    assert first.recorded
    await write_as(store, first, "g")  # a later transaction of the same attempt: no new record
    async with store.read() as tx:
        prior = await tx.requests.applied("alice", "a" * 32)
        assert prior is not None and prior.attempt == "attempt1" and prior.status is None
        assert abs(prior.at - time.time()) < 60
        assert await tx.requests.applied("bob", "a" * 32) is None  # per user
    await store.answered("alice", "a" * 32, 200, b'{"ok": 1}')
    async with store.read() as tx:
        assert await tx.requests.applied("alice", "a" * 32) == (
            "attempt1",
            prior.at,
            200,
            b'{"ok": 1}',
        )


async def test_another_attempt_of_an_applied_request_applies_nothing(store: Store) -> None:
    await write_as(store, Applying("alice", "b" * 32, "attempt1"), "first")
    again = Applying("alice", "b" * 32, "attempt2")
    with pytest.raises(AppliedElsewhere):
        await write_as(store, again, "second")
    assert not again.recorded
    async with store.read() as tx:
        assert await tx.inodes.child(ROOT, "first") is not None
        assert await tx.inodes.child(ROOT, "second") is None  # rolled back with the refusal
        prior = await tx.requests.applied("alice", "b" * 32)
        assert prior is not None and prior.attempt == "attempt1"
    await write_as(store, Applying("bob", "b" * 32, "attempt3"), "bobs")  # another user's id


async def test_a_write_rolled_back_records_nothing(store: Store) -> None:
    applying = Applying("alice", "c" * 32, "attempt1")
    token = APPLYING.set(applying)
    try:
        with pytest.raises(AlreadyExists):
            async with store.write() as tx:
                await tx.inodes.insert(new(ROOT, "x"))
                await tx.inodes.insert(new(ROOT, "x"))
    finally:
        APPLYING.reset(token)
    assert not applying.recorded
    async with store.read() as tx:
        assert await tx.requests.applied("alice", "c" * 32) is None


async def test_old_requests_are_pruned_a_few_at_a_time(store: Store) -> None:
    for i in range(5):
        await write_as(store, Applying("alice", f"{i:032x}", "attempt"), f"f{i}")
    async with store.write() as tx:
        assert await tx.requests.prune(time.time() + 1, 3) == 3
    async with store.write() as tx:
        assert await tx.requests.prune(time.time() - 3600, 10) == 0  # none that old
        assert await tx.requests.prune(time.time() + 1, 10) == 2
    async with store.read() as tx:
        assert await tx.requests.applied("alice", f"{4:032x}") is None

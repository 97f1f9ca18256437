"""The SQLite store's backups: a consistent copy taken while writes go on, checked before it is
trusted, and installed in a stopped name node's place with nothing of the old one deleted."""

from __future__ import annotations

import asyncio
import hashlib
import sqlite3
import stat
from pathlib import Path

import pytest

from pydfs.errors import InvalidArgument
from pydfs.namenode.store.interface import Block, NewInode, UploadRow
from pydfs.namenode.store.sqlite import Store, backup

pytestmark = pytest.mark.asyncio

ROOT = 1


def _new(name: str) -> NewInode:
    return NewInode(ROOT, name, "f", "alice", "alice", 0o644, 1.0)


async def _store(path: Path) -> Store:
    store = Store(path)
    async with store.write() as tx:
        await tx.inodes.insert(NewInode(0, "", "d", "root", "root", 0o755, 0.0), inode_id=ROOT)
    return store


def _names(path: Path) -> set[str]:
    db = sqlite3.connect(path)
    try:
        return {n for (n,) in db.execute("SELECT name FROM inodes WHERE parent = 1")}
    finally:
        db.close()


async def test_a_backup_taken_while_writes_go_on_is_one_consistent_moment(tmp_path: Path) -> None:
    store = await _store(tmp_path / "ns.sqlite3")
    try:
        for i in range(200):
            async with store.write() as tx:
                await tx.inodes.insert(_new(f"before-{i}"))
        stop = asyncio.Event()

        async def writer() -> int:
            n = 0
            while not stop.is_set():
                async with store.write() as tx:  # a file and its block: both or neither
                    inode = await tx.inodes.insert(_new(f"during-{n}"))
                    await tx.blocks.add([Block(f"b{n:030d}", 10, 1)], 1.0)
                    await tx.blocks.attach(inode, [f"b{n:030d}"])
                n += 1
                await asyncio.sleep(0)
            return n

        task = asyncio.ensure_future(writer())
        await asyncio.sleep(0.05)
        info = await store.backup(tmp_path / "copy.sqlite3")
        stop.set()
        written = await task
    finally:
        store.close()
    copy = tmp_path / "copy.sqlite3"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not Path(f"{copy}-wal").exists()
    assert info.size == copy.stat().st_size
    assert info.sha256 == hashlib.sha256(copy.read_bytes()).hexdigest()
    checked = backup.check(copy)
    assert checked.schema == info.schema and checked.taken == info.taken
    names = _names(copy)
    assert {f"before-{i}" for i in range(200)} <= names
    during = {n for n in names if n.startswith("during-")}
    assert written > 0 and len(during) <= written  # the writer went on during the copy
    db = sqlite3.connect(copy)
    try:
        (unblocked,) = db.execute(
            "SELECT count(*) FROM inodes i WHERE name LIKE 'during-%' AND NOT EXISTS "
            "(SELECT 1 FROM file_blocks fb WHERE fb.inode = i.id)"
        ).fetchone()
    finally:
        db.close()
    assert unblocked == 0  # never half a transaction
    store = Store(copy)  # a name node started on it keeps the blocks it does not know
    try:
        async with store.read() as tx:
            assert await tx.restore.state() == (info.taken, info.taken)
    finally:
        store.close()


@pytest.mark.parametrize(
    ("content", "says"),
    [
        (b"", "not a pydfs metadata backup"),
        (b"hello, not a database" * 100, "not a pydfs metadata backup"),
    ],
)
async def test_check_refuses_what_is_not_a_backup(
    tmp_path: Path, content: bytes, says: str
) -> None:
    bad = tmp_path / "bad"
    bad.write_bytes(content)
    with pytest.raises(InvalidArgument, match=says):
        backup.check(bad)
    with pytest.raises(InvalidArgument, match="no backup file"):
        backup.check(tmp_path / "missing")


async def test_check_refuses_a_damaged_or_foreign_copy_or_a_newer_schema(tmp_path: Path) -> None:
    store = await _store(tmp_path / "ns.sqlite3")
    try:
        for i in range(300):
            async with store.write() as tx:
                await tx.inodes.insert(_new(f"name-{i:04d}-" + "x" * 100))
        await store.backup(tmp_path / "good")
    finally:
        store.close()
    good = (tmp_path / "good").read_bytes()
    truncated = tmp_path / "truncated"
    truncated.write_bytes(good[: len(good) // 2])
    with pytest.raises(InvalidArgument, match=r"damaged|not a pydfs"):
        backup.check(truncated)
    flipped = bytearray(good)
    page = 4096
    for start in range(page, len(good) - page, page):  # every b-tree page's header
        flipped[start : start + 8] = b"\xff" * 8
    (tmp_path / "flipped").write_bytes(bytes(flipped))
    with pytest.raises(InvalidArgument, match=r"damaged|not a pydfs"):
        backup.check(tmp_path / "flipped")

    foreign = tmp_path / "foreign"
    db = sqlite3.connect(foreign)
    db.execute("CREATE TABLE t (x)")
    db.execute("PRAGMA user_version=3")
    db.commit()
    db.close()
    with pytest.raises(InvalidArgument, match="not a pydfs metadata backup"):
        backup.check(foreign)

    newer = tmp_path / "newer"
    newer.write_bytes(good)
    db = sqlite3.connect(newer)
    db.execute("PRAGMA user_version=9999")
    db.commit()
    db.close()
    with pytest.raises(InvalidArgument, match="schema version 9999, newer than this pydfs"):
        backup.check(newer)


async def test_install_marks_the_copy_restored_and_keeps_the_old_database(
    tmp_path: Path,
) -> None:
    live = tmp_path / "ns.sqlite3"
    store = await _store(live)
    try:
        async with store.write() as tx:
            await tx.inodes.insert(_new("in-backup"))
            await tx.uploads.open(UploadRow("u1", "alice", "/x", 2, 1024, False, 1.0, 9e9))
            await tx.uploads.grant("u1", "g" * 32, ["dn-1"])
            await tx.blocks.trash([("dn-1", "t" * 32)])
        await store.backup(tmp_path / "copy")
        async with store.write() as tx:
            await tx.inodes.insert(_new("after-backup"))
    finally:
        store.close()
    store = Store(live)  # leave a -wal behind: the old database must keep it
    async with store.write() as tx:
        await tx.inodes.insert(_new("only-in-wal"))
    await store.flush()
    Path(f"{live}-wal").rename(tmp_path / "saved-wal")  # as a crash would leave it
    store.close()
    (tmp_path / "saved-wal").rename(f"{live}-wal")

    checked, aside = backup.install(tmp_path / "copy", live)

    assert checked.files == 1
    assert aside is not None and aside.parent == tmp_path
    assert _names(aside) == {"in-backup", "after-backup", "only-in-wal"}
    assert _names(live) == {"in-backup"}
    assert not Path(f"{live}-wal").exists() or Path(f"{live}-wal").stat().st_size == 0
    restored = Store(live)
    try:
        async with restored.read() as tx:
            state = await tx.restore.state()
            assert state is not None and state.taken == checked.taken
            assert state.restored >= (checked.taken or 0)
            assert await tx.uploads.all() == []  # leases of clients gone: their blocks are kept
            assert await tx.blocks.trashed_on("dn-1") == []  # every replica judged afresh
    finally:
        restored.close()


async def test_restore_state_keeps_unnamed_blocks_until_the_admin_finishes(
    tmp_path: Path,
) -> None:
    store = await _store(tmp_path / "ns.sqlite3")
    try:
        async with store.read() as tx:
            assert await tx.restore.state() is None
        with store.transaction() as db:
            db.execute("INSERT INTO provenance VALUES (1, 100.0, 200.0)")
        async with store.write() as tx:
            state = await tx.restore.state()
            assert state is not None and (state.taken, state.restored) == (100.0, 200.0)
            assert await tx.restore.keep("dn-1", {"a", "b", "c"}) == ["a", "b", "c"]
            assert await tx.restore.keep("dn-2", {"a"}) == ["a"]
            await tx.restore.measured("dn-1", "a", 10)
            await tx.restore.measured("dn-2", "a", 10)
            await tx.restore.measured("dn-1", "b", 5)
            # a later report no longer names c: it is gone from that node
            assert await tx.restore.keep("dn-1", {"a", "b"}) == []
            await tx.restore.measured("dn-3", "d", 7)  # verified before any report named it
            orphans = await tx.restore.orphans()
            assert orphans == (3, 4, 22, 0)
        async with store.write() as tx:
            assert await tx.restore.finish() == orphans
        async with store.read() as tx:
            assert await tx.restore.state() is None
            assert await tx.restore.orphans() == (0, 0, 0, 0)
    finally:
        store.close()


async def test_the_sqlite_store_keeps_only_the_latest_answers(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Answers of applied requests live in memory: a bounded number, the oldest going first
    (a million creates must not keep a million answers)."""
    from pydfs.namenode.store.sqlite import applied

    monkeypatch.setattr(applied, "MAX_ANSWERS", 3)
    store = Store(tmp_path / "ns.sqlite3")
    try:
        for i in range(5):
            await store.answered("alice", f"{i:032x}", 200, b"{}")
        assert sorted(k[1][-1] for k in store.answers) == ["2", "3", "4"]
    finally:
        store.close()


async def test_answers_older_than_a_prune_go_the_newer_stay(tmp_path: Path) -> None:
    store = Store(tmp_path / "ns.sqlite3")
    try:
        for i in range(6):
            await store.answered("alice", f"{i:032x}", 200, b"{}")
        for i, key in enumerate(list(store.answers)):  # answered at 100, 101, ... 105
            store.answers[key] = (100.0 + i, 200, b"{}")
        async with store.write() as tx:
            await tx.requests.prune(103.0, 10)
        assert [key[1][-1] for key in store.answers] == ["3", "4", "5"]
        await store.answered("alice", f"{6:032x}", 200, b"{}")  # now: the newest
        async with store.write() as tx:
            await tx.requests.prune(105.5, 10)
        assert [key[1][-1] for key in store.answers] == ["6"]
    finally:
        store.close()

"""Group commit: commits become durable by one shared fsync, and the name node answers a change
only once it is on disk."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from pathlib import Path

import pytest
import pytest_asyncio
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from tests.unit.namenode.store_faults import FailingStatements, gate_fsyncs

from pydfs.config import NameNodeConfig
from pydfs.errors import InternalError
from pydfs.namenode import NameNode, app, fastpath
from pydfs.namenode.store.sqlite import Store

pytestmark = pytest.mark.asyncio


def _write(store: Store, n: int) -> None:
    with store.transaction() as db:
        db.execute("INSERT INTO datanodes (id, url) VALUES (?, ?)", (f"dn-{n}", "http://x"))


async def test_flush_makes_every_earlier_commit_durable_with_one_fsync(tmp_path: Path) -> None:
    store = Store(tmp_path / "ns.sqlite3")
    try:
        base = store.fsyncs
        assert not store.dirty
        for n in range(5):
            _write(store, n)
        assert store.dirty
        await asyncio.gather(*(store.flush() for _ in range(10)))
        assert not store.dirty
        assert store.fsyncs - base == 1
        await store.flush()  # nothing new: no fsync
        assert store.fsyncs - base == 1
    finally:
        store.close()


async def test_a_commit_made_during_an_fsync_waits_for_the_next(tmp_path: Path) -> None:
    store = Store(tmp_path / "ns.sqlite3")
    started, release = gate_fsyncs(store)
    base = store.fsyncs
    try:
        _write(store, 1)
        first = asyncio.ensure_future(store.flush())
        await asyncio.to_thread(started.wait, 10)
        _write(store, 2)  # lands after the running fsync began: it does not cover this one
        second = asyncio.ensure_future(store.flush())
        await asyncio.sleep(0.05)
        assert not first.done() and not second.done()
        started.clear()
        release.set()
        await first
        await second
        assert not store.dirty
        assert store.fsyncs - base == 2
    finally:
        store.close()


@pytest_asyncio.fixture
async def namenode(tmp_path: Path) -> NameNode:
    return await NameNode.open(NameNodeConfig(data_dir=tmp_path / "nn"))


def _made(namenode: NameNode, name: str) -> bool:
    """Is there an inode named *name* (read from the database, as a crash would find it)?"""
    db = namenode.store.db  # type: ignore[attr-defined]
    return db.execute("SELECT 1 FROM inodes WHERE name = ?", (name,)).fetchone() is not None


async def test_a_change_is_not_acknowledged_before_its_fsync(namenode: NameNode) -> None:
    """A lone request fsyncs on the loop's thread: its answer still waits for that fsync."""
    synced: list[tuple[bool, bool]] = []
    real_sync = namenode.store.sync  # type: ignore[attr-defined]

    def recording_sync() -> None:
        on_loop = threading.current_thread() is threading.main_thread()
        synced.append((on_loop, _made(namenode, "d")))
        real_sync()

    namenode.store.sync = recording_sync  # type: ignore[attr-defined]
    token = (namenode.config.data_dir / "admin.token").read_text().strip()
    headers = {"Authorization": f"Bearer {token}"}
    async with TestClient(TestServer(app.build(namenode))) as client:
        resp = await client.post("/v1/fs/mkdir", json={"path": "/tmp/d"}, headers=headers)
        assert resp.status == 200
        assert not namenode.store.dirty, "answered before the commit was on disk"  # type: ignore[attr-defined]
        assert synced == [(True, True)]  # one fsync, inline, after the commit
    namenode.store.close()  # type: ignore[attr-defined]


async def test_a_change_on_the_fast_path_is_not_acknowledged_before_its_fsync(
    namenode: NameNode,
) -> None:
    """The same, through the front clients talk to (``namenode.fastpath``, not aiohttp's
    routes): the answer leaves only once the group fsync covers the commit."""
    synced: list[bool] = []
    real_sync = namenode.store.sync  # type: ignore[attr-defined]

    def recording_sync() -> None:
        synced.append(_made(namenode, "d"))
        real_sync()

    namenode.store.sync = recording_sync  # type: ignore[attr-defined]
    token = (namenode.config.data_dir / "admin.token").read_text().strip()
    application = app.build(namenode)
    runner = web.AppRunner(application)
    await runner.setup()
    assert runner.server is not None
    front = fastpath.Front(application, namenode, runner.server)
    listener = await asyncio.get_running_loop().create_server(front, "127.0.0.1", 0)
    try:
        port = listener.sockets[0].getsockname()[1]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        body = b'{"path": "/tmp/d"}'
        writer.write(
            b"POST /v1/fs/mkdir HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer %s\r\n"
            b"Content-Length: %d\r\n\r\n%s" % (token.encode(), len(body), body)
        )
        head = await reader.readuntil(b"\r\n\r\n")
        assert not namenode.store.dirty, "answered before the commit was on disk"  # type: ignore[attr-defined]
        assert synced == [True]
        assert head.startswith(b"HTTP/1.1 200") and b"Server:" not in head  # the fast path's
        writer.close()
    finally:
        listener.close()
        await front.shutdown()
        await runner.cleanup()
        namenode.store.close()  # type: ignore[attr-defined]


async def test_a_lone_flush_waits_for_a_running_fsync_instead_of_starting_one(
    tmp_path: Path,
) -> None:
    store = Store(tmp_path / "ns.sqlite3")
    started, gate = gate_fsyncs(store, threads_only=True)
    try:
        _write(store, 1)
        first = asyncio.ensure_future(store.flush())
        await asyncio.to_thread(started.wait, 10)
        _write(store, 2)
        second = asyncio.ensure_future(store.flush(alone=True))
        await asyncio.sleep(0.05)
        assert not second.done(), "a lone flush ran beside a running fsync"
        gate.set()
        await asyncio.gather(first, second)
        assert not store.dirty
    finally:
        gate.set()
        store.close()


async def test_after_a_crowded_fsync_a_lone_flush_still_uses_a_thread(tmp_path: Path) -> None:
    """Requests of other clients may be unread in their sockets: blocking the loop with an
    fsync would keep them out of the next group."""
    store = Store(tmp_path / "ns.sqlite3")
    threads: list[bool] = []
    real_sync = store.sync

    def recording_sync() -> None:
        threads.append(threading.current_thread() is threading.main_thread())
        real_sync()

    store.sync = recording_sync  # type: ignore[method-assign]
    try:
        _write(store, 1)
        await store.flush(alone=True)  # no crowd seen yet: inline
        _write(store, 2)
        _write(store, 3)
        await store.flush()  # one threaded fsync for two commits: a crowd
        _write(store, 4)
        await store.flush(alone=True)
        assert threads == [True, False, False]
        assert not store.dirty
    finally:
        store.close()


async def test_a_failed_commit_is_rolled_back_and_later_writes_go_on(tmp_path: Path) -> None:
    store = Store(tmp_path / "ns.sqlite3")
    real = store.db
    try:
        # COMMIT fails as SQLite's may while the transaction stays open
        failing = FailingStatements(real, {"COMMIT"}, "database is locked", times=1)
        store.db = failing  # type: ignore[assignment]
        with pytest.raises(sqlite3.OperationalError):
            _write(store, 1)
        assert not real.in_transaction
        assert not store.dirty  # nothing was committed
        _write(store, 2)  # would fail with "cannot start a transaction within a transaction"
        rows = real.execute("SELECT id FROM datanodes ORDER BY id").fetchall()
        assert rows == [("dn-2",)]
    finally:
        store.db = real
        store.close()


async def test_after_a_failed_fsync_nothing_is_served(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Linux may drop what a failed fsync could not write and report the next one good: no
    commit since the last good fsync can be trusted, so the store refuses everything."""
    store = Store(tmp_path / "ns.sqlite3")
    try:
        _write(store, 1)
        await store.flush()

        def failing(fd: int) -> None:
            raise OSError(5, "Input/output error")

        monkeypatch.setattr("os.fdatasync", failing)
        with pytest.raises(InternalError, match="restart the name node"):
            async with store.write() as tx:
                await tx.datanodes.put("dn-2", "http://x")
        monkeypatch.undo()  # the disk "recovers": the store still refuses
        for opening in (store.read, store.write):
            with pytest.raises(InternalError):
                async with opening():
                    pass
    finally:
        store.failed = None
        store.close()

"""Writes that come together share one SQLite transaction (a savepoint each), so that the
pages they touch are written once: each still stands or falls alone, and nothing of a batch
is answered before the batch is committed and durable."""

from __future__ import annotations

import asyncio
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest
from tests.unit.namenode.store_faults import FailingStatements, gate_fsyncs

from pydfs.errors import AlreadyExists, InternalError
from pydfs.namenode.store import interface
from pydfs.namenode.store.sqlite import Store

pytestmark = pytest.mark.asyncio


@contextmanager
def crowded(store: Store) -> Iterator[None]:
    """As under load: another caller is inside the store (waiting for its fsync, say), so
    writes that come now may be batched."""
    store._active += 1
    try:
        yield
    finally:
        store._active -= 1


async def _put(store: Store, n: int) -> None:
    async with store.write() as tx:
        await tx.datanodes.put(f"dn-{n}", "http://x")


def _stored(store: Store) -> list[str]:
    return [row[0] for row in store.db.execute("SELECT id FROM datanodes ORDER BY id")]


async def test_writes_that_come_together_share_one_commit(open_store: Callable[[], Store]) -> None:
    store = open_store()
    before = store._commits
    with crowded(store):
        await asyncio.gather(*(_put(store, n) for n in range(5)))
    assert store._commits - before == 1
    assert not store.dirty  # durable before any was answered
    assert _stored(store) == [f"dn-{n}" for n in range(5)]
    await _put(store, 9)  # alone: a transaction of its own, committed at once
    assert store._commits - before == 2 and store._batch is None


async def test_a_write_that_fails_in_a_batch_undoes_only_itself(
    open_store: Callable[[], Store],
) -> None:
    store = open_store()

    async def failing() -> None:
        async with store.write() as tx:
            await tx.datanodes.put("dn-x", "http://x")
            raise AlreadyExists("refused after a change")

    with crowded(store):
        results = await asyncio.gather(
            _put(store, 1), failing(), _put(store, 2), return_exceptions=True
        )
    assert results[0] is None and results[2] is None
    assert isinstance(results[1], AlreadyExists)
    assert _stored(store) == ["dn-1", "dn-2"]


async def test_a_failed_batch_fails_every_write_in_it_and_every_read_that_saw_it(
    open_store: Callable[[], Store],
) -> None:
    store = open_store()
    real = store.db
    seen: list[list[str]] = []

    async def read() -> None:
        async with store.read() as tx:
            seen.append([row.id for row in await tx.datanodes.all()])

    try:
        failing = FailingStatements(real, {"COMMIT"}, "database or disk is full", times=1)
        store.db = failing  # type: ignore[assignment]
        generation = store.generation
        with crowded(store):
            results = await asyncio.gather(
                _put(store, 1), _put(store, 2), read(), return_exceptions=True
            )
        assert seen == [["dn-1", "dn-2"]]  # the read saw the batch, uncommitted
        assert all(isinstance(r, InternalError) for r in results), results
        assert not real.in_transaction and store._batch is None
        assert store.generation > generation  # what walks cached from it is forgotten
        assert _stored(store) == []
        with crowded(store):
            await asyncio.gather(_put(store, 3), _put(store, 4))  # later writes go on
        assert _stored(store) == ["dn-3", "dn-4"]
    finally:
        store.db = real


async def test_a_write_that_sqlite_rolled_back_whole_fails_the_batch_it_was_in(
    open_store: Callable[[], Store],
) -> None:
    """SQLite may roll back a whole transaction on an error (a full disk, an I/O error): the
    writes that were in it before are gone, and must not be answered as done."""
    store = open_store()

    async def rolled_back() -> None:
        async with store.write() as tx:
            await tx.datanodes.put("dn-x", "http://x")
            store.db.execute("ROLLBACK")
            raise sqlite3.OperationalError("database or disk is full")

    with crowded(store):
        results = await asyncio.gather(
            _put(store, 1), rolled_back(), _put(store, 2), return_exceptions=True
        )
    assert isinstance(results[0], InternalError)
    assert isinstance(results[1], sqlite3.OperationalError | InternalError)
    assert results[2] is None  # came after: a batch of its own
    assert _stored(store) == ["dn-2"]


async def test_two_attempts_of_one_request_in_one_batch_apply_it_once(
    open_store: Callable[[], Store],
) -> None:
    store = open_store()

    async def attempt(attempt_id: str) -> str:
        applying = interface.Applying("alice", "0" * 32, attempt_id)
        token = interface.APPLYING.set(applying)
        try:
            async with store.write() as tx:
                await tx.datanodes.put(f"dn-{attempt_id}", "http://x")
        except interface.AppliedElsewhere:
            return "elsewhere"
        finally:
            interface.APPLYING.reset(token)
        assert applying.recorded
        return "applied"

    with crowded(store):
        results = await asyncio.gather(attempt("a"), attempt("b"))
    assert results == ["applied", "elsewhere"]
    assert _stored(store) == ["dn-a"]
    async with store.read() as tx:
        applied = await tx.requests.applied("alice", "0" * 32)
    assert applied is not None and applied.attempt == "a"


async def test_a_batch_commits_once_the_running_fsync_is_done_with_what_came_meanwhile(
    open_store: Callable[[], Store],
) -> None:
    """None of its writes could be durable before the next fsync: the batch stays open for
    those that come while one runs, and they share its commit."""
    store = open_store()
    try:
        async with store.write() as tx:
            await tx.datanodes.put("dn-0", "http://x")
        started, release = gate_fsyncs(store)
        store._grouped = 2  # the last fsync was a crowded one: the next goes to a thread
        before = store._commits
        with crowded(store):
            first = asyncio.ensure_future(_put(store, 1))
            await asyncio.to_thread(started.wait, 10)  # its fsync runs
            later = [asyncio.ensure_future(_put(store, n)) for n in (2, 3, 4)]
            for _ in range(5):
                await asyncio.sleep(0)
            assert store._commits - before == 1 and store._batch is not None
            release.set()
            await asyncio.gather(first, *later)
        assert store._commits - before == 2  # 2, 3 and 4 in one
        assert _stored(store) == [f"dn-{n}" for n in range(5)]
    finally:
        release.set()


async def _attempt(store: Store, user: str, attempt_id: str) -> str:
    """One attempt of request 0…0 by *user*, which adds node dn-*attempt_id*."""
    applying = interface.Applying(user, "0" * 32, attempt_id)
    token = interface.APPLYING.set(applying)
    try:
        async with store.write() as tx:
            await tx.datanodes.put(f"dn-{attempt_id}", "http://x")
        return "applied"
    except Exception as exc:
        return type(exc).__name__
    finally:
        interface.APPLYING.reset(token)


@pytest.mark.parametrize("batched", [True, False])
async def test_a_write_whose_request_record_fails_is_undone_so_a_retry_applies_it_once(
    open_store: Callable[[], Store], batched: bool
) -> None:
    """The record of a request failed (SQLite undid that statement alone, as it may on a full
    disk): the write it records must not stand, or the client's retry applies it twice."""
    store = open_store()
    refuse = [True]

    def authorizer(action: int, table: str | None, *_: object) -> int:
        if refuse[0] and action == sqlite3.SQLITE_INSERT and table == "applied":
            refuse[0] = False
            return sqlite3.SQLITE_DENY
        return sqlite3.SQLITE_OK

    store.db.set_authorizer(authorizer)
    if batched:
        with crowded(store):
            first = await asyncio.gather(_attempt(store, "alice", "a"), _put(store, 1))
        assert first == ["DatabaseError", None]
    else:
        assert await _attempt(store, "alice", "a") == "DatabaseError"
        assert not store.db.in_transaction
    assert "dn-a" not in _stored(store)
    assert await _attempt(store, "alice", "b") == "applied"  # the client's retry
    assert [n for n in _stored(store) if n != "dn-1"] == ["dn-b"]


async def test_a_write_whose_request_record_rolled_back_the_batch_fails_it(
    open_store: Callable[[], Store],
) -> None:
    """The disk fills as a request's record is written and SQLite rolls back the whole batch:
    the writes before it fail, and those after it start a transaction of their own rather
    than one SQLite has already ended (whose writes would be committed unseen, unsynced)."""
    store = open_store()
    user = "u" * 6000  # its record needs new pages

    async def fill_then_attempt() -> str:
        (pages,) = store.db.execute("PRAGMA page_count").fetchone()
        store.db.execute(f"PRAGMA max_page_count={pages + 1}")
        return await _attempt(store, user, "a")

    with crowded(store):
        results = await asyncio.gather(
            _put(store, 1), fill_then_attempt(), _put(store, 2), return_exceptions=True
        )
    store.db.execute("PRAGMA max_page_count=1073741823")
    assert isinstance(results[0], InternalError)
    assert results[1] in ("InternalError", "OperationalError")
    assert store._batch is None and not store.db.in_transaction
    assert "dn-1" not in _stored(store) and "dn-a" not in _stored(store)
    assert results[2] is None and "dn-2" in _stored(store) and not store.dirty


async def test_bursts_of_writes_share_their_fsyncs(open_store: Callable[[], Store]) -> None:
    """Requests read together make a burst of writes: batched into one commit, they must still
    be seen as a crowd, whose next flush goes to a worker thread and gathers the next burst
    rather than an fsync each on the event loop."""
    store = open_store()
    real_sync = store.sync

    def slow_sync() -> None:
        threading.Event().wait(0.002)
        real_sync()

    store.sync = slow_sync  # type: ignore[method-assign]
    try:
        for burst in range(3):  # settle
            await asyncio.gather(*(_put(store, 1000 + 100 * burst + n) for n in range(20)))
        before = store.fsyncs
        for burst in range(20):
            await asyncio.gather(*(_put(store, 100 * burst + n) for n in range(20)))
        assert store.fsyncs - before <= 3 * 20  # an fsync per write would be 400
    finally:
        store.sync = real_sync  # type: ignore[method-assign]


async def test_a_failed_write_that_cannot_be_rolled_back_makes_the_store_refuse_everything(
    open_store: Callable[[], Store],
) -> None:
    """Left open, its transaction would be read as if it stood: nothing is served again."""
    store = open_store()
    real = store.db
    try:
        # the log cannot be read back: COMMIT and ROLLBACK both fail
        broken = FailingStatements(real, {"COMMIT", "ROLLBACK"}, "disk I/O error", times=None)
        store.db = broken  # type: ignore[assignment]
        with crowded(store):
            results = await asyncio.gather(_put(store, 1), _put(store, 2), return_exceptions=True)
        assert all(isinstance(r, InternalError) for r in results), results
        for opening in (store.read, store.write):
            with pytest.raises(InternalError, match="restart the name node"):
                async with opening():
                    pass
    finally:
        store.db = real
        store.failed = None


async def test_writes_made_alone_fsync_on_the_loop_but_one_in_sixteen(
    open_store: Callable[[], Store],
) -> None:
    """(A thread costs more than the fsync it moves when nobody else is waiting.)"""
    store = open_store()
    threaded = 0
    real_fsync = store._fsync

    async def counting() -> None:
        nonlocal threaded
        threaded += 1
        await real_fsync()

    store._fsync = counting  # type: ignore[method-assign]
    for n in range(64):
        await _put(store, n)
    assert not store.dirty and threaded <= 64 // 16 + 1

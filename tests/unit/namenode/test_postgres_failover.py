"""The PostgreSQL store across a failover: a broken connection or a server turned standby is a
retryable ``Unavailable`` (never another error), the pool reconnects to whichever server takes
writes, a first server that never answers does not hold the others back, and a store opened
while its server is down waits for it. Each test has a server of its own, which it stops."""

from __future__ import annotations

import asyncio
import contextlib
import socket
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import asyncpg
import pytest
import pytest_asyncio

from pydfs.errors import Unavailable
from pydfs.local_postgres import Postgres
from pydfs.namenode.store import Store, open_store
from pydfs.namenode.store import postgres as pgstore
from pydfs.namenode.store.interface import (
    APPLYING,
    AppliedElsewhere,
    Applying,
    NewInode,
    UploadRow,
)

pytestmark = pytest.mark.asyncio

ROOT = 1


@pytest.fixture
def server(postgres_bin: Path) -> Iterator[Postgres]:
    with Postgres(postgres_bin) as pg:
        yield pg


@pytest_asyncio.fixture
async def store(server: Postgres) -> AsyncIterator[Store]:
    store = open_store(server.database("pydfs") + "?target_session_attrs=read-write")
    await _root(store)
    yield store
    await store.aclose()


def _down(server: Postgres, mode: str) -> None:
    """Stop the server, keeping its files and port for a later ``start(port)``."""
    server._run(str(server.bin / "pg_ctl"), "stop", "-m", mode, "-D", str(server.data))


async def _root(store: Store) -> None:
    async with store.write() as tx:
        await tx.inodes.insert(NewInode(0, "", "d", "root", "root", 0o755, 0.0), inode_id=ROOT)


async def _mkdir(store: Store, name: str) -> None:
    async with store.write() as tx:
        await tx.inodes.insert(NewInode(ROOT, name, "d", "root", "root", 0o755, 0.0))


async def _names(store: Store) -> set[str]:
    async with store.read() as tx:
        return {row[0] for row in await tx.inodes.entries(ROOT)}


async def test_a_server_that_restarts_fails_requests_with_unavailable_then_serves(
    server: Postgres, store: Store
) -> None:
    await _mkdir(store, "before")
    assert store.lost == 0
    port = server.port
    with pytest.raises(Unavailable):
        async with store.write() as tx:
            await tx.inodes.insert(NewInode(ROOT, "cut", "d", "root", "root", 0o755, 0.0))
            _down(server, "immediate")  # as in a crash, in the middle of a transaction
            await tx.inodes.insert(NewInode(ROOT, "short", "d", "root", "root", 0o755, 0.0))
    with pytest.raises(Unavailable):
        await _mkdir(store, "during")  # the pooled connection is broken
    with pytest.raises(Unavailable):
        await _mkdir(store, "during")  # and no new one can be made
    server.start(port)
    await _mkdir(store, "after")
    assert await _names(store) == {"before", "after"}
    assert store.lost >= 1  # the pooled connection the crash broke (/metrics tells of it)


async def test_a_server_turned_read_only_is_unavailable_until_writable_again(
    server: Postgres, store: Store
) -> None:
    await _mkdir(store, "before")
    server.sql("ALTER SYSTEM SET default_transaction_read_only = on")
    server.sql("SELECT pg_reload_conf()")
    await asyncio.sleep(0.2)  # the reload reaches the pooled connection
    with pytest.raises(Unavailable):
        await _mkdir(store, "refused")  # a connection to what is now a standby, as it were
    with pytest.raises(Unavailable):
        await _mkdir(store, "refused")  # a new one: no server takes writes
    server.sql("ALTER SYSTEM RESET default_transaction_read_only")
    server.sql("SELECT pg_reload_conf()")
    await _mkdir(store, "after")
    assert await _names(store) == {"before", "after"}


async def test_a_first_server_that_never_answers_does_not_hold_back_the_next(
    server: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgstore, "CONNECT_TIMEOUT", 0.5)
    with socket.socket() as silent:  # takes connections (the kernel does), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(16)
        dead = f"127.0.0.1:{silent.getsockname()[1]}"
        url = server.database("pydfs").replace("127.0.0.1:", f"{dead},127.0.0.1:", 1)
        store = open_store(url + "?target_session_attrs=read-write")
        try:
            await asyncio.wait_for(_root(store), 15)
            await asyncio.wait_for(_mkdir(store, "d"), 15)
            assert await _names(store) == {"d"}
        finally:
            await store.aclose()


async def test_a_store_opened_before_its_server_waits_for_it(
    server: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = server.database("pydfs")
    port = server.port
    _down(server, "fast")
    store = open_store(url)
    try:
        first = asyncio.create_task(_root(store))
        await asyncio.sleep(1.5)
        assert not first.done()  # waiting, not failed
        await asyncio.to_thread(server.start, port)
        await asyncio.wait_for(first, 15)
        await _mkdir(store, "d")
        assert await _names(store) == {"d"}
    finally:
        await store.aclose()


async def test_a_store_gives_up_after_its_wait(
    server: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(pgstore, "OPEN_WAIT", 0.5)
    url = server.database("pydfs")
    server.stop()
    store = open_store(url)
    with pytest.raises(Unavailable, match="metadata store unreachable"):
        await _root(store)
    await store.aclose()


async def test_a_connection_lost_at_the_commit_is_unavailable_and_the_next_write_goes_on(
    store: Store, server: Postgres
) -> None:
    """The server ends the session while its COMMIT is under way (its primary died, say): the
    write fails as retryable ``Unavailable`` (whether it applied is unknown), never as another
    error, and the next one is served on a fresh connection."""
    with pytest.raises(Unavailable):
        async with store.write() as tx:
            await tx.inodes.insert(NewInode(ROOT, "lost", "d", "root", "root", 0o755, 0.0))
            pid = (await tx.session.fetch("SELECT pg_backend_pid()"))[0][0]  # type: ignore[attr-defined]
            server.sql(f"SELECT pg_terminate_backend({pid})", "pydfs")
    await _mkdir(store, "after")
    assert "after" in await _names(store)


async def test_an_upload_lease_survives_a_crash_right_after_it_is_granted(
    server: Postgres, store: Store
) -> None:
    """A lease (soft state, ``write(durable=False)``) is flushed before it is answered: a
    failover to a standby carries only what the primary flushed, and a lease lost so fails
    the write its client goes on with. The WAL writer is made slow, so that an unflushed
    commit would still be in the server's memory at the crash."""
    server.sql("ALTER SYSTEM SET wal_writer_delay = '10s'")
    server.sql("SELECT pg_reload_conf()")
    await _mkdir(store, "before")
    port = server.port
    async with store.write(durable=False) as tx:
        await tx.uploads.open(UploadRow("u1", "alice", "/f", 2, 4096, False, 10.0, 1e12))
        await tx.uploads.grant("u1", "b1", ["n1", "n2"])
    _down(server, "immediate")  # as in a crash of the primary's machine
    server.start(port)
    with pytest.raises(Unavailable):
        await _names(store)  # the pooled connection broke with the server
    async with store.read() as tx:
        assert await tx.uploads.get("u1") is not None
        assert await tx.uploads.granted("u1") == {"b1": ["n1", "n2"]}


async def test_a_server_lost_just_after_a_commit_leaves_the_write_done(
    server: Postgres, store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The directory times are set after the commit, in a transaction of their own: a server
    lost between the two leaves the change committed and its caller answered (it failed with
    an internal error though its change was made)."""
    port = server.port
    commit = pgstore.Session.commit

    async def commit_then_crash(self: pgstore.Session, suffix: str = "") -> None:
        await commit(self, suffix)
        _down(server, "immediate")

    monkeypatch.setattr(pgstore.Session, "commit", commit_then_crash)
    async with store.write() as tx:
        await tx.inodes.insert(NewInode(ROOT, "made", "d", "root", "root", 0o755, 0.0))
        tx.changed([ROOT], 5.0)  # a directory time to set after the commit
    monkeypatch.undo()
    server.start(port)
    for _ in range(3):  # the pool may still hand out the connection the crash broke
        with contextlib.suppress(Unavailable):
            assert await _names(store) == {"made"}
            return
    raise AssertionError("the store did not reconnect")


async def _write_for(store: Store, applying: Applying, name: str) -> None:
    token = APPLYING.set(applying)
    try:
        async with store.write() as tx:
            await tx.inodes.insert(NewInode(ROOT, name, "d", "root", "root", 0o755, 0.0))
    finally:
        APPLYING.reset(token)


async def test_a_commit_cut_short_is_known_applied_by_its_request_record(
    store: Store, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A COMMIT whose connection breaks may or may not have been applied; a request's record,
    committed with its change, tells which: applied, the write returns as done (its request
    then gets its answer, not ``AnswerLost`` at the retry); not applied, ``Unavailable``."""
    commit = pgstore.Session.commit
    cuts: list[str] = []  # the next commit's fate: "after" it applied, or "before"

    async def cutting(self: pgstore.Session, suffix: str = "") -> None:
        fate = cuts.pop(0) if cuts else None
        if fate == "after":
            await commit(self, suffix)
        if fate is not None:
            self._drop()  # "before": the server never saw the COMMIT
            raise Unavailable("metadata store unreachable (commit: whether it was applied ...)")
        await commit(self, suffix)

    monkeypatch.setattr(pgstore.Session, "commit", cutting)
    applying = Applying("alice", "a" * 32, "first")
    cuts.append("after")
    await _write_for(store, applying, "made")
    assert applying.recorded
    cuts.append("before")
    with pytest.raises(Unavailable):
        await _write_for(store, Applying("alice", "b" * 32, "first"), "never")
    cuts.append("before")
    with pytest.raises(AppliedElsewhere):  # a record, by another attempt: not this one's
        await _write_for(store, Applying("alice", "a" * 32, "second"), "again")
    cuts.append("before")
    with pytest.raises(Unavailable):  # a change without a request id cannot be told
        await _mkdir(store, "unknown")
    monkeypatch.undo()
    for _ in range(3):  # the pool may still hand out a connection dropped above
        with contextlib.suppress(Unavailable):
            assert await _names(store) == {"made"}
            return
    raise AssertionError("the store did not reconnect")


class _LeftMidProtocol:
    """A connection whose server died as it sent an error: asyncpg refuses every statement."""

    def __init__(self) -> None:
        self.terminated = False

    async def fetch(self, *args: object) -> list[object]:
        raise asyncpg.InternalClientError(
            "cannot switch to state 12; another operation (2) is in progress"
        )

    def terminate(self) -> None:
        self.terminated = True


async def test_a_connection_left_mid_protocol_is_unavailable_and_dropped(store: Store) -> None:
    """Seen when a Patroni primary was killed: a 500 before, now a retryable 503."""
    conn = _LeftMidProtocol()
    session = pgstore.Session(conn, None, store)  # type: ignore[arg-type]
    with pytest.raises(Unavailable):
        await session.fetch("SELECT 1")
    assert conn.terminated and session.broken


async def test_commits_cut_short_all_at_once_are_resolved_without_starving_the_pool(
    server: Postgres, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As many writes as the pool has connections, each COMMIT cut after it applied (a
    failover in the middle of a busy moment): each is resolved, none waits for a connection
    another resolution holds."""
    monkeypatch.setattr(pgstore, "POOL_SIZE", 2)
    store = open_store(server.database("crowd"))
    await _root(store)
    commit = pgstore.Session.commit

    async def cut_after_applying(self: pgstore.Session, suffix: str = "") -> None:
        await commit(self, suffix)
        if "INSERT INTO applied" in suffix:  # a request's write, not a resolution's lookup
            self._drop()
            raise Unavailable("metadata store unreachable (commit: whether it was applied ...)")

    monkeypatch.setattr(pgstore.Session, "commit", cut_after_applying)
    try:
        writes = [
            _write_for(store, Applying("alice", f"{i:032x}", "first"), f"d{i}") for i in range(4)
        ]
        await asyncio.wait_for(asyncio.gather(*writes), 20)
        monkeypatch.undo()
        assert await _names(store) == {f"d{i}" for i in range(4)}
    finally:
        await store.aclose()

"""The default metadata store: one SQLite database in WAL mode, with group commit.

Every change runs in one ``BEGIN IMMEDIATE`` transaction (``write()``). Commits do not fsync
one by one (``synchronous=NORMAL``): ``await flush()`` fsyncs the write-ahead log once for
every commit made so far, in a worker thread, so many clients' changes share one fsync while the
event loop goes on serving. ``write()`` returns once its commit is flushed, and ``read()`` once
every commit it may have seen is (a commit is visible here before it is durable), so that an
acknowledged change survives a crash of the process or of the machine, and nothing is
acknowledged that a crash could take back. Checkpoints fsync on their own. Schema migrations are
the numbered files in ``migrations/``; the version applied is kept in ``PRAGMA user_version``.

Writes that come while others are at work share one transaction, each in a savepoint of its own
(``_Batch``): it commits at the end of the event loop's turn, or once the fsync running then is
done (none of its writes could be durable sooner, and those that come meanwhile join it), so that
the pages they touch (a directory's, the record of requests applied) are written to the log once
for all of them. A write that fails is rolled back to its savepoint alone; a batch whose commit
fails fails every write in it, and every read that saw it (a read made while a batch is open
waits for its commit). A write made alone has a transaction of its own, committed at once.

The connection is used from the event loop's thread only, by one transaction at a time (an
``asyncio.Lock``; the repositories never suspend, so only a batch's commit waits on it). One process
owns the file (the name node locks its data directory), so the tree's generation is a counter
in memory.

How many files, directories, links and blocks there are (for ``/metrics``) is kept in a TEMP
table by TEMP triggers, transactional as any table but never in the write-ahead log, and
stored in the database as the store closes (migration 0012).

The database holds every name and every token's hash: it is made 0600 (SQLite gives its ``-wal``
and ``-shm`` files the database's mode), and a database from before is tightened to 0600 at open.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import sqlite3
import time
import unicodedata
from collections import OrderedDict
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pydfs.errors import InternalError
from pydfs.namenode.store import interface, migrations
from pydfs.namenode.store.sqlite import applied, backup, leader, tables

log = logging.getLogger("pydfs.namenode")


class Tx:
    """A transaction's view: the repositories over the store's connection (one, reused:
    transactions take turns)."""

    def __init__(self, store: Store) -> None:
        db = store.db
        self._store = store
        self.inodes: interface.Inodes = tables.Inodes(db)
        self.blocks: interface.BlockMap = tables.BlockMap(db)
        self.users: interface.Users = tables.Users(db)
        self.datanodes: interface.DataNodes = tables.DataNodes(db)
        self.uploads: interface.Uploads = tables.Uploads(db)
        self.leader: interface.Leader = leader.Leader(db)
        self.restore: interface.Restore = tables.Restore(db)
        self.requests: interface.Requests = applied.Requests(db, store.answers)
        self.reshaping = False

    async def generation(self) -> int:
        return self._store.generation

    async def reshaped(self) -> None:
        self.reshaping = True


class _Reading:
    """``Store.read()``: a class, not a generator, as it wraps every request."""

    __slots__ = ("store",)

    def __init__(self, store: Store) -> None:
        self.store = store

    async def __aenter__(self) -> Tx:
        await self.store._take_turn()
        return self.store._tx

    async def __aexit__(self, *exc: object) -> None:
        store = self.store
        store._lock.release()
        batch = store._batch
        if batch is not None or store.dirty:
            await store._settle(batch)  # what it read may not be committed yet
        else:  # _settle, one coroutine less
            store._active -= 1


class _Batch:
    """Writes that share one SQLite transaction, each in a savepoint of its own: they came
    while others' were being made durable, and commit together at the end of the event loop's
    turn (``Store._commit_batch``), writing the pages they share once."""

    __slots__ = ("committer", "done", "writes")

    def __init__(self) -> None:
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self.writes = 0  # durable ones
        self.committer: asyncio.Task[None] | None = None


class _Writing:
    __slots__ = ("batch", "durable", "store")

    def __init__(self, store: Store, durable: bool) -> None:
        self.store = store
        self.durable = durable
        self.batch: _Batch | None = None

    async def __aenter__(self) -> Tx:
        store = self.store
        await store._take_turn()
        try:
            self.batch = store._begin_write()
        except BaseException:
            store._lock.release()
            await store._settle(None)
            raise
        store._tx.reshaping = False
        return store._tx

    async def __aexit__(self, kind: type[BaseException] | None, *exc: object) -> None:
        store, batch = self.store, self.batch
        request = interface.pending() if kind is None else None
        try:
            if kind is not None:
                store._rollback_write(batch)
            else:
                try:
                    if request is not None:  # AppliedElsewhere if another attempt did
                        applied.record(store.db, request)
                    if batch is None:
                        store._commit(self.durable)
                        store._writes += self.durable
                    else:
                        store.db.execute("RELEASE write")
                        batch.writes += self.durable
                except BaseException:
                    # Nothing of a write whose record or commit failed may stand: the
                    # record keeps a retry from applying it again.
                    store._rollback_write(batch)
                    raise
                if store._tx.reshaping:
                    store.generation += 1
        finally:
            store._lock.release()
            await store._settle(batch)
        if request is not None:
            request.recorded = True


class Store:
    """One SQLite file, owned by this process."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.url = f"sqlite://{path.resolve()}"  # as store.sqlite_url
        self.shared = False
        self.lost = 0  # in-process: no connection to lose
        self.generation = 0
        self.answers: applied.Answers = OrderedDict()
        self._lock = asyncio.Lock()
        self._active = 0  # callers inside read() or write(), durability waits included
        self._batch: _Batch | None = None  # the writes of the open transaction, if batched
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, 0o600))
        for suffix in ("", "-wal", "-shm", "-journal"):
            with contextlib.suppress(FileNotFoundError):
                os.chmod(f"{path}{suffix}", 0o600)
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")  # flush() makes commits durable
        self._commits = 0  # commits made
        self._needed = 0  # the last of them that must be durable (not soft state)
        self._synced = 0  # commits known durable
        self._flushing: asyncio.Future[None] | None = None
        self._fsync_counted = False  # has the running fsync counted the commits it covers?
        self._writes = 0  # durable writes committed (a batch's, each)
        self._writes_synced = 0  # of them, when the last threaded fsync began
        self._grouped = 0  # writes the last threaded fsync covered
        self._lone = 0  # lone flushes so far
        self._wal_fd: int | None = None
        self.fsyncs = 0
        self.failed: InternalError | None = None  # an fsync failed: nothing is served again
        self.db.execute("PRAGMA foreign_keys=OFF")
        self.db.execute("PRAGMA cache_size=-65536")
        self.db.create_function("nfc", 1, _nfc, deterministic=True)  # for migrations
        migrated = self._migrate()
        self._open_census(recount=migrated)
        self._tx = Tx(self)
        if self.dirty:  # a schema change is durable before anything is served
            self.sync()
            self._synced, self._writes_synced = self._commits, self._writes

    def _migrate(self) -> bool:
        """Apply the pending migrations; whether there were any."""
        (current,) = self.db.execute("PRAGMA user_version").fetchone()
        pending = migrations.pending(__package__, current)
        for version, sql in pending:
            with self.transaction() as db:
                for statement in _statements(sql):
                    db.execute(statement)
                db.execute(f"PRAGMA user_version={version}")
        return bool(pending)

    def _open_census(self, *, recount: bool = False) -> None:
        """The census in a TEMP table (it shadows the stored one), from the stored counts if
        the store was closed since they were, else (or after a migration, which the census's
        triggers did not see: *recount*) counted again; the store marked open."""
        db = self.db
        db.execute(
            "CREATE TEMP TABLE census (kind TEXT PRIMARY KEY, n INTEGER NOT NULL) WITHOUT ROWID"
        )
        with self.transaction() as db:
            stored = dict(db.execute("SELECT kind, n FROM main.census"))
            counts = {kind: 0 for kind in ("f", "d", "l", "b")}
            if recount or stored.get("open", 1):
                counts.update(db.execute("SELECT type, count(*) FROM inodes GROUP BY type"))
                (counts["b"],) = db.execute("SELECT count(*) FROM blocks").fetchone()
            else:
                counts.update((kind, stored.get(kind, 0)) for kind in counts)
            db.executemany("INSERT INTO temp.census VALUES (?, ?)", counts.items())
            db.execute("INSERT OR REPLACE INTO main.census VALUES ('open', 1)")
        for table, change in (("inodes", "type"), ("blocks", "'b'")):
            for event, row, step in (("INSERT", "NEW", "+"), ("DELETE", "OLD", "-")):
                kind = change.replace("type", f"{row}.type")
                db.execute(
                    f"CREATE TEMP TRIGGER census_{table}_{event.lower()} "
                    f"AFTER {event} ON main.{table} BEGIN "
                    f"UPDATE census SET n = n {step} 1 WHERE kind = {kind}; END"  # temp.census
                )

    def _close_census(self) -> None:
        """Store the census, and the store as closed (if it can be: not failed, no write in
        the middle); else it is counted again at the next open."""
        try:
            if self.failed is not None or self.db.in_transaction:
                return
        except sqlite3.ProgrammingError:  # closed already
            return
        try:
            with self.transaction() as db:
                db.execute("INSERT OR REPLACE INTO main.census SELECT kind, n FROM temp.census")
                db.execute("UPDATE main.census SET n = 0 WHERE kind = 'open'")
        except sqlite3.Error as exc:
            log.warning("the census could not be stored (%s): it is counted at the next open", exc)

    async def _take_turn(self) -> None:
        """The start of a read or write: counted among the active, and holding the lock."""
        if self.failed is not None:
            raise self.failed
        self._active += 1
        try:
            await self._lock.acquire()
        except BaseException:
            self._active -= 1
            raise

    def read(self) -> _Reading:
        return _Reading(self)

    async def answered(self, user: str, request_id: str, status: int, body: bytes) -> None:
        answers = self.answers
        answers[user, request_id] = (time.time(), status, body)
        if len(answers) > applied.MAX_ANSWERS:  # the oldest goes: its retry is told AnswerLost
            answers.popitem(last=False)

    def write(self, *, durable: bool = True) -> _Writing:
        return _Writing(self, durable)

    async def _settle(self, batch: _Batch | None) -> None:
        """The end of a read or write, failed ones too: what it made or may have seen (an
        answer, or an error such as "exists", can tell of it) is committed (*batch*, the one
        it read or wrote in) and made durable first."""
        try:
            if batch is not None:
                await asyncio.shield(batch.done)  # raises if the batch's commit failed
            if self.dirty:
                await self.flush(alone=self._active == 1)
        finally:
            self._active -= 1

    def _begin_write(self) -> _Batch | None:
        """Begin a write: its own transaction if it is alone, else one in a batch (joined, or
        opened to commit at the end of this turn of the event loop)."""
        batch = self._batch
        if batch is not None and not self.db.in_transaction:  # SQLite rolled it back
            self._fail_batch(batch, InternalError("the metadata store rolled back a write"))
            batch = None
        if batch is None and self._active > 1:  # others are at work: their writes may join
            self._begin()
            batch = self._batch = _Batch()
            batch.committer = asyncio.get_running_loop().create_task(self._commit_batch(batch))
        elif batch is None:
            self._begin()
            return None
        try:
            self.db.execute("SAVEPOINT write")
        except BaseException:
            self._fail_batch(batch, InternalError("the metadata store could not begin a write"))
            raise
        return batch

    def _rollback_write(self, batch: _Batch | None) -> None:
        """Undo this write: its transaction if it is alone; in *batch*, its savepoint alone,
        unless SQLite undid the whole transaction (it may, on a full disk or an I/O error):
        then the batch fails."""
        if batch is None:
            self._rollback()
            return
        try:
            if self.db.in_transaction:
                self.db.execute("ROLLBACK TO write")
                self.db.execute("RELEASE write")
                return
        except sqlite3.Error as exc:
            self._fail_batch(batch, InternalError(f"the metadata store failed a write: {exc}"))
            raise
        self._fail_batch(batch, InternalError("the metadata store rolled back a write"))

    async def _commit_batch(self, batch: _Batch) -> None:
        """Commit *batch* once the writes that came in this turn of the event loop joined it,
        or, while an fsync runs, once it is done: none of them could be durable sooner, and
        those that come meanwhile join. (An fsync about to start, not yet counting the commits
        it covers, is not waited for: the batch commits before it counts.)"""
        flushing = self._flushing
        if flushing is not None and self._fsync_counted:
            await asyncio.wait([flushing])
        await self._lock.acquire()
        try:
            if self._batch is batch:  # else failed meanwhile
                self._end_batch(batch)
        finally:
            self._lock.release()

    def _end_batch(self, batch: _Batch) -> None:
        """Commit the open *batch*, or fail it if its commit fails."""
        self._batch = None
        try:
            self._commit(batch.writes > 0)
        except Exception as exc:
            # Its writers are told; a ROLLBACK that fails too makes the store refuse from now on.
            with contextlib.suppress(sqlite3.Error):
                self._fail_batch(batch, InternalError(f"the metadata store failed a commit: {exc}"))
            return
        self._writes += batch.writes
        batch.done.set_result(None)

    def _fail_batch(self, batch: _Batch, exc: InternalError) -> None:
        """Every write of *batch* fails, and every read that saw it: rolled back, the tree
        they read may have changed (the directory cache starts again)."""
        if self._batch is batch:
            self._batch = None
        self.generation += 1
        try:
            self._rollback()
        finally:
            if not batch.done.done():
                batch.done.set_exception(exc)
                batch.done.exception()  # retrieved: nobody may be waiting

    @contextmanager
    def transaction(self, *, durable: bool = True) -> Iterator[sqlite3.Connection]:
        """One atomic transaction, made durable by the next ``flush`` (migrations, tests)."""
        self._begin()
        try:
            yield self.db
        except BaseException:
            self._rollback()
            raise
        self._commit(durable)
        self._writes += durable

    def _begin(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def _commit(self, durable: bool) -> None:
        try:
            self.db.execute("COMMIT")
        except BaseException:
            self._rollback()
            raise
        self._commits += 1
        if durable:
            self._needed = self._commits

    def _rollback(self) -> None:
        # Also after a failed COMMIT (busy, disk full), which may leave the transaction open:
        # every later write would fail to begin.
        if self.db.in_transaction:
            try:
                self.db.execute("ROLLBACK")
            except sqlite3.Error as exc:
                # Left open, the transaction's failed writes would be read as if they stood.
                self.failed = InternalError(
                    f"the metadata store could not roll back a failed write ({exc}): "
                    "restart the name node"
                )
                log.critical("ROLLBACK failed: %s; refusing every request", exc)
                raise

    @property
    def dirty(self) -> bool:
        """Are there commits that must be durable and are not known to be yet?"""
        return self._needed > self._synced

    async def flush(self, *, alone: bool = False) -> None:
        """Return once every commit made before the call is on disk. Callers that arrive while
        an fsync runs wait for the next one, which then covers them all (group commit).

        A caller that knows nobody else is waiting (*alone*) fsyncs on the event loop's own
        thread, where the hand-off to a worker thread (about 250 µs here) would cost more than
        the fsync it moves, unless the last threaded fsync covered several writes: other
        clients' requests may then be unread in their sockets, and an fsync that blocks the
        loop would keep them out of the group. Every 16th lone flush still goes to a thread,
        to see whether a crowd came back."""
        target = self._commits
        if alone and self._flushing is None and self._synced < target and self._grouped <= 1:
            self._lone += 1
            if self._lone % 16:
                self.sync()
                self._synced, self._writes_synced = target, self._writes
                return
        while self._synced < target:
            if self._flushing is None:
                self._flushing = asyncio.ensure_future(self._fsync())
            await asyncio.shield(self._flushing)

    async def _fsync(self) -> None:
        upto, writes = self._commits, self._writes
        self._fsync_counted = True
        try:
            await asyncio.to_thread(self.sync)
            self._grouped = writes - self._writes_synced
            self._synced = max(self._synced, upto)
            self._writes_synced = writes
        finally:
            self._flushing, self._fsync_counted = None, False

    def sync(self) -> None:
        """fdatasync the write-ahead log (blocking), as SQLite itself would: its size is
        metadata that counts, its times are not."""
        if self._wal_fd is None:
            try:
                self._wal_fd = os.open(f"{self.path}-wal", os.O_RDONLY)
            except FileNotFoundError:
                return  # nothing written since the last checkpoint removed it
        if self.failed is not None:
            raise self.failed
        try:
            os.fdatasync(self._wal_fd)
        except OSError as exc:
            # Linux may drop the pages an fsync failed to write and report success next time:
            # nothing written since the last good fsync can be trusted (PostgreSQL panics).
            self.failed = InternalError(
                f"the metadata store could not be made durable ({exc}): restart the name node"
            )
            log.critical("fsync of %s-wal failed: %s; refusing every request", self.path, exc)
            raise self.failed from exc
        self.fsyncs += 1

    async def backup(self, dest: Path) -> interface.BackupInfo:
        """A copy taken over a connection of its own, in a worker thread (``backup.take``):
        requests go on meanwhile."""
        return await asyncio.to_thread(backup.take, self.path, dest)

    async def aclose(self) -> None:
        self.close()

    def close(self) -> None:
        if self._batch is not None:  # its writers are still waiting: it stands or falls now
            self._end_batch(self._batch)
        self._close_census()
        if self._commits > self._synced:
            self.sync()
        if self._wal_fd is not None:
            os.close(self._wal_fd)
            self._wal_fd = None
        self.db.close()


def _nfc(text: str) -> str:
    return unicodedata.normalize("NFC", text)


def _statements(sql: str) -> Iterator[str]:
    buf = ""
    for line in sql.splitlines():
        if line.strip().startswith("--"):
            continue
        buf += line + "\n"
        if sqlite3.complete_statement(buf):
            yield buf.strip()
            buf = ""
    if buf.strip():
        yield buf.strip()

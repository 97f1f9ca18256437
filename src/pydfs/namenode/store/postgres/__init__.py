"""The metadata store on PostgreSQL (``postgresql://...``), which several name nodes may share.

Isolation: READ COMMITTED, with the invariants it does not keep by itself made explicit. It is
the fastest level here (about 1.5 times SERIALIZABLE's throughput on creates) and never fails
a transaction for a serialization conflict; what it leaves open is closed by the schema and a
few locks, each taken where a race would break the tree:

- names are unique in a directory (a unique constraint; ``ON CONFLICT`` finds a taken name
  without aborting the transaction);
- no orphan: every inode's parent is a foreign key, so a directory removed while an entry is
  made in it fails one of the two (``NotFound`` for the entry, ``DirectoryNotEmpty`` for the
  removal), whichever commits second;
- no cycle: a directory moved to another directory takes one advisory lock
  (``inodes.MOVE_LOCK``, Linux's rename mutex) and checks, under it, that the target is not
  below it, as committed now;
- no block released while named: a copy holds its source (``FOR SHARE``), a change of a file's
  content holds the file (``FOR UPDATE``, in ``detach``), and ``file_blocks`` names blocks
  through a foreign key.

A transaction that loses a deadlock (or, should one arise, a serialization failure) is re-run
here, below the caller, so that no caller of ``write()`` needs a retry loop: a ``Session``
keeps each statement of the transaction with its result, and on such an error rolls back,
begins again and replays them. If every replayed statement gives the result it gave before,
the caller's code, which decided only from those results, would have done the same: the
failed statement is then run again and the caller goes on as if nothing happened. If one
differs (the world changed meanwhile), the write fails with ``Contention`` (503, nothing of it
applied), and the client may send it again. Attempts are bounded (``ATTEMPTS``).

Nothing every create touches is one row: a directory's modification time, changed by each
entry made in it, is set just after the commit in a transaction of its own
(``synchronous_commit`` off, so the row is held for microseconds, never across an fsync);
the census counts rows, or reads PostgreSQL's estimates for large tables, rather than keep a
counter row; the tree's generation is a few stripes, bumped only by reshaping writes.

Durability: a ``write()`` commits with ``synchronous_commit`` on, so it returns once its
commit is flushed (and, under Patroni's synchronous mode, on the standby too), and a commit is
visible to others only once flushed. ``write(durable=False)`` is durable too here: soft state
on one machine (upload leases) is state a failover must carry to the next primary, or a write
under way through it fails. Two things are committed without waiting for a flush, and a crash
or a failover may take them back though a ``read()`` saw them: directory times (``_touch``: a
lost one leaves a time a little stale) and the recorded answers of requests
(``applied.answer``: a lost one matters only to a client that lost the answer too, whose retry
is told ``AnswerLost``). A ``read()`` is a read-only REPEATABLE READ transaction, so that all
its statements see one moment; it costs two round trips more than statements on their own
(a stat: about a third more CPU, measured with ``bench/namenode_cpu.py --metadata postgres``).
Migrations are the numbered files in ``migrations/``, applied under an advisory lock (several
name nodes may start at once); the version is kept in ``schema_version``.

The repositories over a transaction's ``Session``: ``inodes.py`` (the tree), ``blockmap.py``
(blocks, replicas, trash) and ``tables.py`` (users, data nodes, uploads). Sets travel as arrays
(``= ANY($1)``, ``unnest``), so that a statement's text never depends on how many there are and
each is prepared once per connection.

Failover (Patroni, or any primary that moves): name the servers in one URL,
``postgresql://h1:5432,h2:5432/pydfs?target_session_attrs=read-write``. A statement whose
connection breaks, or that meets a server now read-only, fails with ``Unavailable`` (503: the
client may try again; a commit so cut short may or may not have been applied, unless the
request's record committed with it says, ``Store._resolve``), and its
connection is dropped; the pool opens new ones, on whichever server accepts writes now
(``_connect``: each server tried in turn, with a timeout of its own). The pool is opened at the
first transaction, which waits up to ``OPEN_WAIT`` for a server to accept writes, so that a name
node started during a failover (or before its database) comes up once it ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
import urllib.parse
from collections.abc import AsyncIterator, Iterator, Sequence
from contextlib import asynccontextmanager, contextmanager
from pathlib import Path
from typing import Any

import asyncpg

from pydfs.errors import InvalidArgument, Unavailable
from pydfs.namenode.store import interface, migrations
from pydfs.namenode.store.postgres import applied, blockmap, inodes, leader, tables

log = logging.getLogger("pydfs.namenode.store")

ATTEMPTS = 8  # runs of one transaction that keeps losing deadlocks, at most
POOL_SIZE = 16  # connections per name node
STRIPES = 16  # rows of the generation (migration 0001)
# A transaction whose name node stops answering (stopped, cut off, swapping) is ended after this
# long (ms), so that the locks it holds (the leader's lease, FOR SHARE) cannot stall the others.
IDLE_IN_TRANSACTION = "5000"
MIGRATION_LOCK = 0x70796466_73_6D67  # "pydfs" "mg"
CONNECT_TIMEOUT = 5.0  # seconds to connect to one server (a machine gone swallows packets)
OPEN_WAIT = 60.0  # seconds the first transaction waits for a server that accepts writes
RESOLVE_WAIT = 30.0  # seconds a commit cut short waits for a server to tell whether it applied

# A read sees one moment: at READ COMMITTED each statement would see its own, and a file's
# size read before a replace and its blocks after would name bytes of neither version.
READ = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY"

RETRYABLE = (asyncpg.DeadlockDetectedError, asyncpg.SerializationError)
# The server went away, restarts, refuses connections, or is a standby now (a primary demoted
# by a failover, until the pool reconnects): the caller may try again later.
UNREACHABLE = (
    OSError,
    asyncio.TimeoutError,
    asyncpg.PostgresConnectionError,
    asyncpg.OperatorInterventionError,
    asyncpg.InterfaceError,
    # A connection whose server died as it sent an error is left in a state no statement can
    # leave ("cannot switch to state 12; another operation (2) is in progress").
    asyncpg.InternalClientError,
    asyncpg.TargetServerAttributeNotMatched,  # every server reached is a standby
    asyncpg.ReadOnlySQLTransactionError,  # a connection to a server demoted to a standby
    asyncpg.TooManyConnectionsError,
)


Connection = asyncpg.Connection | asyncpg.pool.PoolConnectionProxy


class Contention(Unavailable):
    """A transaction kept losing races to concurrent ones and could not be re-run unchanged:
    nothing of it was applied, and the request may be sent again."""


def redacted(url: str) -> str:
    """*url* without its password, for logs and ``Store.url``."""
    parts = urllib.parse.urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return urllib.parse.urlunsplit(parts._replace(netloc=netloc))


@contextmanager
def _reachable(what: str) -> Iterator[None]:
    try:
        yield
    except UNREACHABLE as exc:
        if isinstance(exc, asyncpg.InternalClientError):  # a dead server, or a defect: say
            log.warning("connection to the metadata store unusable (%s)", what, exc_info=True)
        raise Unavailable(f"metadata store unreachable ({what}): {exc}") from exc


class Session:
    """One connection's statements for one transaction (*begin* is how it starts; None: no
    transaction block, each statement on its own), kept with their results so that the
    transaction can be replayed after a deadlock (see the module's docstring)."""

    def __init__(self, conn: Connection, begin: str | None, store: Store) -> None:
        self.conn = conn
        self.begin = begin
        self.store = store
        self.done: list[tuple[str, str, Sequence[Any], Any]] = []
        self.broken = False  # the connection was dropped (and so handed back)
        self.replays = begin not in (None, READ)  # a read-only snapshot never loses a race

    async def start(self) -> None:
        if self.begin is not None:
            try:
                with _reachable("begin"):
                    await self.conn.execute(self.begin)
            except Unavailable:
                self._drop()
                raise

    async def fetch(self, sql: str, *args: Any, pin: int | None = None) -> list[tuple[Any, ...]]:
        """The rows; with *pin*, a replay passes the first value returned as argument *pin*
        if it was None (a fresh id from a sequence is used again, never another one)."""
        rows: list[tuple[Any, ...]] = await self._run("fetch", sql, args)
        if pin is not None and args[pin] is None and rows and self.replays:
            self.done[-1] = ("fetch", sql, (*args[:pin], rows[0][0], *args[pin + 1 :]), rows)
        return rows

    async def execute(self, sql: str, *args: Any) -> str:
        """The command's status, such as ``UPDATE 3``."""
        status: str = await self._run("execute", sql, args)
        return status

    async def _once(self, kind: str, sql: str, args: Sequence[Any]) -> Any:
        try:
            with _reachable("query"):
                if kind == "fetch":
                    return [tuple(r) for r in await self.conn.fetch(sql, *args)]
                return await self.conn.execute(sql, *args)
        except Unavailable:
            self._drop()
            raise

    def _drop(self) -> None:
        """The connection is broken, or on a standby: drop it (the pool opens another)."""
        self.broken = True
        self.store.lost += 1
        with contextlib.suppress(asyncpg.InterfaceError):  # closed: the pool took it back
            self.conn.terminate()

    async def _run(self, kind: str, sql: str, args: Sequence[Any]) -> Any:
        for attempt in range(ATTEMPTS):
            try:
                result = await self._once(kind, sql, args)
            except RETRYABLE as exc:
                await self._again(attempt, exc)
                continue
            if self.replays:
                self.done.append((kind, sql, args, result))
            return result
        raise Contention("metadata store: too many concurrent changes; try again")

    async def _again(self, attempt: int, exc: Exception) -> None:
        """Roll back and replay what was done, or raise ``Contention``."""
        log.debug("transaction lost a race (%s), attempt %d", exc, attempt + 1)
        if attempt + 1 >= ATTEMPTS:
            raise Contention("metadata store: too many concurrent changes; try again") from exc
        if self.begin is None:  # no transaction: the statement alone runs again
            return
        if not self.replays:  # a read: its earlier statements saw a moment now gone
            raise Contention("metadata store: a read lost a race; try again") from exc
        await self.rollback()
        await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))
        await self.start()
        for kind, sql, args, result in self.done:
            try:
                again = await self._once(kind, sql, args)
            except asyncpg.PostgresError:
                again = None
            if again != result:
                raise Contention(
                    "metadata store: a concurrent change made this one stale; try again"
                ) from exc

    async def commit(self, suffix: str = "") -> None:
        """Commit, after *suffix* (statements without parameters, in the same round trip)."""
        for attempt in range(ATTEMPTS):
            try:
                with _reachable("commit: whether it was applied is unknown"):
                    await self.conn.execute(f"{suffix}COMMIT")
                return
            except RETRYABLE as exc:
                await self._again(attempt, exc)
            except Unavailable:
                self._drop()
                raise

    async def rollback(self) -> None:
        """Roll back, or drop the connection if that fails (the pool opens another)."""
        if self.broken:
            return
        try:
            if not self.conn.is_closed() and self.conn.is_in_transaction():
                await self.conn.execute("ROLLBACK")
        except BaseException:
            self._drop()


class Tx:
    """A transaction's view: the repositories over its session, what it reshaped, and the
    directories whose times it changed (set after its commit: ``inodes.Inodes.touch``)."""

    def __init__(self, session: Session) -> None:
        self.session = session
        self.inodes: interface.Inodes = inodes.Inodes(self)
        self.blocks: interface.BlockMap = blockmap.BlockMap(self)
        self.users: interface.Users = tables.Users(self)
        self.datanodes: interface.DataNodes = tables.DataNodes(self)
        self.uploads: interface.Uploads = tables.Uploads(self)
        self.leader: interface.Leader = leader.Leader(self)
        self.restore: interface.Restore = tables.NeverRestored()
        self.requests: interface.Requests = applied.Requests(self)
        self.reshaping = False
        self.structural = False  # made, moved or removed an inode
        self.touched: dict[int, float] = {}

    async def generation(self) -> int:
        rows = await self.session.fetch("SELECT sum(n) FROM generation")
        return int(rows[0][0])

    async def reshaped(self) -> None:
        self.reshaping = True

    def changed(self, inode_ids: list[int], mtime: float) -> None:
        for inode_id in inode_ids:
            self.touched[inode_id] = max(mtime, self.touched.get(inode_id, mtime))


class Store:
    """A pool of connections to one PostgreSQL database, opened at the first transaction."""

    def __init__(self, url: str) -> None:
        self._dsn = url
        self.url = redacted(url)
        self.shared = True
        self.lost = 0  # connections dropped as broken or on a standby (Session._drop)
        self._pool: asyncpg.Pool | None = None
        self._opening = asyncio.Lock()

    async def _connections(self) -> asyncpg.Pool:
        if self._pool is None:
            async with self._opening:
                deadline = time.monotonic() + OPEN_WAIT
                while self._pool is None:
                    try:
                        self._pool = await self._open()
                    except Unavailable as exc:
                        if time.monotonic() > deadline:
                            raise
                        if deadline - time.monotonic() > OPEN_WAIT - 1.0:  # once
                            log.warning("%s; waiting for it (%.0f s at most)", exc, OPEN_WAIT)
                        await asyncio.sleep(1.0)
        return self._pool

    async def _open(self) -> asyncpg.Pool:
        with _reachable(self.url):
            pool = await asyncpg.create_pool(
                self._dsn,
                min_size=1,
                max_size=POOL_SIZE,
                max_queries=1_000_000,
                connect=_connect,
                statement_cache_size=512,
                reset=_reset,
                server_settings={
                    "application_name": "pydfs-namenode",
                    "idle_in_transaction_session_timeout": IDLE_IN_TRANSACTION,
                },
            )
        try:
            with _reachable(self.url):
                async with pool.acquire() as conn:
                    await _migrate(conn)
        except BaseException:
            pool.terminate()
            raise
        return pool

    @asynccontextmanager
    async def _session(self, begin: str | None) -> AsyncIterator[Session]:
        pool = await self._connections()
        with _reachable("connect"):
            conn = await pool.acquire()
        try:
            yield Session(conn, begin, self)
        finally:
            await pool.release(conn)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[Tx]:
        async with self._session(READ) as session:
            await session.start()
            try:
                yield Tx(session)
            finally:
                await session.rollback()  # it changed nothing: ending it either way is the same

    @asynccontextmanager
    async def write(self, *, durable: bool = True) -> AsyncIterator[Tx]:
        # Every write is durable here, *durable* notwithstanding: what a primary has not
        # flushed (and sent to a synchronous standby) is lost when a failover promotes the
        # standby, and a lease lost so would fail a write its client made during the failover.
        cut: Unavailable | None = None  # a COMMIT whose connection broke
        async with self._session("BEGIN") as session:
            await session.start()
            tx = Tx(session)
            request = None
            try:
                yield tx
                stripe = random.randrange(STRIPES)
                bump = f"UPDATE generation SET n = n + 1 WHERE stripe = {stripe}; "
                suffix = bump if tx.reshaping else ""
                if (request := interface.pending()) is not None:
                    suffix += applied.record(request)
                try:
                    await session.commit(suffix)
                except Unavailable as exc:
                    if request is None:  # nothing tells whether it was applied
                        raise
                    cut = exc
            except asyncpg.UniqueViolationError as exc:
                await session.rollback()
                if request is not None and exc.constraint_name == applied.CONSTRAINT:
                    raise interface.AppliedElsewhere(request.request_id) from None
                raise
            except BaseException:
                await session.rollback()
                raise
            if cut is None and tx.touched and not session.broken:
                await _touch(session.conn, tx.touched)
        if request is not None:
            if cut is not None:  # its connection back in the pool: others may use the slot
                await self._resolve(request, cut)
            request.recorded = True

    async def _resolve(self, request: interface.Applying, cut: Unavailable) -> None:
        """Whether a COMMIT whose connection broke (a failover, say) was applied: the record
        of *request* committed with it tells, once a server answers again (up to
        ``RESOLVE_WAIT``), so that the request is answered as done rather than retried into
        ``AnswerLost``. Applied: returns (the directory times it changed stay as they were);
        applied by another attempt: ``AppliedElsewhere``; else *cut* (``Unavailable``). The
        record is read ``FOR UPDATE`` and that is committed: a lock is written to the log, so
        this commit returns only once a synchronous standby has the record too."""
        deadline = time.monotonic() + RESOLVE_WAIT
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise cut
            try:
                rows = await asyncio.wait_for(self._applied_by(request), left)
                break
            except (TimeoutError, Unavailable):
                await asyncio.sleep(min(0.5, max(0.0, deadline - time.monotonic())))
        if not rows:
            raise cut
        if rows[0][0] != request.attempt:
            raise interface.AppliedElsewhere(request.request_id)
        log.info("request %s: its commit was applied, though cut short", request.request_id)

    async def _applied_by(self, request: interface.Applying) -> list[tuple[Any, ...]]:
        async with self._session("BEGIN") as session:
            await session.start()
            try:
                rows = await session.fetch(
                    "SELECT attempt FROM applied WHERE usr = $1 AND id = $2 FOR UPDATE",
                    request.user,
                    request.request_id,
                )
                await session.commit()
            except BaseException:
                await session.rollback()
                raise
            return rows

    async def backup(self, dest: Path) -> interface.BackupInfo:
        raise InvalidArgument(
            "metadata on PostgreSQL is backed up by PostgreSQL: pg_dump, or a Patroni replica "
            "(pydfs admin backup copies the SQLite metadata)"
        )

    async def answered(self, user: str, request_id: str, status: int, body: bytes) -> None:
        async with self._session(None) as session:
            try:
                with _reachable("answer"):
                    await session.conn.execute(applied.answer(user, request_id, status, body))
            except BaseException:
                await session.rollback()
                raise

    async def aclose(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


async def _connect(dsn: str | None = None, **options: Any) -> asyncpg.Connection:
    """A connection to the first server of *dsn* that takes it (and is read-write, if the URL
    says ``target_session_attrs=read-write``). asyncpg tries a URL's servers in turn under one
    timeout, so a first server that never answers would make every attempt fail: here each
    has a timeout of its own."""
    servers = _servers(dsn or "")
    if len(servers) < 2:
        return await asyncpg.connect(dsn, timeout=CONNECT_TIMEOUT, **options)
    failure: BaseException | None = None
    for host, port in servers:
        try:
            return await asyncpg.connect(
                dsn, host=host, port=port, timeout=CONNECT_TIMEOUT, **options
            )
        except UNREACHABLE as exc:
            failure = exc
    assert failure is not None
    raise failure


def _servers(dsn: str) -> list[tuple[str, int]]:
    """The host and port of each server a multi-host URL names (``h1:5432,h2``)."""
    netloc = urllib.parse.urlsplit(dsn).netloc.rpartition("@")[2]
    servers = []
    for server in netloc.split(","):
        host, colon, port = server.rpartition(":") if not server.endswith("]") else ("", "", "")
        if not colon or not port.isdigit():
            host, port = server, "5432"
        servers.append((host.strip("[]"), int(port)))
    return servers


async def _touch(conn: Connection, touched: dict[int, float]) -> None:
    """Directories' new times, after the commit that changed them: never earlier than they
    are, held in id order, committed without waiting for a flush (soft state, as leases)."""
    ids = sorted(touched)
    id_array = f"ARRAY{[int(i) for i in ids]}::bigint[]"
    sql = (
        "BEGIN; SET LOCAL synchronous_commit = off; "
        f"SELECT 1 FROM inodes WHERE id = ANY({id_array}) ORDER BY id FOR NO KEY UPDATE; "
        "UPDATE inodes SET mtime = greatest(inodes.mtime, t.mtime) "
        f"FROM unnest({id_array}, ARRAY{[float(touched[i]) for i in ids]}::float8[]) "
        "AS t(id, mtime) WHERE inodes.id = t.id; COMMIT"
    )
    try:
        await conn.execute(sql)
    except Exception as exc:  # the change itself is committed: a stale time is no failure
        log.warning("could not set the modification time of directories %s: %s", ids, exc)
        try:
            if not conn.is_closed() and conn.is_in_transaction():
                await conn.execute("ROLLBACK")
        except Exception:  # the connection is gone (the pool took it back): drop it
            with contextlib.suppress(asyncpg.InterfaceError):
                conn.terminate()


async def _reset(conn: Connection) -> None:
    """What the pool does to a connection handed back: nothing, unless a transaction was left
    open (a cancelled caller), which is rolled back."""
    if conn.is_in_transaction():
        await conn.execute("ROLLBACK")


async def _migrate(conn: Connection) -> None:
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", MIGRATION_LOCK)
        await conn.execute("CREATE TABLE IF NOT EXISTS schema_version (version integer NOT NULL)")
        current = await conn.fetchval("SELECT max(version) FROM schema_version") or 0
        for version, sql in migrations.pending(__package__, current):
            await conn.execute(sql)
            await conn.execute("INSERT INTO schema_version VALUES ($1)", version)
            log.info("metadata schema migrated to version %d", version)

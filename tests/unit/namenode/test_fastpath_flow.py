"""The fast path's flow control, against a fake transport: a client that does not read its
answers stops the next request, and one that sends too much behind a waiting request is no
longer read, until the answers drain."""

from __future__ import annotations

import asyncio
import gc
from types import SimpleNamespace
from typing import Any

from pydfs import metrics, wire
from pydfs.fastpath import PAUSE_AT, _Connection
from pydfs.namenode.api import Pipeline
from pydfs.namenode.app import PIPELINE
from pydfs.namenode.auth import User
from pydfs.namenode.fastpath import Front

STAT = b"GET /v1/fs/stat?path=/ HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t\r\n\r\n"


class Transport:
    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.reading = True

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def is_closing(self) -> bool:
        return False

    def pause_reading(self) -> None:
        self.reading = False

    def resume_reading(self) -> None:
        self.reading = True

    def close(self) -> None:
        pass

    def set_protocol(self, protocol: Any) -> None:
        self.protocol = protocol


class Aiohttp:
    """Stands in for aiohttp's protocol: what it was handed."""

    def __init__(self) -> None:
        self.received = b""

    def connection_made(self, transport: Any) -> None:
        pass

    def data_received(self, data: bytes) -> None:
        self.received += data


def front() -> Any:
    status = wire.FileStatus("/", "/", "dir", 0, 0.0, 0.0, "root", "root", 0o755, 0, 0)

    async def authenticate(token: str) -> User:
        return User("u")

    async def stat(path: str, user: User, read: bool = False) -> wire.FileStatus:
        return status

    nn = SimpleNamespace(
        users=SimpleNamespace(authenticate=authenticate, known=lambda token: None),
        namespace=SimpleNamespace(stat=stat),
        store=None,  # a GET: no request is recorded
    )
    application = {
        metrics.REQUESTS: SimpleNamespace(record=lambda *args: None),
        PIPELINE: Pipeline(nn),  # type: ignore[arg-type]
    }
    return Front(application, nn, Aiohttp)  # type: ignore[arg-type]


async def turns() -> None:
    """Let the event loop run what the connection started (the caller's check, the answer)."""
    for _ in range(20):
        await asyncio.sleep(0)


def test_answers_wait_while_the_client_does_not_read() -> None:
    async def go() -> None:
        transport = Transport()
        conn = _Connection(front())
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(STAT)
        await turns()
        assert len(transport.written) == 1  # answered
        conn.pause_writing()  # the client stopped reading
        conn.data_received(STAT + STAT)
        await turns()
        assert len(transport.written) == 1  # nothing more while it does not read
        other = b"PUT /other HTTP/1.1\r\nHost: x\r\n\r\n" + b"X" * PAUSE_AT
        conn.data_received(other)  # and it is no longer read past PAUSE_AT
        assert transport.reading is False
        conn.resume_writing()
        await turns()
        assert len(transport.written) == 3 and transport.reading is True
        assert all(w.startswith(b"HTTP/1.1 200 OK") for w in transport.written)
        # What follows is no request of the API: aiohttp gets it, every byte.
        assert transport.protocol.inner.received == other

    asyncio.run(go())


def test_answered_requests_leave_nothing_to_the_cycle_collector() -> None:
    """Every request's objects are freed by their reference counts as soon as it is answered:
    a cycle per request (a head and its parser) costs a busy server collections, full ones
    among them, that scan every object it holds."""

    async def go() -> None:
        conn = _Connection(front())
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        conn.data_received(STAT)
        await turns()  # the first request fills caches (the route's metric labels, ...)
        gc.collect()
        gc.disable()
        try:
            for _ in range(20):
                conn.data_received(STAT)
                await turns()
            assert gc.collect() == 0
        finally:
            gc.enable()
        assert len(transport.written) == 21

    asyncio.run(go())


def test_a_connection_answers_its_requests_in_one_task() -> None:
    """A task per request (created, scheduled, kept in asyncio's set of tasks) costs each
    request more than a future to wake the connection's one task."""

    async def go() -> None:
        created: list[Any] = []

        def counting(loop: Any, coro: Any, **kwargs: Any) -> asyncio.Task[Any]:
            created.append(coro)
            return asyncio.Task(coro, loop=loop, **kwargs)

        asyncio.get_running_loop().set_task_factory(counting)
        conn = _Connection(front())
        transport = Transport()
        conn.connection_made(transport)  # type: ignore[arg-type]
        for _ in range(10):
            conn.data_received(STAT)
            await turns()
        assert len(transport.written) == 10
        assert len(created) == 1
        conn.connection_lost(None)
        await turns()
        assert conn.worker is None  # ended with its connection

    asyncio.run(go())


def test_shutdown_closes_idle_connections_and_lets_answers_finish() -> None:
    async def go() -> None:
        f = front()
        release = asyncio.Event()
        stat = f.pipeline.nn.namespace.stat

        async def slow_stat(*args: Any, **kwargs: Any) -> Any:
            await release.wait()
            return await stat(*args, **kwargs)

        conns, transports = [], []
        for _ in range(2):
            transports.append(Closable())
            conns.append(_Connection(f))
            conns[-1].connection_made(transports[-1])  # type: ignore[arg-type]
            conns[-1].data_received(STAT)
            await turns()
        f.pipeline.nn.namespace.stat = slow_stat
        busy, idle = conns[0], conns[1]
        busy.data_received(STAT)
        await turns()
        shutting = asyncio.ensure_future(f.shutdown())
        await turns()
        assert transports[1].closed and not transports[0].closed
        assert not shutting.done()
        release.set()
        await shutting
        assert transports[0].closed
        assert len(transports[0].written) == 2 and transports[0].written[1].startswith(
            b"HTTP/1.1 200"
        )
        assert busy.worker is None and idle.worker is None

    asyncio.run(go())


def test_a_connection_answered_while_the_server_stops_is_closed_with_its_answer() -> None:
    """A connection busy when the stop began gets its answer with ``Connection: close`` and is
    closed: a request it sent next would start work the stop no longer waits for."""

    async def go() -> None:
        f = front()
        releases = [asyncio.Event(), asyncio.Event()]
        stat = f.pipeline.nn.namespace.stat

        async def slow_stat(*args: Any, **kwargs: Any) -> Any:
            await releases.pop(0).wait()
            return await stat(*args, **kwargs)

        f.pipeline.nn.namespace.stat = slow_stat
        first, second = releases
        transports = [Closable(), Closable()]
        conns = [_Connection(f), _Connection(f)]
        for conn, transport in zip(conns, transports, strict=True):
            conn.connection_made(transport)  # type: ignore[arg-type]
            conn.data_received(STAT)
            await turns()
        shutting = asyncio.ensure_future(f.shutdown())
        await turns()
        first.set()
        await turns()
        assert len(transports[0].written) == 1 and transports[0].closed
        assert b"\r\nConnection: close\r\n" in transports[0].written[0]
        assert not shutting.done()
        second.set()
        await shutting
        assert transports[1].closed and len(transports[1].written) == 1

    asyncio.run(go())


class Closable(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

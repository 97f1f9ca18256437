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

"""The fast path's cap on connections, against fake transports: past it, the connection that
has waited longest on its client makes room; if every one is being answered, the new one is
refused with a coded 503."""

from __future__ import annotations

import asyncio
import json

from tests.unit.namenode.test_fastpath_flow import Transport, front

from pydfs.fastpath import _Connection
from pydfs.server import DEFAULT_LIMITS


class Closable(Transport):
    def __init__(self) -> None:
        super().__init__()
        self.closed = False

    def close(self) -> None:
        self.closed = True


def _connect(f: object) -> tuple[_Connection, Closable]:
    transport = Closable()
    conn = _Connection(f)  # type: ignore[arg-type]
    conn.connection_made(transport)  # type: ignore[arg-type]
    return conn, transport


def test_past_the_cap_the_longest_waiting_connection_makes_room() -> None:
    async def go() -> None:
        f = front()
        f.limits = DEFAULT_LIMITS._replace(max_connections=2)
        _, oldest_t = _connect(f)
        await asyncio.sleep(0.01)
        _, newer_t = _connect(f)
        _, third_t = _connect(f)
        assert oldest_t.closed and not newer_t.closed and not third_t.closed
        assert len(f.connections) == 2

    asyncio.run(go())


def test_past_the_cap_with_every_connection_busy_a_new_one_is_refused() -> None:
    async def go() -> None:
        f = front()
        f.limits = DEFAULT_LIMITS._replace(max_connections=1)
        busy, busy_t = _connect(f)
        busy.busy = True  # an answer being made
        _, refused_t = _connect(f)
        assert refused_t.closed and not busy_t.closed
        head, _, body = b"".join(refused_t.written).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 503") and b"Connection: close" in head
        assert json.loads(body)["code"] == "unavailable"

    asyncio.run(go())

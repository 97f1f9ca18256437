"""A data node's small block reads and writes on the fast path (``pydfs.fastpath``).

It takes a block PUT whose body is one chunk with its frames (``app.WHOLE``), and a GET asking
for at most ``app.SMALL_READ`` bytes (answered with the whole chunks that cover them: two at
most): the requests small files are made of, which a client sends over ``rpc.Links``. Both go
through ``app.Blocks``, as aiohttp's routes do; larger blocks stream through aiohttp, and
larger ranges are sent with sendfile there.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from pydfs import fastpath, metrics, wire
from pydfs.datanode.app import SMALL_READ, WHOLE, Blocks
from pydfs.fastpath import Answer, Request
from pydfs.server import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    import asyncio

    from aiohttp import web

ROUTES = fastpath.Routes(
    [("PUT", f"{wire.API}/blocks/{{id}}", "put"), ("GET", f"{wire.API}/blocks/{{id}}", "get")]
)
_OCTETS = b"application/octet-stream"


class Front(fastpath.Front):
    def __init__(
        self,
        application: web.Application,
        blocks: Blocks,
        fallback: Callable[[], asyncio.Protocol],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(application[metrics.REQUESTS], fallback, limits)
        self.blocks = blocks

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        found = ROUTES.find(method, path)
        if found is None:
            return None
        if found[0] == "put":
            return found if 0 <= length <= WHOLE else None
        size = query.get("length", "")
        small = size.isascii() and size.isdigit() and len(size) < 8 and int(size) <= SMALL_READ
        return found if length <= 0 and small else None

    def admit(self, request: Request) -> None:
        token = request.headers.get(wire.H_BLOCK_TOKEN.lower())
        modes = "wc" if request.endpoint == "put" else "r"
        request.user = self.blocks.admit(request.match["id"], token, modes)  # what it grants

    def serve(self, request: Request) -> Answer | Awaitable[Answer]:
        if request.endpoint == "put":
            return self._put(request)
        block_id = request.match["id"]
        query = request.query
        f, start, count, headers = self.blocks.open_range(
            block_id, query.get("offset"), query.get("length")
        )
        with f:
            body = self.blocks.read(block_id, f, start, count)
        head = "".join(f"{name}: {value}\r\n" for name, value in headers.items())
        return Answer(200, body, _OCTETS, head.encode("latin-1"))

    async def _put(self, request: Request) -> Answer:
        headers = request.headers
        token = headers[wire.H_BLOCK_TOKEN.lower()]  # admitted: there is one
        pipeline = wire.H_PIPELINE.lower() in headers
        read = wire.body_reader(request.body)
        stored = await self.blocks.put(
            request.match["id"], token, request.user, pipeline, request.length, read
        )
        return Answer(200, wire.encode(stored))

"""A data node's small block reads and writes on the fast path (``pydfs.fastpath``).

It takes a block PUT whose body is one chunk with its frames (``wire.WHOLE_BLOCK``), a batch of
such blocks (``POST /blocks``, at most ``wire.MAX_BATCH_BODY``), and a GET
asking for at most ``wire.SMALL_READ`` bytes (answered with the whole chunks that cover them:
two at most, read at once): the requests small files are made of, which a client sends over
``rpc.Links``. Both go through the block pipeline (``datanode.blocks``), as aiohttp's routes
do; larger blocks stream through aiohttp, and larger ranges are sent with sendfile there.
"""

from __future__ import annotations

from typing import Any

from pydfs import fastpath, wire
from pydfs.datanode.blocks import ENDPOINTS

ROUTES = fastpath.Routes(ENDPOINTS)


class Front(fastpath.Front):
    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        found = ROUTES.find(method, path)
        if found is None:
            return None
        if found[0] == "put":
            return found if 0 <= length <= wire.WHOLE_BLOCK else None
        if found[0] == "put_many":
            return found if 0 <= length <= wire.MAX_BATCH_BODY else None
        size = query.get("length", "")
        small = size.isascii() and size.isdigit() and len(size) < 8 and int(size) <= wire.SMALL_READ
        return found if length <= 0 and small else None


class NoFront(fastpath.Front):
    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        return None

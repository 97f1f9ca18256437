"""The name node's JSON API on the fast path (``pydfs.fastpath``), not through aiohttp.

A request for an endpoint of the table, with a body within the endpoint's limit, goes through
the same authentication, answer and error mapping as aiohttp's route for it; the store answers
for durability (``store.interface``).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pydfs import fastpath, metrics, wire
from pydfs.fastpath import Answer, Request
from pydfs.namenode import app as api
from pydfs.namenode.auth import User
from pydfs.server import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Awaitable, Callable

    from pydfs.namenode import NameNode

log = logging.getLogger("pydfs.namenode")

ROUTES = fastpath.Routes((ep.method, f"{wire.API}{ep.route}", ep) for ep in api.ENDPOINTS)


class Front(fastpath.Front):
    def __init__(
        self,
        application: web.Application,
        nn: NameNode,
        fallback: Callable[[], asyncio.Protocol],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(application[metrics.REQUESTS], fallback, limits)
        self.nn = nn

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        found = ROUTES.find(method, path)
        if found is None or length > api.body_limit(found[0]):
            return None
        return found

    def admit(self, request: Request) -> Awaitable[None] | None:
        ep: api.Endpoint = request.endpoint
        who = api.caller(self.nn, request.headers.get("authorization", ""), ep.access)
        if isinstance(who, User):
            request.user = who
            return None
        return self._admit(request, who)

    @staticmethod
    async def _admit(request: Request, who: Awaitable[User]) -> None:
        request.user = await who

    async def serve(self, request: Request) -> Answer:
        """Like aiohttp's route; the store makes what the answer tells of durable first."""
        try:
            if request.endpoint.waits:
                await self.nn.started()
            body = await api.answer(
                self.nn, request.endpoint, request.query, request.match, request.user, request.body
            )
        except Exception as exc:
            return fastpath.failure(request, exc)
        return Answer(200, body)

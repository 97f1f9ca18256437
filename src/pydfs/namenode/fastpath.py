"""The name node's JSON API on the fast path (``pydfs.fastpath``), not through aiohttp.

A request for an endpoint of the table, with a body within the endpoint's limit, goes through
the same authentication, answer, error mapping and group commit (``app.Durability``) as
aiohttp's route for it. A request that made or saw commits not yet on disk is answered only
after they are.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from aiohttp import web

from pydfs import fastpath, metrics, wire
from pydfs.fastpath import Answer, Request, error_answer
from pydfs.namenode import app as api
from pydfs.server import DEFAULT_LIMITS, Limits, internal_error

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
        self.durability = application[api.DURABILITY]

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        found = ROUTES.find(method, path)
        if found is None or length > api.body_limit(found[0]):
            return None
        return found

    def admit(self, request: Request) -> None:
        ep: api.Endpoint = request.endpoint
        authorization = request.headers.get("authorization", "")
        request.user = api.authenticate(self.nn, authorization, ep.access)

    def serve(self, request: Request) -> Answer | Awaitable[Answer]:
        if request.endpoint.waits and self.nn.waiting() is not None:
            return self._after_start(request)
        return self._answer(request)

    def _answer(self, request: Request) -> Answer | Awaitable[Answer]:
        durability = self.durability
        durability.in_flight += 1
        try:
            body = api.answer(
                self.nn, request.endpoint, request.query, request.match, request.user, request.body
            )
            answer = Answer(200, body)
        except Exception as exc:
            answer = fastpath.failure(request, exc)
        if durability.store.dirty:  # this request's commit, or others' it may have seen
            return self._settle(answer)
        durability.in_flight -= 1
        return answer

    async def _after_start(self, request: Request) -> Answer:
        await self.nn.started()
        answer = self._answer(request)
        return answer if isinstance(answer, Answer) else await answer

    async def _settle(self, answer: Answer) -> Answer:
        try:
            await self.durability.settle()
        except Exception:
            log.exception("metadata not made durable")
            return error_answer(internal_error())
        return answer

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
from pydfs.calls import Answer, Request
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
        pipeline = Pipeline(nn, application[api.DURABILITY])
        super().__init__(pipeline, application[metrics.REQUESTS], fallback, limits)

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        found = ROUTES.find(method, path)
        if found is None or length > api.body_limit(found[0]):
            return None
        return found


class Pipeline:
    """The endpoints' pipeline (``calls.Pipeline``)."""

    def __init__(self, nn: NameNode, durability: api.Durability) -> None:
        self.nn = nn
        self.durability = durability

    def admit(self, request: Request) -> None:
        ep: api.Endpoint = request.endpoint
        authorization = request.headers.get("authorization", "")
        request.grant = api.authenticate(self.nn, authorization, ep.access)

    def limit(self, request: Request) -> int | None:
        ep: api.Endpoint = request.endpoint
        return None if ep.body is None else api.body_limit(ep)

    def serve(self, request: Request) -> Answer | Awaitable[Answer]:
        if request.endpoint.waits and self.nn.waiting() is not None:
            return self._after_start(request)
        return self._answer(request)

    def _answer(self, request: Request) -> Answer | Awaitable[Answer]:
        durability = self.durability
        durability.in_flight += 1
        result: Answer | Exception
        try:
            body = api.answer(
                self.nn, request.endpoint, request.query, request.match, request.grant, request.body
            )
            result = Answer(200, body)
        except Exception as exc:
            result = exc
        if durability.store.dirty:  # this request's commit, or others' it may have seen
            return self._settle(result)
        durability.in_flight -= 1
        if isinstance(result, Exception):
            raise result
        return result

    async def _after_start(self, request: Request) -> Answer:
        await self.nn.started()
        answer = self._answer(request)
        return answer if isinstance(answer, Answer) else await answer

    async def _settle(self, result: Answer | Exception) -> Answer:
        try:
            await self.durability.settle()
        except Exception:
            log.exception("metadata not made durable")
            raise internal_error() from None
        if isinstance(result, Exception):
            raise result
        return result

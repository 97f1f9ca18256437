"""The name node's aiohttp routes: its API's endpoints (``namenode.api``), the API's OpenAPI
description, the web UI's pages, ``/metrics`` and ``/health``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from pydfs import wire
from pydfs.namenode.api import ENDPOINTS, Durability, Pipeline
from pydfs.server import add_endpoints, make_app

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

PIPELINE = web.AppKey("pydfs_pipeline", Pipeline)


def build(nn: NameNode) -> web.Application:
    from pydfs import metrics
    from pydfs.namenode import openapi
    from pydfs.web import routes as web_routes

    app = make_app()
    durability = Durability(nn)
    pipeline = app[PIPELINE] = Pipeline(nn, durability)
    endpoints = [(ep.method, f"{wire.API}{ep.route}", ep) for ep in ENDPOINTS]
    served = set(add_endpoints(app, pipeline, endpoints))

    @web.middleware
    async def durable(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        """The pages' requests wait for durability as the endpoints' do in their pipeline."""
        if request.match_info.handler in served:
            return await handler(request)
        durability.in_flight += 1
        try:
            return await handler(request)
        finally:
            await durability.settle()

    app.middlewares.append(durable)  # inside the error middleware: errors wait too
    spec = openapi.describe(ENDPOINTS)

    async def describe(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    app.router.add_get(openapi.ROUTE, describe)
    web_routes.setup(app, nn)
    metrics.instrument(app, "namenode", nn)
    return app

"""The name node's aiohttp routes: its API's endpoints (``namenode.endpoints``), the API's OpenAPI
description, the web UI's pages, ``/metrics`` and ``/health``."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from pydfs import wire
from pydfs.namenode.api import Pipeline
from pydfs.namenode.endpoints import ENDPOINTS
from pydfs.server import add_endpoints, make_app

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

PIPELINE = web.AppKey("pydfs_pipeline", Pipeline)


def build(nn: NameNode) -> web.Application:
    from pydfs import metrics
    from pydfs.namenode import openapi
    from pydfs.namenode.web import routes as web_routes

    app = make_app()
    pipeline = app[PIPELINE] = Pipeline(nn)
    add_endpoints(app, pipeline, [(ep.method, f"{wire.API}{ep.route}", ep) for ep in ENDPOINTS])
    spec = openapi.describe(ENDPOINTS)

    async def describe(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    app.router.add_get(openapi.ROUTE, describe)
    web_routes.setup(app, nn)
    metrics.instrument(app, "namenode", nn.census, nn.census.refresh)
    return app

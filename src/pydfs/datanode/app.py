"""The data node's aiohttp routes: its block endpoints (``datanode.blocks``), ``/metrics`` and
``/health``. Large blocks stream in through here, and large ranges go out with sendfile."""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from pydfs import metrics
from pydfs.datanode import census
from pydfs.datanode.blocks import ENDPOINTS, Blocks, Pipeline
from pydfs.server import add_endpoints, make_app

if TYPE_CHECKING:
    from pydfs.datanode import DataNode


def build(dn: DataNode) -> tuple[web.Application, Pipeline]:
    app = make_app()
    pipeline = Pipeline(Blocks(dn))
    add_endpoints(app, pipeline, ENDPOINTS)
    metrics.instrument(app, "datanode", census.Census(dn, pipeline.blocks.traffic))
    return app, pipeline

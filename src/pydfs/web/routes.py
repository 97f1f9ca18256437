"""Web UI routes (being written): for now the status page the name node always served."""

from __future__ import annotations

import html
from typing import TYPE_CHECKING

from aiohttp import web

if TYPE_CHECKING:
    from pydfs.namenode import NameNode


def setup(app: web.Application, nn: NameNode) -> None:
    async def index(request: web.Request) -> web.Response:
        return web.Response(text=_status_page(nn), content_type="text/html")

    app.router.add_get("/", index)


def _status_page(nn: NameNode) -> str:
    space = nn.membership.space(nn.namespace.replication)
    rows = "".join(
        f"<tr><td>{html.escape(s.id)}</td><td>{html.escape(s.url)}</td><td>{s.state}</td>"
        f"<td>{s.used:,}</td><td>{s.free:,}</td><td>{s.blocks:,}</td></tr>"
        for s in nn.membership.states()
    )
    return f"""<!doctype html><html><head><meta charset="utf-8"><title>pydfs name node</title>
<style>body{{font-family:system-ui,sans-serif;margin:2em}}td,th{{padding:.3em 1em;text-align:left}}
</style></head><body><h1>pydfs name node</h1>
<p>{space.live_nodes} live and {space.dead_nodes} dead data nodes;
{space.raw_free:,} bytes free ({space.usable:,} usable at replication {space.replication}).</p>
<table><tr><th>data node</th><th>address</th><th>state</th>
<th>used</th><th>free</th><th>blocks</th></tr>
{rows}</table></body></html>"""

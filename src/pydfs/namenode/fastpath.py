"""The name node's API on the fast path (``pydfs.fastpath``), not through aiohttp.

A request for an endpoint of the table, with a body within the endpoint's limit, goes through
the same pipeline (``namenode.api``) as aiohttp's route for it: authentication, answer, error
mapping, group commit, request id.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web

from pydfs import fastpath, metrics, wire
from pydfs.namenode import api, endpoints
from pydfs.namenode.app import PIPELINE
from pydfs.server import DEFAULT_LIMITS, Limits

if TYPE_CHECKING:
    import asyncio
    from collections.abc import Callable

    from pydfs.namenode import NameNode

ROUTES = fastpath.Routes((ep.method, f"{wire.API}{ep.route}", ep) for ep in endpoints.ENDPOINTS)


class Front(fastpath.Front):
    def __init__(
        self,
        application: web.Application,
        nn: NameNode,
        fallback: Callable[[], asyncio.Protocol],
        limits: Limits = DEFAULT_LIMITS,
    ) -> None:
        super().__init__(application[PIPELINE], application[metrics.REQUESTS], fallback, limits)

    def find(
        self, method: str, path: str, query: dict[str, str], length: int
    ) -> tuple[Any, str, dict[str, str]] | None:
        found = ROUTES.find(method, path)
        if found is None or found[0].file is not None or length > api.body_limit(found[0]):
            return None
        return found

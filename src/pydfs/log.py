"""Logging setup: one named logger per role, one line per event, lazy ``%`` arguments, and the
id of the request a line was logged for.

Every request a server answers carries an id (``REQUEST_ID``): the client's ``X-Request-Id``
when it sent a sane one, else a new one. It is echoed in the answer's ``X-Request-Id``, written
in the error body (``wire.ErrorBody.request_id``), put in every log line logged while the
request is served, and sent on with the request a data node forwards down a write pipeline, so
that one id follows a request across the servers it touches. aiohttp's routes get it from
``middleware``; the fast path (``pydfs.fastpath``) sets it itself.
"""

from __future__ import annotations

import itertools
import logging
import os
import re
import sys
from collections.abc import Awaitable, Callable
from contextvars import ContextVar
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from aiohttp import web

HEADER = "X-Request-Id"
REQUEST_ID: ContextVar[str | None] = ContextVar("pydfs_request_id", default=None)

_SANE = re.compile(r"[!#-~]{1,64}")  # printable ASCII, no space or quote, as ids in logs are
_PREFIX = os.urandom(4).hex()  # this process's: ids stay unique across servers and restarts
_COUNTER = itertools.count(1)


def request_id(given: str | None) -> str:
    """The id of a request that sent *given* in its ``X-Request-Id`` (or none): *given* if it
    is sane, else a new one."""
    if given is not None and _SANE.fullmatch(given):
        return given
    return f"{_PREFIX}-{next(_COUNTER):x}"


class _WithRequestId(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        record.request_id = REQUEST_ID.get() or "-"
        return True


def setup(role: str, level: str = "INFO") -> None:
    """Configure the root handler for a server process (clients log nothing unless asked)."""
    logging.basicConfig(
        stream=sys.stderr,
        level=getattr(logging, level.upper(), logging.INFO),
        format=f"%(asctime)s {role} %(levelname)s %(name)s [%(request_id)s]: %(message)s",
    )
    for handler in logging.getLogger().handlers:
        handler.addFilter(_WithRequestId())
    # One access line per request is useful when debugging, noise otherwise.
    logging.getLogger("aiohttp.access").setLevel(logging.WARNING)


def middleware() -> Callable[..., Awaitable[web.StreamResponse]]:
    """aiohttp's side of the request id: set for the handler, echoed in the answer (an error's
    too: it sits outside the error middleware)."""
    from aiohttp import web

    @web.middleware
    async def with_request_id(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        rid = request_id(request.headers.get(HEADER))
        token = REQUEST_ID.set(rid)
        try:
            try:
                response = await handler(request)
            except web.HTTPException as exc:  # what the error middleware lets through
                exc.headers[HEADER] = rid
                raise
            if not response.prepared:
                response.headers[HEADER] = rid
            return response
        finally:
            REQUEST_ID.reset(token)

    return with_request_id

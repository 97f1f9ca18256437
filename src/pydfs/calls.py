"""A request and its answer as a role's request pipeline sees them, whichever server read it.

A role answers its API through one ``Pipeline`` (``namenode.api``, ``datanode.blocks``): it
authenticates a request on its head, before any of the body is read (``admit``), says how much
of a body it reads whole (``limit``), and answers (``serve``: call the domain, wait for
durability). The servers in front of it, aiohttp's routes (``server.add_endpoints``) and the
fast path (``pydfs.fastpath``), only move bytes: each makes a ``Request`` from what it parsed,
calls the pipeline, and writes the ``Answer``; both map errors (``server.error_of``), record
request metrics and carry the request id (``log.REQUEST_ID``) the same way.

Nothing here imports a web framework.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, BinaryIO, NamedTuple, Protocol

Reader = Callable[[int], Awaitable[bytes]]
"""``readexactly(n)`` over a request body that streams."""


class Request:
    """A request whose head is read. *endpoint* is the role's (from its table), *route* its
    template (``/v1/blocks/{id}``, as metrics label it), *match* the template's ``{name}``
    values; *headers* are looked up by lower-case name; *length* is the ``Content-Length``
    (None: none). The body is in *body* when the pipeline's ``limit`` had it read whole, else
    *read* streams it. *grant* is what ``admit`` found (the caller, its rights)."""

    __slots__ = (
        "body",
        "endpoint",
        "grant",
        "headers",
        "id",
        "length",
        "match",
        "method",
        "query",
        "read",
        "route",
        "started",
    )

    def __init__(
        self,
        endpoint: Any,
        route: str,
        method: str,
        match: Mapping[str, str],
        query: Mapping[str, str],
        headers: Mapping[str, str],
        length: int | None,
        request_id: str,
    ) -> None:
        self.endpoint, self.route, self.method = endpoint, route, method
        self.match, self.query, self.headers, self.length = match, query, headers, length
        self.id = request_id
        self.body = b""
        self.read: Reader | None = None
        self.grant: Any = None
        self.started = time.perf_counter()


class FileRange(NamedTuple):
    """Bytes of an open file to answer with (closed by whoever sends them), and what to call
    once they are all sent."""

    file: BinaryIO
    start: int
    length: int
    sent: Callable[[], None]


class Answer(NamedTuple):
    status: int
    body: bytes
    content_type: str = "application/json"
    headers: Mapping[str, str] | None = None
    file: FileRange | None = None  # instead of body: a server that has sendfile sends it


class Pipeline(Protocol):
    def admit(self, request: Request) -> Awaitable[None] | None:
        """Refuse (raise) a request on its head, before its body is read; else set its
        ``grant``; or an awaitable that does, when that needs the store."""

    def limit(self, request: Request) -> int | None:
        """The most bytes of an admitted request's body read whole into ``body`` (more is a
        ``ProtocolError``); None: the body streams through ``read``, or is not wanted."""

    def serve(self, request: Request) -> Answer | Awaitable[Answer]:
        """The answer to an admitted request whose body is read (or streams), or an
        awaitable of it; a ``PydfsError`` is the caller's error."""

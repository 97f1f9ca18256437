"""The name node's API: how an endpoint is declared, and the one pipeline every call of one goes
through, whichever server read it (``pydfs.calls``). The endpoints themselves are one table
(``namenode.endpoints``).

Each endpoint authorises its caller on the request's head, before any of the body is read
(``admit``), bounds its body (``limit``), decodes it into the endpoint's declared type, calls
one domain method, and answers only once the commits it made or could have seen are durable
(``serve``). aiohttp's routes (``namenode.app``) and the fast path (``namenode.fastpath``) are
adapters over it. The same table drives the OpenAPI description, so neither can drift from the
routes; ``endpoint`` types each handler against its body and reply types, so mypy checks them.

Who may call what: ``user`` endpoints need a user's bearer token (``Authorization: Bearer``),
``admin`` ones an admin's, ``node`` ones the cluster secret's node credential
(``Authorization: Node``); ``open`` ones (health, the API description) need nothing.

A user's or admin's call that changes something and names its request (``X-Pydfs-Request``)
is applied once however often it is sent (``namenode.applied``).
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, TypeVar, overload

from pydfs import paths, tokens, wire
from pydfs.calls import Answer, Request
from pydfs.errors import PermissionDenied, ProtocolError, Unauthenticated
from pydfs.namenode.applied import Once, request_id
from pydfs.namenode.auth import User
from pydfs.server import decode_body

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

log = logging.getLogger("pydfs.namenode")

Access = Literal["user", "admin", "node", "open"]
B = TypeVar("B")
R = TypeVar("R")


@dataclass(slots=True)  # not frozen: a frozen dataclass's __init__ costs every call 1 µs
class Call(Generic[B]):
    """What a handler gets: the name node, the request's query and route parameters, its
    decoded body (None for an endpoint without one) and its caller."""

    nn: NameNode
    query: Mapping[str, str]
    match: Mapping[str, str]
    body: B
    user: User

    def q(self, name: str) -> str:
        value = self.query.get(name)
        if value is None:
            raise ProtocolError(f"missing query parameter {name!r}")
        return value

    def path(self, name: str = "path") -> str:
        return paths.normalize(self.q(name))


@dataclass(frozen=True)
class Endpoint:
    method: str
    route: str  # below wire.API
    access: Access
    handler: Callable[[Call[Any]], Awaitable[Any]]
    summary: str
    body: type | None = None
    reply: type | None = None
    params: tuple[str, ...] = ()  # query parameters (required ones first, "?" marks optional)
    waits: bool = False  # held while the name node waits for its data nodes after a start
    file: str | None = None  # the media type of a file its handler answers with (an Answer),
    # sent by aiohttp in constant memory; the fast path hands such an endpoint over


@overload
def endpoint(
    method: str,
    route: str,
    access: Access,
    handler: Callable[[Call[None]], Awaitable[R]],
    summary: str,
    body: None = None,
    reply: type[R] | None = None,
    *,
    params: tuple[str, ...] = (),
    waits: bool = False,
    file: str | None = None,
) -> Endpoint: ...


@overload
def endpoint(
    method: str,
    route: str,
    access: Access,
    handler: Callable[[Call[B]], Awaitable[R]],
    summary: str,
    body: type[B],
    reply: type[R] | None = None,
    *,
    params: tuple[str, ...] = (),
    waits: bool = False,
    file: str | None = None,
) -> Endpoint: ...


def endpoint(
    method: str,
    route: str,
    access: Access,
    handler: Callable[[Call[Any]], Awaitable[Any]],
    summary: str,
    body: type | None = None,
    reply: type | None = None,
    *,
    params: tuple[str, ...] = (),
    waits: bool = False,
    file: str | None = None,
) -> Endpoint:
    """An endpoint whose *handler* mypy checks against its *body* and *reply* types."""
    return Endpoint(method, route, access, handler, summary, body, reply, params, waits, file)


_NODE = User("datanode", admin=True)  # what a data node's calls run as (it never names a path)


def _bearer(authorization: str, scheme: str) -> str | None:
    kind, _, value = authorization.partition(" ")
    return value.strip() if kind.lower() == scheme.lower() and value.strip() else None


async def authenticate(nn: NameNode, authorization: str, access: Access) -> User:
    """The caller whose ``Authorization`` header is *authorization*, or
    ``Unauthenticated``/``PermissionDenied``."""
    who = caller(nn, authorization, access)
    return who if isinstance(who, User) else await who


def caller(nn: NameNode, authorization: str, access: Access) -> User | Awaitable[User]:
    """``authenticate``, answered at once when the store is not needed (open and node calls,
    a missing token)."""
    if access == "open":
        return User("anonymous")
    if access == "node":
        credential = _bearer(authorization, "Node")
        if credential is None:
            raise Unauthenticated("data node calls need the cluster secret")
        tokens.check_node_credential(nn.secret, credential)
        return _NODE
    token = _bearer(authorization, "Bearer")
    if token is None:
        raise Unauthenticated("no token given: run `pydfs login` (or pass token= to the SDK)")
    user = nn.users.known(token)
    if user is None:
        return _user(nn, token, access)
    if access == "admin" and not user.admin:
        raise PermissionDenied("only an admin may do this")
    return user


async def _user(nn: NameNode, token: str, access: Access) -> User:
    user = await nn.users.authenticate(token)
    if access == "admin" and not user.admin:
        raise PermissionDenied("only an admin may do this")
    return user


def body_limit(ep: Endpoint) -> int:
    return wire.MAX_REPORT_BODY if ep.access == "node" else wire.MAX_JSON_BODY


async def answer(
    nn: NameNode,
    ep: Endpoint,
    query: Mapping[str, str],
    match: Mapping[str, str],
    user: User,
    body: bytes,
) -> bytes:
    """The JSON answer to one call of *ep* by *user* (from ``authenticate``, before the body is
    read), or a ``PydfsError`` (``Pipeline.serve`` writes it out on its most common way)."""
    decoded = None if ep.body is None else decode_body(body, ep.body)
    return wire.encode(await ep.handler(Call(nn, query, match, decoded, user)))


class Pipeline:
    """Every endpoint's call, whichever server read it (``calls.Pipeline``). Durability is the
    store's: a change is durable before ``Store.write`` returns, and a read waits for the
    commits it may have seen (``store.interface``)."""

    def __init__(self, nn: NameNode) -> None:
        self.nn = nn
        self.once = Once(nn.store)

    def admit(self, request: Request) -> Awaitable[None] | None:
        ep: Endpoint = request.endpoint
        who = caller(self.nn, request.headers.get("authorization", ""), ep.access)
        if isinstance(who, User):
            request.grant = who
            return None
        return self._admit(request, who)

    @staticmethod
    async def _admit(request: Request, who: Awaitable[User]) -> None:
        request.grant = await who

    def limit(self, request: Request) -> int | None:
        ep: Endpoint = request.endpoint
        return None if ep.body is None else body_limit(ep)

    async def serve(self, request: Request) -> Answer:
        """The one way both servers, aiohttp and the fast path, carry out an endpoint. Strings
        reach the store checked: a body's by ``wire.decode``, a query's path by
        ``paths.normalize``, and a route's ids here (PostgreSQL's text holds no NUL)."""
        ep: Endpoint = request.endpoint
        if request.match and any("\0" in value for value in request.match.values()):
            raise ProtocolError("malformed request: a route parameter holds a NUL character")
        if ep.waits:
            await self.nn.started()
        if ep.file is not None:
            file: Answer = await ep.handler(
                Call(self.nn, request.query, request.match, None, request.grant)
            )
            return file
        rid = request.headers.get("x-pydfs-request")
        if rid is not None and ep.method != "GET" and ep.access in ("user", "admin"):
            user: User = request.grant
            return await self.once.serve(
                user.name,
                request_id(rid),
                lambda: answer(self.nn, ep, request.query, request.match, user, request.body),
            )
        # answer(), written out: one coroutine less on nearly every request
        decoded = None if ep.body is None else decode_body(request.body, ep.body)
        call = Call(self.nn, request.query, request.match, decoded, request.grant)
        return Answer(200, wire.encode(await ep.handler(call)))

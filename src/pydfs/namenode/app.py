"""The name node's HTTP API: one table of endpoints, each parsing, authorising and calling one
domain method. The same table drives authentication and the OpenAPI description, so neither can
drift from the routes.

Who may call what: ``user`` endpoints need a user's bearer token (``Authorization: Bearer``),
``admin`` ones an admin's, ``node`` ones the cluster secret's node credential
(``Authorization: Node``); ``open`` ones (health, the API description) need nothing.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from aiohttp import web

from pydfs import paths, tokens, wire
from pydfs.errors import PermissionDenied, ProtocolError, Unauthenticated
from pydfs.namenode.auth import User
from pydfs.server import decode_body, make_app, read_body

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

Access = Literal["user", "admin", "node", "open"]
Handler = Callable[["Call"], Any]


@dataclass(frozen=True)
class Call:
    """What a handler gets: the name node, the request's query and route parameters, its
    decoded body and its caller."""

    nn: NameNode
    query: Mapping[str, str]
    match: Mapping[str, str]
    body: Any
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
    handler: Handler
    summary: str
    body: type | None = None
    reply: type | None = None
    params: tuple[str, ...] = ()  # query parameters (required ones first, "?" marks optional)
    waits: bool = False  # held while the name node waits for its data nodes after a start


def _none(method: Callable[..., None], *args: Any) -> dict[str, Any]:
    """Call a method that answers nothing; the reply is an empty object."""
    method(*args)
    return {}


_NODE = User("datanode", admin=True)  # what a data node's calls run as (it never names a path)


ENDPOINTS: list[Endpoint] = [
    # --- namespace ---
    Endpoint(
        "GET",
        "/fs/stat",
        "user",
        lambda c: c.nn.namespace.stat(c.path(), c.user, read=c.query.get("read") == "1"),
        "Status of a file or directory, with its blocks (and read tokens with read=1).",
        reply=wire.FileStatus,
        params=("path", "read?"),
    ),
    Endpoint(
        "GET",
        "/fs/list",
        "user",
        lambda c: c.nn.namespace.listdir(c.path(), c.user),
        "The entries of a directory.",
        reply=wire.Listing,
        params=("path",),
    ),
    Endpoint(
        "POST",
        "/fs/mkdir",
        "user",
        lambda c: c.nn.namespace.mkdir(
            paths.normalize(c.body.path), c.user, parents=c.body.parents
        ),
        "Make a directory (with parents=true, and its missing parents).",
        wire.MkdirRequest,
        wire.FileStatus,
    ),
    Endpoint(
        "POST",
        "/fs/create",
        "user",
        lambda c: c.nn.namespace.create_file(
            paths.normalize(c.body.path), c.user, directory=paths.names_directory(c.body.path)
        ),
        "Create an empty file.",
        wire.PathRequest,
        wire.FileStatus,
    ),
    Endpoint(
        "POST",
        "/fs/delete",
        "user",
        lambda c: {
            "deleted_files": c.nn.namespace.delete(
                paths.normalize(c.body.path), c.user, recursive=c.body.recursive, type=c.body.type
            )
        },
        "Delete a file or directory.",
        wire.DeleteRequest,
    ),
    Endpoint(
        "POST",
        "/fs/copy",
        "user",
        lambda c: c.nn.namespace.copy(
            paths.normalize(c.body.src),
            None if c.body.dst is None else paths.normalize(c.body.dst),
            c.user,
            overwrite=c.body.overwrite,
        ),
        "Copy a file (sharing its blocks).",
        wire.CopyRequest,
        wire.FileStatus,
    ),
    Endpoint(
        "POST",
        "/fs/move",
        "user",
        lambda c: c.nn.namespace.move(
            paths.normalize(c.body.src),
            paths.normalize(c.body.dst),
            c.user,
            overwrite=c.body.overwrite,
            into=c.body.into,
        ),
        "Move or rename a file or directory.",
        wire.MoveRequest,
        wire.FileStatus,
    ),
    Endpoint(
        "POST",
        "/fs/chmod",
        "user",
        lambda c: {
            "changed": c.nn.namespace.chmod(
                paths.normalize(c.body.path), c.body.mode, c.user, recursive=c.body.recursive
            )
        },
        "Set permission bits (owner or admin).",
        wire.ChmodRequest,
    ),
    Endpoint(
        "POST",
        "/fs/chown",
        "user",
        lambda c: {
            "changed": c.nn.namespace.chown(
                paths.normalize(c.body.path),
                c.body.owner,
                c.body.group,
                c.user,
                recursive=c.body.recursive,
            )
        },
        "Change owner (admin) or group (owner, to a group it is in).",
        wire.ChownRequest,
    ),
    Endpoint(
        "POST",
        "/fs/times",
        "user",
        lambda c: c.nn.namespace.set_mtime(paths.normalize(c.body.path), c.body.mtime, c.user),
        "Set the modification time (owner, admin, or whoever may write it).",
        wire.TimesRequest,
        wire.FileStatus,
    ),
    Endpoint(
        "POST",
        "/fs/setrep",
        "user",
        lambda c: {"files": c.nn.setrep(paths.normalize(c.body.path), c.body.replication, c.user)},
        "Set the replication factor of a file or of every file below a directory.",
        wire.SetReplicationRequest,
    ),
    Endpoint(
        "POST",
        "/fs/format",
        "admin",
        lambda c: c.nn.format(c.user),
        "Wipe the file system (initialize).",
        reply=wire.FormatReply,
    ),
    # --- uploads ---
    Endpoint(
        "POST",
        "/uploads",
        "user",
        lambda c: c.nn.uploads.start(c.body, c.user),
        "Start writing a file: a lease, and the first block's targets and write token.",
        wire.UploadRequest,
        wire.UploadGrant,
        waits=True,
    ),
    Endpoint(
        "POST",
        "/uploads/batch",
        "user",
        lambda c: c.nn.uploads.start_batch(c.body, c.user),
        "Leases for several files at once, each with its first block; commits name the files.",
        wire.UploadBatchRequest,
        wire.UploadBatch,
        waits=True,
    ),
    Endpoint(
        "GET",
        "/uploads",
        "admin",
        lambda c: c.nn.uploads.listing(),
        "Every upload not committed yet: whose, where to, how old, how much it was granted.",
        reply=wire.UploadList,
    ),
    Endpoint(
        "POST",
        "/uploads/{id}/blocks",
        "user",
        lambda c: c.nn.uploads.allocate(c.match["id"], c.body, c.user),
        "Another block for an upload.",
        wire.BlockAllocRequest,
        wire.BlockGrant,
    ),
    Endpoint(
        "POST",
        "/uploads/{id}/commit",
        "user",
        lambda c: c.nn.uploads.commit(c.match["id"], c.body, c.user),
        "Make the file name exactly the blocks written.",
        wire.CommitRequest,
        wire.FileStatus,
    ),
    Endpoint(
        "POST",
        "/uploads/{id}/renew",
        "user",
        lambda c: _none(c.nn.uploads.renew, c.match["id"], c.user),
        "Extend an upload's lease.",
    ),
    Endpoint(
        "DELETE",
        "/uploads/{id}",
        "user",
        lambda c: _none(c.nn.uploads.abort, c.match["id"], c.user),
        "Abandon an upload.",
    ),
    Endpoint(
        "POST",
        "/blocks/corrupt",
        "user",
        lambda c: _none(c.nn.suspect, c.body, c.user),
        "Report a replica that failed verification (its node then checks it).",
        wire.CorruptReplica,
    ),
    # --- cluster ---
    Endpoint(
        "GET",
        "/cluster/space",
        "user",
        lambda c: c.nn.membership.space(c.nn.namespace.replication),
        "Capacity and use.",
        reply=wire.Space,
    ),
    Endpoint(
        "GET",
        "/cluster/datanodes",
        "user",
        lambda c: wire.DataNodeList(c.nn.membership.states()),
        "Every data node.",
        reply=wire.DataNodeList,
    ),
    Endpoint(
        "GET",
        "/fsck",
        "admin",
        lambda c: c.nn.fsck(
            paths.normalize(c.query.get("path", "/")),
            files=c.query.get("files") == "1",
        ),
        "Block health below a path.",
        reply=wire.FsckReport,
        params=("path?", "files?"),
    ),
    Endpoint(
        "POST",
        "/cluster/decommission",
        "admin",
        lambda c: c.nn.decommission(c.body.node),
        "Move every block off a data node.",
        wire.NodeRequest,
        wire.DataNodeState,
    ),
    Endpoint(
        "POST",
        "/cluster/recommission",
        "admin",
        lambda c: c.nn.decommission(c.body.node, undo=True),
        "Cancel a decommission.",
        wire.NodeRequest,
        wire.DataNodeState,
    ),
    # --- users ---
    Endpoint(
        "GET",
        "/auth/whoami",
        "user",
        lambda c: c.user.info(),
        "The caller.",
        reply=wire.UserInfo,
    ),
    Endpoint(
        "GET",
        "/users",
        "admin",
        lambda c: wire.UserList(c.nn.users.all()),
        "Every user.",
        reply=wire.UserList,
    ),
    Endpoint(
        "POST",
        "/users",
        "admin",
        lambda c: c.nn.add_user(c.body),
        "Add a user (and its home directory); the reply holds its token, shown once.",
        wire.NewUser,
        wire.UserToken,
    ),
    Endpoint(
        "POST",
        "/users/remove",
        "admin",
        lambda c: _none(c.nn.users.remove, c.body.name),
        "Remove a user: its token stops working; its files stay.",
        wire.UserName,
    ),
    Endpoint(
        "POST",
        "/users/reset-token",
        "admin",
        lambda c: wire.UserToken(c.body.name, c.nn.users.reset_token(c.body.name)),
        "Give a user a new token; the old one stops working.",
        wire.UserName,
        wire.UserToken,
    ),
    # --- data nodes ---
    Endpoint(
        "POST",
        "/datanodes/heartbeat",
        "node",
        lambda c: c.nn.heartbeat(c.body),
        "A data node's heartbeat; the reply carries its work.",
        wire.Heartbeat,
        wire.HeartbeatReply,
    ),
    Endpoint(
        "POST",
        "/datanodes/report",
        "node",
        lambda c: c.nn.block_report(c.body),
        "A data node's full block report.",
        wire.BlockReport,
        wire.HeartbeatReply,
    ),
]


def _bearer(authorization: str, scheme: str) -> str | None:
    kind, _, value = authorization.partition(" ")
    return value.strip() if kind.lower() == scheme.lower() and value.strip() else None


def authenticate(nn: NameNode, authorization: str, access: Access) -> User:
    """The caller whose ``Authorization`` header is *authorization*, or
    ``Unauthenticated``/``PermissionDenied``."""
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
    user = nn.users.authenticate(token)
    if access == "admin" and not user.admin:
        raise PermissionDenied("only an admin may do this")
    return user


def body_limit(ep: Endpoint) -> int:
    return wire.MAX_REPORT_BODY if ep.access == "node" else wire.MAX_JSON_BODY


def answer(
    nn: NameNode,
    ep: Endpoint,
    query: Mapping[str, str],
    match: Mapping[str, str],
    user: User,
    body: bytes,
) -> bytes:
    """The JSON answer to one call of *ep* by *user* (from ``authenticate``, before the body is
    read), or a ``PydfsError``: the one way both servers, aiohttp and the fast path, carry out an
    endpoint."""
    decoded = None if ep.body is None else decode_body(body, ep.body)
    return wire.encode(ep.handler(Call(nn, query, match, decoded, user)))


class Durability:
    """No answer leaves before the commits it made or could have seen are on disk: one fsync
    covers every request waiting at that moment (group commit). Requests of both servers count
    as in flight, so that a lone one may fsync inline (``Store.flush``)."""

    def __init__(self, nn: NameNode) -> None:
        self.store = nn.store
        self.in_flight = 0

    async def settle(self) -> None:
        """Called by a request that was counted in ``in_flight``, once its answer is made."""
        try:
            if self.store.dirty:
                await self.store.flush(alone=self.in_flight == 1)
        finally:
            self.in_flight -= 1


DURABILITY = web.AppKey("pydfs_durability", Durability)


def _handler(nn: NameNode, ep: Endpoint) -> Callable[[web.Request], Awaitable[web.Response]]:
    async def handle(request: web.Request) -> web.Response:
        user = authenticate(nn, request.headers.get("Authorization", ""), ep.access)
        body = b"" if ep.body is None else await read_body(request, body_limit(ep))
        if ep.waits:
            await nn.started()
        result = answer(nn, ep, request.query, request.match_info, user, body)
        return web.Response(body=result, content_type="application/json")

    return handle


def build(nn: NameNode) -> web.Application:
    from pydfs import metrics
    from pydfs.namenode import openapi
    from pydfs.web import routes as web_routes

    app = make_app()
    durability = app[DURABILITY] = Durability(nn)

    @web.middleware
    async def durable(
        request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
    ) -> web.StreamResponse:
        durability.in_flight += 1
        try:
            return await handler(request)
        finally:
            await durability.settle()

    app.middlewares.append(durable)  # inside the error middleware: errors wait too
    for ep in ENDPOINTS:
        app.router.add_route(ep.method, f"{wire.API}{ep.route}", _handler(nn, ep))
    spec = openapi.describe(ENDPOINTS)

    async def describe(request: web.Request) -> web.Response:
        return web.Response(body=spec, content_type="application/json")

    app.router.add_get(openapi.ROUTE, describe)
    web_routes.setup(app, nn)
    metrics.instrument(app, "namenode", nn)
    return app

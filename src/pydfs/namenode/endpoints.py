"""The name node's endpoints, in one table: each one's method, route, who may call it, its
handler, and its body and reply types (``api.endpoint``, which mypy checks the handler against).

A handler reads its call (``api.Call``) and calls one domain method. The servers
(``namenode.app``, ``namenode.fastpath``) route by this table, and the OpenAPI description
(``namenode.openapi``) is made from it.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeVar

from pydfs import paths, wire
from pydfs.errors import InvalidArgument
from pydfs.namenode.api import Call, Endpoint, endpoint

if TYPE_CHECKING:
    from pydfs.namenode import NameNode

R = TypeVar("R")


async def _none(method: Callable[..., Awaitable[None]], *args: Any) -> dict[str, Any]:
    """Call a method that answers nothing; the reply is an empty object."""
    await method(*args)
    return {}


async def _field(name: str, value: Awaitable[Any]) -> dict[str, Any]:
    """A reply that is one field."""
    return {name: await value}


async def _ready(value: R) -> R:
    """The answer of a handler that needs nothing from the store."""
    return value


async def _delete_many(c: Call[wire.DeleteManyRequest]) -> wire.DeleteManyReply:
    req = c.body
    if len(req.paths) > wire.MAX_DELETE_BATCH:
        raise InvalidArgument(f"a batch deletes at most {wire.MAX_DELETE_BATCH} paths")
    targets = [paths.normalize(p) for p in req.paths]
    files, missing = await c.nn.namespace.delete_many(
        targets, c.user, recursive=req.recursive, type=req.type
    )
    return wire.DeleteManyReply(files, missing)


async def _space(nn: NameNode) -> wire.Space:
    return nn.membership.space(nn.namespace.replication)


async def _user_list(nn: NameNode) -> wire.UserList:
    return wire.UserList(await nn.users.all())


async def _new_token(nn: NameNode, name: str) -> wire.UserToken:
    return wire.UserToken(name, await nn.users.reset_token(name))


ENDPOINTS: list[Endpoint] = [
    # --- namespace ---
    endpoint(
        "GET",
        "/fs/stat",
        "user",
        lambda c: c.nn.namespace.stat(c.path(), c.user, read=c.query.get("read") == "1"),
        "Status of a file or directory, with its blocks (and read tokens with read=1).",
        reply=wire.FileStatus,
        params=("path", "read?"),
    ),
    endpoint(
        "GET",
        "/fs/checksum",
        "user",
        lambda c: c.nn.namespace.checksum(c.path(), c.user),
        "The SHA-256 of a file's content, as its writer recorded it (null if none was).",
        reply=wire.FileChecksum,
        params=("path",),
    ),
    endpoint(
        "GET",
        "/fs/list",
        "user",
        lambda c: c.nn.namespace.listdir(c.path(), c.user),
        "The entries of a directory.",
        reply=wire.Listing,
        params=("path",),
    ),
    endpoint(
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
    endpoint(
        "POST",
        "/fs/symlink",
        "user",
        lambda c: c.nn.namespace.symlink(paths.normalize(c.body.path), c.body.target, c.user),
        "Make a symbolic link to target (any text, stored as given and never followed).",
        wire.SymlinkRequest,
        wire.FileStatus,
    ),
    endpoint(
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
    endpoint(
        "POST",
        "/fs/delete",
        "user",
        lambda c: _field(
            "deleted_files",
            c.nn.namespace.delete(
                paths.normalize(c.body.path), c.user, recursive=c.body.recursive, type=c.body.type
            ),
        ),
        "Delete a file or directory.",
        wire.DeleteRequest,
    ),
    endpoint(
        "POST",
        "/fs/delete-many",
        "user",
        _delete_many,
        f"Delete up to {wire.MAX_DELETE_BATCH} files or directories in one transaction: all "
        "but the missing ones, or none.",
        wire.DeleteManyRequest,
        wire.DeleteManyReply,
    ),
    endpoint(
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
    endpoint(
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
    endpoint(
        "POST",
        "/fs/chmod",
        "user",
        lambda c: _field(
            "changed",
            c.nn.attributes.chmod(
                paths.normalize(c.body.path), c.body.mode, c.user, recursive=c.body.recursive
            ),
        ),
        "Set permission bits (owner or admin).",
        wire.ChmodRequest,
    ),
    endpoint(
        "POST",
        "/fs/chown",
        "user",
        lambda c: _field(
            "changed",
            c.nn.attributes.chown(
                paths.normalize(c.body.path),
                c.body.owner,
                c.body.group,
                c.user,
                recursive=c.body.recursive,
            ),
        ),
        "Change owner (admin) or group (owner, to a group it is in).",
        wire.ChownRequest,
    ),
    endpoint(
        "POST",
        "/fs/times",
        "user",
        lambda c: c.nn.attributes.set_mtime(paths.normalize(c.body.path), c.body.mtime, c.user),
        "Set the modification time (owner, admin, or whoever may write it).",
        wire.TimesRequest,
        wire.FileStatus,
    ),
    endpoint(
        "POST",
        "/fs/setrep",
        "user",
        lambda c: _field(
            "files", c.nn.setrep(paths.normalize(c.body.path), c.body.replication, c.user)
        ),
        "Set the replication factor of a file or of every file below a directory.",
        wire.SetReplicationRequest,
    ),
    endpoint(
        "POST",
        "/fs/format",
        "admin",
        lambda c: c.nn.format(c.user),
        "Wipe the file system (initialize).",
        reply=wire.FormatReply,
    ),
    # --- uploads ---
    endpoint(
        "POST",
        "/uploads",
        "user",
        lambda c: c.nn.uploads.start(c.body, c.user),
        "Start writing a file: a lease, and the first block's targets and write token.",
        wire.UploadRequest,
        wire.UploadGrant,
        waits=True,
    ),
    endpoint(
        "POST",
        "/uploads/batch",
        "user",
        lambda c: c.nn.uploads.start_batch(c.body, c.user),
        "Leases for several files at once, each with its first block; commits name the files.",
        wire.UploadBatchRequest,
        wire.UploadBatch,
        waits=True,
    ),
    endpoint(
        "GET",
        "/uploads",
        "admin",
        lambda c: c.nn.uploads.listing(),
        "Every upload not committed yet: whose, where to, how old, how much it was granted.",
        reply=wire.UploadList,
    ),
    endpoint(
        "POST",
        "/uploads/{id}/blocks",
        "user",
        lambda c: c.nn.uploads.allocate(c.match["id"], c.body, c.user),
        "Another block for an upload.",
        wire.BlockAllocRequest,
        wire.BlockGrant,
    ),
    endpoint(
        "POST",
        "/uploads/{id}/commit",
        "user",
        lambda c: c.nn.uploads.commit(c.match["id"], c.body, c.user),
        "Make the file name exactly the blocks written.",
        wire.CommitRequest,
        wire.FileStatus,
    ),
    endpoint(
        "POST",
        "/uploads/commit-many",
        "user",
        lambda c: c.nn.uploads.commit_many(c.body, c.user),
        f"Commit up to {wire.MAX_COMMIT_BATCH} uploads in one transaction, each file on its "
        "own: the reply holds each one's status or error, in order; every upload named is "
        "closed.",
        wire.CommitManyRequest,
        wire.CommitManyReply,
    ),
    endpoint(
        "POST",
        "/uploads/{id}/renew",
        "user",
        lambda c: _none(c.nn.uploads.renew, c.match["id"], c.user),
        "Extend an upload's lease.",
    ),
    endpoint(
        "DELETE",
        "/uploads/{id}",
        "user",
        lambda c: _none(c.nn.uploads.abort, c.match["id"], c.user),
        "Abandon an upload.",
    ),
    endpoint(
        "POST",
        "/blocks/corrupt",
        "user",
        lambda c: _none(c.nn.suspect, c.body, c.user),
        "Report a replica that failed verification (its node then checks it).",
        wire.CorruptReplica,
    ),
    # --- cluster ---
    endpoint(
        "GET",
        "/cluster/space",
        "user",
        lambda c: _space(c.nn),
        "Capacity and use.",
        reply=wire.Space,
    ),
    endpoint(
        "GET",
        "/cluster/namenode",
        "user",
        lambda c: _ready(c.nn.state()),
        "This name node: whether it leads the background work, and its metadata store.",
        reply=wire.NameNodeState,
    ),
    endpoint(
        "GET",
        "/cluster/datanodes",
        "user",
        lambda c: _ready(wire.DataNodeList(c.nn.membership.states())),
        "Every data node.",
        reply=wire.DataNodeList,
    ),
    endpoint(
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
    endpoint(
        "POST",
        "/fsck/delete-orphans",
        "admin",
        lambda c: c.nn.finish_restore(),
        "After a restore of the metadata: let data nodes delete the blocks no file names "
        "(those written after the backup), kept until now.",
        reply=wire.Orphans,
    ),
    endpoint(
        "POST",
        "/admin/backup",
        "admin",
        lambda c: c.nn.backups.download(),
        f"A consistent copy of the metadata (SQLite), taken now; its SHA-256 is in "
        f"{wire.H_SHA256}.",
        file="application/vnd.sqlite3",
    ),
    endpoint(
        "POST",
        "/cluster/decommission",
        "admin",
        lambda c: c.nn.decommission(c.body.node),
        "Move every block off a data node.",
        wire.NodeRequest,
        wire.DataNodeState,
    ),
    endpoint(
        "POST",
        "/cluster/recommission",
        "admin",
        lambda c: c.nn.decommission(c.body.node, undo=True),
        "Cancel a decommission.",
        wire.NodeRequest,
        wire.DataNodeState,
    ),
    # --- users ---
    endpoint(
        "GET",
        "/auth/whoami",
        "user",
        lambda c: _ready(c.user.info()),
        "The caller.",
        reply=wire.UserInfo,
    ),
    endpoint(
        "GET",
        "/users",
        "admin",
        lambda c: _user_list(c.nn),
        "Every user.",
        reply=wire.UserList,
    ),
    endpoint(
        "POST",
        "/users",
        "admin",
        lambda c: c.nn.add_user(c.body),
        "Add a user (and its home directory); the reply holds its token, shown once.",
        wire.NewUser,
        wire.UserToken,
    ),
    endpoint(
        "POST",
        "/users/remove",
        "admin",
        lambda c: _none(c.nn.users.remove, c.body.name),
        "Remove a user: its token stops working; its files stay.",
        wire.UserName,
    ),
    endpoint(
        "POST",
        "/users/reset-token",
        "admin",
        lambda c: _new_token(c.nn, c.body.name),
        "Give a user a new token; the old one stops working.",
        wire.UserName,
        wire.UserToken,
    ),
    # --- data nodes ---
    endpoint(
        "POST",
        "/datanodes/heartbeat",
        "node",
        lambda c: c.nn.heartbeat(c.body),
        "A data node's heartbeat; the reply carries its work.",
        wire.Heartbeat,
        wire.HeartbeatReply,
    ),
    endpoint(
        "POST",
        "/datanodes/report",
        "node",
        lambda c: c.nn.block_report(c.body),
        "A data node's full block report.",
        wire.BlockReport,
        wire.HeartbeatReply,
    ),
]

"""Commands for keeping a cluster healthy: ``setrep``, ``fsck`` and ``admin``."""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

import msgspec

from pydfs import wire
from pydfs.cli import account, render
from pydfs.cli.context import Context, confirm
from pydfs.errors import AlreadyExists, InvalidArgument, NotFound, PydfsError


async def setrep(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.path(args.path)
    files = await ctx.client.setrep(path, args.replication)
    answer: dict[str, object] = {"files": files}
    live = (await ctx.client.space()).live_nodes
    if args.replication > live:
        answer["warning"] = (
            f"replication {args.replication} is more than the {live} live data node(s): "
            "the blocks stay under-replicated (fsck: DEGRADED) until more data nodes join"
        )
        ctx.warn(str(answer["warning"]))
    ctx.out(
        f"replication of {render.count(files, 'file')} under {path} set to {args.replication}",
        answer,
    )
    return 0


async def fsck(ctx: Context, args: argparse.Namespace) -> int:
    """Exits 1 unless the file system is HEALTHY, as scripts of ``hdfs fsck`` expect."""
    if args.delete_orphans:
        return await delete_orphans(ctx, args)
    report = await ctx.client.fsck(ctx.path(args.path or "/"), files=args.files)
    report.file_details.sort(key=lambda f: f.path)
    ctx.out(render.fsck(report), {**msgspec.to_builtins(report), "status": report.status})
    return 0 if report.status == "HEALTHY" else 1


async def delete_orphans(ctx: Context, args: argparse.Namespace) -> int:
    report = await ctx.client.fsck("/")
    kept = report.restore
    if kept is not None and not confirm(
        f"This lets the data nodes delete {render.orphans(kept)}: the data of files written "
        "after the backup. Continue?",
        args.yes,
        "fsck --delete-orphans deletes the data of files written after the backup: "
        "pass --yes to confirm",
    ):
        print("aborted", file=sys.stderr)
        return 1
    gone = await ctx.client.delete_orphans()
    away = [n.id for n in await ctx.client.datanodes() if n.state != "live"]
    answer: dict[str, object] = msgspec.to_builtins(gone)
    if away:
        answer["warning"] = (
            f"data node(s) not live now: {', '.join(away)}; blocks they hold that no file "
            "names are deleted when they return"
        )
        ctx.warn(str(answer["warning"]))
    ctx.out(
        f"restore finished: {render.orphans(gone)} no file names go as data nodes report",
        answer,
    )
    return 0


async def backup(ctx: Context, args: argparse.Namespace) -> int:
    """Written to a temporary file beside DEST, renamed into place once whole and checked."""
    if args.dest == "-":
        info = await ctx.client.backup(sys.stdout.buffer)
        sys.stdout.buffer.flush()
        if not ctx.quiet:
            print(
                f"metadata backup: {render.size(info.size)}, sha256 {info.sha256}", file=sys.stderr
            )
        return 0
    dest = Path(args.dest)
    if dest.is_dir():
        dest = dest / f"pydfs-metadata-{time.strftime('%Y%m%dT%H%M%S')}.sqlite3"
    if not dest.parent.is_dir():
        raise NotFound(f"no directory {dest.parent} to write the backup in")
    if dest.exists() and not args.force:
        raise AlreadyExists(f"{dest} exists: pass -f to replace it")
    tmp = dest.with_name(f".{dest.name}.{os.getpid()}.partial")
    try:
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with open(fd, "wb") as out:
            info = await ctx.client.backup(out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, dest)
    except PydfsError:  # many are OSErrors too
        raise
    except OSError as exc:
        raise InvalidArgument(f"cannot write the backup to {dest}: {exc.strerror or exc}") from None
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
    ctx.out(
        f"metadata backup taken {render.when(info.taken)}: {render.size(info.size)} written "
        f"to {dest} (schema {info.schema}, sha256 {info.sha256})",
        {**msgspec.to_builtins(info), "path": str(dest)},
    )
    return 0


async def report(ctx: Context, args: argparse.Namespace) -> int:
    """The name node (its lead, its store), the data nodes and the space; ``--json`` keeps its
    shape of a list of data nodes (the name node's state is ``GET /v1/cluster/namenode``)."""
    namenode = await ctx.client.namenode_state()
    nodes = await ctx.client.datanodes()
    space = await ctx.client.space()
    text = "\n".join(
        [render.namenode(namenode), render.datanodes(nodes, time.time()), render.space(space)]
    )
    ctx.out(text, nodes)
    return 0


async def uploads(ctx: Context, args: argparse.Namespace) -> int:
    listing = await ctx.client.rpc.call("GET", "/uploads", reply=wire.UploadList)
    ctx.out(render.uploads(listing), listing)
    return 0


async def decommission(ctx: Context, args: argparse.Namespace) -> int:
    state = await ctx.client.decommission(args.node, undo=args.undo)
    ctx.out(f"{state.id}: {state.admin_state}", state)
    return 0


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "setrep",
        help="change the replication factor of files",
        description="Change the replication factor of a file, or of every file below a "
        "directory; the cluster then copies or trims replicas to match. A factor above the "
        "number of live data nodes is accepted, with a warning.",
    )
    p.add_argument("replication", type=int, help="replicas per block")
    p.add_argument("path", help="a file, or a directory (every file below it)")
    p.set_defaults(handler=setrep)

    p = sub.add_parser(
        "fsck",
        help="block health: healthy, under-replicated, missing, corrupt",
        description="Block health below PATH (default /). Exits 0 when HEALTHY, 1 otherwise "
        "(DEGRADED or MISSING BLOCKS).",
    )
    p.add_argument("path", nargs="?", help="directory or file (default /)")
    p.add_argument("--files", action="store_true", help="one line per file")
    p.add_argument(
        "--delete-orphans",
        action="store_true",
        help="after a restore of the metadata: let data nodes delete the blocks no file names "
        "(the data of files written after the backup), kept until now; asks first",
    )
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")
    p.set_defaults(handler=fsck)

    admin = sub.add_parser("admin", help="cluster administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    p = admin_sub.add_parser("report", help="each data node: state, capacity, use, blocks")
    p.set_defaults(handler=report)
    p = admin_sub.add_parser("uploads", help="open uploads: user, path, age, blocks granted")
    p.set_defaults(handler=uploads)
    p = admin_sub.add_parser(
        "backup",
        help="download a consistent copy of the metadata (SQLite), taken while serving",
        description="Have the name node take a consistent copy of its metadata (SQLite's "
        "backup API; requests go on meanwhile), check it, and send it: it is written to DEST "
        "whole or not at all, mode 0600 (it holds every token's hash), once its SHA-256 "
        "matches. Restore it with `pydfs namenode restore`, the name node stopped. The "
        "cluster secret (cluster.secret in the name node's data directory) is not in it: keep "
        "a copy of that too. Metadata on PostgreSQL is backed up with PostgreSQL's tools.",
    )
    p.add_argument("dest", help="a file, a directory (a dated name in it), or - for stdout")
    p.add_argument("-f", "--force", action="store_true", help="replace DEST if it exists")
    p.set_defaults(handler=backup)
    p = admin_sub.add_parser("decommission", help="drain a data node before removing it")
    p.add_argument("node", help="data node id (see `pydfs admin report`)")
    p.add_argument("--undo", action="store_true", help="put the node back in service")
    p.set_defaults(handler=decommission)
    account.add_user_parsers(admin_sub)

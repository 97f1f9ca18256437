"""Commands for keeping a cluster healthy: ``setrep``, ``fsck`` and ``admin``."""

from __future__ import annotations

import argparse
import time

import msgspec

from pydfs import wire
from pydfs.cli import account, render
from pydfs.cli.context import Context


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
    report = await ctx.client.fsck(ctx.path(args.path or "/"), files=args.files)
    report.file_details.sort(key=lambda f: f.path)
    ctx.out(render.fsck(report), {**msgspec.to_builtins(report), "status": report.status})
    return 0 if report.status == "HEALTHY" else 1


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
    p.set_defaults(handler=fsck)

    admin = sub.add_parser("admin", help="cluster administration")
    admin_sub = admin.add_subparsers(dest="admin_command", required=True)
    p = admin_sub.add_parser("report", help="each data node: state, capacity, use, blocks")
    p.set_defaults(handler=report)
    p = admin_sub.add_parser("uploads", help="open uploads: user, path, age, blocks granted")
    p.set_defaults(handler=uploads)
    p = admin_sub.add_parser("decommission", help="drain a data node before removing it")
    p.add_argument("node", help="data node id (see `pydfs admin report`)")
    p.add_argument("--undo", action="store_true", help="put the node back in service")
    p.set_defaults(handler=decommission)
    account.add_user_parsers(admin_sub)

"""Looking around, as ``hdfs dfs`` and coreutils users do: ``du``, ``df``, ``count``, ``find``
and ``test``."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from pydfs import paths, wire
from pydfs.cli import render
from pydfs.cli.context import Context
from pydfs.errors import NotFound

if TYPE_CHECKING:
    from pydfs.client import tree


def _size(n: int, human: bool) -> str:
    return render.size(n) if human else str(n)


async def du(ctx: Context, args: argparse.Namespace) -> int:
    from pydfs.client import tree

    operands = await ctx.expand(args.paths or ["."])
    found: list[tree.Usage] = []
    for path in operands:
        with ctx.carry_on():
            if args.summary or (await ctx.client.info(path)).type != "dir":
                found.append(await tree.usage(ctx.client, path, ctx.report))
            else:
                for entry in sorted(await ctx.client.ls(path), key=lambda e: e.name):
                    found.append(await tree.usage(ctx.client, entry.path, ctx.report))
    width = max((len(_size(u.size, args.human)) for u in found), default=0)
    lines = [
        f"{_size(u.size, args.human):>{width}}  {_size(u.raw, args.human):>{width}}  {u.path}"
        for u in found
    ]
    # -s of one plain path answers an object; without -s, du lists entries, as ls does
    ctx.answer("\n".join(lines), operands.one and args.summary, found)
    return 0


async def df(ctx: Context, args: argparse.Namespace) -> int:
    space = await ctx.client.space()
    used = space.raw_capacity - space.raw_free
    percent = f"{100 * used / space.raw_capacity:.0f}%" if space.raw_capacity else "-"
    h = args.human
    rows = [
        ("Filesystem", "Size", "Used", "Available", "Use%"),
        (
            ctx.client.namenode,
            _size(space.raw_capacity, h),
            _size(used, h),
            _size(space.raw_free, h),
            percent,
        ),
    ]
    widths = [max(len(r[i]) for r in rows) for i in range(5)]
    lines = [
        "  ".join(
            f"{c:<{w}}" if i == 0 else f"{c:>{w}}"
            for i, (c, w) in enumerate(zip(r, widths, strict=True))
        )
        for r in rows
    ]
    lines.append(
        f"(raw bytes on {render.count(space.live_nodes, 'live data node')}; about "
        f"{_size(space.usable, h)} of files fit at replication {space.replication})"
    )
    ctx.out("\n".join(lines), space)
    return 0


async def count(ctx: Context, args: argparse.Namespace) -> int:
    from pydfs.client import tree

    operands = await ctx.expand(args.paths or ["."])
    found = []
    for path in operands:
        with ctx.carry_on():
            found.append(await tree.usage(ctx.client, path, ctx.report))
    lines = [
        f"{u.directories:>12} {u.files:>12} {_size(u.size, args.human):>16} {u.path}" for u in found
    ]
    if not args.quiet_header:
        lines.insert(0, f"{'DIR_COUNT':>12} {'FILE_COUNT':>12} {'CONTENT_SIZE':>16} PATHNAME")
    ctx.answer("\n".join(lines), operands.one, found)
    return 0


async def find(ctx: Context, args: argparse.Namespace) -> int:
    from pydfs.client import tree

    found: list[str] = []
    for top in await ctx.expand(args.paths or ["."]):
        candidates: list[wire.FileStatus] = []
        with ctx.carry_on():
            candidates.append(status := await ctx.client.info(top))
            if status.type == "dir":
                walked = tree.walk(ctx.client, top, ctx.report)
                candidates += [e async for _, entries in walked for e in entries]
        for e in candidates:
            name = paths.basename(e.path) or "/"
            if args.name is not None and not tree.matches(name, args.name):
                continue
            if args.type is not None and (e.type == "dir") != (args.type == "d"):
                continue
            found.append(e.path)
    ctx.out("\n".join(found), found)
    return 0


async def test(ctx: Context, args: argparse.Namespace) -> int:
    """Exit 0 when the test holds, 1 when it does not (as ``test`` and ``hdfs dfs -test``)."""
    try:
        status = await ctx.client.info(ctx.path(args.path))
    except NotFound:
        result = False
    else:
        result = {
            "e": True,
            "d": status.type == "dir",
            "f": status.type == "file",
            "s": status.type == "file" and status.size > 0,
            "z": status.type == "file" and status.size == 0,
        }[args.test]
    ctx.out("", {"path": ctx.path(args.path), "test": args.test, "result": result})
    return 0 if result else 1


def human(p: argparse.ArgumentParser) -> None:
    """``-h`` for sizes as 1.5 MiB, as in coreutils and hdfs dfs; help is ``--help`` then."""
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument(
        "-h", "--human-readable", dest="human", action="store_true", help="sizes as 1.5 MiB"
    )


def add_parsers(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    p = sub.add_parser(
        "du",
        add_help=False,
        help="space used below each path (hdfs dfs -du)",
        description="Bytes of content, then bytes with every replica, of each entry of a "
        "directory (with -s, of the path itself).",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="default: the working directory")
    p.add_argument("-s", "--summary", action="store_true", help="one total per path")
    human(p)
    p.set_defaults(handler=du)

    p = sub.add_parser(
        "df",
        add_help=False,
        help="space of the cluster (hdfs dfs -df)",
        description="Raw capacity, used and free bytes of the live data nodes.",
    )
    human(p)
    p.set_defaults(handler=df)

    p = sub.add_parser(
        "count",
        add_help=False,
        help="directories, files and bytes below each path (hdfs dfs -count)",
        description="DIR_COUNT FILE_COUNT CONTENT_SIZE PATHNAME, as hdfs dfs -count prints.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="default: the working directory")
    human(p)
    p.add_argument("--no-header", dest="quiet_header", action="store_true", help="no header")
    p.set_defaults(handler=count)

    p = sub.add_parser(
        "find",
        help="paths below PATH by name or type",
        description="Every path below PATH (itself included) whose name matches -name (a "
        "glob; quote it) and whose type is -type.",
    )
    p.add_argument("paths", nargs="*", metavar="PATH", help="default: the working directory")
    p.add_argument("-name", "--name", metavar="GLOB", help="names matching GLOB, e.g. '*.csv'")
    p.add_argument("-type", "--type", choices=("f", "d"), help="f: files, d: directories")
    p.set_defaults(handler=find)

    p = sub.add_parser(
        "test",
        help="exit 0 if PATH exists (-e), is a directory (-d), a file (-f)...",
        description="Prints nothing: the exit code answers (0 yes, 1 no), as hdfs dfs -test.",
    )
    which = p.add_mutually_exclusive_group(required=True)
    for flag, meaning in (
        ("e", "exists"),
        ("d", "is a directory"),
        ("f", "is a file"),
        ("s", "is a file of more than 0 bytes"),
        ("z", "is a file of 0 bytes"),
    ):
        which.add_argument(
            f"-{flag}", dest="test", action="store_const", const=flag, help=f"PATH {meaning}"
        )
    p.add_argument("path", help="the path to test")
    p.set_defaults(handler=test)

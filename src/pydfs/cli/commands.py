"""The twelve client commands (numbers 0-11, names and aliases fixed), plus ``pwd``.

Each handler gets a ``Context`` (the client, the remote working directory, output settings) and
the parsed arguments, and returns an exit code. Errors are raised, and ``cli.main`` prints them.
Paths may be remote globs (quoted: ``pydfs rm '/logs/2026-*'``) wherever a command takes
several. A command given one plain path answers JSON as it always has; given several, or a
glob, a list.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass

from pydfs import paths, wire
from pydfs.cli import render, transfer
from pydfs.cli.context import Context, confirm, load_cwd, save_cwd
from pydfs.errors import (
    DirectoryNotEmpty,
    InvalidArgument,
    IsADirectory,
    NotADirectory,
    NotFound,
    PermissionDenied,
)

# --- the commands ----------------------------------------------------------------------------


async def initialize(ctx: Context, args: argparse.Namespace) -> int:
    if not confirm(
        f"This deletes every file and directory on {ctx.client.namenode}. Continue?",
        args.yes,
        "initialize wipes the whole file system: pass --yes to confirm",
    ):
        print("aborted", file=sys.stderr)
        return 1
    reply = await ctx.client.format()
    save_cwd(ctx.client, (await ctx.client.whoami()).home, previous=ctx.cwd)
    ctx.out(
        f"file system initialized: removed {render.count(reply.removed_files, 'file')} and "
        f"{render.count(reply.removed_blocks, 'block')}\n{render.space(reply.space)}",
        reply,
    )
    return 0


async def file_create(ctx: Context, args: argparse.Namespace) -> int:
    made = []
    for p in args.paths:
        with ctx.carry_on():
            made.append(await ctx.client.touch(ctx.file_path(p)))
    ctx.answer("", len(args.paths) == 1, made)
    return 0


async def link_create(ctx: Context, args: argparse.Namespace) -> int:
    if not args.symbolic:
        raise InvalidArgument("only symbolic links are kept (ln -s TARGET PATH)")
    made = await ctx.client.symlink(ctx.file_path(args.path), args.target)
    ctx.out("", made)
    return 0


async def file_delete(ctx: Context, args: argparse.Namespace) -> int:
    targets = await ctx.expand(args.paths, missing_ok=args.force)
    deleted = []
    for path in targets:
        with ctx.carry_on():
            try:
                await ctx.client.delete(path)
            except IsADirectory:
                if not args.recursive:
                    raise IsADirectory(f"{path} is a directory (use rm -r, or rmdir)") from None
                await ctx.client.rmdir(path, recursive=True)
            except NotFound:
                if args.force:
                    continue
                raise
            deleted.append(path)
    ctx.out("", {"deleted": deleted[0] if targets.one and deleted else deleted})
    return 0


async def file_info(ctx: Context, args: argparse.Namespace) -> int:
    found = await ctx.expand(args.paths)
    statuses = []
    for path in found:
        with ctx.carry_on():
            statuses.append(await ctx.client.info(path))
    ctx.answer("\n\n".join(render.status(s) for s in statuses), found.one, statuses)
    return 0


async def _into(ctx: Context, sources: list[str], dst: str) -> str:
    """The directory several sources go into: *dst*, which must be one."""
    try:
        status = await ctx.client.info(dst)
    except NotFound:
        raise NotFound(f"{dst}: no such directory ({len(sources)} sources go into one)") from None
    if status.type != "dir":
        raise NotADirectory(f"{dst} is not a directory ({len(sources)} sources go into one)")
    return dst


async def file_copy(ctx: Context, args: argparse.Namespace) -> int:
    *srcs, dst_arg = args.paths if len(args.paths) > 1 else [*args.paths, None]
    sources = await ctx.expand(srcs)
    dst = None if dst_arg is None else ctx.path(dst_arg)
    if len(sources) > 1:
        dst = await _into(ctx, sources, dst or ctx.cwd)
    copied: list[wire.FileStatus] = []
    trees = False
    for src in sources:
        with ctx.carry_on():
            try:
                copied.append(await ctx.client.copy(src, dst, overwrite=args.force))
            except IsADirectory:
                if not args.recursive:
                    raise IsADirectory(f"{src} is a directory (use cp -r)") from None
                trees = True
                copied += await _copy_tree(ctx, src, dst, args.force)
    lines = [f"copied to {s.path}" for s in copied]
    ctx.answer("\n".join(lines), sources.one and not trees, copied)
    return 0


async def _copy_tree(ctx: Context, src: str, dst: str | None, force: bool) -> list[wire.FileStatus]:
    """``cp -r``: the directories made again, the files copied by sharing their blocks."""
    from pydfs.client import tree

    if dst is None:
        raise InvalidArgument(f"give a target for the copy of the directory {src}")
    try:
        if (await ctx.client.info(dst)).type == "dir":
            dst = paths.join(dst, paths.basename(src))
    except NotFound:
        pass
    if paths.is_within(dst, src):
        raise InvalidArgument(f"cannot copy {src} into itself")
    copied: list[wire.FileStatus] = []
    async for directory, entries in tree.walk(ctx.client, src, ctx.report):
        here = (
            paths.join(dst, directory.path[len(src) :].lstrip("/"))
            if directory.path != src
            else dst
        )
        await ctx.client.mkdir(here, parents=True)
        for e in entries:
            if e.type != "dir":
                with ctx.carry_on():
                    copied.append(
                        await ctx.client.copy(e.path, paths.join(here, e.name), overwrite=force)
                    )
    return copied


async def file_move(ctx: Context, args: argparse.Namespace) -> int:
    srcs = args.sources
    sources = await ctx.expand(srcs)
    dst = ctx.path(args.dst)
    if len(sources) > 1:
        await _into(ctx, sources, dst)
    moved = []
    for src in sources:
        with ctx.carry_on():
            moved.append(await ctx.client.move(src, dst, overwrite=args.force))
    ctx.answer("\n".join(f"moved to {s.path}" for s in moved), sources.one, moved)
    return 0


_PROBE = ".pydfs-cd"  # a name looked up in a directory, to learn whether it may be entered


async def open_directory(ctx: Context, args: argparse.Namespace) -> int:
    if args.path is None:
        target = (await ctx.client.whoami()).home
    elif args.path == "-":
        target = load_cwd(ctx.client, previous=True)
    else:
        target = ctx.path(args.path)
    status = await ctx.client.info(target)
    if status.type != "dir":
        raise NotADirectory(f"{target} is not a directory")
    # As in a shell, entering needs search (x) permission: the name node checks it on the
    # way to any name inside, which tells without a second source of permission rules.
    try:
        await ctx.client.info(paths.join(target, _PROBE))
    except NotFound:
        pass
    except PermissionDenied:
        raise PermissionDenied(f"{target}: permission denied") from None
    save_cwd(ctx.client, target, previous=ctx.cwd)
    ctx.out(target, {"cwd": target})
    return 0


async def read_directory(ctx: Context, args: argparse.Namespace) -> int:
    from pydfs.client import tree

    found = await ctx.expand(args.paths or ["."])
    listings: list[tuple[str, list[wire.FileStatus]]] = []
    for path in found:
        with ctx.carry_on():
            told = len(ctx.failures)
            walked = []
            if args.recursive:
                walked = [(d.path, e) async for d, e in tree.walk(ctx.client, path, ctx.report)]
            if walked or len(ctx.failures) > told:  # a directory that could not be read: told
                listings += walked
            else:  # not -R, or a file, which lists itself
                listings.append((path, await ctx.client.ls(path)))
    if ctx.json:
        if not (found.one and not args.recursive):
            ctx.out("", dict(listings))
        elif listings:
            ctx.out("", listings[0][1])
        return 0
    headed = len(listings) > 1 or len(found) > 1
    shown = []
    for path, entries in listings:
        text = render.listing(entries, long=args.long, human=args.human)
        shown.append(f"{path}:\n{text}" if headed else text)
    ctx.out("\n\n".join(shown), None)
    return 0


async def make_directory(ctx: Context, args: argparse.Namespace) -> int:
    made = []
    for p in args.paths:
        with ctx.carry_on():
            made.append(await ctx.client.mkdir(ctx.path(p), parents=args.parents))
    ctx.answer("", len(args.paths) == 1, made)
    return 0


async def delete_directory(ctx: Context, args: argparse.Namespace) -> int:
    path = ctx.path(args.path)
    try:
        await ctx.client.rmdir(path)
    except DirectoryNotEmpty:
        entries = await ctx.client.ls(path)
        if not args.yes and sys.stdin.isatty():  # about to ask: show what would go
            shown = render.listing(entries[:20], long=True)
            more = f"\n... and {len(entries) - 20} more" if len(entries) > 20 else ""
            print(f"{path} is not empty; it holds:\n{shown}{more}", file=sys.stderr)
        if not confirm(
            f"Delete {path} and everything in it?",
            args.yes,
            f"{path} is not empty: pass --yes to delete it and everything in it",
        ):
            print("aborted", file=sys.stderr)
            return 1
        await ctx.client.rmdir(path, recursive=True)
    ctx.out("", {"deleted": path})
    return 0


async def pwd(ctx: Context, args: argparse.Namespace) -> int:
    ctx.out(ctx.cwd, {"cwd": ctx.cwd})
    return 0


file_read = transfer.file_read
file_write = transfer.file_write

Handler = Callable[[Context, argparse.Namespace], Awaitable[int]]


@dataclass(frozen=True)
class Command:
    number: int | None
    name: str
    alias: str
    handler: Handler
    help: str
    arguments: Callable[[argparse.ArgumentParser], None]
    description: str = ""
    add_help: bool = True  # False: the arguments take -h (for sizes) and add --help themselves


def _yes(p: argparse.ArgumentParser) -> None:
    p.add_argument("-y", "--yes", action="store_true", help="do not ask for confirmation")


def _force(p: argparse.ArgumentParser, what: str = "replace an existing file") -> None:
    p.add_argument("-f", "--force", action="store_true", help=what)


def _touch_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="file(s) to create")


def _rm_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="file(s) to delete; globs quoted")
    p.add_argument(
        "-r", "-R", "--recursive", action="store_true", help="delete directories and their content"
    )
    _force(p, "no error for a missing file")


def _stat_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="file(s) or directories; globs quoted")


def _cd_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", nargs="?", help="directory; none: your home; -: the previous one")


def _copy_args(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "paths",
        nargs="+",
        metavar="SRC... [DST]",
        help="SRC alone: a copy named 'NAME (copy)' beside it; several: DST is a directory",
    )
    p.add_argument("-r", "-R", "--recursive", action="store_true", help="copy directories too")
    _force(p)


def _move_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("sources", nargs="+", metavar="SRC", help="what to move; globs quoted")
    p.add_argument("dst", metavar="DST", help="new name, or (for several SRC) a directory")
    _force(p)


def _ls_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="*", metavar="PATH", help="directories or files (default: .)")
    p.add_argument("-l", dest="long", action="store_true", help="mode, owner, group, size, time")
    p.add_argument("-R", "--recursive", action="store_true", help="list subdirectories too")
    p.add_argument("--help", action="help", help="show this help message and exit")
    p.add_argument(
        "-h", "--human-readable", dest="human", action="store_true", help="with -l: 1.5 MiB"
    )


def _ln_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("-s", "--symbolic", action="store_true", help="make a symbolic link")
    p.add_argument("target", metavar="TARGET", help="what the link names, stored as given")
    p.add_argument("path", metavar="PATH", help="the link to make")


def _mkdir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("paths", nargs="+", metavar="PATH", help="directories to make")
    p.add_argument("-p", "--parents", action="store_true", help="create missing parents too")


def _rmdir_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("path", help="directory to delete")
    _yes(p)


COMMANDS: list[Command] = [
    Command(
        0,
        "initialize",
        "format",
        initialize,
        "wipe the file system, report the space",
        _yes,
        "Deletes every file and directory (admins only), then makes /tmp and every home again.",
    ),
    Command(1, "file_create", "touch", file_create, "create an empty file", _touch_args),
    Command(
        2,
        "file_read",
        "get",
        file_read,
        "download files or directory trees",
        transfer.read_args,
        transfer.READ_HELP,
    ),
    Command(
        3,
        "file_write",
        "put",
        file_write,
        "upload files or directory trees",
        transfer.write_args,
        transfer.WRITE_HELP,
    ),
    Command(
        4,
        "file_delete",
        "rm",
        file_delete,
        "delete files (with -r, directories)",
        _rm_args,
        "Several paths and quoted globs: pydfs rm '/logs/2026-*'.",
    ),
    Command(
        5, "file_info", "stat", file_info, "size, owner, blocks and their replicas", _stat_args
    ),
    Command(
        6,
        "file_copy",
        "cp",
        file_copy,
        "copy files inside pydfs",
        _copy_args,
        "A copy shares the source's blocks: no byte moves, whatever the size.",
    ),
    Command(7, "file_move", "mv", file_move, "rename or move files or directories", _move_args),
    Command(
        8,
        "open_directory",
        "cd",
        open_directory,
        "change the working directory",
        _cd_args,
        "The working directory is kept per name node and user, across runs.",
    ),
    Command(
        9,
        "read_directory",
        "ls",
        read_directory,
        "list directories",
        _ls_args,
        "Names only; -l for mode, owner, group, size and time (-lh: sizes as 1.5 MiB).",
        add_help=False,
    ),
    Command(10, "make_directory", "mkdir", make_directory, "create directories", _mkdir_args),
    Command(
        11,
        "delete_directory",
        "rmdir",
        delete_directory,
        "delete a directory",
        _rmdir_args,
        "A directory that is not empty is deleted with everything in it only after a yes\n"
        "on the terminal, or with --yes.",
    ),
    Command(
        None,
        "link_create",
        "ln",
        link_create,
        "make a symbolic link",
        _ln_args,
        "The target is any text, kept as given: pydfs never follows a link, a mount does.",
    ),
    Command(None, "pwd", "", pwd, "print the working directory", lambda p: None),
]
